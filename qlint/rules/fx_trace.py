"""QL207: what stops ``symbolic_trace`` / ``prepare_fx`` in a file whose pipeline uses the FX flow.

Graph basis: the model is traced as ``prepare_fx`` traces it (torch.fx); where the trace stops
(QL002), a file that calls ``prepare_fx``/``prepare_qat_fx`` gets QL207 at the same line
(``qlint.model.check`` reports both). No check of its own runs on a traced graph.
"""

from __future__ import annotations

from qlint.diagnostics import Severity
from qlint.rules.base import Basis, Flow, Invalid, Rule, Valid


class FxUntraceable(Rule):
    """## What it does
    In a file that calls `prepare_fx` or `prepare_qat_fx`, reports where `torch.fx` symbolic
    tracing of the model stops: control flow on a tensor value (`if x.sum() > 0:`), iterating a
    Proxy (`for row in x:`), `len(tensor)`, a call into code fx cannot record. It is reported at
    the same line as QL002 (trace-failed), which says the same for the graph rules.

    ## Why is this bad?
    `prepare_fx` starts by symbolically tracing the whole model; where the trace stops, the FX
    flow fails before any observer is inserted:

    ```text
    torch.fx.proxy.TraceError: symbolically traced variables cannot be used as inputs to control flow
    ```

    ## Fix safety
    No automatic fix. Make the code traceable (a tensor op instead of the branch, `torch.where`),
    mark the function `torch.fx.wrap`, keep the module out of tracing with
    `PrepareCustomConfig().set_non_traceable_module_names([...])`, or quantize this model with
    the eager flow.

    ## References
    - [torch.fx: limitations of symbolic tracing](https://pytorch.org/docs/stable/fx.html#limitations-of-symbolic-tracing)
    - [FX graph mode quantization user guide: non-traceable code](https://pytorch.org/tutorials/prototype/fx_graph_mode_quant_guide.html)
    """

    code = "QL207"
    name = "fx-untraceable"
    severity = Severity.WARNING
    flows = (Flow.FX,)
    basis = (Basis.GRAPH,)
    summary = "prepare_fx cannot trace the model"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        if x.max() > 1:  # a branch on a tensor value
            x = x / 255
        return self.conv(x)


def quantize(model):
    return prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), (torch.rand(1, 3, 32, 32),))
""",
            lines=(13,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        x = torch.where(x.max() > 1, x / 255, x)  # the branch as a tensor op
        return self.conv(x)


def quantize(model):
    return prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), (torch.rand(1, 3, 32, 32),))
""",
        ),
    )

    def runs_on_graph(self, pt2e: bool = False) -> bool:
        return not pt2e  # reported while tracing, with QL002
