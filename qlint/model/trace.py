"""torch.fx tracing for analysis: exact call-site frames on every node, quantization-aware leaves.

Stubs and fused modules stay leaves (fx would otherwise trace through them), and the methods of
``FloatFunctional`` (``self.skip_add.add(a, b)``) become one marker node each, so the analysis
sees "the FloatFunctional ``skip_add`` adds" instead of a bare ``torch.add``.
"""

from __future__ import annotations

import inspect
import operator
import re
import sys
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.ao.nn.quantized import FloatFunctional, QFunctional
from torch.ao.quantization import DeQuantStub, QuantStub

from qlint.model import frames as fr

FLOAT_FUNCTIONAL_METHODS = ("add", "add_scalar", "mul", "mul_scalar", "cat", "add_relu", "matmul")
_LEAF_TYPES = (QuantStub, DeQuantStub, _FusedModule, FloatFunctional, QFunctional)


def float_functional_op(qualname: str, method: str, *args, **kwargs):
    """Marker target of a FloatFunctional call in a traced graph (never executed)."""
    raise RuntimeError("qlint marker node: not executable")


class TraceFailure(Exception):
    """fx could not trace; carries where it stopped (frames of the original exception)."""

    def __init__(self, cause: BaseException, frames: tuple[fr.Frame, ...]):
        super().__init__(str(cause))
        self.cause = cause
        self.frames = frames


class QTracer(fx.Tracer):
    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = False  # our own frames carry columns

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _LEAF_TYPES):
            return True
        return super().is_leaf_module(m, qualname)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **kw):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest, **kw)
        if kind != "placeholder":
            proxy.node.meta["qlint_frames"] = fr.capture(sys._getframe(1))
        return proxy


@dataclass
class Traced:
    graph_module: fx.GraphModule
    root: nn.Module


def trace(model: nn.Module) -> Traced:
    """Trace ``model``; raises TraceFailure with the frames where tracing stopped.

    When the plain trace fails and ``forward`` has arguments with plain defaults
    (``return_features=False``), it is traced again with those defaults as concrete values, as a
    caller who passes only the input runs it.
    """
    try:
        return _trace(model, None)
    except TraceFailure as failure:
        concrete = default_arguments(model)
        if not concrete:
            raise
        try:
            return _trace(model, concrete)
        except TraceFailure:
            raise failure from None


def default_arguments(model: nn.Module) -> dict[str, object]:
    """``forward``'s parameters whose defaults are plain values (bool, int, float, str, None)."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return {}
    plain = (bool, int, float, str, type(None))
    return {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty
        and isinstance(p.default, plain)
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def _trace(model: nn.Module, concrete_args: dict[str, object] | None) -> Traced:
    tracer = QTracer()
    patched = _patch_float_functionals(model, tracer)
    try:
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as exc:  # noqa: BLE001 - any user-code failure is a trace failure
        raise TraceFailure(exc, fr.frames_from_traceback(exc.__traceback__)) from None
    finally:
        for module, method in patched:
            module.__dict__.pop(method, None)
    if concrete_args:
        _drop_constant_placeholders(graph, concrete_args)
    return Traced(fx.GraphModule(tracer.root, graph, type(model).__name__), model)


def _drop_constant_placeholders(graph: fx.Graph, concrete_args: dict[str, object]) -> None:
    """fx keeps a placeholder per concrete argument with a guard (``eq`` then ``torch._assert``): the
    analysis counts placeholders as model inputs, so a placeholder used only by its guard goes."""
    for node in list(graph.nodes):
        if node.op != "placeholder" or not {node.target, re.sub(r"_\d+$", "", node.target)} & set(concrete_args):
            continue
        guard = [node]
        for user in node.users:
            asserts = list(user.users)
            if user.target is not operator.eq or not all(a.target is torch._assert and not a.users for a in asserts):
                break
            guard = [*asserts, user, *guard]
        else:
            for dead in guard:
                graph.erase_node(dead)


def _patch_float_functionals(model: nn.Module, tracer: QTracer) -> list[tuple[nn.Module, str]]:
    patched = []
    for qualname, module in model.named_modules():
        if not isinstance(module, (FloatFunctional, QFunctional)):
            continue
        for method in FLOAT_FUNCTIONAL_METHODS:
            if hasattr(module, method):
                module.__dict__[method] = _marker(tracer, qualname, method)
                patched.append((module, method))
    return patched


def _marker(tracer: QTracer, qualname: str, method: str):
    def call(*args, **kwargs):
        return tracer.create_proxy("call_function", float_functional_op, (qualname, method, *args), kwargs)

    return call


def run_float_functional(root: nn.Module, qualname: str, method: str, args, kwargs):
    """Execute what a marker node stands for (used by the analysis on meta tensors)."""
    module = root.get_submodule(qualname)
    return getattr(type(module), method)(module, *args, **kwargs)


def input_shape_guess(gm: fx.GraphModule) -> tuple[int, ...] | None:
    """An input shape from the first conv / linear layer the traced input reaches."""
    first = (gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module")
    return shape_for_first_layer(first)


def shape_for_first_layer(modules) -> tuple[int, ...] | None:
    """The input shape the first conv / linear of ``modules`` takes: (1, C, 224, 224) for a Conv2d,
    (1, C, 224) / (1, C, 16, 112, 112) for 1d / 3d, (1, in_features) for a Linear; None otherwise."""
    for module in modules:
        conv = module[0] if isinstance(module, _FusedModule) else module
        if isinstance(conv, nn.modules.conv._ConvNd):
            spatial = {1: (224,), 2: (224, 224), 3: (16, 112, 112)}[len(conv.kernel_size)]
            return (1, conv.in_channels, *spatial)
        if isinstance(conv, nn.Linear):
            return (1, conv.in_features)
        if isinstance(conv, nn.RNNBase):
            return (1, 8, conv.input_size) if conv.batch_first else (8, 1, conv.input_size)
        if isinstance(conv, (nn.Embedding, nn.EmbeddingBag)):
            return (1, 8)  # token ids
    return None


def torch_version() -> str:
    return torch.__version__
