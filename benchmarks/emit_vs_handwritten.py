"""`qlint emit` against torchvision's hand-written quantizable twins.

For each model: build torchvision's float model (random weights, BN statistics randomized), write a
file that builds it, `qlint emit` it (safe fixes) and `qlint emit --unsafe-fixes` it, load the float
weights into the emitted models and into `torchvision.models.quantization.<model>` (quantize=False),
convert all with the same qconfig and the same calibration batches, then compare int8 latency (median,
this machine; the models are timed interleaved, run by run, so load from other processes hits all of
them alike, and the latency ratio is the median of the run-by-run ratios) and SQNR against each
model's own float output. Numbers, not pass/fail; the goal is latency within 10% and SQNR within 1 dB.

The twins replace ReLU6 by ReLU (torchvision's `_replace_relu`) so Conv-BN-ReLU fuses: that changes the
float numerics, so only `--unsafe-fixes` does it; the safe emit keeps ReLU6 (fuses Conv-BN only).

Run: python benchmarks/emit_vs_handwritten.py [resnet18 resnet50 mobilenet_v2 mobilenet_v3_large]
"""

from __future__ import annotations

import copy
import importlib.util
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large")
SHAPE = (1, 3, 224, 224)
CALIBRATION = 8
RUNS = 30
ENGINE = "x86"


def float_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def emitted_model(name: str, workdir: Path, unsafe: bool = False) -> tuple[torch.nn.Module, float, str]:
    from qlint.config import Settings
    from qlint.fix.emit import emit

    source = workdir / f"{name}_float.py"
    source.write_text(
        f"import torchvision\nfrom torch import nn\n\n\ndef build_model() -> nn.Module:\n"
        f"    return torchvision.models.{name}(weights=None)\n"
    )
    out = workdir / f"{name}_quantizable{'_unsafe' if unsafe else ''}.py"
    t0 = time.perf_counter()
    emit(str(source), str(out), Settings(), unsafe=unsafe)
    seconds = time.perf_counter() - t0
    spec = importlib.util.spec_from_file_location(f"emitted_{name}{'_unsafe' if unsafe else ''}", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.build_model().eval(), seconds, out.read_text()


def handwritten_model(name: str) -> torch.nn.Module:
    return getattr(torchvision.models.quantization, name)(weights=None, quantize=False).eval()


def flat(out) -> torch.Tensor:
    return out.reshape(-1).float()


def sqnr(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = (flat(ref) - flat(got)).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(flat(ref).pow(2).sum().item() / noise)


def latency_ms(models: dict, x) -> dict[str, list[float]]:
    """Latencies of each model, timed interleaved (one run of each in turn, ``RUNS`` times)."""
    times: dict[str, list[float]] = {label: [] for label in models}
    with torch.no_grad():
        for model in models.values():
            for _ in range(3):
                model(x)
        for _ in range(RUNS):
            for label, model in models.items():
                t0 = time.perf_counter()
                model(x)
                times[label].append((time.perf_counter() - t0) * 1000)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of the run-by-run ratios: a load spike hits both runs of a pair, not one model's median."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def convert(model, calibration) -> torch.nn.Module:
    model = copy.deepcopy(model).eval()
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig(ENGINE)
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for x in calibration:
            model(x)
    return torch.ao.quantization.convert(model, inplace=True)


def run(name: str, workdir: Path) -> list[dict]:
    """One row per emitted variant (safe, --unsafe-fixes), each against the twin."""
    original = float_model(name)
    variants = {}
    for label, unsafe in (("emit", False), ("emit --unsafe-fixes", True)):
        model, seconds, text = emitted_model(name, workdir, unsafe)
        model.load_state_dict(original.state_dict(), strict=True)
        same_file = unsafe and text == variants["emit"][2]
        variants[label] = (model, seconds, text, same_file)
    twin = handwritten_model(name)
    missing, unexpected = twin.load_state_dict(original.state_dict(), strict=False)
    torch.manual_seed(2)
    calibration = [torch.rand(SHAPE) for _ in range(CALIBRATION)]
    x = torch.rand(SHAPE)
    floats, int8, sqnrs = {}, {}, {}
    with torch.no_grad():
        models = {label: v[0] for label, v in variants.items() if not v[3]} | {"twin": twin}
        for label, model in models.items():
            reference = model(x)
            floats[label] = model
            int8[label] = convert(model, calibration)
            sqnrs[label] = sqnr(reference, int8[label](x))
        float_ms = latency_ms(floats, x)
        int8_ms = latency_ms(int8, x)
        rows = []
        for label, (model, seconds, _, same_file) in variants.items():
            key = "emit" if same_file else label
            rows.append({
                "model": name, "variant": label, "emit_s": seconds, "same_file": same_file,
                "twin_keys_ok": not missing and not unexpected,
                "float_same": torch.equal(original(x), model(x)),
                "float_ms": statistics.median(float_ms[key]), "int8_ms": statistics.median(int8_ms[key]),
                "twin_int8_ms": statistics.median(int8_ms["twin"]),
                "ratio": paired_ratio(int8_ms[key], int8_ms["twin"]),
                "sqnr": sqnrs[key], "twin_sqnr": sqnrs["twin"],
            })  # fmt: skip
    return rows


def main(names: list[str]) -> None:
    torch.backends.quantized.engine = ENGINE
    warnings.simplefilter("ignore")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, engine {ENGINE}, "
        f"{torch.get_num_threads()} threads, input {SHAPE}, median of {RUNS} interleaved runs"
    )
    header = (
        f"{'model':<19} {'variant':<19} {'emit s':>6} {'float ms':>9} {'int8 ms':>8} {'twin int8':>9} "
        f"{'lat ratio':>9} {'SQNR dB':>8} {'twin SQNR':>9} {'dSQNR':>6}  notes"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for r in run(name, Path(tmp)):
                notes = []
                if r["variant"] == "emit" and not r["float_same"]:
                    notes.append("float output differs!")
                if r["variant"] != "emit" and not r["float_same"]:
                    notes.append("float numerics changed (unsafe)")
                if r["same_file"]:
                    notes.append("no unsafe fix applies: same code as emit")
                if not r["twin_keys_ok"]:
                    notes.append("twin state_dict keys differ")
                print(
                    f"{name:<19} {r['variant']:<19} {r['emit_s']:>6.1f} {r['float_ms']:>9.1f} "
                    f"{r['int8_ms']:>8.1f} {r['twin_int8_ms']:>9.1f} {r['ratio']:>9.2f} "
                    f"{r['sqnr']:>8.1f} {r['twin_sqnr']:>9.1f} {r['sqnr'] - r['twin_sqnr']:>6.1f}  " + "; ".join(notes),
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
