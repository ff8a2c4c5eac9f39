"""A checked file: its text, its syntax check, and its ``# noqa`` / ``# qlint:`` comments."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from functools import cached_property

from qlint.diagnostics import Diagnostic, Span

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)
_FILE_NOQA = re.compile(r"#\s*qlint:\s*noqa\b", re.IGNORECASE)
_PRAGMA = re.compile(r"#\s*qlint:\s*(?P<key>[A-Za-z][\w-]*)\s*=\s*(?P<value>.+?)\s*$")


def source_encoding(data: bytes) -> str:
    """The encoding Python uses for source ``data``: "utf-8-sig" (a BOM), a PEP 263 declaration, or "utf-8".

    Raises LookupError for a declaration naming an unknown encoding (or a BOM contradicting it).
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        message = str(exc.args[0] if exc.args else exc)
        if message.startswith(("unknown encoding", "encoding problem")):
            raise LookupError(message) from None
        return "utf-8"  # no declaration and a first line that is not UTF-8: decoding names the byte
    return encoding


def text_encoding(text: str) -> str:
    """The PEP 263 encoding ``text`` declares in its first two lines ("utf-8" when none or unknown)."""
    head = "".join(text.splitlines(keepends=True)[:2]).encode("utf-8", errors="replace")
    try:
        return source_encoding(head.removeprefix(b"\xef\xbb\xbf"))
    except LookupError:
        return "utf-8"


def read_source_text(path: str) -> str:
    """The text of a Python file, decoded as Python would (undecodable bytes replaced)."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        encoding = source_encoding(data)
    except LookupError:
        encoding = "utf-8"
    return data.decode(encoding, errors="replace")


def _cookie_line(data: bytes) -> int:
    lines = data.splitlines()[:2]
    return next((i for i, line in enumerate(lines, 1) if b"coding" in line), 1)


class UnreadableFile(Exception):
    """The path cannot be read as text at all (missing, a directory, no permission)."""


@dataclass(frozen=True)
class Pragma:
    key: str
    value: str
    line: int
    col: int


@dataclass
class SourceFile:
    path: str
    text: str
    syntax_error: Diagnostic | None = None
    noqa: dict[int, frozenset[str] | None] = field(default_factory=dict)  # None = every code
    file_noqa: bool = False
    pragmas: tuple[Pragma, ...] = ()
    encoding: str = "utf-8"  # how the file is stored: "utf-8-sig" when it starts with a BOM

    @classmethod
    def read(cls, path: str) -> SourceFile:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UnreadableFile(f"{path}: cannot read file: {exc.strerror or exc}") from None
        return cls.from_bytes(path, data)

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> SourceFile:
        """Decode ``data`` as Python does: a UTF-8 BOM or a PEP 263 ``coding`` line, else UTF-8."""
        try:
            encoding = source_encoding(data)
        except LookupError as exc:
            line = _cookie_line(data)
            diag = Diagnostic("QL000", f"SyntaxError: {exc}", Span(path, line, 1, line, 2))
            return cls(path, data.decode("utf-8", errors="replace"), syntax_error=diag, encoding="utf-8")
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            shown = "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding
            diag = Diagnostic(
                "QL000",
                f"file is not valid {shown} (byte 0x{data[exc.start]:02x}); Python reads source as UTF-8 unless "
                "a PEP 263 line such as `# -*- coding: latin-1 -*-` declares another encoding",
                Span(path, line, col, line, col + 1),
            )
            return cls(path, data.decode(encoding, errors="replace"), syntax_error=diag, encoding=encoding)
        source = cls.from_text(path, text)
        source.encoding = encoding
        return source

    @classmethod
    def from_text(cls, path: str, text: str) -> SourceFile:
        source = cls(path, text)
        if "\x00" in text:
            source.syntax_error = Diagnostic(
                "QL000", "file contains a NUL byte: not Python source", Span(path, 1, 1, 1, 2)
            )
            return source
        try:
            ast.parse(text, filename=path)
        except SyntaxError as exc:
            line = exc.lineno or 1
            col = exc.offset or 1
            end_col = exc.end_offset if exc.end_lineno == line and exc.end_offset else col + 1
            source.syntax_error = Diagnostic(
                "QL000",
                f"SyntaxError: {exc.msg}",
                Span(path, line, col, line, max(end_col, col + 1)),
            )
            return source
        source._scan_comments()
        return source

    @property
    def ok(self) -> bool:
        return self.syntax_error is None

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def line_text(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""

    def pragma_values(self, key: str) -> list[Pragma]:
        return [p for p in self.pragmas if p.key == key]

    def suppressed(self, diag: Diagnostic) -> bool:
        """True when ``# qlint: noqa`` or a ``# noqa`` on the diagnostic's line covers it."""
        if self.file_noqa:
            return True
        if diag.span.path != self.path or diag.span.line not in self.noqa:
            return False
        codes = self.noqa[diag.span.line]
        return codes is None or diag.code in codes

    def _scan_comments(self) -> None:
        pragmas = []
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(self.text).readline))
        except (tokenize.TokenError, SyntaxError):
            return
        for tok in tokens:
            if tok.type != tokenize.COMMENT:
                continue
            line, col = tok.start
            comment = tok.string
            if _FILE_NOQA.match(comment):
                self.file_noqa = True
                continue
            match = _PRAGMA.match(comment)
            if match:
                pragmas.append(Pragma(match["key"], match["value"], line, col + 1))
                continue
            match = _NOQA.search(comment)
            if match:
                codes = match["codes"]
                self.noqa[line] = (
                    None if codes is None else frozenset(c.upper() for c in re.split(r"[\s,]+", codes) if c)
                )
        self.pragmas = tuple(pragmas)
