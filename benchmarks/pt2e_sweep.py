"""``qlint check --flow pt2e`` on every classification model of torchvision, and a real export where it says QL508.

    nice -n 10 python benchmarks/pt2e_sweep.py                    # all of list_models(module=torchvision.models)
    nice -n 10 python benchmarks/pt2e_sweep.py resnet18 vit_b_16  # some of them
    python benchmarks/pt2e_sweep.py --out /tmp/sweep.json         # also keep the results as json

For each model it writes one small file (``build()`` returning ``torchvision.models.<name>(weights=None)``)
and runs the real CLI on it (in this process, so torch is imported once; each file is still checked
in qlint's forked child), with ``--format json`` and then ``--statistics --format json`` (served by
the result cache, a private one). It reports
crashes (exit 2, QL001) and, for each model with QL508, whether ``torch.export.export`` really fails
on CPU (a subprocess per model, random weights, the same 1x3x224x224 input and non-strict export).
Numbers, not pass/fail; resumable is not required.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

REAL_EXPORT = """
import sys, torch, torchvision
model = torchvision.models.get_model(sys.argv[1], weights=None).eval()
try:
    torch.export.export(model, (torch.randn(1, 3, 224, 224),))
except Exception as exc:
    print("fails:", type(exc).__name__, str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "")
else:
    print("exports")
"""


def check(path: str, *args: str) -> tuple[int, str, str]:
    from qlint.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", path, "--flow", "pt2e", *args])
    return code, out.getvalue(), err.getvalue()


def sweep(names: list[str], folder: str) -> list[dict]:
    rows = []
    for name in names:
        path = os.path.join(folder, f"tv_{name}.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"import torchvision\n\n\ndef build():\n    return torchvision.models.{name}(weights=None)\n")
        start = time.perf_counter()
        code, out, err = check(path, "--format", "json", "--timeout", "600")
        seconds = time.perf_counter() - start
        row: dict = {"model": name, "exit": code, "seconds": round(seconds, 1), "stderr": err.strip()[-300:]}
        try:
            findings = json.loads(out)
        except json.JSONDecodeError:
            findings = []
        row["findings"] = [(d["code"], d["message"]) for d in findings]
        if any(d["code"] == "QL508" for d in findings):
            real = subprocess.run(
                [sys.executable, "-c", REAL_EXPORT, name], capture_output=True, text=True, timeout=1800
            )
            row["real_export"] = (real.stdout.strip() or real.stderr.strip()[-200:]).splitlines()[-1:]
        code, out, _ = check(path, "--format", "json", "--statistics")
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            cov = json.loads(out)["coverage"]
            row["coverage"] = [
                {k: c[k] for k in ("model", "compute_ops", "compute_annotated", "left_float", "prepare_error")}
                for c in cov
            ]
        rows.append(row)
        codes = sorted({c for c, _ in row["findings"]})
        print(f"{name:<22} exit {row['exit']}  {row['seconds']:>6.1f} s  {' '.join(codes) or '-'}", flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    lines = ["", "## Crashes (exit 2 or QL001)"]
    crashes = [r for r in rows if r["exit"] == 2 or any(c == "QL001" for c, _ in r["findings"])]
    lines += [
        f"- {r['model']}: exit {r['exit']} {r['stderr'] or [m for c, m in r['findings'] if c == 'QL001']}"
        for r in crashes
    ] or ["- none"]
    lines += ["", "## QL508 (export failed on meta) vs a real torch.export.export on CPU"]
    for r in rows:
        for code, message in r["findings"]:
            if code == "QL508":
                lines.append(f"- {r['model']}: {message}\n  real export: {r.get('real_export')}")
    if not any(c == "QL508" for r in rows for c, _ in r["findings"]):
        lines.append("- none")
    lines += [
        "",
        "## Findings and coverage per model",
        "| model | s | findings | compute annotated | left float |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        codes: dict[str, int] = {}
        for c, _ in r["findings"]:
            codes[c] = codes.get(c, 0) + 1
        cov = r.get("coverage") or []
        annotated = ", ".join(f"{c['compute_annotated']}/{c['compute_ops']}" for c in cov) or "-"
        left = ", ".join(str(c["left_float"]) for c in cov) or "-"
        found = " ".join(f"{c}x{n}" for c, n in sorted(codes.items())) or "-"
        lines.append(f"| {r['model']} | {r['seconds']} | {found} | {annotated} | {left} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="torchvision model names (default: every classification model)")
    parser.add_argument("--out", help="write the rows as json here")
    args = parser.parse_args()
    import torchvision

    names = args.models or torchvision.models.list_models(module=torchvision.models)
    with tempfile.TemporaryDirectory(prefix="qlint-sweep-") as folder:
        os.environ["QLINT_CACHE_DIR"] = os.path.join(folder, "cache")
        rows = sweep(names, folder)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    print(summary(rows))


if __name__ == "__main__":
    main()
