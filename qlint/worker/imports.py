"""The project files a file imports, directly or through each other (read with ast, nothing is run).

"Project" files are the ones Python would find next to the file: in the folder it is imported from
(the top of its package chain, as qlint puts it on ``sys.path``) and, for relative imports, its package.
Installed packages are not followed (their versions are part of the cache key where they matter).
"""

from __future__ import annotations

import ast
import os

MAX_FILES = 500


def package_root(path: str) -> tuple[str, str]:
    """(the folder ``path`` is imported from, its dotted package name or '')."""
    directory = os.path.dirname(os.path.abspath(path))
    parts: list[str] = []
    while os.path.isfile(os.path.join(directory, "__init__.py")) and os.path.dirname(directory) != directory:
        directory, name = os.path.split(directory)
        parts.insert(0, name)
    return directory, ".".join(parts)


def project_imports(path: str, text: str) -> list[str]:
    """The project files ``path`` (whose content is ``text``) imports, transitively, sorted; not itself."""
    root, _ = package_root(path)
    start = os.path.abspath(path)
    seen = {start}
    queue = [(start, text)]
    while queue and len(seen) < MAX_FILES:
        current, content = queue.pop()
        for found in _imported_files(current, content, root):
            if found in seen:
                continue
            seen.add(found)
            try:
                with open(found, "rb") as fh:
                    queue.append((found, fh.read().decode("utf-8", errors="replace")))
            except OSError:
                continue
    seen.discard(start)
    return sorted(seen)


def _imported_files(path: str, text: str, root: str) -> set[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return set()
    _, package = package_root(path)
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = ".".join(p for p in (base, node.module or "") if p)
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" if module else a.name for a in node.names]
        for name in names:
            out.update(_module_files(name, root))
    return out


def _module_files(name: str, root: str) -> list[str]:
    """The files importing ``name`` from ``root`` runs: each package's ``__init__.py`` and the module."""
    if not name:
        return []
    found: list[str] = []
    folder = root
    for part in name.split("."):
        if not part.isidentifier():
            return found
        package = os.path.join(folder, part)
        module = package + ".py"
        if os.path.isfile(os.path.join(package, "__init__.py")):
            found.append(os.path.join(package, "__init__.py"))
            folder = package
        elif os.path.isfile(module):
            found.append(module)
            return found
        else:
            return found
    return found
