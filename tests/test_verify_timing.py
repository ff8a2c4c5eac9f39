"""verify's speed verdicts on constructed timings: pairs, their median and interquartile range, QL605 /
QL602 only when the whole interval is on the slow side, "could not tell" otherwise. Nothing here times."""

from __future__ import annotations

import itertools
import json

import pytest
from torch import nn

from qlint.verify import stats, timing
from qlint.verify.result import LayerStat, VerifyResult
from qlint.verify.stats import FASTER, SLOWER, UNCLEAR, Spread
from qlint.verify.verdicts import cold_start, layer_verdict

SMALL = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.dw(self.relu(self.conv(self.quant(x)))))


# qlint: model = Small()
"""
ARGS = ("--format", "json", "--input-shape", "1x3x16x16", "--calibration", "1", "--remedies", "never",
        "--no-compile", "--repeat", "8", "--warmup", "1", "--cold-calls", "1")  # fmt: skip


def _quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


@pytest.fixture
def clock(monkeypatch):
    """clock(float_ms, int8_ms_sequence, layers=None): every timed call returns the constructed time; the
    int8 model's calls cycle through ``int8_ms_sequence``; ``layers`` replaces the per-layer rounds."""

    def _set(float_ms: float, int8_ms: list[float], layers: dict | None = None) -> None:
        int8 = itertools.cycle(int8_ms)

        def call_ms(model, batch):
            model(*batch)
            return next(int8) if _quantized(model) else float_ms

        monkeypatch.setattr(timing, "call_ms", call_ms)
        if layers is not None:
            monkeypatch.setattr(timing, "layer_rounds", lambda *a, **k: layers)

    return _set


def test_spread_is_the_median_and_interquartile_range_of_the_pairs():
    s = Spread.of([1, 2, 3, 4, 5])
    assert (s.median, s.low, s.high, s.n) == (3, 2, 4, 5)
    assert stats.pair_ratios([10, 20], [5, 40]) == [2.0, 0.5]
    assert stats.speedup([10, 10, 10], [5, 20, 10]).median == 1.0
    assert Spread.of([7.0]) == Spread(7.0, 7.0, 7.0, 1)
    with pytest.raises(ValueError):
        stats.pair_ratios([1.0], [1.0, 2.0])
    assert s.text() == "3.00x (IQR 2.00-4.00x, 5 pairs)"


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [([0.5, 0.6, 0.7, 0.8, 0.9], SLOWER), ([1.1, 1.2, 1.3, 1.4], FASTER), ([0.6, 0.9, 1.1, 1.5], UNCLEAR),
     ([0.2, 0.9, 0.95, 0.97, 1.5], SLOWER), ([0.5, 0.7, 1.3, 1.6, 1.6, 1.7], UNCLEAR)],
)  # fmt: skip
def test_verdict_needs_the_whole_interval_on_one_side(ratios, expected):
    assert stats.verdict(Spread.of(ratios)) == expected


def test_layer_verdict_slow_unclear_or_not_and_cold_start():
    def layer(f: float, q: float, ratios: list[float] | None) -> LayerStat:
        return LayerStat("dw", "Conv2d", f, q, 30.0, slowdown=Spread.of(ratios) if ratios else None)

    assert layer_verdict(layer(0.5, 5.0, [9.0, 10.0, 11.0])) == SLOWER
    assert layer_verdict(layer(0.5, 5.0, [0.9, 10.0, 11.0, 0.8])) == UNCLEAR
    assert layer_verdict(layer(0.5, 5.0, None)) == SLOWER  # one measurement each: all there is
    assert layer_verdict(layer(0.5, 0.52, [1.5, 1.6, 1.7])) is None  # 0.02 ms: below timer noise
    assert layer_verdict(layer(5.0, 4.0, [0.8, 0.8])) is None
    assert layer_verdict(layer(1.0, 2.0, [2.0, 2.0]), total_ms=1000.0) is None  # < 0.5% of the model

    r = VerifyResult("Net()", "net.py", "fbgemm", "eager", (1, 3, 8, 8), 2, 20.0, int8_ms=10.0)
    r.cold_start_ms = [30.0, 10.0]
    assert cold_start(r)
    r.cold_start_ms = [19.0, 10.0]
    assert not cold_start(r)


def test_int8_slower_in_every_pair_is_ql605_error_exit_1(write, qlint, clock):
    clock(10.0, [13.0])
    path = write("small.py", SMALL)
    code, out, err = qlint("verify", path, *ARGS)
    r = json.loads(out)
    assert r["speed_verdict"] == "slower" and code == 1 == r["exit_code"], err
    assert r["speedup_vs_float"] == pytest.approx(10 / 13, abs=1e-3)
    assert r["speedup_vs_float_low"] == r["speedup_vs_float_high"] == r["speedup_vs_float"]
    assert r["speedup_vs_float_pairs"] == 8
    (ql605,) = [d for d in r["diagnostics"] if d["code"] == "QL605"]
    assert ql605["severity"] == "error" and "slower than float" in ql605["message"]
    assert "0.77x (IQR 0.77-0.77x, 8 pairs)" in ql605["message"]


def test_pairs_that_disagree_could_not_tell_info_exit_0(write, qlint, clock):
    clock(10.0, [7.0, 14.0])
    path = write("small.py", SMALL)
    code, out, err = qlint("verify", path, *ARGS)
    r = json.loads(out)
    assert r["speed_verdict"] == "could not tell" and code == 0 == r["exit_code"], err
    assert r["speedup_vs_float_low"] < 1 < r["speedup_vs_float_high"]
    (ql605,) = [d for d in r["diagnostics"] if d["code"] == "QL605"]
    assert ql605["severity"] == "info" and ql605["message"].startswith("could not tell at this noise level")
    assert "IQR 0.71-1.43x" in ql605["message"]
    # --fail-on info makes the info fail; the text report says it in words
    assert qlint("verify", path, *ARGS, "--fail-on", "info")[0] == 1
    text = qlint("verify", path, *[a for a in ARGS if a not in ("--format", "json")])[1]
    assert "could not tell at this noise level" in text and "QL605 [info]" in text


def test_int8_faster_in_every_pair_no_ql605(write, qlint, clock):
    clock(10.0, [4.0, 5.0])
    path = write("small.py", SMALL)
    code, out, err = qlint("verify", path, *ARGS)
    r = json.loads(out)
    assert r["speed_verdict"] == "faster" and code == 0, err
    assert not [d for d in r["diagnostics"] if d["code"] == "QL605"]
    assert r["speedup_vs_float_low"] > 1


def test_slow_layers_warning_unclear_layers_info_stubs_are_not_layers(write, qlint, clock):
    rounds = 8
    float_layers = {"conv": [1.0] * rounds, "dw": [0.2] * rounds}
    int8_layers = {"conv": [0.5, 3.0] * (rounds // 2), "dw": [2.0] * rounds}
    clock(10.0, [5.0], layers=(float_layers, int8_layers))
    path = write("small.py", SMALL)
    code, out, err = qlint("verify", path, *ARGS)
    r = json.loads(out)
    assert {lay["module"] for lay in r["layers"]} == {"conv", "dw"}, err  # no quant / dequant
    dw = next(lay for lay in r["layers"] if lay["module"] == "dw")
    assert dw["int8_vs_float"] == dw["int8_vs_float_low"] == dw["int8_vs_float_high"] == 10.0
    slow = {d["severity"]: d for d in r["diagnostics"] if d["code"] == "QL602"}
    assert set(slow) == {"warning", "info"}
    assert "`dw`" in slow["warning"]["message"] and "`conv`" not in slow["warning"]["message"]
    info = slow["info"]["message"]
    assert info.startswith("could not tell at this noise level") and "`conv`" in info
    assert "int8/float 1.75x (IQR 0.50-3.00x, 8 pairs)" in info
    assert code == 0  # slow layers are warnings: the model as a whole is faster
    assert qlint("verify", path, *ARGS, "--fail-on", "warning")[0] == 1


def test_ignoring_ql605_makes_the_speed_gate_informational(write, qlint, clock):
    clock(10.0, [13.0])
    path = write("small.py", SMALL)
    write("pyproject.toml", '[tool.qlint]\nignore = ["QL605"]\n')
    code, out, err = qlint("verify", path, *ARGS)
    r = json.loads(out)
    assert r["speed_verdict"] == "slower" and code == 0 == r["exit_code"], err
    assert not [d for d in r["diagnostics"] if d["code"] == "QL605"]
