"""The fix loop (ruff's): keep fixes of the requested applicability, sort, skip conflicts, apply,
re-parse, re-lint (the real check, graph included), repeat to a fixed point.

The candidate text is linted from a temporary copy in a private folder outside the checked tree, set up
so that its imports resolve as the original's do; the original is written once, only when everything
succeeded, keeping its links, mode, encoding and line endings (``write_atomic``).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import linecache
import os
import re
import shutil
import stat
import sys
import tempfile
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from qlint.config import Settings
from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related, Span
from qlint.rules.registry import rules
from qlint.source.file import SourceFile, source_encoding, text_encoding

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
    """Settings whose enabled codes do not depend on the file name (the candidate lives elsewhere): the
    per-file ignores that match ``path`` join ``ignore``; ``select`` stays as written (a rule whose fix
    is ``fix_only_when_selected`` reads whether its code is named there)."""
    ignore = settings.selection(path)[1]
    return replace(settings, ignore=ignore, extend_ignore=(), per_file_ignores={})


@contextlib.contextmanager
def candidate_file(path: str, text: str) -> Iterator[str]:
    """A temporary copy of ``text`` that imports as ``path`` would, in a private folder outside the checked tree.

    Nothing is written next to ``path``: a run killed mid-fix (even by SIGKILL) leaves no copy of the
    model in the user's folder, only a ``qlint-fix-*`` folder in the system's temporary directory. The
    private folder mirrors ``path``'s package chain with stand-in ``__init__.py`` files that run the
    real ones with ``__path__`` set to the real folders, so ``from .x import y`` resolves as it does
    for ``path``; the folder ``path`` is imported from (its package root) is put on sys.path, so
    ``import helpers`` does too. The copy is stored in the encoding that ``text`` declares (PEP 263).
    Afterwards the folder, the modules loaded from it and the sys.path entries added are removed.
    """
    root, packages = _package_chain(os.path.abspath(path))
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    data = _encode(text)
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    workdir = tempfile.mkdtemp(prefix="qlint-fix-")
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        folder = workdir
        for package in packages:
            folder = os.path.join(folder, os.path.basename(package))
            os.mkdir(folder)
            with open(os.path.join(folder, "__init__.py"), "w", encoding="utf-8") as fh:
                fh.write(_STAND_IN.format(init=os.path.join(package, "__init__.py"), folder=package))
        fd, tmp = tempfile.mkstemp(prefix=f"_qlint_fix_{stem}_", suffix=".py", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if root not in sys.path:
            sys.path.insert(0, root)
        yield tmp
    finally:
        sys.dont_write_bytecode = old
        loaded = [name for name in sys.modules if name not in modules_before]
        stand_ins = {name for name in loaded if _loaded_from(sys.modules[name], workdir)}
        for name in loaded:
            # the copy, the stand-in packages, and what this import loaded into them (their parent is gone)
            if name in stand_ins or name.split(".")[0] in stand_ins:
                del sys.modules[name]
        sys.path[:] = [p for p in sys.path if p in path_before and p != workdir]
        shutil.rmtree(workdir, ignore_errors=True)
        for cached in [f for f in linecache.cache if f.startswith(workdir + os.sep)]:
            linecache.cache.pop(cached, None)


@contextlib.contextmanager
def candidate_module(path: str, text: str) -> Iterator[types.ModuleType]:
    """``text`` imported as ``path`` would be (``candidate_file``), as a fresh module that is not yet executed:
    the caller runs ``module.__loader__.exec_module(module)`` where its failures are its verdict."""
    import importlib.util

    with candidate_file(path, text) as tmp:
        name = os.path.splitext(os.path.basename(tmp))[0]
        spec = importlib.util.spec_from_file_location(name, tmp)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # removed with the file
        try:
            yield module
        finally:
            sys.modules.pop(name, None)


_STAND_IN = """# Stands in for {init!r} while qlint checks a fixed copy of a file of this package.
__file__ = {init!r}
__path__ = [{folder!r}]
with open(__file__, "rb") as _qlint_init:
    _qlint_code = compile(_qlint_init.read(), __file__, "exec")
del _qlint_init
exec(_qlint_code)
del _qlint_code
"""


def _package_chain(path: str) -> tuple[str, list[str]]:
    """(the folder ``path`` is imported from, the package folders from the top one down to ``path``'s)."""
    directory = os.path.dirname(path)
    packages: list[str] = []
    while os.path.isfile(os.path.join(directory, "__init__.py")) and os.path.dirname(directory) != directory:
        packages.insert(0, directory)
        directory = os.path.dirname(directory)
    return directory, packages


def _loaded_from(module: object, folder: str) -> bool:
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(module, "__file__", None) or ""
    return os.path.abspath(origin).startswith(folder + os.sep)


def _encode(text: str) -> bytes:
    """``text`` in the encoding it declares (PEP 263; UTF-8 without a declaration)."""
    encoding = text_encoding(text)
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as exc:
        line = text[: exc.start].count("\n") + 1
        raise WriteError(
            f"line {line} has {text[exc.start]!r}, which the file's declared encoding ({encoding}) cannot store"
        ) from None


def _rename(diag: Diagnostic, old: str, new: str) -> Diagnostic:
    def span(s: Span) -> Span:
        return replace(s, path=new) if os.path.abspath(s.path) == old else s

    related = tuple(Related(span(r.span), r.message.replace(old, new)) for r in diag.related)
    return replace(diag, span=span(diag.span), related=related, message=diag.message.replace(old, new))


def lint_text(path: str, text: str, settings: Settings, checked: tuple[str, ...] = ()) -> list[Diagnostic]:
    """``qlint check`` of ``text`` as if it were ``path``, fixes attached; spans point at ``path``."""
    from qlint.engine import check_isolated
    from qlint.fix.attach import attach_fixes

    settings = resolved_settings(settings, path)
    with candidate_file(path, text) as tmp:
        source = SourceFile.from_text(tmp, text)
        others = tuple(c for c in checked if os.path.abspath(c) != os.path.abspath(path))
        diags = check_isolated(source, settings, (tmp, *others), attach_fixes)  # user code runs in a child
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


class WriteError(Exception):
    """qlint will not write this file (read-only, not a regular file, text the encoding cannot store)."""


def write_refusal(path: str) -> str | None:
    """Why qlint will not overwrite the existing file ``path`` (through a link: its target), or None."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not st.st_mode & stat.S_IWUSR or not os.access(target, os.W_OK):
        return f"read-only: mode {stat.S_IMODE(st.st_mode):04o}"
    return None


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` the way the file was stored.

    - a symbolic link is written through: its target gets the text, the link stays a link;
    - a file with several hard links (or in a folder qlint cannot create files in) is rewritten in
      place, so every link sees the new text; any other file is replaced atomically (a temporary file
      in the same folder, then ``os.replace``) keeping its mode and, when permitted, its owner;
    - the bytes: the encoding ``text`` declares (PEP 263, else UTF-8), a UTF-8 BOM when the file had
      one, and the file's line ending on the lines the fixes added (CRLF stays CRLF);
    - a file without write permission, or whose mode is read-only (even for root, as an editor would),
      is refused with WriteError, as is text the declared encoding cannot store.
    """
    target = os.path.realpath(path)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        reason = write_refusal(path)
        if reason is not None:
            raise WriteError(reason)
        with open(target, "rb") as fh:
            before = fh.read()
        bom = before.startswith(b"\xef\xbb\xbf")
        try:
            text = match_line_endings(before.decode(source_encoding(before), errors="replace"), text)
        except LookupError:
            pass
    else:
        bom = False
    data = _encode(text)
    if bom and text_encoding(text) == "utf-8":
        data = b"\xef\xbb\xbf" + data
    directory = os.path.dirname(target)
    if st is not None and (st.st_nlink > 1 or not os.access(directory, os.W_OK | os.X_OK)):
        _rewrite_in_place(target, data)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.qlint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(OSError):
                    os.chown(tmp, st.st_uid, st.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _rewrite_in_place(target: str, data: bytes) -> None:
    with open(target, "r+b") as fh:
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def match_line_endings(original: str, text: str) -> str:
    """``text`` whose new lines end as the lines of ``original`` do: CRLF stays CRLF.

    A line kept from ``original`` keeps its ending; a changed line takes the ending of the line it
    replaces; an added line takes the ending of ``original``'s first line (a mixed file stays as mixed).
    """
    first = _NEWLINE.search(original)
    ending = first.group() if first else "\n"
    old, new = original.splitlines(keepends=True), text.splitlines(keepends=True)
    if ending == "\n" and "\r" not in original:
        return text
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        for k, line in enumerate(new[j1:j2]):
            if tag != "equal" and line.endswith("\n") and not line.endswith("\r\n"):
                replaced = _NEWLINE.search(old[i1 + k]) if k < i2 - i1 else None
                line = line[:-1] + (replaced.group() if replaced else ending)
            out.append(line)
    return "".join(out)


_NEWLINE = re.compile(r"\r\n|\r|\n")
