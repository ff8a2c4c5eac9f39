"""QL101 / QL102: QuantStub / DeQuantStub on the model's boundary.

``self.quant = QuantStub()`` / ``self.dequant = DeQuantStub()`` after ``super().__init__()`` of the
root model's class, the float inputs quantized at the top of ``forward`` (one stub per input: each
observes its own range), every returned quantized tensor dequantized. Stubs are the identity in
float and hold no state: the fix is safe.
Offered only where it is exact: the root's class is in the file, QL101 only when the model has no
QuantStub at all (a float island that forgets to re-quantize is not a boundary problem).

A model whose class lives in a library (``torchvision.models.vgg16()``) but is built in the file gets
a subclass of ``QuantWrapper`` written into the file, and the construction wrapped in it. That is
unsafe: the state_dict keys gain the prefix ``module.``. It is offered only when stubs around the
whole model are all the library code needs (one float input, one quantized output, no op that
needs a FloatFunctional, no reused module); otherwise ``qlint emit`` writes a quantizable copy. The
class gives later rounds a place for the model's ``fuse_model()`` (QL201's fix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Fix
from qlint.fix.common import construction_call, declare, spelled, stub_names
from qlint.fix.context import FixContext
from qlint.fix.source import first_real_statement, free_name, methods
from qlint.source.index import self_attributes

QUANT_WRAPPER = ("torch.ao.quantization.QuantWrapper", "torch.quantization.QuantWrapper")
# graph findings a wrapper cannot repair: they need edits inside the library's classes
NEEDS_LIBRARY_EDITS = frozenset({"QL103", "QL104", "QL202"})

if TYPE_CHECKING:
    from qlint.model.check import CheckedModel


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    by_model: dict[int, list[tuple[int, Diagnostic]]] = {}
    infos: dict[int, CheckedModel] = {}
    for index, diag in items:
        info = ctx.model_for(diag)
        if info is not None and info.root_graph is not None:
            by_model.setdefault(id(info), []).append((index, diag))
            infos[id(info)] = info
    for key, group in by_model.items():
        fix = _model_fix(ctx, infos[key], {d.code for _, d in group})
        if fix is not None:
            for index, _ in group:
                out[index] = fix
    return out


def _model_fix(ctx: FixContext, info: CheckedModel, codes: set[str]) -> Fix | None:
    from torch.ao.quantization import DeQuantStub, QuantStub

    qg = info.root_graph
    if not ctx.defined_here(type(info.model)):
        return _library_fix(ctx, info, codes)
    cls = ctx.class_node(type(info.model))
    if cls is None or "forward" not in methods(cls):
        return None
    forward = methods(cls)["forward"]
    has_quant = any(isinstance(m, QuantStub) for m in info.model.modules())
    inputs = _float_inputs(qg) if "QL101" in codes and not has_quant else []
    if "QL101" in codes and not has_quant and not inputs:
        return None
    returns = _dequant_returns(ctx, qg, forward) if "QL102" in codes else []
    if "QL102" in codes and returns is None:
        returns = []
    if not inputs and not returns:
        return None
    taken = self_attributes(cls)
    existing_dequant = _existing_attr(info.model, DeQuantStub)
    quant, dequant, imports = stub_names(ctx, bool(inputs), bool(returns) and existing_dequant is None)
    declarations, edits = [], list(imports)
    quant_attrs = []
    for name in inputs:
        attr = free_name("quant" if len(inputs) == 1 else f"quant_{name}", taken)
        quant_attrs.append(attr)
        declarations.append(f"self.{attr} = {quant}()")
    dequant_attr = existing_dequant
    if returns and dequant_attr is None:
        dequant_attr = free_name("dequant", taken)
        declarations.append(f"self.{dequant_attr} = {dequant}()")
    if declarations:
        declaration = declare(ctx, cls, declarations)
        if declaration is None:
            return None
        edits.append(declaration)
    if inputs:
        first = first_real_statement(forward)
        if first is None:
            return None
        lines = [f"{name} = self.{attr}({name})" for name, attr in zip(inputs, quant_attrs, strict=False)]
        edits.append(ctx.file.insert_lines_before(first, lines))
    for node in returns:
        edits.append(ctx.file.replace(node, f"self.{dequant_attr}({ctx.file.code(node)})"))
    parts = []
    if inputs:
        parts.append("quantize " + ", ".join(f"`{n}`" for n in inputs) + " at the top of `forward`")
    if returns:
        parts.append(f"dequantize the returned tensor{'s' if len(returns) > 1 else ''}")
    return Fix(Applicability.SAFE, "Add stubs: " + " and ".join(parts), tuple(edits))


def _library_fix(ctx: FixContext, info: CheckedModel, codes: set[str]) -> Fix | None:
    """Wrap the file's construction of a library model in a ``QuantWrapper`` subclass written here."""
    from torch.ao.quantization import QuantStub

    from qlint.rules import registry

    model, qg = info.model, info.root_graph
    if "QL101" not in codes or any(isinstance(m, QuantStub) for m in model.modules()):
        return None
    placeholders = [n for n, _ in qg.nodes("placeholder")]
    if len(placeholders) != 1 or _float_inputs(qg) != [str(qg.fx_nodes[placeholders[0]].target)]:
        return None
    if not _returns_one_quantized(qg):
        return None
    if registry.run(registry.load_graph_rules(), qg, NEEDS_LIBRARY_EDITS):
        return None
    call = construction_call(ctx, model)
    if call is None:
        return None
    top = ctx.file.top_statement(call)
    taken = set(ctx.file.bound_names) | _top_level_names(ctx)
    name = free_name(f"Quantizable{type(model).__name__}", taken)
    wrapper, edits = spelled(ctx, QUANT_WRAPPER, prefer_direct=True)
    library = type(model).__module__.split(".")[0]
    edits.append(
        ctx.file.insert_lines_before(
            top,
            [
                f"class {name}({wrapper}):",
                f'    """{library}\'s `{type(model).__name__}` between a QuantStub and a DeQuantStub (eager-mode '
                'quantization)."""',
                "",
                "",
            ],
            indent="",
        )
    )
    edits.append(ctx.file.replace(call, f"{name}({ctx.file.code(call)})"))
    return Fix(
        Applicability.UNSAFE,
        f"Wrap the {library} model in `{name}({wrapper})`, which quantizes its input and dequantizes its output "
        "(state_dict keys gain the prefix `module.`)",
        tuple(edits),
    )


def _top_level_names(ctx: FixContext) -> set[str]:
    names: set[str] = set()
    for stmt in ctx.file.module.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            names.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign):
                    names.update(t.target.value for t in small.targets if isinstance(t.target, cst.Name))
    return names


def _returns_one_quantized(qg) -> bool:
    """The model returns one tensor, and it is quantized (what ``QuantWrapper``'s DeQuantStub takes)."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    value = _output_value(qg)
    return isinstance(value, fx.Node) and qg.facts(value.name).kind is Kind.QUANT


def _output_value(qg):
    """What the traced ``forward`` returns: an fx Node, or a tuple/list of them."""
    output = next(n for n, _ in qg.nodes("output"))
    return qg.fx_nodes[output].args[0]


def _existing_attr(model, kind: type) -> str | None:
    for name, child in model.named_children():
        if isinstance(child, kind):
            return name
    return None


def _float_inputs(qg) -> list[str]:
    """Forward parameters holding float tensors that reach a module ``convert`` swaps."""
    import networkx as nx

    from qlint.model.analysis import Kind

    swapped = [n for n, f in qg.nodes() if f.swapped]
    out = []
    for name, facts in qg.nodes("placeholder"):
        target = str(qg.fx_nodes[name].target)
        if (
            facts.kind is Kind.FLOAT
            and not target.startswith("*")
            and any(nx.has_path(qg.graph, name, s) for s in swapped)
        ):
            out.append(target)
    return out


def _dequant_returns(ctx: FixContext, qg, forward: cst.FunctionDef) -> list[cst.BaseExpression] | None:
    """The expressions to wrap in ``self.dequant(...)``: each quantized element of each ``return``."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    value = _output_value(qg)

    def kind(v) -> Kind:
        return qg.facts(v.name).kind if isinstance(v, fx.Node) else Kind.NONE

    returns = _returns(forward)
    if not returns:
        return None
    wrap: list[cst.BaseExpression] = []
    for ret in returns:
        expr = ret.value
        if expr is None:
            return None
        if isinstance(value, (tuple, list)):
            if not isinstance(expr, (cst.Tuple, cst.List)) or len(expr.elements) != len(value):
                return None
            if any(isinstance(e, cst.StarredElement) for e in expr.elements):
                return None
            wrap.extend(e.value for e, v in zip(expr.elements, value, strict=False) if kind(v) is Kind.QUANT)
        elif isinstance(value, fx.Node) and kind(value) is Kind.QUANT:
            wrap.append(expr)
        else:
            return None
    return wrap


def _returns(forward: cst.FunctionDef) -> list[cst.Return]:
    found: list[cst.Return] = []

    class Visitor(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is forward

        def visit_Lambda(self, node: cst.Lambda) -> bool:
            return False

        def visit_Return(self, node: cst.Return) -> None:
            found.append(node)

    forward.visit(Visitor())
    return found
