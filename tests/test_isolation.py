"""User code runs in a child process per file: it cannot end, stall, print into or leak into the run."""

from __future__ import annotations

import json
import os
import sys
import textwrap

from conftest import codes, run_subprocess

HAZARD = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x))
"""

EXITS = """
import os

import torch

os._exit(0)
"""


def by_file(diagnostics: list[dict]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[dict]] = {}
    for d in diagnostics:
        out.setdefault(os.path.basename(d["filename"]), []).append(d)
    return {name: codes(found) for name, found in out.items()}


def test_a_file_that_exits_at_import_is_ql001_and_the_run_goes_on(write, tmp_path):
    write("a_exits.py", EXITS)
    write("b_model.py", HAZARD)
    run = run_subprocess("check", str(tmp_path), "--format", "json", env={"QLINT_NO_CACHE": "1"})
    assert run.returncode == 1, run.stderr
    found = json.loads(run.stdout)
    ql001 = [d for d in found if d["filename"].endswith("a_exits.py")]
    assert [d["code"] for d in ql001] == ["QL001"]
    assert "exited (code 0)" in ql001[0]["message"]
    assert {"QL101", "QL201"} <= {code for code, _ in by_file(found)["b_model.py"]}


def test_a_crash_in_native_code_is_ql001_naming_the_signal(write, qlint_json, tmp_path):
    write("crash.py", "import ctypes\n\nimport torch\n\nctypes.string_at(0)\n")
    write("model.py", HAZARD)
    code, found = qlint_json(tmp_path)
    assert code == 1
    crash = [d for d in found if d["filename"].endswith("crash.py")]
    assert [d["code"] for d in crash] == ["QL001"]
    assert "SIGSEGV" in crash[0]["message"] and "Fatal Python error: Segmentation fault" in crash[0]["message"]
    assert any(d["filename"].endswith("model.py") and d["code"] == "QL201" for d in found)


def test_an_import_that_sleeps_times_out_and_the_other_files_are_reported(write, qlint_json, tmp_path):
    write("pyproject.toml", "[tool.qlint]\ntimeout = 3\n")
    write("a_sleeps.py", "import time\n\nimport torch\n\ntime.sleep(600)\n")
    write("b_model.py", HAZARD)
    code, found = qlint_json(tmp_path)
    assert code == 1
    slow = [d for d in found if d["filename"].endswith("a_sleeps.py")]
    assert [(d["code"], d["location"]["row"]) for d in slow] == [("QL001", 1)]
    assert "did not finish within 3 s" in slow[0]["message"]
    assert "QL201" in {d["code"] for d in found if d["filename"].endswith("b_model.py")}


PRINTS = """
import os

import torch
import torch.nn as nn

print("PRINTED-AT-IMPORT")
os.write(1, b"WRITTEN-TO-FD-1\\n")
os.write(2, b"WRITTEN-TO-FD-2\\n")
os.system("echo FROM-A-SHELL")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        print("PRINTED-IN-FORWARD")
        return self.bn(self.conv(x))
"""


def test_json_output_parses_when_the_model_prints(write, tmp_path):
    path = write("model.py", PRINTS)
    run = run_subprocess("check", str(path), "--format", "json", env={"QLINT_NO_CACHE": "1"})
    assert run.returncode == 1, run.stderr
    assert "QL201" in {d["code"] for d in json.loads(run.stdout)}
    for marker in ("PRINTED-AT-IMPORT", "WRITTEN-TO-FD", "FROM-A-SHELL", "PRINTED-IN-FORWARD"):
        assert marker not in run.stdout + run.stderr


def test_fix_of_a_printing_model_prints_only_qlints_summary(write):
    path = write("model.py", PRINTS)
    run = run_subprocess("check", str(path), "--fix", "--unsafe-fixes", env={"QLINT_NO_CACHE": "1"})
    assert "fuse_model" in path.read_text(encoding="utf-8")
    for marker in ("PRINTED-AT-IMPORT", "WRITTEN-TO-FD", "FROM-A-SHELL", "PRINTED-IN-FORWARD"):
        assert marker not in run.stdout + run.stderr


MODEL_USING_HELPERS = """
import torch
import torch.nn as nn

from helpers import Act


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.act = Act()
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.act(self.bn(self.conv(self.quant(x)))))
"""


def _two_projects(write):
    write("relu6/helpers.py", "import torch.nn as nn\n\nAct = nn.ReLU6\n")
    write("relu6/model.py", MODEL_USING_HELPERS)
    write("relu/helpers.py", "import torch.nn as nn\n\nAct = nn.ReLU\n")
    write("relu/model.py", MODEL_USING_HELPERS)


def _by_folder(found: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for d in found:
        out.setdefault(os.path.basename(os.path.dirname(d["filename"])), set()).add(d["code"])
    return out


def test_two_folders_with_their_own_helpers_give_each_file_its_own_findings(write, qlint_json, tmp_path):
    _two_projects(write)
    alone = {}
    for folder in ("relu6", "relu"):
        _, found = qlint_json(tmp_path / folder)
        alone[folder] = _by_folder(found).get(folder, set())
    assert "QL205" in alone["relu6"] and "QL205" not in alone["relu"]
    for order in (("relu6", "relu"), ("relu", "relu6")):
        _, found = qlint_json(*(tmp_path / f for f in order))
        together = _by_folder(found)
        assert {f: together.get(f, set()) for f in order} == alone


DILATED = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))
"""


def test_a_file_setting_the_quantized_engine_does_not_change_the_next_files_findings(write, qlint_json, tmp_path):
    if not any(e in ("x86", "fbgemm") for e in _engines()):
        return  # QL301 needs an x86 host engine
    write("a_sets_engine.py", 'import torch\n\ntorch.backends.quantized.engine = "qnnpack"\n')
    dilated = write("b_dilated.py", DILATED)
    _, alone = qlint_json(dilated)
    assert "QL301" in {d["code"] for d in alone}
    _, together = qlint_json(tmp_path)
    assert codes([d for d in together if d["filename"].endswith("b_dilated.py")]) == codes(alone)


def _engines() -> list[str]:
    import torch

    return [torch.backends.quantized.engine]


def test_the_python_api_leaves_sys_path_and_sys_modules_as_they_were(write, tmp_path):
    from qlint.api import check_paths

    write("helpers.py", "import torch.nn as nn\n\nAct = nn.ReLU6\n")
    write("usermodel.py", MODEL_USING_HELPERS)
    path_before, modules_before = list(sys.path), set(sys.modules)
    found = check_paths(str(tmp_path), no_cache=True)
    assert "QL205" in {d.code for d in found}
    assert sys.path == path_before
    new = set(sys.modules) - modules_before
    assert not {"helpers", "usermodel"} & set(sys.modules)
    assert not [m for m in new if str(tmp_path) in str(getattr(sys.modules[m], "__file__", "") or "")]


def test_jobs_run_files_in_parallel_with_the_output_in_a_fixed_order(write, tmp_path):
    from qlint.api import check_paths

    for i in range(4):
        write(f"m{i}.py", HAZARD if i % 2 else DILATED)
    one = check_paths(str(tmp_path), jobs=1, no_cache=True)
    two = check_paths(str(tmp_path), jobs=2, no_cache=True)
    assert [(d.span, d.code, d.message) for d in one] == [(d.span, d.code, d.message) for d in two]
    assert len({d.span.path for d in one}) == 4


def test_no_graph_imports_no_user_file_and_no_torch(write, tmp_path):
    write("model.py", EXITS)
    script = textwrap.dedent(
        f"""
        import sys
        from qlint.cli import main
        code = main(["check", {str(tmp_path)!r}, "--no-graph", "--format", "json"])
        print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)
        """
    )
    run = _python(script)
    assert run.stdout.strip().endswith("NO-TORCH 0"), run.stdout + run.stderr


def _python(script: str):
    import subprocess

    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=os.environ)


def test_a_caller_that_ran_torch_ops_can_still_check_files(write, tmp_path):
    """torch's OpenMP pool does not survive fork: the child must not wait on it."""
    import torch

    from qlint.api import check_paths

    torch.nn.Conv2d(3, 16, 3)(torch.rand(32, 3, 32, 32))  # the thread pool is now running here
    write("model.py", HAZARD)
    found = check_paths(str(tmp_path), no_cache=True, timeout=60.0)
    assert "QL001" not in {d.code for d in found}
    assert {"QL101", "QL201"} <= {d.code for d in found if d.fix is not None}
