"""``qlint check --fix`` / ``--diff`` and ``qlint emit``: run the fix loop, write safely, report what remains."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import signal
import sys
from collections.abc import Iterator

from qlint.config import load_settings
from qlint.diagnostics import Diagnostic
from qlint.fix.apply import FixError, FixOutcome, WriteError, fix_text, match_line_endings, write_atomic, write_refusal
from qlint.source.file import SourceFile, UnreadableFile


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files are removed on the way), then die of it."""


def run_fix(args: argparse.Namespace, files: list[str], errors: list[str], overrides: dict) -> int:
    try:
        with _unwind_on_sigterm():
            return _run_fix(args, files, errors, overrides)
    except Terminated:
        _die_of_sigterm("files written so far are fixed; the others are unchanged")
        raise  # pragma: no cover - not reached


def _run_fix(args: argparse.Namespace, files: list[str], errors: list[str], overrides: dict) -> int:
    from qlint import report
    from qlint.report import use_color
    from qlint.version import __version__

    remaining: list[Diagnostic] = []
    sources: dict[str, str] = {}
    fixed = 0
    diffs = 0
    fixed_by_file: list[tuple[str, int]] = []
    for path in files:
        outcome, error = _fix_one(path, overrides, bool(args.unsafe_fixes), tuple(files))
        if error is not None:
            errors.append(error)
            continue
        if not outcome.changed:
            sources[path] = outcome.text
            remaining.extend(outcome.remaining)
            continue
        text = match_line_endings(outcome.original, outcome.text)
        if args.diff:
            diffs += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    outcome.original.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"a/{path}",
                    tofile=f"b/{path}",
                )
            )
            fixed += outcome.fixed
            continue
        try:
            write_atomic(path, text)
        except (OSError, WriteError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            errors.append(f"{path}: could not write the fixed file ({reason}); the file was left unchanged")
            unchanged = _unfixed(path, overrides, tuple(files))  # report what is still in the file
            sources[path] = unchanged.text
            remaining.extend(unchanged.remaining)
            continue
        sources[path] = outcome.text
        remaining.extend(outcome.remaining)
        fixed += outcome.fixed
        fixed_by_file.append((path, outcome.fixed))
    for error in errors:
        print(f"qlint: error: {error}", file=sys.stderr)
    if args.diff:
        problems = f"{fixed} problem{'s' if fixed != 1 else ''}"
        print(f"Would fix {problems} in {diffs} file{'s' if diffs != 1 else ''}.", file=sys.stderr)
        return 2 if errors else (1 if diffs else 0)
    from qlint.cli.options import failing, output_stream

    with output_stream(getattr(args, "output_file", None)) as out:
        if getattr(args, "statistics", False):
            from qlint.report.statistics import render_statistics

            render_statistics(remaining, "json" if args.format == "json" else "text", out)
        elif getattr(args, "quiet", False) and args.format == "text":
            report.render_text(remaining, sources, color=use_color(args.color) and out is sys.stdout, out=out)
        else:
            report.render(
                remaining,
                args.format,
                sources=sources,
                color=use_color(args.color) and out is sys.stdout,
                out=out,
                files_checked=len(files),
                tool_version=__version__,
                errors=len(errors),
            )
        if getattr(args, "show_fixes", False):
            from qlint.report.statistics import render_fixed

            render_fixed(fixed_by_file, out if args.format == "text" else sys.stderr)
        if not getattr(args, "quiet", False):
            summary = f"Fixed {fixed} problem{'s' if fixed != 1 else ''} ({len(remaining)} remaining)."
            print(summary, file=out if args.format == "text" else sys.stderr)
    if errors:
        return 2
    return 1 if failing(remaining, getattr(args, "fail_on", None)) and not args.exit_zero else 0


def _fix_one(
    path: str, overrides: dict, unsafe: bool, checked: tuple[str, ...]
) -> tuple[FixOutcome | None, str | None]:
    try:
        source = SourceFile.read(path)
    except UnreadableFile as exc:
        return None, str(exc)
    if not source.ok:  # nothing to fix in a file that does not parse: report it as check does
        return _unfixed(path, overrides, checked, source), None
    settings = load_settings(path, overrides)
    try:
        return fix_text(path, source.text, settings, unsafe, checked), None
    except FixError as exc:
        return None, f"{path}: {exc}; the file was left unchanged"
    except Exception as exc:  # noqa: BLE001 - whatever happens, the file stays as it was
        if os.environ.get("QLINT_DEBUG"):
            raise
        return None, f"{path}: fixing failed with {type(exc).__name__}: {exc}; the file was left unchanged"


def _unfixed(path: str, overrides: dict, checked: tuple[str, ...], source: SourceFile | None = None) -> FixOutcome:
    """``path`` as it is, with the diagnostics ``qlint check`` reports for it."""
    from qlint.engine import check_source

    source = source or SourceFile.read(path)
    outcome = FixOutcome(path, source.text, source.text)
    outcome.remaining = check_source(source, load_settings(path, overrides), checked)[0]
    return outcome


@contextlib.contextmanager
def _unwind_on_sigterm() -> Iterator[None]:
    """While fixing, SIGTERM raises Terminated, so ``finally`` blocks remove temporary files."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous not in (signal.SIG_DFL, None):
            previous = None  # the embedding program handles SIGTERM: leave it alone
        else:
            signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _die_of_sigterm(state: str) -> None:
    print(f"qlint: terminated; {state}", file=sys.stderr)
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


# ---- qlint emit ------------------------------------------------------------------------------------


def run_emit(args: argparse.Namespace) -> int:
    """``qlint emit model.py -o out.py``: exit 0 when written, 2 when it cannot be emitted."""
    if not os.path.isfile(args.path):
        print(f"qlint: error: {args.path}: no such file", file=sys.stderr)
        return 2
    problem = _output_problem(args.path, args.output, bool(getattr(args, "force", False)))
    if problem is not None:
        print(f"qlint: error: {args.output}: {problem}; nothing was written", file=sys.stderr)
        return 2
    try:
        with _unwind_on_sigterm(), _output_folder(args.output):
            return _emit(args)
    except Terminated:
        _die_of_sigterm("nothing was written")
        raise  # pragma: no cover - not reached
    except OSError as exc:  # creating the output's folder (_emit reports its own write errors)
        print(
            f"qlint: error: {args.output}: cannot create its folder ({exc.strerror or exc}); nothing was written",
            file=sys.stderr,
        )
        return 2


def _emit(args: argparse.Namespace) -> int:
    from qlint.fix.emit import EmitError, emit

    try:
        unsafe = getattr(args, "unsafe_fixes", False)
        name, fixed, notes = emit(args.path, args.output, load_settings(args.path), args.model_expr, unsafe=unsafe)
    except (EmitError, FixError) as exc:
        print(f"qlint: error: {args.path}: {exc}; nothing was written", file=sys.stderr)
        return 2
    except (OSError, WriteError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"qlint: error: {args.output}: cannot write ({reason}); nothing was written", file=sys.stderr)
        return 2
    print(f"Wrote {args.output}: a quantizable `{name}` ({fixed} fixes applied to the library code).")
    for note in notes:
        print(f"  {note}")
    return 0


def _output_problem(source: str, output: str, force: bool) -> str | None:
    """Why ``emit`` must not write ``output`` (checked before the slow part), or None."""
    if os.path.isdir(output):
        return "is a folder; name the file to write, e.g. -o " + os.path.join(output, "model_quantizable.py")
    if os.path.lexists(output):  # a file, or a link (even a dangling one) that writing would follow
        if os.path.exists(output) and os.path.samefile(output, source):
            return "is the input file; emit writes a new file: choose another -o"
        if not force:
            return "already exists; use --force to overwrite it"
        refusal = write_refusal(output)
        return None if refusal is None else f"cannot write ({refusal})"
    parent = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a folder"
    return None


@contextlib.contextmanager
def _output_folder(output: str) -> Iterator[None]:
    """Create the missing folders of ``output``; remove them again if nothing was written there."""
    created: list[str] = []
    folder = os.path.dirname(os.path.abspath(output))
    while not os.path.isdir(folder):
        created.insert(0, folder)
        folder = os.path.dirname(folder)
    for folder in created:
        os.mkdir(folder)
    try:
        yield
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only succeeds while empty, i.e. when emit wrote nothing
