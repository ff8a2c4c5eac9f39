"""Fill ``Diagnostic.fix`` for the diagnostics a fixer can repair in their own file."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from qlint.config import Settings
from qlint.diagnostics import Diagnostic, Fix
from qlint.source.file import SourceFile

# code -> fixer module (qlint.fix.<name>); each exposes fixes(ctx, [(index, diagnostic)]) -> {index: Fix}
FIXERS = {
    "QL101": "stubs",
    "QL102": "stubs",
    "QL103": "functional",
    "QL104": "functional",
    "QL107": "outside_stubs",
    "QL201": "fusion",
    "QL202": "reuse",
    "QL205": "relu6",
    "QL401": "devices",
    "QL403": "calibration",
}
# fixes that edit a class of the checked file (cheap pre-check before parsing anything); QL101/QL102
# are not among them: a library model built in the file is wrapped in a class the fix writes
CLASS_FIXES = {"QL103", "QL104", "QL201", "QL202"}


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
    import importlib

    out = list(diagnostics)
    here = os.path.abspath(source.path)
    wanted: dict[str, list[tuple[int, Diagnostic]]] = {}
    has_class = re.search(r"^\s*class\s", source.text, re.M) is not None
    for index, diag in enumerate(out):
        if diag.code in CLASS_FIXES and not has_class:
            continue  # the model's code is all in a library (torchvision): that is `qlint emit`
        if diag.fix is None and diag.code in FIXERS and os.path.abspath(diag.span.path) == here:
            wanted.setdefault(FIXERS[diag.code], []).append((index, diag))
    if not wanted or not source.ok:
        return out
    from qlint.fix.context import FixContext

    try:
        ctx = FixContext(source, settings, checked, models)
    except Exception:  # noqa: BLE001 - libcst may not parse what ast accepted: no fixes then
        return out
    for name, items in wanted.items():
        try:
            found = importlib.import_module(f"qlint.fix.{name}").fixes(ctx, items)
        except Exception:  # noqa: BLE001 - a fixer bug must not break `qlint check`
            if os.environ.get("QLINT_DEBUG"):
                raise
            continue
        for index, fix in found.items():
            out[index] = out[index].with_changes(fix=fix)
    return out


def compute_fix(
    diagnostic: Diagnostic, source_text: str, settings: Settings | None = None, path: str | None = None
) -> Fix | None:
    """The fix of one diagnostic against ``source_text`` (source-only fixes unless ``settings`` is given)."""
    source = SourceFile.from_text(path or diagnostic.span.path, source_text)
    return attach_fixes([diagnostic], source, settings)[0].fix
