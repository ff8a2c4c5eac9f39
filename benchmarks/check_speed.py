"""What `qlint check` costs over the bare import floor, measured in the same run, interleaved.

    python benchmarks/check_speed.py [--runs 3] [--folder-runs 1] [--pt2e-only]

Each round runs, one after the other (so a busy machine slows all of them alike):
  floor        python -c "import torch, torchvision"
  cold         qlint check <a file building torchvision resnet50>, empty cache   (target <= 1.2x floor)
  cached       the same, its result cached by an earlier run                     (target <= 0.1x floor)
  no-graph     qlint check --no-graph <same file>                                (never imports torch)
  floor-pt2e   python -c "import torch, torchvision, torchao"
  pt2e         qlint check --flow pt2e <same file>, empty cache                 (target <= 1.5x floor-pt2e)
and, --folder-runs times:
  folder       qlint check <folder of 20 model files> --jobs 2, empty cache
  20 runs      qlint check <file> for each of the 20 files, one process each, empty cache
Prints the median, min and max wall time of each and its ratio to the floor's median (the pt2e row:
to floor-pt2e's). ``--pt2e-only`` measures the two PT2E rows alone.
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
    parser.add_argument("--pt2e-only", action="store_true", help="only floor-pt2e and pt2e")
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
        pt2e_floor = [py, "-c", "import torch, torchvision, torchao"]
        run(pt2e_floor, base_env)
        if not args.pt2e_only:
            run([*check, str(single)], warm)  # fill the cache the "cached" rows read
        for _ in range(args.runs):
            if not args.pt2e_only:
                samples.setdefault("floor", []).append(run([py, "-c", "import torch, torchvision"], base_env))
                samples.setdefault("cold", []).append(run([*check, str(single)], fresh_cache()))
                samples.setdefault("cached", []).append(run([*check, str(single)], warm))
                samples.setdefault("no-graph", []).append(run([*check, "--no-graph", str(single)], fresh_cache()))
            samples.setdefault("floor-pt2e", []).append(run(pt2e_floor, base_env))
            samples.setdefault("pt2e", []).append(run([*check, "--flow", "pt2e", str(single)], fresh_cache()))
        for _ in range(0 if args.pt2e_only else args.folder_runs):
            samples.setdefault("folder-20", []).append(run([*check, str(folder), *jobs], fresh_cache()))
            env = fresh_cache()
            samples.setdefault("20-runs", []).append(sum(run([*check, str(f)], env) for f in files))
    floor = statistics.median(samples.get("floor") or samples["floor-pt2e"])
    pt2e_floor = statistics.median(samples["floor-pt2e"])
    print(f"cores: {len(os.sched_getaffinity(0))}; folder run: {' '.join(jobs) or '(default jobs: the cores)'}")
    print(f"| {'what':<10} | {'median s':>8} | {'min-max s':>13} | {'x floor':>7} | target |")
    print(f"|{'-' * 12}|{'-' * 10}|{'-' * 15}|{'-' * 9}|--------|")
    targets = {"cold": "<= 1.2", "cached": "<= 0.1", "pt2e": "<= 1.5"}
    for name, values in samples.items():
        med = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        base = pt2e_floor if name == "pt2e" else floor
        print(f"| {name:<10} | {med:>8.2f} | {spread:>13} | {med / base:>7.2f} | {targets.get(name, ''):>6} |")
    if "folder-20" in samples:  # --folder-runs 0 skips the folder rows
        ratio = statistics.median(samples["folder-20"]) / statistics.median(samples["20-runs"])
        print(f"folder-20 / 20-runs = {ratio:.2f}")


if __name__ == "__main__":
    main()
