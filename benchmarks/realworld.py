"""qlint against the real eager conversion on models nobody on the team wrote: torchvision, timm, torch's test models.

    python benchmarks/realworld.py [--group torchvision|timm|torch-test] [--only NAME[,NAME]] [--limit N]
                                   [--jobs 1] [--results benchmarks/results/realworld.jsonl] [--report-only]
                                   [--recheck [--emit-only]] [--no-emit] [--all-versions] [--tree TREE]

The real flow's verdicts go to ``realworld.jsonl`` (they do not depend on qlint); qlint's ``check`` and ``emit``
to ``realworld_qlint.jsonl``, one line per model and version of ``qlint/`` (its git tree, run from an unpacked
copy of HEAD's). ``--recheck`` runs only qlint's side again, on the models already judged. Both files are
committed; the generated model files (``files/``) are not.

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
    return sorted(entries, key=lambda e: GROUPS.index(e.group))  # torchvision (smallest first), timm, torch-test


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


@dataclass(frozen=True)
class QlintCode:
    """The qlint code a prediction was made with: the git tree of ``qlint/`` at a commit, unpacked on its own, so
    that a prediction is keyed by qlint's code (not the benchmark's) and edits in the work tree do not leak in."""

    tree: str
    commit: str
    path: Path

    @classmethod
    def at(cls, commit: str = "HEAD") -> QlintCode:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

        sha = git("rev-parse", "--short=10", commit)
        tree = git("rev-parse", "--short=10", f"{sha}:qlint")
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "qlint-snapshots" / tree
        if not (path / "qlint" / "__init__.py").exists():
            path.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "archive", sha, "qlint"], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(path)], input=archive.stdout, check=True)
        return cls(tree, sha, path)

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.path)
        # `python -m qlint` run from a checkout would put the working directory first on sys.path and import
        # the work tree's qlint (edits included) instead of this snapshot: keep the snapshot first
        env["PYTHONSAFEPATH"] = "1"
        env.setdefault("PYTHONWARNINGS", "ignore")
        return env


def qlint_check(path: Path, timeout: float, code_at: QlintCode) -> dict:
    cmd = [sys.executable, "-m", "qlint", "check", "--format", "json", "--color", "never", str(path)]
    code, out, err, seconds = run(cmd, timeout, code_at.env())
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


def _batch(shape, n_inputs: int, vocabulary: int, seed: int) -> list:
    """The inputs of one forward: random images (or token ids when the first layer is an embedding)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if vocabulary:  # a model whose first layer is an embedding is fed token ids
        return [torch.randint(0, vocabulary, shape, generator=gen) for _ in range(n_inputs)]
    return [torch.rand(shape, generator=gen) for _ in range(n_inputs)]


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
                return _batch(shape, n_inputs, vocabulary, seed)

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


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _flat(out):
    """Every tensor of a model's output (tensor, tuple, list, dict; detection's list of dicts) as one float vector."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.detach().float().reshape(-1)
    if isinstance(out, dict):
        out = list(out.values())
    parts = [_flat(o) for o in out] if isinstance(out, (tuple, list)) else []
    return torch.cat(parts) if parts else torch.zeros(0)


def emitted_flow(original: Path, emitted: Path, shape: tuple[int, ...]) -> dict:
    """The file ``qlint emit`` wrote, judged: it builds, loads the original model's state_dict (strict) and the plain
    tensor attributes no state_dict carries (torch's ``FunctionalLinear`` keeps ``self.weight = torch.rand(5, 5)``),
    gives the same float output on a random input at the model's shape (``torch.equal``), then the real eager flow
    on it: ``fuse_model()`` when the emitted model has one (its own preparation step), x86 qconfig, ``prepare``,
    2 calibration batches, ``convert``, one forward; ``quantized_layers`` counts the layers ``convert`` swapped
    (not the stubs' Quantize/DeQuantize): 0 means it converts and runs with nothing in int8."""
    import torch
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    start = time.perf_counter()
    result: dict = {"loads": False, "identical": False, "max_diff": None, "fused": False}
    stage = "import"
    try:
        with _quiet():
            torch.manual_seed(0)
            reference = _import_file(original, "realworld_original").build_model().eval()
            emitted_module = _import_file(emitted, "realworld_emitted")
            stage = "build"
            model = emitted_module.build_model().eval()
            stage = "load_state_dict"
            model.load_state_dict(reference.state_dict(), strict=True)
            result["plain_tensors"] = _copy_plain_tensors(reference, model)
            result["loads"] = True
            stage = "float"
            n_inputs, vocabulary = _required_inputs(reference), _vocabulary(reference)
            inputs = _batch(shape, n_inputs, vocabulary, 0)
            with torch.no_grad():
                want, got = _flat(reference(*inputs)), _flat(model(*inputs))
            same_shape = want.shape == got.shape
            result["identical"] = same_shape and torch.equal(want, got)
            result["max_diff"] = float((want - got).abs().max()) if same_shape and want.numel() else None
            stage = "fuse"
            if callable(getattr(model, "fuse_model", None)):
                model.fuse_model()
                result["fused"] = True
            stage = "prepare"
            torch.backends.quantized.engine = "x86"
            model.qconfig = get_default_qconfig("x86")
            prepare(model, inplace=True)
            stage = "calibrate"
            with torch.no_grad():
                for seed in (1, 2):
                    model(*_batch(shape, n_inputs, vocabulary, seed))
            stage = "convert"
            convert(model, inplace=True)
            stage = "forward"
            with torch.no_grad():
                model(*_batch(shape, n_inputs, vocabulary, 3))
            result["quantized_layers"] = sum(
                type(m).__module__.startswith("torch.ao.nn.quantized")
                and type(m).__name__ not in ("Quantize", "DeQuantize")
                for m in model.modules()
            )
        result.update(ok=True, stage="done")
    except Exception as exc:  # noqa: BLE001 - the verdict is the error
        message = (str(exc).strip().splitlines() or [""])[0][:300]
        result.update(ok=False, stage=stage, error_type=type(exc).__name__, error=message, frames=_frames(exc))
    result["seconds"] = _since(start)
    return result


def _copy_plain_tensors(source, target) -> int:
    """Copy the tensor attributes that are neither parameters nor buffers, module by module; how many."""
    import torch

    copied, theirs = 0, dict(target.named_modules())
    for name, module in source.named_modules():
        other = theirs.get(name)
        for attr, value in vars(module).items():
            mine = getattr(other, attr, None) if other is not None else None
            if isinstance(value, torch.Tensor) and isinstance(mine, torch.Tensor) and mine.shape == value.shape:
                setattr(other, attr, value.clone())
                copied += 1
    return copied


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


def emitted_child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="realworld.py _emitted")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", required=True)
    parser.add_argument("original", type=Path)
    parser.add_argument("emitted", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    shape = tuple(int(d) for d in args.shape.split("x"))
    print("RESULT", json.dumps(emitted_flow(args.original, args.emitted, shape)), flush=True)


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


def measure_real(entry: Entry, files_dir: Path, args: argparse.Namespace) -> dict:
    """The real flow's verdicts on both files (independent of qlint's code: measured once, kept)."""
    paths = {kind: file_path(files_dir, entry, kind) for kind in KINDS}
    for kind, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source(entry, kind, None))
    t0 = time.perf_counter()
    real = real_flows(entry, paths, args.flow_timeout, args.threads)
    shapes = [real[k].get("shape") for k in KINDS if real[k].get("shape")]
    shape = tuple(shapes[0]) if shapes else entry.candidates[0]
    return {
        "id": entry.id,
        "group": entry.group,
        "name": entry.name,
        "expr": entry.expr,
        "shape": list(shape),
        **({"notes": entry.notes} if entry.notes else {}),
        "sources": {kind: source(entry, kind, shape) for kind in KINDS},
        "real": real,
        "seconds": _since(t0),
    }


def write_files(row: dict, files_dir: Path) -> dict[str, Path]:
    """The two files of a measured model, written again from the results (a fresh clone has no files dir)."""
    stem = row["name"].replace("-", "_").replace(".", "_")
    folder = files_dir / row["group"].replace("-", "_")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{stem}{'_wrapped' if kind == 'wrapped' else ''}.py" for kind in KINDS}
    for kind, path in paths.items():
        path.write_text(row["sources"][kind])
    return paths


def emit_side(row: dict, paths: dict[str, Path], args: argparse.Namespace, code_at: QlintCode) -> dict:
    """``qlint emit`` on the file building the model, then the emitted file judged in a child (``emitted_flow``)."""
    out = paths["plain"].with_name(paths["plain"].stem + "_emitted.py")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "qlint", "emit", str(paths["plain"]), "-o", str(out), "--force"]
    code, stdout, stderr, seconds = run(cmd, args.qlint_timeout, code_at.env())
    result: dict = {"exit": code, "seconds": round(seconds, 2), "timeout": code is None}
    result["written"] = code == 0 and out.exists()
    if not result["written"]:
        lines = (stderr.strip() or stdout.strip()).splitlines()
        result["error"] = "timeout" if code is None else (lines[-1][:300] if lines else f"exit {code}")
        result["crash"] = "Traceback (most recent call last)" in stderr
        return result
    cmd = [sys.executable, str(Path(__file__).resolve()), "_emitted", "--threads", str(args.threads)]
    cmd += ["--shape", shape_text(row["shape"]), str(paths["plain"]), str(out)]
    code, stdout, stderr, seconds = run(cmd, args.flow_timeout, child_env())
    found = [line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("RESULT ")]
    if found:
        result["check"] = json.loads(found[-1])
    else:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        stage, etype = ("timeout", "Timeout") if code is None else ("child", f"exit {code}")
        result["check"] = {"ok": False, "stage": stage, "error_type": etype, "error": tail, "loads": False,
                           "identical": False}  # fmt: skip
    return result


def measure_qlint(row: dict, files_dir: Path, args: argparse.Namespace, code_at: QlintCode) -> dict:
    """qlint's side at one version of its code: ``check`` on both files, ``emit`` where the wrapped flow fails."""
    paths = write_files(row, files_dir)
    t0 = time.perf_counter()
    qlint = None
    if not args.emit_only:
        qlint = {kind: qlint_check(path, args.qlint_timeout, code_at) for kind, path in paths.items()}
    wrapped = row["real"]["wrapped"]
    emit = None
    if not args.no_emit and judged(row, "wrapped") and not wrapped["ok"]:
        emit = emit_side(row, paths, args, code_at)
    return {"id": row["id"], "qlint_tree": code_at.tree, "commit": code_at.commit, "qlint": qlint, "emit": emit,
            "files": {kind: str(path) for kind, path in paths.items()}, "seconds": _since(t0)}  # fmt: skip


def qlint_results_path(results: Path) -> Path:
    """``realworld.jsonl`` (the real flow's verdicts) -> ``realworld_qlint.jsonl`` (qlint's, per qlint version)."""
    return results.with_name(f"{results.stem}_qlint{results.suffix}")


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_real(results: Path) -> dict[str, dict]:
    return {row["id"]: row for row in _lines(results)}  # a later line for the same model wins


def load_predictions(results: Path, tree: str | None = None) -> dict[str, dict]:
    """The latest prediction per model (only those of qlint tree ``tree`` when given)."""
    return {q["id"]: q for q in _lines(qlint_results_path(results)) if tree is None or q["qlint_tree"] == tree}


def load(results: Path, tree: str | None = None) -> list[dict]:
    """Rows with both verdicts: the real flow's and qlint's. ``check`` and ``emit`` each from the latest
    prediction that has them, made with qlint tree ``tree`` when there is one (``--emit-only`` rows carry no
    ``check``); the qlint code of each side is kept in ``commit``/``qlint_tree`` and ``emit_commit``/``emit_tree``."""
    real, lines = load_real(results), _lines(qlint_results_path(results))
    rows = []
    for key, row in real.items():
        mine = [q for q in lines if q["id"] == key]
        checks = [q for q in mine if q.get("qlint") is not None]
        check = ([q for q in checks if q["qlint_tree"] == tree] or checks or [None])[-1]
        if check is None:
            continue
        # a row that ran emit wins over a check-only row (``--no-emit``, or a wrapped file that runs)
        emits = [q for q in mine if q.get("emit") is not None] or [q for q in mine if q.get("qlint") is not None]
        emit = ([q for q in emits if q["qlint_tree"] == tree] or emits)[-1]
        rows.append({**row, **check, "emit": emit.get("emit"), "emit_commit": emit["commit"],
                     "emit_tree": emit["qlint_tree"]})  # fmt: skip
    return rows


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
    for side, commit, tree in (("check", "commit", "qlint_tree"), ("emit", "emit_commit", "emit_tree")):
        versions = Counter((r[commit], r[tree]) for r in rows if side == "check" or r.get("emit"))
        p(f"qlint code ({side}): " + ", ".join(f"commit {c} (qlint/ tree {t}): {n} models"
                                               for (c, t), n in versions.items()))  # fmt: skip
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
    emit_report(rows, groups, p)
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


def emit_outcome(e: dict) -> str:
    """Where an emitted model stopped: ``runs``, or the first failing step with its error (model names cut)."""
    if not e["written"]:
        message = re.sub(r"\S*/files/\S*|`[^`]*`", "…", e.get("error") or "")
        return "not written: " + re.sub(r"\b\d+\b", "N", message)[:110]
    c = e["check"]
    if not c["ok"] and (not c["loads"] or c["stage"] == "float"):
        return f"{c['stage']}: {c['error_type']}: {re.sub(r'[0-9]+', 'N', c['error'])[:100]}"
    if not c["identical"]:
        return f"float output differs (max abs diff {c['max_diff']})"
    return signature(c)


def emit_report(rows: list[dict], groups: list[str], p) -> None:
    """``qlint emit`` on the models whose wrapped flow fails: counts per group and the causes of the rest."""
    tried = [r for r in rows if r.get("emit")]
    if not tried:
        return
    p("## qlint emit on the models whose wrapped flow fails")
    p("Emitted from the plain file; judged: loads the original's state_dict (strict) and plain tensor attributes,")
    p("`torch.equal` float output, then `fuse_model()` when it has one, x86 qconfig, prepare, 2 calibration batches,")
    p("convert, one forward.")
    p()
    p("A model not yet tried counts as not emitted in `emitted identical / fails`.")
    p()
    p("| group | wrapped flow fails | emit tried | emitted | loads + identical output | converts and runs | emitted "
      "identical / fails | emitted identical / tried | runs / identical |")  # fmt: skip
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    untried: list[str] = []
    for group in [*groups, "all"]:
        sel = [r for r in rows if group in ("all", r["group"]) and judged(r, "wrapped")]
        sel = [r for r in sel if not r["real"]["wrapped"]["ok"]]
        emits = [r["emit"] for r in sel if r.get("emit")]
        if group == "all":
            untried = sorted(r["id"] for r in sel if not r.get("emit"))
        written = [e for e in emits if e["written"]]
        same = [e for e in written if e["check"]["loads"] and e["check"]["identical"]]
        runs = [e for e in same if e["check"]["ok"]]
        counts = f"| {group} | {len(sel)} | {len(emits)} | {len(written)} | {len(same)} | {len(runs)} |"
        p(f"{counts} {ratio(len(same), len(sel))} | {ratio(len(same), len(emits))} | {ratio(len(runs), len(same))} |")
    p()
    hollow = sorted(r["id"] for r in tried if r["emit"]["written"] and r["emit"]["check"].get("quantized_layers") == 0)
    if hollow:
        p(f"Of those that convert and run, {len(hollow)} have no layer `convert` swapped (nothing runs in int8; "
          f"counted as running): {', '.join(hollow)}")  # fmt: skip
        p()
    if untried:
        p(f"Not tried yet ({len(untried)}; `--recheck --emit-only` tries them): {', '.join(untried)}")
        p()
    p("### Causes of the rest (models whose emitted file is missing, differs, or does not convert and run)")
    causes: dict[str, list[str]] = defaultdict(list)
    for r in tried:
        outcome = emit_outcome(r["emit"])
        if outcome != "runs":
            causes[outcome].append(r["id"])
    for cause, ids in sorted(causes.items(), key=lambda x: (-len(x[1]), x[0])):
        p(f"- x{len(ids)} {cause}: {', '.join(ids)}")
    p()


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_real"]:
        child_main(argv[1:])
        return 0
    if argv[:1] == ["_emitted"]:
        emitted_child_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=GROUPS, help="repeatable; default: all three")
    parser.add_argument("--only", default="", help="comma-separated names or group/name ids (timm/resnet18)")
    parser.add_argument("--limit", type=int, default=0, help="measure at most N models not yet in the results")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per real flow (default: cores / jobs)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the real flow's verdicts; qlint's "
                        "go beside it, in <stem>_qlint.jsonl")  # fmt: skip
    parser.add_argument("--files-dir", type=Path, default=None, help="default: <results dir>/files")
    parser.add_argument("--qlint-timeout", type=float, default=300)
    parser.add_argument("--flow-timeout", type=float, default=300, help="per file")
    parser.add_argument("--recheck", action="store_true",
                        help="only qlint's side (check, emit) at the current commit, on models the real flow already "
                             "judged; the real flow is not run again")  # fmt: skip
    parser.add_argument("--no-emit", action="store_true", help="skip `qlint emit` on the wrapped failures")
    parser.add_argument("--emit-only", action="store_true",
                        help="with --recheck: only `qlint emit` on the models whose wrapped flow fails")  # fmt: skip
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--tree", default="",
                        help="report the predictions of this qlint/ tree (e.g. the one a run started with: "
                             "before/after tables); default: the current commit's, else the latest")  # fmt: skip
    parser.add_argument("--all-versions", action="store_true",
                        help="report the latest prediction per model whatever qlint code made it (default: the "
                             "current commit's qlint code)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print the corpus and exit")
    args = parser.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    results: Path = args.results
    files_dir = args.files_dir or results.parent / "files"
    groups = args.group or list(GROUPS)
    only = [o.strip() for o in args.only.split(",") if o.strip()]
    code_at = QlintCode.at()

    if not args.report_only:
        real = load_real(results)
        if args.recheck:
            entries = [Entry(r["group"], r["name"], [], r["expr"], []) for r in real.values()]
            entries = [e for e in entries if e.group in groups and (not only or e.id in only or e.name in only)]
        else:
            entries = corpus(groups, only, results.parent)
        if args.list:
            for e in entries:
                print(e.id, e.expr, ";".join(shape_text(s) for s in e.candidates))
            return 0
        predictions = load_predictions(results, code_at.tree)
        todo = [e for e in entries if e.id not in real or e.id not in predictions]
        if args.emit_only:
            todo = [e for e in todo if judged(real[e.id], "wrapped") and not real[e.id]["real"]["wrapped"]["ok"]]
        if args.limit:
            todo = todo[: args.limit]
        print(f"{len(entries)} models in the corpus, {len(entries) - len(todo)} already measured, {len(todo)} to go "
              f"(qlint at commit {code_at.commit}, qlint/ tree {code_at.tree})", file=sys.stderr)  # fmt: skip
        results.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        start = time.perf_counter()

        def one(entry: Entry) -> None:
            t0 = time.perf_counter()
            row = real.get(entry.id)
            if row is None:
                row = measure_real(entry, files_dir, args)
                with lock, results.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            prediction = measure_qlint(row, files_dir, args, code_at)
            with lock, qlint_results_path(results).open("a") as fh:
                fh.write(json.dumps(prediction) + "\n")
            verdict = {k: ("ok" if row["real"][k]["ok"] else row["real"][k]["stage"]) for k in KINDS}
            checked = prediction["qlint"] or {k: {"diagnostics": []} for k in KINDS}
            said = {k: ",".join(sorted({d["code"] for d in errors(checked[k])})) or "-" for k in KINDS}
            emitted = prediction["emit"] and emit_outcome(prediction["emit"])
            print(f"[{time.perf_counter() - start:7.0f}s] {entry.id}: real {verdict}, qlint errors {said}"
                  f"{f', emit: {emitted}' if emitted else ''} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for future in [pool.submit(one, e) for e in todo]:
                future.result()
    rows = load(results, args.tree or (None if args.all_versions else code_at.tree))
    if groups != list(GROUPS) or only:
        rows = [r for r in rows if r["group"] in groups and (not only or r["id"] in only or r["name"] in only)]
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
