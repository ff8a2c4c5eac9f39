"""Every rule has a page; each page's Example triggers its rule and its Use-instead does not."""

from __future__ import annotations

import re

import pytest

from qlint.rules.catalog import RULES, Basis, rule_page, rule_page_dir

SECTIONS = [
    "## What it does",
    "## Why is this bad?",
    "## Example",
    "## Use instead",
    "## Fix safety",
    "## References",
]
CHECKED = [code for code, rule in RULES.items() if rule.basis is not Basis.MEASURED]


def _block(page: str, heading: str) -> str:
    section = page.split(heading, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {heading}"
    return match.group(1)


@pytest.mark.parametrize("code", sorted(RULES))
def test_page_exists_with_every_section(code):
    page = rule_page(code)
    assert page is not None, f"rules/{code}.md is missing"
    assert page.startswith(f"# {code}: {RULES[code].name}\n")
    positions = [page.find(s) for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), positions


def test_no_page_without_a_rule():
    assert {p.stem for p in rule_page_dir().glob("QL*.md")} == set(RULES)


@pytest.mark.parametrize("code", CHECKED)
def test_example_triggers_and_use_instead_does_not(code, write, qlint_json):
    page = rule_page(code)
    bad = write(f"example_{code}.py", _block(page, "## Example"))
    good = write(f"use_instead_{code}.py", _block(page, "## Use instead"))
    _, diags = qlint_json(bad, "--select", code)
    assert code in {d["code"] for d in diags}, f"{code}: the page's Example is not reported"
    _, diags = qlint_json(good, "--select", code)
    assert diags == [], f"{code}: the page's Use instead is reported: {diags}"


def test_every_source_rule_declares_its_trigger_words():
    from qlint.rules.registry import load_source_rules

    assert {code: RULES[code].triggers for code in load_source_rules() if not RULES[code].triggers} == {}
