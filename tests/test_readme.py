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


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text)) - {"--help"}


def test_every_option_of_check_and_verify_help_is_in_the_readme(qlint):
    for command in ("check", "verify"):
        code, out, _ = qlint(command, "--help")
        options = _options(out)
        assert code == 0 and len(options) > 10
        missing = sorted(o for o in options if not re.search(re.escape(o) + r"(?![\w-])", README))
        assert missing == [], f"qlint {command} options the README does not document: {missing}"


def test_readme_cites_only_implemented_rules():
    from qlint.rules.registry import rules

    cited = set(re.findall(r"\bQL\d{3}\b", README))
    assert cited and sorted(cited - set(rules())) == []


def test_readme_sample_config_is_valid(write, qlint, tmp_path):
    """The Configure section's toml, as written, is accepted (its models entry's file exists)."""
    toml = re.search(r"### Configure\n.*?```toml\n(.*?)```", README, re.S).group(1)
    write("pyproject.toml", toml)
    write("models/faceboxes.py", "x = 1\n")
    write("broken.py", "def f(:\n")
    code, out, err = qlint("check", "broken.py", "--no-graph", cwd=tmp_path)
    assert code == 1 and "QL000" in out, err  # QL000 whatever the selection
