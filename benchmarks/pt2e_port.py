"""The PT2E ports of seed 002 and seed 004 (examples/*_pt2e.py, written by QL414's fix) against their eager flow.

For each: the float model, the eager int8 model (the script's own eager pipeline on the same weights
and data) and the ported script's compiled PT2E int8 model; prints the ms of one forward of each
(one run, after a warm-up) and the SQNR of both int8 outputs against float.

Run: ``python benchmarks/pt2e_port.py [--shape 224]`` (2 threads). ``tests/test_pt2e_port.py`` runs
the same code at a small shape without timing.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path

import torch
import torch.ao.quantization as tq

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def sqnr(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = (ref.float() - got.float()).pow(2).mean()
    return float(10 * torch.log10(ref.float().pow(2).mean() / noise.clamp_min(1e-20)))


def load_script(name: str, replace: dict[str, str] | None = None):
    """examples/<name> as a module, with textual replacements (a smaller input, fewer loop turns)."""
    text = (EXAMPLES / name).read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    spec = importlib.util.spec_from_loader(name.removesuffix(".py"), loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module.__name__] = module
    exec(compile(text, str(EXAMPLES / name), "exec"), module.__dict__)
    return module


class Recorder(torch.nn.Module):
    """Stands in for the model a script runs for inference: records its last input and output."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, *args):
        out = self.model(*args)
        self.calls.append((args, out))
        return out


def timed(fn, *args) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        fn(*args)  # warm-up (compiles a compiled model)
        start = time.perf_counter()
        out = fn(*args)
    return out, (time.perf_counter() - start) * 1000


def seed002(size: int, timing: bool = False) -> dict:
    """seed 002: vgg16, eager `default_qconfig` PTQ (with stubs and one calibration batch) vs the port."""
    replace = {"224, 224": f"{size}, {size}", "range(100)": "range(1)"}
    torch.manual_seed(0)
    base = load_script("seed002_vgg16.py").build_model()
    port = load_script("seed002_vgg16_pt2e.py", replace)
    port.build_model = lambda: copy.deepcopy(base)
    compiled: list[Recorder] = []
    real_compile = torch.compile

    def compile_and_record(model, *args, **kwargs):
        compiled.append(Recorder(real_compile(model, *args, **kwargs)))
        return compiled[-1]

    torch.compile = compile_and_record
    try:
        port.main()
    finally:
        torch.compile = real_compile
    (img,), pt2e_out = compiled[0].calls[0]
    eager = tq.QuantWrapper(copy.deepcopy(base)).eval()
    eager.qconfig = tq.default_qconfig  # the script's last qconfig
    tq.prepare(eager, inplace=True)
    with torch.no_grad():
        eager(img)
    tq.convert(eager, inplace=True)
    return _results(base.eval(), eager, compiled[0].model, img, pt2e_out, timing)


def seed004(timing: bool = False) -> dict:
    """seed 004: resnet18 QAT, the eager script vs its port, both from the same weights and batches."""
    torch.manual_seed(0)
    base = load_script("seed004_resnet18_qat.py").build_resnet()
    runs = {}
    for name in ("seed004_resnet18_qat.py", "seed004_resnet18_qat_pt2e.py"):
        script = load_script(name)
        script.build_resnet = lambda: copy.deepcopy(base)
        recorders: list[Recorder] = []

        def post(*a, _original=script.post_training, _recorders=recorders):
            _recorders.append(Recorder(_original(*a)))
            return _recorders[-1]

        script.post_training = post
        script.main()
        runs[name] = recorders[0]
    # float: the same weights through the same training and calibration passes, without quantization
    torch.manual_seed(0)
    loader = load_script("seed004_resnet18_qat.py").make_train_loader()
    reference = copy.deepcopy(base).train()
    optimizer = torch.optim.SGD(reference.parameters(), lr=1e-3)
    for x, y in loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        for x, _ in loader:
            reference(x)
    reference.eval()
    eager, port = runs["seed004_resnet18_qat.py"], runs["seed004_resnet18_qat_pt2e.py"]
    (x,), pt2e_out = port.calls[0]
    return _results(reference, eager.model, port.model, x, pt2e_out, timing)


def _results(reference, eager, pt2e, x, pt2e_out, timing: bool) -> dict:
    with torch.no_grad():
        ref, eager_out = reference(x), eager(x)
    out = {"sqnr_eager_db": sqnr(ref, eager_out), "sqnr_pt2e_db": sqnr(ref, pt2e_out)}
    if timing:
        out["float_ms"] = timed(reference, x)[1]
        out["eager_int8_ms"] = timed(eager, x)[1]
        out["pt2e_int8_ms"] = timed(pt2e, x)[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, default=224, help="seed 002's image size")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for name, result in (("seed002", seed002(args.shape, timing=True)), ("seed004", seed004(timing=True))):
        print(name, " ".join(f"{k}={v:.2f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
