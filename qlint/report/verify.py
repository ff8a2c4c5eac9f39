"""Output of ``qlint verify``: rich tables for people (a progress bar on a terminal only), JSON for tools."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from qlint.diagnostics import Diagnostic
from qlint.report.json_format import diagnostic_to_dict
from qlint.report.text import render_text as render_check_text
from qlint.source.file import read_source_text
from qlint.verify.result import VerifyResult, _spread_json
from qlint.verify.verdicts import is_slow

TOP_LAYERS = 8


def _num(x: float | None, fmt: str = ".2f") -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return format(x, fmt)


def _json_num(x: float | None, nd: int = 3) -> float | None | str:
    if x is None:
        return None
    if math.isinf(x) or math.isnan(x):
        return None
    return round(float(x), nd)


def to_json(r: VerifyResult) -> dict:
    """The issue's keys (``converted`` ... ``diagnostics``) plus a few more (``failure``, ``cosine``...)."""
    rec = r.recommendation.to_json() if r.recommendation else None
    return {
        "model": r.model,
        "path": r.path,
        "converted": r.converted,
        "backend": r.backend,
        "flow": r.flow,
        "input_shape": list(r.input_shape),
        "threads": r.threads,
        "fusion": r.fusion,
        "float_ms": _json_num(r.float_ms),
        "int8_ms": _json_num(r.int8_ms),
        "compiled": r.compiled,
        "speedup_vs_float": _json_num(r.speedup),
        **{k: v for k, v in _spread_json("speedup_vs_float", r.speedup_spread).items() if k != "speedup_vs_float"},
        "speed_verdict": r.speed_verdict,
        "sqnr_db": _json_num(r.sqnr_db),
        "cosine": _json_num(r.cosine, 6),
        "min_sqnr": r.min_sqnr,
        "cold_start_ms": [_json_num(c) for c in r.cold_start_ms],
        "cold_start_layers": [{"module": n, "extra_ms": _json_num(ms)} for n, ms in r.cold_layers],
        "aot_first_call_ms": _json_num(r.aot_first_call_ms),
        "aot_load_ms": _json_num(r.aot_load_ms),
        "aot_build_s": _json_num(r.aot_build_s),
        "layers": [
            {**lay.to_json(), "sqnr_db": _json_num(lay.sqnr_db), "dilated_grouped": lay.dilated_grouped}
            for lay in r.layers
        ],
        "candidates": [{**c.to_json(), "sqnr_db": _json_num(c.sqnr_db)} for c in r.candidates],
        "recommendation": rec,
        "failure": r.failure.to_json() if r.failure else None,
        "notes": list(r.notes),
        "diagnostics": [diagnostic_json(d) for d in r.diagnostics],
        "exit_code": r.exit_code,
    }


def render_json(results: Sequence[VerifyResult], out: TextIO) -> None:
    data = to_json(results[0]) if len(results) == 1 else [to_json(r) for r in results]
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _console(out: TextIO):
    from rich.console import Console

    tty = hasattr(out, "isatty") and out.isatty()
    width = None if tty else 120
    return Console(
        file=out,
        force_terminal=tty,
        color_system="auto" if tty else None,
        width=width,
        highlight=False,
        soft_wrap=not tty,
    )  # fmt: skip  (piped output: a line is never broken)


def render_text(results: Sequence[VerifyResult], out: TextIO) -> None:
    console = _console(out)
    for r in results:
        _one(console, r)
    tty = hasattr(out, "isatty") and out.isatty()
    diags = [d for r in results for d in r.diagnostics]
    if diags:
        out.flush()
        render_diagnostics(diags, tty, out)


def _one(console, r: VerifyResult) -> None:
    from rich.table import Table

    shape = "x".join(map(str, r.input_shape))
    console.print(f"[bold]qlint verify[/bold] {r.path} · {r.model}")
    console.print(
        f"  flow {r.flow} · engine {r.backend} · input {shape} · "
        f"torch.set_num_threads({r.threads}) (--threads) · fusion: {r.fusion}"
    )
    for note in r.notes:
        console.print(f"  note: {note}", markup=False)
    if r.failure:
        f = r.failure
        where = f" at `{f.module}` ({f.module_type})" if f.module else ""
        console.print(f"[bold red]Conversion   FAILED[/bold red] in {f.phase}{where}", markup=True)
        console.print(f"  {f.explanation}", markup=False)
        console.print(f"  torch: {f.error_type}: {f.error}", markup=False)
        if f.predicted_by:
            console.print(f"  predicted by {f.predicted_by} (qlint check)", markup=False)
        console.print()
        return
    console.print("[green]Conversion   ok[/green]")
    bar = "[green]meets[/green]" if (r.sqnr_db or 0) >= r.min_sqnr else "[red]below[/red]"
    console.print(
        f"Accuracy     output SQNR {_num(r.sqnr_db, '.1f')} dB ({bar} {r.min_sqnr:g} dB) · "
        f"cosine {_num(r.cosine, '.5f')}"
    )
    if not r.timed:
        verdict = "un-compiled reference graph (--no-compile): int8 kernels come with torch.compile"
    elif r.slower_than_float:
        verdict = "[red]int8 slower than float[/red]"
    elif r.speed_unclear:
        verdict = "[yellow]could not tell at this noise level[/yellow]"
    else:
        verdict = "[green]int8 faster[/green]"
    spread = r.speedup_spread
    how = (
        f"median of {spread.n} interleaved pairs after warm-up, IQR {spread.low:.2f}-{spread.high:.2f}x"
        if spread
        else "median of repeated runs after warm-up"
    )
    compiled = " (torch.compile, inductor)" if r.compiled else ""
    console.print(
        f"Speed        float {_num(r.float_ms, '.1f')} ms · int8{compiled} {_num(r.int8_ms, '.1f')} ms · "
        f"speedup {_num(r.speedup, '.2f')}x ({verdict}); {how}"
    )
    if r.cold_start_ms and r.int8_ms:
        calls = " · ".join(f"#{i} {c:.1f} ms ({c / r.int8_ms:.1f}x)" for i, c in enumerate(r.cold_start_ms, 1))
        console.print(f"Cold start   {calls} vs steady state {r.int8_ms:.1f} ms", markup=False, soft_wrap=True)
        if r.compiled:
            first = r.cold_start_ms[0] / 1000
            console.print(f"             the first call includes the compile: {first:.1f} s", markup=False)
        if r.aot_first_call_ms is not None:
            console.print(
                f"             AOTInductor package (built ahead of time in {r.aot_build_s:.1f} s): "
                f"load {r.aot_load_ms:.1f} ms, first call {r.aot_first_call_ms:.1f} ms",
                markup=False,
            )
        if r.cold_layers:
            where = ", ".join(f"{n} +{ms:.1f} ms" for n, ms in r.cold_layers[:3])
            console.print(f"             extra time of the first calls, by layer: {where}", markup=False)

    slow = sorted(
        (x for x in r.layers if is_slow(x, r.int8_ms)),
        key=lambda x: x.float_ms - x.int8_ms,
    )
    if slow:
        t = Table(title=f"Layers slower in int8 than in float ({r.backend})", title_justify="left")
        for col in ("module", "type", "float ms", "int8 ms", "int8/float", "SQNR dB", "note"):
            t.add_column(col, justify="right" if "ms" in col or "dB" in col or "/" in col else "left")
        for x in slow[:TOP_LAYERS]:
            ratio = f"{x.int8_ms / max(x.float_ms, 1e-9):.1f}x"
            note = "dilated grouped conv" if x.dilated_grouped else ""
            t.add_row(
                x.module,
                x.module_type,
                _num(x.float_ms),
                _num(x.int8_ms),
                ratio,
                _num(x.sqnr_db, ".1f"),
                note,
            )
        console.print(t)
    worst = [x for x in r.layers if x.sqnr_db is not None][:5]
    if worst:
        t = Table(title="Worst layers by SQNR", title_justify="left")
        for col in ("module", "type", "SQNR dB", "float ms", "int8 ms"):
            t.add_column(col, justify="left" if col in ("module", "type") else "right")
        for x in worst:
            t.add_row(x.module, x.module_type, _num(x.sqnr_db, ".1f"), _num(x.float_ms), _num(x.int8_ms))
        console.print(t)
    if len(r.candidates) > 1:
        t = Table(title="Remedies, measured in this run", title_justify="left")
        for col in ("candidate", "engine", "float modules", "int8 ms", "speedup vs float", "IQR", "SQNR dB"):
            t.add_column(col, justify="left" if col in ("candidate", "engine", "float modules") else "right")
        for c in r.candidates:
            t.add_row(*candidate_row(c, r.float_ms))
        console.print(t)
        for c in r.candidates:
            if c.suspect:
                console.print(f"  {c.name}: {c.suspect}", markup=False)
    rec = r.recommendation
    if rec is not None:
        console.print(
            f"[bold]Recommendation[/bold]: {rec.name}: {rec.int8_ms:.1f} ms, "
            f"{rec.speedup_vs_float:.2f}x vs float (fastest candidate with SQNR >= {r.min_sqnr:g} dB)"
        )
        for line in rec.change.splitlines():
            console.print(f"    {line}", markup=False, highlight=False)
    elif r.candidates:
        console.print(f"[bold]Recommendation[/bold]: none (no candidate reaches {r.min_sqnr:g} dB)")
    console.print()


def candidate_row(c, float_ms: float | None) -> tuple[str, ...]:
    """name, engine, float modules, int8 ms, speedup (median of pairs), its IQR, SQNR (text and HTML)."""
    engine = "x86-inductor" if c.flow == "pt2e" else c.engine
    if c.int8_ms is None or not float_ms:
        return (c.name, engine, str(len(c.float_modules)), "-", c.error or "-", "", _num(c.sqnr_db, ".1f"))
    sp = c.speedup
    speed = f"{sp.median if sp else float_ms / c.int8_ms:.2f}x" + (" (suspect)" if c.suspect else "")
    iqr = f"{sp.low:.2f}-{sp.high:.2f}x" if sp else ""
    return (c.name, engine, str(len(c.float_modules)), _num(c.int8_ms, ".1f"), speed, iqr, _num(c.sqnr_db, ".1f"))


@contextlib.contextmanager
def progress(enabled: bool, stream: TextIO | None = None) -> Iterator:
    """A ``step(description)`` callable: a rich progress line on a terminal, nothing otherwise."""
    stream = stream or sys.stderr
    if not (enabled and hasattr(stream, "isatty") and stream.isatty()):
        yield lambda _msg: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(file=stream), transient=True) as bar:  # fmt: skip
        task = bar.add_task("qlint verify", total=None)

        def step(msg: str) -> None:
            bar.update(task, description=f"qlint verify: {msg}")

        yield step


def diagnostic_json(diag: Diagnostic) -> dict:
    return diagnostic_to_dict(diag)


def render_diagnostics(diagnostics: Sequence[Diagnostic], color: bool, out) -> None:
    """verify's findings as ``qlint check`` prints them, with the source lines they point at."""
    import os

    sources = {}
    for d in diagnostics:
        for p in (d.span.path, *(r.span.path for r in d.related)):
            if p not in sources and os.path.isfile(p):
                sources[p] = read_source_text(p)  # PEP 263: the file's declared encoding
    render_check_text(list(diagnostics), sources, color=color, out=out)
