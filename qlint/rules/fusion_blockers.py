"""QL203 / QL204 / QL206: what keeps eager fusion from folding a chain: a functional activation, an order
torch has no fuser for, a batch norm with no conv or linear before it. Fusable patterns are torch's fuser
table (``support.fusion_patterns``), not a list of ours."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid
from qlint.source.edit import free_name, methods
from qlint.source.idioms import declare, spelled
from qlint.source.index import self_attributes

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph

_FUNCTIONAL_ACTIVATIONS = {"relu": "nn.ReLU", "relu_": "nn.ReLU", "relu6": "nn.ReLU6", "hardtanh": "nn.Hardtanh"}


def _single_module_input(qg: QGraph, name: str) -> str | None:
    """The call_module node that alone feeds ``name`` and feeds only it, or None."""
    inputs = qg.fx_nodes[name].all_input_nodes
    if len(inputs) != 1:
        return None
    source = inputs[0].name
    if qg.facts(source).op != "call_module" or len(qg.users(source)) != 1:
        return None
    return source


def _activation_name(qg: QGraph, name: str) -> str | None:
    """``relu`` for ``F.relu(x)`` / ``torch.relu(x)`` / ``x.relu()`` (and relu6, hardtanh), else None."""
    import torch
    import torch.nn.functional as F

    facts = qg.facts(name)
    if facts.op == "call_method":
        return facts.target if facts.target in ("relu", "relu_") else None
    functions = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.hardtanh}
    if facts.op == "call_function" and facts.target in functions:
        return facts.target.__name__
    return None


class FunctionalActivation(Rule):
    """## What it does
    Reports `F.relu` / `torch.relu` / `x.relu()` (and `F.relu6`, `F.hardtanh`) applied right after a
    module that torch's fuser could fuse with an activation module (a conv, a conv followed by batch
    norm, a linear, a batch norm). Points at the line of the call.

    ## Why is this bad?
    Eager `fuse_modules` fuses modules by name: a functional call is invisible to it. The conv then
    runs as a separate int8 op, its observer sees the pre-activation range (half of the int8 codes
    go to negative values the ReLU throws away), and the ReLU is one more quantized op. It runs, but
    slower and less accurate than the fused `ConvReLU2d`.

    ## Use instead
    An `nn.ReLU()` attribute called in `forward`, fused with `fuse_modules`.

    ## Fix safety
    Safe: the fix declares the activation module in `__init__` (`self.relu = nn.ReLU()`, with the
    call's other arguments: `F.relu(x, inplace=True)` gives `nn.ReLU(inplace=True)`, `F.relu_` and
    `torch.relu_` give `nn.ReLU(inplace=True)`, `F.hardtanh(x, 0.0, 6.0)` gives
    `nn.Hardtanh(0.0, 6.0)`) and calls it instead (`self.relu(x)`, also for `x.relu()`). The module
    computes exactly what the function did and holds no state (the state_dict keys do not change).
    QL201 then sees the chain and its fix fuses it. Offered for a call in a method of a class of the
    checked file whose extra arguments are constants.

    ## References
    - [`torch.ao.quantization.fuse_modules`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.fuse_modules.fuse_modules.html)
    - torchvision's `models/quantization/googlenet.py` (its `BasicConv2d` swaps `F.relu` for `nn.ReLU` to fuse)
    """

    code = "QL203"
    name = "functional-activation"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "a functional ReLU after a fusable module cannot be fused"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (an `nn.ReLU` attribute called in `forward`)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.bn(self.conv(self.quant(x)))
        return self.dequant(F.relu(x))
""",
            lines=(16,),
            fixed="""\
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.bn(self.conv(self.quant(x)))
        return self.dequant(self.relu(x))
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
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.bn(self.conv(self.quant(x)))
        return self.dequant(self.relu(x))
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        import torch.nn as nn

        from qlint.model import support

        heads = {p[-2] for p in support.fusion_patterns() if len(p) > 1 and p[-1] is nn.ReLU}
        for name in qg.graph.nodes:
            activation = _activation_name(qg, name)
            source = _single_module_input(qg, name) if activation else None
            if source is None:
                continue
            module = qg.facts(source)
            if module.module_type in heads and qg.quantized_by_qconfig(module.module):
                yield qg.diagnostic(
                    self.code,
                    f"functional `{activation}` after `{qg.full(module.module)}` ({module.module_type.__name__}): "
                    f"`fuse_modules` cannot see it; use an `{_FUNCTIONAL_ACTIVATIONS[activation]}()` attribute"
                    + (" and fuse it" if activation.startswith("relu") and activation != "relu6" else ""),
                    name,
                    data=FunctionalActivationCall(activation),
                )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        out: dict[int, Fix] = {}
        taken_by_class: dict[int, set[str]] = {}
        for index, diag in items:
            fix = _module_activation(ctx, diag, taken_by_class)
            if fix is not None:
                out[index] = fix
        return out


@dataclass(frozen=True)
class FunctionalActivationCall:
    """What QL203 hands its fix: the function's name (``relu``, ``relu_``, ``relu6``, ``hardtanh``)."""

    activation: str


_MODULES = {
    "relu": "torch.nn.ReLU",
    "relu_": "torch.nn.ReLU",
    "relu6": "torch.nn.ReLU6",
    "hardtanh": "torch.nn.Hardtanh",
}


def _module_activation(ctx: FileContext, diag: Diagnostic, taken_by_class: dict[int, set[str]]) -> Fix | None:
    """``F.relu(x, inplace=True)`` -> ``self.relu(x)`` with ``self.relu = nn.ReLU(inplace=True)`` in ``__init__``."""
    if not isinstance(diag.data, FunctionalActivationCall):
        return None
    activation = diag.data.activation
    calls = [n for n in ctx.file.nodes_at(diag.span, (cst.Call,)) if ctx.file.end(n) == diag.span.end]
    if len(calls) != 1:
        return None
    call = calls[0]
    function, cls = ctx.file.enclosing_function(call), ctx.file.enclosing_class(call)
    if function is None or cls is None or function.name.value == "__init__" or "__init__" not in methods(cls):
        return None
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value == activation and not call.args:
        tensor, extra = func.value, []  # x.relu()
    elif call.args and call.args[0].keyword is None and not call.args[0].star:
        tensor, extra = call.args[0].value, list(call.args[1:])
    else:
        return None
    if any(arg.star or not _constant(arg.value) for arg in extra):
        return None
    arguments = [ctx.file.code(arg).strip().rstrip(",") for arg in extra]
    if activation.endswith("_"):
        arguments = ["inplace=True"]
    module, imports = spelled(ctx, (_MODULES[activation],))
    taken = taken_by_class.setdefault(id(cls), set(self_attributes(cls)))
    attr = free_name(activation.rstrip("_"), taken)
    declaration = declare(ctx, cls, [f"self.{attr} = {module}({', '.join(arguments)})"])
    if declaration is None:
        return None
    return Fix(
        Applicability.SAFE,
        f"Call an `{module}` attribute: `self.{attr}` (declared in `__init__`), which `fuse_modules` can fuse",
        (declaration, *imports, ctx.file.replace(call, f"self.{attr}({ctx.file.code(tensor)})")),
    )


def _constant(node: cst.BaseExpression) -> bool:
    """A literal number, True/False/None, or a negated number."""
    if isinstance(node, cst.UnaryOperation):
        return isinstance(node.operator, cst.Minus) and _constant(node.expression)
    if isinstance(node, cst.Name):
        return node.value in ("True", "False", "None")
    return isinstance(node, (cst.Integer, cst.Float))


class UnfusableOrder(Rule):
    """## What it does
    Reports a batch norm that follows a ReLU that follows a conv or linear (Conv -> ReLU -> BN): torch's
    fuser table has no pattern for that order. Points at the line that calls the batch norm.

    ## Why is this bad?
    Conv -> BN folds into the conv's weights, and Conv -> BN -> ReLU into one `ConvReLU2d`; with the
    ReLU in between, the conv and ReLU fuse but the batch norm stays a separate int8 op with its own
    requantization (slower, and less accurate).

    ## Use instead
    Conv -> BN -> ReLU (retrain: the order changes the function), or keep that batch norm in float.

    ## Fix safety
    No automatic fix: reordering changes the model's numerics.

    ## References
    - [`torch.ao.quantization.fuse_modules`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.fuse_modules.fuse_modules.html)
    """

    code = "QL204"
    name = "unfusable-order"
    severity = Severity.WARNING
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.GRAPH,)
    summary = "Conv -> ReLU -> BN has no fuser"
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
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        return self.dequant(self.bn(x))
""",
            lines=(16,),
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
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.bn(self.conv(self.quant(x)))
        return self.dequant(self.relu(x))
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        for bn, relu, layer in conv_relu_bn(qg):
            yield qg.diagnostic(
                self.code,
                f"{qg.facts(layer).module_type.__name__} -> ReLU -> {qg.facts(bn).module_type.__name__} "
                f"(`{qg.full(qg.facts(layer).module)}`, `{qg.full(qg.facts(relu).module)}`, "
                f"`{qg.full(qg.facts(bn).module)}`): torch has no fuser for this order, the batch norm stays a "
                "separate int8 op; use Conv -> BN -> ReLU (retrain) or keep it float",
                bn,
            )


def _is_batch_norm(facts) -> bool:
    import torch.nn as nn

    return (
        facts.op == "call_module"
        and bool(facts.module_type)
        and issubclass(facts.module_type, nn.modules.batchnorm._BatchNorm)
    )


def conv_relu_bn(qg: QGraph) -> list[tuple[str, str, str]]:
    """(bn, relu, conv-or-linear) node names of each Conv/Linear -> ReLU -> BN."""
    import torch.nn as nn

    found = []
    for name, facts in qg.nodes("call_module"):
        if not _is_batch_norm(facts):
            continue
        relu = _single_module_input(qg, name)
        if relu is None or qg.facts(relu).module_type is not nn.ReLU:
            continue
        layer = _single_module_input(qg, relu)
        if layer and issubclass(qg.facts(layer).module_type, (nn.modules.conv._ConvNd, nn.Linear)):
            found.append((name, relu, layer))
    return found


class StandaloneBatchnorm(Rule):
    """## What it does
    Reports a batch norm inside the quantized region that no conv or linear precedes (its input is a
    concatenation, an addition, a pooling, the model's input, ...), so no fuser can fold it. Points
    at the line that calls it.

    ## Why is this bad?
    Folded into a conv, a batch norm costs nothing. Standalone, it becomes a quantized `BatchNorm2d`:
    one more int8 op with its own requantization (slower, and each requantization adds error).
    DenseNet's pre-activation blocks (BN -> ReLU -> Conv on concatenated features) are the usual case.

    ## Use instead
    Fold it by hand into the conv that follows (when nothing else reads its input), or keep it in
    float with `qconfig = None` and stubs around it.

    ## Fix safety
    No automatic fix.

    ## References
    - [`torch.ao.nn.quantized.BatchNorm2d`](https://pytorch.org/docs/stable/generated/torch.ao.nn.quantized.BatchNorm2d.html)
    """

    code = "QL206"
    name = "standalone-batchnorm"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "a batch norm with no conv or linear before it"
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
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 3, padding=1)
        self.cat = nn.quantized.FloatFunctional()
        self.norm = nn.BatchNorm2d(8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.cat.cat([self.left(x), self.right(x)], dim=1)
        return self.dequant(self.norm(x))
""",
            lines=(19,),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.norm(self.conv(self.quant(x))))
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        import torch.nn as nn

        from qlint.model.analysis import Kind

        after_relu = {bn for bn, _, _ in conv_relu_bn(qg)}  # QL204's
        for name, facts in qg.nodes("call_module"):
            if not _is_batch_norm(facts) or name in after_relu or not facts.swapped:
                continue
            if Kind.QUANT not in facts.input_kinds:
                continue
            inputs = qg.fx_nodes[name].all_input_nodes
            source = qg.facts(inputs[0].name) if len(inputs) == 1 else None
            if (
                source is not None
                and source.op == "call_module"
                and source.module_type
                and issubclass(source.module_type, (nn.modules.conv._ConvNd, nn.Linear))
            ):
                continue
            yield qg.diagnostic(
                self.code,
                f"`{qg.full(facts.module)}` ({facts.module_type.__name__}) has no conv or linear before it: no fuser "
                "folds it, it runs as a separate int8 op; fold it by hand or keep it float",
                name,
            )
