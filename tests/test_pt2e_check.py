"""``qlint check`` on the PT2E flow, through the real CLI: the examples' findings at their lines, the flow
chosen by the file, ``--quantizer``, the coverage under ``--statistics`` (text and json), and the
one-line error without torchao.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import codes, run_subprocess

pytest.importorskip("torchao")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def line_of(path: Path, text: str) -> int:
    matches = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(matches) == 1, (text, matches)
    return matches[0]


def test_silent_noop_reports_the_grad_decorator_and_nothing_quantized_by_itself(qlint_json):
    path = EXAMPLES / "pt2e_silent_noop.py"
    expected = [("QL504", line_of(path, "    @torch.no_grad()")), ("QL506", line_of(path, "class Classifier("))]
    _, found = qlint_json(path)  # the file calls prepare_pt2e: the PT2E flow is chosen by itself
    assert codes(found) == expected
    ql506 = next(d for d in found if d["code"] == "QL506")
    assert "none of the 3 compute ops" in ql506["message"] and "grad disabled" in ql506["message"]
    _, found = qlint_json(path, "--flow", "pt2e")
    assert codes(found) == expected
    _, found = qlint_json(path, "--flow", "eager")
    assert not [d for d in found if d["code"] in ("QL504", "QL506")]


def test_mobilenet_v3_se_ops_left_float_at_the_build_line(qlint_json):
    path = EXAMPLES / "pt2e_mobilenet_v3.py"
    code, found = qlint_json(path, "--flow", "pt2e")
    assert codes(found) == [("QL507", line_of(path, "return torchvision.models.mobilenet_v3_large("))]
    message = found[0]["message"]
    assert "`hardsigmoid` x8" in message and "`mul` x8" in message and "no annotation pattern" in message
    assert found[0]["related"] and all("torchvision" in r["filename"] for r in found[0]["related"])
    assert code == 1  # an info finding still fails the run unless --fail-on says otherwise


def test_correct_resnet18_script_gets_no_finding(qlint_json):
    code, found = qlint_json(EXAMPLES / "pt2e_resnet18.py", "--flow", "pt2e")
    assert (code, found) == (0, [])


def test_resnet18_exported_non_strict_quantizes_nothing_and_says_why(write, qlint_json):
    text = "import torchvision\n\n\ndef build():\n    return torchvision.models.resnet18(weights=None)\n"
    path = write("resnet.py", text)
    _, found = qlint_json(path, "--flow", "pt2e")
    assert codes(found) == [("QL506", 5)]
    message = found[0]["message"]
    assert "more than one output node" in message and "layer1.0.relu" in message and "strict=True" in message


def test_old_tutorial_gets_its_source_findings_on_the_pt2e_flow(qlint_json):
    path = EXAMPLES / "pt2e_old_tutorial.py"
    _, source_only = qlint_json(path, "--no-graph")
    _, found = qlint_json(path, "--flow", "pt2e")
    # its imports fail on this torch (QL001: the file cannot be imported): the source rules say why
    assert codes(found) == sorted([*codes(source_only), ("QL001", 15)])
    assert {c for c, _ in codes(source_only)} == {"QL501", "QL502", "QL505"}


def test_export_failure_at_the_branch_and_the_submodules_checked(write, qlint_json):
    path = write(
        "gate.py",
        """
        import torch
        import torch.nn as nn


        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Sigmoid())
                self.fc = nn.Linear(8, 2)

            def forward(self, x):
                x = self.features(x)
                if x.mean() > 0:
                    x = x * 2
                return self.fc(x.mean((2, 3)))
        """,
    )
    _, found = qlint_json(path, "--flow", "pt2e")
    assert codes(found) == [("QL508", line_of(path, "if x.mean() > 0:"))]
    message = found[0]["message"]
    assert "depends on the values in a tensor" in message and "torch.cond" in message and "(`features`)" in message


def test_flow_and_quantizer_from_the_configuration(write, qlint, tmp_path):
    write("pyproject.toml", '[tool.qlint]\nflow = "pt2e"\nquantizer = "arm"\n')
    write(
        "net.py",
        """
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)
                self.fc = nn.Linear(8, 2)

            def forward(self, x):
                return self.fc(self.conv(x).mean((2, 3)))
        """,
    )
    code, out, err = qlint("check", "net.py", "--statistics", "--format", "json", cwd=tmp_path)
    assert code == 1, err  # QL507: the arm quantizer leaves the mean between conv and linear float
    (row,) = json.loads(out)["coverage"]
    assert (row["model"], row["quantizer"], row["compute_ops"], row["compute_annotated"]) == ("Net()", "arm", 2, 2)
    code, out, _ = qlint("check", "net.py", "--statistics", "--format", "json", "--quantizer", "x86", cwd=tmp_path)
    assert json.loads(out)["coverage"][0]["quantizer"] == "x86"
    code, out, _ = qlint("check", "net.py", "--statistics", "--format", "json", "--flow", "eager", cwd=tmp_path)
    assert isinstance(json.loads(out), list)  # the eager flow: the counts only (ruff's shape)
    write("pyproject.toml", '[tool.qlint]\nflow = "fx"\n')
    code, _, err = qlint("check", "net.py", cwd=tmp_path)
    assert code == 2 and "unknown flow 'fx'" in err and "eager, pt2e" in err


def test_statistics_show_what_stays_float_by_op_and_module(qlint):
    path = EXAMPLES / "pt2e_mobilenet_v3.py"
    code, text, _ = qlint("check", path, "--flow", "pt2e", "--statistics")
    assert "QL507" in text.splitlines()[0]
    table = text.split("PT2E coverage", 1)[1]
    assert "64/64 compute ops annotated" in table and "conv2d 62/62" in table
    hardsigmoid = next(line for line in table.splitlines() if line.strip().startswith("hardsigmoid"))
    assert hardsigmoid.split()[1] == "8" and "no annotation pattern in this quantizer" in hardsigmoid
    assert "SqueezeExcitation" in table
    for _ in range(2):  # the second run is served by the result cache, coverage included
        code, out, _ = qlint("check", path, "--flow", "pt2e", "--statistics", "--format", "json")
        data = json.loads(out)
        assert [r["code"] for r in data["codes"]] == ["QL507"]
        (row,) = data["coverage"]
        by_op = {g["key"]: g for g in row["left_float_by_op"]}
        assert by_op["hardsigmoid"]["count"] == by_op["mul"]["count"] == 8
        assert by_op["hardsigmoid"]["between_quantized"] == 8
        assert by_op["hardsigmoid"]["reasons"] == {"no annotation pattern in this quantizer": 8}
        se = [g for g in row["left_float_by_module"] if (g["module_type"] or "").endswith("SqueezeExcitation")]
        assert len(se) == 8 and row["quantizer"] == "x86"


HIDE_TORCHAO = "import sys; sys.modules['torchao'] = None; from qlint.cli import main; sys.exit(main(sys.argv[1:]))"


def test_without_torchao_pt2e_is_a_one_line_error_and_the_source_rules_run(write, tmp_path):
    path = write(
        "old.py",
        """
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                return self.fc(x)


        if __name__ == "__main__":
            exported = torch.export.export_for_training(Net().eval(), (torch.randn(1, 4),)).module()
        """,
    )
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", HIDE_TORCHAO, "check", str(path), "--flow", "pt2e", "--no-cache"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["qlint: error: the PT2E checks need torchao: pip install qlint[pt2e]"]
    assert "QL502" in result.stdout  # the source rules still ran
    # with torchao installed, the same command checks the graph (and exits 1 for the QL502)
    assert run_subprocess("check", str(path), "--flow", "pt2e", "--no-cache", cwd=tmp_path).returncode == 1
