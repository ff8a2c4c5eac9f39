"""libcst helpers shared by the source-rule families.

Module-wide facts come from visitors registered with ``one_pass``: the first time a rule asks for
one (``fact``), every registered visitor walks the file together, once per index.
"""

from __future__ import annotations

import weakref
from typing import TypeVar

import libcst as cst

V = TypeVar("V", bound=cst.CSTVisitor)

_VISITORS: list[type[cst.CSTVisitor]] = []
_FACTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index -> {visitor class: visitor}


def one_pass(kind: type[V]) -> type[V]:
    """Register ``kind`` (built with no arguments; records facts, prunes nothing) for the shared pass."""
    if kind not in _VISITORS:
        _VISITORS.append(kind)
    return kind


def fact(index, kind: type[V]) -> V:
    """The ``kind`` visitor after it has walked ``index.module`` (in one pass with the others, cached)."""
    done = _FACTS.setdefault(index, {})
    if kind not in done:
        todo = {k: k() for k in dict.fromkeys((*_VISITORS, kind)) if k not in done}
        index.module.visit(_Composite(*todo.values()))
        done.update(todo)
    return done[kind]


class _Composite(cst.CSTVisitor):
    """Runs several visitors in one traversal (none of them prunes the tree)."""

    def __init__(self, *visitors: cst.CSTVisitor):
        self.visitors = visitors

    def on_visit(self, node: cst.CSTNode) -> bool:
        for visitor in self.visitors:
            visitor.on_visit(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        for visitor in self.visitors:
            visitor.on_leave(original_node)


def calls_any(index, names: set[str]) -> bool:
    """Some call in the file ends in one of ``names`` (``prepare`` for ``tq.prepare(m)``)."""
    return any(site.attr in names for site in index.calls)
