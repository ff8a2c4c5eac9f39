"""QL103 / QL104 / QL105: ops that receive a quantized tensor, read off the tensor-kind pass, and the
FloatFunctional fix.

The fix: QL103 / QL104: tensor arithmetic and ``torch.cat`` on quantized tensors -> one FloatFunctional per site.

``out += identity`` -> ``out = self.skip_add.add(out, identity)``; ``a * b`` -> ``self.mul.mul(a, b)``;
``x + 1.0`` -> ``self.add_scalar.add_scalar(x, 1.0)``; ``torch.cat(xs, 1)`` -> ``self.cat.cat(xs, 1)``;
an add immediately followed by a ReLU of its result -> ``self.skip_add_relu.add_relu(a, b)``.
In float, a FloatFunctional computes exactly the op it replaces and holds no state: the fix is safe
(unsafe only for ``x += y`` whose in-place update someone else could see: the model's input, a parameter or
buffer, or a tensor read again after it; ``_mutation_seen``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, shared
from qlint.rules.float_islands import FloatIsland, first_arg_only, float_island_fixes
from qlint.rules.quantized_views import VIEW_METHODS
from qlint.source.edit import attribute_assignments, free_name, methods, parameters
from qlint.source.idioms import FLOAT_FUNCTIONAL, declare, spelled, stub_names
from qlint.source.index import self_attributes

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph


@dataclass(frozen=True)
class QuantizedOp:
    """What QL103/QL104/QL105 hand their fix: the op as shown (``\`+=\```, ``torch.cat``, ``.add()``)."""

    op: str
    float_operands: tuple[int, ...] = ()  # QL103: operands (0: left, 1: right) that are float tensors
    scalar_operands: tuple[int, ...] = ()  # QL103: operands that are Python numbers (`self.scale`)
    # QL103 on `x += y`: whether the graph shows someone else seeing the in-place update (None: not known)
    mutation_seen: bool | None = None


class FloatOpOnQuantized(Rule):
    """## What it does
    Reports arithmetic that has no QuantizedCPU kernel applied to a quantized tensor between
    the stubs: the operators `+ - * / += -= *= @`, and `torch.add`, `torch.sub`, `torch.mul`,
    `torch.div`, `torch.matmul`, `torch.bmm` and their method forms. Which calls have a
    quantized kernel is probed on the installed torch, not taken from a list. Points at the
    line of the operator.

    ## Why is this bad?
    Eager `convert` only swaps modules; a Python operator stays a float op, and float
    kernels do not accept quantized tensors. Calibration runs fine (everything is still
    float then), and the first forward pass of the converted model fails:

    ```text
    NotImplementedError: Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.
    ```

    (`aten::add.Tensor`, `aten::add_.Tensor`, `aten::mul.out`, ... depending on the operator.)
    This is why torchvision's plain `resnet18` cannot be quantized: its `out += identity`.
    Even where it would run, the result needs its own scale and zero point, which only an
    observed `FloatFunctional` provides.

    ## Use instead
    `FloatFunctional` also has `mul`, `add_scalar`, `mul_scalar`, `add_relu` and `cat`. Use one
    instance per call site (see QL202).

    ## Fix safety
    Safe when a `FloatFunctional` method exists for the op (`+`, `+=`, `*`, `@`, `torch.add`,
    `torch.mul`, `torch.matmul` and their method forms, an add followed by a ReLU as `add_relu`):
    the fix adds one attribute per call site in `__init__` and rewrites the call. In float,
    `FloatFunctional.add(a, b)` is `a + b` and holds no state. An operand that is a float tensor (a
    parameter: `x * self.gamma`) goes through a QuantStub of its own, since the converted
    FloatFunctional takes two quantized tensors; before `convert` the stub is the identity. Unsafe for `x += y`
    when another part of the model could see the in-place update: `x` is (a view of) the model's
    input, a parameter or buffer, or a tensor that is read again after the `+=` (`shortcut = x`
    before it, read after). `x` rebound to a new tensor first (`x = self.bn2(self.conv2(x))`, as in
    every residual block) is safe. Other ops (`/`, `-`, `torch.bmm`) get
    no fix: keep them in a float island by hand (`DeQuantStub` before, `QuantStub` after). No fix
    in a subclass of `nn.Sequential`/`ModuleList`/`ModuleDict`: its forward runs its children in
    turn, and would call the new attribute as a layer.

    ## References
    - [`torch.ao.nn.quantized.FloatFunctional`](https://pytorch.org/docs/stable/generated/torch.ao.nn.quantized.FloatFunctional.html)
    - [pytorch/pytorch#98596](https://github.com/pytorch/pytorch/issues/98596) (`Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend`)
    - [pytorch/pytorch#35595](https://github.com/pytorch/pytorch/issues/35595) (quantizing torchvision's resnet: the residual add)
    - seed 004: a tutorial that warns the plain torchvision resnet18 "will give an error"
    """

    code = "QL103"
    name = "float-op-on-quantized"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "arithmetic with no quantized kernel on a quantized tensor"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (`FloatFunctional`); unsafe for `x += y` when the update is seen elsewhere"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.conv1(x)
        y = y + self.conv2(y)  # float add on quantized tensors
        return self.dequant(y)
""",
            lines=(16,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.skip_add = nn.quantized.FloatFunctional()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.conv1(x)
        y = self.skip_add.add(y, self.conv2(y))  # float add on quantized tensors
        return self.dequant(y)
""",
        ),
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        shortcut = x
        x = self.conv(x)  # x is a new tensor now: the caller never sees the `+=`
        x += shortcut
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Residual()
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.block(self.stem(self.quant(x))))
""",
            lines=(13,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.skip_add = nn.quantized.FloatFunctional()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        shortcut = x
        x = self.conv(x)  # x is a new tensor now: the caller never sees the `+=`
        x = self.skip_add.add(x, shortcut)
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Residual()
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.block(self.stem(self.quant(x))))
""",
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.skip_add = nn.quantized.FloatFunctional()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.conv1(x)
        y = self.skip_add.add(y, self.conv2(y))
        return self.dequant(y)
""",
        ),
    )

    fix_order = 1
    fix_edits_class = True

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return (d for d in shared(qg, quantized_op_findings) if d.code == self.code)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return functional_fixes(ctx, items)


class SilentQparamsCat(Rule):
    """## What it does
    Reports `torch.cat` applied to quantized tensors between the stubs. Points at the line of the call.

    ## Why is this bad?
    It runs, with no error and no warning: `torch.cat` on quantized inputs requantizes all of
    them to the *first* input's scale and zero point. Any input with a wider range is clipped,
    and no observer ever saw the concatenated tensor. After QAT it is worse: no fake-quant
    modelled this op during training, so the converted model no longer matches the trained
    one. `FloatFunctional.cat` has its own observer, so its output gets its own qparams.

    ## Fix safety
    Safe: the fix adds a `FloatFunctional` attribute in `__init__` and rewrites the call to
    its `cat`. In float, `FloatFunctional.cat` is `torch.cat`. No fix in a subclass of
    `nn.Sequential`/`ModuleList`/`ModuleDict` (timm's DenseNet `DenseBlock`): its forward runs its
    children in turn, and would call the new attribute as a layer.

    ## References
    - [pytorch/pytorch#46604](https://github.com/pytorch/pytorch/issues/46604) (`torch.cat` on quantized tensors uses the first input's qparams)
    - [pytorch/pytorch#57418](https://github.com/pytorch/pytorch/issues/57418) (quantized `cat` much slower than float: give the inputs shared qparams)
    - [`torch.ao.nn.quantized.FloatFunctional`](https://pytorch.org/docs/stable/generated/torch.ao.nn.quantized.FloatFunctional.html)
    """

    code = "QL104"
    name = "silent-qparams-cat"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "torch.cat on quantized tensors takes the first input's qparams"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (`FloatFunctional.cat`)"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 5, padding=2)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = torch.cat([self.left(x), self.right(x)], dim=1)  # takes left's scale
        return self.dequant(y)
""",
            lines=(16,),
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.cat = torch.ao.nn.quantized.FloatFunctional()
        self.quant = QuantStub()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 5, padding=2)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.cat.cat([self.left(x), self.right(x)], dim=1)  # takes left's scale
        return self.dequant(y)
""",
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 5, padding=2)
        self.cat = nn.quantized.FloatFunctional()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.cat.cat([self.left(x), self.right(x)], dim=1)
        return self.dequant(y)
""",
        ),
    )

    fix_order = 1
    fix_edits_class = True

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return (d for d in shared(qg, quantized_op_findings) if d.code == self.code)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return functional_fixes(ctx, items)


class UnsupportedOpInQuantizedRegion(Rule):
    """## What it does
    Reports a module or function with no quantized kernel that receives a quantized tensor
    between the stubs: e.g. `nn.SiLU`, `nn.Mish`, `nn.Softmax`, `F.silu`, `F.softmax`, `F.hardswish`,
    `F.layer_norm`, `x.exp()`, or a module left in float with `qconfig = None`.
    Support is decided from the installed torch (its quantized module mappings, and a probe
    of the op on a tiny quantized tensor), not from a hand-written list. Points at the line
    that calls it.

    Also reported: an op whose quantized kernel exists but refuses the tensor it gets in the
    converted model. Quantized convolutions return channels-last tensors (their layout is asked
    of torch by converting a copy of the module), so the probe runs the op at the model's own
    shape on a quantized tensor of that layout, and a float control run at the same shape tells
    a refusal from a shape qlint got wrong. torchvision's `s3d` ends with
    `torch.mean(x, dim=(2, 3, 4))` after a 1x1x1 conv: `RuntimeError: required rank 5 tensor to
    use channels_last_3d format`.

    ## Why is this bad?
    Eager `convert` leaves such a module or function in float, and the float kernel refuses
    the quantized tensor it now receives. Calibration runs fine; the first forward pass of
    the converted model fails:

    ```text
    NotImplementedError: Could not run 'aten::silu.out' with arguments from the 'QuantizedCPU' backend.
    ```

    (`aten::_softmax.out`, `aten::hardswish`, `aten::mish.out`, `aten::exp.out`, ... for the other ops;
    a `Conv2d` kept in float with `qconfig = None` fails with `Input type (c10::quint8) and bias type
    (float) should be the same`.)

    ## Use instead
    Where a quantized equivalent exists, using it is faster than a float island (e.g.
    `nn.Hardswish` instead of `F.hardswish`, `nn.ReLU` instead of `nn.SiLU` if you retrain).
    FX and PT2E quantization insert these dequantize/quantize pairs themselves.

    ## Fix safety
    Safe where the op's first argument is its only quantized input and the call is in a class of
    the file: the fix wraps it in a float island, a `DeQuantStub` before and a new `QuantStub` after
    it (new attributes in `__init__`). Before `convert` the stubs are the identity, so float outputs
    do not change; after it the op computes in float as it did before, and only the
    re-quantization is added. Other sites (several quantized inputs, a module run inside
    `nn.Sequential`, library code) are left to do by hand. A `torch.cat` of float and quantized
    tensors (a class token beside quantized patches) gets a QuantStub on each float item and a
    `FloatFunctional` `cat` instead (safe: both are the identity / `torch.cat` before `convert`).

    ## References
    - [pytorch/pytorch#73507](https://github.com/pytorch/pytorch/issues/73507) (`Could not run 'aten::silu.out' with arguments from the 'QuantizedCPU' backend`)
    - [pytorch/pytorch#40759](https://github.com/pytorch/pytorch/issues/40759) (softmax has no quantized kernel in eager mode)
    - [facebookresearch/d2go#87](https://github.com/facebookresearch/d2go/issues/87) (a module left in float between the stubs)
    """

    code = "QL105"
    name = "unsupported-op-in-quantized-region"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "an op with no quantized kernel gets a quantized tensor"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (a float island: `DeQuantStub` before, `QuantStub` after)"
    fix_order = 2
    fix_edits_class = True
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.act = nn.SiLU()  # no quantized SiLU
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.act(self.conv1(x))
        return self.dequant(self.conv2(x))
""",
            lines=(16,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.dequant_act = DeQuantStub()
        self.quant_act = QuantStub()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.act = nn.SiLU()  # no quantized SiLU
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.quant_act(self.act(self.dequant_act(self.conv1(x))))
        return self.dequant(self.conv2(x))
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
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.dequant_act = DeQuantStub()
        self.act = nn.SiLU()
        self.quant_act = QuantStub()
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.conv1(x)
        x = self.quant_act(self.act(self.dequant_act(x)))  # SiLU runs in float
        return self.dequant(self.conv2(x))
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return (d for d in shared(qg, quantized_op_findings) if d.code == self.code)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        joins = [(i, d) for i, d in items if isinstance(d.data, QuantizedOp)]  # a cat of float and quantized
        return {**float_island_fixes(ctx, [(i, d) for i, d in items if not isinstance(d.data, QuantizedOp)]),
                **functional_fixes(ctx, joins)}  # fmt: skip


def _augmented(text: str) -> str | None:
    """``+=`` for ``out += identity`` (fx records augmented assignment as the plain operator)."""
    match = re.match(r"^[\w.\[\]]+\s*([-+*/@]|//)=", text)
    return f"`{match.group(1)}=`" if match else None


def _float_operands(qg: QGraph, name: str) -> tuple[int, ...]:
    """The positions of the op's two operands that are float tensors (a parameter, `torch.ones(...)`): a
    FloatFunctional takes two quantized tensors, so its fix quantizes those with a QuantStub."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    args = qg.fx_nodes[name].args[:2]
    return tuple(i for i, a in enumerate(args) if isinstance(a, fx.Node) and qg.facts(a.name).kind == Kind.FLOAT)


def _float_items(qg: QGraph, name: str) -> tuple[int, ...]:
    """The positions of float tensors in the sequence a `torch.cat` joins (beit's class token, a parameter, beside
    the quantized patches): `cat` fails on a mix, so the fix quantizes them with a QuantStub."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    args = qg.fx_nodes[name].args
    items = args[0] if args and isinstance(args[0], (tuple, list)) else ()
    return tuple(i for i, a in enumerate(items) if isinstance(a, fx.Node) and qg.facts(a.name).kind == Kind.FLOAT)


_ALIAS_METHODS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "transpose", "permute", "contiguous",
    "squeeze", "unsqueeze", "expand", "expand_as", "narrow", "t", "as_strided", "detach", "to", "type", "float",
    "__getitem__", "chunk", "split", "unbind", "select", "movedim", "swapaxes", "diagonal", "unfold", "real",
})  # fmt: skip
_ALIAS_FUNCTIONS = frozenset({
    "getitem", "flatten", "reshape", "transpose", "permute", "squeeze", "unsqueeze", "narrow", "chunk", "split",
    "unbind", "select", "movedim", "swapaxes", "t", "dropout", "identity",
})  # fmt: skip


def _passes_alias(qg: QGraph, node) -> bool:
    """``node``'s result may be (a view of) its first argument: views, in-place ops, ``nn.Identity``, dropout
    in eval, stubs before ``convert``, ``inplace=True`` layers, and any leaf module torch did not write."""
    import torch.nn as nn

    if node.op == "call_module":
        module = qg.gm.get_submodule(node.target)
        fresh = type(module).__module__.startswith("torch.nn.modules") and not isinstance(
            module, (nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.dropout._DropoutNd)
        )
        return not fresh or bool(getattr(module, "inplace", False))
    if node.op == "call_method":
        return node.target in _ALIAS_METHODS or node.target.endswith("_")
    if node.op == "call_function":
        leaf = getattr(node.target, "__name__", "")
        return leaf in _ALIAS_FUNCTIONS or leaf.endswith("_") or bool(node.kwargs.get("inplace"))
    return False


def _mutation_seen(qg: QGraph, name: str, order: dict) -> bool:
    """Whether an in-place op's update (``x += y``, node ``name``) is visible to anything but its own result:
    the tensor it updates is (an alias of) the model's input or a parameter or buffer, or some alias of it is
    read after the op. Then rewriting it as ``x = ff.add(x, y)`` could change what the model computes. ``order``:
    each fx node's position in the graph."""
    import torch.fx as fx

    op = qg.fx_nodes[name]
    origin = op.args[0] if op.args else None
    while isinstance(origin, fx.Node) and origin.op != "placeholder" and _passes_alias(qg, origin):
        origin = origin.args[0] if origin.args and isinstance(origin.args[0], fx.Node) else None
    if not isinstance(origin, fx.Node) or origin.op in ("placeholder", "get_attr"):
        return True
    aliases, todo = set(), [origin]
    while todo:  # every alias of the updated tensor but the op's own result, which is meant to see it
        node = todo.pop()
        if node in aliases or node is op:
            continue
        aliases.add(node)
        todo += [u for u in node.users if u.args and u.args[0] is node and _passes_alias(qg, u)]
    return any(order[u] > order[op] for a in aliases for u in a.users if u not in aliases and u is not op)


def _mutation_seen_at_site(qg: QGraph, name: str) -> bool | None:
    """``_mutation_seen`` for an augmented assignment (``x += y``, which fx records as ``x + y``) and every node
    traced from the same place (the instances of one block share their ``+=``, and the fix rewrites it for all
    of them); None for any other op."""
    if _augmented(qg.source_text(name)) is None:
        return None
    op = qg.fx_nodes[name]
    order = {n: i for i, n in enumerate(qg.gm.graph.nodes)}
    frames = op.meta.get("qlint_frames", ())
    if not frames:
        return _mutation_seen(qg, name, order)
    here = (frames[0].path, frames[0].line, frames[0].col)
    same = [n for n, node in qg.fx_nodes.items() if node.op == op.op and node.target == op.target
            and (f := node.meta.get("qlint_frames", ())) and (f[0].path, f[0].line, f[0].col) == here]  # fmt: skip
    return any(_mutation_seen(qg, n, order) for n in same or [name])


def _scalar_operands(qg: QGraph, name: str) -> tuple[int, ...]:
    """The positions of the op's two operands that are Python numbers when traced (`x * self.scale`): the fix
    uses the FloatFunctional's `*_scalar` method for them, as for a number written in the code."""
    args = qg.fx_nodes[name].args[:2]
    return tuple(i for i, a in enumerate(args) if isinstance(a, (int, float)) and not isinstance(a, bool))


def _name(facts) -> str:
    return facts.module_type.__name__ if facts.module_type else str(facts.target)


def quantized_op_findings(qg: QGraph) -> list[Diagnostic]:
    """QL103/QL104/QL105 in one walk: ops that receive a quantized tensor, by what torch supports."""
    return list(_walk(qg))


def _walk(qg: QGraph) -> Iterator[Diagnostic]:
    from qlint.model import support
    from qlint.model.analysis import Kind

    for name, facts in qg.nodes():
        if Kind.QUANT not in facts.input_kinds:
            continue
        if facts.quantized_support is None and facts.probe_error and not facts.swapped:
            what = (
                f"`{qg.full(facts.module)}` ({_name(facts)})"
                if facts.op == "call_module"
                else (_augmented(qg.source_text(name)) or support.describe_target(facts.op, facts.target))
            )
            yield qg.diagnostic(
                "QL105",
                f"could not tell whether {what} has a quantized kernel: probing it on a quantized tensor failed "
                f"({facts.probe_error}); not checked",
                name,
                severity=Severity.INFO,
            )
        elif facts.op == "call_module" and not facts.swapped and facts.quantized_support is False:
            island = "" if qg.quantized_by_qconfig(facts.module) else " (its qconfig is None, so it stays float)"
            problem = (
                f"fails on the quantized tensor it receives ({facts.probe_error[len(support.REFUSED) :]})"
                if support.refused(facts.probe_error)
                else f"has no quantized kernel{island} but receives a quantized tensor"
            )
            yield qg.diagnostic(
                "QL105",
                f"`{qg.full(facts.module)}` ({_name(facts)}) {problem}: wrap it in a float island "
                "(DeQuantStub before, QuantStub after)",
                name,
                data=FloatIsland(f"`{qg.full(facts.module)}`", first_arg_only(qg, name)),
            )
        elif facts.op in ("call_function", "call_method") and facts.module is None:
            what = _augmented(qg.source_text(name)) or support.describe_target(facts.op, facts.target)
            if facts.quantized_support is False and support.is_arithmetic(facts.op, facts.target):
                yield qg.diagnostic(
                    "QL103",
                    f"{what} on a quantized tensor has no quantized kernel (QuantizedCPU): "
                    "use a FloatFunctional declared in __init__ (e.g. `self.skip_add.add(a, b)`)",
                    name,
                    data=QuantizedOp(
                        what, _float_operands(qg, name), _scalar_operands(qg, name), _mutation_seen_at_site(qg, name)
                    ),
                )
            elif (
                facts.quantized_support is False
                and (joined := _float_items(qg, name))
                and facts.target in support.CAT_FUNCTIONS
            ):
                yield qg.diagnostic(
                    "QL105",
                    f"{what} joins float and quantized tensors, which it cannot: quantize the float ones "
                    "(a QuantStub each) and use `FloatFunctional().cat` declared in __init__",
                    name,
                    data=QuantizedOp(what, joined),
                )
            elif facts.quantized_support is False and facts.op == "call_method" and facts.target in VIEW_METHODS:
                continue  # a `.view` the channels-last strides refuse: QL108
            elif facts.quantized_support is False:
                problem = (
                    f"fails on the quantized tensor it receives ({facts.probe_error[len(support.REFUSED) :]})"
                    if support.refused(facts.probe_error)
                    else "has no quantized kernel but receives a quantized tensor"
                )
                yield qg.diagnostic(
                    "QL105",
                    f"{what} {problem}: dequantize before it and quantize after (a float island)",
                    name,
                    data=FloatIsland(what, first_arg_only(qg, name), method=facts.op == "call_method"),
                )
            elif facts.quantized_support and facts.target in support.CAT_FUNCTIONS:
                yield qg.diagnostic(
                    "QL104",
                    f"{what} on quantized tensors runs, but the result silently takes the first input's "
                    "scale and zero point: use `FloatFunctional().cat` declared in __init__",
                    name,
                    data=QuantizedOp(what, _float_items(qg, name)),
                )


_AUG = {"`+=`": cst.AddAssign, "`*=`": cst.MultiplyAssign, "`@=`": cst.MatrixMultiplyAssign}
_BIN = {"`+`": cst.Add, "`*`": cst.Multiply, "`@`": cst.MatrixMultiply}
_METHOD = {cst.Add: "add", cst.AddAssign: "add", cst.Multiply: "mul", cst.MultiplyAssign: "mul",
           cst.MatrixMultiply: "matmul", cst.MatrixMultiplyAssign: "matmul"}  # fmt: skip
_FUNCTIONS = {"add": "add", "mul": "mul", "multiply": "mul", "matmul": "matmul", "cat": "cat",
              "concat": "cat", "concatenate": "cat"}  # fmt: skip
_NAMES = {"add": "skip_add", "add_relu": "skip_add_relu", "add_scalar": "add_scalar", "mul": "mul",
          "mul_scalar": "mul_scalar", "cat": "cat", "matmul": "matmul"}  # fmt: skip
_RELU_CLASSES = {"ReLU", "nn.ReLU", "torch.nn.ReLU"}
_RELU_FUNCTIONS = {"F.relu", "torch.relu", "torch.nn.functional.relu", "nn.functional.relu"}


@dataclass
class _Site:
    index: int
    diag: Diagnostic
    cls: cst.ClassDef
    method: str  # FloatFunctional method
    args: tuple[str, str] | None  # operands (code), None: keep the call's own arguments
    replace: cst.CSTNode  # node replaced (or whose func is replaced)
    func_only: bool = False
    assign_to: str | None = None  # "t = ..." (augmented assignment / add-relu)
    until: cst.CSTNode | None = None  # add-relu: the ReLU statement, replaced too
    unsafe: bool = False
    float_operands: tuple[int, ...] = ()  # positions in ``args`` of float tensors (quantized by a QuantStub)
    scalar_operands: tuple[int, ...] = ()  # positions in ``args`` of Python numbers (traced constants)


def functional_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    sites = [s for s in (_site(ctx, i, d) for i, d in items) if s is not None]
    out: dict[int, Fix] = {}
    by_class: dict[int, list[_Site]] = {}
    for site in sites:
        by_class.setdefault(id(site.cls), []).append(site)
    ff, import_edits = spelled(ctx, FLOAT_FUNCTIONAL)
    for group in by_class.values():
        taken = self_attributes(group[0].cls)
        group.sort(key=lambda s: ctx.file.start(s.replace))
        for site in group:
            name = free_name(_NAMES[site.method], taken)
            lines, stub_edits = [f"self.{name} = {ff}()"], []
            items = _cat_items(site)
            if site.float_operands and items is not None:
                quant, _, stub_edits = stub_names(ctx, need_quant=True, need_dequant=False)
                for i in site.float_operands:
                    stub = free_name(f"quant_{name}", taken)
                    lines.append(f"self.{stub} = {quant}()")
                    stub_edits.append(ctx.file.replace(items[i], f"self.{stub}({ctx.file.code(items[i])})"))
            if site.float_operands and site.args is not None:
                quant, _, stub_edits = stub_names(ctx, need_quant=True, need_dequant=False)
                args = list(site.args)
                for i in site.float_operands:
                    stub = free_name(f"quant_{name}", taken)
                    lines.append(f"self.{stub} = {quant}()")
                    args[i] = f"self.{stub}({args[i]})"
                site.args = (args[0], args[1])
            declaration = declare(ctx, site.cls, lines)
            if declaration is None:
                continue
            call = f"self.{name}.{site.method}"
            edits = [declaration, *import_edits, *stub_edits, _replacement(ctx, site, call)]
            what = f"`self.{name}.{site.method}(...)`"
            out[site.index] = Fix(
                Applicability.UNSAFE if site.unsafe else Applicability.SAFE,
                f"Use a FloatFunctional: {what} (declared in `__init__`)",
                tuple(edits),
            )
    return out


def _cat_items(site: _Site) -> list[cst.BaseExpression] | None:
    """The elements of the literal tuple/list a ``torch.cat`` site joins (``torch.cat((a, b), dim=1)``), or None."""
    if site.method != "cat" or not isinstance(site.replace, cst.Call) or not site.replace.args:
        return None
    seq = site.replace.args[0].value
    if not isinstance(seq, (cst.Tuple, cst.List)) or any(isinstance(e, cst.StarredElement) for e in seq.elements):
        return None
    items = [e.value for e in seq.elements]
    return items if all(i < len(items) for i in site.float_operands) else None


def _replacement(ctx: FileContext, site: _Site, call: str) -> Edit:
    if site.func_only:
        return ctx.file.replace(site.replace.func, call)
    text = f"{call}({site.args[0]}, {site.args[1]})"
    if site.assign_to is not None:
        text = f"{site.assign_to} = {text}"
    if site.until is not None:
        return Edit(text, ctx.file.start(site.replace), ctx.file.end(site.until))
    return ctx.file.replace(site.replace, text)


def _site(ctx: FileContext, index: int, diag: Diagnostic) -> _Site | None:
    op = diag.data.op if isinstance(diag.data, QuantizedOp) else ""
    file = ctx.file
    site: _Site | None = None
    if op in _AUG:
        for node in file.nodes_at(diag.span, (cst.AugAssign,)):
            if isinstance(node.operator, _AUG[op]):
                method = _METHOD[type(node.operator)]
                target = file.code(node.target)
                site = _Site(index, diag, None, method, (target, file.code(node.value)), node, assign_to=target)
                seen = diag.data.mutation_seen if isinstance(diag.data, QuantizedOp) else None
                fn = file.enclosing_function(node)
                lexical = isinstance(node.target, cst.Name) and fn is not None and target in parameters(fn)
                site.unsafe = lexical if seen is None else seen
                break
    elif op in _BIN:
        for node in file.nodes_at(diag.span, (cst.BinaryOperation,)):
            if isinstance(node.operator, _BIN[op]):
                site = _Site(
                    index,
                    diag,
                    None,
                    _METHOD[type(node.operator)],
                    (file.code(node.left), file.code(node.right)),
                    node,
                )
                break
    elif op in (".add()", ".mul()", ".matmul()"):
        for node in file.nodes_at(diag.span, (cst.Call,)):
            if isinstance(node.func, cst.Attribute) and f".{node.func.attr.value}()" == op and _plain_args(node, 1):
                site = _Site(
                    index,
                    diag,
                    None,
                    op[1:-2],
                    (file.code(node.func.value), file.code(node.args[0].value)),
                    node,
                )
                break
    elif op.startswith("torch."):
        leaf = op.rsplit(".", 1)[-1]
        for node in file.nodes_at(diag.span, (cst.Call,)):
            name = get_full_name_for_node(node.func) or ""
            if leaf in _FUNCTIONS and name.rsplit(".", 1)[-1] == leaf and _fixable_call(node, _FUNCTIONS[leaf]):
                method = _FUNCTIONS[leaf]
                if method == "cat":
                    site = _Site(index, diag, None, "cat", None, node, func_only=True)
                else:
                    site = _Site(
                        index,
                        diag,
                        None,
                        method,
                        (file.code(node.args[0].value), file.code(node.args[1].value)),
                        node,
                    )
                break
    if site is None:
        return None
    site.cls = file.enclosing_class(site.replace)
    if site.cls is None or file.enclosing_function(site.replace) is None or "__init__" not in methods(site.cls):
        return None
    if _iterates_its_children(ctx, diag, site.cls):
        return None
    if isinstance(diag.data, QuantizedOp) and (site.args is not None or site.method == "cat"):
        site.float_operands, site.scalar_operands = diag.data.float_operands, diag.data.scalar_operands
    if site.method in ("add", "mul") and site.args is not None:
        _scalar(ctx, site)
        if site.method == "add":
            _add_relu(ctx, site)
    return site


CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _iterates_its_children(ctx: FileContext, diag: Diagnostic, cls: cst.ClassDef) -> bool:
    """A subclass of ``nn.Sequential``/``ModuleList``/``ModuleDict`` (timm's DenseNet ``DenseBlock``): its forward
    runs its children in turn, so a FloatFunctional child would be called as a layer; no fix."""
    import torch.nn as nn

    if any((get_full_name_for_node(base.value) or "").rsplit(".", 1)[-1] in CONTAINERS for base in cls.bases):
        return True
    info = ctx.model_for(diag)
    kinds = {type(m) for m in info.model.modules()} if info is not None else set()
    return any(issubclass(k, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) and ctx.class_node(k) is cls for k in kinds)


def _plain_args(call: cst.Call, count: int) -> bool:
    return len(call.args) == count and all(a.keyword is None and not a.star for a in call.args)


def _fixable_call(call: cst.Call, method: str) -> bool:
    if method == "cat":
        return (
            bool(call.args)
            and all(a.keyword is None or a.keyword.value == "dim" for a in call.args)
            and not any(a.star for a in call.args)
        )
    return _plain_args(call, 2)


def _is_number(code: str) -> bool:
    try:
        value = float(code.replace("_", ""))
    except ValueError:
        return False
    return value == value


def _scalar(ctx: FileContext, site: _Site) -> None:
    """``x + 1.0`` / ``2 * x``: the scalar forms (the tensor goes first)."""
    left, right = site.args
    if _is_number(right) or 1 in site.scalar_operands:
        site.method = f"{site.method}_scalar"
    elif (_is_number(left) or 0 in site.scalar_operands) and site.assign_to is None:
        site.method, site.args = f"{site.method}_scalar", (right, left)
        site.float_operands = tuple(1 - i for i in site.float_operands)


def _add_relu(ctx: FileContext, site: _Site) -> None:
    """``t = a + b`` (or ``t += b``) directly followed by ``t = relu(t)`` -> one ``add_relu``."""
    file = ctx.file
    statement = file.statement_of(site.replace)
    if statement is None or len(statement.body) != 1:
        return
    small = statement.body[0]
    if site.assign_to is not None:
        target = site.assign_to
    elif isinstance(small, cst.Assign) and small.value is site.replace and len(small.targets) == 1:
        target = file.code(small.targets[0].target)
    else:
        return
    block = file.parents.get(statement)
    body = list(getattr(block, "body", ()))
    if statement not in body or body.index(statement) + 1 >= len(body):
        return
    nxt = body[body.index(statement) + 1]
    if (
        not isinstance(nxt, cst.SimpleStatementLine)
        or len(nxt.body) != 1
        or any(line.comment is not None for line in nxt.leading_lines)
    ):
        return
    assign = nxt.body[0]
    if not (
        isinstance(assign, cst.Assign) and len(assign.targets) == 1 and file.code(assign.targets[0].target) == target
    ):
        return
    call = assign.value
    if not (isinstance(call, cst.Call) and call.args and file.code(call.args[0].value) == target):
        return
    if not all(a.keyword is not None and a.keyword.value == "inplace" for a in call.args[1:]):
        return
    name = get_full_name_for_node(call.func) or ""
    relu = name in _RELU_FUNCTIONS
    if name.startswith("self.") and name.count(".") == 1:
        init = methods(site.cls).get("__init__")
        declared = attribute_assignments(init, name[5:]) if init is not None else []
        relu = len(declared) == 1 and _constructs_relu(declared[0])
    if relu:
        site.method, site.until = "add_relu", nxt
        site.assign_to = target
        site.replace = small if site.replace is not small and isinstance(small, cst.AugAssign) else site.replace
        if isinstance(small, cst.Assign):
            site.replace = small


def _constructs_relu(statement: cst.SimpleStatementLine) -> bool:
    value = statement.body[0].value
    return isinstance(value, cst.Call) and (get_full_name_for_node(value.func) or "") in _RELU_CLASSES
