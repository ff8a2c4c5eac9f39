"""QL202: one module instance called at several sites (a multiplicity query on the QGraph), and its fix.

The fix: QL202: a module called at several sites -> one instance per call site.

``self.relu = nn.ReLU(inplace=True)`` called twice becomes ``self.relu`` and ``self.relu2`` (same
constructor arguments, declared right after the original), the second call site using ``self.relu2``.
Safe when the module holds no parameters or buffers (the state_dict keys do not change);
unsafe otherwise: the new instance has its own fresh weights, and checkpoints lack its keys.

A module called inside a loop over ``self.blocks`` (``for blk in self.blocks: x = self.relu(blk(x))``)
becomes a ``ModuleList`` of copies as long as ``self.blocks``, declared after it and indexed with the
loop's counter (``enumerate`` is added when the loop has none); the old attribute is dropped when that
call was its only use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid
from qlint.source.edit import attribute_assignments, free_name, methods, numbered
from qlint.source.idioms import spelled
from qlint.source.index import self_attributes

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph


STATELESS = {
    "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "SiLU", "GELU", "Identity", "LeakyReLU",
    "ELU", "Hardtanh", "Softmax", "Dropout", "Dropout2d", "Flatten", "Upsample", "MaxPool2d", "MaxPool1d",
    "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveAvgPool1d", "QuantStub", "DeQuantStub", "FloatFunctional",
}  # fmt: skip


class ReusedModule(Rule):
    """## What it does
    Reports one module instance called at several places in `forward`, e.g. a single
    `self.relu` applied after two different convolutions, or one `FloatFunctional` used for
    three adds. Points at every call site after the first.

    ## Why is this bad?
    In eager (and FX) quantization, observers and quantization parameters belong to a module
    *instance*. A reused module gets one observer that sees the values of every call site, and
    after `convert` one scale and zero point serve all of them: ranges that differ get
    clipped or lose resolution, silently. A reused module also cannot be fused with more than
    one of its producers: fusing `conv1` with the shared `relu` replaces `self.relu` by an
    `Identity` and silently drops the activation after `conv2`. Nothing raises; the model just
    gets less accurate.

    ## Fix safety
    Safe: the fix adds one attribute per extra call site (a copy of the module's
    construction) and renames the calls. The float model computes the same thing; only the
    observers and quantization parameters become separate. Take care with a reused module
    that has parameters (a shared `Linear`, tied weights): a copy unties the weights, so the fix
    is unsafe for such a module (new weights, new state_dict keys).

    A module called inside a loop over a `ModuleList` (`for blk in self.blocks:
    x = self.relu(blk(x))`) runs once per iteration: the fix declares a `ModuleList` of copies
    as long as the loop's sequence (`self.relus`, after `self.blocks` in `__init__`) and calls
    `self.relus[i]`, counting the loop with `enumerate` when it does not count already
    (`enumerate(self.blocks)` and `range(len(self.blocks))` loops are used as they are). The old
    attribute is removed when that call was its only use. Offered for a `for` loop over a
    `self` attribute declared once in `__init__`, not nested in another loop.

    ## References
    - [pytorch/pytorch#29657](https://github.com/pytorch/pytorch/issues/29657) (a reused observer "is always an error because observers collect statistics and the
      statistics are unique for every invocation of a module")
    - [IntelLabs/distiller#297](https://github.com/IntelLabs/distiller/issues/297) (a shared ReLU gets one scale and zero point; the answer: one instance per call)
    - [pytorch/pytorch#68178](https://github.com/pytorch/pytorch/issues/68178) (FX fusion of a module used twice changed the first use)
    """

    code = "QL202"
    name = "reused-module"
    severity = Severity.WARNING
    flows = (
        Flow.EAGER,
        Flow.FX,
    )
    basis = (Basis.GRAPH,)
    summary = "one module instance is called at several sites"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (distinct instances; a `ModuleList` of copies for a loop); unsafe for a module with weights"
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
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.act = nn.Hardswish()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))  # the same instance: one scale for both
        return self.dequant(x)
""",
            lines=(17,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.act = nn.Hardswish()
        self.act2 = nn.Hardswish()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.act(self.conv1(x))
        x = self.act2(self.conv2(x))  # the same instance: one scale for both
        return self.dequant(x)
""",
        ),
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)])
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        for blk in self.blocks:
            x = self.relu(blk(x))  # one ReLU for the 3 blocks
        return self.dequant(x)
""",
            lines=(16,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)])
        self.relus = nn.ModuleList([nn.ReLU() for _ in range(len(self.blocks))])
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        for i, blk in enumerate(self.blocks):
            x = self.relus[i](blk(x))  # one ReLU for the 3 blocks
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
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.act1 = nn.Hardswish()
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.act2 = nn.Hardswish()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        return self.dequant(x)
""",
        ),
    )

    fix_order = 3
    fix_edits_class = True

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return reused(qg)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return reuse_fixes(ctx, items)


def reused(qg: QGraph) -> Iterator[Diagnostic]:
    """QL202: every call site after the first of a module instance called at several sites."""
    from qlint.model import support

    sites: dict[str, list[str]] = {}
    for name, facts in qg.nodes():
        if facts.module is not None and facts.op in ("call_module", "call_function"):
            sites.setdefault(facts.module, []).append(name)
    watched = support.swapped_module_types() | support.fusable_types()
    for module, nodes in sites.items():
        if len(nodes) < 2:
            continue
        module_type = qg.facts(nodes[0]).module_type
        if module_type.__name__ == "DeQuantStub" or module_type not in watched:
            continue
        span, related = qg.locate(nodes[0])
        first = f"{related[0].span.path}:{related[0].span.line}" if related else f"line {span.line}"
        for index, node in enumerate(nodes[1:], 2):
            yield qg.diagnostic(
                "QL202",
                f"`{qg.full(module)}` ({module_type.__name__}) is called at {len(nodes)} sites (this is call {index}, "
                f"the first is at {first}): they share one observer and one scale, and fusion "
                "is blocked; give each call site its own instance",
                node,
            )


def reuse_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    done: dict[tuple, Fix | None] = {}
    for index, diag in items:
        site = _call_at(ctx, diag)
        if site is None:
            continue
        cls, attr = site
        key = (id(cls), attr)
        if key not in done:
            done[key] = _split(ctx, diag, cls, attr)
        if done[key] is not None:
            out[index] = done[key]
    return out


def _call_at(ctx: FileContext, diag: Diagnostic) -> tuple[cst.ClassDef, str] | None:
    attr = (diag.module or "").rsplit(".", 1)[-1]
    for call in ctx.file.nodes_at(diag.span, (cst.Call,)):
        if _receiver_attr(call) == attr:
            cls = ctx.file.enclosing_class(call)
            return (cls, attr) if cls is not None else None
    return None


def _receiver_attr(call: cst.Call) -> str | None:
    """``self.relu(...)`` -> relu; ``self.skip_add.add(...)`` -> skip_add."""
    name = get_full_name_for_node(call.func) or ""
    parts = name.split(".")
    if len(parts) in (2, 3) and parts[0] == "self":
        return parts[1]
    return None


def _sites(cls: cst.ClassDef, attr: str) -> list[cst.Call]:
    found: list[cst.Call] = []

    class Visitor(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if _receiver_attr(node) == attr:
                found.append(node)

    for name, method in methods(cls).items():
        if name != "__init__":
            method.visit(Visitor())
    return found


def _split(ctx: FileContext, diag: Diagnostic, cls: cst.ClassDef, attr: str) -> Fix | None:
    file = ctx.file
    init = methods(cls).get("__init__")
    declared = attribute_assignments(init, attr) if init is not None else []
    sites = sorted(_sites(cls, attr), key=file.start)
    if len(declared) != 1 or len(declared[0].body) != 1:
        return None
    declaration = declared[0]
    value = declaration.body[0].value
    if not isinstance(value, cst.Call):
        return None
    for call in sites:
        loop = _loop_of(file, call)
        if loop is not None:
            fix = _loop_split(ctx, diag, cls, attr, call, loop, only_site=len(sites) == 1)
            if fix is not None:
                return fix
    if len(sites) < 2:
        return None
    taken = self_attributes(cls)
    names, k = [], 2
    for _ in sites[1:]:
        while numbered(attr, k) in taken:
            k += 1
        names.append(numbered(attr, k))
        taken.add(names[-1])
    constructor = file.code(value)
    lines = [f"self.{name} = {constructor}" for name in names]
    edits = [file.insert_lines_after(declaration, lines)]
    for call, name in zip(sites[1:], names, strict=False):
        receiver = call.func if isinstance(call.func.value, cst.Name) else call.func.value
        edits.append(file.replace(receiver, f"self.{name}"))
    stateless = _stateless(ctx, diag, value)
    listing = ", ".join(f"`self.{n}`" for n in names)
    return Fix(
        Applicability.SAFE if stateless else Applicability.UNSAFE,
        f"Give each call site its own instance: {listing}"
        + ("" if stateless else " (new weights: the state_dict gains keys)"),
        tuple(edits),
    )


def _loop_of(file, call: cst.Call) -> cst.For | None:
    """The ``for`` loop of the method that runs ``call`` once per iteration (not nested in another loop)."""
    loops = []
    node = file.parents.get(call)
    while node is not None and not isinstance(node, (cst.FunctionDef, cst.ClassDef)):
        if isinstance(node, (cst.For, cst.While, cst.CompFor, cst.Lambda)):
            loops.append(node)
        node = file.parents.get(node)
    return loops[0] if len(loops) == 1 and isinstance(loops[0], cst.For) and not _in_else(loops[0], call) else None


def _in_else(loop: cst.For, call: cst.Call) -> bool:
    """``call`` runs in the loop's ``else:`` (once, after the loop)."""
    import libcst.matchers as m  # 0.4 s to import: only when this runs

    return loop.orelse is not None and any(node is call for node in m.findall(loop.orelse, m.Call()))


def _self_attr(node: cst.BaseExpression) -> str | None:
    """``self.blocks`` -> blocks."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
        return node.attr.value
    return None


def _loop_index(file, loop: cst.For, taken: set[str]) -> tuple[str, str, list[Edit]] | None:
    """(the loop's index variable, the ``self`` attribute it iterates over, edits that make the loop count).

    ``for blk in self.blocks`` becomes ``for i, blk in enumerate(self.blocks)``; ``enumerate(self.blocks)``
    and ``range(len(self.blocks))`` loops already count.
    """
    it = loop.iter
    if _self_attr(it) is not None:
        index = free_name("i", taken)
        target = file.code(loop.target)
        if isinstance(loop.target, cst.Tuple) and not loop.target.lpar:
            target = f"({target})"
        edits = [file.replace(loop.target, f"{index}, {target}"), file.replace(it, f"enumerate({file.code(it)})")]
        return index, _self_attr(it), edits
    if not isinstance(it, cst.Call) or len(it.args) != 1 or it.args[0].keyword or it.args[0].star:
        return None
    function, arg = get_full_name_for_node(it.func), it.args[0].value
    if function == "enumerate" and isinstance(loop.target, cst.Tuple) and len(loop.target.elements) == 2:
        index = loop.target.elements[0].value
        if isinstance(index, cst.Name) and _self_attr(arg) is not None:
            return index.value, _self_attr(arg), []
    if function == "range" and isinstance(loop.target, cst.Name) and isinstance(arg, cst.Call):
        if get_full_name_for_node(arg.func) == "len" and len(arg.args) == 1 and _self_attr(arg.args[0].value):
            return loop.target.value, _self_attr(arg.args[0].value), []
    return None


def _loop_split(
    ctx: FileContext, diag: Diagnostic, cls: cst.ClassDef, attr: str, call: cst.Call, loop: cst.For, only_site: bool
) -> Fix | None:
    """A module called once per iteration of a loop over ``self.<seq>`` -> a ModuleList of copies, one per
    iteration, declared after ``self.<seq>`` and indexed with the loop's counter."""
    file = ctx.file
    init = methods(cls)["__init__"]
    declaration = attribute_assignments(init, attr)[0]
    value = declaration.body[0].value
    function = file.enclosing_function(call)
    import libcst.matchers as m  # 0.4 s to import: only when this runs

    names_in_function = {n.value for n in m.findall(function, m.Name())}
    counted = _loop_index(file, loop, set(names_in_function))
    if counted is None:
        return None
    index, sequence, edits = counted
    declared = attribute_assignments(init, sequence)
    if len(declared) != 1 or any(file.parents.get(stmt) is not init.body for stmt in (declared[0], declaration)):
        return None  # declared once, at the top level of __init__ (not under an `if`)
    taken = self_attributes(cls)
    name = free_name(attr + ("_list" if attr.endswith("s") else "s"), taken)
    module_list, imports = spelled(ctx, ("torch.nn.ModuleList",))
    constructor = file.code(value)
    line = f"self.{name} = {module_list}([{constructor} for _ in range(len(self.{sequence}))])"
    # after the statements that fill the sequence too (`self.focal_layers.append(...)` in a loop, timm's FocalNet):
    # right after an empty `nn.ModuleList()`, `len(self.<seq>)` is 0
    filling = [stmt for stmt in init.body.body if m.findall(stmt, m.Attribute(m.Name("self"), m.Name(sequence)))]
    after = max((declared[0], declaration, *filling), key=file.start)
    edits = [*imports, *edits, file.insert_lines_after(after, [line])]
    receiver = call.func if isinstance(call.func.value, cst.Name) else call.func.value
    edits.append(file.replace(receiver, f"self.{name}[{index}]"))
    if only_site and len(re.findall(rf"\b{re.escape(attr)}\b", file.text)) == 2:
        removal = file.delete_line_of(declaration)  # the declaration and this call were its only uses
        if removal is not None:
            edits.append(removal)
    stateless = _stateless(ctx, diag, value)
    return Fix(
        Applicability.SAFE if stateless else Applicability.UNSAFE,
        f"One instance per iteration: `self.{name}[{index}]`, a ModuleList as long as `self.{sequence}`"
        + ("" if stateless else " (new weights: the state_dict gains keys)"),
        tuple(edits),
    )


def _stateless(ctx: FileContext, diag: Diagnostic, value: cst.Call) -> bool:
    info = ctx.model_for(diag)
    if info is not None and diag.module:
        try:
            module = info.model.get_submodule(diag.module)
        except AttributeError:
            module = None
        if module is not None:
            return not any(True for _ in module.parameters()) and not any(True for _ in module.buffers())
    name = (get_full_name_for_node(value.func) or "").rsplit(".", 1)[-1]
    return name in STATELESS
