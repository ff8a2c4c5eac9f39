"""Everything about a rule comes from its definition: pages, tables and tests are derived from it.

Each rule's examples run here as tests (Fixit's VALID/INVALID): an invalid example reports exactly its
expected lines (and, where the rule fixes, `--fix` writes its expected text); a valid one reports nothing.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

from qlint.rules.base import PAGE_SECTIONS, Basis, FixAvailability, Invalid, Valid
from qlint.rules.catalog import RULES, rule_page_dir
from qlint.rules.docs import page, readme_table

CHECKED = [code for code, rule in RULES.items() if Basis.MEASURED not in rule.basis]
EXAMPLES = [
    pytest.param(code, index, example, id=f"{code}-{'invalid' if isinstance(example, Invalid) else 'valid'}{index}")
    for code in CHECKED
    for index, example in enumerate(RULES[code].examples)
]


@pytest.mark.parametrize("code", sorted(RULES))
def test_checked_in_page_is_the_generated_one(code):
    path = rule_page_dir() / f"{code}.md"
    assert path.is_file(), f"rules/{code}.md is missing: run `python -m qlint.rules.docs`"
    assert path.read_text(encoding="utf-8") == page(RULES[code]), (
        f"rules/{code}.md is stale: run `python -m qlint.rules.docs`"
    )


@pytest.mark.parametrize("code", sorted(RULES))
def test_page_has_every_section_in_order(code):
    text = page(RULES[code])
    assert text.startswith(f"# {code}: {RULES[code].name}\n")
    positions = [text.find(f"\n## {s}\n") for s in PAGE_SECTIONS]
    assert -1 not in positions and positions == sorted(positions), positions
    assert f"**Fix:** {RULES[code].fix_availability.value}" in text


def test_no_page_without_a_rule():
    assert {p.stem for p in rule_page_dir().glob("QL*.md")} == set(RULES)


def test_readme_rule_table_is_the_generated_one():
    assert readme_table() in (ROOT / "README.md").read_text(encoding="utf-8"), "run `python -m qlint.rules.docs`"


@pytest.mark.parametrize("code", CHECKED)
def test_every_checked_rule_has_an_invalid_and_a_valid_example(code):
    rule = RULES[code]
    assert rule.invalid() and rule.valid(), f"{code} needs examples = (Invalid(...), Valid(...))"
    if rule.fix_availability is not FixAvailability.NONE:
        assert rule.has_fix(), f"{code} declares fixes but defines no fix()"
    else:
        assert not rule.has_fix(), f"{code} defines fix() but declares fix_availability NONE"


@pytest.mark.parametrize(("code", "index", "example"), EXAMPLES)
def test_rule_example(code, index, example, write, qlint_json, qlint):
    path = write(f"example_{code}_{index}.py", example.source)
    _, diags = qlint_json(path, "--select", code, *example.args)
    lines = tuple(d["location"]["row"] for d in diags if d["code"] == code)
    if isinstance(example, Valid):
        assert diags == [], f"{code}: a valid example is reported: {diags}"
        return
    assert lines == example.lines, f"{code}: expected findings at lines {example.lines}, got {lines}"
    if example.fixed is not None:
        flags = ("--fix", "--unsafe-fixes") if example.unsafe else ("--fix",)
        qlint("check", path, "--select", code, *flags, *example.args)
        assert path.read_text(encoding="utf-8") == example.fixed, f"{code}: the fixed text differs"


def test_every_source_rule_declares_its_trigger_words():
    assert [code for code, rule in RULES.items() if rule.runs_on_source() and not rule.triggers] == []


def test_qlint_rules_rows_are_the_definitions(qlint):
    import json

    code, out, _ = qlint("rules", "--format", "json")
    assert code == 0
    rows = [(r["code"], r["name"], r["severity"], r["fix"], r["summary"]) for r in json.loads(out)]
    assert rows == [(r.code, r.name, r.severity.value, r.fix_availability.value, r.summary) for r in RULES.values()]
    code, out, _ = qlint("rule", "QL201")
    assert out.strip() == page(RULES["QL201"]).strip()
