"""The result cache: a hit skips torch; an edit to the file or to a project file it imports is a miss."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from test_isolation import MODEL_USING_HELPERS


def _check_in_a_fresh_process(folder, cache_dir) -> tuple[set[str], bool]:
    """(codes found, whether torch was imported) for ``qlint check folder``."""
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from qlint.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["check", {str(folder)!r}, "--format", "json"])
        print(json.dumps([sorted({{d["code"] for d in json.loads(out.getvalue())}}), "torch" in sys.modules]))
        """
    )
    env = {"QLINT_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    import json

    found, torch_imported = json.loads(run.stdout.strip().splitlines()[-1])
    return set(found), torch_imported


def test_a_cache_hit_skips_torch_and_an_edited_helper_is_a_miss(write, tmp_path):
    write("project/helpers.py", "import torch.nn as nn\n\nAct = nn.ReLU6\n")
    write("project/model.py", MODEL_USING_HELPERS)
    cache_dir = tmp_path / "cache"
    first, torch_first = _check_in_a_fresh_process(tmp_path / "project", cache_dir)
    assert "QL205" in first and torch_first
    again, torch_again = _check_in_a_fresh_process(tmp_path / "project", cache_dir)
    assert again == first and not torch_again
    write("project/helpers.py", "import torch.nn as nn\n\nAct = nn.ReLU\n")
    edited, torch_edited = _check_in_a_fresh_process(tmp_path / "project", cache_dir)
    assert "QL205" not in edited and torch_edited


def test_the_cache_folder_is_ignored_by_git_and_not_checked(write, qlint_json, tmp_path, monkeypatch):
    monkeypatch.delenv("QLINT_NO_CACHE", raising=False)
    monkeypatch.delenv("QLINT_CACHE_DIR", raising=False)
    write("pyproject.toml", "[tool.qlint]\n")
    write("model.py", MODEL_USING_HELPERS.replace("from helpers import Act", "Act = torch.nn.ReLU"))
    first = qlint_json(tmp_path, cwd=tmp_path)
    assert (tmp_path / ".qlint_cache" / ".gitignore").read_text(encoding="utf-8").strip().endswith("*")
    assert qlint_json(tmp_path, cwd=tmp_path) == first


def test_cache_dir_in_the_config_is_relative_to_its_pyproject(write, qlint_json, tmp_path, monkeypatch):
    monkeypatch.delenv("QLINT_NO_CACHE", raising=False)
    monkeypatch.delenv("QLINT_CACHE_DIR", raising=False)
    write("pyproject.toml", '[tool.qlint]\ncache-dir = "build/qcache"\n')
    write("src/model.py", MODEL_USING_HELPERS.replace("from helpers import Act", "Act = torch.nn.ReLU"))
    qlint_json(tmp_path / "src")
    assert (tmp_path / "build" / "qcache" / "CACHEDIR.TAG").is_file()
