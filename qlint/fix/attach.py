"""The fix stage: fill ``Diagnostic.fix`` for the findings a rule's fix can repair in their own file.

Callers compose it after the check (``qlint check`` does, to show what is fixable; the API only when
asked). Which rule fixes what is read off the rule definitions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from qlint.config import Settings
from qlint.context import FileContext
from qlint.diagnostics import Diagnostic
from qlint.rules.registry import rules, select_codes, selected_by_code
from qlint.source.file import SourceFile


def attach_fixes(
    diagnostics: Sequence[Diagnostic],
    source: SourceFile,
    settings: Settings | None = None,
    checked: tuple[str, ...] = (),
    models: list | None = None,
) -> list[Diagnostic]:
    """``diagnostics`` with ``fix`` set where a fix exists.

    Graph fixes need ``settings``, and use ``models`` (the check's analysed models) when given.
    """
    out = list(diagnostics)
    here = os.path.abspath(source.path)
    wanted: dict[str, list[tuple[int, Diagnostic]]] = {}
    has_class = re.search(r"^\s*class\s", source.text, re.M) is not None
    named = by_code(settings, source.path)
    for index, diag in enumerate(out):
        rule = rules().get(diag.code)
        if rule is None or not rule.has_fix() or diag.fix is not None:
            continue
        if rule.fix_edits_class and not has_class:
            continue  # the model's code is all in a library (torchvision): that is `qlint emit`
        if rule.fix_only_when_selected and diag.code not in named:
            continue  # e.g. QL414's port: `--select QL414`, not `--select QL4` or ALL
        if os.path.abspath(diag.span.path) == here:
            wanted.setdefault(diag.code, []).append((index, diag))
    if not wanted or not source.ok:
        return out
    ctx = FileContext(source, settings, checked, models, diagnostics=tuple(out))
    try:
        ctx.file  # noqa: B018 - parse now: libcst may not parse what ast accepted (then: no fixes)
    except Exception:  # noqa: BLE001
        return out
    for code, items in wanted.items():
        try:
            found = rules()[code].fix(ctx, items)
        except Exception:  # noqa: BLE001 - a fix's bug must not break `qlint check`
            if os.environ.get("QLINT_DEBUG"):
                raise
            continue
        for index, fix in found.items():
            out[index] = out[index].with_changes(fix=fix)
    return out


def by_code(settings: Settings | None, path: str) -> frozenset[str]:
    """The codes enabled for ``path`` that ``settings`` select by their own code (none without settings)."""
    if settings is None:
        return frozenset()
    select, ignore = settings.selection(path)
    return selected_by_code(settings.select, settings.extend_select, select_codes(select, ignore))
