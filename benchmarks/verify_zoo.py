"""``qlint verify`` measured on this machine: seed 001 with every remedy candidate, and torchvision's
quantizable models per quantized engine. Prints the README's tables (markdown) and what they ran on.

    python benchmarks/verify_zoo.py [--threads 2] [--repeat 10] [--only seed001|zoo] [--models resnet18,...]

Seed 001 runs the CLI itself (``python -m qlint verify examples/seed001_lraspp.py --backend x86
--input-shape 1x3x512x512 --remedies always --format json``): eager int8 on every engine, float islands,
and PT2E (torchao's X86InductorQuantizer) compiled with inductor, with and without the slow layers kept
float. The zoo table uses verify's own flow and timing on each model. Every speedup is float / int8 taken
pair by pair over interleaved calls after warm-up: the median of the pairs and its interquartile range.
Random weights; SQNR is the int8 output against float on held-out random batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from qlint.verify import accuracy, stats, timing  # noqa: E402
from qlint.verify.calibrate import random_batches  # noqa: E402
from qlint.verify.flows import fuse_eager, make_flow, quiet, usable_engines, use_engine  # noqa: E402


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(threads: int) -> str:
    try:
        import torchao

        ao = f", torchao {torchao.__version__}"
    except ImportError:
        ao = ", no torchao"
    return (
        f"torch {torch.__version__}{ao}, {cpu_name()} ({os.cpu_count()} cores), "
        f"torch.set_num_threads({threads}), python {platform.python_version()}"
    )


# ---------------------------------------------------------------- seed 001: the CLI, every candidate


def seed001(args: argparse.Namespace) -> None:
    path = os.path.join(ROOT, "examples", "seed001_lraspp.py")
    cmd = [sys.executable, "-m", "qlint", "verify", path, "--backend", "x86", "--input-shape", "1x3x512x512",
           "--remedies", "always", "--format", "json", "--threads", str(args.threads), "--repeat", str(args.repeat),
           "--warmup", str(args.warmup), "--calibration", str(args.calibration)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, check=False)
    if proc.returncode not in (0, 1):
        sys.exit(f"qlint verify failed ({proc.returncode}):\n{proc.stderr}")
    r = json.loads(proc.stdout)
    print(f"Seed 001 (examples/seed001_lraspp.py), 512x512, as configured: eager on x86; "
          f"`{' '.join(['qlint', *cmd[3:]]).replace(path, 'examples/seed001_lraspp.py')}` "
          f"({time.perf_counter() - start:.0f} s)\n")  # fmt: skip
    rec = (r.get("recommendation") or {}).get("name")
    print(f"| candidate | int8 ms | speedup vs float eager ({r['float_ms']:.1f} ms) | IQR | SQNR dB | first call |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in r["candidates"]:
        name = c["name"] + (" (recommended)" if c["name"] == rec else "")
        if c["error"]:
            print(f"| {name} | - | {c['error']} | | | |")
            continue
        first = f"{c['first_call_ms']:.0f} ms" if c.get("first_call_ms") else ""
        speed = f"{c['speedup_vs_float']:.2f}x" + (" (suspect)" if c["suspect"] else "")
        iqr = f"{c['speedup_vs_float_low']:.2f}-{c['speedup_vs_float_high']:.2f}x"
        cells = [name, f"{c['int8_ms']:.1f}", speed, iqr, f"{c['sqnr_db']:.1f}", first]
        print("| " + " | ".join(f"**{x}**" if c["name"] == rec and x else x for x in cells) + " |")
    slow = [lay for lay in r["layers"] if lay.get("dilated_grouped")]
    if slow:
        words = ", ".join(f"`{lay['module']}` {lay['float_ms']:.2f} -> {lay['int8_ms']:.2f} ms" for lay in slow)
        print(f"\nDilated depthwise convs, float -> int8 (x86 engine), per layer: {words}")
    if any(c.get("compiled") for c in r["candidates"]):
        print("first call of a compiled candidate: torch.compile (inductor) compiling it, once per process")
    codes = sorted({f"{d['code']} [{d['severity']}]" for d in r["diagnostics"]})
    print(f"verdict: {r['speed_verdict']} (float/int8 {r['speedup_vs_float']:.2f}x, IQR "
          f"{r['speedup_vs_float_low']:.2f}-{r['speedup_vs_float_high']:.2f}x); findings: {', '.join(codes)}; "
          f"exit {proc.returncode}\n")  # fmt: skip


# ---------------------------------------------------------------- the zoo: float vs int8 per engine


def _tv(name: str):
    def build() -> nn.Module:
        import torchvision.models.quantization as q

        return getattr(q, name)(weights=None, quantize=False)

    return build


MODELS = {
    "resnet18": _tv("resnet18"),
    "resnet50": _tv("resnet50"),
    "mobilenet_v2": _tv("mobilenet_v2"),
    "mobilenet_v3_large": _tv("mobilenet_v3_large"),
    "shufflenet_v2_x1_0": _tv("shufflenet_v2_x1_0"),
}


def bench(name: str, args: argparse.Namespace) -> list[tuple]:
    torch.manual_seed(0)
    with quiet():
        model = MODELS[name]().eval()
        base, _ = fuse_eager(model)
    dims = (1, 3, args.shape, args.shape)
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
    float_ms = sorted(times["float"])[len(times["float"]) // 2]
    rows = []
    for engine in args.engines:
        sp = stats.speedup(times["float"], times[engine])
        rows.append((name, engine, float_ms, sorted(times[engine])[len(times[engine]) // 2], sp, sqnr[engine]))
    return sorted(rows, key=lambda row: -row[4].median)


def zoo(args: argparse.Namespace) -> None:
    print(f"torchvision's quantizable models, {args.shape}x{args.shape}, eager int8 per engine:\n")
    print("| model | engine | float ms | int8 ms | speedup | IQR | SQNR dB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    for name in args.models.split(","):
        for model, engine, f, q, sp, sq in bench(name, args):
            print(f"| {model} | {engine} | {f:.1f} | {q:.1f} | {sp.median:.2f}x | {sp.low:.2f}-{sp.high:.2f}x "
                  f"| {sq:.1f} |", flush=True)  # fmt: skip
    print(f"\n({time.perf_counter() - start:.0f} s) * random weights whose float output vanished (~1e-9): "
          "BatchNorm statistics re-estimated on the calibration batches first, as qlint verify does")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=4)
    parser.add_argument("--shape", type=int, default=224, help="input side of the zoo models (default 224)")
    parser.add_argument("--only", choices=("seed001", "zoo"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engines", default=",".join(usable_engines()))
    args = parser.parse_args()
    args.engines = [e for e in args.engines.split(",") if e]
    torch.set_num_threads(args.threads)
    print(header(args.threads))
    print(f"speedup = float / int8 per pair of interleaved calls ({args.repeat} pairs after {args.warmup} "
          "warm-up rounds): median and interquartile range\n")  # fmt: skip
    if args.only in (None, "seed001"):
        seed001(args)
    if args.only in (None, "zoo"):
        zoo(args)


if __name__ == "__main__":
    main()
