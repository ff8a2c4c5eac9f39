"""QL401: CUDA where quantized models cannot go.

Model code hard-wired to CUDA (in ``forward`` or the methods it calls, and in the traced graph),
and pipelines that move a converted model or its input to CUDA, or convert a model last moved
there. QAT and calibration on the GPU are legal and not reported.

The fix: QL401: code tied to CUDA where a quantized model must run on the CPU.

- model code: ``device="cuda"`` -> ``device=x.device`` (``x`` the function's first input),
  ``t.cuda()`` / ``t.to("cuda")`` -> ``t.to(x.device)``: same result wherever the input lives.
  Safe in ``forward`` (its first input is the model's tensor); unsafe in a helper method, whose
  first argument qlint cannot prove to be a tensor.
- pipelines: ``convert(model)`` of a model last moved to CUDA -> ``convert(model.cpu())`` (safe: the
  original raises); a converted model or its input moved to CUDA -> left on the CPU (unsafe: it changes
  where the rest of the script runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.rules.base import ALL_FLOWS, Basis, FixAvailability, FixItems, Invalid, Rule, Valid
from qlint.source import cuda as source_cuda
from qlint.source.cuda import HARMLESS_CUDA_QUERIES, cpu_move, cuda_move, cuda_names, is_convert, is_cuda_expr
from qlint.source.edit import parameters
from qlint.source.pipeline import PipelineScan, bodies, receiver

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph
    from qlint.source.index import SourceIndex


@dataclass(frozen=True)
class CudaUse:
    """Which CUDA use a QL401 finding is: model code hard-wired to CUDA, ``convert`` of a model last moved
    to CUDA, a converted model moved to CUDA, or a converted model's input on CUDA."""

    kind: Literal["model-code", "convert-on-cuda", "converted-moved", "converted-input"]


class GpuOnlyCall(Rule):
    """## What it does
    Reports code that ties quantized inference to CUDA:
    - model code hard-wired to the GPU: `.cuda()`, `.to("cuda")`, `device="cuda"` or
      `torch.cuda.*` inside `forward` or a helper it calls;
    - a converted (quantized) model, or its input, moved to CUDA, e.g.
      `torch.ao.quantization.convert(model).cuda()`;
    - `convert` applied to a model that was last moved to CUDA.

    Quantization-aware training and calibration on the GPU are legal and not reported:
    `prepare_qat(model).cuda()`, calibration batches sent to `cuda`, then
    `convert(model.cpu())`.

    ## Why is this bad?
    Eager-mode quantized models are built for the CPU engines (fbgemm, x86, onednn, qnnpack):
    `convert` packs their weights for those kernels, and a quantized model (or its input)
    moved to the GPU fails at its first forward pass, or at `convert` for a model converted on
    the GPU. The wording depends on the torch version, e.g. (pytorch/pytorch#42288,
    pytorch/pytorch#27811):

    ```text
    RuntimeError: Could not run 'quantized::conv2d_prepack' with arguments from the 'UNKNOWN_TENSOR_TYPE_ID' backend.
    'quantized::conv2d_prepack' is only available for these backends: [QuantizedCPU].
    RuntimeError: Didn't find kernel to dispatch to for operator 'quantized::conv_prepack'.
    Tried to look up kernel for dispatch key 'CUDATensorId'.
    ```

    On a host without a GPU it fails even earlier (`RuntimeError: Found no NVIDIA driver on your
    system`), and `.cuda()` in `forward` makes even the float model unusable on a CPU-only
    host. For int8 on the GPU, use TensorRT or torchao instead.

    ## Fix safety
    Model code: `device="cuda"` becomes `device=x.device` and `t.cuda()` / `t.to("cuda")` become
    `t.to(x.device)` (`x` the function's first input): the same result wherever the input lives.
    Safe in `forward`, whose first input is the model's tensor; unsafe in a helper method, whose
    first argument qlint cannot prove to be a tensor. `convert(model)` of a model last moved to
    CUDA becomes `convert(model.cpu())` (safe: the original raises). A converted model or its
    input moved to CUDA is left on the CPU (unsafe: it changes where the rest of the script runs).

    ## References
    - [pytorch/pytorch#42288](https://github.com/pytorch/pytorch/issues/42288) (`Could not run 'quantized::conv2d_prepack' with arguments from the 'UNKNOWN_TENSOR_TYPE_ID' backend`)
    - [pytorch/pytorch#27811](https://github.com/pytorch/pytorch/issues/27811) (quantized conv on the GPU: "CUDA quantization is not currently supported")
    - [Quantization: backend and hardware support](https://pytorch.org/docs/stable/quantization.html#backend-hardware-support)
    - seed 004: QAT on the GPU, then `convert(qmodel.cpu())`: legal
    - seed 002: "PyTorch quantization currently only support CPU and mobile backend"
    """

    code = "QL401"
    name = "gpu-only-call"
    severity = Severity.ERROR
    flows = ALL_FLOWS
    basis = (
        Basis.SOURCE,
        Basis.GRAPH,
    )
    summary = "model code or a converted model is tied to CUDA"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe in `forward` and for `convert(model.cpu())`; unsafe elsewhere"
    triggers = ("cuda",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))


def quantize(model, batches):
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    with torch.no_grad():
        for x in batches:
            prepared(x)
    return torch.ao.quantization.convert(prepared).cuda()  # int8 kernels are CPU-only


if __name__ == "__main__":
    qmodel = quantize(Net(), [torch.rand(1, 3, 16, 16)])
    print(qmodel(torch.rand(1, 3, 16, 16).cuda()).shape)
""",
            lines=(24, 29),
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))


def quantize(model, batches):
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    with torch.no_grad():
        for x in batches:
            prepared(x)
    return torch.ao.quantization.convert(prepared)  # int8 kernels are CPU-only


if __name__ == "__main__":
    qmodel = quantize(Net(), [torch.rand(1, 3, 16, 16)])
    print(qmodel(torch.rand(1, 3, 16, 16)).shape)
""",
            unsafe=True,
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))


def quantize(model, batches):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    if torch.cuda.is_available():
        prepared = prepared.cuda()  # calibrating on the GPU is fine
    with torch.no_grad():
        for x in batches:
            prepared(x.to(device))
    return torch.ao.quantization.convert(prepared.cpu())  # convert and run on the CPU


if __name__ == "__main__":
    qmodel = quantize(Net(), [torch.rand(1, 3, 16, 16)])
    print(qmodel(torch.rand(1, 3, 16, 16)).shape)
""",
        ),
    )

    fix_order = 2

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return gpu_only_call(index)

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return traced_cuda(qg)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return device_fixes(ctx, items)


def gpu_only_call(index: SourceIndex) -> Iterator[Diagnostic]:
    """QL401 in the source: CUDA in model code, and converted models (or their inputs) moved to CUDA."""
    cuda_names = source_cuda.cuda_names(index.module)
    yield from _model_code(index, cuda_names)
    yield from _pipelines(index, cuda_names)


def _model_code(index, cuda_names: set[str]) -> Iterator[Diagnostic]:
    for cls in index.module_classes:
        for site in index.calls_in(cls, index.forward_closure(cls)):
            call, where = site.node, f"`{cls}.{site.function}`"
            if cuda_move(call, cuda_names):
                what = "`.cuda()`" if site.attr == "cuda" else "`.to(<cuda>)`"
                message = f"{what} in {where}: a quantized model runs on the CPU only; use the input's device"
            elif any(
                a.keyword and a.keyword.value == "device" and is_cuda_expr(a.value, cuda_names) for a in call.args
            ):
                message = f"`device=<cuda>` in {where}: a quantized model runs on the CPU only; use `device=x.device`"
            elif site.name.startswith("torch.cuda.") and site.attr not in HARMLESS_CUDA_QUERIES:
                message = f"`{site.name}()` in {where}: quantized models run on the CPU, where it fails"
            else:
                continue
            yield index.diagnostic("QL401", message, call, data=CudaUse("model-code"))


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
        if is_convert(call) and call.args:
            model = call.args[0].value
            if isinstance(model, cst.Name) and self.on_cuda.get(model.value):
                yield self.index.diagnostic(
                    "QL401",
                    f"`{model.value}` was last moved to CUDA: `convert` needs the model on the CPU; "
                    f"use `convert({model.value}.cpu())`",
                    call,
                    data=CudaUse("convert-on-cuda"),
                )
            if any(a.keyword and a.keyword.value == "inplace" for a in call.args) and isinstance(model, cst.Name):
                self.converted.add(model.value)
        elif cuda_move(call, self.cuda_names) and obj is not None:
            if (isinstance(obj, cst.Name) and obj.value in self.converted) or (
                isinstance(obj, cst.Call) and is_convert(obj)
            ):
                name = obj.value if isinstance(obj, cst.Name) else "the converted model"
                yield self.index.diagnostic(
                    "QL401",
                    f"{name} is a converted (quantized) model: its kernels run on the CPU only, "
                    "moving it to CUDA fails; keep it on the CPU",
                    call,
                    data=CudaUse("converted-moved"),
                )
            elif isinstance(obj, cst.Name):
                self.on_cuda[obj.value] = True
        elif cpu_move(call) and isinstance(obj, cst.Name):
            self.on_cuda[obj.value] = False
        elif isinstance(call.func, cst.Name) and call.func.value in self.converted:
            for arg in call.args:
                value = arg.value
                moved = isinstance(value, cst.Call) and cuda_move(value, self.cuda_names)
                if moved or (isinstance(value, cst.Name) and self.on_cuda.get(value.value)):
                    yield self.index.diagnostic(
                        "QL401",
                        f"the input of the converted model `{call.func.value}` is on CUDA: "
                        "quantized kernels run on the CPU only",
                        arg.value,
                        data=CudaUse("converted-input"),
                    )

    def _assign(self, target: str, value: cst.Call) -> None:
        inner = value
        while isinstance(inner, cst.Call) and isinstance(inner.func, cst.Attribute) and not is_convert(inner):
            if cuda_move(inner, self.cuda_names):
                self.on_cuda[target] = True
                self.converted.discard(target)
                return
            if cpu_move(inner):
                self.on_cuda[target] = False
                return
            inner = inner.func.value if isinstance(inner.func.value, cst.Call) else None
        if isinstance(value, cst.Call) and is_convert(value):
            self.converted.add(target)
            self.on_cuda[target] = False
            return
        self.converted.discard(target)
        if value.args and isinstance(value.args[0].value, cst.Name):
            source = value.args[0].value.value
            if source in self.on_cuda:
                self.on_cuda[target] = self.on_cuda[source]


def traced_cuda(qg: QGraph) -> Iterator[Diagnostic]:
    """QL401 in the traced graph: CUDA tensors or moves inside forward (any file, any helper)."""
    for name, facts in qg.nodes():
        node = qg.fx_nodes[name]
        device = node.kwargs.get("device")
        if facts.op == "call_method" and facts.target == "cuda":
            what = "`.cuda()`"
        elif (
            facts.op == "call_method"
            and facts.target == "to"
            and any(source_cuda.is_cuda_text(str(a)) for a in (*node.args[1:], device) if a is not None)
        ):
            what = "`.to(<cuda>)`"
        elif device is not None and source_cuda.is_cuda_text(str(device)):
            what = "`device=<cuda>`"
        else:
            continue
        yield qg.diagnostic(
            "QL401",
            f"{what} in the model's forward: a quantized model runs on the CPU only; use the input's device",
            name,
            data=CudaUse("model-code"),
        )


SAFE, UNSAFE = Applicability.SAFE, Applicability.UNSAFE


def device_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    cuda = cuda_names(ctx.file.module)
    out: dict[int, Fix] = {}
    for index, diag in items:
        fix = _fix(ctx, diag, cuda)
        if fix is not None:
            out[index] = fix
    return out


def _fix(ctx: FileContext, diag: Diagnostic, cuda: set[str]) -> Fix | None:
    file = ctx.file
    calls = file.nodes_at(diag.span, (cst.Call,))
    kind = diag.data.kind if isinstance(diag.data, CudaUse) else "model-code"
    if kind == "converted-input":
        for node in file.nodes_at(diag.span, (cst.BaseExpression,)):
            if isinstance(node, cst.Call) and cuda_move(node, cuda):
                return Fix(UNSAFE, "Keep the input on the CPU", (file.replace(node, file.code(node.func.value)),))
            if isinstance(node, cst.Name):
                return Fix(UNSAFE, "Move the input to the CPU", (file.replace(node, f"{node.value}.cpu()"),))
        return None
    for call in calls:
        if is_convert(call) and call.args and isinstance(call.args[0].value, cst.Name):
            model = call.args[0].value
            return Fix(
                SAFE,
                f"Convert on the CPU: `{model.value}.cpu()`",
                (file.replace(model, f"{model.value}.cpu()"),),
            )
        if kind == "converted-moved" and cuda_move(call, cuda):
            return _keep_on_cpu(ctx, call)
        if kind != "converted-moved":
            fix = _device_agnostic(ctx, call, cuda)
            if fix is not None:
                return fix
    return None


def _keep_on_cpu(ctx: FileContext, call: cst.Call) -> Fix:
    file = ctx.file
    statement = file.statement_of(call)
    if statement is not None and len(statement.body) == 1 and isinstance(statement.body[0], cst.Expr):
        if statement.body[0].value is call:
            edit = file.delete_line_of(statement)
            if edit is not None:
                return Fix(UNSAFE, "Keep the converted model on the CPU (drop the move)", (edit,))
    return Fix(UNSAFE, "Keep the converted model on the CPU", (file.replace(call, file.code(call.func.value)),))


def _device_agnostic(ctx: FileContext, call: cst.Call, cuda: set[str]) -> Fix | None:
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
            if (arg.keyword is None or arg.keyword.value == "device") and is_cuda_expr(arg.value, cuda):
                edits.append(file.replace(arg.value, device))
    else:
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == "device" and is_cuda_expr(arg.value, cuda):
                edits.append(file.replace(arg.value, device))
    if not edits:
        return None
    name = get_full_name_for_node(call.func) or "the call"
    return Fix(applicability, f"Use the input's device (`{device}`) in `{name}`", tuple(edits))
