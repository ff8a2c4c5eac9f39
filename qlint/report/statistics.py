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


def render_statistics(
    diagnostics: Sequence[Diagnostic], fmt: str, out: TextIO, coverage: Sequence[tuple[str, object]] | None = None
) -> None:
    """Text: ``count  code  [*] name`` lines (``[*]``: some have a safe fix); json: the rows.

    ``coverage`` (files checked with the PT2E flow): ``(path, pt2e_facts.Statistics)`` per annotated
    model; text prints each model's table after the counts, json becomes ``{"codes": rows,
    "coverage": [...]}``.
    """
    rows = statistics(diagnostics)
    if fmt == "json":
        data: object = (
            rows if coverage is None else {"codes": rows, "coverage": [coverage_row(p, c) for p, c in coverage]}
        )
        out.write(json.dumps(data, indent=2) + "\n")
        return
    width = max((len(str(r["count"])) for r in rows), default=1)
    for r in rows:
        marker = "[*]" if r["fixable"] else "[ ]"
        out.write(f"{r['count']:>{width}}\t{r['code']}\t{marker} {r['name']} [{r['severity']}]\n")
    if coverage is not None:
        from qlint.model.pt2e_facts import render_statistics as render_coverage

        out.write("\nPT2E coverage (ops the quantizer annotates, and the ops left float with the reason):\n")
        if not coverage:
            out.write("  no model was exported and annotated\n")
        for path, stats in coverage:
            out.write(f"{path}: {render_coverage(stats)}\n")


def coverage_row(path: str, stats) -> dict:
    """One model's PT2E coverage as JSON data."""

    def groups(items) -> list[dict]:
        return [
            {
                "key": g.key,
                "module_type": g.module_type,
                "count": g.count,
                "between_quantized": g.between,
                "reasons": dict(g.reasons),
            }
            for g in items
        ]

    return {
        "filename": path,
        "model": stats.model,
        "quantizer": stats.quantizer,
        "ops": stats.ops,
        "annotated": stats.annotated,
        "compute_ops": stats.compute_ops,
        "compute_annotated": stats.compute_annotated,
        "compute_by_op": [{"op": op, "total": t, "annotated": a} for op, t, a in stats.compute_by_op],
        "left_float": stats.left_float,
        "left_float_between_quantized": stats.left_float_between,
        "left_float_by_op": groups(stats.left_float_by_op),
        "left_float_by_module": groups(stats.left_float_by_module),
        "prepare_error": stats.prepare_error,
    }


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
