"""PT2E measured as users deploy it: torch.compile (inductor) by default, its compile as part of cold start
(QL604 with the AOTInductor package's first call as the measured remedy), --no-compile for the reference
graph, PT2E among the remedy candidates of an eager model. Tiny models and shapes: compiles are slow."""

from __future__ import annotations

import json
import warnings

import pytest

from qlint.verify import runner, timing

pytest.importorskip("torchao.quantization.pt2e")

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
ARGS = ("--format", "json", "--input-shape", "1x3x8x8", "--calibration", "1", "--repeat", "3", "--warmup", "1")


def _verify(qlint, path, *args):
    code, out, err = qlint("verify", path, *ARGS, *args)
    assert code in (0, 1), err
    r = json.loads(out)
    assert code == r["exit_code"]
    return r


def test_pt2e_compiled_by_default_compile_in_cold_start_aot_package_measured(write, qlint):
    path = write("small.py", SMALL)
    r = _verify(qlint, path, "--flow", "pt2e", "--cold-calls", "2", "--remedies", "never")
    assert r["converted"] and r["compiled"] and r["backend"] == "x86-inductor" and r["sqnr_db"] > 10
    assert r["candidates"][0]["compiled"] and r["speed_verdict"] in ("slower", "faster", "could not tell")
    assert len(r["cold_start_ms"]) == 2 and r["candidates"][0]["first_call_ms"] == r["cold_start_ms"][0]
    steady, cold = r["int8_ms"], r["cold_start_ms"]
    fired = cold[0] >= 2 * steady and sum(max(0.0, c - steady) for c in cold) >= 5  # QL604's rule
    ql604 = [d for d in r["diagnostics"] if d["code"] == "QL604"]
    assert bool(ql604) == fired
    if fired:  # the compile dominates the first call: the AOTInductor package is the measured remedy
        (d,) = ql604
        assert "torch.compile (inductor) compiles on the first call" in d["message"]
        assert r["aot_first_call_ms"] is not None and r["aot_build_s"] is not None, r["notes"]
        assert f"first call {r['aot_first_call_ms']:.1f} ms" in d["message"]
        assert "aoti_compile_and_package" in d["message"] and "aoti_load_package" in d["message"]


def test_pt2e_no_compile_is_the_reference_graph_without_a_speed_verdict(write, qlint):
    path = write("small.py", SMALL)
    r = _verify(qlint, path, "--flow", "pt2e", "--no-compile", "--remedies", "never")
    assert r["converted"] and not r["compiled"] and r["speed_verdict"] is None
    assert not [d for d in r["diagnostics"] if d["code"] == "QL605"]
    code, out, _ = qlint("verify", path, *ARGS[2:], "--flow", "pt2e", "--no-compile", "--remedies", "never")
    assert "un-compiled reference graph" in out


def test_torch_compile_that_cannot_run_is_said_in_one_line_and_the_rest_measured(write, qlint, monkeypatch):
    def broken(model):
        def call(*args):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore details")

        return call

    monkeypatch.setattr(runner, "compiled", broken)
    path = write("small.py", SMALL)
    r = _verify(qlint, path, "--flow", "pt2e", "--remedies", "never")
    assert r["converted"] and not r["compiled"] and r["sqnr_db"] > 10
    (note,) = [n for n in r["notes"] if "torch.compile could not run here" in n]
    assert "no working C++ compiler found" in note and "more details" not in note
    assert "measured the un-compiled converted model" in note
    assert r["candidates"][0]["name"] == "x86-inductor, not compiled (as configured)"


def test_eager_model_gets_pt2e_compiled_candidates_and_their_code_change(write, qlint, monkeypatch):
    """A constructed clock (float 10 ms, eager int8 12 ms, compiled PT2E 2 ms): PT2E compiled is recommended,
    with the code of the torchao flow; the slow layer kept float is a PT2E candidate too."""

    def call_ms(model, batch):
        model(*batch)
        if type(model).__name__ == "OptimizedModule":
            return 2.0
        return 12.0 if any("quantized" in type(m).__module__ for m in model.modules()) else 10.0

    monkeypatch.setattr(timing, "call_ms", call_ms)
    path = write("small.py", SMALL)
    r = _verify(qlint, path, "--backend", "x86", "--remedies", "always", "--cold-calls", "1")
    pt2e = {c["name"]: c for c in r["candidates"] if c["flow"] == "pt2e"}
    assert set(pt2e) == {"pt2e x86-inductor, compiled", "pt2e x86-inductor, compiled, slow layers kept float"}
    assert all(c["compiled"] and c["error"] is None and c["sqnr_db"] > 10 for c in pt2e.values()), pt2e
    assert pt2e["pt2e x86-inductor, compiled, slow layers kept float"]["float_modules"] == ["dw"]
    rec = r["recommendation"]
    assert rec["name"] in pt2e and rec["speedup_vs_float"] == pytest.approx(5.0)
    for words in ("prepare_pt2e", "X86InductorQuantizer", "convert_pt2e", "torch.compile", "freezing = True"):
        assert words in rec["change"]
    if pt2e[rec["name"]]["float_modules"]:
        assert 'quantizer.set_module_name_qconfig("dw", None)' in rec["change"]
    assert r["speed_verdict"] == "slower" and r["exit_code"] == 1  # eager int8 as configured: 12 vs 10 ms


def test_no_compile_skips_pt2e_candidates(write, qlint):
    path = write("small.py", SMALL)
    r = _verify(qlint, path, "--remedies", "always", "--no-compile", "--cold-calls", "1")
    assert r["candidates"] and not [c for c in r["candidates"] if c["flow"] == "pt2e"]


def test_eager_engines_get_torchscript_frozen_twins_whose_change_runs(write, qlint, monkeypatch):
    """A constructed clock (float 10 ms, eager int8 12 ms, a frozen TorchScript graph 3 ms): each engine's
    converted model is measured once more as a frozen trace, with the same numerics; the fastest is
    recommended, and its code change, run on a converted model, gives the converted model's outputs."""
    import torch

    def call_ms(model, batch):
        model(*batch)
        if isinstance(model, torch.jit.ScriptModule):
            return 3.0
        return 12.0 if any("quantized" in type(m).__module__ for m in model.modules()) else 10.0

    monkeypatch.setattr(timing, "call_ms", call_ms)
    path = write("small.py", SMALL)
    r = _verify(qlint, path, "--backend", "x86", "--remedies", "always", "--no-compile", "--cold-calls", "1")
    by_name = {c["name"]: c for c in r["candidates"]}
    twins = {n: c for n, c in by_name.items() if c["scripted"]}
    assert "x86, TorchScript-frozen" in twins and all(c["error"] is None for c in twins.values()), twins
    for name, twin in twins.items():  # the same converted model: the same outputs
        source = by_name.get(name.removesuffix(", TorchScript-frozen")) or by_name["x86 (as configured)"]
        assert twin["sqnr_db"] == pytest.approx(source["sqnr_db"]) and twin["engine"] == source["engine"]
    rec = r["recommendation"]
    assert rec["name"] in twins and rec["speedup_vs_float"] == pytest.approx(10 / 3, abs=1e-3)
    assert "torch.jit.freeze(torch.jit.trace(model.eval(), example_inputs))" in rec["change"]

    # the change, as written, on a converted copy of the model
    from torch import nn
    from torch.ao.quantization import DeQuantStub, QuantStub, convert, get_default_qconfig, prepare

    torch.manual_seed(0)
    model = nn.Sequential(QuantStub(), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), DeQuantStub()).eval()
    model.qconfig = get_default_qconfig("x86")
    prepare(model, inplace=True)
    example_inputs = (torch.rand(1, 3, 8, 8),)
    model(*example_inputs)
    convert(model, inplace=True)
    expected = model(*example_inputs)
    scope = {"torch": torch, "model": model, "example_inputs": example_inputs}
    with warnings.catch_warnings():  # TorchScript's own deprecation warnings: the change says so already
        warnings.simplefilter("ignore")
        exec("\n".join(line for line in rec["change"].splitlines() if "engine" not in line), scope)  # noqa: S102
    assert isinstance(scope["model"], torch.jit.ScriptModule)
    assert torch.equal(scope["model"](*example_inputs), expected)
