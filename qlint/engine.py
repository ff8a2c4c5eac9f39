"""Checking files: source rules, then (unless ``--no-graph``) model discovery, tracing and graph rules.

Torch is imported only on the graph path, and only for files that mention torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from qlint.config import Settings, clear_cache, load_settings, with_pragmas
from qlint.diagnostics import Diagnostic
from qlint.rules import registry
from qlint.source.file import SourceFile, UnreadableFile
from qlint.source.paths import SKIP_DIRS, collect_files  # noqa: F401 - re-exported for callers of qlint.engine


class InputError(Exception):
    """A path qlint cannot check (exit 2), e.g. missing or not a Python file."""


@dataclass
class FileResult:
    path: str
    source: SourceFile | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None  # qlint could not check this file at all (exit 2)


def check_files(files: list[str], overrides: dict | None = None) -> list[FileResult]:
    """Check each file with its own settings (nearest ``[tool.qlint]`` plus ``overrides``)."""
    clear_cache()
    checked = tuple(files)
    results = []
    for path in files:
        settings = load_settings(path, overrides)
        results.append(check_file(path, settings, checked))
    return results


def check_file(path: str, settings: Settings, checked: tuple[str, ...] = ()) -> FileResult:
    try:
        source = SourceFile.read(path)
    except UnreadableFile as exc:
        return FileResult(path, None, error=str(exc))
    return FileResult(path, source, check_source(source, settings, checked or (path,)))


def check_source(source: SourceFile, settings: Settings, checked: tuple[str, ...]) -> list[Diagnostic]:
    """All diagnostics for one file, suppressed, filtered, deduplicated and sorted."""
    enabled = settings.enabled_codes(source.path)
    models = None  # the analysed models, when the graph path ran: the fixers reuse them
    if not source.ok:
        found = [source.syntax_error]
    else:
        found = _source_diagnostics(source, enabled)
        if not settings.no_graph and "torch" in source.text and _wants_graph(enabled):
            from qlint.model.check import graph_diagnostics

            graph_found, models = graph_diagnostics(source, with_pragmas(settings, source), enabled, checked)
            found += graph_found
    from qlint.fix.attach import attach_fixes  # fills Diagnostic.fix where a fixer can repair it

    return attach_fixes(finalize(found, source, enabled), source, settings, checked, models)


def _wants_graph(enabled: frozenset[str]) -> bool:
    """A graph-basis code (QL001/QL002 come from building and tracing) or a registered graph rule."""
    from qlint.rules.catalog import RULES, Basis

    graph_rules = registry.load_graph_rules()  # torch-free: the rule modules import torch lazily
    return any(RULES[c].basis is Basis.GRAPH or c in graph_rules for c in enabled)


def _source_diagnostics(source: SourceFile, enabled: frozenset[str]) -> list[Diagnostic]:
    if not registry.source_rules_wanted(enabled, source.text):
        return []
    rules = registry.load_source_rules()
    from qlint.source.index import index_of

    try:
        index = index_of(source)
    except Exception:  # noqa: BLE001 - libcst may lag behind the newest syntax; ast accepted the file
        return []
    return registry.run(rules, index, enabled)


def finalize(found: Iterable[Diagnostic], source: SourceFile, enabled: frozenset[str]) -> list[Diagnostic]:
    """Keep enabled, unsuppressed diagnostics; report each (code, location) once; sort."""
    seen: set[tuple] = set()
    out = []
    for diag in found:
        if diag.code not in enabled or source.suppressed(diag):
            continue
        key = (diag.code, diag.span.path, diag.span.line, diag.span.col, tuple(r.span for r in diag.related))
        if key in seen:
            continue
        seen.add(key)
        out.append(diag)
    return sorted(out, key=Diagnostic.sort_key)
