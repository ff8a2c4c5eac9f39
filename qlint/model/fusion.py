"""Fusion queries on a QGraph: the chains torch's eager fuser could fuse, ReLU6 blocking one, and
the model after its own ``fuse_model()``. Rules, fixes, ``emit`` and ``verify`` share them."""

from __future__ import annotations

import copy


def fusion_chains(qg) -> list[list[str]]:
    """Qualified module names of every chain eager ``fuse_modules`` could fuse, in graph order.

    A chain follows torch's fuser patterns (Conv-BN-ReLU, Conv-BN, Conv-ReLU, Linear-ReLU, ...),
    longest first, and each inner output must feed only the next module.
    """
    return [[qg.full(qg.facts(n).module) for n in chain] for chain in chain_nodes(qg)]


def chain_nodes(qg, patterns: tuple[tuple[type, ...], ...] | None = None) -> list[list[str]]:
    """Node chains matching ``patterns`` (default: torch's fuser patterns), longest first, disjoint."""
    from qlint.model import support

    patterns = support.fusion_patterns() if patterns is None else patterns
    used: set[str] = set()
    chains = []
    for name, _ in qg.nodes("call_module"):
        if name in used:
            continue
        for pattern in patterns:
            chain = match(qg, name, pattern)
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
    return chain_nodes(qg, patterns)


def match(qg, start: str, pattern: tuple[type, ...]) -> list[str] | None:
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


def pipeline_fused_copy(root, path: str, function: str, chain_tails: list[str]):
    """(the model after the file's own fusing ``function``, run on a copy; the qualified name of the
    submodule it was given), or None. ``function`` is a module-level function fusing its argument by
    hand (see ``qlint.source.pipeline.fusing_functions``).

    The function is given the root, then each submodule in turn (``fuse(build_resnet())`` while the
    checked model is ``Qresnet(build_resnet())``), and the first target it runs on and fuses some
    of ``chain_tails`` in is kept.
    """
    import os
    import sys

    from qlint.model.loader import quiet

    here = os.path.abspath(path)
    module = next(
        (m for m in list(sys.modules.values()) if os.path.abspath(getattr(m, "__file__", "") or "") == here), None
    )
    fuse = getattr(module, function, None)
    if not callable(fuse):
        return None
    names = [""] + [name for name, _ in root.named_modules() if name and name.count(".") < 2]
    for name in names:
        try:
            with quiet():
                clone = copy.deepcopy(root)
                fuse(clone.get_submodule(name))
        except Exception:  # noqa: BLE001 - not the model this function fuses: try the next candidate
            continue
        if any(fused_away(clone, tail) for tail in chain_tails):
            return clone, name
    return None
