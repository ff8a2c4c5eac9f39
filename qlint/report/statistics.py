"""``qlint check --statistics`` (counts by code, like ruff's) and ``--show-fixes`` (the fixes on offer)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from qlint.diagnostics import Applicability, Diagnostic
from qlint.report.meta import severity_of
from qlint.rules.registry import rules


def statistics(diagnostics: Sequence[Diagnostic]) -> list[dict]:
    """One row per code, most frequent first: code, name, severity, count, how many have a safe fix."""
    counts = Counter(d.code for d in diagnostics)
    catalog = rules()
    rows = []
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        mine = [d for d in diagnostics if d.code == code]
        rows.append(
            {
                "code": code,
                "name": catalog[code].name,
                "severity": severity_of(mine[0]).value,
                "count": count,
                "fixable": sum(d.fix is not None and d.fix.applicability is Applicability.SAFE for d in mine),
            }
        )
    return rows


def render_statistics(diagnostics: Sequence[Diagnostic], fmt: str, out: TextIO) -> None:
    """Text: ``count  code  [*] name`` lines (``[*]``: some have a safe fix); json: the rows."""
    rows = statistics(diagnostics)
    if fmt == "json":
        out.write(json.dumps(rows, indent=2) + "\n")
        return
    width = max((len(str(r["count"])) for r in rows), default=1)
    for r in rows:
        marker = "[*]" if r["fixable"] else "[ ]"
        out.write(f"{r['count']:>{width}}\t{r['code']}\t{marker} {r['name']} [{r['severity']}]\n")


def render_fixes(diagnostics: Sequence[Diagnostic], out: TextIO) -> None:
    """``--show-fixes`` without ``--fix``: every fix on offer, with whether ``--fix`` applies it."""
    offered = [d for d in diagnostics if d.fix is not None]
    if not offered:
        out.write("No fixes available.\n")
        return
    out.write("Fixes available:\n")
    for d in offered:
        how = "--fix" if d.fix.applicability is Applicability.SAFE else "--fix --unsafe-fixes"
        out.write(f"  {d.span.path}:{d.span.line}:{d.span.col}: {d.code} ({how}): {d.fix.message}\n")


def render_fixed(fixed: Sequence[tuple[str, int]], out: TextIO) -> None:
    """``--fix --show-fixes``: how many problems were fixed in each file."""
    done = [(path, n) for path, n in fixed if n]
    if not done:
        out.write("No fixes applied.\n")
        return
    out.write(f"Fixed {sum(n for _, n in done)} problems:\n")
    for path, n in done:
        out.write(f"- {path}: {n} fixed\n")
