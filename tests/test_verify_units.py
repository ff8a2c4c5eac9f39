"""The pieces of ``qlint verify``: error explanations, SQNR, fusion, float islands, remedies, calibration."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from qlint.verify import accuracy, remedies
from qlint.verify.calibrate import CalibrationError, split_batches
from qlint.verify.errors import explain
from qlint.verify.flows import derived_fusion, fuse_eager, make_flow, usable_engines
from qlint.verify.result import Candidate

SMALL = """
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.dw(self.relu(self.bn(self.conv(self.quant(x))))))


def batches():
    for i in range(5):
        yield torch.full((1, 3, 16, 16), float(i))
"""


def _small():
    ns: dict = {}
    exec(compile(SMALL, "<small>", "exec"), ns)
    return ns["Small"]().eval()


@pytest.mark.parametrize(
    ("message", "rule", "words"),
    [
        ("Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend. This", "QL101",
         "a float tensor reached quantized::conv2d: the model has no QuantStub before `features.0`"),
        ("Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.", "QL103",
         "an `a + b` / `+=` on quantized tensors"),
        ("Could not run 'aten::native_batch_norm' with arguments from the 'QuantizedCPU' backend.", "QL201",
         "BatchNorm"),
        ("Could not run 'aten::silu' with arguments from the 'QuantizedCPU' backend.", "QL105", "island"),
        ("'Linear' object has no attribute 'activation_post_process'", None, "observer"),
        ("something else entirely", None, "torch raised RuntimeError"),
    ],
)  # fmt: skip
def test_explain_maps_torch_errors_to_plain_words_and_rules(message, rule, words):
    plain, hint = explain(RuntimeError(message), "features.0", nn.Sequential(nn.Conv2d(1, 1, 1)))
    assert hint == rule and words in plain


def test_explain_names_a_misplaced_stub_when_the_model_has_one():
    model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(1, 1, 1))
    error = RuntimeError("Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend")
    plain, hint = explain(error, "1", model)
    assert hint == "QL101" and "nothing quantizes the input of `1`" in plain


def test_sqnr_and_cosine():
    ref = torch.ones(100)
    assert accuracy.sqnr(ref, ref.clone()) == math.inf
    assert accuracy.sqnr(ref, ref * 1.1) == pytest.approx(20.0)
    assert accuracy.cosine(ref, ref * 3) == pytest.approx(1.0)
    assert accuracy.compare([ref], [ref * 1.01])[0] == pytest.approx(40.0)
    with pytest.raises(ValueError):
        accuracy.sqnr(ref, torch.ones(3))


def test_derived_fusion_uses_torch_fuser_patterns():
    model = _small()
    assert ["conv", "bn", "relu"] in derived_fusion(model)
    fused, how = fuse_eager(model)
    assert how.startswith("derived") and type(fused.conv).__name__ == "ConvReLU2d"
    assert isinstance(model.bn, nn.BatchNorm2d)  # the user's model is never mutated


def test_float_island_keeps_the_dilated_conv_float_between_stubs():
    base, _ = fuse_eager(_small())
    assert remedies.dilated_grouped_names(base) == ["dw"]
    example = (torch.randn(1, 3, 16, 16),)
    converted = make_flow("eager", usable_engines()[0], ["dw"]).quantize(base, example, [example])
    island = converted.dw
    assert [type(m).__name__ for m in island] == ["DeQuantize", "Conv2d", "Quantize"]
    assert type(island[1]) is nn.Conv2d  # float, not torch.ao.nn.quantized.Conv2d
    with torch.no_grad():
        assert converted(*example).shape == (1, 16, 16, 16)


def test_change_text_for_engines_and_islands():
    engine = Candidate("onednn engine", "onednn")
    assert remedies.change(engine, "eager", "fbgemm") == (
        'torch.backends.quantized.engine = "onednn"\n'
        'model.qconfig = torch.ao.quantization.get_default_qconfig("onednn")'
    )
    island = Candidate("fbgemm, islands", "fbgemm", ("features.13.block.1.0",))
    text = remedies.change(island, "eager", "fbgemm")
    assert "engine" not in text.split("\n")[0] and '"features.13.block.1.0"' in text and "qconfig = None" in text
    assert remedies.change(island, "fx", "fbgemm") == 'qconfig_mapping.set_module_name("features.13.block.1.0", None)'
    assert remedies.change(Candidate("x", "fbgemm", baseline=True), "eager", "fbgemm").startswith("none")


def test_recommend_fastest_meeting_the_bar():
    cands = [
        Candidate("base", "fbgemm", int8_ms=100, sqnr_db=40, baseline=True),
        Candidate("fast but wrong", "qnnpack", int8_ms=5, sqnr_db=10),
        Candidate("onednn engine", "onednn", int8_ms=20, sqnr_db=35),
    ]
    rec = remedies.recommend(cands, 50.0, 20.0, "eager", "fbgemm")
    assert rec.name == "onednn engine" and rec.speedup_vs_float == pytest.approx(2.5)
    assert remedies.recommend(cands, 50.0, 60.0, "eager", "fbgemm") is None


def test_calibration_function_and_held_out_split(tmp_path):
    (tmp_path / "data.py").write_text(SMALL)
    calib, held = split_batches("data:batches", (1, 3, 16, 16), 2, 0, [str(tmp_path)])
    assert len(calib) == 4 and len(held) == 1 and float(held[0][0][0, 0, 0, 0]) == 4.0
    calib, held = split_batches(3, (1, 3, 8, 8), 2, 0)
    assert len(calib) == 3 and len(held) == 2 and not torch.equal(calib[0][0], held[0][0])
    with pytest.raises(CalibrationError):
        split_batches("data:missing", (1,), 1, 0, [str(tmp_path)])


def test_fx_flow_and_user_calibration_through_the_cli(write, qlint):
    path = write("small.py", SMALL + "\n# qlint: model = Small()\n")
    code, out, err = qlint("verify", path, "--flow", "fx", "--format", "json", "--input-shape", "1x3x16x16",
                           "--calibration", f"{path}:batches", "--repeat", "3",
                           "--remedies", "never")  # fmt: skip
    r = json.loads(out)
    assert r["converted"] and r["flow"] == "fx" and r["sqnr_db"] > 10, err
    assert code == r["exit_code"]


def test_pt2e_flow_with_torchao(write, qlint):
    pytest.importorskip("torchao.quantization.pt2e")
    path = write("small.py", SMALL + "\n# qlint: model = Small()\n")
    # the reference graph: compiling is tests/test_verify_pt2e.py's (slow) business
    code, out, err = qlint("verify", path, "--flow", "pt2e", "--format", "json", "--input-shape", "1x3x16x16",
                           "--calibration", "2", "--repeat", "3", "--remedies", "never", "--no-compile")  # fmt: skip
    r = json.loads(out)
    assert r["converted"] and r["flow"] == "pt2e" and r["backend"] == "x86-inductor" and r["sqnr_db"] > 10, err
    assert code == r["exit_code"]


def test_weights_checkpoint_and_low_sqnr_bar(write, qlint, tmp_path):
    path = write("small.py", SMALL + "\n# qlint: model = Small()\n")
    ns: dict = {}
    exec(compile(SMALL, "<small>", "exec"), ns)
    trained = ns["Small"]()
    with torch.no_grad():
        trained.conv.weight.fill_(0.05)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, ckpt)
    common = ("--format", "json", "--input-shape", "1x3x16x16", "--calibration", "2", "--repeat", "3",
              "--remedies", "never")  # fmt: skip
    code, out, err = qlint("verify", path, "--weights", ckpt, "--min-sqnr", "99", *common)
    r = json.loads(out)
    assert r["converted"] and r["sqnr_db"] < 99 and code == 1, err
    (low,) = [d for d in r["diagnostics"] if d["code"] == "QL603"]
    assert f"{r['sqnr_db']:.1f} dB is below 99 dB" in low["message"]

    torch.save({"other": torch.zeros(1)}, ckpt)
    code, _, err = qlint("verify", path, "--weights", ckpt, *common)
    assert code == 2 and "does not fit the model" in err


def _page_block(code: str, heading: str) -> str:
    import re

    from qlint.rules.catalog import rule_page

    section = rule_page(code).split(heading, 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_ql603_page_example_triggers_and_use_instead_does_not(write, qlint):
    for heading, expect in (("## Example", True), ("## Use instead", False)):
        path = write(f"ql603_{expect}.py", _page_block("QL603", heading))
        code, out, err = qlint("verify", path, "--format", "json", "--calibration", "4", "--repeat", "3",
                               "--remedies", "never")  # fmt: skip
        r = json.loads(out)
        assert r["converted"] and r["input_shape"] == [8, 4], err
        assert ("QL603" in {d["code"] for d in r["diagnostics"]}) is expect, r["sqnr_db"]
        assert (r["sqnr_db"] < 20) is expect


def test_text_report_tables_and_recommendation():
    import io

    from qlint.report import verify as report
    from qlint.verify.result import LayerStat, Recommendation, VerifyResult

    r = VerifyResult("Net()", "net.py", "fbgemm", "eager", (1, 3, 64, 64), 2, 20.0, converted=True,
                     float_ms=10.0, int8_ms=40.0, sqnr_db=35.0, cosine=0.999,
                     cold_start_ms=[90.0, 41.0])  # fmt: skip
    r.layers = [LayerStat("dw", "Conv2d", 0.5, 30.0, 30.0, dilated_grouped=True)]
    r.candidates = [Candidate("fbgemm (as configured)", "fbgemm", int8_ms=40.0, sqnr_db=35.0, baseline=True),
                    Candidate("onednn engine", "onednn", int8_ms=4.0, sqnr_db=36.0)]  # fmt: skip
    r.recommendation = Recommendation("onednn engine", 4.0, 2.5, remedies.change(r.candidates[1], "eager", "fbgemm"))
    out = io.StringIO()
    report.render_text([r], out)
    text = out.getvalue()
    assert "int8 slower than float" in text and "#1 90.0 ms (2.2x)" in text
    assert "Layers slower in int8 than in float (fbgemm)" in text and "dilated grouped conv" in text
    assert "Remedies, measured in this run" in text and "2.50x" in text
    assert '    torch.backends.quantized.engine = "onednn"' in text
    data = report.to_json(r)
    assert data["recommendation"]["speedup_vs_float"] == 2.5 and data["exit_code"] == 1


def test_float_islands_skip_stubs_and_float_functional():
    model = nn.Module()
    model.quant = torch.ao.quantization.QuantStub()
    model.conv = nn.Conv2d(2, 2, 1)
    model.mul = nn.quantized.FloatFunctional()
    assert remedies.swappable(model, "conv")
    assert not remedies.swappable(model, "quant") and not remedies.swappable(model, "mul")
    assert remedies.island_sets(model, [], ["conv", "mul", "quant"]) == [("1 slow layer kept float", ("conv",))]
