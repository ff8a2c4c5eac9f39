"""``qlint verify`` on the seed models, through the CLI: conversion, accuracy, report structure, remedies.

No assertion here depends on how fast this machine is: the real flows run for correctness, and the speed
story (seed 001 at 512x512) runs on a constructed clock; ``benchmarks/verify_zoo.py`` measures it.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from qlint.verify.flows import usable_engines

REQUIRED = {"converted", "backend", "flow", "float_ms", "int8_ms", "sqnr_db", "cold_start_ms", "layers",
            "candidates", "recommendation", "diagnostics"}  # fmt: skip
DIAG_KEYS = {"code", "message", "filename", "location", "end_location", "fix", "url", "name", "severity"}

SEED001 = '''
"""Seed 001: quantizable MobileNetV3-Large (dilated, reduced tail) + an LR-ASPP head."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub
from torchvision.models.quantization import mobilenet_v3_large
from torchvision.ops.misc import Conv2dNormActivation


class LRASPPQuant(nn.Module):
    def __init__(self, num_classes: int = 21, inter_channels: int = 128) -> None:
        super().__init__()
        backbone = mobilenet_v3_large(weights=None, quantize=False, dilated=True, reduced_tail=True)
        self.features = backbone.features
        stages = [0] + [i for i, b in enumerate(self.features) if getattr(b, "_is_cn", False)]
        self.low_pos = stages[-3]
        low_channels = self.features[self.low_pos].out_channels
        high_channels = self.features[-1].out_channels
        self.quant = QuantStub()
        self.dequant = DeQuantStub()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels), nn.ReLU()
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False), nn.Sigmoid()
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)
        self.mul = nn.quantized.FloatFunctional()
        self.add = nn.quantized.FloatFunctional()

    def forward(self, x):
        size = x.shape[-2:]
        x = self.quant(x)
        low = x
        for i, block in enumerate(self.features):
            x = block(x)
            if i == self.low_pos:
                low = x
        y = self.mul.mul(self.cbr(x), self.scale(x))
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.add.add(self.low_classifier(low), self.high_classifier(y))
        out = self.dequant(out)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def fuse_model(self) -> None:
        for m in self.modules():
            if type(m) is Conv2dNormActivation:
                names = ["0", "1"] + (["2"] if len(m) == 3 and type(m[2]) is nn.ReLU else [])
                torch.ao.quantization.fuse_modules(m, names, inplace=True)
            elif type(m).__name__ == "QuantizableSqueezeExcitation":
                m.fuse_model()
        torch.ao.quantization.fuse_modules(self.cbr, ["0", "1", "2"], inplace=True)
'''

SEED002 = '''
"""Seed 002: torchvision's plain vgg16, fed to prepare/convert with no QuantStub."""
import torchvision


def build_model():
    return torchvision.models.vgg16(weights=None)
'''

SEED000 = '''
"""Seed 000: FaceBoxes on a MobileNetV2 backbone, eager static quantization with stubs and fuse_model."""
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub
from torchvision.models.quantization import mobilenet_v2


class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class FaceBoxesMobNet(nn.Module):
    def __init__(self, phase="test", num_classes=1):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = mobilenet_v2(weights=None, quantize=False).features
        self.avg = nn.Conv2d(1280, 128, kernel_size=1, bias=False, groups=128)
        self.conv3_1 = BasicConv2d(128, 128, kernel_size=1, stride=1, padding=0)
        self.conv3_2 = BasicConv2d(128, 256, kernel_size=3, stride=2, padding=1)
        self.loc0 = nn.Conv2d(128, 3 * 4, kernel_size=3, padding=1)
        self.conf0 = nn.Conv2d(128, 3 * num_classes, kernel_size=3, padding=1)
        self.loc1 = nn.Conv2d(256, 3 * 4, kernel_size=3, padding=1)
        self.conf1 = nn.Conv2d(256, 3 * num_classes, kernel_size=3, padding=1)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()
        self.prob = nn.Sigmoid()

    def fuse_model(self):
        for m in self.modules():
            if type(m).__name__ == "QuantizableInvertedResidual":
                m.fuse_model()
            elif type(m) is BasicConv2d:
                torch.ao.quantization.fuse_modules(m, ["conv", "bn", "relu"], inplace=True)
            elif type(m).__name__ == "Conv2dNormActivation":
                torch.ao.quantization.fuse_modules(m, ["0", "1", "2"], inplace=True)

    def forward(self, x):
        x = self.quant(x)
        x = self.avg(self.backbone(x))
        loc0 = self.loc0(x).permute(0, 2, 3, 1).contiguous()
        conf0 = self.conf0(x).permute(0, 2, 3, 1).contiguous()
        x = self.conv3_2(self.conv3_1(x))
        loc1 = self.loc1(x).permute(0, 2, 3, 1).contiguous()
        conf1 = self.conf1(x).permute(0, 2, 3, 1).contiguous()
        loc = torch.cat([self.dequant(loc0).flatten(1), self.dequant(loc1).flatten(1)], dim=1)
        conf = torch.cat([self.dequant(conf0).flatten(1), self.dequant(conf1).flatten(1)], dim=1)
        return loc.view(loc.size(0), -1, 4), self.prob(conf.view(-1, self.num_classes))
'''

RESNET18 = '''
"""A correct quantizable model: torchvision's quantizable resnet18."""
from torchvision.models.quantization import resnet18


def build_model():
    return resnet18(weights=None, quantize=False)
'''

PLUS_EQUALS = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        out += x
        return out


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block()
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.block(self.stem(self.quant(x))))
"""


@pytest.fixture
def verify_json(qlint):
    def _run(path, *args):
        code, out, err = qlint("verify", path, "--format", "json", *args)
        assert code in (0, 1), err
        return code, json.loads(out)

    return _run


def _line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _float_conv(model: torch.nn.Module) -> bool:
    return any(
        isinstance(m, torch.nn.modules.conv._ConvNd) and not type(m).__module__.startswith("torch.ao.nn.quantized")
        for m in model.modules()
    )


@pytest.fixture
def seed001_clock(monkeypatch):
    """The seed-001 story as a constructed clock (benchmarks/verify_zoo.py measures the real one): float
    100 ms, int8 400 ms on every engine, 60 ms with float islands; per layer, the dilated convs 0.5 -> 5 ms,
    every other layer 1 -> 0.5 ms."""
    from qlint.verify import timing

    def kind(model) -> str:
        if not any(isinstance(m, torch.ao.nn.quantized.Quantize) for m in model.modules()):
            return "float"  # (FloatFunctional lives in torch.ao.nn.quantized too: not a sign of int8)
        return "island" if _float_conv(model) else "int8"

    def call_ms(model, batch):
        model(*batch)
        return {"float": 100.0, "int8": 400.0, "island": 60.0}[kind(model)]

    def layer_rounds(float_model, int8_model, engine, batch, names, repeats):
        f = {n: [0.5 if n in SEED001_DILATED else 1.0] * repeats for n in names}
        q = {n: [5.0 if n in SEED001_DILATED else 0.5] * repeats for n in names}
        return f, q

    monkeypatch.setattr(timing, "call_ms", call_ms)
    monkeypatch.setattr(timing, "layer_rounds", layer_rounds)


SEED001_DILATED = {"features.13.block.1.0", "features.14.block.1.0", "features.15.block.1.0"}


def test_seed001_int8_slower_dilated_convs_named_float_islands_recommended(write, verify_json, seed001_clock):
    """Seed 001 on fbgemm: every engine measured, the dilated depthwise convs flagged and kept float in a
    candidate, the verdicts and the recommendation follow the (constructed) clock. No timing here."""
    path = write("seed001.py", SEED001)
    code, r = verify_json(path, "--backend", "fbgemm", "--input-shape", "1x3x64x64", "--calibration", "1",
                          "--repeat", "3", "--warmup", "1", "--cold-calls", "1", "--no-compile")  # fmt: skip
    summary = {k: r[k] for k in ("float_ms", "int8_ms", "candidates")}
    assert REQUIRED <= set(r)
    assert r["converted"] and r["backend"] == "fbgemm" and r["flow"] == "eager"
    assert r["speed_verdict"] == "slower" and code == 1, summary
    by_engine = {c["engine"]: c for c in r["candidates"] if not c["float_modules"] and c["flow"] is None}
    assert set(by_engine) == set(usable_engines())
    codes = [d["code"] for d in r["diagnostics"]]
    assert "QL605" in codes and "QL602" in codes
    assert {DIAG_KEYS <= set(d) for d in r["diagnostics"]} == {True}

    layers = {lay["module"]: lay for lay in r["layers"]}
    assert {"module", "float_ms", "int8_ms", "sqnr_db", "int8_vs_float", "source"} <= set(r["layers"][0])
    assert not {"quant", "dequant"} & set(layers)  # stubs are not layers
    for name in SEED001_DILATED:
        assert layers[name]["dilated_grouped"] and layers[name]["int8_vs_float_low"] == 10.0
    slow_text = " ".join(d["message"] for d in r["diagnostics"] if d["code"] == "QL602" and d["severity"] == "warning")
    assert all(f"`{name}`" in slow_text for name in SEED001_DILATED) and "see QL301" in slow_text

    islands = [c for c in r["candidates"] if c["float_modules"]]
    assert any(set(c["float_modules"]) == SEED001_DILATED for c in islands)
    assert {"name", "engine", "float_modules", "int8_ms", "sqnr_db", "speedup_vs_float"} <= set(r["candidates"][0])
    rec = r["recommendation"]
    assert rec["name"] in {c["name"] for c in r["candidates"]}
    chosen = next(c for c in r["candidates"] if c["name"] == rec["name"])
    assert rec["speedup_vs_float"] == pytest.approx(chosen["speedup_vs_float"], rel=0.01)
    assert rec["speedup_vs_float"] == pytest.approx(100 / 60, rel=0.01) and chosen["float_modules"], summary
    assert chosen["sqnr_db"] >= 20
    if chosen["float_modules"]:
        assert "qconfig = None" in rec["change"] and all(n in rec["change"] for n in chosen["float_modules"])
    else:
        assert f'torch.backends.quantized.engine = "{chosen["engine"]}"' in rec["change"]
        assert f'get_default_qconfig("{chosen["engine"]}")' in rec["change"]
    (ql605,) = [d for d in r["diagnostics"] if d["code"] == "QL605"]
    assert ql605["severity"] == "error" and f"measured fix: {rec['name']}" in ql605["message"]


def test_seed002_vgg16_without_stub_fails_at_first_conv_predicted_by_ql101(write, verify_json):
    path = write("seed002.py", SEED002)
    code, r = verify_json(path, "--input-shape", "1x3x32x32", "--calibration", "1")
    assert code == 1 and r["converted"] is False
    assert r["failure"]["module"] == "features.0" and r["failure"]["phase"] == "forward"
    assert r["failure"]["predicted_by"] == "QL101"
    (diag,) = r["diagnostics"]
    assert diag["code"] == "QL601" and diag["module"] == "features.0"
    assert "no QuantStub before `features.0`" in diag["message"]
    assert diag["filename"] == str(path) and diag["location"]["row"] == _line_of(path, "vgg16(")
    related = " ".join(f"{x['filename']}:{x['location']['row']} {x['message']}" for x in diag["related"])
    assert "vgg.py" in related and "predicted by QL101" in related


def test_plus_equals_on_quantized_tensors_points_at_the_line(write, verify_json):
    path = write("net.py", PLUS_EQUALS)
    code, r = verify_json(path, "--input-shape", "1x3x16x16", "--calibration", "1", "--remedies", "never")
    assert code == 1 and not r["converted"]
    (diag,) = r["diagnostics"]
    assert diag["code"] == "QL601" and diag["module"] == "block"
    assert diag["location"]["row"] == _line_of(path, "out += x")
    assert "aten::add" in diag["message"] and "FloatFunctional" in diag["message"]
    assert r["failure"]["rule_hint"] == "QL103" and r["failure"]["predicted_by"] == "QL103"


def test_seed000_cold_start_reports_each_first_call(write, qlint):
    path = write("seed000.py", SEED000)
    code, out, err = qlint("verify", path, "--input-shape", "1x3x96x128", "--calibration", "1",
                           "--cold-calls", "4", "--repeat", "5", "--remedies", "never")  # fmt: skip
    assert code in (0, 1), err
    assert "\x1b[" not in out  # no colour, no progress bar when not on a terminal
    assert "torch.set_num_threads(2)" in out
    line = next(x for x in out.splitlines() if x.startswith("Cold start"))
    calls = re.findall(r"#(\d) ([\d.]+) ms \(([\d.]+)x\)", line)
    assert [c[0] for c in calls] == ["1", "2", "3", "4"]
    steady = float(re.search(r"steady state ([\d.]+) ms", out).group(1))
    cold = [float(ms) for _, ms, _ in calls]
    for ms, (_, _, ratio) in zip(cold, calls, strict=True):
        # ratio printed to 0.1 and both times to 0.1 ms: allow exactly that rounding
        rounding = 0.05 + (ms / steady) * (0.05 / ms + 0.05 / steady)
        assert float(ratio) == pytest.approx(ms / steady, abs=rounding)
    # QL604 exactly when the first call costs 2x steady state and the first calls 5 ms extra in all
    fired = cold[0] >= 2 * steady and sum(max(0.0, c - steady) for c in cold) >= 5
    assert ("QL604" in out) == fired, out
    if fired:
        assert "warm-up" in out and "extra time of the first calls, by layer" in out


def test_quantizable_resnet18_converts_accurate_faster_exit_0(write, verify_json):
    path = write("resnet.py", RESNET18)
    code, r = verify_json(path, "--input-shape", "1x3x64x64", "--calibration", "2", "--repeat", "5",
                          "--remedies", "never")  # fmt: skip
    assert r["converted"] and r["sqnr_db"] > 20 and 0.99 < r["cosine"] <= 1.0
    assert code == r["exit_code"] == (1 if r["speed_verdict"] == "slower" else 0)  # speed: benchmarks/
    assert not [d for d in r["diagnostics"] if d["code"] in ("QL601", "QL603")]
    # the speed verdict is the machine's (benchmarks/): QL605 is an error exactly when int8 measured slower
    slow = [d for d in r["diagnostics"] if d["code"] == "QL605" and d["severity"] == "error"]
    assert bool(slow) == (r["speed_verdict"] == "slower")
    assert r["recommendation"]["change"].startswith("none")
    assert r["layers"] and any(lay["sqnr_db"] is not None and lay["sqnr_db"] > 20 for lay in r["layers"])


def test_bad_input_exit_2(write, qlint):
    path = write("resnet.py", RESNET18)
    assert qlint("verify", path.parent / "missing.py")[0] == 2
    code, _, err = qlint("verify", path, "--input-shape", "1xfoo")
    assert code == 2 and "input shape" in err
    code, _, err = qlint("verify", path, "--calibration", "nowhere_module_xyz:batches")
    assert code == 2 and "nowhere_module_xyz" in err
    code, _, err = qlint("verify", path, "--input-shape", "1x3x8")  # the float model cannot run on it
    assert code == 2 and "does not run" in err


def test_pt2e_without_torchao_names_the_extra(write, qlint, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "torchao" or m.startswith("torchao.")] or ["torchao"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed (earlier tests imported it)
    path = write("resnet.py", RESNET18)
    code, out, err = qlint("verify", path, "--flow", "pt2e")
    assert code == 2 and "pip install qlint[pt2e]" in err and "Traceback" not in err + out


def test_threads_restored(write, verify_json):
    before = torch.get_num_threads()
    path = write("net.py", PLUS_EQUALS.replace("out += x", "out = self.conv(out)"))
    verify_json(path, "--input-shape", "1x3x16x16", "--calibration", "1", "--threads", "1", "--remedies", "never")
    assert torch.get_num_threads() == before


def test_a_malformed_input_shape_pragma_is_a_note_of_verify(write, verify_json):
    path = write(
        "shape.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub

        # qlint: input-shape = 1x3xfoo


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant, self.dequant = QuantStub(), DeQuantStub()
                self.conv = nn.Conv2d(3, 4, 3)

            def forward(self, x):
                return self.dequant(self.conv(self.quant(x)))
        """,
    )
    _, r = verify_json(path, "--calibration", "1", "--remedies", "never")
    (note,) = [n for n in r["notes"] if "malformed pragma" in n]
    assert "shape.py:4:" in note and "1x3xfoo" in note and "verify ran on 1x3x224x224" in note
