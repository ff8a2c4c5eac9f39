"""The real quantization flows: eager, FX and PT2E, each as prepare -> calibrate -> convert."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from qlint.verify.calibrate import Batch

FLOWS = ("eager", "fx", "pt2e")
PT2E_HINT = "the pt2e flow needs torchao, an optional extra: pip install qlint[pt2e]"


class MissingExtra(RuntimeError):
    """An optional dependency is not installed (exit 2 with the install command)."""


class StepFailed(Exception):
    """A flow step raised: ``phase`` is fuse | prepare | calibrate | convert | forward."""

    def __init__(
        self, phase: str, cause: BaseException, stack: Sequence[str] = (), model: nn.Module | None = None
    ) -> None:
        super().__init__(f"{phase}: {type(cause).__name__}: {cause}")
        self.phase = phase
        self.cause = cause
        self.stack = tuple(stack)  # qualified names of the modules running when it raised, outermost first
        self.model = model  # the model the step ran on (names for a culprit found in the traceback)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence torch.ao.quantization's deprecation and observer warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def use_engine(engine: str | None) -> Iterator[None]:
    old = torch.backends.quantized.engine
    if engine:
        torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


@functools.cache
def usable_engines() -> tuple[str, ...]:
    """Engines of ``supported_engines`` that run a tiny quantized conv on this host."""
    usable = []
    for engine in torch.backends.quantized.supported_engines:
        if engine == "none":
            continue
        try:
            with quiet(), use_engine(engine), torch.no_grad():
                conv = torch.ao.nn.quantized.Conv2d(2, 2, 1)
                conv(torch.quantize_per_tensor(torch.randn(1, 2, 3, 3), 0.1, 128, torch.quint8))
        except Exception:
            continue
        usable.append(engine)
    return tuple(usable)


class ModuleTracker:
    """Forward pre/post hooks that keep the stack of modules currently running (culprit of a crash)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.stack: list[str] = []
        self.handles: list = []

    def __enter__(self) -> ModuleTracker:
        for name, mod in self.model.named_modules():
            if "activation_post_process" in name:
                continue
            self.handles.append(mod.register_forward_pre_hook(functools.partial(self._enter, name)))
            self.handles.append(mod.register_forward_hook(functools.partial(self._leave, name)))
        return self

    def _enter(self, name: str, *_: object) -> None:
        self.stack.append(name)

    def _leave(self, name: str, *_: object) -> None:
        if self.stack and self.stack[-1] == name:
            self.stack.pop()

    def reset(self) -> None:
        self.stack.clear()

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def run_tracked(model: nn.Module, phase: str, batches: Sequence[Batch]) -> None:
    """Run ``batches`` through ``model``; on a crash raise StepFailed with the running modules."""
    with ModuleTracker(model) as tracker, torch.no_grad():
        for batch in batches:
            tracker.reset()
            try:
                model(*batch)
            except Exception as exc:
                raise StepFailed(phase, exc, tracker.stack, model) from exc


# ---------------------------------------------------------------- fusion (eager)


def derived_fusion(model: nn.Module) -> list[list[str]]:
    """The fusable chains qlint derives: QL201's own matcher (torch's fuser patterns) on the module's QGraph."""
    from qlint.model.analysis import analyze_module
    from qlint.model.fusion import fusion_chains
    from qlint.model.trace import TraceFailure

    try:
        with quiet():
            return fusion_chains(analyze_module(model))
    except TraceFailure:
        return []


def fuse_eager(model: nn.Module) -> tuple[nn.Module, str]:
    """A fused eval() copy: the model's ``fuse_model()`` if it has one, else the chains qlint derives."""
    fused = copy.deepcopy(model).eval()
    try:
        with quiet():
            if callable(getattr(fused, "fuse_model", None)):
                fused.fuse_model()
                return fused, "fuse_model()"
            chains = derived_fusion(fused)
            if chains:
                torch.ao.quantization.fuse_modules(fused, chains, inplace=True)
                return fused, f"derived ({len(chains)} chains)"
    except Exception as exc:
        raise StepFailed("fuse", exc, model=fused) from exc
    return fused, "none"


def wrap_float(model: nn.Module, name: str) -> None:
    """Keep ``name`` float in eager mode: ``qconfig = None`` and DeQuantStub/QuantStub around it."""
    from torch.ao.quantization import DeQuantStub, QuantStub

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    module = parent.get_submodule(child)
    module.qconfig = None
    setattr(parent, child, nn.Sequential(DeQuantStub(), module, QuantStub()))


# ---------------------------------------------------------------- the flows


class Flow:
    """prepare -> calibrate -> convert for one flow and engine, with optional float modules (kept float)."""

    name = "eager"

    def __init__(self, engine: str, float_modules: Sequence[str] = (), compile: bool = False) -> None:
        self.engine = engine
        self.float_modules = tuple(float_modules)
        self.compile = compile  # run the converted model under torch.compile (inductor), as PT2E users do

    @property
    def label(self) -> str:
        return self.engine

    def prepare(self, model: nn.Module, example: Batch) -> nn.Module:
        raise NotImplementedError

    def convert(self, prepared: nn.Module) -> nn.Module:
        raise NotImplementedError

    def quantize(self, model: nn.Module, example: Batch, calibration: Sequence[Batch]) -> nn.Module:
        """prepare (on a copy) -> calibrate -> convert; the converted model has not been called yet."""
        with quiet(), use_engine(self.engine):
            try:
                prepared = self.prepare(model, example)
            except Exception as exc:
                raise StepFailed("prepare", exc, model=model) from exc
            run_tracked(prepared, "calibrate", calibration)
            try:
                return self.convert(prepared)
            except Exception as exc:
                raise StepFailed("convert", exc, model=prepared) from exc


class EagerFlow(Flow):
    """Input: the fused float model. qconfig for the engine, float islands, prepare, convert."""

    name = "eager"

    def prepare(self, model: nn.Module, example: Batch) -> nn.Module:
        from torch.ao.quantization import get_default_qconfig, prepare

        m = copy.deepcopy(model).eval()
        m.qconfig = get_default_qconfig(self.engine)
        for name in self.float_modules:
            wrap_float(m, name)
        return prepare(m, inplace=True)

    def convert(self, prepared: nn.Module) -> nn.Module:
        from torch.ao.quantization import convert

        return convert(prepared, inplace=True)


class FxFlow(Flow):
    name = "fx"

    def prepare(self, model: nn.Module, example: Batch) -> nn.Module:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        mapping = get_default_qconfig_mapping(self.engine)
        for name in self.float_modules:
            mapping.set_module_name(name, None)
        return prepare_fx(copy.deepcopy(model).eval(), mapping, example)

    def convert(self, prepared: nn.Module) -> nn.Module:
        from torch.ao.quantization.quantize_fx import convert_fx

        return convert_fx(prepared)


def _torchao_pt2e() -> tuple:
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # torchao's import logs registration notices through torch's logger
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as exc:
        raise MissingExtra(PT2E_HINT) from exc
    finally:
        torch_log.setLevel(level)
    return prepare_pt2e, convert_pt2e, X86InductorQuantizer, get_default_x86_inductor_quantization_config


class Pt2eFlow(Flow):
    """torch.export + torchao's prepare_pt2e/convert_pt2e with the X86 inductor quantizer."""

    name = "pt2e"

    @property
    def label(self) -> str:
        return "x86-inductor" + ("" if self.compile else ", not compiled")

    def prepare(self, model: nn.Module, example: Batch) -> nn.Module:
        prepare_pt2e, _, quantizer_cls, default_config = _torchao_pt2e()
        quantizer = quantizer_cls()
        quantizer.set_global(default_config())
        for name in self.float_modules:
            quantizer.set_module_name_qconfig(name, None)
        exported = torch.export.export(copy.deepcopy(model).eval(), tuple(example)).module()
        return prepare_pt2e(exported, quantizer)

    def convert(self, prepared: nn.Module) -> nn.Module:
        _, convert_pt2e, _, _ = _torchao_pt2e()
        return convert_pt2e(prepared)


def make_flow(flow: str, engine: str, float_modules: Sequence[str] = (), compile: bool = False) -> Flow:
    cls = {"eager": EagerFlow, "fx": FxFlow, "pt2e": Pt2eFlow}[flow]
    return cls(engine, float_modules, compile)


def pt2e_available() -> bool:
    try:
        _torchao_pt2e()
    except MissingExtra:
        return False
    return True


@contextlib.contextmanager
def inductor_freezing() -> Iterator[None]:
    """``torch._inductor.config.freezing = True`` while verify runs (the PT2E x86 flow's setting)."""
    cpp_log = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on a CPU host
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)
    try:
        try:
            import torch._inductor.config as inductor_config
        except Exception:  # noqa: BLE001 - no inductor: compiling will say so
            yield
            return
        with inductor_config.patch(freezing=True):
            yield
    finally:
        cpp_log.setLevel(level)


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` with inductor; compiles on its first call."""
    return torch.compile(model)


def script_frozen(model: nn.Module, example: Batch) -> Callable:
    """``torch.jit.freeze(torch.jit.trace(model, example))``: an eager/FX int8 model as one TorchScript graph,
    without a Python call per layer. TorchScript is deprecated in torch 2.x (it warns) but still runs."""
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(model.eval(), tuple(example)))


def aot_package(model: nn.Module, example: Batch, folder: str) -> tuple[Callable, float, float]:
    """AOTInductor: (the loaded package, build seconds, load ms). Built ahead of time with
    ``aoti_compile_and_package`` from ``torch.export`` of the model; loaded with ``aoti_load_package``."""
    import os
    import time

    t0 = time.perf_counter()
    exported = torch.export.export(model, tuple(example))
    path = torch._inductor.aoti_compile_and_package(exported, package_path=os.path.join(folder, "model.pt2"))
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = torch._inductor.aoti_load_package(path)
    return loaded, built, (time.perf_counter() - t0) * 1000


def check_flow_available(flow: str) -> None:
    """Raise MissingExtra before any work when the flow's optional dependency is missing."""
    if flow == "pt2e":
        _torchao_pt2e()
