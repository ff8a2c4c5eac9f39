"""QL501/QL502/QL505 (and the other PT2E source rules) on the example scripts: the old tutorial's
findings at their lines, its safe fixes giving a script that imports and runs on the installed
torch + torchao, and no QL5xx finding on the correct resnet18 script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import codes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_old_tutorial_findings(qlint_json):
    _, found = qlint_json(EXAMPLES / "pt2e_old_tutorial.py", "--no-graph")
    pt2e = [c for c in codes(found) if c[0].startswith("QL5")]
    # 15: capture_pre_autograd_graph's import; 16-18: torch.ao.quantization PT2E paths
    assert pt2e == [("QL501", 51), ("QL502", 43), ("QL505", 15), ("QL505", 16), ("QL505", 17), ("QL505", 18)]


def test_old_tutorial_fixed_runs_end_to_end(qlint, write, tmp_path):
    script = write("old_tutorial.py", (EXAMPLES / "pt2e_old_tutorial.py").read_text())
    code, out, _ = qlint("check", script, "--no-graph", "--fix")
    fixed = script.read_text()
    imports = [line for line in fixed.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "torch.ao.quantization" in line or "torch._export" in line], imports
    assert "capture_pre_autograd_graph(" not in fixed
    assert "move_exported_model_to_eval(prepared_model)" in fixed
    code, out, _ = qlint("check", script, "--no-graph", "--select", "QL5")
    assert code == 0, out
    # run it: export, prepare, calibrate, convert, forward (no torch.compile here: it takes minutes)
    # and compare the int8 model with the float one on the same batch
    runnable = fixed.replace("torch.compile(converted_model)", "converted_model")
    runnable += (
        "    reference = model(*example_inputs)\n"
        "    quantized = converted_model(*example_inputs)\n"
        "    print('relative error', float((quantized - reference).norm() / reference.norm()))\n"
    )
    path = tmp_path / "runnable.py"
    path.write_text(runnable)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "torch.Size([2, 10])"
    assert float(lines[1].split()[-1]) < 0.1, lines[1]


def test_correct_resnet18_script_is_clean(qlint_json):
    _, found = qlint_json(EXAMPLES / "pt2e_resnet18.py", "--no-graph")
    assert [d for d in found if d["code"].startswith("QL5")] == []


MIXED = """
import torch
from torch.ao.quantization.quantizer.x86_inductor_quantizer import X86InductorQuantizer, get_default_x86_inductor_quantization_config
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
args = (torch.randn(1, 3, 16, 16),)
exported = torch.export.export(model, args).module()
quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
prepared = prepare_pt2e(exported, quantizer)
prepared(*args)
converted = convert_pt2e(prepared)
out = converted(*args)
print(sum("quantize_per_tensor" in str(n.target) for n in converted.graph.nodes))
"""  # noqa: E501


def test_mixed_ao_torchao_and_uncompiled(qlint, qlint_json, write):
    script = write("mixed.py", MIXED)
    _, found = qlint_json(script, "--no-graph")
    # line 2: torch.ao quantizer with torchao's prepare_pt2e (and it no longer resolves);
    # line 12: the converted model runs without torch.compile
    assert [c for c in codes(found) if c[0].startswith("QL5")] == [("QL503", 2), ("QL505", 2), ("QL509", 12)]
    qlint("check", script, "--no-graph", "--fix")
    assert (
        script.read_text()
        .splitlines()[1]
        .startswith("from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import")
    )
    _, found = qlint_json(script, "--no-graph")
    assert [c for c in codes(found) if c[0].startswith("QL5")] == [("QL509", 12)]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    # what QL509 says: uncompiled, the converted model runs quantize/dequantize reference nodes
    assert int(done.stdout.split()[-1]) > 0
