"""`qlint emit` against torchvision's hand-written quantizable twins.

For each model: build torchvision's float model (random weights, BN statistics randomized), write a
file that builds it, `qlint emit` it, load the float weights into the emitted model and into
`torchvision.models.quantization.<model>` (quantize=False), convert both with the same qconfig and the
same calibration batches, then compare int8 latency (median, this machine) and SQNR against each
model's own float output. Numbers, not pass/fail; the goal is latency within 10% and SQNR within 1 dB.

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
RUNS = 15
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


def emitted_model(name: str, workdir: Path) -> tuple[torch.nn.Module, float]:
    from qlint.config import Settings
    from qlint.fix.emit import emit

    source = workdir / f"{name}_float.py"
    source.write_text(
        f"import torchvision\nfrom torch import nn\n\n\ndef build_model() -> nn.Module:\n"
        f"    return torchvision.models.{name}(weights=None)\n"
    )
    out = workdir / f"{name}_quantizable.py"
    t0 = time.perf_counter()
    emit(str(source), str(out), Settings())
    seconds = time.perf_counter() - t0
    spec = importlib.util.spec_from_file_location(f"emitted_{name}", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.build_model().eval(), seconds


def handwritten_model(name: str) -> torch.nn.Module:
    return getattr(torchvision.models.quantization, name)(weights=None, quantize=False).eval()


def flat(out) -> torch.Tensor:
    return out.reshape(-1).float()


def sqnr(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = (flat(ref) - flat(got)).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(flat(ref).pow(2).sum().item() / noise)


def latency_ms(model, x) -> float:
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def convert(model, calibration) -> torch.nn.Module:
    model = copy.deepcopy(model).eval()
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig(ENGINE)
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for x in calibration:
            model(x)
    return torch.ao.quantization.convert(model, inplace=True)


def run(name: str, workdir: Path) -> dict:
    original = float_model(name)
    emitted, emit_seconds = emitted_model(name, workdir)
    emitted.load_state_dict(original.state_dict(), strict=True)
    twin = handwritten_model(name)
    missing, unexpected = twin.load_state_dict(original.state_dict(), strict=False)
    torch.manual_seed(2)
    calibration = [torch.rand(SHAPE) for _ in range(CALIBRATION)]
    x = torch.rand(SHAPE)
    row = {"model": name, "emit_s": emit_seconds, "twin_keys_ok": not missing and not unexpected}
    with torch.no_grad():
        row["float_same"] = torch.equal(original(x), emitted(x))
        for label, model in (("emitted", emitted), ("twin", twin)):
            reference = model(x)
            row[f"{label}_float_ms"] = latency_ms(model, x)
            q = convert(model, calibration)
            row[f"{label}_int8_ms"] = latency_ms(q, x)
            row[f"{label}_sqnr"] = sqnr(reference, q(x))
    return row


def main(names: list[str]) -> None:
    torch.backends.quantized.engine = ENGINE
    warnings.simplefilter("ignore")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, engine {ENGINE}, "
        f"{torch.get_num_threads()} threads, input {SHAPE}, median of {RUNS} runs"
    )
    header = (
        f"{'model':<20} {'emit s':>6} {'float ms':>9} {'int8 ms':>8} {'twin int8':>9} {'lat ratio':>9} "
        f"{'SQNR dB':>8} {'twin SQNR':>9} {'dSQNR':>6}  notes"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = run(name, Path(tmp))
            notes = [] if r["float_same"] else ["float output differs!"]
            if not r["twin_keys_ok"]:
                notes.append("twin state_dict keys differ")
            print(
                f"{name:<20} {r['emit_s']:>6.1f} {r['emitted_float_ms']:>9.1f} {r['emitted_int8_ms']:>8.1f} "
                f"{r['twin_int8_ms']:>9.1f} {r['emitted_int8_ms'] / r['twin_int8_ms']:>9.2f} "
                f"{r['emitted_sqnr']:>8.1f} {r['twin_sqnr']:>9.1f} "
                f"{r['emitted_sqnr'] - r['twin_sqnr']:>6.1f}  " + "; ".join(notes),
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
