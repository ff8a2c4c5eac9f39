"""``qlint verify`` for one model: convert for real, then measure accuracy, speed and remedies."""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from qlint.verify import accuracy, integration, remedies, timing
from qlint.verify.calibrate import Batch, CalibrationError, split_batches
from qlint.verify.diagnose import conversion_failed, measured_diagnostics
from qlint.verify.errors import to_failure
from qlint.verify.flows import (
    Flow,
    StepFailed,
    check_flow_available,
    fuse_eager,
    make_flow,
    quiet,
    run_tracked,
    usable_engines,
    use_engine,
)
from qlint.verify.integration import BadInput, Target
from qlint.verify.result import Candidate, LayerStat, VerifyOptions, VerifyResult

Step = Callable[[str], None]

SLOW_LAYER_RATIO = 1.1  # QL602: int8 at least 10% slower than float ...
SLOW_LAYER_MIN_MS = 0.05  # ... and at least this much slower (timer noise on tiny layers)
SLOW_LAYER_SHARE = 0.005  # ... and at least this share of the whole int8 latency


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Measured:
    """A converted candidate (None when it could not be built) and its numbers."""

    def __init__(self, candidate: Candidate, flow: Flow, converted: nn.Module | None) -> None:
        self.candidate = candidate
        self.flow = flow
        self.converted = converted
        self.cold_layers: list[dict[str, float]] = []  # per first call: layer -> ms


def verify(target: Target, options: VerifyOptions, step: Step | None = None) -> VerifyResult:
    """Run the real flow on ``target`` and measure it (see the issue's list of what is reported)."""
    step = step or (lambda _msg: None)
    check_flow_available(options.flow)
    engine = options.backend or torch.backends.quantized.engine
    if options.flow != "pt2e" and engine not in usable_engines():
        raise BadInput(f"engine {engine!r} is not usable on this host (usable: {', '.join(usable_engines())})")
    result = VerifyResult(
        model=target.name,
        path=target.path,
        backend=engine if options.flow != "pt2e" else "x86-inductor",
        flow=options.flow,
        input_shape=tuple(options.input_shape),
        threads=options.threads,
        min_sqnr=options.min_sqnr,
    )
    with threads(options.threads), quiet():
        torch.manual_seed(options.seed)
        _run(target, options, engine, result, step)
    return result


def _run(target: Target, options: VerifyOptions, engine: str, result: VerifyResult, step: Step) -> None:
    try:
        calib, held = split_batches(
            options.calibration,
            options.input_shape,
            options.eval_batches,
            options.seed,
            [_folder(target.path)],
        )
    except CalibrationError as exc:
        raise BadInput(str(exc)) from exc
    float_model = target.model.eval()
    step("float model")
    try:
        ref = accuracy.outputs(float_model, held)
    except Exception as exc:
        raise BadInput(
            f"the float model does not run on input {'x'.join(map(str, options.input_shape))}: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        ) from exc
    if options.random_weights and accuracy.vanished(ref):
        count = accuracy.reestimate_batchnorm(float_model, calib)
        if count:
            ref = accuracy.outputs(float_model, held)
            result.notes.append(
                f"random weights: the float output was ~0 (activations vanish layer after layer), so the "
                f"running statistics of {count} BatchNorm layers were re-estimated on the calibration batches"
            )

    try:
        if options.flow == "eager":
            base, result.fusion = fuse_eager(float_model)
        else:
            base, result.fusion = (
                float_model,
                f"{'prepare_fx' if options.flow == 'fx' else 'the quantizer'} fuses",
            )
        step(f"convert ({engine})")
        main = measure(make_flow(options.flow, engine), base, calib, held, ref, options, cold=True, step=step)
    except StepFailed as failed:
        result.failure = to_failure(failed)
        result.diagnostics = integration.suppress(
            [conversion_failed(result.failure, target)], target.path, target.settings
        )
        return
    result.converted = True
    cand = main.candidate
    cand.baseline = True
    result.sqnr_db, result.cosine = cand.sqnr_db, cand.cosine
    result.cold_start_ms = cand.cold_start_ms
    step("float vs int8 latency")
    time_all(float_model, [main], held[0], options, result)

    if options.flow != "pt2e":
        step("per-layer time and SQNR")
        result.layers = layer_stats(base, main, held[0], options)
    slow = [lay.module for lay in result.layers if is_slow(lay, result.int8_ms)]
    if cold_start(result):
        result.cold_layers = cold_breakdown(main, result)

    # QL301's condition: dilated grouped convs on an engine whose int8 kernels run them slowly
    ql301 = engine in ("fbgemm", "x86") and bool(remedies.dilated_grouped_names(base))
    wants = options.remedies == "always" or (
        options.remedies == "auto" and bool(result.slower_than_float or slow or ql301)
    )
    measured = [main]
    if wants:
        measured += try_remedies(base, main, slow, result, calib, held, ref, options, step)
        step("latency of every candidate, interleaved")
        time_all(float_model, [m for m in measured if m.converted is not None], held[0], options, result)
    result.candidates = [m.candidate for m in measured]
    if result.float_ms:
        result.recommendation = remedies.recommend(
            result.candidates, result.float_ms, options.min_sqnr, options.flow, engine
        )
    result.diagnostics = measured_diagnostics(result, target, base)


def time_all(
    float_model: nn.Module,
    measured: Sequence[Measured],
    batch: Batch,
    options: VerifyOptions,
    result: VerifyResult,
) -> None:
    """Median latency of float and every candidate, measured round-robin in one loop."""
    models = {"float": (float_model, None)}
    models.update({str(i): (m.converted, m.flow.engine) for i, m in enumerate(measured)})
    times = timing.interleaved_ms(models, batch, options.warmup, options.repeats)
    result.float_ms = statistics.median(times["float"])
    for i, m in enumerate(measured):
        m.candidate.int8_ms = statistics.median(times[str(i)])
    result.int8_ms = measured[0].candidate.int8_ms


def measure(
    flow: Flow,
    base: nn.Module,
    calib: Sequence[Batch],
    held: Sequence[Batch],
    ref: Sequence[torch.Tensor],
    options: VerifyOptions,
    cold: bool,
    step: Step,
    name: str | None = None,
) -> Measured:
    """prepare -> calibrate -> convert, then the first calls (``cold``) and SQNR of the int8 model."""
    converted = flow.quantize(base, calib[0], calib)
    cold_layers: list[dict[str, float]] = []
    label = "x86-inductor" if flow.name == "pt2e" else flow.engine
    cand = Candidate(name or f"{label} (as configured)", flow.engine, flow.float_modules)
    with use_engine(flow.engine):
        try:
            if cold:
                # the first calls of the fresh model, with per-layer hooks: where the extra time goes
                names = list(accuracy.leaves(converted)) if flow.name != "pt2e" else []
                with torch.no_grad(), timing.LayerTimer(converted, names) as timer:
                    cand.cold_start_ms = [timer.call(converted, held[0]) for _ in range(options.cold_calls)]
                cold_layers = timer.calls
            outs = accuracy.outputs(converted, held)
        except Exception as exc:
            # the first quantized forward raised: run it again under the module tracker for the culprit
            run_tracked(converted, "forward", [held[0]])
            raise StepFailed("forward", exc, model=converted) from exc
        try:
            cand.sqnr_db, cand.cosine = accuracy.compare(ref, outs)
        except ValueError as exc:
            raise StepFailed("forward", exc, model=converted) from exc
    measured = Measured(cand, flow, converted)
    measured.cold_layers = cold_layers
    return measured


def layer_stats(base: nn.Module, main: Measured, batch: Batch, options: VerifyOptions) -> list[LayerStat]:
    """Per layer (same qualified name in float and int8): float ms, int8 ms, SQNR; worst SQNR first."""
    float_leaves = accuracy.leaves(base)
    int8_leaves = accuracy.leaves(main.converted)
    names = [n for n in int8_leaves if n in float_leaves]
    f_ms, q_ms = timing.layer_ms_pair(base, main.converted, main.flow.engine, batch, names, options.layer_repeats)
    with use_engine(main.flow.engine):
        try:
            sq = accuracy.layer_sqnr(base, main.converted, batch)
        except Exception:
            sq = {}
    dil = set(remedies.dilated_grouped_names(base))
    stats = [
        LayerStat(
            module=n,
            module_type=type(int8_leaves[n]).__name__,
            float_ms=f_ms.get(n),
            int8_ms=q_ms.get(n),
            sqnr_db=sq.get(n),
            dilated_grouped=n in dil or any(d.startswith(n + ".") for d in dil),
        )
        for n in names
    ]
    return sorted(stats, key=lambda s: (s.sqnr_db is None, s.sqnr_db if s.sqnr_db is not None else 0.0))


def is_slow(layer: LayerStat, total_ms: float | None = None) -> bool:
    """QL602: int8 10% slower than float, by at least 0.05 ms and 0.5% of the whole int8 model."""
    if layer.float_ms is None or layer.int8_ms is None:
        return False
    floor = max(SLOW_LAYER_MIN_MS, SLOW_LAYER_SHARE * (total_ms or 0.0))
    return layer.int8_ms > layer.float_ms * SLOW_LAYER_RATIO and layer.int8_ms - layer.float_ms >= floor


COLD_RATIO = 2.0  # QL604: the first call costs at least this many steady-state calls ...
COLD_MIN_MS = 5.0  # ... and at least this much more in all


def cold_start(result: VerifyResult) -> bool:
    steady, cold = result.int8_ms, result.cold_start_ms
    if not steady or not cold:
        return False
    excess = sum(max(0.0, c - steady) for c in cold)
    return cold[0] >= COLD_RATIO * steady and excess >= COLD_MIN_MS


def cold_breakdown(main: Measured, result: VerifyResult) -> list[tuple[str, float]]:
    """Where the first calls' extra time goes: per layer, first calls minus steady state; largest first."""
    steady = {lay.module: lay.int8_ms for lay in result.layers if lay.int8_ms is not None}
    extra = {
        name: sum(call.get(name, 0.0) for call in main.cold_layers) - len(main.cold_layers) * ms
        for name, ms in steady.items()
    }
    return sorted(((n, ms) for n, ms in extra.items() if ms > 0), key=lambda x: -x[1])[:5]


def try_remedies(
    base: nn.Module,
    main: Measured,
    slow: Sequence[str],
    result: VerifyResult,
    calib: Sequence[Batch],
    held: Sequence[Batch],
    ref: Sequence[torch.Tensor],
    options: VerifyOptions,
    step: Step,
) -> list[Measured]:
    """Every other usable engine, and float islands on the given engine: each measured in this run."""
    engine, flow = main.flow.engine, options.flow
    plans: list[tuple[str, str, tuple[str, ...]]] = []
    if flow != "pt2e":
        plans += [(f"{e} engine", e, ()) for e in usable_engines() if e != engine]
    for label, names in remedies.island_sets(base, result.layers, slow):
        plans.append((f"{engine if flow != 'pt2e' else 'pt2e'}, {label}", engine, names))
    out: list[Measured] = []
    for label, eng, names in plans:
        step(f"remedy: {label}")
        flow_obj = make_flow(flow, eng, names)
        try:
            out.append(measure(flow_obj, base, calib, held, ref, options, False, step, label))
            continue
        except StepFailed as failed:
            error = f"{failed.phase}: {type(failed.cause).__name__}: {_first(failed.cause)}"
        except Exception as exc:  # a candidate that cannot run is reported, never fatal
            error = f"{type(exc).__name__}: {_first(exc)}"
        out.append(Measured(Candidate(label, eng, names, error=error), flow_obj, None))
    return out


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else ""


def _folder(path: str) -> str:
    import os

    return os.path.dirname(os.path.abspath(path))


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
