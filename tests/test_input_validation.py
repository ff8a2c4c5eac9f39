"""Issue 10, defect 8: rule codes, the configuration and the command line are checked, and the
command line wins. Every test runs the real CLI on files it writes."""

from __future__ import annotations

import sys

import pytest

SOURCE_HAZARD = "import torch\nfrom torch.quantization import QuantStub\n"  # QL405, a source rule

NEEDS_ARG = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return self.fc(x)
"""


@pytest.mark.parametrize("option", ["--select", "--ignore", "--extend-select", "--extend-ignore"])
def test_unknown_codes_on_the_command_line_are_an_error_naming_them(write, qlint, option):
    path = write("m.py", SOURCE_HAZARD)
    code, out, err = qlint("check", path, "--no-graph", option, "QL130,QL1O1,QL4")
    assert code == 2
    assert "'QL130'" in err and "'QL1O1'" in err and "'QL4'" not in err and option in err
    assert "All checks passed!" not in out and out == ""


@pytest.mark.parametrize("key", ["select", "extend-select", "ignore", "extend-ignore"])
def test_unknown_codes_in_the_config_are_an_error_naming_them_and_the_file(write, qlint, tmp_path, key):
    write("m.py", SOURCE_HAZARD)
    write("pyproject.toml", f'[tool.qlint]\n{key} = ["QL1O1"]\n')
    code, out, err = qlint("check", "m.py", "--no-graph", cwd=tmp_path)
    assert code == 2 and out == ""
    assert "'QL1O1'" in err and "pyproject.toml" in err and key in err


def test_unknown_codes_in_per_file_ignores_are_an_error(write, qlint, tmp_path):
    write("m.py", SOURCE_HAZARD)
    write("pyproject.toml", '[tool.qlint]\nper-file-ignores = {"m.py" = ["QL999"]}\n')
    code, out, err = qlint("check", "m.py", "--no-graph", cwd=tmp_path)
    assert code == 2 and "'QL999'" in err and "All checks passed!" not in out


def test_the_readme_sample_selection_still_reports_a_syntax_error(write, qlint, tmp_path):
    write("broken.py", "def f(:\n")
    write("pyproject.toml", '[tool.qlint]\nselect = ["QL1", "QL2", "QL3", "QL4"]\nignore = ["QL000"]\n')
    code, out, _ = qlint("check", "broken.py", cwd=tmp_path)
    assert code == 1 and "broken.py:1:7: QL000" in out
    code, out, _ = qlint("check", "broken.py", "--select", "QL405", cwd=tmp_path)
    assert code == 1 and "QL000" in out


def test_model_on_the_command_line_beats_models_in_the_config(write, qlint, tmp_path):
    write("net.py", NEEDS_ARG)
    write("pyproject.toml", '[tool.qlint]\nmodels = ["net.py:Net(wrong=1)"]\n')
    code, out, _ = qlint("check", "net.py", "--select", "QL0", cwd=tmp_path)
    assert code == 1 and "building `Net(wrong=1)` raised" in out  # the config is used...
    code, out, _ = qlint("check", "net.py", "--select", "QL0", "--model", "Net(4)", cwd=tmp_path)
    assert code == 0 and "Net(wrong=1)" not in out, out  # ...unless the command line says otherwise


def test_config_paths_resolve_against_the_pyproject_not_the_current_folder(write, qlint, tmp_path):
    write("pkg/net.py", NEEDS_ARG)
    write("pyproject.toml", '[tool.qlint]\nmodels = ["pkg/net.py:Net(wrong=1)"]\n')
    code, out, _ = qlint("check", "net.py", "--select", "QL0", cwd=tmp_path / "pkg")
    assert code == 1 and "building `Net(wrong=1)` raised" in out


def test_a_models_entry_naming_no_file_is_an_error(write, qlint, tmp_path):
    write("net.py", NEEDS_ARG)
    write("pyproject.toml", '[tool.qlint]\nmodels = ["nett.py:Net(4)"]\n')
    code, out, err = qlint("check", "net.py", cwd=tmp_path)
    assert code == 2 and "All checks passed!" not in out
    assert "'nett.py:Net(4)' names no file" in err and "pyproject.toml" in err
    write("pyproject.toml", '[tool.qlint]\nmodels = ["net.py"]\n')
    code, out, err = qlint("check", "net.py", cwd=tmp_path)
    assert code == 2 and "must be 'path.py:EXPR'" in err


def test_ql001_hint_gives_the_path_relative_to_the_config_folder(write, qlint, tmp_path):
    write("pyproject.toml", '[tool.qlint]\nbackend = "x86"\n')
    write("src/models/net.py", NEEDS_ARG)
    code, out, _ = qlint("check", "net.py", "--select", "QL0", cwd=tmp_path / "src" / "models")
    assert code == 1 and 'models = ["src/models/net.py:Net(width=...)"]' in out


def test_api_takes_a_string_select_as_one_code_and_restores_sys_path(write, tmp_path):
    from qlint.api import check_paths

    path = write("pkg/m.py", SOURCE_HAZARD)
    write("pkg/net.py", NEEDS_ARG)
    before = list(sys.path)
    found = check_paths(str(path), select="QL405")
    assert [d.code for d in found] == ["QL405"]
    assert check_paths(str(path), select="QL101") == []  # not Q, L, 1, 0, 1
    with pytest.raises(Exception, match="QL1O1"):
        check_paths(str(path), select="QL1O1")
    check_paths(str(tmp_path / "pkg" / "net.py"), select="QL0")
    assert sys.path == before
    assert not [m for m in sys.modules.values() if str(tmp_path) in (getattr(m, "__file__", None) or "")]


@pytest.mark.parametrize(
    "options",
    [[], ["--fix"], ["--quiet"], ["--statistics"], ["--show-fixes"], ["--fail-on", "error"], ["--exit-zero"]],
)
def test_stdout_never_says_all_checks_passed_when_the_exit_code_is_2(write, qlint, tmp_path, options):
    write("clean.py", "x = 1\n")
    code, out, err = qlint("check", "clean.py", "missing.py", "--no-graph", *options, cwd=tmp_path)
    assert code == 2 and "missing.py" in err
    assert "All checks passed!" not in out
