"""``qlint verify --html report.html``: one self-contained page (plotly's JavaScript inlined: works offline).

Per model: the summary (conversion, float vs int8 latency with its spread, SQNR, the recommendation and its
code change), per-layer float vs int8 time (slow layers highlighted, each linked to the line that builds
it), per-layer SQNR, the candidate table, the first calls (and the AOTInductor package's first call).
Needs the ``report`` extra: ``pip install qlint[report]``.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence

from qlint.verify.result import LayerStat, VerifyResult
from qlint.verify.stats import SLOWER, UNCLEAR
from qlint.verify.verdicts import layer_verdict

REPORT_HINT = "--html needs the report extra (plotly): pip install qlint[report]"
MAX_LAYERS = 40  # per chart: the slowest int8 layers / the worst SQNR
COLORS = {SLOWER: "#d62728", UNCLEAR: "#ff9f1c", None: "#1f77b4", "float": "#9aa5b1"}


class MissingReportExtra(RuntimeError):
    """plotly is not installed (exit 2 with the install command)."""


def check_available() -> None:
    """Raise MissingReportExtra before any work when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError as exc:
        raise MissingReportExtra(REPORT_HINT) from exc


def write_html(results: Sequence[VerifyResult], path: str) -> None:
    """Write the report of ``results`` to ``path``."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render(results))


def render(results: Sequence[VerifyResult]) -> str:
    from plotly.offline import get_plotlyjs

    body = "\n".join(_model(r, i) for i, r in enumerate(results))
    title = "qlint verify: " + ", ".join(html.escape(r.model) for r in results)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{CSS}</style>
<script>
window.qlintErrors = [];
window.addEventListener("error", function (e) {{
  window.qlintErrors.push(String(e.message));
  var box = document.getElementById("qlint-errors");
  if (box) {{ box.hidden = false; box.textContent = "script errors: " + window.qlintErrors.join("; "); }}
}});
</script>
<script>{get_plotlyjs()}</script>
</head><body>
<div id="qlint-errors" class="bad" hidden></div>
<h1>{title}</h1>
{body}
</body></html>
"""


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #1d2733; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #dde; }
h3 { font-size: 15px; margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.rec td { font-weight: 600; background: #eefaf0; } .bad { color: #c0392b; } .good { color: #1e8449; }
.unclear { color: #b9770e; } pre { background: #f4f6f8; padding: 8px 12px; overflow-x: auto; }
.note { color: #5d6d7e; } a { color: #1f5fa8; }
"""


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def _link(source: str | None, text: str) -> str:
    """``text`` linked to ``path:line`` (a file:// address; the line as a fragment and in the title)."""
    if not source:
        return html.escape(text)
    path, _, line = source.rpartition(":")
    url = "file://" + os.path.abspath(path) + (f"#L{line}" if line.isdigit() else "")
    return f'<a href="{html.escape(url)}" title="{html.escape(source)}">{html.escape(text)}</a>'


def _model(r: VerifyResult, index: int) -> str:
    parts = [f"<h2>{html.escape(r.model)} · {html.escape(r.path)}</h2>", _summary(r)]
    if r.converted:
        parts += [_layer_time(r, index), _layer_sqnr(r, index), _candidates(r), _cold(r, index)]
    if r.diagnostics:
        items = "".join(
            f"<li><b>{d.code}</b> [{d.severity.value}] {_link(f'{d.span.path}:{d.span.line}', f'{d.span}')}: "
            f"{html.escape(d.message)}</li>"
            for d in r.diagnostics
        )
        parts.append(f"<h3>Findings</h3><ul>{items}</ul>")
    return "\n".join(parts)


def _summary(r: VerifyResult) -> str:
    shape = "x".join(map(str, r.input_shape))
    rows = [
        ("flow · engine", f"{r.flow} · {r.backend}" + (" (torch.compile, inductor)" if r.compiled else "")),
        ("input · threads", f"{shape} · torch.set_num_threads({r.threads})"),
        ("fusion", r.fusion),
    ]
    if r.failure:
        f = r.failure
        rows.append(("conversion", f'<span class="bad">FAILED in {f.phase}</span>: {html.escape(f.explanation)}'))
        return _table(rows)
    rows.append(("conversion", '<span class="good">ok</span>'))
    bar = "good" if (r.sqnr_db or 0) >= r.min_sqnr else "bad"
    rows.append(
        ("accuracy", f'output SQNR <span class="{bar}">{_num(r.sqnr_db, ".1f")} dB</span> '
         f"(bar {r.min_sqnr:g} dB) · cosine {_num(r.cosine, '.5f')}")
    )  # fmt: skip
    verdict = r.speed_verdict
    css = {"slower": "bad", "faster": "good", "could not tell": "unclear"}.get(verdict or "", "note")
    spread = r.speedup_spread
    iqr = f", IQR {spread.low:.2f}-{spread.high:.2f}x over {spread.n} interleaved pairs" if spread else ""
    rows.append(
        ("speed", f"float {_num(r.float_ms, '.1f')} ms · int8 {_num(r.int8_ms, '.1f')} ms · float/int8 "
         f"{_num(r.speedup)}x{iqr}: <span class=\"{css}\">{html.escape(verdict or 'not timed (--no-compile)')}"
         "</span>")
    )  # fmt: skip
    rec = r.recommendation
    if rec is not None:
        rows.append(
            ("recommendation", f"<b>{html.escape(rec.name)}</b>: {rec.int8_ms:.1f} ms, {rec.speedup_vs_float:.2f}x "
             f"vs float<pre>{html.escape(rec.change)}</pre>")
        )  # fmt: skip
    elif r.candidates:
        rows.append(("recommendation", f"none: no candidate reaches {r.min_sqnr:g} dB"))
    notes = "".join(f'<p class="note">note: {html.escape(n)}</p>' for n in r.notes)
    return _table(rows) + notes


def _table(rows: Sequence[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _figure(fig, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config={"responsive": True})


def _label(lay: LayerStat) -> str:
    return _link(lay.source, lay.module).replace('title="', 'target="_blank" title="')


def _layer_time(r: VerifyResult, index: int) -> str:
    import plotly.graph_objects as go

    timed = [x for x in r.layers if x.float_ms is not None and x.int8_ms is not None]
    if not timed:
        return "<h3>Per-layer time</h3><p class='note'>no per-layer time (a compiled graph has no module hooks)</p>"
    top = sorted(timed, key=lambda x: -x.int8_ms)[:MAX_LAYERS][::-1]  # slowest int8 at the top
    verdicts = [layer_verdict(x, r.int8_ms) for x in top]
    labels = [_label(x) for x in top]
    hover = [
        f"{x.module} ({x.module_type})<br>float {x.float_ms:.3f} ms · int8 {x.int8_ms:.3f} ms"
        + (f"<br>int8/float {x.slowdown.text()}" if x.slowdown else "")
        + (f"<br>{x.source}" if x.source else "")
        + ("<br>dilated grouped conv (QL301)" if x.dilated_grouped else "")
        for x in top
    ]
    fig = go.Figure(
        [
            go.Bar(name="float", y=labels, x=[x.float_ms for x in top], orientation="h",
                   marker_color=COLORS["float"], hovertext=hover, hoverinfo="text"),
            go.Bar(name="int8", y=labels, x=[x.int8_ms for x in top], orientation="h",
                   marker_color=[COLORS[v] for v in verdicts], hovertext=hover, hoverinfo="text"),
        ]
    )  # fmt: skip
    fig.update_layout(
        barmode="group", height=160 + 26 * len(top), margin={"l": 10, "r": 10, "t": 40, "b": 40},
        title=f"Per-layer time, float vs int8 ({r.backend}), slowest int8 first: red = slower in int8 (QL602), "
        "orange = could not tell",
        xaxis_title="ms (median of interleaved rounds)", legend={"orientation": "h"},
    )  # fmt: skip
    slow = [x for x, v in zip(top[::-1], verdicts[::-1], strict=True) if v is not None]
    listing = ""
    if slow:
        items = "".join(
            f"<li>{_link(x.source, x.source or x.module)}: <b>{html.escape(x.module)}</b> ({x.module_type}) "
            f"{x.float_ms:.2f} &rarr; {x.int8_ms:.2f} ms"
            + (f", int8/float {x.slowdown.text()}" if x.slowdown else "")
            + (" · dilated grouped conv" if x.dilated_grouped else "")
            + "</li>"
            for x in slow
        )
        listing = f"<p>Layers slower in int8, with the line that builds each:</p><ul>{items}</ul>"
    return "<h3>Per-layer time</h3>" + _figure(fig, f"layer-time-{index}") + listing


def _layer_sqnr(r: VerifyResult, index: int) -> str:
    import plotly.graph_objects as go

    scored = [x for x in r.layers if x.sqnr_db is not None]
    if not scored:
        return ""
    worst = scored[:MAX_LAYERS][::-1]  # layers come worst SQNR first
    fig = go.Figure(
        go.Bar(y=[_label(x) for x in worst], x=[min(x.sqnr_db, 80.0) for x in worst], orientation="h",
               marker_color=["#d62728" if x.sqnr_db < r.min_sqnr else "#2ca02c" for x in worst],
               hovertext=[f"{x.module}: {x.sqnr_db:.1f} dB" for x in worst], hoverinfo="text")
    )  # fmt: skip
    fig.add_vline(x=r.min_sqnr, line_dash="dash", annotation_text=f"--min-sqnr {r.min_sqnr:g} dB")
    fig.update_layout(
        height=160 + 22 * len(worst), margin={"l": 10, "r": 10, "t": 40, "b": 40},
        title="Per-layer SQNR against float (dB, worst first)", xaxis_title="dB",
    )  # fmt: skip
    return "<h3>Per-layer SQNR</h3>" + _figure(fig, f"layer-sqnr-{index}")


def _candidates(r: VerifyResult) -> str:
    from qlint.report.verify import candidate_row

    if len(r.candidates) < 2:
        return ""
    rec = r.recommendation.name if r.recommendation else None
    head = "".join(f"<th>{h}</th>" for h in ("candidate", "engine", "float modules", "int8 ms", "speedup vs float",
                                              "IQR", "SQNR dB", "first call ms", "note"))  # fmt: skip
    rows = []
    for c in r.candidates:
        cells = candidate_row(c, r.float_ms)
        note = c.suspect or c.error or ("recommended" if c.name == rec else "")
        first = _num(c.cold_start_ms[0], ".0f") if c.cold_start_ms else ""
        tds = "".join(
            f'<td class="num">{html.escape(v)}</td>' if i >= 3 else f"<td>{html.escape(v)}</td>"
            for i, v in enumerate(cells)
        )
        rows.append(
            f"<tr{' class=rec' if c.name == rec else ''}>{tds}<td class='num'>{first}</td>"
            f"<td>{html.escape(note)}</td></tr>"
        )
    return f"<h3>Candidates, measured in this run</h3><table><tr>{head}</tr>{''.join(rows)}</table>"


def _cold(r: VerifyResult, index: int) -> str:
    import plotly.graph_objects as go

    if not r.cold_start_ms:
        return ""
    names = [f"call #{i}" for i in range(1, len(r.cold_start_ms) + 1)]
    values = list(r.cold_start_ms)
    if r.aot_first_call_ms is not None:
        names.append("AOTInductor package, call #1")
        values.append(r.aot_first_call_ms)
    fig = go.Figure(go.Bar(x=names, y=values, marker_color="#1f77b4", text=[f"{v:.1f} ms" for v in values]))
    if r.int8_ms:
        fig.add_hline(y=r.int8_ms, line_dash="dash", annotation_text=f"steady state {r.int8_ms:.1f} ms")
    low, high = min([*values, r.int8_ms or values[0]]), max(values)
    fig.update_yaxes(type="log", range=[math.log10(low / 2), math.log10(high * 3)], title="ms (log scale)")
    fig.update_layout(
        height=360, margin={"l": 10, "r": 10, "t": 40, "b": 40},
        title="Cold start: the first calls of the fresh int8 model" + (" (the first compiles)" if r.compiled else ""),
    )  # fmt: skip
    return "<h3>Cold start</h3>" + _figure(fig, f"cold-{index}")
