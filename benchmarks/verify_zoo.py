"""Float vs int8 on this machine, per quantized engine: torchvision's quantizable models and seed 001.

    python benchmarks/verify_zoo.py [--threads 2] [--repeat 10] [--models resnet18,seed001] [--shape 224]

Uses ``qlint verify``'s own flow (fuse_model -> qconfig of the engine -> prepare -> calibrate -> convert)
and its timing (median of round-robin calls of float and every engine, after warm-up). Random weights;
SQNR is the int8 output against float on a held-out random batch. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qlint.verify import accuracy, timing  # noqa: E402
from qlint.verify.calibrate import random_batches  # noqa: E402
from qlint.verify.flows import fuse_eager, make_flow, quiet, usable_engines, use_engine  # noqa: E402


def seed001() -> nn.Module:
    """The seed-001 example itself (examples/seed001_lraspp.py): MobileNetV3 with dilated tail + LR-ASPP."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "seed001_lraspp.py")
    spec = importlib.util.spec_from_file_location("seed001_lraspp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.QuantizableLRASPP()


def _tv(name: str):
    def build() -> nn.Module:
        import torchvision.models.quantization as q

        return getattr(q, name)(weights=None, quantize=False)

    return build


MODELS = {
    "resnet18": (_tv("resnet18"), 224),
    "resnet50": (_tv("resnet50"), 224),
    "mobilenet_v2": (_tv("mobilenet_v2"), 224),
    "mobilenet_v3_large": (_tv("mobilenet_v3_large"), 224),
    "shufflenet_v2_x1_0": (_tv("shufflenet_v2_x1_0"), 224),
    "seed001": (seed001, 512),
}


def bench(name: str, shape: int, args: argparse.Namespace) -> list[tuple]:
    factory, default = MODELS[name.rstrip("*")]
    size = shape or default
    torch.manual_seed(0)
    with quiet():
        model = factory().eval()
        base, _ = fuse_eager(model)
    dims = (1, 3, size, size)
    calib, held = random_batches(dims, args.calibration, 0), random_batches(dims, 1, 1)
    ref = accuracy.outputs(model, held)
    if accuracy.vanished(ref) and accuracy.reestimate_batchnorm(model, calib):  # as qlint verify does
        ref = accuracy.outputs(model, held)
        with quiet():
            base, _ = fuse_eager(model)
        name += "*"
    models: dict[str, tuple[nn.Module, str | None]] = {"float": (model, None)}
    sqnr: dict[str, float] = {}
    for engine in args.engines:
        q = make_flow("eager", engine).quantize(base, calib[0], calib)
        with use_engine(engine), quiet():
            sqnr[engine] = accuracy.compare(ref, accuracy.outputs(q, held))[0]
        models[engine] = (q, engine)
    with quiet():
        times = timing.interleaved_ms(models, held[0], args.warmup, args.repeat)
    float_ms = statistics.median(times["float"])
    rows = []
    for engine in args.engines:
        ms = statistics.median(times[engine])
        rows.append((name, size, engine, float_ms, ms, float_ms / ms, sqnr[engine]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=4)
    parser.add_argument("--shape", type=int, default=0, help="input side (default: 224, 512 for seed001)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engines", default=",".join(usable_engines()))
    args = parser.parse_args()
    args.engines = [e for e in args.engines.split(",") if e]
    torch.set_num_threads(args.threads)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {args.threads} threads (torch.set_num_threads), {cpu}, "
          f"median of {args.repeat} round-robin calls after {args.warmup}, random weights\n")  # fmt: skip
    print("| model | input | engine | float ms | int8 ms | speedup | SQNR dB |")
    print("|---|---|---|---:|---:|---:|---:|")
    start = time.perf_counter()
    for name in args.models.split(","):
        for row in bench(name, args.shape, args):
            model, size, engine, f, q, speed, sq = row
            print(f"| {model} | {size} | {engine} | {f:.1f} | {q:.1f} | {speed:.2f}x | {sq:.1f} |", flush=True)
    print(
        f"\n({time.perf_counter() - start:.0f} s) * random weights whose float output vanished (~1e-9): "
        "BatchNorm statistics re-estimated on the calibration batches first, as qlint verify does"
    )


if __name__ == "__main__":
    main()
