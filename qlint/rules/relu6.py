"""QL205: a ReLU6 that blocks Conv-BN-ReLU fusion, and its fixes (also used by ``qlint emit``).

ReLU6 where it blocks Conv-BN-ReLU fusion (eager mode has no ReLU6 fuser): QL205's fix, and ``qlint emit``.

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

from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph


class Relu6BlocksFusion(Rule):
    """## What it does
    Reports an `nn.ReLU6` that ends a Conv→BatchNorm, Conv or Linear chain, where an `nn.ReLU` would
    complete a chain that eager `fuse_modules` fuses. MobileNetV2-style blocks
    (`Conv2d, BatchNorm2d, ReLU6`) are the common case. A ReLU6 used at several call sites is left to
    QL202.

    ## Why is this bad?
    Eager mode has no fuser for ReLU6: `fuse_modules(model, [["0", "1", "2"]])` raises `did not find fuser
    method for: (Conv2d, BatchNorm2d, ReLU6)`, and
    fusing only Conv+BN leaves the ReLU6 as an int8 op of its own. The conv's output then gets an observer
    of its own that sees the pre-activation range, so about half of the 256 int8 steps go to negative
    values that the ReLU6 turns into zero, and the model pays for one more requantized tensor per block.
    torchvision's quantizable MobileNetV2 avoids this by building `nn.ReLU` instead of `nn.ReLU6`
    (`_replace_relu`), which changes the float numbers.

    ## Use instead
    Then fuse `[["conv", "bn", "act.0"]]` (QL201's fix writes the `fuse_model()`). Or use `nn.ReLU`, as
    torchvision's quantizable models do, if the float model may change.

    ## Fix safety
    Safe: each `nn.ReLU6(...)` call of the file that builds only ReLU6 modules ending a chain becomes
    `ReLUClamp6(...)` (the class is added after the imports). ReLU then `Hardtanh(0, 6)` gives exactly
    the ReLU6's numbers, and neither has parameters or buffers, so the state_dict keys are unchanged. The
    clamp stays a separate (cheap) int8 op: on MobileNetV2 this form is about 15% slower in int8 than
    `nn.ReLU` (`benchmarks/emit_vs_handwritten.py`), and `qlint emit --unsafe-fixes` writes `nn.ReLU`.
    A ReLU6 built inside a library is not edited: `qlint emit` copies the library's classes and applies
    the same fix there.

    ## References
    - [torchvision `_replace_relu`](https://github.com/pytorch/vision/blob/main/torchvision/models/quantization/utils.py)
      (ReLU6 → ReLU in the quantizable MobileNets)
    - [pytorch/pytorch#38516](https://github.com/pytorch/pytorch/issues/38516) (`did not find fuser method for: (Conv2d, BatchNorm2d, ReLU6)`; the maintainers advise ReLU)
    - [pytorch/pytorch#30214](https://github.com/pytorch/pytorch/issues/30214) (ReLU6 fusion requested, deprioritized)
    """

    code = "QL205"
    name = "relu6-blocks-fusion"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "Conv-BN-ReLU6: eager mode has no ReLU6 fuser"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (ReLU then a clamp at 6)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6(inplace=True)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.act(self.bn(self.conv(self.quant(x)))))
""",
            lines=(15,),
            fixed='''\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class ReLUClamp6(nn.Sequential):
    """ReLU6 as ReLU then a clamp at 6 (same numbers): the ReLU fuses with the Conv/BatchNorm before it."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(nn.ReLU(inplace=inplace), nn.Hardtanh(0.0, 6.0))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = ReLUClamp6(inplace=True)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.act(self.bn(self.conv(self.quant(x)))))
''',
        ),
        Valid(
            '''\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class ReLUClamp6(nn.Sequential):
    """ReLU6 as ReLU then a clamp at 6 (same numbers): the ReLU fuses with the Conv/BatchNorm before it."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(nn.ReLU(inplace=inplace), nn.Hardtanh(0.0, 6.0))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = ReLUClamp6(inplace=True)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.act(self.bn(self.conv(self.quant(x)))))
''',
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return relu6_blocks_fusion(qg)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return relu6_fixes(ctx, items)


def relu6_blocks_fusion(qg: QGraph) -> Iterator[Diagnostic]:
    """QL205: a ReLU6 ending a chain a ReLU would complete (not one QL202 reports as reused)."""
    from qlint.model.analysis import site_counts
    from qlint.model.fusion import relu6_blocking

    reused = {m for m, n in site_counts(qg).items() if n > 1}  # QL202's finding comes first
    for chain in relu6_blocking(qg):
        module = qg.facts(chain[-1]).module
        if module in reused:
            continue
        before = " -> ".join(qg.facts(n).module_type.__name__ for n in chain[:-1])
        yield qg.diagnostic(
            "QL205",
            f"`{qg.full(module)}` (ReLU6) after {before} blocks fusion: eager mode has no ReLU6 fuser, so the "
            "chain stays separate int8 ops and the observer before the ReLU6 spends its range on values it "
            "then clips; build it as ReLU then a clamp at 6 (same numbers, the ReLU fuses) or as nn.ReLU "
            "(torchvision's quantizable models do; changes numerics)",
            chain[-1],
        )


def blocking(model) -> list[str]:
    """Names of the ReLU6 modules that end a fusable chain: QL205's query on the model's QGraph."""
    from qlint.model.analysis import analyze_module
    from qlint.model.fusion import relu6_blocking
    from qlint.model.loader import quiet
    from qlint.model.trace import TraceFailure

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


def relu6_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
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
            call = ctx.construction_call(module, direct=True) if type(module) is nn.ReLU6 else None
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


def _names_relu6(ctx: FileContext, call: cst.Call) -> bool:
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
