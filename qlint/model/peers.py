"""Which classes of a file the other files of the same run use: those are checked through their models.

A block class (``mynet/blocks.py``) that a model in another checked file (``mynet/model.py``) imports is
analysed inside that model, where its constructor arguments are known; it is not built or reported alone.
Purely syntactic (``ast``), nothing is imported.
"""

from __future__ import annotations

import ast
import os
from functools import lru_cache


def used_by_peers(path: str, checked: tuple[str, ...], factories: tuple[str, ...] = ()) -> frozenset[str]:
    """Names that another file of ``checked`` imports (``from .blocks import Block``, or ``blocks.Block``
    through a module alias) and uses inside a class or a factory function (named in ``factories``): the
    places where qlint builds models. A test file that only imports ``Net`` leaves ``Net`` to its file."""
    me = os.path.realpath(path)
    names: set[str] = set()
    for other in checked:
        real = os.path.realpath(other)
        if real == me:
            continue
        try:
            stamp = os.stat(real).st_mtime_ns
        except OSError:
            continue
        names |= _names_models_use(real, stamp, factories)
    return frozenset(names)


@lru_cache(maxsize=1024)
def _names_models_use(path: str, stamp: int, factories: tuple[str, ...]) -> frozenset[str]:
    del stamp  # part of the cache key: an edited file is read again
    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    imported = {alias.asname or alias.name: alias.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                for alias in n.names}  # fmt: skip
    builders = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    builders += [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in factories]
    used: set[str] = set()
    for builder in builders:
        for node in ast.walk(builder):
            if isinstance(node, ast.Name) and node.id in imported:
                used.add(imported[node.id])
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                used.add(node.attr)  # blocks.Block
    return frozenset(used)
