"""Frozen data shared by every layer: spans, edits, fixes and diagnostics.

Nothing here imports torch: the source-only path (``--no-graph``) and the
reporters use these types without paying for a torch import.
Lines are 1-based; columns are 1-based character offsets (as ruff prints them);
end positions are exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Applicability(str, Enum):
    """How safe a fix is, with ruff's meaning."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    DISPLAY_ONLY = "display-only"


@dataclass(frozen=True, slots=True)
class Span:
    path: str
    line: int
    col: int = 1
    end_line: int | None = None
    end_col: int | None = None

    @property
    def end(self) -> tuple[int, int]:
        return (self.end_line or self.line, self.end_col or self.col)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the text between ``start`` and ``end`` (both (line, col)) by ``content``."""

    content: str
    start: tuple[int, int]
    end: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Fix:
    applicability: Applicability
    message: str
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, slots=True)
class Related:
    span: Span
    message: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding. ``name`` is its rule's, filled in by the engine; so is ``severity``, unless the
    finding sets one itself (``qlint verify``'s "could not tell at this noise level" is an info)."""

    code: str
    message: str
    span: Span
    fix: Fix | None = None
    related: tuple[Related, ...] = ()
    model: str | None = None
    module: str | None = None
    name: str = ""
    severity: Severity | None = None
    # the typed facts the rule found, handed to its fix (a dataclass of the rule's); never printed
    data: object = field(default=None, compare=False)

    def with_changes(self, **changes: object) -> Diagnostic:
        return replace(self, **changes)

    def sort_key(self) -> tuple:
        return (self.span.path, self.span.line, self.span.col, self.code, self.message)
