"""The Python API: the same checks as the command line, returning Diagnostic objects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from qlint.config import Settings, load_settings
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
    if settings is not None:
        from qlint.engine import check_many

        results = check_many([(p, settings) for p in files], tuple(files), attach_fixes, settings.jobs)
    else:
        known = {f.name for f in fields(Settings)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        results = check_files(files, overrides, stage=attach_fixes)
    bad = [r.error for r in results if r.error]
    if bad:
        raise InputError("; ".join(bad))
    return [d for r in results for d in r.diagnostics]


check = check_paths


def check_source(text: str, path: str = "<string>.py", **overrides: object) -> list[Diagnostic]:
    """Check source text for the source rules only (nothing is imported or run)."""
    from qlint.engine import check_source as _check

    settings = load_settings(".", {**overrides, "no_graph": True})
    source = SourceFile.from_text(path, text)
    return attach_fixes(_check(source, settings, (path,))[0], source, settings, (path,))
