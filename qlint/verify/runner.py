"""``qlint verify`` for one model: convert for real, then measure accuracy, speed and remedies."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from qlint.source.file import SourceFile, UnreadableFile
from qlint.source.pragmas import malformed_pragmas
from qlint.verify import accuracy, integration, remedies, stats, timing
from qlint.verify.calibrate import Batch, CalibrationError, split_batches
from qlint.verify.diagnose import conversion_failed, measured_diagnostics, module_span
from qlint.verify.errors import first_line, to_failure
from qlint.verify.flows import (
    Flow,
    StepFailed,
    aot_package,
    check_flow_available,
    compiled,
    fuse_eager,
    inductor_freezing,
    make_flow,
    pt2e_available,
    quiet,
    run_tracked,
    script_frozen,
    usable_engines,
    use_engine,
)
from qlint.verify.integration import BadInput, Target
from qlint.verify.result import Candidate, LayerStat, VerifyOptions, VerifyResult
from qlint.verify.verdicts import cold_start, is_slow, suspect

Step = Callable[[str], None]
SLOW_DILATED_ENGINES = ("fbgemm", "x86")  # QL301: engines whose int8 dilated grouped convs are slow


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Measured:
    """A converted candidate (None when it could not be built), what is timed (compiled or not), its numbers."""

    def __init__(self, candidate: Candidate, flow: Flow, converted: nn.Module | None) -> None:
        self.candidate = candidate
        self.flow = flow
        self.converted = converted
        self.runnable: Callable | None = converted  # torch.compile(converted) when compiled
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
        fail_on=options.fail_on,
    )
    result.notes += pragma_notes(target.path, options.input_shape)
    with threads(options.threads), quiet(), inductor_freezing():
        torch.manual_seed(options.seed)
        _run(target, options, engine, result, step)
    return result


def pragma_notes(path: str, shape: Sequence[int]) -> list[str]:
    """A note per malformed ``# qlint:`` pragma of the file (verify went on with ``shape``)."""
    try:
        source = SourceFile.read(path)
    except UnreadableFile:
        return []
    used = "x".join(map(str, shape))
    return [f"{d.span}: {d.code} {d.message} (verify ran on {used})" for d in malformed_pragmas(source)]


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
            f"{type(exc).__name__}: {first_line(exc)}"
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
        flow = make_flow(options.flow, engine, compile=options.flow == "pt2e" and options.compile)
        main = measure(flow, base, calib, held, ref, options, cold=True, step=step, notes=result.notes)
    except StepFailed as failed:
        result.failure = to_failure(failed)
        result.diagnostics = integration.suppress(
            [conversion_failed(result.failure, target)], target.path, target.settings
        )
        return
    result.converted = True
    cand = main.candidate
    cand.baseline = True
    result.compiled = cand.compiled
    result.sqnr_db, result.cosine = cand.sqnr_db, cand.cosine
    result.cold_start_ms = cand.cold_start_ms
    step("float vs int8 latency")
    time_all(float_model, [main], held[0], options, result)

    if options.flow != "pt2e":
        step("per-layer time and SQNR")
        result.layers = layer_stats(base, main, held[0], options, target)
    slow = [lay.module for lay in result.layers if is_slow(lay, result.int8_ms)]
    if cold_start(result):
        result.cold_layers = cold_breakdown(main, result)
        if result.compiled:
            step("AOTInductor package (the remedy for the compile on the first call)")
            aot_first_call(main, held[0], result)

    # QL301's condition: dilated grouped convs on an engine whose int8 kernels run them slowly
    ql301 = engine in SLOW_DILATED_ENGINES and bool(remedies.dilated_grouped_names(base))
    wants = options.remedies == "always" or (
        options.remedies == "auto" and bool(result.slower_than_float or result.speed_unclear or slow or ql301)
    )
    measured = [main]
    if wants:
        measured += try_remedies(float_model, base, main, slow, result, calib, held, ref, options, step)
        step("latency of every candidate, interleaved")
        time_all(float_model, [m for m in measured if m.runnable is not None], held[0], options, result)
    result.candidates = [m.candidate for m in measured]
    if result.float_ms:
        for c in result.candidates:
            c.suspect = suspect(remedies.speed(c, result.float_ms)) if c.int8_ms else None
        result.recommendation = remedies.recommend(
            result.candidates, result.float_ms, options.min_sqnr, options.flow, engine
        )
    result.diagnostics = measured_diagnostics(result, target, base)
    result.diagnosed = True


def time_all(
    float_model: nn.Module,
    measured: Sequence[Measured],
    batch: Batch,
    options: VerifyOptions,
    result: VerifyResult,
) -> None:
    """Float and every candidate in interleaved rounds: medians, and float / int8 taken pair by pair."""
    models: dict[str, tuple[Callable, str | None]] = {"float": (float_model, None)}
    models.update({str(i): (m.runnable, m.flow.engine) for i, m in enumerate(measured)})
    times = timing.interleaved_ms(models, batch, options.warmup, options.repeats)
    result.float_ms = statistics.median(times["float"])
    for i, m in enumerate(measured):
        m.candidate.int8_ms = statistics.median(times[str(i)])
        m.candidate.speedup = stats.speedup(times["float"], times[str(i)])
    result.int8_ms = measured[0].candidate.int8_ms
    result.speedup_spread = measured[0].candidate.speedup


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
    notes: list[str] | None = None,
) -> Measured:
    """prepare -> calibrate -> convert (-> torch.compile), then the first calls (``cold``) and SQNR.

    When torch.compile cannot run here, one note says so and the un-compiled model is measured."""
    converted = flow.quantize(base, calib[0], calib)
    cand = Candidate(name or f"{flow.label} (as configured)", flow.engine, flow.float_modules)
    cand.compiled = flow.compile
    m = Measured(cand, flow, converted)
    with use_engine(flow.engine):
        if flow.compile:
            m.runnable = compiled(converted)
            try:
                return _scored(m, ref, _first_calls(m, held, options, cold))
            except StepFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - no C++ compiler, an inductor error...
                if notes is not None:
                    notes.append(
                        f"torch.compile could not run here ({type(exc).__name__}: {first_line(exc, 160)}); "
                        "measured the un-compiled converted model"
                    )
                cand.compiled = False
                if name is None:
                    cand.name = f"{flow.label}, not compiled (as configured)"
                m.runnable, m.cold_layers, cand.cold_start_ms = converted, [], []
        try:
            outs = _first_calls(m, held, options, cold)
        except Exception as exc:
            # the first quantized forward raised: run it again under the module tracker for the culprit
            run_tracked(converted, "forward", [held[0]])
            raise StepFailed("forward", exc, model=converted) from exc
        return _scored(m, ref, outs)


def _first_calls(m: Measured, held: Sequence[Batch], options: VerifyOptions, cold: bool) -> list[torch.Tensor]:
    """The first calls of the fresh model one by one (``cold``: with per-layer hooks, where the extra time
    goes; a compiled candidate: its first call, the compile), then the held-out outputs."""
    with torch.no_grad():
        if cold:
            names = list(accuracy.leaves(m.converted)) if m.flow.name != "pt2e" else []
            with timing.LayerTimer(m.converted, names) as timer:
                m.candidate.cold_start_ms = [timer.call(m.runnable, held[0]) for _ in range(options.cold_calls)]
            m.cold_layers = timer.calls
        elif m.candidate.compiled:
            m.candidate.cold_start_ms = [timing.call_ms(m.runnable, held[0])]
    return accuracy.outputs(m.runnable, held)


def _scored(m: Measured, ref: Sequence[torch.Tensor], outs: list[torch.Tensor]) -> Measured:
    try:
        m.candidate.sqnr_db, m.candidate.cosine = accuracy.compare(ref, outs)
    except ValueError as exc:
        raise StepFailed("forward", exc, model=m.converted) from exc
    return m


def aot_first_call(main: Measured, batch: Batch, result: VerifyResult) -> None:
    """QL604's remedy for a compiled model, measured: an AOTInductor package built ahead of time, then
    loaded and called; its first call is what a service pays at startup instead of the compile."""
    try:
        with tempfile.TemporaryDirectory(prefix="qlint-aoti-") as folder, torch.no_grad():
            loaded, built_s, load_ms = aot_package(main.converted, batch, folder)
            t0 = time.perf_counter()
            loaded(*batch)
            result.aot_first_call_ms = (time.perf_counter() - t0) * 1000
            result.aot_load_ms = load_ms
            result.aot_build_s = built_s
    except Exception as exc:  # noqa: BLE001 - the remedy could not be measured: say so, go on
        result.notes.append(f"AOTInductor could not build a package here ({type(exc).__name__}: {first_line(exc)})")


def layer_stats(
    base: nn.Module, main: Measured, batch: Batch, options: VerifyOptions, target: Target | None = None
) -> list[LayerStat]:
    """Per layer (same qualified name in float and int8; stubs are not layers): median float and int8 ms,
    their ratio pair by pair, SQNR, where the file builds it; worst SQNR first."""
    float_leaves = accuracy.leaves(base)
    int8_leaves = accuracy.leaves(main.converted)
    names = [n for n in int8_leaves if n in float_leaves]
    f_ms, q_ms = timing.layer_rounds(base, main.converted, main.flow.engine, batch, names, options.layer_repeats)
    with use_engine(main.flow.engine):
        try:
            sq = accuracy.layer_sqnr(base, main.converted, batch)
        except Exception:
            sq = {}
    dil = set(remedies.dilated_grouped_names(base))
    out = []
    for n in names:
        f, q = f_ms.get(n), q_ms.get(n)
        ratios = stats.pair_ratios(q, f) if f and q else []
        out.append(
            LayerStat(
                module=n,
                module_type=type(int8_leaves[n]).__name__,
                float_ms=statistics.median(f) if f else None,
                int8_ms=statistics.median(q) if q else None,
                sqnr_db=sq.get(n),
                dilated_grouped=n in dil or any(d.startswith(n + ".") for d in dil),
                slowdown=stats.Spread.of(ratios) if ratios else None,
                source=_source(target, n),
            )
        )
    return sorted(out, key=lambda s: (s.sqnr_db is None, s.sqnr_db if s.sqnr_db is not None else 0.0))


def _source(target: Target | None, name: str) -> str | None:
    """``path:line`` where the checked file builds the layer (None when only the model's line is known)."""
    if target is None:
        return None
    try:
        span, _ = module_span(target, name)
    except Exception:  # noqa: BLE001 - a layer with no construction frame
        return None
    return f"{span.path}:{span.line}"


def cold_breakdown(main: Measured, result: VerifyResult) -> list[tuple[str, float]]:
    """Where the first calls' extra time goes: per layer, first calls minus steady state; largest first."""
    steady = {lay.module: lay.int8_ms for lay in result.layers if lay.int8_ms is not None}
    extra = {
        name: sum(call.get(name, 0.0) for call in main.cold_layers) - len(main.cold_layers) * ms
        for name, ms in steady.items()
    }
    return sorted(((n, ms) for n, ms in extra.items() if ms > 0), key=lambda x: -x[1])[:5]


def try_remedies(
    float_model: nn.Module,
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
    """Every other usable engine, float islands on the given engine and, with torchao, PT2E compiled with
    inductor (as is, and with the slow layers kept float): each measured in this run."""
    engine, flow = main.flow.engine, options.flow
    # (label, flow, engine, float modules, the model the flow starts from)
    plans: list[tuple[str, str, str, tuple[str, ...], nn.Module]] = []
    if flow != "pt2e":
        plans += [(f"{e} engine", flow, e, (), base) for e in usable_engines() if e != engine]
    for label, names in remedies.island_sets(base, result.layers, slow):
        plans.append((f"{engine if flow != 'pt2e' else 'pt2e'}, {label}", flow, engine, names, base))
    if flow != "pt2e" and options.compile and pt2e_available():
        plans.append(("pt2e x86-inductor, compiled", "pt2e", engine, (), float_model))
        keep = tuple(dict.fromkeys((*remedies.dilated_grouped_names(float_model), *slow)))
        if keep:
            plans.append(("pt2e x86-inductor, compiled, slow layers kept float", "pt2e", engine, keep, float_model))
    out: list[Measured] = []
    for label, flow_name, eng, names, start in plans:
        step(f"remedy: {label}")
        flow_obj = make_flow(flow_name, eng, names, compile=flow_name == "pt2e" and options.compile)
        try:
            m = measure(flow_obj, start, calib, held, ref, options, False, step, label, result.notes)
        except StepFailed as failed:
            m = Measured(Candidate(label, eng, names, error=_failed(failed)), flow_obj, None)
        except Exception as exc:  # a candidate that cannot run is reported, never fatal
            m = Measured(Candidate(label, eng, names, error=f"{type(exc).__name__}: {first_line(exc, 160)}"),
                         flow_obj, None)  # fmt: skip
        if flow_name != flow:
            m.candidate.flow = flow_name
        out.append(m)
    if flow != "pt2e":
        engines = [m for m in [main, *out] if m.runnable is not None and not m.candidate.float_modules]
        out += [scripted_twin(m, held, ref, step) for m in engines if m.candidate.flow is None]
    return out


def scripted_twin(m: Measured, held: Sequence[Batch], ref: Sequence[torch.Tensor], step: Step) -> Measured:
    """The same converted model as one frozen TorchScript graph (no Python call per layer): the per-layer
    overhead of eager int8 is part of what a user measures, and this removes it."""
    engine = m.candidate.engine
    label = f"{m.candidate.name.removesuffix(' (as configured)')}, TorchScript-frozen"
    step(f"remedy: {label}")
    twin = Measured(Candidate(label, engine, scripted=True), m.flow, m.converted)
    try:
        with use_engine(engine):
            twin.runnable = script_frozen(m.converted, held[0])
            return _scored(twin, ref, accuracy.outputs(twin.runnable, held))
    except Exception as exc:  # noqa: BLE001 - a model TorchScript cannot trace is reported, never fatal
        twin.runnable = None
        twin.candidate.error = f"{type(exc).__name__}: {first_line(exc, 160)}"
        return twin


def _failed(failed: StepFailed) -> str:
    return f"{failed.phase}: {type(failed.cause).__name__}: {first_line(failed.cause, 160)}"


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))
