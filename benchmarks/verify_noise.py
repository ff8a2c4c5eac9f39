"""Does ``qlint verify``'s speed verdict hold under load? Five runs in a row while another process keeps one
core busy; each run's verdict (slower / faster / could not tell), float/int8 with its IQR, exit code.

    python benchmarks/verify_noise.py [--runs 5] [--threads 2] [--no-load]

Passes when every run gives the same verdict, or "could not tell" (never "slower" in one run and
"faster" in another). Models: seed 001 on x86 at 512x512 (int8 slower: dilated depthwise convs) and
torchvision's quantizable resnet18 at 224x224 (int8 faster), eager, ``--remedies never``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESNET18 = """from torchvision.models.quantization import resnet18

# qlint: model = resnet18(weights=None, quantize=False)
"""


def busy() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(path: str, shape: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "qlint", "verify", path, "--backend", "x86", "--input-shape", shape,
           "--remedies", "never", "--format", "json", "--threads", str(threads)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, check=False)
    if proc.returncode not in (0, 1):
        sys.exit(f"qlint verify failed ({proc.returncode}):\n{proc.stderr}")
    r = json.loads(proc.stdout)
    r["_exit"], r["_s"] = proc.returncode, time.perf_counter() - t0
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-load", action="store_true", help="without the busy process")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, --threads {args.threads}, "
          f"{'no extra load' if args.no_load else 'one other process spinning on a core'}\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        resnet = os.path.join(tmp, "resnet18.py")
        with open(resnet, "w", encoding="utf-8") as fh:
            fh.write(RESNET18)
        models = [
            ("seed001 x86 512", os.path.join(ROOT, "examples", "seed001_lraspp.py"), "1x3x512x512"),
            ("resnet18 x86 224", resnet, "1x3x224x224"),
        ]
        load = None if args.no_load else busy()
        ok = True
        try:
            print("| model | run | float ms | int8 ms | float/int8 | IQR | verdict | QL605 | exit |")
            print("|---|---:|---:|---:|---:|---:|---|---|---:|")
            for label, path, shape in models:
                verdicts = []
                for i in range(1, args.runs + 1):
                    r = run(path, shape, args.threads)
                    ql605 = [d["severity"] for d in r["diagnostics"] if d["code"] == "QL605"]
                    verdicts.append(r["speed_verdict"])
                    print(f"| {label} | {i} | {r['float_ms']:.1f} | {r['int8_ms']:.1f} | "
                          f"{r['speedup_vs_float']:.2f}x | {r['speedup_vs_float_low']:.2f}-"
                          f"{r['speedup_vs_float_high']:.2f}x | {r['speed_verdict']} | {', '.join(ql605) or '-'} | "
                          f"{r['_exit']} |", flush=True)  # fmt: skip
                decided = set(verdicts) - {"could not tell"}
                same = len(decided) <= 1
                ok &= same
                print(f"| {label} | | | | | | {'consistent' if same else 'FLIPPED'}: "
                      f"{', '.join(f'{v} x{verdicts.count(v)}' for v in dict.fromkeys(verdicts))} | | |")  # fmt: skip
        finally:
            if load is not None:
                load.kill()
                load.wait()
    print(f"\n{'PASS' if ok else 'FAIL'}: the same verdict in every run, or could not tell")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
