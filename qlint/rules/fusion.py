"""QL201 (unfused chains), QL202 (reused modules), QL205 (ReLU6 blocking a chain): path and
multiplicity queries on the QGraph."""

from __future__ import annotations

import copy
from collections.abc import Iterator

from qlint.diagnostics import Diagnostic
from qlint.rules.registry import graph_rule


def fusion_chains(qg) -> list[list[str]]:
    """Qualified module names of every chain eager ``fuse_modules`` could fuse, in graph order.

    A chain follows torch's fuser patterns (Conv-BN-ReLU, Conv-BN, Conv-ReLU, Linear-ReLU, ...),
    longest first, and each inner output must feed only the next module.
    """
    return [[qg.full(qg.facts(n).module) for n in chain] for chain in _chain_nodes(qg)]


def _chain_nodes(qg, patterns: tuple[tuple[type, ...], ...] | None = None) -> list[list[str]]:
    """Node chains matching ``patterns`` (default: torch's fuser patterns), longest first, disjoint."""
    from qlint.model import support

    patterns = support.fusion_patterns() if patterns is None else patterns
    used: set[str] = set()
    chains = []
    for name, _ in qg.nodes("call_module"):
        if name in used:
            continue
        for pattern in patterns:
            chain = _match(qg, name, pattern)
            if chain and not used.intersection(chain):
                chains.append(chain)
                used.update(chain)
                break
    return chains


def relu6_blocking(qg) -> list[list[str]]:
    """Node chains ending in a ReLU6 where a ReLU would complete one of torch's fuser patterns."""
    import torch.nn as nn

    from qlint.model import support

    patterns = tuple((*p[:-1], nn.ReLU6) for p in support.fusion_patterns() if p[-1] is nn.ReLU)
    return _chain_nodes(qg, patterns)


def _match(qg, start: str, pattern: tuple[type, ...]) -> list[str] | None:
    chain = [start]
    if qg.facts(start).module_type is not pattern[0]:
        return None
    for wanted in pattern[1:]:
        users = qg.users(chain[-1])
        if len(users) != 1:
            return None
        nxt = qg.facts(users[0])
        if nxt.op != "call_module" or nxt.module_type is not wanted:
            return None
        chain.append(users[0])
    return chain


def fused_copy(root):
    """The model after its own ``fuse_model()`` (on a copy), or (None, error text)."""
    from qlint.model.loader import describe, quiet

    try:
        with quiet():
            clone = copy.deepcopy(root)
            clone.eval()
            clone.fuse_model()
        return clone, None
    except Exception as exc:  # noqa: BLE001 - the user's fuse_model may raise anything
        return None, describe(exc)


def fused_away(model, qualname: str) -> bool:
    """True when fusion replaced ``qualname`` by an Identity (conv+BN folds into a plain Conv)."""
    import torch.nn as nn

    try:
        return isinstance(model.get_submodule(qualname), nn.Identity)
    except AttributeError:
        return True


@graph_rule("QL201")
def unfused(qg) -> Iterator[Diagnostic]:
    chains = _chain_nodes(qg)
    if not chains:
        return
    has_fuse_model = callable(getattr(qg.root, "fuse_model", None))
    fused, error = fused_copy(qg.root) if has_fuse_model else (None, None)
    for chain in chains:
        names = [qg.full(qg.facts(n).module) for n in chain]
        if fused is not None and fused_away(fused, qg.facts(chain[-1]).module):
            continue  # fuse_model() fuses it: the chain's tail became an Identity
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
            chain=tuple(names),
        )
    if fused is not None and not qg.prefix:
        count = sum(fused_away(fused, qg.facts(chain[-1]).module) for chain in chains)
        if count:
            yield from _prepared_without_fuse_model(qg, count)


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
            pipeline=name,
            qat=qat,
        )


@graph_rule("QL202")
def reused(qg) -> Iterator[Diagnostic]:
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
                sites=len(nodes),
            )


@graph_rule("QL205")
def relu6_blocks_fusion(qg) -> Iterator[Diagnostic]:
    from qlint.model.analysis import site_counts

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
