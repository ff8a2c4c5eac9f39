"""QL301: dilated grouped convolutions, several times slower in int8 on fbgemm / x86."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from qlint.diagnostics import Diagnostic, Severity
from qlint.rules.base import Basis, Flow, Invalid, Rule, Valid

if TYPE_CHECKING:
    from qlint.model.analysis import QGraph


class DilatedGroupedConv(Rule):
    """## What it does
    Reports a quantized convolution with `groups > 1` and `dilation > 1` (typically a dilated
    depthwise convolution, as in DeepLab or LR-ASPP backbones) when the quantized engine is
    `fbgemm` or `x86`. The engine is `--backend` / `backend` in `[tool.qlint]`, else torch's
    default engine on this host. Dense dilated convolutions (`groups == 1`) are not reported.
    Points at the line that calls the convolution (or, inside an `nn.Sequential`, the line that
    constructs it).

    ## Why is this bad?
    It runs and gives the right answer, but slowly: the fbgemm/x86 quantized kernels have no
    fast path for dilated grouped convolutions, and run them several times slower than the
    float convolution they replace (pytorch/pytorch#59730). A whole model can end up slower
    after quantization than before. Seed 001 (MobileNetV3-Large with `dilated=True` and an
    LR-ASPP head), milliseconds per 512x512 image on 2 threads, torch 2.13:

    ```text
    float                                    57-80
    int8, fbgemm                               253
    int8, x86                                  334
    int8, fbgemm, dilated depthwise in float    25
    int8, onednn engine                         16
    ```

    ## Use instead
    Or keep the model and quantize it for the `onednn` engine
    (`torch.backends.quantized.engine = "onednn"` with `get_default_qconfig("onednn")`, and
    `--backend onednn` for qlint), whose kernel runs these convolutions fast. Which remedy
    wins depends on the shapes and the CPU: `qlint verify` measures both.

    ## Fix safety
    No automatic fix yet. Keeping the conv in float by hand (`qconfig = None` and a
    `DeQuantStub`/`QuantStub` pair around it) changes which parts of the model are quantized, adds a dequantize/quantize
    round trip, and can undo a fusion. It is usually faster and slightly more accurate, but
    measure it (`qlint verify`).

    ## References
    - [pytorch/pytorch#59730](https://github.com/pytorch/pytorch/issues/59730) (quantized conv2d with dilation and groups much slower than float32)
    - seed 001: "Strange latency behavior", a quantized MobileNetV3 + LR-ASPP slower than float
    - [Quantized engines](https://pytorch.org/docs/stable/quantization.html#backend-hardware-support)
    """

    code = "QL301"
    name = "dilated-grouped-conv"
    severity = Severity.WARNING
    flows = (
        Flow.EAGER,
        Flow.FX,
    )
    basis = (Basis.GRAPH,)
    summary = "a dilated grouped conv runs slower in int8 than in float on this engine"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.pw = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)  # dilated depthwise
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.dw(self.pw(x))
        return self.dequant(x)
""",
            lines=(15,),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.pw = nn.Conv2d(3, 8, 1)
        self.dequant_dw = DeQuantStub()
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.dw.qconfig = None  # keep the dilated depthwise conv in float
        self.quant_dw = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pw(x)
        x = self.quant_dw(self.dw(self.dequant_dw(x)))  # float island
        return self.dequant(x)
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return dilated_grouped_conv(qg)


SLOW_DILATED_GROUPED_ENGINES = ("fbgemm", "x86")


def engine(settings) -> str:
    if settings.backend:
        return settings.backend
    import torch

    return torch.backends.quantized.engine


def dilated_grouped_conv(qg: QGraph) -> Iterator[Diagnostic]:
    import torch.nn as nn

    from qlint.model import support

    backend = engine(qg.settings)
    if backend not in SLOW_DILATED_GROUPED_ENGINES:
        return
    for name, facts in qg.nodes("call_module"):
        module = qg.submodule(facts.module)
        conv = module[0] if isinstance(module, nn.Sequential) and len(module) else module
        if not qg.quantized_by_qconfig(facts.module):
            continue
        if support.is_dilated_grouped_conv(conv):
            kind = "depthwise" if conv.groups == conv.in_channels else f"grouped (groups={conv.groups})"
            yield qg.diagnostic(
                "QL301",
                f"`{qg.full(facts.module)}` is a {kind} conv with dilation {tuple(conv.dilation)}: "
                f"the {backend} engine runs it several times slower in int8 than in float (pytorch/pytorch#59730); "
                "keep it float (`qconfig = None` with stubs around it) or use the onednn engine; "
                "`qlint verify` measures both",
                name,
            )
