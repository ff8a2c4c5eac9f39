"""What `qlint check` costs over the bare import floor, measured in the same run, interleaved.

    python benchmarks/check_speed.py [--runs 3] [--folder-runs 1]

Each round runs, one after the other (so a busy machine slows all of them alike):
  floor        python -c "import torch, torchvision"
  cold         qlint check <a file building torchvision resnet50>, empty cache   (target <= 1.2x floor)
  cached       the same, its result cached by an earlier run                     (target <= 0.1x floor)
  no-graph     qlint check --no-graph <same file>                                (never imports torch)
and, --folder-runs times:
  folder       qlint check <folder of 20 model files> --jobs 2, empty cache
  20 runs      qlint check <file> for each of the 20 files, one process each, empty cache
Prints the median, min and max wall time of each and its ratio to the floor's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODEL_FILE = """import torchvision
from torch import nn


def build_model() -> nn.Module:
    return torchvision.models.{name}(weights=None)
"""

FOLDER_MODELS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1"]


def run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, env=env, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder-runs", type=int, default=1)
    args = parser.parse_args()
    py = sys.executable
    base_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base_env.pop("QLINT_NO_CACHE", None)
    help_text = subprocess.run([py, "-m", "qlint", "check", "--help"], capture_output=True, text=True, env=base_env)
    jobs = ["--jobs", "2"] if "--jobs" in help_text.stdout else []  # else the default: the usable cores
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        single = tmp_path / "one" / "resnet50_model.py"
        single.parent.mkdir()
        single.write_text(MODEL_FILE.format(name="resnet50"))
        folder = tmp_path / "twenty"
        folder.mkdir()
        files = []
        for i in range(20):
            path = folder / f"model_{i:02d}.py"
            path.write_text(MODEL_FILE.format(name=FOLDER_MODELS[i % len(FOLDER_MODELS)]))
            files.append(path)
        counter = iter(range(10**6))

        def fresh_cache() -> dict[str, str]:
            return {**base_env, "QLINT_CACHE_DIR": str(tmp_path / f"cache-{next(counter)}")}

        warm = {**base_env, "QLINT_CACHE_DIR": str(tmp_path / "warm-cache")}
        check = [py, "-m", "qlint", "check"]
        run([py, "-c", "import torch, torchvision"], base_env)  # warm the file cache
        run([*check, str(single)], warm)  # fill the cache the "cached" rows read
        for _ in range(args.runs):
            samples.setdefault("floor", []).append(run([py, "-c", "import torch, torchvision"], base_env))
            samples.setdefault("cold", []).append(run([*check, str(single)], fresh_cache()))
            samples.setdefault("cached", []).append(run([*check, str(single)], warm))
            samples.setdefault("no-graph", []).append(run([*check, "--no-graph", str(single)], fresh_cache()))
        for _ in range(args.folder_runs):
            samples.setdefault("folder-20", []).append(run([*check, str(folder), *jobs], fresh_cache()))
            env = fresh_cache()
            samples.setdefault("20-runs", []).append(sum(run([*check, str(f)], env) for f in files))
    floor = statistics.median(samples["floor"])
    print(f"cores: {len(os.sched_getaffinity(0))}; folder run: {' '.join(jobs) or '(default jobs: the cores)'}")
    print(f"| {'what':<10} | {'median s':>8} | {'min-max s':>13} | {'x floor':>7} | target |")
    print(f"|{'-' * 12}|{'-' * 10}|{'-' * 15}|{'-' * 9}|--------|")
    targets = {"cold": "<= 1.2", "cached": "<= 0.1"}
    for name, values in samples.items():
        med = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"| {name:<10} | {med:>8.2f} | {spread:>13} | {med / floor:>7.2f} | {targets.get(name, ''):>6} |")
    if "folder-20" in samples:  # --folder-runs 0 skips the folder rows
        ratio = statistics.median(samples["folder-20"]) / statistics.median(samples["20-runs"])
        print(f"folder-20 / 20-runs = {ratio:.2f}")


if __name__ == "__main__":
    main()
