"""CONTRIBUTING.md's "Add a rule" steps, followed literally in a copy of the repository, give a working
rule with a page, a README row and passing generated tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT


def test_adding_the_toy_rule_takes_one_definition(tmp_path):
    guide = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    rule_source = re.search(r"```python\n(.*?)```", guide, re.S).group(1)
    repo = tmp_path / "repo"
    for part in ("qlint", "tests", "rules"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    # step 2: one new definition, nothing else edited by hand
    (repo / "qlint" / "rules" / "toy.py").write_text(rule_source, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    # step 3: the page and the README's table
    subprocess.run([sys.executable, "-m", "qlint.rules.docs"], cwd=repo, env=env, check=True, capture_output=True)
    page = (repo / "rules" / "QL999.md").read_text(encoding="utf-8")
    assert page.startswith("# QL999: toy-print\n") and "**Fix:** always" in page
    assert "| QL999 | toy-print | info | always |" in (repo / "README.md").read_text(encoding="utf-8")
    listed = subprocess.run([sys.executable, "-m", "qlint", "rules"], cwd=repo, env=env, capture_output=True, text=True)
    assert "QL999  toy-print" in listed.stdout.replace("toy-print ", "toy-print")
    # step 4: the generated tests run and pass
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_rule_pages.py", "-k", "QL999"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"\b[5-9] passed\b", run.stdout), run.stdout[-500:]
