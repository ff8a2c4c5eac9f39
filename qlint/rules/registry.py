"""Every rule, found by importing the modules of ``qlint.rules``; selection by code or prefix.

Rule modules are torch-free at import (they import torch inside their checks), so listing the rules
costs no torch import. Modules whose name starts with ``_`` hold helpers and define no rules.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import cache

from qlint.rules.base import REGISTRY, Flow, Rule

_NOT_RULES = {"base", "registry", "docs", "catalog"}


@cache
def rules() -> dict[str, Rule]:
    """Every defined rule, by code, in code order."""
    import qlint.rules as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _NOT_RULES and not info.name.startswith("_"):
            importlib.import_module(f"qlint.rules.{info.name}")
    return dict(sorted(REGISTRY.items()))


def select_codes(select: Iterable[str] | None, ignore: Iterable[str] | None) -> frozenset[str]:
    """Codes enabled by ``select`` / ``ignore`` prefixes (``QL1``, ``QL201``, ``ALL``)."""
    select = None if select is None else list(select)
    ignore = list(ignore or ())

    def matches(code: str, prefixes: list[str]) -> bool:
        return any(p == "ALL" or code.startswith(p) for p in prefixes)

    chosen = [c for c in rules() if select is None or matches(c, select)]
    # like ruff's syntax errors, QL000 (the file does not parse) is reported whatever the selection
    return frozenset(c for c in chosen if not matches(c, ignore)) | {ALWAYS_REPORTED}


ALWAYS_REPORTED = "QL000"


def selected_by_code(
    select: Iterable[str] | None, extend_select: Iterable[str], enabled: frozenset[str]
) -> frozenset[str]:
    """The ``enabled`` codes that ``select`` / ``extend_select`` name by their own code (``QL414``, not
    ``QL4`` or ``ALL``)."""
    return frozenset(enabled & {*(select or ()), *extend_select})


def unknown_selectors(selectors: Iterable[str]) -> list[str]:
    """The selectors that name no rule: not ``ALL`` and not a prefix of a defined code (``QL130``, ``QL1O1``)."""
    codes = rules()
    return [s for s in selectors if s != "ALL" and not any(c.startswith(s) for c in codes)]


def source_rules(enabled: frozenset[str]) -> list[Rule]:
    return [r for c, r in rules().items() if c in enabled and r.runs_on_source()]


def graph_rules(enabled: frozenset[str]) -> list[Rule]:
    """The eager/FX graph checks (``check_graph`` over a traced QGraph)."""
    return [
        r
        for c, r in rules().items()
        if c in enabled and r.has_graph_check() and (r.applies_to(Flow.EAGER) or r.applies_to(Flow.FX))
    ]


def pt2e_rules(enabled: frozenset[str]) -> list[Rule]:
    """The PT2E graph checks (``check_pt2e`` over an exported, annotated model)."""
    return [r for c, r in rules().items() if c in enabled and r.has_pt2e_check() and r.applies_to(Flow.PT2E)]


def wants_graph(enabled: frozenset[str], pt2e: bool = False) -> bool:
    """An enabled rule needs the models built on the flow's graph path (``Rule.runs_on_graph``)."""
    return any(r.runs_on_graph(pt2e) for c, r in rules().items() if c in enabled)
