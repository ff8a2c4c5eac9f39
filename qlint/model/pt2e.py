"""The PT2E graph: an exported model as the quantizer annotates it, with what stays float and why.

``annotate`` runs ``prepare_pt2e`` (no calibration, on meta) on a copy of the exported module and
reads the answer off the prepared graph: the quantizer's ``quantization_annotation`` on each node
and the observers ``prepare`` inserted. An observer that ``convert_pt2e`` turns into a
quantize/dequantize pair marks a quantized edge, so "is this tensor int8 after conversion?" is what
torchao itself decided, never a copied table. Ops inside a grad-disabled region
(``wrap_with_set_grad_enabled`` sub-graphs, which the quantizer never looks into) are part of the
graph too, marked with their region.

Each node carries its aten op, module path and type (``nn_module_stack``), source frames
(``stack_trace``), whether the quantizer annotated it, whether its inputs/output are quantized
after conversion, and whether it sits between quantized neighbours. ``PT2EGraph.locate`` applies
the catalog's pointing rule. The rules' queries live in ``qlint.model.pt2e_facts``.
"""

from __future__ import annotations

import copy
import inspect
import operator
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from qlint.diagnostics import Related, Span
from qlint.model import frames as fr
from qlint.model.digraph import DiGraph
from qlint.model.export import Exported
from qlint.model.loader import ModelSpec, describe, quiet
from qlint.model.pt2e_quantizer import (
    declared_op_types,
    excluded_matcher,
    quantizer_name,
    require_torchao,
    unmatched_module_names,
)

# why an op stays float (PT2ENode.float_reason)
GRAD_DISABLED = "grad-disabled"
EXCLUDED = "excluded-by-config"
NO_PATTERN = "no-pattern"
FLOAT_INPUT = "float-input"
NOT_MATCHED = "pattern-not-matched"
PREPARE_FAILED = "prepare-failed"
REASON_TEXT = {
    GRAD_DISABLED: "runs under grad-disabled mode inside forward: the quantizer does not look there",
    EXCLUDED: "excluded by the quantizer config",
    NO_PATTERN: "no annotation pattern in this quantizer",
    FLOAT_INPUT: "input from a float region",
    NOT_MATCHED: "the quantizer annotates this op elsewhere, but its pattern did not match here",
    PREPARE_FAILED: "prepare_pt2e raised, nothing is quantized",
}

# ops doing the model's arithmetic: what a quantizer is expected to cover
COMPUTE_OPS = frozenset(
    {
        "conv1d",
        "conv2d",
        "conv3d",
        "convolution",
        "_convolution",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "linear",
        "matmul",
        "mm",
        "bmm",
        "addmm",
        "baddbmm",
        "addbmm",
        "einsum",
        "scaled_dot_product_attention",
    }
)

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_GRAD_HOP = "wrap_with_set_grad_enabled"
_QAT_PATTERN_MODULE = "export_utils.WrapperModule"  # torchao's module around the QAT conv-bn pattern


@dataclass
class PT2ENode:
    """What the analysis knows about one node of the exported graph (observers are folded into edges)."""

    name: str
    target: str  # "aten.conv2d.default", "wrap_with_set_grad_enabled", "getitem", "placeholder"
    op_type: str  # overload packet without in-place suffix: "conv2d", "hardswish"
    fx_op: str  # call_function / placeholder / get_attr / output
    module: str | None = None  # qualified module path in the checked model ("" = the root)
    module_type: str | None = None  # "torch.nn.modules.conv.Conv2d"
    call_index: int = 0  # 1, 2, ... for the second, third... call of a reused module (export's "@1" keys)
    frames: tuple[fr.Frame, ...] = field(default=(), repr=False)  # innermost first, torch internals dropped
    span: Span | None = None  # where a finding about it points (PT2EGraph.locate), for call_function nodes
    related: tuple[Related, ...] = ()
    is_tensor_op: bool = False  # an aten op producing tensors (what statistics count)
    is_compute: bool = False  # conv / linear / matmul / bmm / addmm / sdpa ...
    is_noop: bool = False  # no arithmetic at inference: views, reshapes, permutes, eval-mode dropout
    annotated: bool = False  # the quantizer put it in a quantized pattern
    excluded: bool = False  # the quantizer config says not to quantize it (a None config matches it)
    inputs: tuple[str, ...] = ()  # activation producers (parameters and buffers not included)
    inputs_quantized: tuple[bool, ...] = ()  # per ``inputs``: a quantize/dequantize pair after convert_pt2e
    weights_quantized: bool | None = None  # None: no parameter input
    output_quantized: bool = False  # its output is quantized (for at least one user) after convert_pt2e
    between_quantized: bool = False  # float, fed by a quantized op and feeding a quantize: a round trip
    training: bool = False  # batch_norm / dropout captured with training=True
    grad_enabled: bool = True
    grad_region: str | None = None  # the grad-disabled region (sub-graph) it runs in
    float_reason: str | None = None  # for tensor ops the quantizer left float: one of REASON_TEXT

    @property
    def quantized(self) -> bool:
        """Runs as (part of) a quantized op after conversion and lowering."""
        return self.annotated

    @property
    def reason_text(self) -> str:
        return REASON_TEXT.get(self.float_reason or "", "")


@dataclass(frozen=True)
class GradRegion:
    """A ``wrap_with_set_grad_enabled`` sub-graph of the exported model (how export records
    ``torch.no_grad()`` / ``set_grad_enabled`` inside ``forward``)."""

    name: str  # the sub-graph's attribute name (submod_1)
    enabled: bool
    nodes: tuple[str, ...]  # PT2ENode names of its ops


class PT2EGraph:
    """The annotated PT2E graph of one (sub)model, as a DiGraph of PT2ENode.

    Edges carry ``quantized`` (a quantize/dequantize pair on that edge after convert_pt2e).
    ``pre_prepare`` holds the nodes as exported, before ``prepare_pt2e`` folded batch norms away
    (train-mode facts are read there).
    """

    def __init__(
        self,
        exported: Exported,
        quantizer: object,
        spec: ModelSpec,
        checked: tuple[str, ...],
    ):
        self.exported = exported
        self.model = exported.model
        self.prefix = exported.prefix
        self.quantizer = quantizer
        self.quantizer_name = quantizer_name(quantizer)
        self.spec = spec
        self.checked = checked
        self.graph = DiGraph()
        self.pre_prepare: dict[str, PT2ENode] = {}
        self.regions: list[GradRegion] = []
        self.prepare_error: str | None = None
        self.prepared = None  # the prepared GraphModule (None when prepare_pt2e raised)
        self.unmatched_module_configs: tuple[str, ...] = ()
        self.qat = False  # annotated by prepare_qat_pt2e (the quantizer's QAT config)
        self._located: dict = {}

    # ---- queries ---------------------------------------------------------------------------------

    def node(self, name: str) -> PT2ENode:
        return self.graph.nodes[name]["node"]

    def nodes(self) -> Iterator[PT2ENode]:
        for name in self.graph.nodes:
            yield self.node(name)

    def tensor_ops(self) -> list[PT2ENode]:
        return [n for n in self.nodes() if n.is_tensor_op]

    def compute_ops(self) -> list[PT2ENode]:
        return [n for n in self.nodes() if n.is_compute]

    def users(self, name: str) -> list[str]:
        return list(self.graph.successors(name))

    def producers(self, name: str) -> list[str]:
        return list(self.graph.predecessors(name))

    def edge_quantized(self, producer: str, user: str) -> bool:
        return bool(self.graph.edges[producer, user].get("quantized"))

    def full(self, qualname: str | None) -> str | None:
        """A module path in the checked root model (sub-model graphs carry a prefix)."""
        if qualname is None or not self.prefix:
            return qualname
        return f"{self.prefix}.{qualname}" if qualname else self.prefix

    # ---- the pointing rule -------------------------------------------------------------------------

    @cached_property
    def build_span(self) -> Span:
        """The line of the checked file that builds this model."""
        frames = fr.construction_frames(self.model)
        span, _ = fr.locate(frames, [self.spec.path], self.spec.span)
        return span if any(f.path == os.path.abspath(self.spec.path) for f in frames) else self.spec.span

    def locate(self, node: PT2ENode | str) -> tuple[Span, tuple[Related, ...]]:
        """Where a finding about ``node`` points, by the catalog's rule.

        The call site in a checked file; for a torch module run by a container (``nn.Sequential``,
        a loop over a ModuleList), the line that constructs it; for code in a library
        (torchvision), the line of the checked file that builds the module, the library line in
        ``related``.
        """
        if isinstance(node, str):
            node = self.node(node) if node in self.graph else self.pre_prepare[node]
        frames = node.frames
        owner = self._owner(node)
        inner = frames[0] if frames else None
        if owner is not None and _is_torch_module(owner):
            if inner is None or fr.is_torch_container(inner.path) or self._shared_site(node):
                frames = fr.construction_frames(owner) or frames
        frames = tuple(f for f in frames if not fr.is_torch_container(f.path))
        if frames and not self._checked(frames[0]) and owner is not None:
            built = tuple(f for f in fr.construction_frames(owner) if not fr.is_torch_container(f.path))
            span, _ = self._locate(built, self.checked)
            _, related = self._locate(frames[:1], ())
            return span, related
        return self._locate(frames, self.checked)

    def _locate(self, frames: tuple[fr.Frame, ...], checked: tuple[str, ...]) -> tuple[Span, tuple[Related, ...]]:
        """``frames.locate``, memoized: the instances of one block share their frames."""
        key = (frames, checked)
        if key not in self._located:
            self._located[key] = fr.locate(frames, checked, self.build_span)
        return self._located[key]

    def _owner(self, node: PT2ENode):
        """The module whose forward ran the op (relative to the exported model)."""
        if node.module is None:
            return None
        local = node.module
        if self.prefix:
            local = "" if local == self.prefix else local[len(self.prefix) + 1 :]
        try:
            return self.model.get_submodule(local) if local else self.model
        except AttributeError:
            return None

    def _checked(self, frame: fr.Frame) -> bool:
        return any(frame.path == os.path.abspath(p) for p in self.checked)

    def _shared_site(self, node: PT2ENode) -> bool:
        key = _site_key(node)
        return key is not None and len(self._sites.get(key, ())) > 1

    @cached_property
    def _sites(self) -> dict[tuple, set[str]]:
        """Call sites shared by several torch modules of one container (``for layer in self.layers``)."""
        sites: dict[tuple, set[str]] = {}
        for node in (*self.nodes(), *self.pre_prepare.values()):
            key = _site_key(node)
            if key is not None and node.module_type and node.module_type.startswith("torch.nn."):
                sites.setdefault(key, set()).add(node.module or "")
        return sites


def _site_key(node: PT2ENode) -> tuple | None:
    if not node.frames or node.module is None:
        return None
    frame = node.frames[0]
    return (frame.path, frame.line, node.module.rpartition(".")[0])


def _is_torch_module(module: object) -> bool:
    return type(module).__module__.startswith("torch.nn.")


# ---- annotate -------------------------------------------------------------------------------------------


def annotate(
    exported: Exported,
    quantizer: object,
    spec: ModelSpec | None = None,
    checked: tuple[str, ...] | None = None,
    qat: bool = False,
) -> PT2EGraph:
    """``prepare_pt2e(exported.module, quantizer)`` on a copy, on meta, read into a PT2EGraph
    (``prepare_qat_pt2e`` when ``qat``: a file that trains with fake quantization).

    ``spec`` and ``checked`` say where findings point (default: the model's class definition).
    If ``prepare_pt2e`` raises, ``prepare_error`` holds the reason and nothing is annotated.
    """
    require_torchao()
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    spec = spec or _class_spec(exported.model)
    graph = PT2EGraph(exported, quantizer, spec, checked or (spec.path,))
    graph.qat = qat
    module = copy.deepcopy(exported.module)
    graph.pre_prepare = {n.name: n for n in _Reader(graph, module, None).read_plain()}
    graph.unmatched_module_configs = unmatched_module_names(quantizer, module)
    try:
        with quiet():
            if qat:  # batch norms stay: prepare_qat_pt2e fuses them into fake-quantized conv patterns
                prepared = prepare_qat_pt2e(module, quantizer)
            else:
                _fold_batch_norms(module)
                prepared = prepare_pt2e(module, quantizer)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's prepare_pt2e would raise the same
        graph.prepare_error = describe(exc)
        _Reader(graph, copy.deepcopy(exported.module), None).read(annotations=False)
    else:
        graph.prepared = prepared
        _Reader(graph, prepared, quantizer).read(annotations=True)
    _mark_float(graph)
    for node in (*graph.nodes(), *graph.pre_prepare.values()):
        if node.fx_op == "call_function":
            node.span, node.related = graph.locate(node)
    return graph


def _fold_batch_norms(module) -> None:
    """torchao's conv-bn folding, the first step of ``prepare_pt2e`` (which then finds no batch norm
    left), with one dead-code pass at the end instead of one (and a graph lint) per batch norm."""
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    graph = module.graph
    graph.eliminate_dead_code = lambda *args, **kwargs: False  # this graph object only
    module.recompile = lambda *args, **kwargs: None
    try:
        _fuse_conv_bn_(module)
    finally:
        del graph.eliminate_dead_code, module.recompile
    graph.eliminate_dead_code()
    module.recompile()


def _class_spec(model) -> ModelSpec:
    cls = type(model)
    try:
        path, line = inspect.getsourcefile(cls) or "<unknown>", inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        path, line = "<unknown>", 1
    return ModelSpec(f"{cls.__name__}()", path, line, 1, lambda: model)


class _Reader:
    """Turns a (prepared) GraphModule, sub-graphs included, into PT2ENodes and edges."""

    def __init__(self, graph: PT2EGraph, module, quantizer: object | None):
        self.graph = graph
        self.module = module
        self.excluded = excluded_matcher(quantizer)
        self._pattern: dict = {}

    def read_plain(self) -> list[PT2ENode]:
        """The ops as exported, sub-graphs included (no edges): train-mode facts are read before prepare."""
        import torch.fx as fx

        out = []
        for scope, gm in self.module.named_modules():
            if isinstance(gm, fx.GraphModule):
                for n in gm.graph.nodes:
                    if n.op == "call_function":
                        out.append(self._node(n, f"{scope}.{n.name}" if scope else n.name, True, None, False))
        return out

    def read(self, annotations: bool) -> None:
        """Fill the graph: nodes, edges (observers folded into ``quantized``), grad-disabled regions."""
        self._walk(self.module, "", {}, True, None, annotations)

    def _walk(self, gm, scope: str, outer: dict, grad: bool, region: str | None, annotations: bool) -> list:
        """Add ``gm``'s nodes to the graph; returns the (node, quantized) pairs its output returns.

        ``outer`` maps the index of each placeholder of a sub-graph to its producer outside.
        """
        from torchao.quantization.pt2e.observer import _is_activation_post_process

        g = self.graph.graph
        modules = dict(gm.named_modules(remove_duplicate=False))
        # fx node name -> (graph node name, quantized edge?) for every value of this (sub-)graph
        resolved: dict[str, tuple[str, bool] | None] = {}
        results: list = []
        placeholder_index = 0
        for fx_node in gm.graph.nodes:
            if fx_node.op == "placeholder" and scope:
                resolved[fx_node.name] = outer.get(placeholder_index)
                placeholder_index += 1
                continue
            if fx_node.op == "call_module":
                observer = modules.get(fx_node.target)
                if observer is not None and _is_activation_post_process(observer):
                    source = resolved.get(fx_node.args[0].name)
                    quantizes = _observer_quantizes(observer)
                    resolved[fx_node.name] = (source[0], source[1] or quantizes) if source else None
                    if source and quantizes:
                        self.graph.node(source[0]).output_quantized = True
                continue  # _guards_fn and friends: no data
            if fx_node.op == "output" and scope:
                results = [resolved[a.name] for a in fx_node.all_input_nodes if resolved.get(a.name)]
                continue
            name = f"{scope}.{fx_node.name}" if scope else fx_node.name
            sub = _region_graph(gm, fx_node)
            if sub is not None:
                attribute, sub_module, operands, enabled = sub
                sub_scope = f"{scope}.{attribute}" if scope else attribute
                mapping = {i: resolved.get(a.name) if hasattr(a, "name") else None for i, a in enumerate(operands)}
                inner_grad = grad if enabled is None else enabled  # set_grad_enabled sets, autocast keeps
                inner_region = None if inner_grad else (sub_scope if enabled is False else region)
                before = set(g.nodes)
                inner_results = self._walk(sub_module, sub_scope, mapping, inner_grad, inner_region, False)
                inner = tuple(n for n in g.nodes if n not in before)
                g.add_node(name, node=self._node(fx_node, name, grad, region, False))
                for source, quantized in inner_results:
                    g.add_edge(source, name, quantized=quantized)
                self.graph.regions.append(GradRegion(sub_scope, inner_grad, inner))
                resolved[fx_node.name] = (name, False)
                continue
            node = self._node(fx_node, name, grad, region, annotations)
            g.add_node(name, node=node)
            resolved[fx_node.name] = (name, False)
            activations, quantized, weights = [], [], []
            for arg in fx_node.all_input_nodes:
                source = resolved.get(arg.name)
                if source is None:
                    continue
                g.add_edge(source[0], name, quantized=source[1])
                if self.graph.node(source[0]).fx_op == "get_attr":
                    weights.append(source[1])
                else:
                    activations.append(source[0])
                    quantized.append(source[1])
            node.inputs, node.inputs_quantized = tuple(activations), tuple(quantized)
            node.weights_quantized = any(weights) if weights else None
        return results

    def _qat_pattern_op(self, fx_node) -> bool:
        """An op of the conv-bn pattern ``prepare_qat_pt2e`` writes (it runs in torchao's pattern module),
        or a computation on parameters only (the scaled weight, a zero bias): ``convert_pt2e`` folds
        them into the conv, so they are not float ops of the converted model."""
        memo = self._pattern
        if fx_node not in memo:
            stack = list((fx_node.meta.get("nn_module_stack") or {}).values())
            in_pattern = bool(stack) and str(stack[-1][1]).endswith(_QAT_PATTERN_MODULE)
            inputs = fx_node.all_input_nodes
            memo[fx_node] = in_pattern or (
                fx_node.op == "call_function"
                and bool(inputs)
                and all(i.op == "get_attr" or (i.op == "call_function" and self._qat_pattern_op(i)) for i in inputs)
            )
        return memo[fx_node]

    def _node(self, fx_node, name: str, grad: bool, region: str | None, annotations: bool) -> PT2ENode:
        target = fx_node.target
        op_type, target_name = _op_names(fx_node)
        module, module_type, call_index = _module_of(fx_node)
        node = PT2ENode(
            name=name,
            target=target_name,
            op_type=op_type,
            fx_op=fx_node.op,
            module=self.graph.full(module),
            module_type=module_type,
            call_index=call_index,
            frames=_frames(fx_node.meta.get("stack_trace")),
            grad_enabled=grad,
            grad_region=region,
        )
        if fx_node.op == "call_function" and _is_aten(target):
            node.is_tensor_op = _produces_tensor(fx_node)
            node.is_compute = op_type in COMPUTE_OPS
            node.training = _training_flag(fx_node)
            # QAT: dropout is captured in training mode and turned off by move_exported_model_to_eval
            qat_noop = self.graph.qat and ("dropout" in op_type or self._qat_pattern_op(fx_node))
            node.is_noop = is_noop(fx_node) or qat_noop
            if annotations:
                node.excluded = self.excluded(fx_node)
                node.annotated = _is_annotated(fx_node) and not node.excluded
        return node


def _region_graph(gm, fx_node):
    """A higher-order op wrapping a sub-graph: (attribute, GraphModule, operands, grad mode it sets or None)."""
    import torch
    import torch.fx as fx

    if fx_node.op != "call_function" or not isinstance(fx_node.target, torch._ops.HigherOrderOperator):
        return None
    for index, arg in enumerate(fx_node.args):
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            sub = getattr(gm, arg.target, None)
            if isinstance(sub, fx.GraphModule):
                enabled = bool(fx_node.args[0]) if fx_node.target.__name__ == _GRAD_HOP else None
                return arg.target, sub, list(fx_node.args[index + 1 :]), enabled
    return None


def _is_aten(target: object) -> bool:
    import torch

    return isinstance(target, torch._ops.OpOverload)


def _op_names(fx_node) -> tuple[str, str]:
    target = fx_node.target
    if fx_node.op != "call_function":
        return fx_node.op, fx_node.op
    if _is_aten(target):
        packet = target._schema.name.split("::")[-1]
        return packet.rstrip("_") or packet, str(target)
    if target is operator.getitem:
        return "getitem", "getitem"
    name = getattr(target, "__name__", str(target))
    return name, name


def _module_of(fx_node) -> tuple[str | None, str | None, int]:
    """(module path, module type, call index) of the innermost module in ``nn_module_stack``."""
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return None, None, 0
    key, (path, cls) = list(stack.items())[-1]
    _, at, index = str(key).rpartition("@")
    call_index = int(index) if at and index.isdigit() else 0
    if path.startswith("L['self']."):
        path = path[len("L['self'].") :]
    elif path == "L['self']":
        path = ""
    cls_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    return path, cls_name, call_index


def _frames(stack_trace: str | None) -> tuple[fr.Frame, ...]:
    """Frames of an export ``stack_trace`` (outermost first in the text): innermost first, internals dropped."""
    if not stack_trace:
        return ()
    out = []
    for path, line, func in _FRAME.findall(stack_trace):
        path = os.path.abspath(path)
        if fr.is_internal(path):
            continue
        out.append(fr.Frame(path, int(line), 0, int(line), 0, func))
    return tuple(reversed(out))


def _produces_tensor(fx_node) -> bool:
    import torch

    value = fx_node.meta.get("val")
    if isinstance(value, (tuple, list)):
        return any(isinstance(v, torch.Tensor) for v in value)
    return isinstance(value, torch.Tensor)


def is_noop(fx_node) -> bool:
    """An aten node that does no arithmetic at inference: a view (asked of the op's schema: its result
    aliases an input and nothing is written), or an op with a ``train`` flag that is off (dropout)."""
    schema = fx_node.target._schema
    writes = any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
    aliases = any(r.alias_info is not None for r in schema.returns)
    if aliases and not writes:
        return True
    has_train_flag = any(a.name == "train" for a in schema.arguments)
    return has_train_flag and "dropout" in schema.name and not _training_flag(fx_node)


def _training_flag(fx_node) -> bool:
    """True for ops captured in training mode: a ``training`` / ``train`` argument that is True."""
    for index, argument in enumerate(fx_node.target._schema.arguments):
        if argument.name not in ("training", "train"):
            continue
        if argument.name in fx_node.kwargs:
            return fx_node.kwargs[argument.name] is True
        if index < len(fx_node.args):
            return fx_node.args[index] is True
        return argument.default_value is True
    return False


def _is_annotated(fx_node) -> bool:
    annotation = fx_node.meta.get("quantization_annotation")
    if annotation is None:
        return False
    return bool(
        getattr(annotation, "_annotated", False)
        or getattr(annotation, "input_qspec_map", None)
        or getattr(annotation, "output_qspec", None) is not None
    )


def _observer_quantizes(observer) -> bool:
    """Will convert_pt2e turn this observer into a quantize/dequantize pair (not a cast, not nothing)?"""
    import torch

    try:
        from torchao.quantization.pt2e.convert import _is_conversion_supported
    except ImportError:  # pragma: no cover - older torchao
        supported = True
    else:
        supported = _is_conversion_supported(observer)
    dtype = getattr(observer, "dtype", None)
    return bool(supported) and dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# ---- float regions --------------------------------------------------------------------------------------


def _mark_float(graph: PT2EGraph) -> None:
    """Between-quantized-neighbours and the reason each float tensor op stays float."""
    g = graph.graph
    order = list(g.nodes)  # insertion order is topological (fx order, regions before their wrapper)
    up: dict[str, bool] = {}
    for name in order:
        node = graph.node(name)
        if node.annotated or node.fx_op in ("placeholder", "get_attr"):
            up[name] = False
            continue
        up[name] = any(
            g.edges[p, name].get("quantized") or graph.node(p).annotated or up.get(p, False)
            for p in g.predecessors(name)
            if graph.node(p).fx_op != "get_attr"
        )
    down: dict[str, bool] = {}
    for name in reversed(order):
        node = graph.node(name)
        if node.annotated:
            down[name] = False
            continue
        down[name] = node.output_quantized or any(
            g.edges[name, u].get("quantized") or (not graph.node(u).annotated and down.get(u, False))
            for u in g.successors(name)
        )
    supported = {n.op_type for n in graph.nodes() if n.annotated}
    declared, propagation = declared_op_types(graph.quantizer)
    supported |= declared
    for name in order:
        node = graph.node(name)
        if not node.is_tensor_op or node.annotated:
            continue
        node.between_quantized = up[name] and down[name]
        node.float_reason = _reason(graph, node, supported, propagation)


def _reason(graph: PT2EGraph, node: PT2ENode, supported: set[str], propagation: set[str] | None) -> str:
    if graph.prepare_error is not None:
        return PREPARE_FAILED
    if not node.grad_enabled:
        return GRAD_DISABLED
    if node.excluded:
        return EXCLUDED
    if node.op_type not in supported:
        return NO_PATTERN
    needs_quantized_input = node.op_type in propagation if propagation is not None else not node.is_compute
    float_input = needs_quantized_input and any(
        not quantized and not graph.node(p).annotated
        for p, quantized in zip(node.inputs, node.inputs_quantized, strict=True)
    )
    return FLOAT_INPUT if float_input else NOT_MATCHED
