"""A small directed graph with node and edge attributes, insertion-ordered.

The annotated graphs (``QGraph``, ``PT2EGraph``) need only this much of a graph library; importing
networkx costs ~0.2 s of every cold ``qlint check``. The interface is networkx's, for what is used:
``add_node``, ``add_edge``, ``nodes`` (iteration, ``nodes[name]`` -> attributes), ``edges[u, v]``,
``successors``, ``predecessors``, and ``has_path``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator


class DiGraph:
    """Nodes and edges in insertion order (for a traced graph: topological), each with an attribute dict."""

    def __init__(self) -> None:
        self.nodes: dict[Hashable, dict] = {}
        self.edges: dict[tuple[Hashable, Hashable], dict] = {}
        self._succ: dict[Hashable, dict[Hashable, None]] = {}
        self._pred: dict[Hashable, dict[Hashable, None]] = {}

    def add_node(self, name: Hashable, **attrs: object) -> None:
        if name not in self.nodes:
            self.nodes[name] = {}
            self._succ[name] = {}
            self._pred[name] = {}
        self.nodes[name].update(attrs)

    def add_edge(self, source: Hashable, target: Hashable, **attrs: object) -> None:
        self.add_node(source)
        self.add_node(target)
        self._succ[source][target] = None
        self._pred[target][source] = None
        self.edges.setdefault((source, target), {}).update(attrs)

    def successors(self, name: Hashable) -> Iterator[Hashable]:
        return iter(self._succ[name])

    def predecessors(self, name: Hashable) -> Iterator[Hashable]:
        return iter(self._pred[name])


def has_path(graph: DiGraph, source: Hashable, target: Hashable) -> bool:
    """True when ``target`` can be reached from ``source`` (a node reaches itself)."""
    seen = {source}
    stack = [source]
    while stack:
        node = stack.pop()
        if node == target:
            return True
        for nxt in graph.successors(node):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False
