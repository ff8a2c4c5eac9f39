"""The float-island fix of QL105: ``op(x)`` -> ``self.quant_op(op(self.dequant_op(x)))``, with the two stubs
declared in ``__init__``. Before ``convert`` the stubs are the identity (float outputs are unchanged); after it
the op computes in float on the dequantized tensor and its result is quantized again with observed qparams.
Offered where only the call's first argument is quantized and the call sits in a method of a class of the file.

QL301's variant keeps a module that ``convert`` would swap (a slow dilated grouped conv) in float: the same
stubs around its call, and ``self.<module>.qconfig = None`` right after its declaration in ``__init__`` (an
own ``qconfig`` attribute wins over the one ``prepare`` propagates from the parent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix
from qlint.rules.base import FixItems
from qlint.source.edit import attribute_assignments, free_name, methods
from qlint.source.idioms import declare, stub_names
from qlint.source.index import self_attributes

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph


@dataclass(frozen=True)
class FloatIsland:
    """What QL105 hands its fix: the op as shown, and whether its first argument is its only quantized input.

    ``keep_float``: the module ``convert`` would swap, kept float by the fix with ``qconfig = None`` (QL301);
    ``fused_next``: its output feeds a module it could be fused with (a fusion would drop that qconfig);
    ``method``: a tensor method (``x.to(dtype)``), whose first argument is the tensor it is called on.
    """

    op: str
    first_arg_only: bool
    keep_float: str | None = None
    fused_next: bool = False
    method: bool = False


def first_arg_only(qg: QGraph, name: str) -> bool:
    """The node's first argument is its only quantized input (a float island then needs one DeQuantStub)."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    node = qg.fx_nodes[name]
    quantized = [n for n in node.all_input_nodes if qg.facts(n.name).kind is Kind.QUANT]
    return bool(node.args) and isinstance(node.args[0], fx.Node) and quantized == [node.args[0]]


def float_island_fixes(
    ctx: FileContext, items: FixItems, applicability: Applicability = Applicability.SAFE
) -> dict[int, Fix]:
    """A float island around each finding's call; with ``keep_float``, also ``qconfig = None`` on the module."""
    out: dict[int, Fix] = {}
    taken_by_class: dict[int, set[str]] = {}
    for index, diag in items:
        call = _call(ctx, diag)
        if call is None:
            continue
        cls = ctx.file.enclosing_class(call)
        keep = _kept_float_declaration(ctx, diag, call, cls)
        if isinstance(diag.data, FloatIsland) and diag.data.keep_float is not None and keep is None:
            continue
        taken = taken_by_class.setdefault(id(cls), set(self_attributes(cls)))
        base = _base_name(call)
        dequant_name = free_name(f"dequant_{base}", taken)
        taken.add(dequant_name)
        quant_name = free_name(f"quant_{base}", taken)
        taken.add(quant_name)
        quant, dequant, imports = stub_names(ctx, need_quant=True, need_dequant=True)
        declaration = declare(ctx, cls, [f"self.{dequant_name} = {dequant}()", f"self.{quant_name} = {quant}()"])
        if declaration is None:
            continue
        if diag.data.method:  # the tensor it is called on, not its first argument (`x.to(self.dequant(dtype))`)
            wrapped = cst.parse_expression(f"self.{dequant_name}({ctx.file.code(call.func.value)})")
            new_call = call.with_changes(func=call.func.with_changes(value=wrapped))
        else:
            first = call.args[0]
            wrapped = cst.parse_expression(f"self.{dequant_name}({ctx.file.code(first.value)})")
            new_call = call.with_changes(args=[first.with_changes(value=wrapped), *call.args[1:]])
        text = f"self.{quant_name}({cst.Module([]).code_for_node(new_call)})"
        edits = [declaration, *imports, ctx.file.replace(call, text)]
        message = f"Run it in float: `self.{dequant_name}` before, `self.{quant_name}` after (declared in `__init__`)"
        if keep is not None:
            attr, statement = keep
            edits.append(ctx.file.insert_lines_after(statement, [f"self.{attr}.qconfig = None"]))
            message += f", and `self.{attr}.qconfig = None` so that `convert` keeps it float"
        out[index] = Fix(applicability, message, tuple(edits))
    return out


def _kept_float_declaration(
    ctx: FileContext, diag: Diagnostic, call: cst.Call, cls: cst.ClassDef
) -> tuple[str, cst.SimpleStatementLine] | None:
    """(attribute, its one top-level declaration in ``__init__``) of a ``keep_float`` module called as
    ``self.<attribute>(...)``; None when the finding keeps nothing float or the module cannot be found so."""
    data = diag.data
    if not isinstance(data, FloatIsland) or data.keep_float is None or data.fused_next:
        return None
    func = call.func
    if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self"):
        return None
    attr = func.attr.value
    if attr != data.keep_float.rsplit(".", 1)[-1]:
        return None
    init = methods(cls)["__init__"]
    declared = attribute_assignments(init, attr)
    if len(declared) != 1 or ctx.file.parents.get(declared[0]) is not init.body:
        return None
    return attr, declared[0]


def _call(ctx: FileContext, diag: Diagnostic) -> cst.Call | None:
    """The call the finding points at, in a method (not ``__init__``) of a class with ``__init__``."""
    if not isinstance(diag.data, FloatIsland) or not diag.data.first_arg_only:
        return None
    calls = [n for n in ctx.file.nodes_at(diag.span, (cst.Call,)) if ctx.file.end(n) == diag.span.end]
    if len(calls) != 1:
        return None
    call = calls[0]
    if diag.data.method:
        if not isinstance(call.func, cst.Attribute):
            return None
    elif not call.args or call.args[0].keyword is not None or call.args[0].star:
        return None
    function, cls = ctx.file.enclosing_function(call), ctx.file.enclosing_class(call)
    if function is None or cls is None or function.name.value == "__init__" or "__init__" not in methods(cls):
        return None
    return call


def _base_name(call: cst.Call) -> str:
    """``act`` for ``self.act(x)``, ``softmax`` for ``torch.softmax(x)``, ``exp`` for ``x.exp()``."""
    name = get_full_name_for_node(call.func) or "op"
    leaf = name.rsplit(".", 1)[-1]
    return leaf if leaf.isidentifier() else "op"
