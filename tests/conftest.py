"""Shared helpers: write model files, run the real CLI in-process or as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qlint.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_result_cache(tmp_path_factory):
    """The suite's runs cache their results in a folder of their own, not in the checkout."""
    previous = os.environ.get("QLINT_CACHE_DIR")
    os.environ["QLINT_CACHE_DIR"] = str(tmp_path_factory.mktemp("qlint-cache"))
    yield
    if previous is None:
        os.environ.pop("QLINT_CACHE_DIR", None)
    else:
        os.environ["QLINT_CACHE_DIR"] = previous


@pytest.fixture
def write(tmp_path):
    """write("model.py", source) -> path (dedented), inside a fresh temporary folder."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def qlint(capsys, monkeypatch):
    """qlint(*args) -> (exit code, stdout, stderr), running the CLI entry point in-process."""

    def _run(*args: str | os.PathLike, cwd: Path | None = None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()  # drop what the test itself printed before (e.g. torch's log lines in a real flow)
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def qlint_json(qlint):
    """qlint_json(path, *args) -> (exit code, list of diagnostic dicts)."""

    def _run(*args: str | os.PathLike, cwd: Path | None = None):
        code, out, err = qlint("check", *args, "--format", "json", cwd=cwd)
        assert err == "" or code == 2, err
        return code, json.loads(out)

    return _run


def run_subprocess(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qlint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def codes(diagnostics: list[dict]) -> list[tuple[str, int]]:
    """(code, row) pairs, sorted."""
    return sorted((d["code"], d["location"]["row"]) for d in diagnostics)
