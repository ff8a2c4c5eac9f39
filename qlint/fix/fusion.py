"""QL201: a ``fuse_model()`` with the exact ``fuse_modules`` lists, where a reviewer expects it.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix
from qlint.fix.common import torch_name
from qlint.fix.context import FixContext
from qlint.fix.source import body_statements, methods, parameters

if TYPE_CHECKING:
    from qlint.model.check import CheckedModel

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


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    groups: dict[int, tuple[CheckedModel, list[int]]] = {}
    for index, diag in items:
        info = ctx.model_for(diag)
        if info is not None and dict(diag.data).get("pipeline"):
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


def _pipeline_fix(ctx: FixContext, info: CheckedModel, diag: Diagnostic) -> Fix | None:
    """``name.fuse_model()`` right before the ``prepare`` of a model that has one (unsafe: conv+BN folding
    changes the float numbers in the last bits, and the prepared model's state_dict keys)."""
    import inspect

    data = dict(diag.data)
    name, qat = data["pipeline"], data.get("qat", False)
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
    from qlint.rules.fusion import unfused

    out: list[tuple[str, ...]] = []
    for qg in info.graphs:
        reused = {qg.full(m) for m, n in site_counts(qg).items() if n > 1}
        for diag in unfused(qg):
            chain = tuple(diag.get("chain") or ())
            if chain and chain not in out and not reused.intersection(chain):
                out.append(chain)
    return out


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _model_fix(ctx: FixContext, info: CheckedModel) -> Fix | None:
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


def _owner_path(ctx: FixContext, modules: dict, chain: tuple[str, ...]) -> str:
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


def _assign(ctx: FixContext, owner: _Owner, modules: dict, by_instance: dict) -> list[tuple[str, ...]]:
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
    from qlint.rules.fusion import fused_away, fused_copy

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
    ctx: FixContext,
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
