"""``--output-format github``: GitHub Actions workflow commands that become PR annotations."""

from __future__ import annotations

from collections.abc import Sequence

from qlint.diagnostics import Diagnostic, Severity
from qlint.report.meta import name_of, severity_of

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(value: str) -> str:
    """Escape a command's message as ``@actions/core`` does."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a command property value: the data escapes plus ``:`` and ``,``."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github_command(diag: Diagnostic) -> str:
    span = diag.span
    end_line, end_col = span.end
    props = {
        "file": span.path.replace("\\", "/"),
        "line": str(span.line),
        "col": str(span.col),
        "endLine": str(end_line),
        "endColumn": str(end_col),
        "title": f"{diag.code} ({name_of(diag)})",
    }
    joined = ",".join(f"{key}={escape_property(value)}" for key, value in props.items())
    return f"::{_COMMAND[severity_of(diag)]} {joined}::{escape_data(f'{diag.code} {diag.message}')}"


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """One workflow command per line (each line ends with a newline); empty when there is nothing."""
    return "".join(github_command(d) + "\n" for d in diagnostics)
