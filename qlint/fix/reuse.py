"""QL202: a module called at several sites -> one instance per call site.

``self.relu = nn.ReLU(inplace=True)`` called twice becomes ``self.relu`` and ``self.relu2`` (same
constructor arguments, declared right after the original), the second call site using ``self.relu2``.
Safe when the module holds no parameters or buffers (the state_dict keys do not change);
unsafe otherwise: the new instance has its own fresh weights, and checkpoints lack its keys.
"""

from __future__ import annotations

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix
from qlint.fix.context import FixContext
from qlint.fix.source import attribute_assignments, methods, numbered
from qlint.source.index import self_attributes

STATELESS = {
    "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "SiLU", "GELU", "Identity", "LeakyReLU",
    "ELU", "Hardtanh", "Softmax", "Dropout", "Dropout2d", "Flatten", "Upsample", "MaxPool2d", "MaxPool1d",
    "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveAvgPool1d", "QuantStub", "DeQuantStub", "FloatFunctional",
}  # fmt: skip


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
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


def _call_at(ctx: FixContext, diag: Diagnostic) -> tuple[cst.ClassDef, str] | None:
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


def _split(ctx: FixContext, diag: Diagnostic, cls: cst.ClassDef, attr: str) -> Fix | None:
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


def _stateless(ctx: FixContext, diag: Diagnostic, value: cst.Call) -> bool:
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
