"""QL201: fusable chains left unfused (a path query on the QGraph), and the fix that writes `fuse_model()`.

The fix: QL201: a ``fuse_model()`` with the exact ``fuse_modules`` lists, where a reviewer expects it.

Chains come from the graph (the rule's own query), so the lists are exact: Sequential children by
index, one list per chain. Each chain goes to the class of the file that owns its modules; a class
used for many blocks gets its own ``fuse_model()`` (chains missing in some instances guarded by
``if self.<attr> is not None``), and the root's ``fuse_model()`` calls it, the way torchvision's
``models/quantization`` does. Existing ``fuse_model()`` methods are extended, never duplicated.
Fusion itself runs only when the user calls ``fuse_model()``, and adding the method changes neither
the float forward nor the state_dict: the fix is safe.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.model.fusion import chain_nodes, fused_away, fused_copy
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, shared
from qlint.source.edit import body_statements, methods, parameters
from qlint.source.idioms import torch_name

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph
    from qlint.model.check import CheckedModel


@dataclass(frozen=True)
class UnfusedChain:
    """A chain left unfused: its modules' qualified names, in order."""

    chain: tuple[str, ...]


@dataclass(frozen=True)
class PreparedUnfused:
    """A pipeline that prepares ``pipeline`` (the name holding the model) without its ``fuse_model()``."""

    pipeline: str
    qat: bool


class UnfusedConvBnRelu(Rule):
    """## What it does
    Reports a chain of modules that eager mode can fuse but that is left unfused:
    `Conv{1,2,3}d → BatchNorm → ReLU`, `Conv → BatchNorm`, `Conv → ReLU`, `Linear → ReLU`,
    `Linear → BatchNorm1d` and `BatchNorm → ReLU`, where each inner output has a single user.
    The fusable patterns are read from the installed torch. If the model has a
    `fuse_model()` method, qlint runs it on a copy of the model (in `eval()` mode) first and
    reports only the chains it leaves unfused. Points at the line of the chain's first module.

    A `fuse_model()` fuses nothing until it is called. When the model's `fuse_model()` fuses chains and a
    pipeline in the same file builds the model (`model = build_model()`, the expression qlint checks) and
    hands it to `prepare`/`prepare_qat` without `model.fuse_model()` or `fuse_modules*(model, ...)`
    before, QL201 points at that `prepare` call.

    ## Why is this bad?
    Eager quantization does not fuse by itself. Unfused, each module of the chain is
    quantized on its own: the BatchNorm becomes a separate quantized op (or fails:
    `Could not run 'aten::native_batch_norm' with arguments from the 'QuantizedCPU' backend`
    on older torch, `Exporting the operator 'quantized::batch_norm2d' to ONNX ... not
    supported` on newer), and every intermediate tensor is rounded to int8 and written to
    memory. The result is slower and less accurate than the fused `ConvReLU2d`, where the
    BatchNorm is folded into the weights and the ReLU is free. A hand-written `fuse_model()`
    that selects blocks by type easily misses chains (seed 000: the backbone's stem and last
    1x1 layer were plain `nn.Sequential`s, never fused).

    ## Fix safety
    Safe: the fix writes the exact `fuse_modules` lists (as a `fuse_model()` method, or added
    to the existing one). Fusion only happens when the method is called; in `eval()` mode the
    fused module computes the same function as the chain, up to float rounding.

    For a pipeline that prepares the model without calling its `fuse_model()`, the fix inserts
    `model.fuse_model()` (`model.fuse_model(is_qat=True)` before `prepare_qat`, when the method takes
    `is_qat`) right before the `prepare` call. It is unsafe: folding BatchNorm into the conv changes the
    float numbers in their last bits and renames the prepared model's state_dict keys.

    ## References
    - [`torch.ao.quantization.fuse_modules`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.fuse_modules.fuse_modules.html)
    - [pytorch/pytorch#28404](https://github.com/pytorch/pytorch/issues/28404) (`Could not run 'aten::native_batch_norm' with arguments from the 'QuantizedCPU' backend`)
    - [pytorch/pytorch#41642](https://github.com/pytorch/pytorch/issues/41642) (BatchNorm1d left unfused in a quantized model)
    - seed 000: a `fuse_model()` that leaves two Conv-BN-ReLU chains of the backbone unfused
    """

    code = "QL201"
    name = "unfused-conv-bn-relu"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "a fusable Conv/Linear-BN-ReLU chain is left unfused"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (generates `fuse_model()`); unsafe for a pipeline that never calls it"
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
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu(self.bn(self.conv(x)))
        return self.dequant(x)
""",
            lines=(16,),
            fixed='''\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub
import torch


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu(self.bn(self.conv(x)))
        return self.dequant(x)

    def fuse_model(self, is_qat: bool = False) -> None:
        """Fuse Conv/BatchNorm/ReLU chains in place before prepare (eager mode); numerics unchanged."""
        fuse = torch.ao.quantization.fuse_modules_qat if is_qat else torch.ao.quantization.fuse_modules
        fuse(self, [["conv", "bn", "relu"]], inplace=True)
''',
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
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu(self.bn(self.conv(x)))
        return self.dequant(x)

    def fuse_model(self):
        torch.ao.quantization.fuse_modules(self, [["conv", "bn", "relu"]], inplace=True)


def quantize(model, batches):
    model.eval()  # fuse_modules folds BatchNorm: eval mode only (QAT: fuse_modules_qat)
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for x in batches:
            model(x)
    return torch.ao.quantization.convert(model, inplace=True)


if __name__ == "__main__":
    print(quantize(Net(), [torch.rand(1, 3, 16, 16)]))
""",
        ),
    )

    fix_order = 4
    fix_alone = True  # generated from the settled code: after every other fix of the round
    fix_edits_class = True

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return iter(shared(qg, unfused))

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return fusion_fixes(ctx, items)


def unfused(qg: QGraph) -> list[Diagnostic]:
    """QL201's findings: chains left unfused, and a pipeline that prepares without `fuse_model()`."""
    return list(_unfused(qg))


def _unfused(qg: QGraph) -> Iterator[Diagnostic]:
    chains = chain_nodes(qg)
    if not chains:
        return
    # a sub-root graph's chains are fused by the whole model's fuse_model() (where QL201's fix writes them)
    owner, tail = (qg.checked_model, qg.full) if callable(getattr(qg.checked_model, "fuse_model", None)) else (
        qg.root, lambda name: name)  # fmt: skip
    has_fuse_model = callable(getattr(owner, "fuse_model", None))
    fused, error = fused_copy(owner) if has_fuse_model else (None, None)
    by_hand = None if has_fuse_model or qg.prefix else _fused_by_pipeline(qg, chains)
    left: list[list[str]] = []  # chains the pipeline's own fusing function leaves unfused
    for chain in chains:
        names = [qg.full(qg.facts(n).module) for n in chain]
        if fused is not None and fused_away(fused, tail(qg.facts(chain[-1]).module)):
            continue  # fuse_model() fuses it: the chain's tail became an Identity
        if by_hand is not None:
            if not fused_away(by_hand[2], qg.facts(chain[-1]).module):
                left.append(chain)  # reported once, below, at the pipeline's call of its fusing function
            continue
        types = " -> ".join(qg.facts(n).module_type.__name__ for n in chain)
        if has_fuse_model and error is None:
            why = "`fuse_model()` leaves it unfused"
        elif error is not None:
            why = f"`fuse_model()` raised {error}"
        else:
            why = "the model has no `fuse_model()`"
        listing = ", ".join(f"'{n}'" for n in names)
        yield qg.diagnostic(
            "QL201",
            f"{types} chain left unfused ({why}): fuse it with "
            f"`torch.ao.quantization.fuse_modules(model, [[{listing}]])` before prepare",
            chain[0],
            data=UnfusedChain(tuple(names)),
        )
    if left and by_hand is not None:
        yield _left_by_pipeline(qg, left, *by_hand)
    if fused is not None and not qg.prefix:
        count = sum(fused_away(fused, qg.facts(chain[-1]).module) for chain in chains)
        if count:
            yield from _prepared_without_fuse_model(qg, count)


def _left_by_pipeline(qg, left: list[list[str]], function: str, call_span, clone, target: str) -> Diagnostic:
    """One QL201 at the pipeline's call of its fusing function, listing what it leaves unfused."""
    prefix = f"{target}." if target else ""
    lists = []
    for chain in left:
        names = [qg.full(qg.facts(n).module) for n in chain]
        lists.append("[" + ", ".join(f"'{n.removeprefix(prefix)}'" for n in names) + "]")
    count = len(left)
    given = f" (it is given `{target}`)" if target else ""
    return qg.diagnostic(
        "QL201",
        f"the pipeline fuses by hand in `{function}()`{given}, and leaves {count} chain{'s' * (count > 1)} unfused: "
        f"add {', '.join(lists)} to its fusion lists",
        location=(call_span, qg.locate(left[0][0])[1]),
    )


def _fused_by_pipeline(qg, chains):
    """(function name, the span where the pipeline calls it, the model as it fuses it, the submodule it
    is given) for a function of
    the file that fuses the model by hand (seed 004's ``fuse(resnet)``); None when there is none."""
    from qlint.model.fusion import pipeline_fused_copy
    from qlint.source.file import SourceFile
    from qlint.source.index import index_of
    from qlint.source.pipeline import fusing_functions

    source = SourceFile.read(qg.spec.path)
    if "fuse_modules" not in source.text:
        return None
    index = index_of(source)
    tails = [qg.facts(chain[-1]).module for chain in chains]
    for function, uses in fusing_functions(index):
        fused = pipeline_fused_copy(qg.root, qg.spec.path, function, tails)
        if fused is not None:
            define = next(f for f in index.functions if f.name.value == function)
            where = index.span(uses[0]) if uses else index.span(define.name)
            return function, where, *fused
    return None


def _prepared_without_fuse_model(qg, count: int) -> Iterator[Diagnostic]:
    """QL201 in the file's pipeline: the model is built, then prepared without its ``fuse_model()``."""
    from qlint.source.file import SourceFile
    from qlint.source.index import index_of
    from qlint.source.pipeline import callee_attr, prepared_unfused

    source = SourceFile.read(qg.spec.path)
    if "prepare" not in source.text:
        return
    index = index_of(source)
    for name, call, qat in prepared_unfused(index, qg.spec.name):
        yield qg.diagnostic(
            "QL201",
            f"`{name}` is prepared without `{name}.fuse_model()`: the {count} chain{'s' * (count > 1)} it fuses "
            "stay unfused in this pipeline (separate int8 ops, and each conv's observer sees the "
            f"pre-activation range); call `{name}.fuse_model()` before `{callee_attr(call)}`",
            location=(index.span(call), ()),
            data=PreparedUnfused(name, qat),
        )


LINE_LENGTH = 110


@dataclass
class _Owner:
    cls: type
    node: cst.ClassDef
    common: list[tuple[str, ...]] = field(default_factory=list)
    guarded: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    handled: bool = False  # its existing fuse_model already fuses some chains (the root must call it)
    called_by_root: bool = False
    instances: list[str] = field(default_factory=list)


def fusion_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    groups: dict[int, tuple[CheckedModel, list[int]]] = {}
    for index, diag in items:
        info = ctx.model_for(diag)
        if info is not None and isinstance(diag.data, PreparedUnfused):
            fix = _pipeline_fix(ctx, info, diag)
            if fix is not None:
                out[index] = fix
        elif info is not None:
            groups.setdefault(id(info), (info, []))[1].append(index)
    for info, indexes in groups.values():
        fix = _model_fix(ctx, info)
        if fix is not None:
            for index in indexes:
                out[index] = fix
    return out


def _pipeline_fix(ctx: FileContext, info: CheckedModel, diag: Diagnostic) -> Fix | None:
    """``name.fuse_model()`` right before the ``prepare`` of a model that has one (unsafe: conv+BN folding
    changes the float numbers in the last bits, and the prepared model's state_dict keys)."""

    name, qat = diag.data.pipeline, diag.data.qat
    call = next(iter(ctx.file.nodes_at(diag.span, (cst.Call,))), None)
    statement = ctx.file.statement_of(call) if call is not None else None
    if statement is None:
        return None
    args = ""
    if qat:
        try:
            params = inspect.signature(info.model.fuse_model).parameters
        except (TypeError, ValueError):
            return None
        if "is_qat" not in params:
            return None  # fuse_modules needs eval mode: a QAT model must fuse with fuse_modules_qat
        args = "is_qat=True"
    return Fix(
        Applicability.UNSAFE,
        f"Call `{name}.fuse_model({args})` before `{ctx.file.code(call.func).rsplit('.', 1)[-1]}`",
        (ctx.file.insert_lines_before(statement, [f"{name}.fuse_model({args})"]),),
    )


def _chains(info: CheckedModel) -> list[tuple[str, ...]]:
    from qlint.model.analysis import site_counts

    out: list[tuple[str, ...]] = []
    for qg in info.graphs:
        reused = {qg.full(m) for m, n in site_counts(qg).items() if n > 1}
        for diag in shared(qg, unfused):
            chain = diag.data.chain if isinstance(diag.data, UnfusedChain) else ()
            if chain and chain not in out and not reused.intersection(chain):
                out.append(chain)
    return out


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _model_fix(ctx: FileContext, info: CheckedModel) -> Fix | None:
    root = info.model
    root_node = ctx.class_node(type(root))
    chains = _chains(info)
    if root_node is None or not chains:
        return None
    modules = dict(root.named_modules())
    owners: dict[type, _Owner] = {}
    root_chains: list[tuple[str, ...]] = []
    by_instance: dict[str, list[tuple[str, ...]]] = {}
    for chain in chains:
        path = _owner_path(ctx, modules, chain)
        if path == "" or type(modules[path]) is type(root):
            root_chains.append(chain)
        else:
            by_instance.setdefault(path, []).append(tuple(n[len(path) + 1 :] for n in chain))
    for path in by_instance:
        cls = type(modules[path])
        if cls not in owners:
            node = ctx.class_node(cls)
            if node is None:
                continue
            owners[cls] = _Owner(cls, node, instances=[p for p, m in modules.items() if type(m) is cls and p])
    for owner in owners.values():
        promoted = _assign(ctx, owner, modules, by_instance)
        root_chains.extend(promoted)
    owners = {c: o for c, o in owners.items() if o.common or o.guarded or o.handled}
    _mark_called(root, owners)
    torch, edits = torch_name(ctx)
    imports = len(edits)
    for owner in owners.values():
        edit = _class_edit(ctx, owner.node, owner.common, owner.guarded, [], torch)
        if edit is not None:
            edits.append(edit)
    calls = [o for o in owners.values() if not o.called_by_root]
    root_edit = _class_edit(ctx, root_node, root_chains, {}, calls, torch)
    if root_edit is not None:
        edits.append(root_edit)
    if len(edits) == imports:
        return None
    count = len(chains)
    where = ", ".join(sorted({o.node.name.value for o in owners.values()} | {root_node.name.value}))
    return Fix(
        Applicability.SAFE,
        f"Add `fuse_model()` fusing {count} chain{'s' if count > 1 else ''} ({where})",
        tuple(edits),
    )


def _owner_path(ctx: FileContext, modules: dict, chain: tuple[str, ...]) -> str:
    """The nearest ancestor of the chain's modules whose class is defined in this file."""
    parents = [_parent(n).split(".") if _parent(n) else [] for n in chain]
    common: list[str] = []
    for parts in zip(*parents, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    path = ".".join(common)
    while path and not ctx.defined_here(type(modules[path])):
        path = _parent(path)
    return path


def _assign(ctx: FileContext, owner: _Owner, modules: dict, by_instance: dict) -> list[tuple[str, ...]]:
    """Split an owner class's chains into common / guarded; return those promoted to the root (full names)."""
    per = {p: by_instance.get(p, []) for p in owner.instances}
    promoted: list[tuple[str, ...]] = []
    if "fuse_model" in methods(owner.node):
        handled = _handled_by_existing(modules, owner.instances, per)
        if handled is None:  # its fuse_model raises: leave it to the user
            return []
        owner.handled = True
        per = {p: [c for c in chains if c not in handled.get(p, ())] for p, chains in per.items()}
    seen: list[tuple[str, ...]] = []
    for chains in per.values():
        seen.extend(c for c in chains if c not in seen)
    for chain in seen:
        having = [p for p in owner.instances if chain in per[p]]
        if len(having) == len(owner.instances):
            owner.common.append(chain)
            continue
        attr = chain[0].split(".")[0]
        lacking = [p for p in owner.instances if p not in having]
        if "." in chain[0] and all(getattr(modules[p], attr, None) is None for p in lacking):
            owner.guarded.setdefault(attr, []).append(chain)
        else:
            promoted.extend(tuple(f"{p}.{n}" for n in chain) for p in having)
    return promoted


def _handled_by_existing(modules: dict, instances: list[str], per: dict) -> dict[str, set] | None:
    """Per instance, the chains its existing ``fuse_model()`` already fuses (QL201's own test, on a copy)."""
    handled: dict[str, set] = {}
    for path in instances:
        clone, error = fused_copy(modules[path])
        if clone is None:
            return None
        handled[path] = {chain for chain in per[path] if fused_away(clone, chain[-1])}
    return {path: chains for path, chains in handled.items() if chains}


def _mark_called(root, owners: dict[type, _Owner]) -> None:
    """Which owners' ``fuse_model`` the root's existing ``fuse_model`` already calls (run on a copy)."""
    existing = [o for o in owners.values() if "fuse_model" in methods(o.node)]
    if not existing or not callable(getattr(root, "fuse_model", None)):
        return
    from qlint.model.loader import quiet

    try:
        clone = copy.deepcopy(root)
    except Exception:  # noqa: BLE001
        return
    called: set[type] = set()
    for module in clone.modules():
        for owner in existing:
            if type(module) is owner.cls:

                def record(*args, _cls=owner.cls, **kwargs):
                    called.add(_cls)

                module.__dict__["fuse_model"] = record
    try:
        with quiet():
            clone.eval()
            clone.fuse_model()
    except Exception:  # noqa: BLE001
        return
    for owner in existing:
        owner.called_by_root = owner.cls in called


# ---- code generation ---------------------------------------------------------------------------


def _listing(chains: list[tuple[str, ...]]) -> list[str]:
    return ["[" + ", ".join(f'"{n}"' for n in chain) + "]" for chain in chains]


def _fuse_call(fuse: str, target: str, chains: list[tuple[str, ...]], indent: str) -> list[str]:
    items = _listing(chains)
    one = f"{fuse}({target}, [{', '.join(items)}], inplace=True)"
    if len(indent) + len(one) <= LINE_LENGTH:
        return [one]
    return [
        f"{fuse}(",
        f"    {target},",
        "    [",
        *[f"        {i}," for i in items],
        "    ],",
        "    inplace=True,",
        ")",
    ]


def _class_edit(
    ctx: FileContext,
    node: cst.ClassDef,
    chains: list[tuple[str, ...]],
    guarded: dict[str, list[tuple[str, ...]]],
    calls: list[_Owner],
    torch: str,
) -> Edit | None:
    if not chains and not guarded and not calls:
        return None
    existing = methods(node).get("fuse_model")
    body = body_statements(node)
    if not body:
        return None
    indent = ctx.file.indent_of(body[0])
    inner = indent + "    "
    if existing is not None:
        qat = "is_qat" in parameters(existing)
        fuse = f"{torch}.ao.quantization.fuse_modules"
        lines = _body_lines(fuse, chains, guarded, calls, inner, "is_qat" if qat else "")
        return ctx.file.insert_lines_after(body_statements(existing)[-1], lines, indent=inner)
    lines = [
        "",
        "def fuse_model(self, is_qat: bool = False) -> None:",
        '    """Fuse Conv/BatchNorm/ReLU chains in place before prepare (eager mode); numerics unchanged."""',
        f"    fuse = {torch}.ao.quantization.fuse_modules_qat if is_qat else {torch}.ao.quantization.fuse_modules",  # noqa: E501
    ]
    lines += ["    " + line for line in _body_lines("fuse", chains, guarded, calls, inner, "is_qat")]
    return ctx.file.insert_lines_after(body[-1], lines, indent=indent)


def _body_lines(fuse: str, chains, guarded, calls: list[_Owner], indent: str, qat_arg: str) -> list[str]:
    lines: list[str] = []
    if chains:
        lines += _fuse_call(fuse, "self", chains, indent)
    for attr, group in guarded.items():
        lines.append(f"if self.{attr} is not None:")
        lines += ["    " + line for line in _fuse_call(fuse, "self", group, indent + "    ")]
    if calls:
        names = [o.cls.__name__ for o in calls]
        single = [o for o in calls if len(o.instances) == 1 and _attribute_path(o.instances[0])]
        for owner in single:
            lines.append(f"self.{owner.instances[0]}.fuse_model({qat_arg})")
        rest = [n for o, n in zip(calls, names, strict=False) if o not in single]
        if rest:
            test = f"type(module) is {rest[0]}" if len(rest) == 1 else f"type(module) in ({', '.join(rest)})"
            lines += [
                "for module in self.modules():",
                f"    if {test}:",
                f"        module.fuse_model({qat_arg})",
            ]
    return lines


def _attribute_path(path: str) -> bool:
    return all(part.isidentifier() for part in path.split("."))
