"""QL413: ``prepare(model)`` / ``convert(model)`` as a bare statement, its result thrown away.

Eager ``prepare``/``prepare_qat``/``convert`` return a new model unless ``inplace=True``; FX's
``prepare_fx``/``convert_fx`` always do. A bare call leaves the script's model float. The fix
assigns the result to the name that was passed in. Torch-free: nothing is imported or executed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.rules.base import Basis, EditsFound, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, precomputed_fixes
from qlint.source.facts import fact, one_pass
from qlint.source.pipeline import ImportAliases, argument, callee_attr, is_quant_api

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.source.index import SourceIndex

# calls that return the model they make, with whether they take ``inplace``
RETURNING = {
    "prepare": True,
    "prepare_qat": True,
    "convert": True,
    "prepare_fx": False,
    "prepare_qat_fx": False,
    "convert_fx": False,
    "convert_to_reference_fx": False,
}


class DiscardedPrepareResult(Rule):
    """## What it does
    Reports `prepare(model)`, `prepare_qat(model)`, `convert(model)`, `prepare_fx(...)`,
    `prepare_qat_fx(...)`, `convert_fx(...)` and `convert_to_reference_fx(...)` written as a bare
    statement, when `inplace` is not `True` (the eager default is `False`; the FX calls have no
    `inplace` and always return a new module). `prepare` and `convert` count only when they come
    from a quantization module (`tq.prepare`, `from torch.ao.quantization import convert`).

    ## Why is this bad?
    With `inplace=False`, `prepare` deep-copies the model, inserts the observers into the copy and
    returns it; `convert` does the same with the quantized modules. Thrown away, the copy is lost and
    the script goes on with the model it passed in: calibration runs through a model with no
    observers, `convert` finds nothing to convert, and the "quantized" model that is saved, timed
    and shipped is the float one. Nothing fails and torch prints nothing.

    ## Fix safety
    Safe: the fix assigns the result to what was passed in (`model = prepare(model)`), which is
    what `inplace=True` does and what the rest of the script assumes. Offered when the model argument
    is a name or an attribute (`self.model`).

    ## References
    - [torch.ao.quantization.prepare](https://pytorch.org/docs/stable/generated/torch.ao.quantization.prepare.html) ("inplace: carry out model transformations in-place, the original module is mutated")
    - [torch.ao.quantization.quantize_fx.prepare_fx](https://pytorch.org/docs/stable/generated/torch.ao.quantization.quantize_fx.prepare_fx.html) (returns "a GraphModule with observer")
    """

    code = "QL413"
    name = "discarded-prepare-result"
    severity = Severity.ERROR
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.SOURCE,)
    summary = "the result of prepare/convert thrown away: the model stays float"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe"
    triggers = ("prepare", "convert")
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
prepare(model)
model(torch.rand(1, 3, 32, 32))
convert(model)
""",
            lines=(7, 9),
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
model = prepare(model)
model(torch.rand(1, 3, 32, 32))
model = convert(model)
""",
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
prepare(model, inplace=True)
model(torch.rand(1, 3, 32, 32))
model = convert(model)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        aliases = fact(index, ImportAliases).aliases
        for call in fact(index, _BareCalls).found:
            attr = callee_attr(call)
            if not is_quant_api(call, RETURNING, aliases):
                continue
            if RETURNING[attr] and _inplace(call) is not False:
                continue  # inplace=True (or set from a value qlint cannot read)
            model = argument(call, 0, "model") or argument(call, 0, "module")
            shown = index.module.code_for_node(model) if model is not None else "the model"
            fix = None
            if isinstance(model, (cst.Name, cst.Attribute)):
                start = index.span(call)
                edit = Edit(f"{shown} = ", (start.line, start.col), (start.line, start.col))
                fix = Fix(Applicability.SAFE, f"Assign the result: `{shown} = {attr}(...)`", (edit,))
            made = "a prepared copy" if attr.startswith("prepare") else "a quantized copy"
            yield index.diagnostic(
                self.code,
                f"the result of `{attr}` is thrown away: it returns {made} and leaves `{shown}` as it was"
                + (" (inplace=False, the default)" if RETURNING[attr] else "")
                + f", so the script goes on with a float model; assign it: `{shown} = {attr}(...)`",
                call,
                EditsFound(fix),
            )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


def _inplace(call: cst.Call) -> bool | None:
    """The literal ``inplace`` argument (False when absent); None when it is not a literal."""
    value = argument(call, 10**6, "inplace")
    if value is None:
        return False
    if isinstance(value, cst.Name) and value.value in ("True", "False"):
        return value.value == "True"
    return None


@one_pass
class _BareCalls(cst.CSTVisitor):
    """Calls that are a whole expression statement (``prepare(m)`` on its own line)."""

    def __init__(self) -> None:
        self.found: list[cst.Call] = []

    def visit_Expr(self, node: cst.Expr) -> None:
        if isinstance(node.value, cst.Call):
            self.found.append(node.value)
