"""The pre-commit hook, run by a real `pre-commit` in a temporary git repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("pre-commit") is None, reason="pre-commit is not installed")

BAD = """import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        x = self.quant(x)
        out = self.conv(x)
        out += x
        return self.dequant(out)
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_published_hooks_file_is_valid():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["qlint"]["entry"] == "qlint check" and hooks["qlint"]["language"] == "python"
    assert hooks["qlint"]["types"] == ["python"]


def test_hook_blocks_a_commit_with_a_hazard_and_passes_after_noqa(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    # a `repo: local` copy of the published hook, run with the qlint installed in this interpreter
    local = {**hook, "language": "system", "entry": f"{sys.executable} -m qlint check"}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    (repo / "model.py").write_text(BAD)
    (repo / "README.txt").write_text("not python\n")
    _git(repo, "add", ".")
    env_home = {"PRE_COMMIT_HOME": str(tmp_path / "cache"), "PATH": subprocess.os.environ["PATH"]}
    run = subprocess.run(
        ["pre-commit", "run", "--all-files"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**subprocess.os.environ, **env_home},
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "model.py:14:9: QL103 [*] [error]" in run.stdout
    (repo / "model.py").write_text(BAD.replace("out += x", "out += x  # noqa: QL103"))
    _git(repo, "add", ".")
    run = subprocess.run(
        ["pre-commit", "run", "--all-files"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**subprocess.os.environ, **env_home},
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "qlint" in run.stdout and "Passed" in run.stdout


def _readme_snippet() -> dict:
    readme = (ROOT / "README.md").read_text()
    return yaml.safe_load(re.search(r"### pre-commit\n+```yaml\n(.*?)```", readme, re.S).group(1))


def _snapshot_of_this_checkout(target: Path) -> str:
    """A git repository holding this checkout's files as they are (committed or not); its HEAD SHA."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "snapshot")
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=target, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_readme_snippet_names_a_commit_that_exists():
    (entry,) = _readme_snippet()["repos"]
    assert re.fullmatch(r"[0-9a-f]{40}", str(entry["rev"])), "no release tags: rev must be a full commit SHA"
    exists = subprocess.run(["git", "cat-file", "-e", f"{entry['rev']}^{{commit}}"], cwd=ROOT, capture_output=True)
    assert exists.returncode == 0, f"rev {entry['rev']} is not a commit of this repository"
    assert [h["id"] for h in entry["hooks"]] == ["qlint"]


def test_readme_snippet_works_as_written_with_pre_commit(tmp_path):
    """The README's snippet, with its repo and rev resolved to this checkout, blocks a hazard."""
    clone = tmp_path / "qlint-clone"
    clone.mkdir()
    sha = _snapshot_of_this_checkout(clone)
    config = _readme_snippet()
    config["repos"][0].update(repo=str(clone), rev=sha)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    (repo / "model.py").write_text(BAD)
    _git(repo, "add", ".")
    env = {
        **subprocess.os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        # the hook's virtualenv sees this interpreter's torch instead of downloading it again
        "VIRTUALENV_SYSTEM_SITE_PACKAGES": "1",
    }
    run = subprocess.run(
        ["pre-commit", "run", "--all-files"], cwd=repo, capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "model.py:14:9: QL103 [*] [error]" in run.stdout
