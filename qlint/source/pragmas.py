"""``# qlint: key = value`` comments that qlint cannot use: an unknown key, a value that does not parse.

Each is reported at its line (as QL001: it changes how the file's models are built), never ignored.
"""

from __future__ import annotations

from qlint.config import ConfigError, parse_shape
from qlint.diagnostics import Diagnostic, Span
from qlint.source.file import Pragma, SourceFile

PRAGMA_KEYS = ("input-shape", "model")


def malformed_pragmas(source: SourceFile) -> list[Diagnostic]:
    """A QL001 diagnostic per pragma of ``source`` that qlint cannot use, naming its line and what it did instead."""
    return [d for p in source.pragmas if (d := _problem(source.path, p)) is not None]


def _problem(path: str, pragma: Pragma) -> Diagnostic | None:
    shown = f"`# qlint: {pragma.key} = {pragma.value}` (line {pragma.line})"
    if pragma.key not in PRAGMA_KEYS:
        keys = ", ".join(f"`{k}`" for k in PRAGMA_KEYS)
        near = pragma.key.lower().replace("_", "-")
        hint = f": did you mean `{near}`?" if near in PRAGMA_KEYS else f" (qlint reads {keys})"
        why, instead = f"unknown key `{pragma.key}`{hint}", "it is ignored"
    elif pragma.key == "input-shape":
        try:
            parse_shape(pragma.value)
            return None
        except ConfigError as exc:
            why, instead = str(exc), "the models of this file are checked with the default input shape instead"
    else:
        return None  # a `model` expression that does not parse is reported when building it (QL001)
    span = Span(path, pragma.line, pragma.col, pragma.line, pragma.col + len("# qlint: ") + len(pragma.key))
    return Diagnostic("QL001", f"malformed pragma {shown}: {why}; {instead}", span)
