"""The command line as users meet it: exit codes, formats, options, config, suppression, bad input."""

from __future__ import annotations

import json

from conftest import ROOT, codes, run_subprocess

FLOAT_ADD = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        x = self.quant(x)
        out = self.conv(x)
        out += x{noqa}
        return self.dequant(out)
"""


def test_text_output_shows_the_line_and_a_summary(write, qlint):
    path = write("net.py", FLOAT_ADD.format(noqa=""))
    code, out, err = qlint("check", path)
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == (
        f"{path}:14:9: QL103 [*] [error] `+=` on a quantized tensor has no quantized kernel (QuantizedCPU): "
        "use a FloatFunctional declared in __init__ (e.g. `self.skip_add.add(a, b)`)"
    )
    assert lines[2] == "14 |         out += x"
    assert lines[3] == "   |         ^^^^^^^^"
    assert lines[4].startswith("   = help: ")
    assert lines[-2:] == [
        "Found 1 problem (1 error, 0 warnings, 0 info) in 1 file.",
        "[*] 1 fixable with `qlint check --fix`.",
    ]
    assert "\x1b[" not in out  # no colour when piped


def test_noqa_and_file_level_noqa(write, qlint):
    assert qlint("check", write("a.py", FLOAT_ADD.format(noqa="  # noqa: QL103")))[0] == 0
    assert qlint("check", write("b.py", FLOAT_ADD.format(noqa="  # noqa")))[0] == 0
    assert qlint("check", write("c.py", FLOAT_ADD.format(noqa="  # noqa: QL201")))[0] == 1
    assert qlint("check", write("d.py", "# qlint: noqa\n" + FLOAT_ADD.format(noqa="")))[0] == 0


def test_select_ignore_and_exit_zero(write, qlint):
    path = write("net.py", FLOAT_ADD.format(noqa=""))
    assert qlint("check", path, "--ignore", "QL103")[0] == 0
    assert qlint("check", path, "--select", "QL2")[0] == 0
    assert qlint("check", path, "--select", "QL1")[0] == 1
    code, out, _ = qlint("check", path, "--exit-zero")
    assert code == 0 and "QL103" in out
    code, _, err = qlint("check", path, "--select", "XYZ1")
    assert code == 2 and "unknown rule code" in err and "XYZ1" in err


def test_config_table_select_per_file_ignores_and_unknown_key(write, qlint, tmp_path):
    write("models/net.py", FLOAT_ADD.format(noqa=""))
    write("pyproject.toml", '[tool.qlint]\nper-file-ignores = {"models/*.py" = ["QL103"]}\n')
    assert qlint("check", "models", cwd=tmp_path)[0] == 0
    write("pyproject.toml", '[tool.qlint]\nignore = ["QL1"]\n')
    assert qlint("check", "models", cwd=tmp_path)[0] == 0
    write("pyproject.toml", '[tool.qlint]\nselct = ["QL1"]\n')
    code, out, err = qlint("check", "models", cwd=tmp_path)
    assert code == 2 and out == ""
    assert "unknown key 'selct' in [tool.qlint]" in err and err.count("\n") == 1
    write("pyproject.toml", '[tool.qlint]\nbackend = "arm"\n')
    code, _, err = qlint("check", "models", cwd=tmp_path)
    assert code == 2 and "unknown backend 'arm'" in err


def test_github_and_sarif_formats(write, qlint):
    path = write("net.py", FLOAT_ADD.format(noqa=""))
    code, out, _ = qlint("check", path, "--format", "github")
    assert code == 1
    assert out.startswith(f"::error file={path},line=14,col=9,endLine=14,endColumn=17,title=QL103 ")
    code, out, _ = qlint("check", path, "--format", "sarif")
    sarif = json.loads(out)
    assert sarif["version"] == "2.1.0"
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["QL103"]


def test_syntax_error_is_ql000_and_other_files_are_still_checked(write, qlint_json, tmp_path):
    write("broken.py", "def f(:\n    pass\n")
    write("net.py", FLOAT_ADD.format(noqa=""))
    code, diags = qlint_json(tmp_path)
    assert code == 1
    assert [(d["code"], d["filename"].rsplit("/", 1)[-1], d["location"]["row"]) for d in diags] == [
        ("QL000", "broken.py", 1),
        ("QL103", "net.py", 14),
    ]
    assert diags[0]["message"].startswith("SyntaxError:")


def test_non_utf8_and_non_python_and_missing_paths(write, qlint, tmp_path):
    bad = write("latin.py", "x = 1\ny = '\xe9'\n".encode("latin-1"))
    code, out, err = qlint("check", bad)
    assert code == 1 and f"{bad}:2:6: QL000" in out and "not valid UTF-8" in out
    notes = write("notes.txt", "hello")
    code, out, err = qlint("check", notes, tmp_path / "missing.py")
    assert code == 2
    assert f"{notes}: not a Python file" in err and "missing.py: no such file or directory" in err
    assert "Traceback" not in err


def test_check_never_writes_the_users_files(write, qlint, tmp_path):
    path = write("net.py", FLOAT_ADD.format(noqa=""))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    qlint("check", tmp_path)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert after == before and path.read_bytes() == before[path]


def test_rule_and_rules_commands(qlint):
    code, out, _ = qlint("rule", "QL101")
    assert code == 0 and out.startswith("# QL101: missing-quant-stub") and "## Why is this bad?" in out
    code, out, _ = qlint("rules")
    rows = out.splitlines()
    assert rows[0].split()[:4] == ["code", "name", "severity", "fix"]
    assert any(r.split()[:3] == ["QL201", "unfused-conv-bn-relu", "warning"] for r in rows)
    code, out, _ = qlint("rules", "--format", "json")
    assert {r["code"] for r in json.loads(out)} >= {"QL000", "QL101", "QL401"}
    assert qlint("rule", "QL999")[0] == 2


def test_python_dash_m_and_no_graph_never_imports_torch_or_libcst_matchers(write):
    path = write("net.py", FLOAT_ADD.format(noqa="") + "\nx = y.cuda()\n")
    result = run_subprocess("check", str(path), "--no-graph", "--format", "json")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    probe = (
        "import sys; from qlint.cli import main; code = main(['check', '--no-graph', sys.argv[1]]); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code, 'libcst.matchers' in sys.modules)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=ROOT)
    # libcst.matchers costs 0.4 s to import: the rules that use it import it only when they run
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH 0 False"


def test_internal_errors_and_bad_arguments_exit_2(write, qlint, monkeypatch):
    code, _, err = qlint("check", write("net.py", "x = 1\n"), "--input-shape", "banana")
    assert code == 2 and "invalid input shape" in err

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("qlint.engine.check_source", boom)
    code, out, err = qlint("check", write("m.py", "x = 1\n"))
    assert code == 2 and err.startswith("qlint: internal error: RuntimeError: kaboom")


def test_library_models_from_one_file_report_each_line_once(write, qlint_json):
    path = write(
        "two.py",
        """
        import torchvision
        from torch import nn


        def build() -> nn.Module:
            return torchvision.models.resnet18(weights=None)
        """,
    )
    _, diags = qlint_json(path, "--select", "QL202")
    # resnet18 reuses `relu` in all 8 BasicBlocks: one library line, so one diagnostic
    assert codes(diags) == [("QL202", 6)]
    assert diags[0]["related"][0]["filename"] == "torchvision/models/resnet.py"


def test_output_piped_into_a_reader_that_leaves_early(write):
    import subprocess
    import sys

    path = write("net.py", FLOAT_ADD.format(noqa=""))
    pipeline = f"{sys.executable} -m qlint rule QL301 | head -1; {sys.executable} -m qlint check {path} | head -1"
    out = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=300)
    assert out.stdout.splitlines()[0] == "# QL301: dilated-grouped-conv"
    assert "QL103" in out.stdout.splitlines()[1]
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    gone = subprocess.run(["bash", "-c", f"{sys.executable} -m qlint rules | true"], capture_output=True, text=True)
    assert gone.stderr == ""  # the reader exited before qlint wrote: no BrokenPipeError, no traceback
