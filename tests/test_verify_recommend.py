"""The recommendation is a pure function of the measurements: checked on constructed ones, then through
the CLI with a constructed clock (nothing here times)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from qlint.verify import remedies, timing
from qlint.verify.flows import usable_engines
from qlint.verify.result import Candidate
from qlint.verify.stats import Spread
from qlint.verify.verdicts import SUSPECT_SPEEDUP, suspect

FLOAT_MS = 100.0


def cand(name: str, ms: float, sqnr: float = 40.0, baseline: bool = False, engine: str = "fbgemm") -> Candidate:
    return Candidate(name, engine, int8_ms=ms, sqnr_db=sqnr, baseline=baseline)


def rec_name(cands: list[Candidate], min_sqnr: float = 20.0) -> str | None:
    rec = remedies.recommend(cands, FLOAT_MS, min_sqnr, "eager", "fbgemm")
    return rec.name if rec else None


def test_fastest_candidate_meeting_the_bar():
    cands = [cand("base", 80, baseline=True), cand("a", 50, sqnr=35), cand("b", 30, sqnr=15), cand("c", 40, sqnr=21)]
    assert rec_name(cands) == "c"  # b is faster but below 20 dB
    assert rec_name(cands, min_sqnr=10) == "b"
    assert rec_name(cands, min_sqnr=36) == "base"
    assert rec_name(cands, min_sqnr=50) is None
    rec = remedies.recommend(cands, FLOAT_MS, 20.0, "eager", "fbgemm")
    assert rec.speedup_vs_float == pytest.approx(2.5) and rec.int8_ms == 40


def test_ties_within_two_percent_go_to_the_higher_sqnr():
    cands = [cand("base", 90, baseline=True), cand("fast", 40.0, sqnr=30), cand("accurate", 40.6, sqnr=45)]
    assert rec_name(cands) == "accurate"
    cands[2] = cand("accurate", 42.0, sqnr=45)  # 5% slower: not a tie
    assert rec_name(cands) == "fast"


def test_never_slower_than_as_configured():
    cands = [cand("base", 50, sqnr=30, baseline=True), cand("more accurate but slower", 60, sqnr=50)]
    rec = remedies.recommend(cands, FLOAT_MS, 20.0, "eager", "fbgemm")
    assert rec.name == "base" and rec.change.startswith("none")
    # the configuration as given misses the bar: a slower candidate is still not recommended
    assert rec_name([cand("base", 50, sqnr=10, baseline=True), cand("slower", 60, sqnr=50)]) is None


def test_absurd_speedups_are_suspect_and_not_recommended():
    island = cand("float island", FLOAT_MS / 33.7)
    cands = [cand("base", 80, baseline=True), island, cand("onednn engine", 40, engine="onednn")]
    assert rec_name(cands) == "onednn engine"
    assert "33.7x faster than float" in suspect(FLOAT_MS / island.int8_ms) and "suspect" in suspect(33.7)
    assert suspect(SUSPECT_SPEEDUP) is None and suspect(2.0) is None


def test_pairs_decide_over_the_ratio_of_medians():
    a = cand("a", 40)  # ratio of medians 2.5x, but pair by pair 1.5x
    a.speedup = Spread(1.5, 1.4, 1.6, 10)
    cands = [cand("base", 80, baseline=True), a, cand("b", 50)]
    assert rec_name(cands) == "b"


def test_random_measurements_obey_every_rule():
    rng = random.Random(0)
    for _ in range(300):
        cands = [
            cand(f"c{i}", rng.uniform(2, 200), rng.uniform(5, 50), baseline=i == 0) for i in range(rng.randint(1, 7))
        ]
        rec = remedies.recommend(cands, FLOAT_MS, 20.0, "eager", "fbgemm")
        ok = [c for c in cands if c.sqnr_db >= 20 and FLOAT_MS / c.int8_ms <= SUSPECT_SPEEDUP]
        ok = [c for c in ok if c.int8_ms <= cands[0].int8_ms]
        if not ok:
            assert rec is None
            continue
        chosen = next(c for c in cands if c.name == rec.name)
        assert chosen in ok
        assert all(chosen.int8_ms <= c.int8_ms / (1 - remedies.TIE) for c in ok)  # fastest, up to a tie
        tied = [c for c in ok if c.int8_ms * (1 - remedies.TIE) <= min(x.int8_ms for x in ok)]
        assert chosen.sqnr_db == max(c.sqnr_db for c in tied)


# ---------------------------------------------------------------- through the CLI, with a constructed clock

SMALL = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.dw(self.conv(self.quant(x))))


# qlint: model = Small()
"""


def _kind(model: nn.Module) -> str:
    types = {type(m) for m in model.modules()}
    if not any(t.__module__.startswith("torch.ao.nn.quantized") for t in types):
        return "float"
    return "island" if nn.Conv2d in types else torch.backends.quantized.engine


@pytest.mark.parametrize("fastest", ["qnnpack", "onednn", "island"])
def test_cli_recommends_what_the_clock_says(write, qlint, monkeypatch, fastest):
    engines = set(usable_engines())
    if fastest in ("qnnpack", "onednn") and fastest not in engines:
        pytest.skip(f"{fastest} not usable here")
    ms = {"float": 10.0, "island": 9.0, **{e: 12.0 for e in engines}, fastest: 4.0, "fbgemm": 0.3}  # fbgemm: 33x

    def call_ms(model, batch):
        model(*batch)
        return ms[_kind(model)]

    monkeypatch.setattr(timing, "call_ms", call_ms)
    path = write("small.py", SMALL)
    code, out, err = qlint("verify", path, "--format", "json", "--backend", "x86", "--input-shape", "1x3x16x16",
                           "--calibration", "1", "--remedies", "always", "--no-compile", "--repeat", "4",
                           "--warmup", "1", "--cold-calls", "1")  # fmt: skip
    r = json.loads(out)
    by_name = {c["name"]: c for c in r["candidates"]}
    expected = {"island": "x86, dilated grouped convs kept float"}.get(fastest, f"{fastest} engine")
    assert r["recommendation"]["name"] == expected, err
    assert r["recommendation"]["speedup_vs_float"] == pytest.approx(10 / ms[fastest])
    if "fbgemm" in engines:
        assert by_name["fbgemm engine"]["suspect"] and "suspect" in by_name["fbgemm engine"]["suspect"]
    assert r["speed_verdict"] == "slower" and code == 1  # x86 as configured: 12 ms vs 10 ms float
