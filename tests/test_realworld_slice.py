"""A fixed slice of the real-model corpus (benchmarks/realworld.py): the files it writes, the real eager flow's
verdicts, qlint's verdicts and the report it prints."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "realworld.py"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None and bool(__import__(module, fromlist=["_"]))
    except Exception:  # noqa: BLE001 - torch's test helpers need expecttest
        return False


HAS_TIMM = _importable("timm")
HAS_TORCH_TESTS = _importable("torch.testing._internal.common_quantization")
SLICE = ["torchvision/resnet18"]
SLICE += ["timm/resnet18"] if HAS_TIMM else []
SLICE += ["torch-test/ConvModel"] if HAS_TORCH_TESTS else []


def _run(tmp: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--only", ",".join(SLICE), "--results", str(tmp / "r.jsonl")]
    cmd += ["--files-dir", str(tmp / "files")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realworld")
    first = _run(tmp)
    assert first.returncode == 0, first.stderr
    return tmp, first, _rows(tmp)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rows(tmp: Path) -> dict[str, dict]:
    """The real flow's verdicts (r.jsonl) joined with qlint's (r_qlint.jsonl, keyed by qlint's code)."""
    real = {row["id"]: row for row in _lines(tmp / "r.jsonl")}
    predictions = {q["id"]: q for q in _lines(tmp / "r_qlint.jsonl")}
    assert set(real) == set(predictions) == set(SLICE)
    return {key: {**row, **predictions[key]} for key, row in real.items()}


def _matrix_row(report: str, group: str, kind: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [group, kind] and len(cells) == 10:
            return cells
    raise AssertionError(f"no matrix row for {group} {kind} in:\n{report}")


def _errors(row: dict, kind: str) -> set[str]:
    return {d["code"] for d in row["qlint"][kind]["diagnostics"] if d["severity"] == "error"}


def test_writes_the_files_a_user_would(measured):
    tmp, _, rows = measured
    plain = Path(rows["torchvision/resnet18"]["files"]["plain"]).read_text()
    wrapped = Path(rows["torchvision/resnet18"]["files"]["wrapped"]).read_text()
    assert "import torchvision\n" in plain and "return torchvision.models.resnet18(weights=None)" in plain
    assert "return QuantWrapper(torchvision.models.resnet18(weights=None))" in wrapped
    # the smallest shape at which the float model runs, written as a pragma for qlint, used by the real flow
    assert rows["torchvision/resnet18"]["shape"] == [1, 3, 64, 64]
    assert plain.startswith("# qlint: input-shape = 1x3x64x64\n")
    if HAS_TIMM:
        timm_plain = Path(rows["timm/resnet18"]["files"]["plain"]).read_text()
        assert 'timm.create_model("resnet18", pretrained=False)' in timm_plain
        assert "torch" not in timm_plain.replace("timm", "")  # the known blind spot: no `import torch`


def test_real_flow_verdicts(measured):
    _, _, rows = measured
    resnet = rows["torchvision/resnet18"]["real"]
    # no stub: the float input reaches the quantized conv1
    assert (resnet["plain"]["ok"], resnet["plain"]["stage"]) == (False, "forward")
    assert "quantized::conv2d" in resnet["plain"]["error"] and "'CPU' backend" in resnet["plain"]["error"]
    # QuantWrapper: `out += identity` on quantized tensors
    assert (resnet["wrapped"]["ok"], resnet["wrapped"]["stage"]) == (False, "forward")
    assert "QuantizedCPU" in resnet["wrapped"]["error"]
    if HAS_TIMM:
        assert not rows["timm/resnet18"]["real"]["plain"]["ok"] and not rows["timm/resnet18"]["real"]["wrapped"]["ok"]
    if HAS_TORCH_TESTS:
        conv = rows["torch-test/ConvModel"]["real"]
        assert not conv["plain"]["ok"] and conv["wrapped"]["ok"] and conv["wrapped"]["stage"] == "done"


def test_qlint_verdicts(measured):
    _, _, rows = measured
    resnet = rows["torchvision/resnet18"]["qlint"]
    assert not any(resnet[k]["crash"] or resnet[k]["timeout"] for k in ("plain", "wrapped"))
    assert {"QL101", "QL103"} <= _errors(rows["torchvision/resnet18"], "plain")
    assert "QL103" in _errors(rows["torchvision/resnet18"], "wrapped")
    if HAS_TIMM:
        assert "QL103" in _errors(rows["timm/resnet18"], "wrapped")
    if HAS_TORCH_TESTS:
        assert "QL101" in _errors(rows["torch-test/ConvModel"], "plain")
        assert not _errors(rows["torch-test/ConvModel"], "wrapped")


def test_report_tables_and_mismatches(measured):
    _, first, rows = measured
    report = first.stdout
    assert f"# qlint vs the real eager flow: {len(SLICE)} models" in report
    assert "0 crashes, 0 timeouts" in report
    assert "| group | file | files | QL001 | QL002 |" in report
    resnet = _matrix_row(report, "torchvision", "wrapped")
    assert resnet[2:] == ["1", "1", "1", "0", "0", "0", "1.000", "1.000"]
    for row in rows.values():  # every row of the matrix agrees with the verdicts in the results file
        for kind in ("plain", "wrapped"):
            fails, said = not row["real"][kind]["ok"], bool(_errors(row, kind))
            section = report.split(f"## {kind} files, missed")[1].split("## ")[0]
            listed = f"- {row['id']} [" in section
            assert listed == (fails and not said), (row["id"], kind)
            if listed:  # a miss is listed with the real error and what qlint said
                after = section.split(f"- {row['id']} [")[1]
                assert row["real"][kind]["error"][:40] in after
    if HAS_TORCH_TESTS:
        assert _matrix_row(report, "torch-test", "wrapped")[2:8] == ["1", "0", "0", "0", "0", "1"]
    assert re.search(r"\| all \| plain \| \d+ \|", report)


def test_resumes_without_measuring_again(measured):
    tmp, _, _ = measured
    lines = (tmp / "r.jsonl").read_text().splitlines()
    again = _run(tmp)
    assert again.returncode == 0, again.stderr
    assert f"{len(SLICE)} already measured, 0 to go" in again.stderr
    assert (tmp / "r.jsonl").read_text().splitlines() == lines


def test_emit_on_the_wrapped_failures(measured):
    _, first, rows = measured
    emit = rows["torchvision/resnet18"]["emit"]  # its wrapped flow fails: emitted from the plain file, judged
    plain = Path(rows["torchvision/resnet18"]["files"]["plain"])
    assert emit["written"] and plain.with_name("resnet18_emitted.py").exists()
    check = emit["check"]
    assert (check["loads"], check["identical"], check["max_diff"], check["fused"]) == (True, True, 0.0, True)
    assert (check["ok"], check["stage"]) == (True, "done")
    if HAS_TORCH_TESTS:
        assert rows["torch-test/ConvModel"]["emit"] is None  # its wrapped flow runs: nothing to emit
    table = first.stdout.split("## qlint emit on the models whose wrapped flow fails")[1]
    # fails, tried, emitted, identical, runs; identical / fails, identical / tried, runs / identical
    assert "| torchvision | 1 | 1 | 1 | 1 | 1 | 1.000 | 1.000 | 1.000 |" in table


def test_recheck_runs_only_qlint_again(measured):
    """A new qlint: its predictions are made again, the real flow's verdicts are kept (not measured again)."""
    tmp, _, rows = measured
    real = (tmp / "r.jsonl").read_text()
    (tmp / "r_qlint.jsonl").unlink()
    cmd = [sys.executable, str(SCRIPT), "--recheck", "--only", ",".join(SLICE), "--results", str(tmp / "r.jsonl")]
    again = subprocess.run(cmd + ["--files-dir", str(tmp / "files")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{len(SLICE)} to go" in again.stderr and "_real" not in again.stderr
    assert (tmp / "r.jsonl").read_text() == real
    rechecked = _rows(tmp)
    for key, row in rows.items():
        for kind in ("plain", "wrapped"):
            assert _errors(rechecked[key], kind) == _errors(row, kind)
