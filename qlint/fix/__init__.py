"""Fixes: attach each rule's fix to its findings, then apply them ruff's way to a fixed point.

``attach_fixes`` fills ``Diagnostic.fix``; ``fix_text`` runs the loop; ``qlint.fix.emit`` writes a
quantizable copy of a library model.
"""

from __future__ import annotations

from qlint.fix.attach import attach_fixes

__all__ = ["attach_fixes"]
