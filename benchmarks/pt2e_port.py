"""The PT2E ports of seeds 000, 002 and 004 (examples/*_pt2e.py, written by QL414's fix) against their eager flow.

For each: the float model, the eager int8 model (the script's own eager pipeline on the same weights
and data) and the ported script's compiled PT2E int8 model (``torch.compile`` of ``convert_pt2e``'s
result, as the port writes it). Prints the SQNR of both int8 outputs against float and the ms of one
forward of each: the three models called in turn (the order rotating each round), the first call of
each excluded (it compiles the PT2E one), the median over the rounds and its spread (quartiles, min-max).

Run: ``nice -n 10 python benchmarks/pt2e_port.py [--rounds 15] [--shape 224]`` (2 threads).
``tests/test_pt2e_port.py`` runs the same code at small shapes without timing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.ao.quantization as tq

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def sqnr(ref, got) -> float:
    """dB of signal over int8 noise; for several outputs (a detector's boxes and scores), the worst."""
    if isinstance(ref, (tuple, list)):
        return min(sqnr(r, g) for r, g in zip(ref, got, strict=True))
    ref, got = ref.float(), got.float()
    noise = (ref - got).pow(2).mean()
    return float(10 * torch.log10(ref.pow(2).mean() / noise.clamp_min(1e-20)))


def settle_batchnorm(model: torch.nn.Module, shape: tuple[int, ...], batches: int = 4) -> None:
    """Batch-norm statistics from random batches: with its init statistics a random-weight detector
    passes almost nothing to its heads (their output is their bias, whatever the input)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(*shape))
    model.eval()


@dataclass
class Compared:
    """One example's three models on one input; ``pt2e_out`` is what the ported script's model gave."""

    reference: torch.nn.Module
    eager: torch.nn.Module
    pt2e: Callable
    x: torch.Tensor
    pt2e_out: object

    def sqnrs(self) -> dict[str, float]:
        with torch.no_grad():
            ref, eager_out = self.reference(self.x), self.eager(self.x)
        return {"sqnr_eager_db": sqnr(ref, eager_out), "sqnr_pt2e_db": sqnr(ref, self.pt2e_out)}


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


def interleaved(models: dict[str, Callable], x: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    """ms of one call of each model, ``rounds`` times, the models in turn (the first call of each excluded)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    with torch.no_grad():
        for model in models.values():
            model(x)  # the first call: compiles a compiled model, allocates an eager one
        for turn in range(rounds):
            for name in order[turn % len(order) :] + order[: turn % len(order)]:
                start = time.perf_counter()
                models[name](x)
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def spread(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return f"{median:7.1f} ms (quartiles {q1:.1f}-{q3:.1f}, min-max {min(values):.1f}-{max(values):.1f})"


def seed000(size: int = 256) -> Compared:
    """seed 000: FaceBoxes, eager PTQ (fuse_model, fbgemm qconfig, 4 calibration images) vs the port."""
    replace = {"1, 3, 256, 256": f"1, 3, {size}, {size}"}
    torch.manual_seed(0)
    base = load_script("seed000_faceboxes.py").FaceBoxesMobNet("test")
    settle_batchnorm(base, (2, 3, size, size))
    calibration = [torch.rand(1, 3, size, size) for _ in range(4)]
    models = {}
    for name in ("seed000_faceboxes.py", "seed000_faceboxes_pt2e.py"):
        script = load_script(name, replace)
        script.FaceBoxesMobNet = lambda phase: copy.deepcopy(base)
        seen: list = []

        def calibrate(net, device="cpu", batches=4):  # the script's loop on the same images
            with torch.no_grad():
                for image in calibration[:batches]:
                    net(image)

        def speed_test(net=None, device="cpu", iters=5, _seen=seen):  # records the model; timed below
            _seen.append(net)
            return 0.0

        script.run_evaluation, script.run_speed_test = calibrate, speed_test
        script.run_static_quantization()
        models[name] = seen[-1]  # the model of the speed test after quantization
    x = torch.rand(1, 3, size, size)
    port = models["seed000_faceboxes_pt2e.py"]
    with torch.no_grad():
        pt2e_out = port(x)
    return Compared(base, models["seed000_faceboxes.py"], port, x, pt2e_out)


def seed002(size: int = 224) -> Compared:
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
    return Compared(base.eval(), eager, compiled[0].model, img, pt2e_out)


def seed004() -> Compared:
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
    return Compared(reference, eager.model, port.model, x, pt2e_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed calls of each model")
    parser.add_argument("--shape", type=int, default=224, help="seed 002's image size (seed 000: 256, seed 004: 64)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    for name, build in (("seed000", seed000), ("seed002", lambda: seed002(args.shape)), ("seed004", seed004)):
        with contextlib.redirect_stdout(io.StringIO()):  # the scripts' own prints
            compared = build()
        db = compared.sqnrs()
        times = interleaved(
            {"float eager": compared.reference, "eager int8": compared.eager, "PT2E compiled int8": compared.pt2e},
            compared.x,
            args.rounds,
        )
        print(f"{name} input {tuple(compared.x.shape)}")
        for model, values in times.items():
            print(f"  {model:19s} {spread(values)}")
        print(f"  SQNR vs float: eager int8 {db['sqnr_eager_db']:.1f} dB, PT2E int8 {db['sqnr_pt2e_db']:.1f} dB")


if __name__ == "__main__":
    main()
