"""``--output-format json``: ruff's JSON diagnostics plus qlint's own fields."""

from __future__ import annotations

import json
from collections.abc import Sequence

from qlint.diagnostics import Diagnostic, Fix, Span
from qlint.report.meta import name_of, severity_of, url_of


def _point(line: int, col: int) -> dict[str, int]:
    return {"row": line, "column": col}


def _fix(fix: Fix | None) -> dict[str, object] | None:
    if fix is None:
        return None
    return {
        "applicability": fix.applicability.value,
        "message": fix.message,
        "edits": [
            {"content": e.content, "location": _point(*e.start), "end_location": _point(*e.end)} for e in fix.edits
        ],
    }


def _where(span: Span) -> dict[str, object]:
    return {
        "filename": span.path,
        "location": _point(span.line, span.col),
        "end_location": _point(*span.end),
    }


def diagnostic_to_dict(diag: Diagnostic) -> dict[str, object]:
    """One diagnostic as a JSON-ready dict (ruff's fields first, then qlint's)."""
    return {
        "code": diag.code,
        "message": diag.message,
        **_where(diag.span),
        "fix": _fix(diag.fix),
        "url": url_of(diag),
        "name": name_of(diag),
        "severity": severity_of(diag).value,
        "model": diag.model,
        "module": diag.module,
        "related": [{**_where(r.span), "message": r.message} for r in diag.related],
    }


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """A JSON array, one object per diagnostic; keys sorted (as ruff prints them), indent 2."""
    return json.dumps([diagnostic_to_dict(d) for d in diagnostics], indent=2, sort_keys=True, ensure_ascii=False)
