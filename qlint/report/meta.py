"""A diagnostic's rule name and severity: as the engine stamped them, else from the rule definitions."""

from __future__ import annotations

from qlint.diagnostics import Diagnostic, Severity
from qlint.rules.registry import rules


def name_of(diag: Diagnostic) -> str:
    return diag.name or rules()[diag.code].name


def severity_of(diag: Diagnostic) -> Severity:
    return diag.severity or rules()[diag.code].severity


def url_of(diag: Diagnostic) -> str:
    return rules()[diag.code].url
