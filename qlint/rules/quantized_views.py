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

VIEW_METHODS = ("view",)


class ViewOnQuantized(Rule):
    """## What it does
    Reports `.view(...)` on the output of a quantized convolution (also after the ops that keep its
    layout) when the view cannot be taken with the strides the quantized kernel gives. Both are asked
    of torch: the layout a converted module returns, and the same `.view` run on a quantized tensor
    of that layout at the model's shape (the view of a contiguous float tensor of that shape runs).
    Points at the line of the `.view` call.

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
        from qlint.model import support

        for name, facts in qg.nodes("call_method"):
            if facts.target in VIEW_METHODS and facts.quantized_support is False and support.refused(facts.probe_error):
                error = facts.probe_error[len(support.REFUSED) :].removeprefix("RuntimeError: ").split("(")[0].strip()
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
                if isinstance(n.func, cst.Attribute) and n.func.attr.value in VIEW_METHODS
            ]
            if len(calls) == 1:
                edit = ctx.file.replace(calls[0].func.attr, "reshape")
                out[i] = Fix(Applicability.SAFE, "Use `.reshape`", (edit,))
        return out
