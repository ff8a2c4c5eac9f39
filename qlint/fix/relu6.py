"""ReLU6 where it blocks Conv-BN-ReLU fusion (eager mode has no ReLU6 fuser): QL205's fix, and ``qlint emit``.

A ReLU6 after a Conv/BatchNorm stays a separate int8 op, and the conv's output observer sees the
pre-activation range (about half of the int8 steps spent on negatives the ReLU6 then zeroes).

- safe (``split_relu6``): ReLU6 built as ``ReLUClamp6`` = ReLU then Hardtanh(0, 6): the same numbers,
  no parameters (state_dict keys unchanged), and the ReLU fuses with the Conv-BN; the clamp stays an op.
- unsafe (``relu6_to_relu``, ``qlint emit --unsafe-fixes``): ReLU6 -> ReLU, what torchvision's quantizable
  MobileNetV2 does (``_replace_relu``): no clamp op left, but values above 6 are no longer clipped.

``qlint check --fix`` (``fixes``) applies the safe form to the ``nn.ReLU6(...)`` calls of the checked
file, where every ReLU6 a call builds blocks a chain; QL201's fix then adds the chains to ``fuse_model()``.
"""

from __future__ import annotations

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix
from qlint.fix.common import construction_call
from qlint.fix.context import FixContext


def blocking(model) -> list[str]:
    """Names of the ReLU6 modules that end a fusable chain: QL205's query on the model's QGraph."""
    from qlint.model.analysis import analyze_module
    from qlint.model.loader import quiet
    from qlint.model.trace import TraceFailure
    from qlint.rules.fusion import relu6_blocking

    try:
        with quiet():
            qg = analyze_module(model)
    except TraceFailure:
        return []
    return [qg.facts(chain[-1]).module for chain in relu6_blocking(qg)]


CLAMP_CLASS = '''class ReLUClamp6(nn.Sequential):
    """ReLU6 as ReLU then a clamp at 6 (same numbers): the ReLU fuses with the Conv/BatchNorm before it."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(nn.ReLU(inplace=inplace), nn.Hardtanh(0.0, 6.0))'''


class _Swap(cst.CSTTransformer):
    """``nn.ReLU6`` / ``torch.nn.ReLU6`` (and a bare imported ``ReLU6``) -> ``to`` (``nn.ReLU``, ...)."""

    def __init__(self, bare: bool, to: str):
        self.bare = bare
        self.to = cst.parse_expression(to)
        self.count = 0

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        name = get_full_name_for_node(original) or ""
        if updated.attr.value == "ReLU6" and name.rsplit(".", 1)[0] in ("nn", "torch.nn"):
            self.count += 1
            if isinstance(self.to, cst.Attribute):  # keep the spelling: torch.nn.ReLU6 -> torch.nn.ReLU
                return updated.with_changes(attr=self.to.attr)
            return self.to
        return updated

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        if self.bare and updated.value == "ReLU6":
            self.count += 1
            return self.to if isinstance(self.to, cst.Name) else cst.Name("ReLU")
        return updated


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    """QL205: the file's ``nn.ReLU6(...)`` calls become ``ReLUClamp6(...)``, one Fix for the file.

    A call is rewritten only when it spells torch's ReLU6 and every ReLU6 it builds ends a chain.
    """
    import torch.nn as nn

    by_model: dict[int, tuple[object, dict[str, int]]] = {}  # id(model) -> (model, {ReLU6 name: index})
    for index, diag in items:
        info = ctx.model_for(diag)
        if info is not None:
            by_model.setdefault(id(info), (info.model, {}))[1][diag.module] = index
    sites: dict[int, tuple[cst.Call, list[int]]] = {}
    refused: set[int] = set()
    for model, blocking_at in by_model.values():
        for name, module in model.named_modules():
            call = construction_call(ctx, module, direct=True) if type(module) is nn.ReLU6 else None
            if call is None:
                continue
            if name in blocking_at and _names_relu6(ctx, call):
                sites.setdefault(id(call), (call, []))[1].append(blocking_at[name])
            else:  # `act_layer(...)` may build other modules, or a ReLU6 that blocks nothing: leave it
                refused.add(id(call))
    sites = {k: v for k, v in sites.items() if k not in refused}
    if not sites:
        return {}
    edits = [ctx.file.replace(call.func, "ReLUClamp6") for call, _ in sites.values()]
    if "class ReLUClamp6(" not in ctx.file.text:
        sequential = ctx.file.spell(("torch.nn.Sequential",)) or "torch.nn.Sequential"
        prefix = sequential.rsplit(".", 1)[0] if "." in sequential else "torch.nn"
        edits.append(ctx.file.insert_after_imports(["", "", *CLAMP_CLASS.replace("nn.", f"{prefix}.").splitlines()]))
    count = len(sites)
    fix = Fix(
        Applicability.SAFE,
        f"Build the ReLU6 as `ReLUClamp6` (ReLU, then a clamp at 6: the same numbers, and the ReLU fuses) at "
        f"{count} site{'s' if count > 1 else ''}",
        tuple(edits),
    )
    return {index: fix for _, indexes in sites.values() for index in indexes}


def _names_relu6(ctx: FixContext, call: cst.Call) -> bool:
    """The call spells torch's ReLU6 itself (``nn.ReLU6``, ``torch.nn.ReLU6``, an imported ``ReLU6``)."""
    name = get_full_name_for_node(call.func) or ""
    head, _, _ = name.partition(".")
    origin = ctx.file.bound_names.get(head, "")
    return name.endswith("ReLU6") and f"{origin}{name[len(head) :]}" == "torch.nn.ReLU6"


def relu6_to_relu(text: str, model) -> tuple[str, int]:
    """Unsafe: ``text`` building ReLU for ReLU6, if a ReLU6 of ``model`` blocks fusion; (text, sites)."""
    if not blocking(model):
        return text, 0
    module = cst.parse_module(text)
    bare = _imports_bare_relu6(module)
    out, count = _swap(module, _Swap(bare, "nn.ReLU"))
    if count and bare and "ReLU" not in _imported(module):
        out = out.replace("from torch.nn import ", "from torch.nn import ReLU, ", 1)
    return out, count


def split_relu6(text: str, model) -> tuple[str, int]:
    """Safe: ``text`` building ``ReLUClamp6`` for ReLU6 (defined after the imports), if one blocks fusion."""
    if not blocking(model) or "class ReLUClamp6(" in text:
        return text, 0
    module = cst.parse_module(text)
    swapped, count = _swap(module, _Swap(_imports_bare_relu6(module), "ReLUClamp6"))
    if not count:
        return text, 0
    module = cst.parse_module(swapped)
    last = max((i for i, stmt in enumerate(module.body) if _is_import(stmt)), default=-1)
    clamp = cst.parse_module(CLAMP_CLASS + "\n").body[0]
    clamp = clamp.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
    body = [*module.body[: last + 1], clamp, *module.body[last + 1 :]]
    return module.with_changes(body=body).code, count


def _swap(module: cst.Module, transformer: _Swap) -> tuple[str, int]:
    """Apply ``transformer`` to every statement but the imports; (code, replacements)."""
    body = [stmt if _is_import(stmt) else stmt.visit(transformer) for stmt in module.body]
    return module.with_changes(body=body).code, transformer.count


def _is_import(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and any(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body
    )


def _imported(module: cst.Module) -> set[str]:
    names: set[str] = set()
    for stmt in module.body:
        if _is_import(stmt):
            for small in stmt.body:
                if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                    names.update(a.evaluated_alias or a.evaluated_name for a in small.names)
    return names


def _imports_bare_relu6(module: cst.Module) -> bool:
    for stmt in module.body:
        if _is_import(stmt):
            for small in stmt.body:
                if (
                    isinstance(small, cst.ImportFrom)
                    and get_full_name_for_node(small.module) == "torch.nn"
                    and not isinstance(small.names, cst.ImportStar)
                    and any(a.evaluated_name == "ReLU6" and a.asname is None for a in small.names)
                ):
                    return True
    return False
