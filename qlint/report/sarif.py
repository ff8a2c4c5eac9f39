"""``--output-format sarif``: one SARIF 2.1.0 log for code-scanning UIs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import quote

from qlint.diagnostics import Diagnostic, Fix, Severity, Span
from qlint.report.meta import severity_of
from qlint.rules.base import DOCS_URL
from qlint.rules.catalog import RULES

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = DOCS_URL.split("rules/")[0]

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_DRIVE = re.compile(r"^[A-Za-z]:/")


def artifact_uri(path: str) -> str:
    """A URI reference for ``path``: relative paths stay relative (POSIX, percent-encoded)."""
    posix = path.replace("\\", "/")
    if _DRIVE.match(posix):  # C:/x.py -> file:///C:/x.py
        return "file:///" + posix[:2] + quote(posix[2:], safe="/")
    if posix.startswith("/"):
        return "file://" + quote(posix, safe="/")
    return quote(posix, safe="/")


def sarif_text(text: str) -> str:
    """Plain-text message: literal square brackets are escaped so they never read as embedded links."""
    return text.replace("[", "\\[").replace("]", "\\]")


def _region(start: tuple[int, int], end: tuple[int, int]) -> dict[str, int]:
    return {"startLine": start[0], "startColumn": start[1], "endLine": end[0], "endColumn": end[1]}


def _physical(span: Span) -> dict[str, object]:
    return {
        "artifactLocation": {"uri": artifact_uri(span.path)},
        "region": _region((span.line, span.col), span.end),
    }


def _fix(fix: Fix, path: str) -> dict[str, object]:
    return {
        "description": {"text": sarif_text(fix.message)},
        "artifactChanges": [
            {
                "artifactLocation": {"uri": artifact_uri(path)},
                "replacements": [
                    {"deletedRegion": _region(e.start, e.end), "insertedContent": {"text": e.content}}
                    for e in fix.edits
                ],
            }
        ],
        "properties": {"applicability": fix.applicability.value},
    }


def _result(diag: Diagnostic, rule_index: dict[str, int]) -> dict[str, object]:
    result: dict[str, object] = {
        "ruleId": diag.code,
        "ruleIndex": rule_index[diag.code],
        "level": _LEVEL[severity_of(diag)],
        "message": {"text": sarif_text(diag.message)},
        "locations": [{"physicalLocation": _physical(diag.span)}],
    }
    if diag.related:
        result["relatedLocations"] = [
            {"id": i, "physicalLocation": _physical(r.span), "message": {"text": sarif_text(r.message)}}
            for i, r in enumerate(diag.related)
        ]
    if diag.fix is not None and diag.fix.edits:
        result["fixes"] = [_fix(diag.fix, diag.span.path)]
    props = {key: value for key, value in (("model", diag.model), ("module", diag.module)) if value}
    if props:
        result["properties"] = props
    return result


def _rule_descriptor(code: str) -> dict[str, object]:
    info = RULES[code]
    return {
        "id": code,
        "name": info.name,
        "shortDescription": {"text": info.summary},
        "helpUri": info.url,
        "defaultConfiguration": {"level": _LEVEL[info.severity]},
        "properties": {"basis": " + ".join(b.value for b in info.basis), "fix": info.fix_availability.value},
    }


def render_sarif(diagnostics: Sequence[Diagnostic], *, tool_version: str) -> str:
    """A SARIF 2.1.0 log with one run: every catalog rule, and one result per diagnostic."""
    codes = list(RULES)
    rule_index = {code: i for i, code in enumerate(codes)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "qlint",
                        "version": tool_version,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule_descriptor(code) for code in codes],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": [_result(d, rule_index) for d in diagnostics],
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)
