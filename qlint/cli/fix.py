"""``qlint check --fix`` / ``--diff``: run the fix loop per file, write atomically, report what remains."""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from qlint.config import load_settings
from qlint.diagnostics import Diagnostic
from qlint.fix.apply import FixError, FixOutcome, fix_text, write_atomic
from qlint.source.file import SourceFile, UnreadableFile


def run_fix(args: argparse.Namespace, files: list[str], errors: list[str], overrides: dict) -> int:
    from qlint import report
    from qlint.report import use_color
    from qlint.version import __version__

    remaining: list[Diagnostic] = []
    sources: dict[str, str] = {}
    fixed = 0
    diffs = 0
    for path in files:
        outcome, error = _fix_one(path, overrides, bool(args.unsafe_fixes), tuple(files))
        if error is not None:
            errors.append(error)
            continue
        sources[path] = outcome.text
        remaining.extend(outcome.remaining)
        if not outcome.changed:
            continue
        if args.diff:
            diffs += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    outcome.original.splitlines(keepends=True),
                    outcome.text.splitlines(keepends=True),
                    fromfile=f"a/{path}",
                    tofile=f"b/{path}",
                )
            )
            fixed += outcome.fixed
            continue
        try:
            write_atomic(path, outcome.text)
        except OSError as exc:
            errors.append(
                f"{path}: could not write the fixed file ({exc.strerror or exc}); the file was left unchanged"
            )
            continue
        fixed += outcome.fixed
    for error in errors:
        print(f"qlint: error: {error}", file=sys.stderr)
    if args.diff:
        problems = f"{fixed} problem{'s' if fixed != 1 else ''}"
        print(f"Would fix {problems} in {diffs} file{'s' if diffs != 1 else ''}.", file=sys.stderr)
        return 2 if errors else (1 if diffs else 0)
    report.render(
        remaining,
        args.format,
        sources=sources,
        color=use_color(args.color),
        out=sys.stdout,
        files_checked=len(files),
        tool_version=__version__,
    )
    summary = f"Fixed {fixed} problem{'s' if fixed != 1 else ''} ({len(remaining)} remaining)."
    print(summary, file=sys.stdout if args.format == "text" else sys.stderr)
    if errors:
        return 2
    return 1 if remaining and not args.exit_zero else 0


def _fix_one(
    path: str, overrides: dict, unsafe: bool, checked: tuple[str, ...]
) -> tuple[FixOutcome | None, str | None]:
    try:
        source = SourceFile.read(path)
    except UnreadableFile as exc:
        return None, str(exc)
    settings = load_settings(path, overrides)
    if not source.ok:  # nothing to fix in a file that does not parse: report it as check does
        from qlint.engine import check_source

        outcome = FixOutcome(path, source.text, source.text)
        outcome.remaining = check_source(source, settings, checked)[0]
        return outcome, None
    try:
        return fix_text(path, source.text, settings, unsafe, checked), None
    except FixError as exc:
        return None, f"{path}: {exc}; the file was left unchanged"
    except Exception as exc:  # noqa: BLE001 - whatever happens, the file stays as it was
        if os.environ.get("QLINT_DEBUG"):
            raise
        return None, f"{path}: fixing failed with {type(exc).__name__}: {exc}; the file was left unchanged"


def run_emit(args: argparse.Namespace) -> int:
    """``qlint emit model.py -o out.py``: exit 0 when written, 2 when it cannot be emitted."""
    from qlint.fix.emit import EmitError, emit

    if not os.path.isfile(args.path):
        print(f"qlint: error: {args.path}: no such file", file=sys.stderr)
        return 2
    try:
        unsafe = getattr(args, "unsafe_fixes", False)
        name, fixed = emit(args.path, args.output, load_settings(args.path), args.model_expr, unsafe=unsafe)
    except (EmitError, FixError) as exc:
        print(f"qlint: error: {args.path}: {exc}; nothing was written", file=sys.stderr)
        return 2
    print(f"Wrote {args.output}: a quantizable `{name}` ({fixed} fixes applied to the library code).")
    return 0
