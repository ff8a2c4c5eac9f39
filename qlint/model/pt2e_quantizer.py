"""The PT2E quantizers qlint can ask: x86 and arm (torchao), xnnpack (executorch), and what a
quantizer object is configured to do (its global / module-name / operator-type configs, the op
tables its module declares).

torchao is an optional extra (``qlint[pt2e]``); without it ``quantizer_for`` raises
``Pt2eUnavailable`` with a one-line message naming the extra.
"""

from __future__ import annotations

import contextlib
import importlib
import platform
import sys
import types
from collections.abc import Iterator

from qlint.config import QUANTIZERS, Settings
from qlint.source.pt2e_flow import QUANTIZER_CLASSES, pt2e_intent

# where each quantizer lives (the x86 and arm ones import torch._inductor: seconds)
QUANTIZER_MODULES = {
    "x86": "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer",
    "arm": "torchao.quantization.pt2e.quantizer.arm_inductor_quantizer",
    "xnnpack": "executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
}
INSTALL_HINT = "pip install qlint[pt2e]"
# what torchao's x86 (and so arm) quantizer module imports at its end only to register inductor's
# int8 lowerings and weight-packing passes: ~1.5 s of torch._inductor, needed by torch.compile, never
# by annotation
_INDUCTOR_PASS_MODULES = (
    "torchao.quantization.pt2e.inductor_passes.lowering",
    "torchao.quantization.pt2e.inductor_passes.x86",
)


class Pt2eUnavailable(Exception):
    """The PT2E flow cannot be checked here: a one-line reason, for an exit-2 error."""


def torchao_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def require_torchao() -> None:
    if not torchao_available():
        raise Pt2eUnavailable(f"the PT2E checks need torchao: {INSTALL_HINT}")


def default_quantizer_name(machine: str | None = None) -> str:
    """x86 on x86 hosts, arm on ARM hosts (``platform.machine()``)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in ("arm64", "aarch64") or machine.startswith("arm"):
        return "arm"
    return "x86"


def quantizer_name_for(text: str, settings: Settings) -> str:
    """The quantizer a file is checked with: ``--quantizer`` / ``quantizer``, else the quantizer class
    the file builds, else the host's default."""
    return settings.quantizer or pt2e_intent(text).quantizer or default_quantizer_name()


def quantizer_for(name: str | None = None, *, for_compile: bool = True, qat: bool = False):
    """A ready quantizer with its default global config: ``x86``, ``arm`` or ``xnnpack``; ``qat``: the
    config for quantization-aware training (``is_qat=True``, what ``prepare_qat_pt2e`` is given).

    ``None`` picks the host's default. Raises ``Pt2eUnavailable`` when the package that
    provides it is not installed, ``ValueError`` for an unknown name. ``for_compile=False`` (a
    process that annotates and never compiles: a check child) imports an x86/arm quantizer module
    that is not imported yet without its inductor pass registration (see ``annotation_only_import``).
    """
    name = (name or default_quantizer_name()).lower()
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}: expected one of {', '.join(QUANTIZERS)}")
    require_torchao()
    if name in _INDUCTOR_QUANTIZERS:
        class_name, config_name = _INDUCTOR_QUANTIZERS[name]
        with contextlib.nullcontext() if for_compile else annotation_only_import():
            module = _import(QUANTIZER_MODULES[name])
        return getattr(module, class_name)().set_global(getattr(module, config_name)(is_qat=qat))
    try:
        module = importlib.import_module(QUANTIZER_MODULES[name])
    except ImportError as exc:
        raise Pt2eUnavailable(
            "the xnnpack quantizer lives in executorch, which is not installed "
            "(`pip install executorch`); use --quantizer x86 or arm"
        ) from exc
    return module.XNNPACKQuantizer().set_global(module.get_symmetric_quantization_config(is_qat=qat))


# torchao's inductor quantizers: their class and default-config function, in QUANTIZER_MODULES' module
_INDUCTOR_QUANTIZERS = {
    "x86": ("X86InductorQuantizer", "get_default_x86_inductor_quantization_config"),
    "arm": ("ArmInductorQuantizer", "get_default_arm_inductor_quantization_config"),
}


class _NoOpModule(types.ModuleType):
    """Stands in for an inductor pass module while a quantizer module imports: every name is a no-op."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _no_op


def _no_op(*args, **kwargs) -> None:
    return None


@contextlib.contextmanager
def annotation_only_import() -> Iterator[None]:
    """Import torchao's x86/arm quantizer modules without registering inductor's int8 passes.

    The x86 quantizer module ends by importing ``inductor_passes.lowering`` / ``.x86`` (which import
    most of ``torch._inductor``) to register int8 lowerings and set ``pre_grad_custom_pass``. Only
    ``torch.compile`` uses them; annotating does not. While this context is open those two modules
    are no-op stand-ins; afterwards they are removed from ``sys.modules`` (a later import gets the
    real ones) and inductor's ``pre_grad_custom_pass`` is put back. For processes that never compile
    (a check child); a quantizer module imported this way stays without its passes in that process.
    """
    if any(name in sys.modules for name in _INDUCTOR_PASS_MODULES):
        yield  # already registered in this process: nothing to save
        return
    import torch._inductor.config as inductor_config

    saved = inductor_config.pre_grad_custom_pass
    for name in _INDUCTOR_PASS_MODULES:
        sys.modules[name] = _NoOpModule(name)
    try:
        yield
    finally:
        for name in _INDUCTOR_PASS_MODULES:
            if isinstance(sys.modules.get(name), _NoOpModule):
                del sys.modules[name]
        inductor_config.pre_grad_custom_pass = saved


def quantizer_name(quantizer: object) -> str:
    """A short name for a quantizer object: x86 / arm / xnnpack, else its class name."""
    cls = type(quantizer).__name__
    return QUANTIZER_CLASSES.get(cls, cls)


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise Pt2eUnavailable(f"the installed torchao has no {module_name} ({exc}); {INSTALL_HINT}") from exc


# ---- what the quantizer is configured to do -------------------------------------------------------------

_MODULE_NAME_CONFIGS = ("module_name_qconfig", "module_name_config")
_OPERATOR_CONFIGS = ("operator_type_qconfig", "operator_type_config")
_MODULE_TYPE_CONFIGS = ("module_type_config",)


def _quantizers(quantizer: object) -> list[object]:
    """A quantizer and, for a ComposableQuantizer, the ones it composes."""
    return [quantizer, *getattr(quantizer, "quantizers", ())]


def _configs(quantizer: object, attributes: tuple[str, ...]) -> dict:
    out: dict = {}
    for q in _quantizers(quantizer):
        for attribute in attributes:
            value = getattr(q, attribute, None)
            if isinstance(value, dict):
                out.update(value)
    return out


def module_name_configs(quantizer: object) -> dict[str, object]:
    """The quantizer's per-module-name configs (``set_module_name_qconfig`` / ``set_module_name``)."""
    return _configs(quantizer, _MODULE_NAME_CONFIGS)


def has_config(quantizer: object) -> bool:
    """False for a quantizer with no config at all (``X86InductorQuantizer()`` without ``set_global``)."""
    quantizers = _quantizers(quantizer)
    if not any(hasattr(q, "global_config") for q in quantizers):
        return True  # a quantizer of another shape: assume it knows what to annotate
    if any(getattr(q, "global_config", None) is not None for q in quantizers):
        return True
    attributes = _MODULE_NAME_CONFIGS + _OPERATOR_CONFIGS + _MODULE_TYPE_CONFIGS
    return any(c is not None for c in _configs(quantizer, attributes).values())


def excluded_matcher(quantizer: object | None):
    """A predicate: does a None config (module name, operator type, module type) match this node?"""
    if quantizer is None:
        return lambda fx_node: False
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    names = [get_module_name_filter(n) for n, c in module_name_configs(quantizer).items() if c is None]
    operators = {op for op, c in _configs(quantizer, _OPERATOR_CONFIGS).items() if c is None}
    types = {t for t, c in _configs(quantizer, _MODULE_TYPE_CONFIGS).items() if c is None}
    if not (names or operators or types):
        return lambda fx_node: False

    def matches(fx_node) -> bool:
        target = fx_node.target
        if target in operators or getattr(target, "overloadpacket", None) in operators:
            return True
        if types:
            stack = fx_node.meta.get("nn_module_stack") or {}
            stack_types = {cls for _, cls in stack.values()}
            sources = {fn for _, fn in fx_node.meta.get("source_fn_stack") or ()}
            names_of = {t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}" for t in types}
            if stack_types & (types | names_of) or sources & types:
                return True
        return any(f(fx_node) for f in names)

    return matches


def unmatched_module_names(quantizer: object, module) -> tuple[str, ...]:
    """Module names the quantizer has a config for that no node of the graph comes from."""
    names = list(module_name_configs(quantizer))
    if not names:
        return ()
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    nodes = [n for n in module.graph.nodes if n.op == "call_function"]
    return tuple(name for name in names if not any(get_module_name_filter(name)(n) for n in nodes))


def _op_type_names(ops) -> set[str]:
    import torch

    names = set()
    for op in ops or ():
        if isinstance(op, torch._ops.OpOverload):
            names.add(op._schema.name.split("::")[-1].rstrip("_"))
        elif isinstance(op, torch._ops.OpOverloadPacket):
            names.add(op._qualified_op_name.split("::")[-1].rstrip("_"))
    return names


def declared_op_types(quantizer: object) -> tuple[set[str], set[str] | None]:
    """(op types the quantizer declares it annotates, those it annotates only after a quantized input).

    Read from the tables its module declares (torchao's x86/arm: ``quantizable_ops``,
    ``propagation_quantizable_ops``); the second set is None when it declares none.
    """
    supported: set[str] = set()
    propagation: set[str] | None = None
    for q in _quantizers(quantizer):
        module = sys.modules.get(type(q).__module__)
        for attribute in ("quantizable_ops", "default_quantizable_ops", "propagation_quantizable_ops"):
            supported |= _op_type_names(getattr(module, attribute, None))
        if hasattr(module, "propagation_quantizable_ops"):
            propagation = (propagation or set()) | _op_type_names(module.propagation_quantizable_ops)
    return supported, propagation
