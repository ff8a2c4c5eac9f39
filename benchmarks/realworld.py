"""qlint against the real eager conversion on models nobody on the team wrote: torchvision, timm, torch's test models.

    python benchmarks/realworld.py [--group torchvision|timm|torch-test] [--only NAME[,NAME]] [--limit N]
                                   [--jobs 1] [--results benchmarks/results/realworld.jsonl] [--report-only]

For every model of ``torchvision.models.list_models()`` (``weights=None``, ``weights_backbone=None``), the smallest
model of each timm architecture family (``pip install 'qlint[bench]'``; ``pretrained=False``) and the
argument-free model classes of ``torch.testing._internal.common_quantization``, it writes two tiny files as a
user would: one building the model in ``build_model()``, one returning it inside ``QuantWrapper``. Then:

- the real eager flow on each file, in a subprocess with a timeout: build on CPU, ``eval()``, a float forward at
  the input shape, ``qconfig = get_default_qconfig("x86")``, ``prepare``, 2 random calibration batches,
  ``convert``, one forward; the verdict is success or the stage, exception type and first line of the error;
- ``python -m qlint check --format json`` on each file, in a subprocess with a timeout: crash, timeout, time,
  findings.

The input shape is the smallest candidate (from the library's own metadata) at which the float model runs; the
file gets a ``# qlint: input-shape`` pragma when it is not 1x3x224x224, so qlint and the real flow see the same
shape. One JSON line per model is appended to the results file (models already there are skipped), then the
report is printed: qlint crashes and timeouts, QL001/QL002 rates, check time, and per group and file kind the
confusion matrix of "qlint reports an error" against "the real flow fails", with every mismatch.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import inspect
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "realworld.jsonl"
GROUPS = ("torchvision", "timm", "torch-test")
KINDS = ("plain", "wrapped")
DEFAULT_SHAPE = (1, 3, 224, 224)
PREFERRED = ("pico", "atto", "femto", "nano", "xxs", "xx_small", "tiny", "xs", "x_small", "mini", "small", "b0", "18")


# --------------------------------------------------------------------------------------------------- the corpus


@dataclass
class Entry:
    """One model of the corpus: how a user's file builds it and the input shapes to try, smallest first."""

    group: str
    name: str
    imports: list[str]
    expr: str
    candidates: list[tuple[int, ...]]
    notes: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"


def _public_path(builder) -> str:
    """``torchvision.models.detection.fasterrcnn_resnet50_fpn`` for the builder defined in ``...faster_rcnn``."""
    module = builder.__module__
    parts = module.split(".")
    for cut in range(2, len(parts) + 1):
        prefix = ".".join(parts[:cut])
        package = sys.modules.get(prefix) or importlib.import_module(prefix)
        if getattr(package, builder.__name__, None) is builder:
            return f"{prefix}.{builder.__name__}"
    return f"{module}.{builder.__name__}"


def _side_candidates(first: int, *more: int | None) -> list[int]:
    out: list[int] = []
    for side in (first, *more):
        if side and side not in out:
            out.append(side)
    return out


def torchvision_entries() -> list[Entry]:
    """Every model of ``torchvision.models.list_models()``; input sizes from its weights' metadata."""
    import torchvision.models as tvm

    entries = []
    for name in tvm.list_models():
        builder = tvm.get_model_builder(name)
        kwargs = ["weights=None"]
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs.append("weights_backbone=None")
        meta, crop = {}, None
        try:
            weights = next(iter(tvm.get_model_weights(name)))
            meta = weights.meta
            crop = getattr(weights.transforms(), "crop_size", None)
        except (ValueError, StopIteration, TypeError):
            pass
        min_side = max(meta.get("min_size") or (1, 1))
        crop_side = crop[0] if crop else None
        module = builder.__module__
        if ".video." in module:
            frames = max(8, meta.get("min_temporal_size") or 1)
            sides = _side_candidates(max(64, min_side), crop_side, 224)
            candidates = [(1, 3, t, s, s) for t in dict.fromkeys((frames, max(16, frames))) for s in sides]
        elif ".optical_flow." in module:
            candidates = [(1, 3, s, s) for s in _side_candidates(max(128, min_side), 224)]
        elif ".detection." in module:
            candidates = [DEFAULT_SHAPE]  # the model's transform resizes to its own min_size anyway
        else:
            candidates = [(1, 3, s, s) for s in _side_candidates(max(64, min_side), crop_side, 224)]
        expr = f"{_public_path(builder)}({', '.join(kwargs)})"
        entries.append(
            Entry("torchvision", name, ["torchvision"], expr, candidates, {"params": meta.get("num_params")})
        )
    return sorted(entries, key=lambda e: e.notes["params"] or 0)  # small models first: a partial run covers more


def _timm_family_choice(cache: Path) -> dict[str, str]:
    """The model with the fewest parameters of each timm module (family), among its likeliest small names."""
    import timm
    import torch
    from timm.models import _registry

    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("timm") == timm.__version__:
            return data["families"]
    families: dict[str, list[str]] = defaultdict(list)
    for name in timm.list_models():
        if not name.startswith("test_"):
            families[_registry._model_to_module[name]].append(name)

    def rank(name: str) -> tuple:
        hits = [i for i, word in enumerate(PREFERRED) if word in name]
        return (min(hits) if hits else len(PREFERRED), len(name), name)

    choice = {}
    for family, names in sorted(families.items()):
        best = None
        for name in sorted(names, key=rank)[:6]:
            try:
                with torch.device("meta"), _quiet():
                    model = timm.create_model(name, pretrained=False)
                count = sum(p.numel() for p in model.parameters())
            except Exception:  # noqa: BLE001 - a name that does not build is simply not chosen
                continue
            if best is None or count < best[0]:
                best = (count, name)
        if best:
            choice[family] = best[1]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"timm": timm.__version__, "families": choice}, indent=1, sort_keys=True))
    return choice


def timm_entry(name: str, family: str | None = None) -> Entry:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    channels, height, width = (cfg.input_size if cfg else None) or (3, 224, 224)
    fixed = bool(cfg and getattr(cfg, "fixed_input_size", False))
    sides = [height] if fixed else _side_candidates(64, height, 224)
    candidates = [(1, channels, s, s) for s in sides] if height == width else [(1, channels, height, width)]
    notes = {"family": family} if family else {}
    return Entry("timm", name, ["timm"], f'timm.create_model("{name}", pretrained=False)', candidates, notes)


def timm_entries(cache: Path) -> list[Entry]:
    try:
        import timm  # noqa: F401
    except ImportError:
        print("timm is not installed (pip install 'qlint[bench]'): the timm group is skipped", file=sys.stderr)
        return []
    return [timm_entry(name, family) for family, name in sorted(_timm_family_choice(cache).items())]


def torch_test_entries() -> list[Entry]:
    """The model classes of torch's own quantization tests that build without arguments."""
    import torch
    from torch import nn

    try:
        with _quiet():
            import torch.testing._internal.common_quantization as cq
    except Exception as exc:  # noqa: BLE001 - e.g. expecttest missing: the group is skipped
        print(f"torch's test models are not importable ({exc}): the torch-test group is skipped", file=sys.stderr)
        return []
    entries = []
    for name, cls in vars(cq).items():
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module) and cls.__module__ == cq.__name__):
            continue
        try:
            with _quiet():
                model = cls()
        except Exception:  # noqa: BLE001 - needs constructor arguments
            continue
        candidates = []
        example = getattr(model, "get_example_inputs", None)
        if example:
            try:
                inputs = example()
                if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and inputs[0].is_floating_point():
                    candidates.append(tuple(inputs[0].shape))
            except Exception:  # noqa: BLE001
                pass
        for module in model.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                candidates.append((1, module.in_channels, *[8] * len(module.kernel_size)))
                break
            if isinstance(module, nn.Linear):
                candidates.append((1, module.in_features))
                break
        for shape in ((1, 5), (1, 3, 5, 5), DEFAULT_SHAPE):
            if shape not in candidates:
                candidates.append(shape)
        imports = [f"from torch.testing._internal.common_quantization import {name}"]
        entries.append(Entry("torch-test", name, imports, f"{name}()", candidates))
    return entries


def corpus(groups: list[str], only: list[str], results_dir: Path) -> list[Entry]:
    entries: list[Entry] = []
    explicit_timm = [o.split("/", 1)[1] for o in only if o.startswith("timm/")]
    for group in groups:
        if group == "torchvision":
            entries += torchvision_entries()
        elif group == "timm" and explicit_timm and all(o.startswith("timm/") or "/" in o for o in only):
            entries += [timm_entry(name) for name in explicit_timm]  # any timm name, no family scan
        elif group == "timm":
            entries += timm_entries(results_dir / "timm_families.json")
        elif group == "torch-test":
            entries += torch_test_entries()
    if only:
        entries = [e for e in entries if e.id in only or e.name in only]
    return _interleaved(entries)


def _interleaved(entries: list[Entry]) -> list[Entry]:
    """Round-robin over the groups, so that a partial (``--limit``, interrupted) run covers every group."""
    queues = [[e for e in entries if e.group == g] for g in GROUPS]
    out: list[Entry] = []
    while any(queues):
        out += [q.pop(0) for q in queues if q]
    return out


# --------------------------------------------------------------------------------------------------- the files


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def source(entry: Entry, kind: str, shape: tuple[int, ...] | None) -> str:
    """The file a user would write: the library import and a ``build_model()``; nothing else."""
    lines = []
    if shape and tuple(shape) != DEFAULT_SHAPE:
        lines.append(f"# qlint: input-shape = {shape_text(shape)}")
    lines += [f"import {m}" if " " not in m else m for m in entry.imports]
    expr = entry.expr
    if kind == "wrapped":
        lines.append("from torch.ao.quantization import QuantWrapper")
        expr = f"QuantWrapper({expr})"
    lines += ["", "", "def build_model():", f"    return {expr}", ""]
    return "\n".join(lines)


def file_path(files_dir: Path, entry: Entry, kind: str) -> Path:
    stem = entry.name.replace("-", "_").replace(".", "_")
    return files_dir / entry.group.replace("-", "_") / f"{stem}{'_wrapped' if kind == 'wrapped' else ''}.py"


# --------------------------------------------------------------------------------------------------- subprocesses


def run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int | None, str, str, float]:
    """(exit code or None on timeout, stdout, stderr, seconds); the whole process group is killed on timeout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return code, out, err, time.perf_counter() - start


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def real_flows(entry: Entry, paths: dict[str, Path], timeout: float, threads: int) -> dict[str, dict]:
    """Both files' real eager flow in one child (one torch import); a kind the child never reported timed out."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_real", "--threads", str(threads)]
    cmd += ["--candidates", ";".join(shape_text(s) for s in entry.candidates)]
    cmd += [f"{kind}={paths[kind]}" for kind in KINDS]
    code, out, err, seconds = run(cmd, timeout * len(KINDS), child_env())
    results = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            _, kind, payload = line.split(" ", 2)
            results[kind] = json.loads(payload)
    for kind in KINDS:
        if kind not in results:
            if code is None:
                results[kind] = {"ok": False, "stage": "timeout", "error_type": "Timeout", "error": f"> {timeout} s"}
            else:
                tail = (err.strip().splitlines() or ["(no output)"])[-1]
                results[kind] = {"ok": False, "stage": "child", "error_type": f"exit {code}", "error": tail[:300]}
    return results


def qlint_check(path: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "qlint", "check", "--format", "json", "--color", "never", str(path)]
    code, out, err, seconds = run(cmd, timeout, child_env())
    result: dict = {"exit": code, "seconds": round(seconds, 2), "timeout": code is None, "diagnostics": []}
    try:
        diagnostics = json.loads(out) if out.strip() else []
    except json.JSONDecodeError:
        diagnostics = None
    result["crash"] = code is not None and (code not in (0, 1) or "Traceback (most recent call last)" in err)
    if diagnostics is None:
        result["crash"] = code is not None
        diagnostics = []
    if result["crash"] or result["timeout"]:
        result["stderr"] = "\n".join(err.strip().splitlines()[-6:])
    result["diagnostics"] = [
        {
            "code": d.get("code"),
            "severity": d.get("severity"),
            "line": (d.get("location") or {}).get("row"),
            "module": d.get("module"),
            "message": d.get("message"),
            "where": [
                r.get("filename", "") + ":" + str((r.get("location") or {}).get("row")) for r in d.get("related") or []
            ][:2],
        }
        for d in diagnostics
    ]
    return result


# ----------------------------------------------------------------------------------------- the real flow (child)


class _quiet:
    """Silence warnings and stdout/stderr chatter of model code (prepare's observer warnings, timm's notes)."""

    def __enter__(self):
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._null = open(os.devnull, "w")  # noqa: SIM115
        self._saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self._null
        return self

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self._saved
        self._null.close()
        self._warnings.__exit__(*exc)
        return False


def _required_inputs(model) -> int:
    """How many positional inputs ``forward`` needs (RAFT: two images; QuantWrapper: one)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return max(1, sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty))


def _vocabulary(model) -> int:
    """``num_embeddings`` when the first leaf module is an ``Embedding``/``EmbeddingBag``, else 0."""
    from torch import nn
    from torch.ao.quantization import DeQuantStub, QuantStub

    for module in model.modules():
        if not list(module.children()) and not isinstance(module, (QuantStub, DeQuantStub)):
            return module.num_embeddings if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) else 0
    return 0


def _frames(exc: BaseException, keep: int = 3) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)
    short = [f"{'/'.join(Path(f.filename).parts[-2:])}:{f.lineno} {f.name}" for f in frames]
    return short[-keep:]


def real_flow(path: Path, candidates: list[tuple[int, ...]]) -> dict:
    """Build, eval, float forward at the first candidate shape that runs, x86 qconfig, prepare, 2 calibration
    batches, convert, one forward."""
    import torch
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    start = time.perf_counter()
    stage, shape, n_inputs = "import", None, 1
    try:
        spec = importlib.util.spec_from_file_location(f"realworld_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        with _quiet():
            spec.loader.exec_module(module)
            stage = "build"
            torch.manual_seed(0)
            model = module.build_model().eval()
            n_inputs = _required_inputs(model)

            vocabulary = _vocabulary(model)

            def batch(seed: int):
                gen = torch.Generator().manual_seed(seed)
                if vocabulary:  # a model whose first layer is an embedding is fed token ids
                    return [torch.randint(0, vocabulary, shape, generator=gen) for _ in range(n_inputs)]
                return [torch.rand(shape, generator=gen) for _ in range(n_inputs)]

            stage = "float"
            error = None
            for candidate in candidates:
                shape = candidate
                try:
                    with torch.no_grad():
                        model(*batch(0))
                    error = None
                    break
                except Exception as exc:  # noqa: BLE001 - the next candidate shape may fit
                    error = exc
            if error is not None:
                raise error
            stage = "prepare"
            torch.backends.quantized.engine = "x86"
            model.qconfig = get_default_qconfig("x86")
            prepare(model, inplace=True)
            stage = "calibrate"
            with torch.no_grad():
                for seed in (1, 2):
                    model(*batch(seed))
            stage = "convert"
            convert(model, inplace=True)
            stage = "forward"
            with torch.no_grad():
                model(*batch(3))
        return {"ok": True, "stage": "done", "shape": shape, "inputs": n_inputs, "seconds": _since(start)}
    except Exception as exc:  # noqa: BLE001 - the verdict is the error
        message = (str(exc).strip().splitlines() or [""])[0][:300]
        return {
            "ok": False,
            "stage": stage,
            "shape": shape if stage != "float" else None,
            "inputs": n_inputs,
            "error_type": type(exc).__name__,
            "error": message,
            "frames": _frames(exc),
            "seconds": _since(start),
        }


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="realworld.py _real")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", required=True)
    parser.add_argument("files", nargs="+", help="kind=path; the first one that runs fixes the shape for the rest")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    candidates = [tuple(int(d) for d in c.split("x")) for c in args.candidates.split(";")]
    for item in args.files:
        kind, _, path = item.partition("=")
        result = real_flow(Path(path), candidates)
        if result["ok"] or result["stage"] not in ("import", "build", "float"):
            candidates = [tuple(result["shape"])]
        print("RESULT", kind, json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------- one model


def measure(entry: Entry, files_dir: Path, args: argparse.Namespace) -> dict:
    paths = {kind: file_path(files_dir, entry, kind) for kind in KINDS}
    for kind, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source(entry, kind, None))
    real = real_flows(entry, paths, args.flow_timeout, args.threads)
    shapes = [real[k].get("shape") for k in KINDS if real[k].get("shape")]
    shape = tuple(shapes[0]) if shapes else entry.candidates[0]
    for kind, path in paths.items():
        path.write_text(source(entry, kind, shape))
    qlint = {kind: qlint_check(path, args.qlint_timeout) for kind, path in paths.items()}
    return {
        "id": entry.id,
        "group": entry.group,
        "name": entry.name,
        "expr": entry.expr,
        "shape": list(shape),
        **({"notes": entry.notes} if entry.notes else {}),
        "files": {kind: str(paths[kind]) for kind in KINDS},
        "real": real,
        "qlint": qlint,
    }


def done_ids(results: Path) -> set[str]:
    if not results.exists():
        return set()
    return {json.loads(line)["id"] for line in results.read_text().splitlines() if line.strip()}


def load(results: Path) -> list[dict]:
    if not results.exists():
        return []
    rows = {}
    for line in results.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["id"]] = row  # a later line for the same model wins
    return list(rows.values())


# --------------------------------------------------------------------------------------------------- the report


def errors(q: dict) -> list[dict]:
    return [d for d in q["diagnostics"] if d["severity"] == "error"]


def looked(q: dict) -> bool:
    return not (q["crash"] or q["timeout"])


def judged(row: dict, kind: str) -> bool:
    """The real flow gave a verdict on quantization: the float model ran (else it says nothing about qlint)."""
    return row["real"][kind]["stage"] not in ("import", "build", "float", "child", "timeout")


def predicted(row: dict, kind: str) -> bool:
    q = row["qlint"][kind]
    return looked(q) and bool(errors(q))


def findings_text(q: dict) -> str:
    if q["timeout"]:
        return "qlint TIMEOUT"
    if q["crash"]:
        return f"qlint CRASH (exit {q['exit']}): {(q.get('stderr') or '').splitlines()[-1:]}"
    if not q["diagnostics"]:
        return "All checks passed"
    first: dict[str, dict] = {}
    for d in q["diagnostics"]:
        first.setdefault(d["code"], d)
    counts = Counter(d["code"] for d in q["diagnostics"])
    parts = [f"{code}x{counts[code]} [{d['severity']}] {d['message'][:110]}" for code, d in first.items()]
    return "; ".join(parts)


def real_text(r: dict) -> str:
    if r["ok"]:
        return "converts and runs"
    return f"{r['stage']}: {r['error_type']}: {r['error'][:160]}"


def signature(r: dict) -> str:
    """The real error without the model: ``aten::add.out on QuantizedCPU``, ``AssertionError: Embedding ...``."""
    if r["ok"]:
        return "runs"
    found = re.search(r"Could not run '([^']+)' with arguments from the '([^']+)' backend", r["error"])
    if found:
        return f"{r['stage']}: {found.group(1)} on {found.group(2)}"
    message = re.sub(r"\b\d+\b", "N", r["error"])[:90]
    return f"{r['stage']}: {r['error_type']}: {message}"


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def report(rows: list[dict], out=sys.stdout) -> None:
    def p(text: str = "") -> None:
        print(text, file=out)

    if not rows:
        p("no results")
        return
    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    sizes = ", ".join(f"{g} {sum(r['group'] == g for r in rows)}" for g in groups)
    p(f"# qlint vs the real eager flow: {len(rows)} models ({sizes})")
    p(f"python {platform.python_version()}, {platform.machine()}")
    p()
    p("## qlint crashes and timeouts")
    bad = [(r, k) for r in rows for k in KINDS if not looked(r["qlint"][k])]
    crashes = sum(r["qlint"][k]["crash"] for r in rows for k in KINDS)
    timeouts = sum(r["qlint"][k]["timeout"] for r in rows for k in KINDS)
    p(f"{crashes} crashes, {timeouts} timeouts in {len(rows) * len(KINDS)} files")
    for r, k in bad:
        p(f"- {r['id']} ({k}): {findings_text(r['qlint'][k])}")
    p()
    p("## QL001 / QL002 and check time")
    p("| group | file | files | QL001 | QL002 | no finding at all | check s median | check s max |")
    p("|---|---|---:|---:|---:|---:|---:|---:|")
    for group in [*groups, "all"]:
        for kind in KINDS:
            sel = [r["qlint"][kind] for r in rows if group in ("all", r["group"])]
            codes = [{d["code"] for d in q["diagnostics"]} for q in sel]
            times = [q["seconds"] for q in sel]
            p(f"| {group} | {kind} | {len(sel)} | {sum('QL001' in c for c in codes)} | "
              f"{sum('QL002' in c for c in codes)} | {sum(not c for c in codes)} | "
              f"{statistics.median(times):.1f} | {max(times):.1f} |")  # fmt: skip
    p()
    not_judged = [(r, k) for r in rows for k in KINDS if not judged(r, k)]
    if not_judged:
        p("## Not judged (the float model did not run at any candidate shape, or the flow itself timed out)")
        for r, k in not_judged:
            p(f"- {r['id']} ({k}): {real_text(r['real'][k])} | qlint: {findings_text(r['qlint'][k])}")
        p()
    p('## "qlint reports an error" against "the real flow fails"')
    p("Crashes, timeouts and files qlint could not look at count as 'no error reported' (misses).")
    p()
    p("| group | file | judged | real fails | TP | FN (missed) | FP (false alarm) | TN | precision | recall |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        for group in [*groups, "all"]:
            sel = [r for r in rows if group in ("all", r["group"]) and judged(r, kind)]
            tp = sum(not r["real"][kind]["ok"] and predicted(r, kind) for r in sel)
            fn = sum(not r["real"][kind]["ok"] and not predicted(r, kind) for r in sel)
            fp = sum(r["real"][kind]["ok"] and predicted(r, kind) for r in sel)
            tn = sum(r["real"][kind]["ok"] and not predicted(r, kind) for r in sel)
            p(f"| {group} | {kind} | {len(sel)} | {tp + fn} | {tp} | {fn} | {fp} | {tn} | "
              f"{ratio(tp, tp + fp)} | {ratio(tp, tp + fn)} |")  # fmt: skip
    p()
    p("## Real-flow failures by stage and exception")
    stages = Counter(
        (k, r["real"][k]["stage"], r["real"][k].get("error_type", "")) for r in rows for k in KINDS if judged(r, k)
    )
    for (k, stage, etype), n in sorted(stages.items(), key=lambda x: (-x[1], x[0])):
        p(f"- {k}: {stage} {etype or '(ok)'}: {n}")
    p()
    p("## Mismatches by real error")
    for kind in KINDS:
        by_error: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if judged(r, kind) and (not r["real"][kind]["ok"]) != predicted(r, kind):
                by_error[signature(r["real"][kind])].append(r["id"])
        for sig, ids in sorted(by_error.items(), key=lambda x: (-len(x[1]), x[0])):
            p(f"- {kind} ({'missed' if sig != 'runs' else 'false alarm'}) x{len(ids)}: {sig}: {', '.join(ids)}")
    p()
    for kind in KINDS:
        for title, want_real_fail in (("missed: the real flow fails, qlint reports no error", True),
                                      ("false alarms: qlint reports an error, the real flow runs", False)):  # fmt: skip
            sel = [
                r for r in rows
                if judged(r, kind) and (not r["real"][kind]["ok"]) == want_real_fail
                and predicted(r, kind) != want_real_fail
            ]  # fmt: skip
            p(f"## {kind} files, {title}: {len(sel)}")
            for r in sorted(sel, key=lambda r: r["id"]):
                p(f"- {r['id']} [{shape_text(r['shape'])}]")
                p(f"  - real: {real_text(r['real'][kind])}")
                p(f"  - qlint: {findings_text(r['qlint'][kind])}")
            p()


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_real"]:
        child_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=GROUPS, help="repeatable; default: all three")
    parser.add_argument("--only", default="", help="comma-separated names or group/name ids (timm/resnet18)")
    parser.add_argument("--limit", type=int, default=0, help="measure at most N models not yet in the results")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per real flow (default: cores / jobs)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--files-dir", type=Path, default=None, help="default: <results dir>/files")
    parser.add_argument("--qlint-timeout", type=float, default=300)
    parser.add_argument("--flow-timeout", type=float, default=600, help="per file")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--list", action="store_true", help="print the corpus and exit")
    args = parser.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    results: Path = args.results
    files_dir = args.files_dir or results.parent / "files"
    groups = args.group or list(GROUPS)
    only = [o.strip() for o in args.only.split(",") if o.strip()]

    if not args.report_only:
        entries = corpus(groups, only, results.parent)
        if args.list:
            for e in entries:
                print(e.id, e.expr, ";".join(shape_text(s) for s in e.candidates))
            return 0
        done = done_ids(results)
        todo = [e for e in entries if e.id not in done]
        if args.limit:
            todo = todo[: args.limit]
        print(f"{len(entries)} models in the corpus, {len(entries) - len(todo)} already measured, {len(todo)} to go",
              file=sys.stderr)  # fmt: skip
        results.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        start = time.perf_counter()

        def one(entry: Entry) -> None:
            t0 = time.perf_counter()
            row = measure(entry, files_dir, args)
            row["seconds"] = _since(t0)
            with lock, results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            verdict = {k: ("ok" if row["real"][k]["ok"] else row["real"][k]["stage"]) for k in KINDS}
            said = {k: ",".join(sorted({d["code"] for d in errors(row["qlint"][k])})) or "-" for k in KINDS}
            print(f"[{time.perf_counter() - start:7.0f}s] {entry.id}: real {verdict}, qlint errors {said} "
                  f"({row['seconds']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for future in [pool.submit(one, e) for e in todo]:
                future.result()
    rows = load(results)
    if groups != list(GROUPS) or only:
        rows = [r for r in rows if r["group"] in groups and (not only or r["id"] in only or r["name"] in only)]
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
