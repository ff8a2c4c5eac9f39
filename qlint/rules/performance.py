"""QL301 / QL302 / QL303: int8 kernels slower than they should be: dilated grouped convolutions and depthwise
convolutions with a channel multiplier on fbgemm / x86, bilinear upsampling of quantized tensors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid
from qlint.rules.float_islands import FloatIsland, first_arg_only, float_island_fixes

if TYPE_CHECKING:
    from qlint.context import FileContext
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
    Unsafe: the fix keeps the conv in float. It sets `self.<conv>.qconfig = None` right after
    the conv's declaration in `__init__` (an own `qconfig` wins over the one `prepare`
    propagates) and puts a float island around its call: a `DeQuantStub` before, a `QuantStub`
    after (`self.dequant_dw`, `self.quant_dw`, declared in `__init__`). The float model computes
    exactly what it did and its state_dict keys are unchanged (stubs hold no state), but the
    converted model changes: the conv runs in float on dequantized values (slightly more
    accurate), with a dequantize/quantize round trip around it, and its output gets its own
    observed scale. Whether that is faster than the int8 kernel depends on the shapes and the
    CPU: it is a speed/accuracy trade-off you should measure (`qlint verify`), so the fix is
    applied only with `--unsafe-fixes`.

    Offered where the conv is called as `self.<conv>(x)` on one quantized tensor in a class of
    the checked file and declared once in its `__init__`, and not where its output feeds a
    BatchNorm or ReLU it could be fused with (fusing replaces the conv and drops its
    `qconfig = None`): convs inside an `nn.Sequential` or a library model are left to you.

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
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "unsafe (keeps the conv in float: `qconfig = None`, DeQuantStub before, QuantStub after)"
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
            unsafe=True,
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.dequant_dw = DeQuantStub()
        self.quant_dw = QuantStub()
        self.quant = QuantStub()
        self.pw = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)  # dilated depthwise
        self.dw.qconfig = None
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.quant_dw(self.dw(self.dequant_dw(self.pw(x))))
        return self.dequant(x)
""",
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

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return float_island_fixes(ctx, items, Applicability.UNSAFE)


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
                data=FloatIsland(
                    f"`{qg.full(facts.module)}`",
                    first_arg_only(qg, name),
                    keep_float=None if module is not conv else facts.module,
                    fused_next=_feeds_fusable(qg, name),
                ),
            )


def _feeds_fusable(qg: QGraph, name: str) -> bool:
    """The node's output goes to a BatchNorm or ReLU module (a fusion with it would replace the conv)."""
    import torch.nn as nn

    fusable = (nn.modules.batchnorm._BatchNorm, nn.ReLU)
    return any(
        qg.facts(user).module_type is not None and issubclass(qg.facts(user).module_type, fusable)
        for user in qg.users(name)
    )


class DepthwiseMultiplierConv(Rule):
    """## What it does
    Reports a quantized convolution with `groups == in_channels > 1` and `out_channels != in_channels`
    (a depthwise convolution with a channel multiplier) when the quantized engine is `fbgemm` or `x86`.
    Points at the line that calls it.

    ## Why is this bad?
    It runs, slowly: fbgemm's fast depthwise kernels need one output channel per input channel; with a
    multiplier it falls back to the generic grouped path (pytorch/FBGEMM#347).

    ## Use instead
    A depthwise conv with `out_channels == in_channels`, then a 1x1 conv to the wanted width
    (retrain), or measure with `qlint verify`.

    ## Fix safety
    No automatic fix: the replacement changes the architecture.

    ## References
    - [pytorch/FBGEMM#347](https://github.com/pytorch/FBGEMM/issues/347) (depthwise convolution with a channel multiplier)
    """

    code = "QL302"
    name = "depthwise-multiplier-conv"
    severity = Severity.WARNING
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.GRAPH,)
    summary = "a depthwise conv with a channel multiplier takes fbgemm's slow path"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.dw(self.quant(x)))
""",
            lines=(13,),
            args=("--backend", "x86"),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.pw(self.dw(self.quant(x))))
""",
            args=("--backend", "x86"),
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        import torch.nn as nn
        from torch.ao.nn.intrinsic import _FusedModule

        backend = engine(qg.settings)
        if backend not in SLOW_DILATED_GROUPED_ENGINES:
            return
        for name, facts in qg.nodes("call_module"):
            module = qg.submodule(facts.module)
            conv = module[0] if isinstance(module, (nn.Sequential, _FusedModule)) and len(module) else module
            if not isinstance(conv, nn.modules.conv._ConvNd) or not qg.quantized_by_qconfig(facts.module):
                continue
            if conv.groups > 1 and conv.groups == conv.in_channels and conv.out_channels != conv.in_channels:
                yield qg.diagnostic(
                    self.code,
                    f"`{qg.full(facts.module)}` is a depthwise conv with a channel multiplier "
                    f"({conv.in_channels} -> {conv.out_channels} channels, groups={conv.groups}): the {backend} engine "
                    "takes its slow grouped path (pytorch/FBGEMM#347); use out_channels == in_channels and a 1x1 conv",
                    name,
                )


class QuantizedBilinearUpsample(Rule):
    """## What it does
    Reports bilinear upsampling (`F.interpolate(..., mode="bilinear")`, `nn.Upsample(mode="bilinear")`,
    `nn.UpsamplingBilinear2d`) applied to a quantized tensor. Points at the line of the call.

    ## Why is this bad?
    It runs, but the quantized bilinear kernel is slow compared with nearest-neighbour upsampling
    (and with float bilinear on many CPUs): segmentation heads often spend more time there than in
    their convolutions after quantization.

    ## Use instead
    `mode="nearest"` where the model tolerates it (retrain), or a float island (`DeQuantStub`
    before, `QuantStub` after); `qlint verify` measures which wins.

    ## Fix safety
    No automatic fix: nearest changes the numerics, and a float island is a trade-off to measure.

    ## References
    - [pytorch/pytorch#35475](https://github.com/pytorch/pytorch/issues/35475) (quantized upsample_bilinear2d performance)
    """

    code = "QL303"
    name = "quantized-bilinear-upsample"
    severity = Severity.INFO
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.GRAPH,)
    summary = "bilinear upsampling of a quantized tensor is slow"
    examples = (
        Invalid(
            """\
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.conv(self.quant(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.dequant(x)
""",
            lines=(15,),
        ),
        Valid(
            """\
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.conv(self.quant(x))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.dequant(x)
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        import torch.nn as nn
        import torch.nn.functional as F

        from qlint.model.analysis import Kind

        for name, facts in qg.nodes():
            if not facts.input_kinds or facts.input_kinds[0] is not Kind.QUANT:
                continue
            node = qg.fx_nodes[name]
            if facts.op == "call_function" and facts.target in (F.interpolate, F.upsample):
                mode = node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")
                what = f"F.{facts.target.__name__}"
            elif facts.op == "call_module" and facts.module_type and issubclass(facts.module_type, nn.Upsample):
                mode, what = (
                    qg.submodule(facts.module).mode,
                    f"`{qg.full(facts.module)}` ({facts.module_type.__name__})",
                )
            else:
                continue
            if mode in ("bilinear", "bicubic"):
                yield qg.diagnostic(
                    self.code,
                    f"{what} upsamples a quantized tensor with mode={mode!r}: the int8 kernel is slow; use "
                    "'nearest' (retrain) or a float island, and measure with `qlint verify`",
                    name,
                )
