"""The float-island fix of QL105: ``op(x)`` -> ``self.quant_op(op(self.dequant_op(x)))``, with the two stubs
declared in ``__init__``. Before ``convert`` the stubs are the identity (float outputs are unchanged); after it
the op computes in float on the dequantized tensor and its result is quantized again with observed qparams.
Offered where only the call's first argument is quantized and the call sits in a method of a class of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix
from qlint.rules.base import FixItems
from qlint.source.edit import free_name, methods
from qlint.source.idioms import declare, stub_names
from qlint.source.index import self_attributes

if TYPE_CHECKING:
    from qlint.context import FileContext


@dataclass(frozen=True)
class FloatIsland:
    """What QL105 hands its fix: the op as shown, and whether its first argument is its only quantized input."""

    op: str
    first_arg_only: bool


def float_island_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    taken_by_class: dict[int, set[str]] = {}
    for index, diag in items:
        call = _call(ctx, diag)
        if call is None:
            continue
        cls = ctx.file.enclosing_class(call)
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
        first = call.args[0]
        wrapped = cst.parse_expression(f"self.{dequant_name}({ctx.file.code(first.value)})")
        new_call = call.with_changes(args=[first.with_changes(value=wrapped), *call.args[1:]])
        text = f"self.{quant_name}({cst.Module([]).code_for_node(new_call)})"
        out[index] = Fix(
            Applicability.SAFE,
            f"Run it in float: `self.{dequant_name}` before, `self.{quant_name}` after (declared in `__init__`)",
            (declaration, *imports, ctx.file.replace(call, text)),
        )
    return out


def _call(ctx: FileContext, diag: Diagnostic) -> cst.Call | None:
    """The call the finding points at, in a method (not ``__init__``) of a class with ``__init__``."""
    if not isinstance(diag.data, FloatIsland) or not diag.data.first_arg_only:
        return None
    calls = [n for n in ctx.file.nodes_at(diag.span, (cst.Call,)) if ctx.file.end(n) == diag.span.end]
    if len(calls) != 1:
        return None
    call = calls[0]
    if not call.args or call.args[0].keyword is not None or call.args[0].star:
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
