"""Checking files: source rules, then (unless ``--no-graph``) model discovery, tracing and graph rules.

Torch is imported only on the graph path, and only for files that could build a model (they import
something that depends on torch, or a pragma or the configuration names a model: ``worth_building``).
The graph path runs the user's code, so it runs in a forked child per file (``qlint.worker.fork``), never
in this process: a file that exits, crashes, hangs or prints cannot end, stall or corrupt the run; each
file sees a clean ``sys.modules`` and clean torch globals. Its results are cached (``qlint.worker.cache``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from qlint.config import Settings, clear_cache, load_settings, with_pragmas
from qlint.diagnostics import Diagnostic, Severity, Span
from qlint.model.pt2e_quiet import quiet_imports
from qlint.rules import registry
from qlint.source.file import SourceFile, UnreadableFile
from qlint.source.imports import worth_building
from qlint.source.paths import SKIP_DIRS, collect_files  # noqa: F401 - re-exported for callers of qlint.engine
from qlint.source.pragmas import malformed_pragmas
from qlint.worker import cache, fork


class InputError(Exception):
    """A path qlint cannot check (exit 2), e.g. missing or not a Python file."""


@dataclass
class FileResult:
    path: str
    source: SourceFile | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None  # qlint could not check this file at all (exit 2)
    coverage: list = field(default_factory=list)  # PT2E flow: a pt2e_facts.Statistics per annotated graph
    flow: str = "eager"  # the flow the file was checked with (eager, pt2e)


def enabled_codes(settings: Settings, path: str) -> frozenset[str]:
    """The codes reported for ``path`` under ``settings``."""
    return registry.select_codes(*settings.selection(path))


# a stage run on each file's findings after the check, e.g. attaching fixes:
# stage(diagnostics, source, settings, checked, models) -> diagnostics
Stage = Callable[[list[Diagnostic], SourceFile, Settings, tuple[str, ...], "list | None"], list[Diagnostic]]


def check_files(
    files: list[str], overrides: dict | None = None, stage: Stage | None = None, jobs: int | None = None
) -> list[FileResult]:
    """Check each file with its own settings (nearest ``[tool.qlint]`` plus ``overrides``).

    Files that run user code are checked ``jobs`` at a time (default: the ``jobs`` setting, else the
    usable cores); the results keep the order of ``files``.
    """
    clear_cache()
    checked = tuple(files)
    plans = [(path, load_settings(path, overrides)) for path in files]
    if jobs is None and plans:
        jobs = plans[0][1].jobs
    return check_many(plans, checked, stage, jobs)


def check_file(path: str, settings: Settings, checked: tuple[str, ...] = (), stage: Stage | None = None) -> FileResult:
    return check_many([(path, settings)], checked or (path,), stage)[0]


def check_many(
    plans: list[tuple[str, Settings]],
    checked: tuple[str, ...],
    stage: Stage | None = None,
    jobs: int | None = None,
    use_cache: bool = True,
) -> list[FileResult]:
    """Check each (path, settings): in this process when no user code would run, else from the cache
    or in a forked child; a child that fails gives QL001 at the file."""
    results: list[FileResult | None] = [None] * len(plans)
    settings_of = dict(plans)
    waiting: list[tuple[int, SourceFile, Settings, str | None, str | None]] = []
    for i, (path, settings) in enumerate(plans):
        try:
            source = SourceFile.read(path)
        except UnreadableFile as exc:
            results[i] = FileResult(path, None, error=str(exc))
            continue
        if not runs_user_code(source, settings):
            diagnostics, models, coverage = check_source(source, settings, checked)
            if stage is not None:
                diagnostics = stage(diagnostics, source, settings, checked, models)
            results[i] = FileResult(path, source, diagnostics, coverage=coverage)
            continue
        directory = cache.cache_dir(settings) if use_cache else None
        entry = cache.key(path, source.text, settings, checked, _stage_name(stage)) if directory else None
        hit = cache.load(directory, entry) if directory and entry else None
        if hit is not None:
            results[i] = FileResult(path, source, hit[0], coverage=hit[1])
        else:
            waiting.append((i, source, settings, directory, entry))
    if waiting:
        _preload([(source, settings) for _, source, settings, *_ in waiting])
        tasks = [
            fork.Task(_checker(source, settings, checked, stage), settings.timeout)
            for _, source, settings, *_ in waiting
        ]
        for (i, source, settings, directory, entry), value in zip(waiting, fork.run_tasks(tasks, jobs), strict=True):
            coverage: list = []
            if isinstance(value, fork.Failure):
                diagnostics = could_not_finish(source, settings, value)
            else:
                diagnostics, coverage = value
                if directory and entry:
                    cache.store(directory, entry, diagnostics, coverage)
            results[i] = FileResult(source.path, source, diagnostics, coverage=coverage)
    for result in results:
        if result is not None and result.source is not None:
            result.flow = flow_of(result.source, settings_of[result.path])
    return results  # type: ignore[return-value]


def check_isolated(
    source: SourceFile, settings: Settings, checked: tuple[str, ...], stage: Stage | None = None
) -> list[Diagnostic]:
    """``check_source`` of ``source`` (whose file may be a temporary copy), then ``stage``, in a child
    when user code would run; not cached. The fix loop lints its candidate texts with this."""
    if not runs_user_code(source, settings):
        diagnostics, models, _ = check_source(source, settings, checked)
        return stage(diagnostics, source, settings, checked, models) if stage is not None else diagnostics
    _preload([(source, settings)])
    (value,) = fork.run_tasks([fork.Task(_checker(source, settings, checked, stage), settings.timeout)], 1)
    return could_not_finish(source, settings, value) if isinstance(value, fork.Failure) else value[0]


def runs_user_code(source: SourceFile, settings: Settings) -> bool:
    """True when checking ``source`` may import it (the graph path, or a fix that builds its models)."""
    return (
        source.ok and not settings.no_graph and worth_building(source, settings) and _graph_possible(source, settings)
    )


def flow_of(source: SourceFile, settings: Settings) -> str:
    """``eager`` or ``pt2e``: ``--flow`` / ``flow``, else PT2E for a file calling ``prepare_pt2e``."""
    from qlint.source.pt2e_flow import flow_of as flow_of_text

    return flow_of_text(source.text, settings.flow) if source.ok else "eager"


def _graph_possible(source: SourceFile, settings: Settings) -> bool:
    """The PT2E graph path needs torchao (without it, ``--flow pt2e`` is a CLI error and the source
    rules run alone; a file picked for PT2E by its ``prepare_pt2e`` call gets its source rules)."""
    if flow_of(source, settings) != "pt2e":
        return True
    from qlint.model.pt2e_quantizer import torchao_available

    return torchao_available()


def could_not_finish(source: SourceFile, settings: Settings, failure: fork.Failure) -> list[Diagnostic]:
    """QL001 at the file for a check that gave no result (timeout, exit, crash), plus its source findings."""
    if failure.timed_out:
        hint = "raise `timeout` in [tool.qlint] (or --timeout) if it is only slow"
        message = f"checking the file {failure.reason} (importing, building or tracing its models); {hint}"
    else:
        message = f"qlint could not check the file's models: {failure.reason}"
    enabled = enabled_codes(settings, source.path)
    found = [*_source_diagnostics(source, enabled, settings), Diagnostic("QL001", message, Span(source.path, 1, 1))]
    return finalize(found, source, enabled)


def _checker(source: SourceFile, settings: Settings, checked: tuple[str, ...], stage: Stage | None):
    def run() -> tuple[list[Diagnostic], list]:
        diagnostics, models, coverage = check_source(source, settings, checked)
        if stage is not None:
            diagnostics = stage(diagnostics, source, settings, checked, models)
        return _portable(diagnostics), coverage

    return run


def _portable(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The diagnostics as they can cross a pipe: a rule's ``data`` that does not pickle is dropped
    (it is for the fix, which ran already)."""
    import pickle

    out = []
    for diag in diagnostics:
        try:
            pickle.dumps(diag)
            out.append(diag)
        except Exception:  # noqa: BLE001
            out.append(replace(diag, data=None))
    return out


def _stage_name(stage: Stage | None) -> str:
    return "" if stage is None else f"{getattr(stage, '__module__', '')}.{getattr(stage, '__qualname__', stage)}"


def _preload(files: list[tuple[SourceFile, Settings]]) -> None:
    """Import torch and qlint's graph path here (never user code), once, so each child starts warm.

    For files checked with the PT2E flow: torchao and qlint's PT2E path. Not the quantizer modules:
    a child imports them without inductor's passes (``annotation_only_import``), which this process,
    perhaps an API caller's that compiles, must keep."""
    modules = ["ctypes", "torch", "torchvision", "qlint.model.check", "qlint.context", "qlint.source.index"]
    if any("torchao" in s.text for s, _ in files):
        modules.append("torchao")
    pt2e = [(s, settings) for s, settings in files if flow_of(s, settings) == "pt2e"]
    if pt2e:
        modules += ["torchao", "qlint.model.pt2e_check", "torch.export"]

    with quiet_imports():  # torchao's import-time log noise is not about the checked files
        fork.preload(list(dict.fromkeys(modules)))


def check_source(
    source: SourceFile, settings: Settings, checked: tuple[str, ...]
) -> tuple[list[Diagnostic], list | None, list]:
    """All diagnostics for one file, suppressed, filtered, deduplicated and sorted; the models the eager
    graph path analysed (a later stage, e.g. the fixes, reuses them); and, on the PT2E flow, the
    coverage statistics of each annotated graph."""
    enabled = enabled_codes(settings, source.path)
    models: list | None = []
    coverage: list = []
    if not source.ok:
        found = [source.syntax_error]
    else:
        found = _source_diagnostics(source, enabled, settings) + malformed_pragmas(source)
        pt2e = flow_of(source, settings) == "pt2e"
        graph_wanted = (
            not settings.no_graph and registry.wants_graph(enabled, pt2e) and worth_building(source, settings)
        )
        if graph_wanted and not _graph_possible(source, settings):
            found.append(_pt2e_not_checked(source, enabled))
        elif graph_wanted:
            if pt2e:
                found = _one_per_line(found, _pt2e_diagnostics(source, settings, checked, enabled, coverage))
                models = None  # no eager analysis: a fix that needs the eager models builds them itself
            else:
                from qlint.model.check import load_models

                models, built = load_models(source, with_pragmas(settings, source), checked)
                found += built
                rules = registry.graph_rules(enabled)
                for checked_model in models:
                    for qgraph in checked_model.graphs:
                        found.extend(d for rule in rules for d in rule.check_graph(qgraph))
    return finalize(found, source, enabled), models, coverage


def _pt2e_diagnostics(
    source: SourceFile, settings: Settings, checked: tuple[str, ...], enabled: frozenset[str], coverage: list
) -> list[Diagnostic]:
    """The PT2E graph path: each root model exported and annotated once, queried by every PT2E rule."""
    from qlint.model.pt2e_check import coverage as coverage_of
    from qlint.model.pt2e_check import load_pt2e_models

    pt2e_models, found = load_pt2e_models(source, with_pragmas(settings, source), checked)
    for rule in registry.pt2e_rules(enabled):
        for pt2e_model in pt2e_models:
            found.extend(rule.check_pt2e(pt2e_model))
    coverage.extend(coverage_of(pt2e_models))
    return found


def _pt2e_not_checked(source: SourceFile, enabled: frozenset[str]) -> Diagnostic:
    """QL001 (info) for a file picked for PT2E by its ``prepare_pt2e`` call on a machine without torchao:
    its source rules ran, its PT2E graph checks did not (never a silent all clear)."""
    from qlint.model.pt2e_quantizer import INSTALL_HINT
    from qlint.source.pt2e_flow import pt2e_intent

    codes = ", ".join(r.code for r in registry.pt2e_rules(enabled))
    line, col = pt2e_intent(source.text).prepare_at or (1, 1)
    return Diagnostic(
        "QL001",
        f"the PT2E graph checks ({codes}) did not run: torchao is not installed (`{INSTALL_HINT}`); "
        "only the source rules checked this file",
        Span(source.path, line, col),
        severity=Severity.INFO,
    )


def _one_per_line(found: list[Diagnostic], graph: list[Diagnostic]) -> list[Diagnostic]:
    """A rule with a source and a graph half (QL504, QL510) reports a line once: the graph half's
    finding, which knows more, replaces the source half's there."""
    both = {r.code for r in registry.rules().values() if r.runs_on_source() and r.has_pt2e_check()}
    lines = {(d.code, d.span.path, d.span.line) for d in graph if d.code in both}
    return [d for d in found if (d.code, d.span.path, d.span.line) not in lines] + graph


def _source_diagnostics(source: SourceFile, enabled: frozenset[str], settings: Settings) -> list[Diagnostic]:
    rules = [r for r in registry.source_rules(enabled) if any(t in source.text for t in r.triggers)]
    if not rules:
        return []
    from qlint.source.index import index_of

    try:
        index = index_of(source)
    except Exception as exc:  # noqa: BLE001 - libcst may lag behind the newest syntax; ast accepted the file
        return [source_pass_failed(source, exc, [r.code for r in rules])]
    return [
        d
        for rule in rules
        for d in (rule.check_source(index, settings) if rule.reads_settings else rule.check_source(index))
    ]


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
