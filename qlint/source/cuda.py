"""CUDA in source: expressions that evaluate to a CUDA device, and moves to or from it (QL401)."""

from __future__ import annotations

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.source.names import CONVERT_OR_QUANTIZE


def is_cuda_text(value: object) -> bool:
    """A device string naming CUDA (``"cuda"``, ``"cuda:0"``)."""
    return isinstance(value, str) and value.startswith("cuda")


HARMLESS_CUDA_QUERIES = {"is_available", "device_count", "is_initialized", "get_device_name"}


def is_cuda_expr(node: cst.BaseExpression, cuda_names: set[str]) -> bool:
    """A literal / torch.device / name / conditional that evaluates to a CUDA device."""
    if isinstance(node, cst.SimpleString):
        return is_cuda_text(node.evaluated_value)
    if isinstance(node, cst.Name):
        return node.value in cuda_names
    if isinstance(node, cst.Call) and (get_full_name_for_node(node.func) or "").endswith("device"):
        return bool(node.args) and is_cuda_expr(node.args[0].value, cuda_names)
    if isinstance(node, cst.IfExp):
        return is_cuda_expr(node.body, cuda_names) or is_cuda_expr(node.orelse, cuda_names)
    return False


def cuda_names(module: cst.Module) -> set[str]:
    """Names assigned a CUDA device anywhere in the file (``device = "cuda"``)."""
    names: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            if is_cuda_expr(node.value, names):
                for target in node.targets:
                    if isinstance(target.target, cst.Name):
                        names.add(target.target.value)

    module.visit(Visitor())
    return names


def cuda_move(call: cst.Call, cuda_names: set[str]) -> bool:
    """``x.cuda()`` or ``x.to(<cuda>)``."""
    if not isinstance(call.func, cst.Attribute):
        return False
    attr = call.func.attr.value
    if attr == "cuda":
        return True
    if attr == "to":
        return any(
            is_cuda_expr(a.value, cuda_names) for a in call.args if a.keyword is None or a.keyword.value == "device"
        )
    return False


def cpu_move(call: cst.Call) -> bool:
    if not isinstance(call.func, cst.Attribute):
        return False
    attr = call.func.attr.value
    return attr == "cpu" or (
        attr == "to"
        and any(isinstance(a.value, cst.SimpleString) and a.value.evaluated_value == "cpu" for a in call.args)
    )


def is_convert(call: cst.Call) -> bool:
    name = get_full_name_for_node(call.func) or ""
    return name.rsplit(".", 1)[-1] in CONVERT_OR_QUANTIZE
