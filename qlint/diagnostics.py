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
    code: str
    message: str
    span: Span
    fix: Fix | None = None
    related: tuple[Related, ...] = ()
    model: str | None = None
    module: str | None = None
    # rule-specific facts a fixer may use (e.g. the fuse list); never printed
    data: tuple[tuple[str, object], ...] = field(default=(), compare=False)

    @property
    def rule(self):  # -> RuleInfo, imported lazily to keep this module a leaf
        from qlint.rules.catalog import RULES

        return RULES[self.code]

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    def get(self, key: str, default: object = None) -> object:
        return dict(self.data).get(key, default)

    def with_changes(self, **changes: object) -> Diagnostic:
        return replace(self, **changes)

    def sort_key(self) -> tuple:
        return (self.span.path, self.span.line, self.span.col, self.code, self.message)
