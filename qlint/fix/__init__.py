"""Fixes: libcst-derived text edits per diagnostic, applied by ruff's loop to a fixed point.

``attach_fixes`` fills ``Diagnostic.fix``; ``fix_text`` runs the loop; ``qlint.fix.command`` is the CLI side;
``qlint.fix.emit`` writes a quantizable copy of a library model.
"""

from __future__ import annotations

from qlint.fix.attach import attach_fixes, compute_fix

__all__ = ["attach_fixes", "compute_fix"]
