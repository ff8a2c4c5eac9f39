"""QL108: ``.view`` on the output of a quantized convolution, whose int8 kernels return channels-last
tensors; and its fix, ``.reshape``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph

_VIEW_METHODS = ("view",)


class ViewOnQuantized(Rule):
    """## What it does
    Reports `.view(...)` on the output of a quantized convolution (also after a pool or activation
    that keeps its layout) when the view cannot be taken with the strides the quantized kernel
    gives. Whether it can is asked of torch: the same `.view` is run on a quantized channels-last
    tensor of the model's shape. Points at the line of the `.view` call.

    ## Why is this bad?
    Quantized convolutions on x86/fbgemm return channels-last tensors. A float conv returns a
    contiguous tensor, so `x.view(x.size(0), -1)` works before `convert` and fails after it:

    ```text
    RuntimeError: view size is not compatible with input tensor's size and stride (at least one dimension
    spans across two contiguous subspaces). Use .reshape(...) instead.
    ```

    ## Use instead
    `x.reshape(...)` or `torch.flatten(x, 1)`: they copy when the strides need it.

    ## Fix safety
    Safe: `.view` becomes `.reshape`; in float on a contiguous tensor `reshape` returns the same view.

    ## References
    - [pytorch/pytorch#33300](https://github.com/pytorch/pytorch/issues/33300) (quantized model: `view size is not compatible with input tensor's size and stride`)
    - [`torch.Tensor.reshape`](https://pytorch.org/docs/stable/generated/torch.Tensor.reshape.html)
    """

    code = "QL108"
    name = "view-on-quantized"
    severity = Severity.ERROR  # reported only when torch refuses the view: the int8 forward fails
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "`.view` on the channels-last output of a quantized conv"
    fix_availability = FixAvailability.ALWAYS
    fix_title = "safe (`.reshape`)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 3 * 3, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.pool(self.conv(self.quant(x)))
        x = self.fc(x.view(x.size(0), -1))
        return self.dequant(x)
""",
            lines=(16,),
            args=("--input-shape", "1x3x8x8"),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 3 * 3, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.pool(self.conv(self.quant(x)))
        x = self.fc(x.reshape(x.size(0), -1))
        return self.dequant(x)
""",
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
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 3 * 3, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.pool(self.conv(self.quant(x)))
        x = self.fc(torch.flatten(x, 1))
        return self.dequant(x)
""",
            args=("--input-shape", "1x3x8x8"),
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        for name, facts in qg.nodes("call_method"):
            if facts.target not in _VIEW_METHODS or not _after_quantized_conv(qg, name):
                continue
            error = _view_error(qg, name)
            if error:
                yield qg.diagnostic(
                    self.code,
                    f"`.view` on the output of a quantized conv: after `convert` the tensor is channels-last and the "
                    f"view fails ({error}); use `.reshape` or `torch.flatten`",
                    name,
                )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        import libcst as cst

        out: dict[int, Fix] = {}
        for i, diag in items:
            calls = [
                n
                for n in ctx.file.nodes_at(diag.span, (cst.Call,))
                if isinstance(n.func, cst.Attribute) and n.func.attr.value in _VIEW_METHODS
            ]
            if len(calls) == 1:
                edit = ctx.file.replace(calls[0].func.attr, "reshape")
                out[i] = Fix(Applicability.SAFE, "Use `.reshape`", (edit,))
        return out


def _after_quantized_conv(qg: QGraph, name: str) -> bool:
    """The viewed tensor comes from a quantized conv through single-input ops that keep its layout."""
    import torch.nn as nn
    from torch.ao.nn.intrinsic import _FusedModule

    from qlint.model.analysis import Kind

    node = qg.fx_nodes[name].args[0] if qg.fx_nodes[name].args else None
    while node is not None and hasattr(node, "name"):
        facts = qg.facts(node.name)
        if facts.kind is not Kind.QUANT:
            return False
        if facts.op == "call_module":
            module = qg.submodule(facts.module)
            first = module[0] if isinstance(module, _FusedModule) else module
            if isinstance(first, nn.modules.conv._ConvNd) and facts.swapped:
                return True
            if not isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.ReLU,
                                       nn.ReLU6, nn.Hardtanh, nn.Dropout, nn.Identity, nn.Hardswish)):  # fmt: skip
                return False
        elif facts.op == "call_function" and getattr(facts.target, "__name__", "") in (
            "relu", "max_pool2d", "avg_pool2d", "dropout", "hardtanh", "relu6"
        ):  # fmt: skip
            pass
        else:
            return False
        inputs = qg.fx_nodes[node.name].all_input_nodes
        node = inputs[0] if len(inputs) == 1 else None
    return False


def _view_error(qg: QGraph, name: str) -> str:
    """The error torch gives for this ``.view`` on a channels-last quantized tensor ("" when it works)."""
    import torch
    import torch.fx as fx

    from qlint.model import support

    node = qg.fx_nodes[name]
    source = qg.facts(node.args[0].name).value
    if not isinstance(source, torch.Tensor) or source.dim() != 4 or source.numel() > support.MAX_PROBE_ELEMENTS:
        return ""
    values = []
    for arg in node.args[1:]:
        value = qg.facts(arg.name).value if isinstance(arg, fx.Node) else arg
        if isinstance(value, torch.Tensor) or not isinstance(value, (int, tuple, list, torch.Size)):
            return ""
        values.append(value)
    data = torch.rand(tuple(source.shape)).contiguous(memory_format=torch.channels_last)
    with support.quiet():
        tensor = torch.quantize_per_tensor(data, 0.05, 64, torch.quint8)
        try:
            tensor.view(*values)
        except RuntimeError as exc:
            return str(exc).split("(")[0].strip()
    return ""
