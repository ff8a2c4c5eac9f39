"""Rule implementations register here: graph rules query a QGraph, source rules a SourceIndex.

Torch-free: the graph-rule modules are imported only when a model is analysed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from qlint.diagnostics import Diagnostic
from qlint.rules.catalog import RULES

GraphRule = Callable[[object], Iterable[Diagnostic]]
SourceRule = Callable[[object], Iterable[Diagnostic]]

GRAPH_RULES: dict[str, GraphRule] = {}
SOURCE_RULES: dict[str, SourceRule] = {}

_GRAPH_MODULES = ("boundaries", "fusion", "performance", "cuda_in_graph")
_SOURCE_MODULES = ("devices", "stubs", "engines", "pipelines")


def graph_rule(*codes: str) -> Callable[[GraphRule], GraphRule]:
    """Register a function producing diagnostics of ``codes`` from a QGraph."""

    def register(fn: GraphRule) -> GraphRule:
        for code in codes:
            assert code in RULES, code
            GRAPH_RULES[code] = fn
        return fn

    return register


def source_rule(*codes: str) -> Callable[[SourceRule], SourceRule]:
    """Register a function producing diagnostics of ``codes`` from a SourceIndex."""

    def register(fn: SourceRule) -> SourceRule:
        for code in codes:
            assert code in RULES, code
            SOURCE_RULES[code] = fn
        return fn

    return register


def load_graph_rules() -> dict[str, GraphRule]:
    for name in _GRAPH_MODULES:
        importlib.import_module(f"qlint.rules.{name}")
    return GRAPH_RULES


def load_source_rules() -> dict[str, SourceRule]:
    for name in _SOURCE_MODULES:
        importlib.import_module(f"qlint.rules.{name}")
    return SOURCE_RULES


def source_rules_wanted(enabled: frozenset[str], text: str) -> bool:
    """Whether any enabled source rule could fire on ``text``, by the catalog's trigger words.

    Decided before any rule module (and libcst) is imported: a file with nothing to find costs nothing.
    Every source rule declares its trigger words (a test holds them to it).
    """
    return any(code in RULES and any(t in text for t in RULES[code].triggers) for code in enabled)


def run(rules: dict[str, Callable], subject: object, enabled: frozenset[str]) -> list[Diagnostic]:
    """Each distinct rule function once; keep only enabled codes."""
    out: list[Diagnostic] = []
    done: set[Callable] = set()
    for code, fn in rules.items():
        if code in enabled and fn not in done:
            done.add(fn)
            out.extend(d for d in fn(subject) if d.code in enabled)
    return out
