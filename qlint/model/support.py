"""What the installed torch supports, asked of torch itself rather than copied into a table.

- which modules eager ``convert`` swaps: torch's default static module mappings;
- which module chains can be fused: torch's fuser-method table;
- whether an op accepts quantized tensors: a cached probe of the op on tiny quantized tensors.

Kernel support does not depend on the size of the tensors, so a probe first runs at a small shape
(spatial dimensions shrunk, consistently across the arguments); only when that shape does not fit
the op (e.g. a kernel larger than the shrunk input, a ``view`` with explicit sizes) does it run at
the model's own shape, up to ``MAX_PROBE_ELEMENTS``. A probe that still cannot run is inconclusive,
and the rules say so rather than treating it as supported, unless the same op runs on float tensors of
the same shapes: then it is the quantized tensor that fails (e.g. ``torch.mean`` of a channels-last
quantized tensor whose spatial dimensions are all 1), and the converted model fails there too.

Quantized tensors are made with the memory layout they have in the converted model: the layout a
swapped module's quantized kernel returns is asked of torch (``quantized_output_layout``), and a probe
reports the layout of what it produced, so it follows the tensor through the ops after it.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn as nn

from qlint.model.loader import first_line, quiet

DEFAULT_PROBE_SHAPE = (1, 4, 8, 8)
SMALL_DIM = 8  # spatial dimensions above this are shrunk for the first probe
MAX_PROBE_ELEMENTS = 1 << 25  # the model's own shape is tried only up to this many elements

ARITHMETIC_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.matmul,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.imatmul, operator.pow,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
    torch.true_divide, torch.matmul, torch.mm, torch.bmm, torch.rsub, torch.pow,
}  # fmt: skip
ARITHMETIC_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "true_divide", "matmul", "mm", "bmm",
    "__add__", "__iadd__", "__mul__", "__imul__", "__sub__", "__truediv__", "__matmul__", "pow", "pow_",
}  # fmt: skip
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
OPERATOR_SYMBOLS = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.floordiv: "//", operator.matmul: "@", operator.iadd: "+=", operator.isub: "-=",
    operator.imul: "*=", operator.itruediv: "/=", operator.imatmul: "@=", operator.pow: "**",
}  # fmt: skip


@lru_cache(maxsize=1)
def swapped_module_types() -> frozenset[type]:
    """Module types that eager ``convert`` replaces by quantized kernels (torch's default mappings)."""
    from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

    with quiet():
        return frozenset(get_default_static_quant_module_mappings())


@lru_cache(maxsize=1)
def custom_module_types() -> frozenset[type]:
    """Module types eager ``prepare``/``convert`` swap through torch's default custom-module config
    (``nn.LSTM``, ``nn.MultiheadAttention``: observed, then quantized versions that take quantized input)."""
    from torch.ao.quantization import get_default_custom_config_dict

    with quiet():
        config = get_default_custom_config_dict()
    return frozenset(config.get("float_to_observed_custom_module_class", {}))


INDEX_INPUT_TYPES = (nn.Embedding, nn.EmbeddingBag)  # take integer ids; quantized only weight-only


def is_weight_only(qconfig: object) -> bool:
    """A qconfig whose weight observer uses float qparams (``float_qparams_weight_only_qconfig``)."""
    return weight_qscheme(qconfig) == torch.per_channel_affine_float_qparams


def qconfig_of(root: nn.Module, qualname: str) -> tuple[bool, object]:
    """(set?, qconfig): the qconfig set on the module or its nearest ancestor in the model itself
    (not set: the one a pipeline sets on the root applies)."""
    parts = qualname.split(".") if qualname else []
    chain = [root]
    for part in parts:
        chain.append(getattr(chain[-1], part))
    for module in reversed(chain):
        if "qconfig" in module.__dict__:
            return True, module.__dict__["qconfig"]
    return False, None


def uninitialized_lazy_modules(root: nn.Module) -> dict[str, str]:
    """qualified name -> class name of each lazy module (``LazyLinear``, ...) whose sizes are not known yet."""
    from torch.nn.modules.lazy import LazyModuleMixin

    return {
        name: type(m).__name__
        for name, m in root.named_modules()
        if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()
    }


def default_qconfig(engine: str) -> object:
    """The qconfig ``get_default_qconfig(engine)`` returns on the installed torch (None if it has none)."""
    from torch.ao.quantization import get_default_qconfig

    try:
        with quiet():
            return get_default_qconfig(engine)
    except Exception:  # noqa: BLE001 - an engine this torch does not know
        return None


def weight_qscheme(qconfig: object) -> object:
    """The qscheme of a qconfig's weight observer (None when it cannot be read)."""
    try:
        with quiet():
            return getattr(qconfig.weight(), "qscheme", None)
    except Exception:  # noqa: BLE001 - not a qconfig qlint can read
        return None


def is_per_channel(qconfig: object) -> bool:
    return weight_qscheme(qconfig) in (torch.per_channel_affine, torch.per_channel_symmetric)


@lru_cache(maxsize=1)
def fusion_patterns() -> tuple[tuple[type, ...], ...]:
    """Module-type chains eager ``fuse_modules`` can fuse, longest first (torch's fuser table)."""
    try:
        from torch.ao.quantization.fuser_method_mappings import _DEFAULT_OP_LIST_TO_FUSER_METHOD as table
    except ImportError:  # pragma: no cover - older/newer torch without the private table
        table = {}
    patterns = [p for p in table if all(isinstance(t, type) for t in p)]
    return tuple(sorted(patterns, key=len, reverse=True))


@lru_cache(maxsize=1)
def fusable_types() -> frozenset[type]:
    return frozenset(t for p in fusion_patterns() for t in p)


def is_arithmetic(op: str, target: object) -> bool:
    if op == "call_method":
        return target in ARITHMETIC_METHODS
    return target in ARITHMETIC_FUNCTIONS


def describe_target(op: str, target: object) -> str:
    if op == "call_method":
        return f".{target}()"
    if target in OPERATOR_SYMBOLS:
        return f"`{OPERATOR_SYMBOLS[target]}`"
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module.startswith("torch.nn.functional"):
        return f"F.{name}"
    if module.startswith("torch") or module == "builtins" and hasattr(torch, name):
        return f"torch.{name}"
    return name


# ---- probing ---------------------------------------------------------------------------------------


def small_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with its spatial dimensions (index 2 on) shrunk to at most ``2 * SMALL_DIM``.

    The same size always maps to the same small size, so arguments that agree keep agreeing.
    """
    return tuple(d if i < 2 or d <= SMALL_DIM else SMALL_DIM + d % SMALL_DIM for i, d in enumerate(shape))


class Materialize:
    """Turns analysis values into real CPU tensors for a probe: quantized where the kind says so.

    With ``shrink``, tensors get ``small_shape`` of their shape; without it, their own shape (and the
    probe is inconclusive above ``MAX_PROBE_ELEMENTS``). Quantized tensors get the memory layout they
    have in the converted model; with ``float_only`` they are contiguous float tensors of the same
    shape, as in the float model (the control run that tells an op the converted model's tensor makes
    fail from a shape qlint got wrong).
    """

    def __init__(self, shrink: bool = True, float_only: bool = False) -> None:
        self.failed = False
        self.shrink = shrink
        self.float_only = float_only

    def value(self, value: object, quantized: bool, layout: torch.memory_format | None = None) -> object:
        """``value`` with each tensor it holds (in tuples and lists too) made real."""
        if isinstance(value, (tuple, list)):
            return type(value)(self.value(v, quantized, layout) for v in value)
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            return self.tensor(value, False)
        return self.tensor(value, quantized, layout)

    def tensor(self, value: object, quantized: bool, layout: torch.memory_format | None = None) -> torch.Tensor | None:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else DEFAULT_PROBE_SHAPE
        if self.shrink:
            shape = small_shape(shape)
        numel = 1
        for s in shape:
            numel *= s
        if numel > MAX_PROBE_ELEMENTS:
            self.failed = True
            return None
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            return torch.zeros(shape, dtype=value.dtype)
        data = torch.rand(shape)
        if quantized and not self.float_only and layout is not None and len(shape) == LAYOUT_RANKS.get(layout):
            data = torch.empty(shape, memory_format=layout).copy_(data)  # quantize_per_tensor keeps the strides
        if not quantized or self.float_only:
            return data
        return torch.quantize_per_tensor(data, 0.05, 64, torch.quint8)


LAYOUT_RANKS = {torch.channels_last: 4, torch.channels_last_3d: 5}


def layout_of(value: object) -> torch.memory_format | None:
    """The channels-last layout of a quantized tensor (held in ``value``), None when it is contiguous.

    Read from the strides, which stay channels-last even where every spatial size is 1 (there
    ``is_contiguous()`` is true for both layouts, and torch still treats the tensor as channels-last).
    """
    if isinstance(value, (tuple, list)):
        layouts = {layout_of(v) for v in value}
        return layouts.pop() if len(layouts) == 1 else None
    if not isinstance(value, torch.Tensor) or not value.is_quantized or value.dim() not in (4, 5):
        return None
    channels = value.shape[1]
    if channels > 1 and value.stride(1) == 1 and value.stride(-1) == channels:
        return torch.channels_last if value.dim() == 4 else torch.channels_last_3d
    return None


_layout_cache: dict[object, torch.memory_format | None] = {}


def quantized_output_layout(
    module: nn.Module, shape: tuple[int, ...], incoming: torch.memory_format | None
) -> torch.memory_format | None:
    """The layout of what ``module``'s quantized replacement returns for a quantized input of ``shape`` laid
    out as ``incoming``: asked of torch by converting a copy of it (x86 qconfig, one calibration batch) and
    running the converted copy on a small input of that layout.

    Cached by module type, input rank and layout; None when it is contiguous or torch cannot tell.
    """
    key = (type(module), len(shape), incoming)
    if key not in _layout_cache:
        _layout_cache[key] = _converted_layout(module, small_shape(shape), incoming)
    return _layout_cache[key]


def _converted_layout(
    module: nn.Module, shape: tuple[int, ...], incoming: torch.memory_format | None
) -> torch.memory_format | None:
    from torch.ao.quantization import convert, prepare

    qconfig = default_qconfig("x86") or default_qconfig("fbgemm")
    try:
        with quiet(), torch.no_grad():
            model = nn.Sequential(cpu_copy(module)).eval()
            for tensor in [*model.parameters(), *model.buffers()]:
                if tensor.is_floating_point():  # a copy of a meta module holds garbage: finite values instead
                    tensor.uniform_(0.5, 1.0)
            model.qconfig = qconfig
            prepare(model, inplace=True)
            model(torch.rand(shape))
            convert(model, inplace=True)
            return layout_of(model[0](Materialize().tensor(torch.empty(shape, device="meta"), True, incoming)))
    except Exception:  # noqa: BLE001 - a module this simple harness cannot convert: no layout claim
        return None


def signature(value: object) -> object:
    """A hashable summary of a probe argument (tensors by kind/shape/dtype/layout)."""
    if isinstance(value, tuple) and len(value) in (3, 4) and value[0] in ("Q", "F", "T"):
        return value
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(signature(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, signature(v)) for k, v in value.items())))
    if isinstance(value, (int, float, bool, str, type(None), torch.dtype, torch.device)):
        return value
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    if value is Ellipsis:
        return "..."
    return ("obj", type(value).__name__, id(value))


class FailsOnQuantized(Exception):
    """The op raised on quantized tensors at the model's own shapes and layout, and ran on float tensors of
    the same shapes: the converted model fails there (a kernel that exists but refuses this input)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{REFUSED}{type(cause).__name__}: {first_line(cause)}")


REFUSED = "at this shape and layout: "  # the probe error of a kernel that exists but refuses the input


def refused(error: str) -> bool:
    """A probe error from ``FailsOnQuantized`` (rather than a missing kernel)."""
    return error.startswith(REFUSED)


Outcome = tuple[bool | None, str, str, "torch.memory_format | None"]
_probe_cache: dict[object, Outcome] = {}


def probe(key: object, run: Callable[[], object]) -> Outcome:
    """Run ``run`` once per ``key``: (supported?, output kind, error text, output layout).

    supported is True when it ran, False when torch has no quantized kernel for it or the kernel
    refuses the input (``FailsOnQuantized``), None when the probe itself was inconclusive.
    """
    if key in _probe_cache:
        return _probe_cache[key]
    try:
        with quiet(), torch.no_grad():
            result = run()
        outcome: Outcome = (True, kind_of_value(result), "", layout_of(result))
    except Exception as exc:  # noqa: BLE001 - the point is to see whether torch refuses
        text = first_line(exc) or type(exc).__name__
        outcome = (False if _no_quantized_kernel(exc) else None, "unknown", text, None)
    _probe_cache[key] = outcome
    return outcome


def missing_kernel(exc: BaseException) -> bool:
    """The dispatcher's own answer: no QuantizedCPU kernel (certain at any shape)."""
    text = str(exc)
    return "QuantizedCPU" in text and "Could not run" in text


def _no_quantized_kernel(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (NotImplementedError, FailsOnQuantized)) or any(
        marker in text for marker in ("quantizedcpu", "quantized", "qint8", "quint8", "qscheme")
    )


def kind_of_value(value: object) -> str:
    """'quantized' / 'float' / 'none' for the tensors held by a value."""
    found = set()

    def visit(v: object) -> None:
        if isinstance(v, torch.Tensor):
            if v.is_quantized:
                found.add("quantized")
            elif v.is_floating_point():
                found.add("float")
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)
        elif isinstance(v, dict):
            for item in v.values():
                visit(item)

    visit(value)
    if "quantized" in found:
        return "quantized"
    return "float" if "float" in found else "none"


def cpu_copy(module: nn.Module) -> nn.Module:
    """A CPU copy of ``module`` for a probe (uninitialized weights are fine for a probe)."""
    clone = copy.deepcopy(module)
    if any(t.is_meta for t in [*clone.parameters(), *clone.buffers()]):
        clone = clone.to_empty(device="cpu")
    return clone


def is_dilated_grouped_conv(module: nn.Module) -> bool:
    """A convolution with groups > 1 and a dilation > 1: slow int8 kernels on fbgemm / x86 (QL301, pytorch#59730)."""
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and any(d > 1 for d in module.dilation)
