"""Human output of ``qlint check``: ruff-like diagnostics with a source snippet, then a summary.

Every line is first built as a list of ``(text, style)`` segments; the plain writer joins the
texts, the colour writer turns them into ``rich.text.Text`` (never markup, so ``[`` in user text
is safe). Both paths therefore print exactly the same characters. rich is imported only when
``color=True``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TextIO

from qlint.diagnostics import Applicability, Diagnostic, Severity
from qlint.report.meta import severity_of

TAB_SIZE = 4

Segment = tuple[str, str | None]
Line = list[Segment]

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold blue"}
_GUTTER = "bold blue"
_NEWLINE = re.compile(r"\r\n|\r|\n")


def render_text(
    diagnostics: Sequence[Diagnostic],
    sources: Mapping[str, str],
    *,
    color: bool,
    out: TextIO,
    fixable_hint: bool = True,
) -> None:
    """Print every diagnostic (already sorted by the caller), each followed by a blank line.

    ``fixable_hint`` adds ruff's `` [*]`` marker after the code of diagnostics with a safe fix.
    """
    lines: list[Line] = []
    for diag in diagnostics:
        lines.extend(_diagnostic_lines(diag, sources, fixable_hint))
        lines.append([])
    _emit(lines, color=color, out=out)


def render_summary(
    diagnostics: Sequence[Diagnostic], *, color: bool, out: TextIO, files_checked: int, errors: int = 0
) -> None:
    """Print ``Found N problems (...) in M files.`` and the fixable hint, or ``All checks passed!``.

    ``M`` counts the distinct files that have diagnostics; ``files_checked`` is accepted for the
    caller's convenience but not printed (ruff does not print it either). ``errors`` counts what qlint
    could not check or write (printed on stderr, exit 2): then the checks did not all pass.
    """
    del files_checked
    if not diagnostics and errors:
        was = "was 1 error" if errors == 1 else f"were {errors} errors"
        _emit([[(f"No problems found, but there {was} (see stderr).", "bold red")]], color=color, out=out)
        return
    if not diagnostics:
        _emit([[("All checks passed!", "bold green")]], color=color, out=out)
        return
    counts = {sev: sum(severity_of(d) is sev for d in diagnostics) for sev in Severity}
    files = len({d.span.path for d in diagnostics})
    n = len(diagnostics)
    breakdown = ", ".join(
        [
            _plural(counts[Severity.ERROR], "error"),
            _plural(counts[Severity.WARNING], "warning"),
            f"{counts[Severity.INFO]} info",
        ]
    )
    lines: list[Line] = [
        [
            (f"Found {_plural(n, 'problem')}", "bold"),
            (f" ({breakdown}) in {_plural(files, 'file')}.", None),
        ]
    ]
    safe = sum(_applicability(d) is Applicability.SAFE for d in diagnostics)
    unsafe = sum(_applicability(d) is Applicability.UNSAFE for d in diagnostics)
    if safe:
        more = f" ({unsafe} more with --unsafe-fixes)" if unsafe else ""
        lines.append([("[*]", "cyan"), (f" {safe} fixable with `qlint check --fix`{more}.", None)])
    elif unsafe:
        hidden = "fix is" if unsafe == 1 else "fixes are"
        hint = f"No safe fixes available ({unsafe} {hidden} available with `qlint check --fix --unsafe-fixes`)."
        lines.append([(hint, None)])
    _emit(lines, color=color, out=out)


# ---------------------------------------------------------------------------------------------- building


def _diagnostic_lines(diag: Diagnostic, sources: Mapping[str, str], fixable_hint: bool) -> list[Line]:
    span = diag.span
    head: Line = [
        (_clean(span.path), "bold"),
        (f":{span.line}:{span.col}:", None),
        (" ", None),
        (diag.code, "bold red"),
    ]
    if fixable_hint and _applicability(diag) is Applicability.SAFE:
        head += [(" ", None), ("[*]", "cyan")]
    sev = severity_of(diag)
    head += [(" ", None), (f"[{sev.value}]", _SEVERITY_STYLE[sev]), (" ", None), (_clean(diag.message), None)]
    lines = [head]

    snippet = _snippet(diag, sources)
    width = len(str(span.line))
    pad = " " * width
    if snippet is not None:
        shown, caret_offset, caret_len = snippet
        lines.append([(f"{pad} |", _GUTTER)])
        lines.append([(f"{span.line} |", _GUTTER), (f" {shown}".rstrip(), None)])
        lines.append([(f"{pad} |", _GUTTER), (" " + " " * caret_offset, None), ("^" * caret_len, "bold red")])
    for rel in diag.related:
        where = f"{_clean(rel.span.path)}:{rel.span.line}"
        lines.append([(f"{pad} = ", _GUTTER), ("note", "bold"), (f": {where}: {_clean(rel.message)}", None)])
    if diag.fix is not None:
        lines.append([(f"{pad} = ", _GUTTER), ("help", "bold cyan"), (f": {_clean(diag.fix.message)}", None)])
    return lines


def _snippet(diag: Diagnostic, sources: Mapping[str, str]) -> tuple[str, int, int] | None:
    """``(displayed line, caret offset in cells, caret count)`` or None when the line is unknown."""
    span = diag.span
    text = sources.get(span.path)
    if text is None or span.line < 1:
        return None
    all_lines = _NEWLINE.split(text)
    if text.endswith(("\n", "\r")):
        all_lines.pop()  # the empty string after the final newline is not a line
    if span.line > len(all_lines):
        return None
    line = all_lines[span.line - 1]
    shown, starts = _layout(line)
    start = max(span.col - 1, 0)
    end_line, end_col = span.end
    end = len(line) if end_line > span.line else end_col - 1
    end = max(end, start)
    offset = _cell_at(starts, start)
    carets = _cell_at(starts, end) - offset
    return shown, offset, max(carets, 1)


def _layout(line: str) -> tuple[str, list[int]]:
    """Expand tabs and sanitise one line; ``starts[i]`` is the display cell where char ``i`` begins."""
    shown: list[str] = []
    starts: list[int] = []
    cell = 0
    for ch in line:
        starts.append(cell)
        if ch == "\t":
            step = TAB_SIZE - cell % TAB_SIZE
            shown.append(" " * step)
            cell += step
            continue
        ch = _clean(ch)
        shown.append(ch)
        cell += _char_width(ch)
    starts.append(cell)
    return "".join(shown), starts


def _cell_at(starts: list[int], index: int) -> int:
    """Display cell of char ``index``; past the end, one cell per missing char."""
    if index < len(starts):
        return starts[index]
    return starts[-1] + index - (len(starts) - 1)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _clean(text: str) -> str:
    """Replace control characters (terminal escapes, stray CR) with U+FFFD; tabs become spaces."""
    return _CONTROL.sub("\ufffd", text.replace("\t", " "))


def _applicability(diag: Diagnostic) -> Applicability | None:
    return diag.fix.applicability if diag.fix is not None else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------------------------- writing


def _emit(lines: list[Line], *, color: bool, out: TextIO) -> None:
    if not color:
        out.write("".join("".join(text for text, _ in line) + "\n" for line in lines))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(
        file=out, force_terminal=True, highlight=False, soft_wrap=True, color_system="standard", emoji=False
    )
    for line in lines:
        rich_line = Text(no_wrap=True, overflow="ignore")
        for text, style in line:
            rich_line.append(text, style=style or "")
        console.print(rich_line)
