"""QL401: code tied to CUDA where a quantized model must run on the CPU.

- model code: ``device="cuda"`` -> ``device=x.device`` (``x`` the function's first input),
  ``t.cuda()`` / ``t.to("cuda")`` -> ``t.to(x.device)``: same result wherever the input lives.
  Safe in ``forward`` (its first input is the model's tensor); unsafe in a helper method, whose
  first argument qlint cannot prove to be a tensor.
- pipelines: ``convert(model)`` of a model last moved to CUDA -> ``convert(model.cpu())`` (safe: the
  original raises); a converted model or its input moved to CUDA -> left on the CPU (unsafe: it changes
  where the rest of the script runs).
"""

from __future__ import annotations

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix
from qlint.fix.context import FixContext
from qlint.fix.source import parameters
from qlint.rules.devices import _cuda_move, _cuda_names, _is_convert, _is_cuda_expr

SAFE, UNSAFE = Applicability.SAFE, Applicability.UNSAFE


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    cuda = _cuda_names(_Index(ctx))
    out: dict[int, Fix] = {}
    for index, diag in items:
        fix = _fix(ctx, diag, cuda)
        if fix is not None:
            out[index] = fix
    return out


class _Index:
    """The slice of SourceIndex that ``_cuda_names`` uses."""

    def __init__(self, ctx: FixContext):
        self.module = ctx.file.module


def _fix(ctx: FixContext, diag: Diagnostic, cuda: set[str]) -> Fix | None:
    file = ctx.file
    calls = file.nodes_at(diag.span, (cst.Call,))
    if "input of the converted model" in diag.message:
        for node in file.nodes_at(diag.span, (cst.BaseExpression,)):
            if isinstance(node, cst.Call) and _cuda_move(node, cuda):
                return Fix(UNSAFE, "Keep the input on the CPU", (file.replace(node, file.code(node.func.value)),))
            if isinstance(node, cst.Name):
                return Fix(UNSAFE, "Move the input to the CPU", (file.replace(node, f"{node.value}.cpu()"),))
        return None
    for call in calls:
        if _is_convert(call) and call.args and isinstance(call.args[0].value, cst.Name):
            model = call.args[0].value
            return Fix(
                SAFE,
                f"Convert on the CPU: `{model.value}.cpu()`",
                (file.replace(model, f"{model.value}.cpu()"),),
            )
        if "converted" in diag.message and _cuda_move(call, cuda):
            return _keep_on_cpu(ctx, call)
        if "converted" not in diag.message:
            fix = _model_code(ctx, call, cuda)
            if fix is not None:
                return fix
    return None


def _keep_on_cpu(ctx: FixContext, call: cst.Call) -> Fix:
    file = ctx.file
    statement = file.statement_of(call)
    if statement is not None and len(statement.body) == 1 and isinstance(statement.body[0], cst.Expr):
        if statement.body[0].value is call:
            edit = file.delete_line_of(statement)
            if edit is not None:
                return Fix(UNSAFE, "Keep the converted model on the CPU (drop the move)", (edit,))
    return Fix(UNSAFE, "Keep the converted model on the CPU", (file.replace(call, file.code(call.func.value)),))


def _model_code(ctx: FixContext, call: cst.Call, cuda: set[str]) -> Fix | None:
    file = ctx.file
    fn = file.enclosing_function(call)
    if fn is None or file.enclosing_class(call) is None:
        return None
    params = [p for p in parameters(fn) if p not in ("self", "cls")]
    if not params:
        return None
    tensor = params[0]
    device = f"{tensor}.device"
    applicability = SAFE if fn.name.value == "forward" else UNSAFE
    edits: list[Edit] = []
    if isinstance(call.func, cst.Attribute) and call.func.attr.value == "cuda" and not call.args:
        receiver = file.code(call.func.value)
        edits.append(file.replace(call, receiver if receiver == tensor else f"{receiver}.to({device})"))
    elif isinstance(call.func, cst.Attribute) and call.func.attr.value == "to":
        for arg in call.args:
            if (arg.keyword is None or arg.keyword.value == "device") and _is_cuda_expr(arg.value, cuda):
                edits.append(file.replace(arg.value, device))
    else:
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == "device" and _is_cuda_expr(arg.value, cuda):
                edits.append(file.replace(arg.value, device))
    if not edits:
        return None
    name = get_full_name_for_node(call.func) or "the call"
    return Fix(applicability, f"Use the input's device (`{device}`) in `{name}`", tuple(edits))
