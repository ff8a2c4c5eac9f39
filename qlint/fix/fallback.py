"""``qlint emit``'s measured float fallback: what the fix loop leaves and still fails at the first int8 forward.

The emitted model is quantized for real (the eager flow a user runs: ``fuse_model()``, the engine's default qconfig,
``prepare``, two calibration batches, ``convert``, one forward). When the forward raises, the modules running at
that moment say where: the innermost one is the culprit, and its class is moved one step towards float:

1. *float code*: the class's own code runs in float and each layer it calls is quantized on its own (a QuantStub
   before, a DeQuantStub after): attention's ``q @ k.transpose(-2, -1)``, ``x * self.gamma``, ``x + pos_embed``
   stay float while its ``nn.Linear`` layers stay int8;
2. *float layer*: the whole layer runs in float (``qconfig = None``) between a DeQuantStub and a QuantStub;
3. then the class of the module that called it, and so on up to the root (a model whose root must run in float is
   not quantized: the search gives up).

A torch layer that ``convert`` swaps (a quantized conv given a float tensor) moves its caller; one that it does not
swap (``nn.SiLU`` given a quantized tensor) becomes a float layer. Each round is one real conversion, so the search
stops after ``ROUNDS`` rounds or ``BUDGET`` seconds. The hooks live in ``build_model()`` (``float_fallback``): the
stubs hold no state and are the identity before ``convert``, so the state_dict loads and the float outputs stay
the original's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

ROUNDS = 24
TRANSPOSED_PER_CHANNEL = "Per channel weight observer is not supported yet for ConvTranspose"
BUDGET = 300.0  # seconds of real conversions (a loaded machine takes minutes for a ViT)

FLOAT_FALLBACK = '''
def _fallback_in(stubs: nn.ModuleDict, quantize: bool, module: nn.Module, args):
    if isinstance(args, torch.Tensor):
        if quantize:
            return stubs.quant(args) if args.is_floating_point() else args
        return stubs.dequant(args) if args.is_quantized else args
    if type(args) in (tuple, list):
        return type(args)(_fallback_in(stubs, quantize, module, a) for a in args)
    if isinstance(args, dict):
        return type(args)((k, _fallback_in(stubs, quantize, module, v)) for k, v in args.items())
    return args


def _fallback_out(stubs: nn.ModuleDict, quantize: bool, module: nn.Module, args: tuple, output):
    if isinstance(output, torch.Tensor):
        if quantize:
            return stubs.dequant(output) if output.is_quantized else output
        return stubs.quant(output) if output.is_floating_point() else output
    if type(output) in (tuple, list):
        return type(output)(_fallback_out(stubs, quantize, module, args, o) for o in output)
    if isinstance(output, dict):  # an OrderedDict too: a detection backbone's feature maps
        return type(output)((k, _fallback_out(stubs, quantize, module, args, v)) for k, v in output.items())
    return output


def float_fallback(
    model: nn.Module, float_code: tuple = (), float_layers: tuple = (), per_tensor_transposed: bool = False
) -> nn.Module:
    """Measured by `qlint emit` (a real conversion): the first int8 forward failed in the code of the classes of
    `float_code` and in the layers of `float_layers`; with `per_tensor_transposed`, `prepare` refused the
    per-channel weight observer of a ConvTranspose, which gets the per-tensor `default_qconfig`. The code of a
    `float_code` class runs in float and each layer it calls is quantized on its own (a QuantStub before, a
    DeQuantStub after); a `float_layers` layer runs in float (`qconfig = None`) between a DeQuantStub and a
    QuantStub (a `QuantWrapper` given a quantized tensor keeps its qconfig: it quantizes what it takes itself).
    The stubs live in `model.fallback_stubs` (no state: the state_dict loads) and are the identity before
    `convert` (the float outputs stay the same)."""
    swapped = set(get_default_static_quant_module_mappings()) - {QuantStub, DeQuantStub}

    def kind(module: nn.Module, kinds: tuple) -> bool:
        copied = {k.__name__ for k in kinds if k.__module__ == __name__}  # also the library's class of that name
        return type(module) in kinds or type(module).__name__ in copied

    def called(prefix: str, module: nn.Module):
        """The layers the float code of ``module`` calls: (name, quantized on its own)."""
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
                yield from called(full, child)  # not called itself
            elif isinstance(child, (QuantStub, DeQuantStub, nn.quantized.FloatFunctional)):
                child.qconfig = None  # the code's own stubs and `.add`s: float code keeps them float (identity)
            elif kind(child, float_code) or kind(child, float_layers):
                yield full, False  # float code calling float code or a float layer: float in, float out
            elif any(type(m) in swapped for m in child.modules()):
                yield full, True

    def inside(name: str, outer: list[str]) -> bool:
        return any(name.startswith(f"{n}.") for n in outer)

    layers: list[str] = []
    for name, module in model.named_modules():
        if kind(module, float_layers) and not inside(name, layers):
            layers.append(name)
    codes = [n for n, m in model.named_modules() if kind(m, float_code) and n not in layers and not inside(n, layers)]
    calls = {part: quantized for code in codes for part, quantized in called(code, model.get_submodule(code))}
    model.fallback_stubs = nn.ModuleDict()
    for module in model.modules():
        if per_tensor_transposed and isinstance(module, nn.modules.conv._ConvTransposeNd):
            module.qconfig = default_qconfig  # per-tensor weights: prepare refuses a per-channel observer here

    def hook(name: str, quantize: bool) -> None:
        stubs = nn.ModuleDict({"quant": QuantStub(), "dequant": DeQuantStub()})
        model.fallback_stubs[name.replace(".", "__")] = stubs
        module = model.get_submodule(name)
        module.register_forward_pre_hook(partial(_fallback_in, stubs, quantize))
        module.register_forward_hook(partial(_fallback_out, stubs, quantize))

    for name in layers:
        if not isinstance(model.get_submodule(name), QuantWrapper):  # it quantizes what it takes itself
            model.get_submodule(name).qconfig = None  # an own qconfig wins over the one prepare propagates
    for name in [*layers, *codes]:
        if name and name not in calls:  # called by int8 code: dequantize what it takes, quantize what it gives
            hook(name, quantize=False)
    for name, quantized in calls.items():
        if quantized:  # a layer called by float code: quantize what it takes, dequantize what it gives
            hook(name, quantize=True)
    return model
'''

IMPORTS = (
    ("torch", "import torch"),
    ("partial", "from functools import partial"),
    ("DeQuantStub", "from torch.ao.quantization import DeQuantStub"),
    ("QuantStub", "from torch.ao.quantization import QuantStub"),
    ("QuantWrapper", "from torch.ao.quantization import QuantWrapper"),
    ("default_qconfig", "from torch.ao.quantization import default_qconfig"),
    (
        "get_default_static_quant_module_mappings",
        "from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings",
    ),
)


@dataclass
class Fallback:
    """The search's result: the classes whose code runs in float, the float layers, and the last failure."""

    float_code: list[str] = field(default_factory=list)  # as the emitted file names them: `Attention`, `nn.SiLU`
    float_layers: list[str] = field(default_factory=list)
    rounds: int = 0
    converts: bool = False
    quantized: int = 0  # layers the conversion swapped for quantized ones
    per_tensor_transposed: bool = False  # ConvTranspose layers get the per-tensor default_qconfig
    failure: str = ""  # why the search stopped without a model that converts and runs

    @property
    def kinds(self) -> int:
        return len(self.float_code) + len(self.float_layers) + self.per_tensor_transposed

    def notes(self) -> list[str]:
        """What the user is told: what runs in float and why, or why the copy does not convert yet."""
        out = []
        if self.float_code:
            out.append(f"Measured: the int8 forward failed in their own code, which now runs in float (their layers "
                       f"stay int8): {', '.join(self.float_code)}.")  # fmt: skip
        layers = [k for k in self.float_layers if k != "QuantWrapper"]
        if layers:
            out.append(f"Measured: these layers run in float between stubs: {', '.join(layers)}.")
        if "QuantWrapper" in self.float_layers:
            out.append("Measured: a QuantWrapper was given a quantized tensor (its QuantStub cannot take one): it now "
                       "gets a float tensor (a DeQuantStub before it) and gives back a quantized one.")  # fmt: skip
        if self.per_tensor_transposed:
            out.append("Measured: `prepare` refuses a per-channel weight observer on a ConvTranspose: those layers get "
                       "the per-tensor `default_qconfig`.")  # fmt: skip
        if self.failure:
            out.append(f"Not converted: {self.failure}.")
        elif self.converts and not self.quantized:
            out.append("Converts, but `convert` swapped none of its layers: nothing in it runs in int8 (its compute is "
                       "not in layers eager mode quantizes, e.g. `F.linear` with plain tensors).")  # fmt: skip
        return out


def measured_fallback(
    text: str,
    out: str,
    original,
    example: Callable[[], object],
    wrap: Callable[[str, list[str]], str],
    engine: str = "x86",
    rounds: int = ROUNDS,
    budget: float = BUDGET,
) -> tuple[str, Fallback]:
    """(``text`` with the float fallback that makes its model convert and run, the search's result).

    ``example()`` gives a fresh input; ``wrap(text, extra)`` wraps ``build_model()``'s result in ``float_fallback``
    with the keyword arguments ``extra``. The text is returned unchanged when the model converts as it is, or
    when no fallback makes it (``Fallback.failure`` says why)."""
    result = Fallback()
    start = time.perf_counter()
    candidate = text
    while True:
        result.rounds += 1
        failure, result.quantized = first_int8_failure(candidate, out, original, example, engine)
        if failure is None:
            result.converts = True
            return candidate, result
        if result.rounds >= rounds or time.perf_counter() - start > budget:
            result.failure = f"{failure.describe()} (the search for a float fallback stopped after {result.rounds} "
            result.failure += "conversions)"
            return text, result
        step = failure.next_step(result)
        if step is not None:
            result.failure = f"{failure.describe()}; {step}"
            return text, result
        extra = [f"float_code=({''.join(f'{k}, ' for k in result.float_code)})"] if result.float_code else []
        if result.float_layers:
            extra.append(f"float_layers=({''.join(f'{k}, ' for k in result.float_layers)})")
        if result.per_tensor_transposed:
            extra.append("per_tensor_transposed=True")
        candidate = wrap(text, extra)


def _name(kind: type) -> str:
    return f"nn.{kind.__name__}" if kind.__module__.startswith("torch.nn.modules") else kind.__name__


@dataclass
class Int8Failure:
    """Where the first int8 forward (or an earlier step) failed: the step, the error, the running modules' names
    (outermost first) and their float classes."""

    phase: str
    error: str
    stack: tuple[str, ...]
    kinds: dict[str, type]
    copied: frozenset[str]  # the classes the emitted file defines (it can name them)

    def describe(self) -> str:
        where = f" in `{self.stack[-1]}`" if self.stack and self.stack[-1] else ""
        return f"the int8 model fails at {self.phase}{where}: {self.error}"

    def next_step(self, result: Fallback) -> str | None:
        """Move the culprit's class one step towards float (in ``result``); why not, when it cannot be."""
        if self.phase == "prepare" and TRANSPOSED_PER_CHANNEL in self.error and not result.per_tensor_transposed:
            result.per_tensor_transposed = True
            return None
        if self.phase != "forward" or not self.stack:
            return "no float fallback applies to this step"
        name = next((n for n in reversed(self.stack) if not n.startswith("fallback_stubs")), "")
        while True:
            kind = self.kinds.get(name)
            if kind is None:
                return f"`{name}` is not a layer of the emitted model"
            step = self._step(kind, name, result)
            if step == "moved":
                return None
            if step == "root":
                return "its root model would have to run in float"
            name = name.rpartition(".")[0]  # the caller: the parent module

    def _step(self, kind: type, name: str, result: Fallback) -> str:
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper
        from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

        torch_kind = kind.__module__.split(".")[0] == "torch"
        if kind is QuantWrapper and "QuantWrapper" not in result.float_layers:
            result.float_layers.append("QuantWrapper")  # given a quantized tensor: dequantize it before, quantize after
            return "moved"
        if torch_kind and not kind.__module__.startswith("torch.nn.modules"):
            return "caller"  # not nameable in the file (torch.ao's own layers): its caller
        if issubclass(kind, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return "caller"  # a container runs no code of its own
        named = _name(kind)
        if named in result.float_layers:
            return "root" if name == "" else "caller"
        if torch_kind and (kind in get_default_static_quant_module_mappings() or kind in (QuantStub, DeQuantStub)):
            return "caller"  # a quantized layer given what it cannot take: its caller passed it
        if not torch_kind and kind.__name__ not in self.copied:
            return "caller"  # neither copied into the file nor a library class of a copied name (a registry's)
        if torch_kind or named in result.float_code or not self._calls_layers(name):
            if name == "":
                return "root"
            if named in result.float_code:
                result.float_code.remove(named)
            result.float_layers.append(named)
        else:
            result.float_code.append(named)
        return "moved"

    def _calls_layers(self, name: str) -> bool:
        prefix = f"{name}." if name else ""
        return any(n.startswith(prefix) and n != name for n in self.kinds)


def first_int8_failure(
    text: str, out: str, original, example: Callable[[], object], engine: str
) -> tuple[Int8Failure | None, int]:
    """(None, the number of layers ``convert`` swapped) when the emitted model converts and runs as a user's eager
    flow runs it, else (its ``Int8Failure``, 0)."""
    from torch.ao.quantization import convert, prepare

    from qlint.fix.apply import candidate_module
    from qlint.model.loader import quiet
    from qlint.verify.flows import StepFailed, run_tracked, use_engine

    with candidate_module(out, text) as module, quiet(), use_engine(engine):
        phase, stack, kinds = "build", (), {}
        try:
            module.__loader__.exec_module(module)
            model = module.build_model().eval()
            load_original_state(model, original)
            kinds = {n: type(m) for n, m in model.named_modules()}
            phase = "fuse"
            if callable(getattr(model, "fuse_model", None)):
                model.fuse_model()
            phase = "prepare"
            model.qconfig = _fast_qconfig(engine)
            prepare(model, inplace=True)
            run_tracked(model, "calibrate", [_args(example())])
            phase = "convert"
            convert(model, inplace=True)
            run_tracked(model, "forward", [_args(example())])
            return None, _quantized_layers(model)
        except StepFailed as exc:
            phase, stack, cause = exc.phase, exc.stack, exc.cause
        except Exception as exc:  # noqa: BLE001 - any failure is the verdict
            cause = exc
        error = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0][:200]}"
        copied = frozenset(k for k, v in vars(module).items() if isinstance(v, type))
        return Int8Failure(phase, error, tuple(stack), kinds, copied), 0


def _quantized_layers(model) -> int:
    """The layers ``convert`` swapped for quantized ones that compute (not the stubs' Quantize / DeQuantize)."""
    return sum(
        type(m).__module__.startswith("torch.ao.nn.quantized") and type(m).__name__ not in ("Quantize", "DeQuantize")
        for m in model.modules()
    )


def load_original_state(model, original) -> list[str]:
    """Load ``original``'s state into ``model``: its state_dict (strict), then the plain tensor attributes that no
    state_dict carries (torch's ``FunctionalLinear`` keeps ``self.weight = torch.rand(5, 5)``); their names."""
    import torch

    model.load_state_dict(original.state_dict(), strict=True)
    copied = []
    mine = dict(model.named_modules())
    for name, module in original.named_modules():
        other = mine.get(name)
        for attr, value in vars(module).items():
            theirs = getattr(other, attr, None) if other is not None else None
            if isinstance(value, torch.Tensor) and isinstance(theirs, torch.Tensor) and theirs.shape == value.shape:
                setattr(other, attr, value.clone())
                copied.append(f"{name}.{attr}" if name else attr)
    return copied


def _fast_qconfig(engine: str):
    """The engine's default qconfig with a min/max activation observer: the same modules swapped and the same
    kernels run (what the search asks), without the histogram observer's seconds per calibration batch."""
    from torch.ao.quantization import MinMaxObserver, QConfig, get_default_qconfig

    default = get_default_qconfig(engine)
    keywords = getattr(getattr(default.activation, "p", None), "keywords", {})
    kept = {k: v for k, v in keywords.items() if k in ("dtype", "qscheme", "reduce_range", "quant_min", "quant_max")}
    return QConfig(activation=MinMaxObserver.with_args(**kept), weight=default.weight)


def _args(x) -> tuple:
    import torch

    return (x,) if isinstance(x, torch.Tensor) else tuple(x)
