"""QL414's port on the examples: examples/*_pt2e.py are what `--fix --unsafe-fixes` writes, they converge,
and they run end to end (export, prepare, calibrate / QAT, convert, compiled forward) with int8 output
as close to float as the eager flow's."""

from __future__ import annotations

import runpy
import shutil
import sys

import pytest
import torch
from conftest import ROOT

from qlint.rules.registry import rules

EXAMPLES = ROOT / "examples"
# ported example -> (its eager original, extra arguments of the fix)
PORTED = {
    "seed000_faceboxes_pt2e.py": ("seed000_faceboxes.py", ()),
    "seed002_vgg16_pt2e.py": ("seed002_vgg16.py", ()),
    "seed004_resnet18_qat_pt2e.py": ("seed004_resnet18_qat.py", ("--input-shape", "2x3x64x64")),
}


@pytest.mark.parametrize("name", sorted(PORTED))
def test_ported_example_is_what_the_fix_writes_and_converges(name, tmp_path, qlint, qlint_json):
    original, args = PORTED[name]
    path = tmp_path / name
    shutil.copy(EXAMPLES / original, path)
    code, out, err = qlint("check", "--select", "QL414", "--fix", "--unsafe-fixes", "--no-graph", *args, path)
    assert err == "" and "Fixed 1 problem" in out, out
    assert path.read_bytes() == (EXAMPLES / name).read_bytes()
    code, out, _ = qlint("check", "--select", "QL414", "--fix", "--unsafe-fixes", "--no-graph", *args, path)
    assert code == 0 and path.read_bytes() == (EXAMPLES / name).read_bytes()  # a second --fix changes nothing
    _, found = qlint_json(path, "--no-graph")
    assert not [d for d in found if d["severity"] == "error"], found
    assert not [d for d in found if d["code"] == "QL414"]
    _, found = qlint_json(path, "--select", "QL5")  # the PT2E rules (QL501/502/503/505/509), graph included
    assert not [d for d in found if d["severity"] == "error"], found


@pytest.mark.parametrize(("select", "ports"), [("QL4", False), ("ALL", False), ("QL414", True), ("QL414,QL403", True)])
def test_port_is_offered_only_when_ql414_is_selected_by_its_code(select, ports, tmp_path, qlint):
    example = rules()["QL414"].invalid()[0]  # eager PTQ with a calibration batch: nothing else to fix
    path = tmp_path / "quantize.py"
    path.write_text(example.source)
    code, out, err = qlint("check", "--select", select, "--fix", "--unsafe-fixes", "--no-graph", path)
    assert err == "", err
    if ports:
        assert "Fixed 1 problem" in out and path.read_text() == example.fixed
    else:  # reported, left to the family's other fixes
        assert "QL414" in out and "Fixed 0 problems" in out and path.read_text() == example.source


def test_unportable_pipeline_is_reported_without_a_fix(tmp_path, qlint_json):
    path = tmp_path / "saved.py"
    path.write_text(
        "import torch\nfrom torch.ao.quantization import convert, get_default_qconfig, prepare\n\n"
        "model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).eval()\n"
        'model.qconfig = get_default_qconfig("x86")\nprepared = prepare(model)\nprepared(torch.rand(1, 3, 8, 8))\n'
        'torch.jit.save(torch.jit.script(convert(prepared)), "q.pt")\n'
    )
    _, found = qlint_json(path, "--select", "QL414", "--unsafe-fixes", "--no-graph")
    assert [(d["location"]["row"], d["fix"]) for d in found] == [(6, None)]
    assert "torch.jit.save" in found[0]["message"]


@pytest.mark.slow  # torch.export + torch.compile of three models on CPU: minutes under load
@pytest.mark.parametrize("seed", ["seed000", "seed002", "seed004"])
def test_ported_examples_run_and_match_the_eager_flow(seed):
    """Each ported script runs end to end on random data (export, prepare, calibrate or QAT, convert,
    compiled forward), and its int8 output is within 1 dB SQNR of the eager script's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pt2e_port

    torch.set_num_threads(2)
    small = {"seed000": lambda: pt2e_port.seed000(128), "seed002": lambda: pt2e_port.seed002(32)}
    compared = small.get(seed, getattr(pt2e_port, seed))()
    result = compared.sqnrs()
    print(seed, result)
    assert result["sqnr_pt2e_db"] >= result["sqnr_eager_db"] - 1.0, result


FIXED_EXAMPLES = [e.fixed for e in rules()["QL414"].invalid()]


@pytest.mark.parametrize("index", range(len(FIXED_EXAMPLES)))
def test_ported_rule_example_converges_with_no_pt2e_error(index, tmp_path, qlint, qlint_json):
    path = tmp_path / "ported.py"
    path.write_text(FIXED_EXAMPLES[index])
    code, out, err = qlint("check", "--select", "QL414", "--fix", "--unsafe-fixes", "--no-graph", path)
    assert code == 0 and "Fixed 0 problems" in out and path.read_text() == FIXED_EXAMPLES[index], out
    _, found = qlint_json(path, "--select", "QL5")
    assert not [d for d in found if d["severity"] == "error"], found


@pytest.mark.slow  # torch.export (and torch.compile for three of them) of small models
@pytest.mark.parametrize("index", range(len(FIXED_EXAMPLES)))
def test_ported_rule_example_runs_end_to_end(index, tmp_path):
    """The port's text runs (export, prepare, calibrate or train, convert), and its int8 model then
    answers its example input."""
    path = tmp_path / "ported.py"
    path.write_text(FIXED_EXAMPLES[index])
    torch.set_num_threads(2)
    namespace = runpy.run_path(str(path))
    model = namespace.get("qmodel", namespace["model"])
    with torch.no_grad():
        out = model(*namespace["example_inputs"])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
