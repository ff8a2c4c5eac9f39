"""The README stays true: its rule table is the catalog, its test command is what CI runs."""

from __future__ import annotations

import re

from conftest import ROOT

from qlint.rules.catalog import RULES

README = (ROOT / "README.md").read_text()


def test_rule_table_lists_every_rule_with_its_name_severity_and_fix():
    rows = re.findall(r"^\| (QL\d{3}) \| ([a-z0-9-]+) \| (\w+) \| (\w+) \|", README, re.M)
    assert [(c, n, s, f) for c, n, s, f in rows] == [
        (r.code, r.name, r.severity.value, r.fix_availability.value) for r in RULES.values()
    ]


def test_ci_runs_the_readme_test_command():
    command = "pip install -e '.[dev,pt2e]' && python -m pytest"
    assert command in README
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == command
