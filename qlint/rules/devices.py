"""QL401: CUDA where quantized models cannot go.

Model code hard-wired to CUDA (in ``forward`` or the methods it calls, and in the traced graph),
and pipelines that move a converted model or its input to CUDA, or convert a model last moved
there. QAT and calibration on the GPU are legal and not reported.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Diagnostic
from qlint.rules.cuda_in_graph import is_cuda_text as _is_cuda_text
from qlint.rules.registry import source_rule
from qlint.source.pipeline import PipelineScan, bodies, receiver

CONVERT_FUNCTIONS = {
    "convert",
    "convert_fx",
    "convert_pt2e",
    "quantize",
    "quantize_fx",
    "convert_to_reference_fx",
}
HARMLESS_CUDA_QUERIES = {"is_available", "device_count", "is_initialized", "get_device_name"}


def _is_cuda_expr(node: cst.BaseExpression, cuda_names: set[str]) -> bool:
    """A literal / torch.device / name / conditional that evaluates to a CUDA device."""
    if isinstance(node, cst.SimpleString):
        return _is_cuda_text(node.evaluated_value)
    if isinstance(node, cst.Name):
        return node.value in cuda_names
    if isinstance(node, cst.Call) and (get_full_name_for_node(node.func) or "").endswith("device"):
        return bool(node.args) and _is_cuda_expr(node.args[0].value, cuda_names)
    if isinstance(node, cst.IfExp):
        return _is_cuda_expr(node.body, cuda_names) or _is_cuda_expr(node.orelse, cuda_names)
    return False


def _cuda_names(index) -> set[str]:
    """Names assigned a CUDA device anywhere in the file (``device = "cuda"``)."""
    names: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            if _is_cuda_expr(node.value, names):
                for target in node.targets:
                    if isinstance(target.target, cst.Name):
                        names.add(target.target.value)

    index.module.visit(Visitor())
    return names


def _cuda_move(call: cst.Call, cuda_names: set[str]) -> bool:
    """``x.cuda()`` or ``x.to(<cuda>)``."""
    if not isinstance(call.func, cst.Attribute):
        return False
    attr = call.func.attr.value
    if attr == "cuda":
        return True
    if attr == "to":
        return any(
            _is_cuda_expr(a.value, cuda_names) for a in call.args if a.keyword is None or a.keyword.value == "device"
        )
    return False


def _cpu_move(call: cst.Call) -> bool:
    if not isinstance(call.func, cst.Attribute):
        return False
    attr = call.func.attr.value
    return attr == "cpu" or (
        attr == "to"
        and any(isinstance(a.value, cst.SimpleString) and a.value.evaluated_value == "cpu" for a in call.args)
    )


def _is_convert(call: cst.Call) -> bool:
    name = get_full_name_for_node(call.func) or ""
    return name.rsplit(".", 1)[-1] in CONVERT_FUNCTIONS


@source_rule("QL401")
def gpu_only_call(index) -> Iterator[Diagnostic]:
    cuda_names = _cuda_names(index)
    yield from _model_code(index, cuda_names)
    yield from _pipelines(index, cuda_names)


def _model_code(index, cuda_names: set[str]) -> Iterator[Diagnostic]:
    for cls in index.module_classes:
        for site in index.calls_in(cls, index.forward_closure(cls)):
            call, where = site.node, f"`{cls}.{site.function}`"
            if _cuda_move(call, cuda_names):
                what = "`.cuda()`" if site.attr == "cuda" else "`.to(<cuda>)`"
                message = f"{what} in {where}: a quantized model runs on the CPU only; use the input's device"
            elif any(
                a.keyword and a.keyword.value == "device" and _is_cuda_expr(a.value, cuda_names) for a in call.args
            ):
                message = f"`device=<cuda>` in {where}: a quantized model runs on the CPU only; use `device=x.device`"
            elif site.name.startswith("torch.cuda.") and site.attr not in HARMLESS_CUDA_QUERIES:
                message = f"`{site.name}()` in {where}: quantized models run on the CPU, where it fails"
            else:
                continue
            yield index.diagnostic("QL401", message, call)


def _pipelines(index, cuda_names: set[str]) -> Iterator[Diagnostic]:
    for body in bodies(index):
        yield from _CudaScan(index, cuda_names).scan(body)


class _CudaScan(PipelineScan):
    """Which names hold converted models or live on CUDA, in statement order."""

    def __init__(self, index, cuda_names: set[str]):
        super().__init__(index)
        self.cuda_names = cuda_names
        self.converted: set[str] = set()
        self.on_cuda: dict[str, bool] = {}

    def on_assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> Iterator[Diagnostic]:
        if isinstance(target, cst.Name) and isinstance(value, cst.Call):
            self._assign(target.value, value)
        return iter(())

    def on_call(self, call: cst.Call) -> Iterator[Diagnostic]:
        obj = receiver(call)
        if _is_convert(call) and call.args:
            model = call.args[0].value
            if isinstance(model, cst.Name) and self.on_cuda.get(model.value):
                yield self.index.diagnostic(
                    "QL401",
                    f"`{model.value}` was last moved to CUDA: `convert` needs the model on the CPU; "
                    f"use `convert({model.value}.cpu())`",
                    call,
                )
            if any(a.keyword and a.keyword.value == "inplace" for a in call.args) and isinstance(model, cst.Name):
                self.converted.add(model.value)
        elif _cuda_move(call, self.cuda_names) and obj is not None:
            if (isinstance(obj, cst.Name) and obj.value in self.converted) or (
                isinstance(obj, cst.Call) and _is_convert(obj)
            ):
                name = obj.value if isinstance(obj, cst.Name) else "the converted model"
                yield self.index.diagnostic(
                    "QL401",
                    f"{name} is a converted (quantized) model: its kernels run on the CPU only, "
                    "moving it to CUDA fails; keep it on the CPU",
                    call,
                )
            elif isinstance(obj, cst.Name):
                self.on_cuda[obj.value] = True
        elif _cpu_move(call) and isinstance(obj, cst.Name):
            self.on_cuda[obj.value] = False
        elif isinstance(call.func, cst.Name) and call.func.value in self.converted:
            for arg in call.args:
                value = arg.value
                moved = isinstance(value, cst.Call) and _cuda_move(value, self.cuda_names)
                if moved or (isinstance(value, cst.Name) and self.on_cuda.get(value.value)):
                    yield self.index.diagnostic(
                        "QL401",
                        f"the input of the converted model `{call.func.value}` is on CUDA: "
                        "quantized kernels run on the CPU only",
                        arg.value,
                    )

    def _assign(self, target: str, value: cst.Call) -> None:
        inner = value
        while isinstance(inner, cst.Call) and isinstance(inner.func, cst.Attribute) and not _is_convert(inner):
            if _cuda_move(inner, self.cuda_names):
                self.on_cuda[target] = True
                self.converted.discard(target)
                return
            if _cpu_move(inner):
                self.on_cuda[target] = False
                return
            inner = inner.func.value if isinstance(inner.func.value, cst.Call) else None
        if isinstance(value, cst.Call) and _is_convert(value):
            self.converted.add(target)
            self.on_cuda[target] = False
            return
        self.converted.discard(target)
        if value.args and isinstance(value.args[0].value, cst.Name):
            source = value.args[0].value.value
            if source in self.on_cuda:
                self.on_cuda[target] = self.on_cuda[source]
