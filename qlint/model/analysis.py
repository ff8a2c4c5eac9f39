"""QGraph: the traced model as a DiGraph, annotated in one forward pass.

Every node carries its module (qualified name and type), its source location, and the kind of
tensor it produces once eager ``convert`` has run (float / quantized / none / unknown).
Values are computed on the meta device alongside, so shapes are known without any real compute;
a node whose value cannot be computed keeps going with ``unknown``.
Rules are queries over the annotated graph; none re-walks the model.
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import torch
import torch.fx as fx
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub

from qlint.config import Settings
from qlint.diagnostics import Diagnostic, Related, Severity, Span
from qlint.model import frames as fr
from qlint.model import support
from qlint.model.digraph import DiGraph
from qlint.model.loader import ModelSpec, quiet
from qlint.model.trace import Traced, float_functional_op, input_shape_guess, run_float_functional


class Kind(str, Enum):
    FLOAT = "float"
    QUANT = "quantized"
    NONE = "none"
    UNKNOWN = "unknown"


_UNKNOWN = object()
_SHAPE_PRESERVING = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Dropout,
    nn.Identity,
    QuantStub,
    DeQuantStub,
)
_SCALAR_METHODS = {"size", "dim", "numel", "item", "tolist", "stride", "element_size", "__len__"}
_SCALAR_ATTRS = {"shape", "dtype", "device", "ndim", "is_quantized", "requires_grad"}


@dataclass
class NodeFacts:
    """What the pass learned about one node (stored as the graph's node attributes)."""

    op: str
    target: object
    module: str | None = None  # qualified module name (call_module, FloatFunctional markers)
    module_type: type | None = None
    kind: Kind = Kind.UNKNOWN
    input_kinds: tuple[Kind, ...] = ()
    swapped: bool = False  # convert replaces it with a quantized kernel
    quantized_support: bool | None = None  # probe result when a quantized tensor arrives
    probe_error: str = ""
    layout: torch.memory_format | None = None  # a quantized value's channels-last layout after convert
    value: object = field(default=_UNKNOWN, repr=False)


class QGraph:
    """The annotated graph of one model."""

    def __init__(
        self,
        traced: Traced,
        spec: ModelSpec,
        settings: Settings,
        checked: tuple[str, ...],
        quantized_input: bool = False,
    ):
        self.gm = traced.graph_module
        self.quantized_input = quantized_input  # a part whose caller quantized its (first) input
        self.root = traced.root
        self.spec = spec
        self.settings = settings
        self.checked = checked
        self.prefix = ""  # qualified name of this graph's root inside the checked model
        self.checked_model = self.root  # the whole checked model (a sub-root graph's root is a part of it)
        self.graph = DiGraph()
        self.fx_nodes: dict[str, fx.Node] = {}
        self._qconfig_on = _effective_qconfig(self.root)
        self.input_shape = settings.input_shape or input_shape_guess(self.gm)
        self.lazy_modules = support.uninitialized_lazy_modules(self.root)  # before the meta run initializes them
        self._run()

    # ---- queries used by rules -----------------------------------------------------------------

    def facts(self, name: str) -> NodeFacts:
        return self.graph.nodes[name]["facts"]

    def nodes(self, op: str | None = None):
        for name in self.graph.nodes:
            facts = self.facts(name)
            if op is None or facts.op == op:
                yield name, facts

    def users(self, name: str) -> list[str]:
        return list(self.graph.successors(name))

    def submodule(self, qualname: str) -> nn.Module:
        return self.root.get_submodule(qualname)

    def full(self, qualname: str | None) -> str | None:
        """A module's qualified name in the checked model (sub-root graphs carry a prefix)."""
        return f"{self.prefix}.{qualname}" if self.prefix and qualname else qualname

    def quantized_by_qconfig(self, qualname: str) -> bool:
        """False when a ``qconfig = None`` on the module or an ancestor keeps it float."""
        return self._qconfig_on.get(qualname, True)

    @cached_property
    def build_span(self) -> Span:
        """The line of the checked file that builds this model."""
        frames = fr.construction_frames(self.root)
        span, _ = fr.locate(frames, [self.spec.path], self.spec.span)
        return span if any(f.path == os.path.abspath(self.spec.path) for f in frames) else self.spec.span

    def locate(self, name: str) -> tuple[Span, tuple[Related, ...]]:
        """Where a node's diagnostic points, by the catalog's rule.

        The call site in a checked file; for a module run by a torch container (``nn.Sequential``,
        a ModuleList loop), the line that constructs it; for code in a library (torchvision), the
        line of the checked file that builds the module, with the library's line in ``related``.
        """
        node = self.fx_nodes[name]
        facts = self.facts(name)
        frames = tuple(node.meta.get("qlint_frames", ()))
        inner = frames[0] if frames else None
        owner = self._owner(node)
        if facts.op == "call_module" and owner is not None:
            if inner is None or fr.is_torch_container(inner.path) or self._shared_site(name):
                frames = fr.construction_frames(owner) or frames
                inner = frames[0] if frames else None
        frames = tuple(f for f in frames if not fr.is_torch_container(f.path))
        if frames and not self._checked(frames[0]) and owner is not None:
            built = tuple(f for f in fr.construction_frames(owner) if not fr.is_torch_container(f.path))
            span, _ = fr.locate(built, self.checked, self.build_span)
            _, related = fr.locate(frames[:1], (), self.build_span)
            return span, related
        return fr.locate(frames, self.checked, self.build_span)

    def _owner(self, node: fx.Node) -> nn.Module | None:
        """The module whose forward produced ``node`` (the called module, for call_module)."""
        if node.op == "call_module":
            return self.submodule(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return self.root
        qualname = list(stack.values())[-1][0]
        try:
            return self.submodule(qualname) if qualname else self.root
        except AttributeError:
            return None

    def _checked(self, frame: fr.Frame) -> bool:
        return any(frame.path == os.path.abspath(p) for p in self.checked)

    def source_text(self, name: str) -> str:
        """The source text of a node's innermost call site ("" when unknown or multi-line)."""
        import linecache

        frames = self.fx_nodes[name].meta.get("qlint_frames", ())
        if not frames or frames[0].end_line != frames[0].line:
            return ""
        frame = frames[0]
        line = linecache.getline(frame.path, frame.line).encode("utf-8")
        return line[frame.col : frame.end_col].decode("utf-8", errors="replace")

    def locate_module(self, qualname: str) -> tuple[Span, tuple[Related, ...]]:
        """Where a module was constructed (for findings about a module rather than a call)."""
        frames = fr.construction_frames(self.submodule(qualname))
        return fr.locate(frames, self.checked, self.build_span)

    def return_location(self) -> tuple[Span, tuple[Related, ...]]:
        """The ``return`` of the root's ``forward``."""
        frame = _last_return(type(self.root).forward)
        if frame is None:
            return self.build_span, ()
        return fr.locate([frame], self.checked, self.build_span)

    def diagnostic(
        self,
        code: str,
        message: str,
        node: str | None = None,
        *,
        location: tuple[Span, tuple[Related, ...]] | None = None,
        module: str | None = None,
        data: object = None,
        severity: Severity | None = None,
    ) -> Diagnostic:
        """A diagnostic about ``node`` (or an explicit location) of this model."""
        span, related = location or (self.locate(node) if node else (self.build_span, ()))
        if module is None and node is not None:
            module = self.facts(node).module
        module = self.full(module)
        return Diagnostic(
            code,
            message,
            span,
            related=related,
            model=self.spec.name,
            module=module,
            data=data,
            severity=severity,
        )

    def _shared_site(self, name: str) -> bool:
        frames = self.fx_nodes[name].meta.get("qlint_frames", ())
        if not frames:
            return False
        parent = self.facts(name).module.rpartition(".")[0]
        key = (frames[0].path, frames[0].line, frames[0].col, parent)
        return len(self._sites.get(key, ())) > 1

    @cached_property
    def _sites(self) -> dict[tuple, set[str]]:
        """Call sites shared by several modules of one container (``for layer in self.layers``).

        Instances of one block class share their call sites too, but under different parents:
        those keep pointing at the call.
        """
        sites: dict[tuple, set[str]] = {}
        for name, facts in self.nodes("call_module"):
            frames = self.fx_nodes[name].meta.get("qlint_frames", ())
            if frames:
                parent = facts.module.rpartition(".")[0]
                key = (frames[0].path, frames[0].line, frames[0].col, parent)
                sites.setdefault(key, set()).add(facts.module)
        return sites

    # ---- the pass ------------------------------------------------------------------------------

    def _run(self) -> None:
        placeholders = 0
        for node in self.gm.graph.nodes:
            self.fx_nodes[node.name] = node
            facts = NodeFacts(node.op, node.target)
            self.graph.add_node(node.name, facts=facts)
            for source in node.all_input_nodes:
                self.graph.add_edge(source.name, node.name)
            facts.input_kinds = tuple(self.facts(n.name).kind for n in node.all_input_nodes)
            if node.op == "placeholder":
                facts.value = self._placeholder_value(node, placeholders)
                facts.kind = Kind.FLOAT if _holds(facts.value, Kind.FLOAT) or facts.value is _UNKNOWN else Kind.NONE
                if facts.kind is Kind.FLOAT and placeholders == 0 and self.quantized_input:
                    facts.kind = Kind.QUANT
                placeholders += 1
            elif node.op == "get_attr":
                facts.value = _fetch(self.root, node.target)
                facts.kind = _kind_from_value(facts.value)
            elif node.op == "call_module":
                self._module_node(node, facts)
            elif node.op == "call_function" and node.target is float_functional_op:
                self._float_functional_node(node, facts)
            elif node.op in ("call_function", "call_method"):
                self._function_node(node, facts)
            elif node.op == "output":
                facts.kind = _join(facts.input_kinds)

    def _placeholder_value(self, node: fx.Node, index: int) -> object:
        if index == 0 and self.input_shape:
            dtype = torch.long if self._feeds_index_module(node) else torch.float32
            return torch.empty(self.input_shape, device="meta", dtype=dtype)
        if self._feeds_index_module(node) and not node.args:
            return torch.empty((1, 8), device="meta", dtype=torch.long)
        return node.args[0] if node.args else _UNKNOWN

    def _feeds_index_module(self, node: fx.Node) -> bool:
        """The input goes into an ``nn.Embedding``/``EmbeddingBag``, straight or through QuantStubs (a
        ``QuantWrapper`` around a model that starts with one): token ids, not a float tensor."""
        from torch.ao.quantization import QuantStub

        for user in node.users:
            if user.op != "call_module" or not user.args or user.args[0] is not node:
                continue
            module = self.submodule(user.target)
            if isinstance(module, support.INDEX_INPUT_TYPES):
                return True
            if isinstance(module, QuantStub) and self._feeds_index_module(user):
                return True
        return False

    def _values(self, node: fx.Node):
        unknown = []

        def value(n: fx.Node) -> object:
            v = self.facts(n.name).value
            if v is _UNKNOWN:
                unknown.append(n)
            return v

        args = fx.node.map_arg(node.args, value)
        kwargs = fx.node.map_arg(node.kwargs, value)
        return args, kwargs, not unknown

    def _execute(self, facts: NodeFacts, run) -> None:
        try:
            with quiet(), torch.no_grad():
                facts.value = run()
        except Exception:  # noqa: BLE001 - meta execution is best effort
            facts.value = _UNKNOWN

    def _module_node(self, node: fx.Node, facts: NodeFacts) -> None:
        module = self.submodule(node.target)
        facts.module, facts.module_type = node.target, type(module)
        args, kwargs, known = self._values(node)
        if known and isinstance(module, _SHAPE_PRESERVING) and len(args) == 1 and not kwargs:
            facts.value = args[0]  # same shape and dtype: no need to run it on meta
        elif known:
            self._execute(facts, lambda: module(*args, **kwargs))
        first = self.facts(node.all_input_nodes[0].name).kind if node.all_input_nodes else Kind.UNKNOWN
        swappable = support.swapped_module_types() | support.custom_module_types()
        facts.swapped = type(module) in swappable and self.quantized_by_qconfig(node.target)
        if isinstance(module, QuantStub):
            facts.kind = Kind.QUANT if facts.swapped else first
        elif isinstance(module, DeQuantStub):
            facts.kind = Kind.FLOAT
        elif facts.swapped and isinstance(module, support.INDEX_INPUT_TYPES):
            facts.kind = Kind.FLOAT  # a quantized embedding is weight-only: float out
        elif facts.swapped:
            facts.kind = Kind.QUANT
            facts.layout = self._swapped_layout(module, node, facts)
        elif first is Kind.QUANT:
            key = ("module", type(module), module.extra_repr(), self._signature(node))
            ok, out, error, layout = support.probe(key, lambda: self._probe_module(module, node))
            facts.quantized_support, facts.probe_error, facts.layout = ok, error, layout
            facts.kind = Kind(out) if ok else Kind.QUANT
        else:
            facts.kind = _kind_from_value(facts.value) if facts.value is not _UNKNOWN else first

    def _float_functional_node(self, node: fx.Node, facts: NodeFacts) -> None:
        qualname, method = node.args[0], node.args[1]
        module = self.submodule(qualname)
        facts.module, facts.module_type = qualname, type(module)
        args, kwargs, known = self._values(node)
        if known:
            self._execute(facts, lambda: run_float_functional(self.root, qualname, method, args[2:], kwargs))
        facts.swapped = type(module) in support.swapped_module_types() and self.quantized_by_qconfig(qualname)
        facts.kind = Kind.QUANT if facts.swapped else _join(facts.input_kinds)
        if facts.swapped:  # quantized add/mul/cat allocate their output like their first operand
            facts.layout = next((self.facts(n.name).layout for n in node.all_input_nodes), None)

    def _function_node(self, node: fx.Node, facts: NodeFacts) -> None:
        args, kwargs, known = self._values(node)
        if known:
            self._execute(facts, lambda: _call(node, args, kwargs))
        kinds = {k for k in facts.input_kinds if k in (Kind.FLOAT, Kind.QUANT)}
        if Kind.QUANT in kinds:
            ok, out, error, layout = support.probe(
                ("op", node.op, node.target, self._signature(node)), lambda: self._probe_function(node)
            )
            facts.quantized_support, facts.probe_error, facts.layout = ok, error, layout
            facts.kind = Kind(out) if ok else (Kind.QUANT if ok is False else self._guess_kind(node, Kind.QUANT))
        elif facts.value is not _UNKNOWN:
            facts.kind = _kind_from_value(facts.value)
        else:
            facts.kind = self._guess_kind(node, Kind.FLOAT if kinds else Kind.UNKNOWN)

    def _guess_kind(self, node: fx.Node, tensor_kind: Kind) -> Kind:
        if node.op == "call_method" and node.target in _SCALAR_METHODS:
            return Kind.NONE
        if node.target is getattr and len(node.args) > 1 and node.args[1] in _SCALAR_ATTRS:
            return Kind.NONE
        return tensor_kind

    def _swapped_layout(self, module: nn.Module, node: fx.Node, facts: NodeFacts) -> torch.memory_format | None:
        """The layout of a swapped module's quantized output (channels-last for torch's int8 convs)."""
        source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        value = self.facts(source.name).value if source is not None else _UNKNOWN
        out = facts.value
        if not isinstance(value, torch.Tensor) or not isinstance(out, torch.Tensor) or out.dim() not in (4, 5):
            return None
        return support.quantized_output_layout(module, tuple(value.shape), self.facts(source.name).layout)

    # ---- probes --------------------------------------------------------------------------------

    def _signature(self, node: fx.Node) -> object:
        def sig(n: fx.Node) -> object:
            facts = self.facts(n.name)
            value = facts.value
            if facts.kind in (Kind.QUANT, Kind.FLOAT):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else _structure(value)
                layout = str(facts.layout) if facts.kind is Kind.QUANT and facts.layout is not None else None
                return ("Q" if facts.kind is Kind.QUANT else "F", shape, getattr(value, "dtype", None), layout)
            return support.signature(value) if value is not _UNKNOWN else ("T", None, None)

        return support.signature((fx.node.map_arg(node.args, sig), fx.node.map_arg(node.kwargs, sig)))

    def _materialize(self, node: fx.Node, shrink: bool, float_only: bool = False):
        maker = support.Materialize(shrink, float_only)

        def real(n: fx.Node) -> object:
            facts = self.facts(n.name)
            if facts.kind in (Kind.QUANT, Kind.FLOAT):
                return maker.value(facts.value, facts.kind is Kind.QUANT, facts.layout)
            if facts.value is _UNKNOWN or isinstance(facts.value, torch.Tensor):
                maker.failed = maker.failed or facts.value is _UNKNOWN
                return maker.tensor(facts.value, False) if isinstance(facts.value, torch.Tensor) else None
            return facts.value

        args = fx.node.map_arg(node.args, real)
        kwargs = fx.node.map_arg(node.kwargs, real)
        if maker.failed:
            raise _Inconclusive("arguments could not be materialized")
        return args, kwargs

    def _at_small_then_own_shape(self, node: fx.Node, run) -> object:
        """``run(args, kwargs)`` on small tensors; on the node's own shapes if the small ones do not fit.

        Whether torch has a quantized kernel does not depend on the size, so the dispatcher's
        "no QuantizedCPU kernel" at the small shape is final; any other error is a shape that did not
        fit the op, and the probe is repeated at the model's shape (inconclusive if that is too big).
        When that fails too, the same op runs on float tensors of the same shapes, as in the float
        model: if they pass, the converted model's tensor is what the op refuses (``FailsOnQuantized``),
        else the shapes qlint computed are at fault and the probe stays inconclusive.
        """
        try:
            args, kwargs = self._materialize(node, shrink=True)
            return run(args, kwargs)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if support.missing_kernel(exc):
                raise
        args, kwargs = self._materialize(node, shrink=False)
        try:
            return run(args, kwargs)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if support.missing_kernel(exc) or isinstance(exc, _Inconclusive):
                raise
            failure = exc
        args, kwargs = self._materialize(node, shrink=False, float_only=True)
        try:
            run(args, kwargs)
        except Exception:  # noqa: BLE001 - float fails too: qlint's shapes, not the quantized kernel
            raise failure from None
        raise support.FailsOnQuantized(failure)

    def _probe_function(self, node: fx.Node) -> object:
        return self._at_small_then_own_shape(node, lambda args, kwargs: _call(node, args, kwargs))

    def _probe_module(self, module: nn.Module, node: fx.Node) -> object:
        copy = support.cpu_copy(module)
        return self._at_small_then_own_shape(node, lambda args, kwargs: copy(*args, **kwargs))


class _Inconclusive(Exception):
    pass


def _call(node: fx.Node, args, kwargs) -> object:
    if node.op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


def _fetch(root: nn.Module, target: str) -> object:
    obj: object = root
    try:
        for part in target.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        return _UNKNOWN
    return obj


def _holds(value: object, kind: Kind) -> bool:
    return support.kind_of_value(value) == kind.value


def _kind_from_value(value: object) -> Kind:
    if value is _UNKNOWN:
        return Kind.UNKNOWN
    return Kind(support.kind_of_value(value))


def _join(kinds) -> Kind:
    kinds = set(kinds)
    for k in (Kind.QUANT, Kind.FLOAT, Kind.UNKNOWN):
        if k in kinds:
            return k
    return Kind.NONE


def _effective_qconfig(root: nn.Module) -> dict[str, bool]:
    """qualified name -> will eager prepare give it a qconfig (False where ``qconfig = None``)."""
    out: dict[str, bool] = {}

    def visit(module: nn.Module, prefix: str, inherited: bool) -> None:
        on = module.__dict__["qconfig"] is not None if "qconfig" in module.__dict__ else inherited
        out[prefix] = on
        for name, child in module.named_children():
            visit(child, f"{prefix}.{name}" if prefix else name, on)

    visit(root, "", True)
    return out


def _last_return(function) -> fr.Frame | None:
    """The last ``return`` statement of a function, as a Frame (byte columns)."""
    try:
        lines, start = inspect.getsourcelines(function)
        path = os.path.abspath(inspect.getsourcefile(function) or "")
    except (OSError, TypeError):
        return None
    indent = len(lines[0]) - len(lines[0].lstrip())
    try:
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError:
        return None
    returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return)]
    if not returns:
        return None
    last = max(returns, key=lambda n: (n.lineno, n.col_offset))
    line = start + last.lineno - 1
    end_line = start + (last.end_lineno or last.lineno) - 1
    return fr.Frame(path, line, last.col_offset + indent, end_line, (last.end_col_offset or 0) + indent, "forward")


def _structure(value: object) -> object:
    """A probe key's summary of a value that is not one tensor (an LSTM's ``(out, (h, c))``, ``unbind``'s tuple):
    two such values share probe outcomes only when their structures and shapes match."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_structure(v) for v in value))
    return type(value).__name__


def analyze(
    module: nn.Module,
    spec: ModelSpec,
    settings: Settings,
    checked: tuple[str, ...] = (),
    quantized_input: bool = False,
) -> QGraph:
    """Trace ``module`` and annotate its graph (raises trace.TraceFailure when fx cannot trace); a part of a model
    whose own forward does not trace gets ``quantized_input`` when its caller quantized what it passes."""
    from qlint.model.trace import trace

    traced = trace(module)
    return QGraph(traced, spec, settings, checked or (spec.path,), quantized_input)


def site_counts(qgraph: QGraph) -> Counter:
    """How many call nodes each module has (reuse detection)."""
    return Counter(f.module for _, f in qgraph.nodes() if f.module is not None)


def analyze_module(module: nn.Module, settings: Settings | None = None) -> QGraph:
    """A QGraph of a module on its own, outside any checked file (locations fall back to its class)."""
    cls = type(module)
    try:
        path, line = inspect.getsourcefile(cls) or "<unknown>", inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        path, line = "<unknown>", 1
    spec = ModelSpec(f"{cls.__name__}()", path, line, 1, lambda: module)
    return analyze(module, spec, settings or Settings.default())
