"""Imports flow one way: data -> analysis -> rules -> engine -> fix/verify -> report -> cli.

Read from the source with ast (lazy imports inside functions count too): no import cycle among qlint's
modules, and no module imports a layer above its own.
"""

from __future__ import annotations

import ast

from conftest import ROOT

LAYERS = [
    ("data", ("qlint.diagnostics", "qlint.config", "qlint.version")),
    ("analysis", ("qlint.source", "qlint.model", "qlint.context")),
    ("rules", ("qlint.rules",)),
    ("engine", ("qlint.engine", "qlint.worker")),
    ("fix/verify", ("qlint.fix", "qlint.verify")),
    ("report", ("qlint.report",)),
    ("cli", ("qlint.cli", "qlint.api", "qlint.__main__", "qlint")),
]


def _layer(module: str) -> int:
    best = max(
        (
            (i, len(p))
            for i, (_, prefixes) in enumerate(LAYERS)
            for p in prefixes
            if module == p or module.startswith(p + ".")
        ),
        key=lambda t: t[1],
    )
    return best[0]


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in (ROOT / "qlint").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (ast.parse(path.read_text(encoding="utf-8")), path.name == "__init__.py")
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the qlint modules it imports (anywhere in its body)."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, (tree, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted(
        f"{a} ({LAYERS[_layer(a)][0]}) -> {b} ({LAYERS[_layer(b)][0]})"
        for a, targets in import_graph().items()
        for b in targets
        if _layer(b) > _layer(a)
    )
    assert upward == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    edges = {"qlint.diagnostics": {"qlint.rules.x"}, "qlint.rules.x": {"qlint.diagnostics"}}
    assert cycles(edges) == [["qlint.diagnostics", "qlint.rules.x"]]
    assert _layer("qlint.rules.x") > _layer("qlint.diagnostics")
