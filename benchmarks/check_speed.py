"""How much `qlint check` costs over the bare import floor, measured in the same run.

    python benchmarks/check_speed.py [--runs 5]

Prints the median wall time of:
  floor      python -c "import torch, torchvision"
  check      qlint check <a file building torchvision resnet50>   (target: <= 1.5x floor)
  no-graph   qlint check --no-graph <same file>                   (must not import torch)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_FILE = """import torchvision
from torch import nn


def build_model() -> nn.Module:
    return torchvision.models.resnet50(weights=None)
"""


def timed(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=False, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50_model.py"
        path.write_text(MODEL_FILE)
        py = sys.executable
        timed([py, "-c", "import torch, torchvision"], 1)  # warm the file cache
        rows = {
            "floor": timed([py, "-c", "import torch, torchvision"], args.runs),
            "check": timed([py, "-m", "qlint", "check", str(path)], args.runs),
            "no-graph": timed([py, "-m", "qlint", "check", "--no-graph", str(path)], args.runs),
            "python": timed([py, "-c", "pass"], args.runs),
        }
    floor = rows["floor"]
    print(f"{'what':<10} {'median s':>9} {'x floor':>8}")
    for name, seconds in rows.items():
        print(f"{name:<10} {seconds:>9.2f} {seconds / floor:>8.2f}")
    print(f"check/floor = {rows['check'] / floor:.2f} (target <= 1.50)")


if __name__ == "__main__":
    main()
