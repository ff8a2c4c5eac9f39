"""QL202: one module instance called at several sites (a multiplicity query on the QGraph), and its fix.

The fix: QL202: a module called at several sites -> one instance per call site.

``self.relu = nn.ReLU(inplace=True)`` called twice becomes ``self.relu`` and ``self.relu2`` (same
constructor arguments, declared right after the original), the second call site using ``self.relu2``.
Safe when the module holds no parameters or buffers (the state_dict keys do not change);
unsafe otherwise: the new instance has its own fresh weights, and checkpoints lack its keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid
from qlint.source.edit import attribute_assignments, methods, numbered
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
    that has parameters (a shared `Linear`, tied weights): a copy unties the weights.

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
    fix_title = "safe (distinct instances)"
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
    if len(declared) != 1 or len(sites) < 2 or len(declared[0].body) != 1:
        return None
    declaration = declared[0]
    value = declaration.body[0].value
    if not isinstance(value, cst.Call):
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
