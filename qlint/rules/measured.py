"""QL6xx: what `qlint verify` measures in a real conversion (it reports these; no static check)."""

from __future__ import annotations

from qlint.diagnostics import Severity
from qlint.rules.base import Basis, Flow, Invalid, Rule, Valid


class ConversionFailed(Rule):
    """## What it does
    `qlint verify` runs the real flow on the CPU: fusion, the qconfig of the engine, `prepare`,
    calibration, `convert` and the first forward of the converted model (or `prepare_fx` /
    `convert_fx`, or `torch.export` + `prepare_pt2e` / `convert_pt2e`). When a step raises,
    QL601 reports it with:

    - the step (`prepare`, `calibrate`, `convert`, `forward`) and the module that was running
      (forward pre-hooks track the module stack; for `prepare`/`convert` the module being swapped);
    - torch's error in plain words, e.g. `Could not run 'quantized::conv2d.new' with arguments
      from the 'CPU' backend` becomes "a float tensor reached quantized::conv2d: the model has no
      QuantStub before `features.0`", and `Could not run 'aten::add.out' with arguments from the
      'QuantizedCPU' backend` becomes "an `a + b` / `+=` on quantized tensors, use FloatFunctional";
    - the source line: the line of the checked file that raised (e.g. `out += identity`), or,
      when the culprit is a library module, the line that constructs it or builds the model;
    - the static rule that predicts it (`qlint check`'s diagnostic for the same module, e.g.
      QL101 for the missing stub, QL103 for `+=`), named in `related`.

    ## Why is this bad?
    The model cannot be quantized as written. Torch's message names a dispatch key and a kernel,
    several frames deep inside `torch/nn`, not the line to change (seed 002: torchvision's `vgg16`
    fed straight to `prepare`/`convert` fails in `quantized::conv2d` with no hint that the model
    lacks a `QuantStub`).

    ## Fix safety
    QL601 has no fix of its own: apply the fix of the rule it names (`qlint check --fix`), which
    says how safe it is, then run `qlint verify` again.

    ## References
    - seed 002: "Convert FP32 model in torchvision.models to INT8 model" (`Could not run 'quantized::conv2d' with arguments from the 'CPUTensorId' backend`)
    - [Eager mode static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization)
    - QL101, QL103, QL105, QL201, QL408, QL409, QL412 (the static rules QL601 maps errors to)
    """

    code = "QL601"
    name = "conversion-failed"
    severity = Severity.ERROR
    flows = (
        Flow.EAGER,
        Flow.FX,
        Flow.PT2E,
    )
    basis = (Basis.MEASURED,)
    summary = "the real conversion or the first int8 forward raised"
    fix_title = "the rule that predicts the crash has one"
    examples = (
        Invalid(
            """\
import torchvision


def build_model():
    # no QuantStub: convert swaps features.0 for a quantized conv that gets a float tensor
    return torchvision.models.vgg16(weights=None)
""",
            lines=(),
        ),
        Valid(
            """\
import torch.nn as nn
import torchvision
from torch.ao.quantization import DeQuantStub, QuantStub


class QuantizableVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.body = torchvision.models.vgg16(weights=None)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


def build_model():
    return QuantizableVGG()
""",
        ),
    )


class SlowQuantizedLayer(Rule):
    """## What it does
    Times every layer of the float model (after fusion) and of the converted int8 model with
    forward pre/post hooks (`time.perf_counter`), calls of the two models interleaved, each
    layer's fastest of several calls, on the engine, input shape and thread count of the run.
    Reports the layers that are slower in int8 than in float: at least 10% slower, by at least
    0.05 ms and 0.5% of the whole int8 latency (below that it is timer noise). Layers built at
    the same source line are reported together; a dilated grouped conv is marked (see QL301).

    ## Why is this bad?
    A layer that is slower quantized than float eats the speedup quantization was for, and a few
    of them can make the whole model slower than float (QL605). The classic case is the dilated
    depthwise convolution on fbgemm/x86 (seed 001): tens of times slower in int8.

    ## Use instead
    Or another engine (`torch.backends.quantized.engine = "onednn"` with
    `get_default_qconfig("onednn")`). `qlint verify` measures both in the same run and prints the
    code change of the fastest one that keeps SQNR above `--min-sqnr`.

    ## Fix safety
    No automatic fix: a float island changes what is quantized, an engine change changes where the
    model can run. Both are measured, not guessed.

    ## References
    - [pytorch/pytorch#59730](https://github.com/pytorch/pytorch/issues/59730)
    - seed 001: "Strange latency behavior"
    - QL301 (the static prediction), QL605 (the whole model)
    """

    code = "QL602"
    name = "slow-quantized-layer"
    severity = Severity.WARNING
    flows = (
        Flow.EAGER,
        Flow.FX,
    )
    basis = (Basis.MEASURED,)
    summary = "a layer measured slower in int8 than in float"
    fix_title = "`qlint verify` measures the remedies"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.pw = nn.Conv2d(3, 96, 1)
        self.dw = nn.Conv2d(96, 96, 5, padding=8, dilation=4, groups=96)  # slow in int8 on fbgemm/x86
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.dw(self.pw(self.quant(x))))
""",
            lines=(),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.pw = nn.Conv2d(3, 96, 1)
        self.dequant_dw = DeQuantStub()
        self.dw = nn.Conv2d(96, 96, 5, padding=8, dilation=4, groups=96)
        self.dw.qconfig = None  # float island: convert leaves it float
        self.quant_dw = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.pw(self.quant(x))
        x = self.quant_dw(self.dw(self.dequant_dw(x)))
        return self.dequant(x)
""",
        ),
    )


class LowSqnr(Rule):
    """## What it does
    Compares the converted model with the float model on held-out inputs (random batches of the
    input shape, or the last fifth of the batches a `--calibration module:function` yields):
    signal-to-quantization-noise ratio `20·log10(‖float‖ / ‖float − int8‖)` in dB, and cosine
    similarity. Per layer, forward hooks record the float and int8 outputs of every module with the
    same qualified name; the int8 outputs are dequantized and compared the same way, worst first.
    Reports when the output SQNR is below `--min-sqnr` (default 20 dB) and names the worst layers.

    ## Why is this bad?
    The model converts and runs, but its answers drift from the float model: too little
    calibration, a per-tensor qconfig where per-channel was meant (seed 000 inverted the two), a
    sensitive layer (softmax inputs, the first conv, the classifier) quantized, an observer that
    never saw data, or, as in the example, an intermediate tensor whose int8 range is far wider
    than the difference the next layer computes from it.

    ## Use instead
    Or keep the sensitive layers float (`qconfig = None` with stubs around them), calibrate on
    representative data, and use the engine's per-channel default qconfig.

    ## Fix safety
    No automatic fix: which layers to keep float, and how much accuracy is enough, is the user's
    call. `--min-sqnr` sets the bar.

    ## References
    - [Numeric Suite](https://pytorch.org/tutorials/prototype/numeric_suite_tutorial.html) (torch's own per-layer comparison)
    - seed 000 (per-tensor vs per-channel qconfig inverted)
    """

    code = "QL603"
    name = "low-sqnr"
    severity = Severity.WARNING
    flows = (
        Flow.EAGER,
        Flow.FX,
        Flow.PT2E,
    )
    basis = (Basis.MEASURED,)
    summary = "output (or a layer's) SQNR against float below the threshold"
    examples = (
        Invalid(
            '''\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    """Two layers that nearly cancel: a large intermediate range, a small difference as output."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.fc1 = nn.Linear(4, 2, bias=False)
        self.fc2 = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.001]]))
            self.fc2.weight.copy_(torch.tensor([[-1.0, 1.0]]))
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc2(self.fc1(self.quant(x))))


# qlint: model = Net()
# qlint: input-shape = 8x4
''',
            lines=(),
        ),
        Valid(
            '''\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    """The same function as one layer: no intermediate tensor whose int8 range swallows the difference."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.fc = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.001]]))
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc(self.quant(x)))


# qlint: model = Net()
# qlint: input-shape = 8x4
''',
        ),
    )


class ColdStart(Rule):
    """## What it does
    Times each of the first calls (`--cold-calls`, default 5) of a freshly converted model, then
    its steady state (median after warm-up). Reports when the first call costs at least twice a
    steady-state call and the first calls together cost at least 5 ms more than steady state; says
    how much, which layers take the extra time (per-layer hooks on another fresh copy), and what
    helps.

    ## Why is this bad?
    The first inferences of a quantized model pay one-time costs: the engine picks and builds its
    kernels (oneDNN primitives for x86/onednn), prepacks and allocates. On a server that is one slow
    request; in a command-line tool or a lambda that runs once, it is the whole latency. Seed 000:
    a quantized face detector whose first two calls took seconds, later ones 5 ms. A new input
    shape pays again.

    ## Fix safety
    Nothing to fix in the model: warm up at startup, with the shapes you will serve.

    ## References
    - seed 000: "First forward pass in quantized model takes long time"
    - [oneDNN primitive cache](https://oneapi-src.github.io/oneDNN/dev_guide_primitive_cache.html)
    """

    code = "QL604"
    name = "cold-start"
    severity = Severity.INFO
    flows = (
        Flow.EAGER,
        Flow.FX,
        Flow.PT2E,
    )
    basis = (Basis.MEASURED,)
    summary = "first call(s) much slower than steady state"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.body = nn.Sequential(*[nn.Conv2d(32 if i else 3, 32, 3, padding=1) for i in range(8)])
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


model = Net().eval()
# ... prepare, calibrate, convert ...
# serving starts here: the first request pays the warm-up
""",
            lines=(),
        ),
        Valid(
            '''\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.body = nn.Sequential(*[nn.Conv2d(32 if i else 3, 32, 3, padding=1) for i in range(8)])
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


def warm_up(model, shape=(1, 3, 480, 640), calls=2):
    """Pay the one-time costs at startup, on an input of the deployment shape."""
    with torch.no_grad():
        for _ in range(calls):
            model(torch.zeros(shape))
''',
        ),
    )


class QuantizedSlowerThanFloat(Rule):
    """## What it does
    Times the float model and the converted int8 model on the same input, engine and thread count
    (`--threads`, default 2): the median of `--repeat` calls after `--warmup` calls, the two models
    called in turn so that load from other processes hits both alike. Reports when the int8 model
    is slower. `qlint verify` then measures the remedies in the same run (every engine this torch
    supports on this host, and float islands for the slow layers and the dilated grouped convs) and
    prints the code change of the fastest one whose SQNR meets `--min-sqnr`. The exit code is 1.

    ## Why is this bad?
    Quantizing a model to make it faster and getting a slower one is worse than not quantizing: it
    also costs accuracy. Seed 001: MobileNetV3-Large (dilated) + LR-ASPP, 512x512, 2 threads, torch
    2.13: float 57 ms, int8 on fbgemm 253 ms; the same model with the dilated depthwise convs kept
    float 25 ms, on the onednn engine 16 ms.

    ## Use instead
    Or keep the slow layers float (see QL602), whichever `qlint verify` measures faster.

    ## Fix safety
    No automatic fix: the recommendation is a measurement on this machine; check it on the
    deployment CPU (`qlint verify` there).

    ## References
    - [pytorch/pytorch#59730](https://github.com/pytorch/pytorch/issues/59730)
    - seed 001: "Strange latency behavior"
    - QL301, QL602
    """

    code = "QL605"
    name = "quantized-slower-than-float"
    severity = Severity.ERROR
    flows = (
        Flow.EAGER,
        Flow.FX,
    )
    basis = (Basis.MEASURED,)
    summary = "the whole int8 model is slower than float"
    fix_title = "`qlint verify` measures the remedies"
    examples = (
        Invalid(
            """\
import torch
from torchvision.models.quantization import mobilenet_v3_large

torch.backends.quantized.engine = "fbgemm"


def build_model():
    # dilated depthwise convs in the last blocks: fbgemm's int8 kernels run them slowly
    return mobilenet_v3_large(weights=None, quantize=False, dilated=True)
""",
            lines=(),
        ),
        Valid(
            """\
import torch
from torchvision.models.quantization import mobilenet_v3_large

torch.backends.quantized.engine = "onednn"  # and get_default_qconfig("onednn")


def build_model():
    return mobilenet_v3_large(weights=None, quantize=False, dilated=True)
""",
        ),
    )
