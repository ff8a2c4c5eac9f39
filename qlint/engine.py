"""Checking files: source rules, then (unless ``--no-graph``) model discovery, tracing and graph rules.

Torch is imported only on the graph path, and only for files that could build a model (they import
something that depends on torch, or a pragma or the configuration names a model: ``worth_building``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qlint.config import Settings, clear_cache, load_settings, with_pragmas
from qlint.diagnostics import Diagnostic, Severity, Span
from qlint.rules import registry
from qlint.source.file import SourceFile, UnreadableFile
from qlint.source.imports import worth_building
from qlint.source.paths import SKIP_DIRS, collect_files  # noqa: F401 - re-exported for callers of qlint.engine
from qlint.source.pragmas import malformed_pragmas


class InputError(Exception):
    """A path qlint cannot check (exit 2), e.g. missing or not a Python file."""


@dataclass
class FileResult:
    path: str
    source: SourceFile | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None  # qlint could not check this file at all (exit 2)


def enabled_codes(settings: Settings, path: str) -> frozenset[str]:
    """The codes reported for ``path`` under ``settings``."""
    return registry.select_codes(*settings.selection(path))


# a stage run on each file's findings after the check, e.g. attaching fixes:
# stage(diagnostics, source, settings, checked, models) -> diagnostics
Stage = Callable[[list[Diagnostic], SourceFile, Settings, tuple[str, ...], "list | None"], list[Diagnostic]]


def check_files(files: list[str], overrides: dict | None = None, stage: Stage | None = None) -> list[FileResult]:
    """Check each file with its own settings (nearest ``[tool.qlint]`` plus ``overrides``)."""
    clear_cache()
    checked = tuple(files)
    results = []
    for path in files:
        settings = load_settings(path, overrides)
        results.append(check_file(path, settings, checked, stage))
    return results


def check_file(path: str, settings: Settings, checked: tuple[str, ...] = (), stage: Stage | None = None) -> FileResult:
    try:
        source = SourceFile.read(path)
    except UnreadableFile as exc:
        return FileResult(path, None, error=str(exc))
    diagnostics, models = check_source(source, settings, checked or (path,))
    if stage is not None:
        diagnostics = stage(diagnostics, source, settings, checked or (path,), models)
    return FileResult(path, source, diagnostics)


def check_source(source: SourceFile, settings: Settings, checked: tuple[str, ...]) -> tuple[list[Diagnostic], list]:
    """All diagnostics for one file, suppressed, filtered, deduplicated and sorted; and the models the
    graph path analysed (a later stage, e.g. the fixes, reuses them)."""
    enabled = enabled_codes(settings, source.path)
    models: list = []
    if not source.ok:
        found = [source.syntax_error]
    else:
        found = _source_diagnostics(source, enabled) + malformed_pragmas(source)
        if not settings.no_graph and registry.wants_graph(enabled) and worth_building(source, settings):
            from qlint.model.check import load_models

            models, built = load_models(source, with_pragmas(settings, source), checked)
            found += built
            rules = registry.graph_rules(enabled)
            for checked_model in models:
                for qgraph in checked_model.graphs:
                    found.extend(d for rule in rules for d in rule.check_graph(qgraph))
    return finalize(found, source, enabled), models


def _source_diagnostics(source: SourceFile, enabled: frozenset[str]) -> list[Diagnostic]:
    rules = [r for r in registry.source_rules(enabled) if any(t in source.text for t in r.triggers)]
    if not rules:
        return []
    from qlint.source.index import index_of

    try:
        index = index_of(source)
    except Exception as exc:  # noqa: BLE001 - libcst may lag behind the newest syntax; ast accepted the file
        return [source_pass_failed(source, exc, [r.code for r in rules])]
    return [d for rule in rules for d in rule.check_source(index)]


def source_pass_failed(source: SourceFile, exc: Exception, codes: list[str]) -> Diagnostic:
    """QL000 (as a warning): Python parses the file, qlint's source parser (libcst) does not, so the
    source rules did not look at it."""
    line = getattr(exc, "raw_line", None) or 1
    col = (getattr(exc, "raw_column", None) or 0) + 1
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return Diagnostic(
        "QL000",
        f"Python parses this file but qlint's source parser (libcst) does not ({first}): the source rules "
        f"{', '.join(sorted(codes))} did not check it",
        Span(source.path, line, col, line, col + 1),
        severity=Severity.WARNING,
    )


def finalize(found: Iterable[Diagnostic], source: SourceFile, enabled: frozenset[str]) -> list[Diagnostic]:
    """Keep enabled, unsuppressed diagnostics; report each (code, span) once (the span's end too, so
    several ops or modules on one line are several findings, while instances of one block sharing a
    call site are one); give each its rule's name, and its rule's severity unless the finding set a
    (lower) one itself; sort."""
    seen: set[tuple] = set()
    out = []
    catalog = registry.rules()
    for diag in found:
        if diag.code not in enabled or source.suppressed(diag):
            continue
        span = diag.span
        key = (diag.code, span.path, span.line, span.col, span.end, tuple(r.span for r in diag.related))
        if key in seen:
            continue
        seen.add(key)
        rule = catalog[diag.code]
        out.append(diag.with_changes(name=rule.name, severity=diag.severity or rule.severity))
    return sorted(out, key=Diagnostic.sort_key)
