"""QL0xx: where qlint could not look (a file that does not parse, a model it cannot build or trace).

qlint itself reports these while reading, building and tracing; they define no check of their own.
"""

from __future__ import annotations

from qlint.diagnostics import Severity
from qlint.rules.base import ALL_FLOWS, Basis, Flow, Invalid, Rule, Valid


class InvalidSyntax(Rule):
    """## What it does
    Reports a file that Python cannot parse, at the line and column of the syntax error.
    qlint keeps going: the other files on the command line are still checked.

    ## Why is this bad?
    A file that does not parse cannot be imported, so none of its models can be built,
    traced or checked, and every quantization script that imports it fails before it
    starts. qlint reports the parser's message instead of a traceback:

    ```text
    SyntaxError: expected ':'
    ```

    ## Fix safety
    No automatic fix: qlint does not guess what the code was meant to be.

    ## References
    - [Python language reference: lexical analysis and grammar](https://docs.python.org/3/reference/grammar.html)
    """

    code = "QL000"
    name = "invalid-syntax"
    severity = Severity.ERROR
    flows = ALL_FLOWS
    basis = (Basis.SOURCE,)
    summary = "the file cannot be parsed"
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
        self.dequant = DeQuantStub()

    def forward(self, x)  # missing ':'
        return self.dequant(self.conv(self.quant(x)))
""",
            lines=(12,),
        ),
        Valid(
            """\
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
""",
        ),
    )


class ModelNotBuilt(Rule):
    """## What it does
    Reports a model that qlint found in the file but could not build, at the line of its
    class or factory `def`: its constructor needs arguments qlint cannot guess, its
    constructor raised (the message says what it raised), or importing the file raised.

    qlint finds models in this order:

    1. `# qlint: model = EXPR` comments in the file (several are allowed; `EXPR` is evaluated
       in the file's namespace), `models = ["path.py:EXPR"]` in `[tool.qlint]`, or
       `--model EXPR` on the command line;
    2. otherwise every `nn.Module` subclass defined in the file whose constructor needs no
       arguments, and every module-level function callable without arguments that returns an
       `nn.Module` (annotated `-> nn.Module`, or named `build`, `build_model`, `create_model`,
       `get_model`, `make_model`).

    A root model class (one that is not a submodule of another model in the file) whose
    constructor needs arguments is reported here.

    On the PT2E flow, a file checked as PT2E because it calls `prepare_pt2e` on a machine
    without torchao gets a QL001 info at that call: its source rules ran, its PT2E graph checks
    did not (`pip install qlint[pt2e]`). `--flow pt2e` given explicitly is an error instead.

    ## Why is this bad?
    Every graph rule (missing stubs, float ops on quantized tensors, unfused chains, slow
    convolutions) needs the model built and traced. A model that is not built is not
    checked at all: a clean report would be a false "all clear".

    ## Fix safety
    No automatic fix: only the author knows which arguments build the model that gets
    deployed. Add a `# qlint: model = ...` comment, a `models` entry in `[tool.qlint]`, or a
    no-argument `build_model()` function.

    ## References
    - qlint README, "Finding the models in a file"
    - [Eager mode quantization](https://pytorch.org/docs/stable/quantization.html#eager-mode-quantization)
    """

    code = "QL001"
    name = "model-not-built"
    severity = Severity.WARNING
    flows = ALL_FLOWS
    basis = (Basis.GRAPH,)
    summary = "a model in the file could not be built"
    fix_title = "configure the model"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Detector(nn.Module):
    def __init__(self, phase, num_classes=2):  # `phase` has no default
        super().__init__()
        self.phase = phase
        self.quant = QuantStub()
        self.head = nn.Conv2d(3, 4 * num_classes, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.head(self.quant(x)))
""",
            lines=(5,),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub

# qlint: model = Detector("test")


class Detector(nn.Module):
    def __init__(self, phase, num_classes=2):
        super().__init__()
        self.phase = phase
        self.quant = QuantStub()
        self.head = nn.Conv2d(3, 4 * num_classes, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.head(self.quant(x)))
""",
        ),
    )


class TraceFailed(Rule):
    """## What it does
    Reports a model that `torch.fx` cannot trace, at the line of `forward` (or of a helper it
    calls) where tracing stopped. The usual cause is Python control flow on a tensor value:
    `if x.sum() > 0:`, `while loss > eps:`, `for i in range(x.size(0)):`, `.item()`.

    The graph rules skip a model that does not trace, but qlint still checks the largest
    submodules that do (a detector's backbone and heads), and the source rules still run.

    ## Why is this bad?
    qlint sees a model through its traced graph: a model that does not trace is only
    partly checked. The same `forward` also stops FX graph mode quantization
    (`prepare_fx`) and `torch.export` (PT2E) with:

    ```text
    torch.fx.proxy.TraceError: symbolically traced variables cannot be used as inputs to control flow
    ```

    ## Use instead
    A branch that depends on configuration, not on data, is fine: decide it in `__init__`
    (`self.rescale = rescale`) and test `self.rescale` in `forward`.

    ## Fix safety
    No automatic fix: rewriting control flow can change what the model computes.

    ## References
    - [torch.fx: limitations of symbolic tracing](https://pytorch.org/docs/stable/fx.html#limitations-of-symbolic-tracing)
    - [DeepVAC/deepvac#115](https://github.com/DeepVAC/deepvac/issues/115) (`prepare_fx` stopped by control flow in `forward`)
    """

    code = "QL002"
    name = "trace-failed"
    severity = Severity.WARNING
    flows = (Flow.EAGER, Flow.FX)  # PT2E's counterpart is QL508 (export failed)
    basis = (Basis.GRAPH,)
    summary = "torch.fx could not trace the model"
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
        self.dequant = DeQuantStub()

    def forward(self, x):
        if x.max() > 1:  # a branch on a tensor value: 0..255 images get rescaled
            x = x / 255
        x = self.quant(x)
        return self.dequant(self.conv(x))
""",
            lines=(13,),
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
        x = torch.where(x.max() > 1, x / 255, x)  # the branch as a tensor op
        x = self.quant(x)
        return self.dequant(self.conv(x))
""",
        ),
    )
