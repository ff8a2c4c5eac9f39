"""Measurements -> QL601..QL605 diagnostics, pointed at the source line the catalog asks for."""

from __future__ import annotations

import os
from collections import defaultdict

from torch import nn

from qlint.diagnostics import Diagnostic, Related, Severity, Span
from qlint.model.frames import torch_dir
from qlint.verify import integration
from qlint.verify.integration import Target
from qlint.verify.result import Failure, LayerStat, VerifyResult
from qlint.verify.stats import SLOWER, UNCLEAR
from qlint.verify.verdicts import cold_start, layer_verdict

MAX_LISTED = 6


_VERIFY_DIR = os.path.dirname(os.path.abspath(__file__))


def _shape(result: VerifyResult) -> str:
    return "x".join(map(str, result.input_shape))


def _original(target: Target, name: str | None) -> nn.Module | None:
    if name is None:
        return None
    try:
        return target.model.get_submodule(name) if name else target.model
    except AttributeError:
        return None


def module_span(target: Target, name: str | None) -> tuple[Span, tuple[Related, ...]]:
    mod = _original(target, name)
    if mod is None:
        return target.span, ()
    return integration.construction_span(mod, target.checked, target.span)


# ---------------------------------------------------------------- QL601


def _direct(owner: str | None, culprit: str | None) -> bool:
    """Whether a frame of ``owner``'s forward is the culprit's own code or the line calling it."""
    if owner is None or culprit is None:
        return False
    parent = culprit.rsplit(".", 1)[0] if "." in culprit else ""
    return owner in (culprit, parent)


def locate_failure(f: Failure, target: Target) -> tuple[Span, tuple[Related, ...]]:
    checked = {os.path.abspath(p) for p in target.checked}
    mine = [fr for fr in f.frames if os.path.abspath(fr[0]) in checked]

    def library(fr: tuple) -> bool:
        path = os.path.abspath(fr[0])
        return not path.startswith(torch_dir()) and path not in checked and _VERIFY_DIR not in path

    lib = next((fr for fr in f.frames if library(fr)), None)
    related: tuple[Related, ...] = ()
    if lib is not None:
        related = (Related(integration.frame_span(*lib[:5]), f"raised in {lib[5]}"),)
    if mine and (_direct(mine[0][6], f.module) or f.module is None):
        fr = mine[0]
        return integration.frame_span(*fr[:5], display=target.path), related
    span, rel = module_span(target, f.module)
    return span, rel + related


def _predicting(static: list[Diagnostic], f: Failure) -> Diagnostic | None:
    def near(d: Diagnostic) -> bool:
        m, c = d.module, f.module
        return bool(m and c and (m == c or c.startswith(m + ".") or m.startswith(c + ".")))

    same_rule = [d for d in static if d.code == f.rule_hint]
    for group in (
        [d for d in same_rule if near(d)],
        same_rule,
        [d for d in static if near(d) and d.severity.value == "error"],
    ):
        if group:
            return group[0]
    return None


def conversion_failed(f: Failure, target: Target) -> Diagnostic:
    """QL601 with the torch error in plain words, its source line and the static rule that predicts it."""
    span, related = locate_failure(f, target)
    static = integration.static_diagnostics(target.path, target.settings)
    f.static_check = static is not None
    predicted = _predicting(static, f) if static is not None else None
    if predicted is not None:
        f.predicted_by = predicted.code
        related += (Related(predicted.span, f"predicted by {predicted.code} ({predicted.name}): {predicted.message}"),)
    elif static is None:
        f.predicted_by = f.rule_hint
    where = f" at `{f.module}` ({f.module_type})" if f.module else ""
    text = f"conversion failed in {f.phase}{where}: {f.explanation}; torch: {f.error_type}: {f.error}"
    if f.predicted_by:
        from qlint.rules.catalog import RULES

        info = RULES.get(f.predicted_by)
        text += f" (predicted by {f.predicted_by}" + (f" {info.name})" if info else ")")
    return Diagnostic(
        "QL601",
        text,
        span,
        related=related,
        model=target.name,
        module=f.module,
        data=(("phase", f.phase), ("predicted_by", f.predicted_by), ("rule_hint", f.rule_hint)),
    )


# ---------------------------------------------------------------- QL602..QL605


def _layer_words(lay: LayerStat, base: nn.Module) -> str:
    words = f"`{lay.module}` {lay.float_ms:.2f} -> {lay.int8_ms:.2f} ms"
    if lay.slowdown is not None:
        words += f" (int8/float {lay.slowdown.text()})"
    if lay.dilated_grouped:
        try:
            mod = base.get_submodule(lay.module)
            conv = mod if isinstance(mod, nn.modules.conv._ConvNd) else mod[0]
            words += f" (dilated grouped conv: dilation={conv.dilation[0]}, groups={conv.groups}, see QL301)"
        except (AttributeError, TypeError, IndexError):
            words += " (dilated grouped conv, see QL301)"
    return words


def _noise(result: VerifyResult) -> str:
    if result.speedup_spread is None:
        return f"{result.threads} threads"
    return f"{result.threads} threads, float and int8 timed in {result.speedup_spread.n} interleaved pairs"


def measured_diagnostics(result: VerifyResult, target: Target, base: nn.Module) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    engine, shape = result.backend, _shape(result)
    rec = result.recommendation
    spread = result.speedup_spread
    speed = spread.text() if spread else f"{result.speedup:.2f}x" if result.speedup else "-"
    if result.slower_than_float:
        fix = ""
        if rec is not None and rec.speedup_vs_float > 1:
            fix = f"; measured fix: {rec.name} ({rec.int8_ms:.1f} ms, {rec.speedup_vs_float:.2f}x faster than float)"
        out.append(
            Diagnostic(
                "QL605",
                f"the int8 model is slower than float on {engine}: "
                f"{result.int8_ms:.1f} ms vs {result.float_ms:.1f} ms, float/int8 {speed} "
                f"at {shape}, {_noise(result)}{fix}",
                target.span,
                model=target.name,
            )
        )
    elif result.speed_unclear:
        out.append(
            Diagnostic(
                "QL605",
                f"could not tell at this noise level whether the int8 model is slower than float on {engine}: "
                f"float/int8 {speed} (the interquartile range straddles 1) at {shape}, {_noise(result)}; "
                "run again on a quieter machine or with more --repeat",
                target.span,
                model=target.name,
                severity=Severity.INFO,
            )
        )
    verdicts = {x.module: layer_verdict(x, result.int8_ms) for x in result.layers}
    for verdict in (SLOWER, UNCLEAR):
        out += _slow_layers([x for x in result.layers if verdicts[x.module] == verdict], verdict, result, target, base)
    if result.sqnr_db is not None and result.sqnr_db < result.min_sqnr:
        worst = [x for x in result.layers if x.sqnr_db is not None][:3]
        names = ", ".join(f"`{x.module}` {x.sqnr_db:.1f} dB" for x in worst)
        out.append(
            Diagnostic(
                "QL603",
                f"output SQNR {result.sqnr_db:.1f} dB is below {result.min_sqnr:g} dB "
                f"(cosine {result.cosine:.4f})" + (f"; worst layers: {names}" if names else ""),
                target.span,
                model=target.name,
            )
        )
    if cold_start(result):
        steady, cold = result.int8_ms, result.cold_start_ms
        excess = sum(max(0.0, c - steady) for c in cold)
        slow_calls = sum(c >= 1.5 * steady for c in cold)
        calls = ", ".join(f"{c:.1f}" for c in cold)
        where = ", ".join(f"`{n}` +{ms:.1f} ms" for n, ms in result.cold_layers[:3])
        if result.compiled:
            why = "torch.compile (inductor) compiles on the first call"
            remedy = (
                "build an AOTInductor package ahead of time (torch._inductor.aoti_compile_and_package on "
                "torch.export of the converted model) and load it at startup (torch._inductor.aoti_load_package)"
            )
            if result.aot_first_call_ms is not None:
                remedy += (
                    f": measured here, built in {result.aot_build_s:.1f} s, loaded in {result.aot_load_ms:.1f} ms, "
                    f"first call {result.aot_first_call_ms:.1f} ms"
                )
            remedy += "; or run one warm-up forward at startup, before serving"
        else:
            why = f"one-time kernel and weight setup on {engine}"
            remedy = (
                f"run {max(1, slow_calls)} warm-up forward(s) on an input of the deployment shape at startup, "
                "before serving (a new input shape pays again)"
            )
        out.append(
            Diagnostic(
                "QL604",
                f"the first call took {cold[0]:.1f} ms, "
                f"{cold[0] / steady:.1f}x the steady state {steady:.1f} ms "
                f"(first {len(cold)} calls: {calls} ms; {excess:.1f} ms extra in all"
                + (f", most in {where}" if where else "")
                + f"): {why}; {remedy}",
                target.span,
                model=target.name,
            )
        )
    return integration.suppress(out, target.path, target.settings)


def _slow_layers(
    layers: list[LayerStat], verdict: str, result: VerifyResult, target: Target, base: nn.Module
) -> list[Diagnostic]:
    """QL602 per source line: a warning for layers measurably slower in int8, an info for those whose
    pairs disagree (could not tell at this noise level)."""
    groups: dict[tuple, list[LayerStat]] = defaultdict(list)
    spans: dict[tuple, tuple[Span, tuple[Related, ...]]] = {}
    for lay in sorted(layers, key=lambda x: x.float_ms - x.int8_ms):
        span, related = module_span(target, lay.module)
        key = (span, tuple(r.span for r in related))
        groups[key].append(lay)
        spans[key] = (span, related)
    out: list[Diagnostic] = []
    where = f"on {result.backend} at {_shape(result)}"
    for key, lays in groups.items():
        span, related = spans[key]
        listed = "; ".join(_layer_words(x, base) for x in lays[:MAX_LISTED])
        more = f"; and {len(lays) - MAX_LISTED} more" if len(lays) > MAX_LISTED else ""
        if verdict == SLOWER:
            head = (
                f"{len(lays)} layers built here run slower in int8 than in float"
                if len(lays) > 1
                else "runs slower in int8 than in float"
            )
        else:
            head = (
                f"could not tell at this noise level whether {len(lays)} layers built here run slower in int8"
                if len(lays) > 1
                else "could not tell at this noise level whether it runs slower in int8 than in float"
            )
        out.append(
            Diagnostic(
                "QL602",
                f"{head} {where}: {listed}{more}",
                span,
                related=related,
                model=target.name,
                module=lays[0].module,
                data=(("modules", tuple(x.module for x in lays)),),
                severity=None if verdict == SLOWER else Severity.INFO,
            )
        )
    return out
