"""The fix loop (ruff's): keep fixes of the requested applicability, sort, skip conflicts, apply,
re-parse, re-lint (the real check, graph included), repeat to a fixed point.

The candidate text is linted from a temporary file next to the original (its imports must resolve
the same way); the original is written once, atomically, only when everything succeeded.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from qlint.config import Settings
from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related, Span
from qlint.rules.registry import rules
from qlint.source.file import SourceFile

MAX_ROUNDS = 10


class FixError(Exception):
    """The fixes could not be applied; the file must stay as it was."""


@dataclass
class FixOutcome:
    path: str
    original: str
    text: str
    fixed: int = 0
    remaining: list[Diagnostic] = field(default_factory=list)
    rounds: int = 0

    @property
    def changed(self) -> bool:
        return self.text != self.original


# ---- edits -----------------------------------------------------------------------------------------


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def _offset(starts: list[int], text: str, pos: tuple[int, int]) -> int:
    line, col = pos
    if line > len(starts):
        return len(text)
    return min(starts[line - 1] + col - 1, len(text))


def _is_line_insert(edit: Edit) -> bool:
    return edit.start == edit.end and edit.start[1] == 1 and edit.content.endswith("\n")


def _conflict(a: tuple[int, int, bool], b: tuple[int, int, bool]) -> bool:
    (s1, e1, line1), (s2, e2, line2) = a, b
    if line1 and line2:
        return False  # whole-line insertions stack, even at one point
    if s1 == e1 and s2 == e2:
        return s1 == s2
    if s1 == e1:
        return s2 < s1 < e2
    if s2 == e2:
        return s1 < s2 < e1
    return s1 < e2 and s2 < e1


def apply_fixes(text: str, fixes: Sequence[Fix]) -> tuple[str, list[Fix]]:
    """Apply ``fixes`` in order, skipping any fix with an edit that conflicts with one already taken.

    Identical edits are applied once; whole-line insertions at one point stack in order.
    Returns the new text and the fixes applied.
    """
    starts = _line_starts(text)
    taken: list[tuple[int, int, str, bool]] = []  # start, end, content, whole-line insertion
    applied: list[Fix] = []
    for fix in fixes:
        pending: list[tuple[int, int, str, bool]] = []
        ok = True
        for edit in fix.edits:
            item = (_offset(starts, text, edit.start), _offset(starts, text, edit.end), edit.content,
                    _is_line_insert(edit))  # fmt: skip
            if item in taken or item in pending:
                continue
            if any(_conflict((item[0], item[1], item[3]), (t[0], t[1], t[3])) for t in taken + pending):
                ok = False
                break
            pending.append(item)
        if ok:
            taken.extend(pending)
            applied.append(fix)
    out, cursor = [], 0
    order = {id(t): i for i, t in enumerate(taken)}
    for s, e, content, _ in sorted(taken, key=lambda t: (t[0], 0 if t[0] == t[1] else 1, order[id(t)])):
        out.append(text[cursor:s])
        out.append(content)
        cursor = max(cursor, e)
    out.append(text[cursor:])
    return "".join(out), applied


# ---- linting a candidate text ----------------------------------------------------------------------


def resolved_settings(settings: Settings, path: str) -> Settings:
    """Settings whose enabled codes do not depend on the file name (the candidate lives elsewhere)."""
    from qlint.engine import enabled_codes

    enabled = enabled_codes(settings, path)
    return replace(settings, select=tuple(sorted(enabled)), ignore=(), per_file_ignores={})


@contextlib.contextmanager
def candidate_file(path: str, text: str) -> Iterator[str]:
    """A temporary copy of ``text`` next to ``path`` (same imports), removed afterwards."""
    directory = os.path.dirname(os.path.abspath(path))
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"_qlint_fix_{stem}_", suffix=".py", dir=directory)
    except OSError:
        fd, tmp = tempfile.mkstemp(prefix=f"_qlint_fix_{stem}_", suffix=".py")
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        yield tmp
    finally:
        sys.dont_write_bytecode = old
        for name, module in list(sys.modules.items()):
            if os.path.abspath(getattr(module, "__file__", "") or "") == tmp:
                del sys.modules[name]
        linecache.checkcache(tmp)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _rename(diag: Diagnostic, old: str, new: str) -> Diagnostic:
    def span(s: Span) -> Span:
        return replace(s, path=new) if os.path.abspath(s.path) == old else s

    related = tuple(Related(span(r.span), r.message.replace(old, new)) for r in diag.related)
    return replace(diag, span=span(diag.span), related=related, message=diag.message.replace(old, new))


def lint_text(path: str, text: str, settings: Settings, checked: tuple[str, ...] = ()) -> list[Diagnostic]:
    """``qlint check`` of ``text`` as if it were ``path``, fixes attached; spans point at ``path``."""
    from qlint.engine import check_source
    from qlint.fix.attach import attach_fixes

    settings = resolved_settings(settings, path)
    with candidate_file(path, text) as tmp:
        source = SourceFile.from_text(tmp, text)
        others = tuple(c for c in checked if os.path.abspath(c) != os.path.abspath(path))
        diags, models = check_source(source, settings, (tmp, *others))
        diags = attach_fixes(diags, source, settings, (tmp, *others), models)
    return [_rename(d, os.path.abspath(tmp), path) for d in diags]


# ---- the loop --------------------------------------------------------------------------------------


def wanted(diags: Sequence[Diagnostic], unsafe: bool) -> list[Diagnostic]:
    ok = {Applicability.SAFE} | ({Applicability.UNSAFE} if unsafe else set())
    return [d for d in diags if d.fix is not None and d.fix.applicability in ok and d.fix.edits]


def fix_text(
    path: str, text: str, settings: Settings, unsafe: bool = False, checked: tuple[str, ...] = ()
) -> FixOutcome:
    """Apply fixes to ``text`` (the content of ``path``) until nothing fixable is left. Writes nothing."""
    outcome = FixOutcome(path, text, text)
    diags = lint_text(path, text, settings, checked)
    while True:
        candidates = wanted(diags, unsafe)
        if not candidates:
            break
        if outcome.rounds >= MAX_ROUNDS:
            codes = ", ".join(sorted({d.code for d in candidates}))
            raise FixError(f"fixes did not converge after {MAX_ROUNDS} rounds ({codes} keep coming back): a qlint bug")
        catalog = rules()  # a rule's fix_alone / fix_order: when its fixes go in a round
        first = [d for d in candidates if not catalog[d.code].fix_alone] or candidates
        first.sort(key=lambda d: (catalog[d.code].fix_order, d.span.line, d.span.col, d.code))
        new_text, applied = apply_fixes(outcome.text, [d.fix for d in first])
        if new_text == outcome.text:
            raise FixError(f"the fix for {first[0].code} at line {first[0].span.line} changes nothing: a qlint bug")
        try:
            ast.parse(new_text)
        except SyntaxError as exc:
            codes = ", ".join(sorted({d.code for d in first}))
            raise FixError(
                f"applying {codes} fixes produced invalid Python ({exc.msg}, line {exc.lineno}): a qlint bug"
            ) from None
        applied_ids = {id(f) for f in applied}
        outcome.fixed += sum(1 for d in first if id(d.fix) in applied_ids)
        outcome.text = new_text
        outcome.rounds += 1
        diags = lint_text(path, new_text, settings, checked)
    outcome.remaining = diags
    return outcome


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temp file in the same folder, then os.replace)."""
    import shutil

    directory = os.path.dirname(os.path.abspath(path))
    exists = os.path.exists(path)
    bom = False
    if exists:
        with open(path, "rb") as fh:
            bom = fh.read(3) == b"\xef\xbb\xbf"
    fd, tmp = tempfile.mkstemp(prefix=".qlint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if exists:
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
