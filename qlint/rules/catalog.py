"""The rule table as data, derived from the rule definitions: ``RULES``, pages and selection.

Torch-free: ``qlint rules`` and ``--no-graph`` use it.
"""

from __future__ import annotations

from qlint.rules.base import Basis, FixAvailability, Flow, Rule
from qlint.rules.docs import rule_page, rule_page_dir
from qlint.rules.registry import rules, select_codes

RULES: dict[str, Rule] = rules()

__all__ = ["RULES", "Basis", "FixAvailability", "Flow", "Rule", "rule_page", "rule_page_dir", "select_codes"]
