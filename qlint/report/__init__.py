"""Output layer of ``qlint check``: text (ruff-like, optional colour), json, github, sarif.

Torch-free; rich is imported only for coloured text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TextIO

from qlint.diagnostics import Diagnostic
from qlint.report.github import render_github
from qlint.report.json_format import render_json
from qlint.report.sarif import render_sarif
from qlint.report.text import render_summary, render_text

FORMATS = ("text", "json", "github", "sarif")

__all__ = [
    "FORMATS",
    "render",
    "render_github",
    "render_json",
    "render_sarif",
    "render_summary",
    "render_text",
]


def render(
    diagnostics: Sequence[Diagnostic],
    fmt: str,
    *,
    sources: Mapping[str, str],
    color: bool,
    out: TextIO,
    files_checked: int,
    tool_version: str,
    fixable_hint: bool = True,
    errors: int = 0,
) -> None:
    """Write ``diagnostics`` to ``out`` as ``fmt``: text prints diagnostics + summary, others one document.

    ``errors``: how many paths could not be checked (exit 2); the text summary then never says all passed.
    """
    if fmt == "text":
        render_text(diagnostics, sources, color=color, out=out, fixable_hint=fixable_hint)
        render_summary(diagnostics, color=color, out=out, files_checked=files_checked, errors=errors)
    elif fmt == "json":
        out.write(render_json(diagnostics) + "\n")
    elif fmt == "github":
        out.write(render_github(diagnostics))
    elif fmt == "sarif":
        out.write(render_sarif(diagnostics, tool_version=tool_version) + "\n")
    else:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def use_color(choice: str) -> bool:
    """``--color auto|always|never``: auto means a terminal, unless NO_COLOR / FORCE_COLOR say otherwise."""
    import os
    import sys

    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty()
