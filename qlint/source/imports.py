"""Whether a file could build a model: decided from what it imports, never from a word in its text.

A file is worth importing (the graph path) when it imports a module that is not in the standard
library and could build an ``nn.Module``: torch itself, an installed distribution that depends on
torch (``timm``, ``torchvision``, ``segmentation_models_pytorch``: read from the installed
packages' metadata, nothing is imported), or a module qlint cannot place (a project module next to
the file, a relative import, a package that is not installed: importing the file is the only way
to know, and a failed import is reported rather than skipped). Modules of distributions that do not
depend on torch (``numpy``, ``requests``) do not count.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import os
import re
import sys
from functools import lru_cache

from qlint.config import Settings
from qlint.source.file import SourceFile

_TORCH = "torch"
_SITE_DIRS = ("site-packages", "dist-packages")


def imported_modules(text: str) -> list[str]:
    """The top-level names of every module ``text`` imports (anywhere in the file), in order;
    ``"."`` for a relative import. Empty when the text does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append("." if node.level else (node.module or "").split(".")[0])
    return list(dict.fromkeys(n for n in found if n))


def could_build_model(text: str) -> bool:
    """The file imports a non-standard-library module that could build an ``nn.Module``."""
    return any(module_could_build(name) for name in imported_modules(text))


@lru_cache(maxsize=512)
def module_could_build(name: str) -> bool:
    """``name`` (a top-level module, or ``"."``) is torch, depends on torch, or cannot be placed."""
    if name == ".":
        return True  # a sibling module of the file's package
    if name in sys.stdlib_module_names:
        return False
    if name == _TORCH:
        return True
    dists = _distributions_of(name)
    if dists is None:
        return True  # a project module, or one that is not installed: only importing tells
    return any(_depends_on_torch(dist) for dist in dists)


def _distributions_of(name: str) -> tuple[str, ...] | None:
    """The installed distributions providing top-level module ``name``; None when it is not an
    installed distribution's module (a project file, or not installed at all)."""
    for candidate in (name, name.replace("_", "-")):
        try:
            metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
        return (candidate,)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = (spec.origin or "") if spec is not None else ""
    locations = [origin, *(spec.submodule_search_locations or [])] if spec is not None else []
    if not any(part in _SITE_DIRS for loc in locations if loc for part in loc.split(os.sep)):
        return None
    return tuple(_module_distributions().get(name, ())) or None


@lru_cache(maxsize=1)
def _module_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())  # slow (every installed package): rarely needed


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@lru_cache(maxsize=512)
def _depends_on_torch(dist: str, depth: int = 3) -> bool:
    """``dist`` is torch or requires it (directly or through up to ``depth`` levels; extras ignored)."""
    if _normalized(dist) == _TORCH:
        return True
    if depth == 0:
        return False
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return False
    for requirement in requires:
        if "extra ==" in requirement.replace("extra==", "extra =="):
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        if match and _depends_on_torch(match[1], depth - 1):
            return True
    return False


def _normalized(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def worth_building(source: SourceFile, settings: Settings) -> bool:
    """The graph path should import ``source``: a pragma or the configuration names a model, or the
    file imports something that could build one (``could_build_model``)."""
    if source.pragma_values("model") or settings.models_for(source.path) or settings.model_exprs:
        return True
    return could_build_model(source.text)
