"""The Python API: the same checks as the command line, returning Diagnostic objects."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import fields

from qlint.cli.options import check_selectors, check_settings
from qlint.config import Settings, check_target_cpu, load_settings
from qlint.diagnostics import Diagnostic
from qlint.engine import InputError, check_files, collect_files
from qlint.fix.attach import attach_fixes
from qlint.source.file import SourceFile


def check_paths(paths: str | Iterable[str], settings: Settings | None = None, **overrides: object) -> list[Diagnostic]:
    """Check files or folders. ``overrides`` are Settings fields (``select=("QL1",)``, ``backend="x86"``).

    With ``settings`` given, it is used as is for every file (no pyproject lookup).
    Raises InputError for paths that are not Python files.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    files, errors = collect_files(paths)
    if errors:
        raise InputError("; ".join(errors))
    with _restoring_interpreter_state():
        if settings is not None:
            from qlint.engine import check_many

            check_settings(settings)
            results = check_many([(p, settings) for p in files], tuple(files), attach_fixes, settings.jobs)
        else:
            overrides = _checked_overrides(overrides)
            for path in files:
                check_settings(load_settings(path, overrides))
            results = check_files(files, overrides, stage=attach_fixes)
    bad = [r.error for r in results if r.error]
    if bad:
        raise InputError("; ".join(bad))
    return [d for r in results for d in r.diagnostics]


check = check_paths

_SELECTORS = ("select", "extend_select", "ignore", "extend_ignore")


def _checked_overrides(overrides: dict[str, object]) -> dict[str, object]:
    """Known Settings fields only; a selector given as one string (``select="QL101"``) is that one code."""
    known = {f.name for f in fields(Settings)} | {"config"}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    out = dict(overrides)
    for key in _SELECTORS:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = (value,)
        elif value is not None:
            out[key] = tuple(value)
        if out.get(key) is not None:
            check_selectors(out[key], key)
    if out.get("target_cpu") is not None:
        check_target_cpu(str(out["target_cpu"]))  # ConfigError naming the known CPUs
    return out


@contextlib.contextmanager
def _restoring_interpreter_state() -> Iterator[None]:
    """The caller's ``sys.path`` as it was, and none of the checked user modules left in ``sys.modules``."""
    path = list(sys.path)
    before = set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            origin = getattr(module, "__file__", None) or ""
            if name.startswith("_qlint") or (origin and not _library(origin)):
                sys.modules.pop(name, None)


def _library(origin: str) -> bool:
    """Whether a module file belongs to an installed package or qlint (kept: importing them again is slow)."""
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    origin = os.path.abspath(origin)
    return any(origin.startswith(os.path.abspath(r) + os.sep) for r in roots)


def check_source(text: str, path: str = "<string>.py", **overrides: object) -> list[Diagnostic]:
    """Check source text for the source rules only (nothing is imported or run)."""
    from qlint.engine import check_source as _check

    settings = load_settings(".", {**_checked_overrides(overrides), "no_graph": True})
    source = SourceFile.from_text(path, text)
    return attach_fixes(_check(source, settings, (path,))[0], source, settings, (path,))
