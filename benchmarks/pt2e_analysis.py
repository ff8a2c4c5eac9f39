"""The PT2E analysis on torchvision models: statistics tables, agreement with a real convert, speed.

    python benchmarks/pt2e_analysis.py stats resnet18 mobilenet_v3_large ...   # tables (meta only)
    python benchmarks/pt2e_analysis.py verify resnet18 ...                     # + real CPU prepare/calibrate/convert
    python benchmarks/pt2e_analysis.py speed resnet50                          # vs the import floor, in subprocesses

``verify`` checks that the ops the analysis says stay float between quantized ones are exactly the
float ops between quantized ones in the converted graph, and that quantize/dequantize pairs sit
where the analysis said. ``--strict`` exports with ``strict=True`` (needed by models that call one
module twice, e.g. torchvision's ResNets under the x86 quantizer). Numbers, not pass/fail.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings


def analyse(name: str, strict: bool):
    import torch
    import torchvision

    from qlint.model import export, pt2e, pt2e_quantizer

    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None).eval()
    start = time.perf_counter()
    exported = export.export_on_meta(model, export.example_inputs(model), strict=strict)
    if isinstance(exported, export.ExportFailure):
        return None, exported, time.perf_counter() - start
    graph = pt2e.annotate(exported, pt2e_quantizer.quantizer_for("x86"))
    return graph, None, time.perf_counter() - start


def converted_truth(converted):
    """(between, output quantized, input quantized) names in a converted graph."""
    import torch

    def qdq(n, kind):
        return n.op == "call_function" and str(n.target).startswith(f"quantized_decomposed.{kind}")

    def is_op(n):
        return n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) and not qdq(n, "")

    def annotated(n):
        return getattr(n.meta.get("quantization_annotation"), "_annotated", False)

    nodes = list(converted.graph.nodes)
    up, down = {}, {}
    for n in nodes:
        up[n] = (
            is_op(n)
            and not annotated(n)
            and any(qdq(i, "dequantize") or (is_op(i) and (annotated(i) or up[i])) for i in n.all_input_nodes)
        )
    for n in reversed(nodes):
        down[n] = is_op(n) and not annotated(n) and any(qdq(u, "quantize") or down.get(u, False) for u in n.users)
    tensor = {n for n in nodes if isinstance(n.meta.get("val"), torch.Tensor)}
    between = {n.name for n in nodes if is_op(n) and n in tensor and up[n] and down[n]}
    output_q = {n.name for n in nodes if is_op(n) and any(qdq(u, "quantize") for u in n.users)}
    input_q = {n.name for n in nodes if is_op(n) and any(qdq(i, "dequantize") for i in n.all_input_nodes)}
    return between, output_q, input_q


def verify(name: str, graph, strict: bool) -> str:
    import torch
    import torchvision
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from qlint.model import pt2e_quantizer

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    inputs = (torch.randn(1, 3, 224, 224),)
    exported = torch.export.export(model, inputs, strict=strict).module()
    prepared = prepare_pt2e(exported, pt2e_quantizer.quantizer_for("x86"))
    with torch.no_grad():
        for _ in range(2):
            prepared(torch.randn(1, 3, 224, 224))
    between, output_q, input_q = converted_truth(convert_pt2e(prepared))
    ops = {n.name: n for n in graph.tensor_ops()}
    mine = {k for k, n in ops.items() if n.between_quantized}
    checks = {
        "between": (mine, between),
        "output quantized": ({k for k, n in ops.items() if n.output_quantized}, output_q),
        "input quantized": ({k for k, n in ops.items() if any(n.inputs_quantized)}, input_q),
    }
    out = []
    for what, (a, b) in checks.items():
        same = "same" if a == b else f"DIFFERENT (qlint only {sorted(a - b)}, real only {sorted(b - a)})"
        out.append(f"{what}: {same}")
    return f"  real convert on CPU: {'; '.join(out)} ({len(between)} float ops between quantized ones)"


def speed(name: str, strict: bool, repeat: int) -> None:
    floor_cmd = [sys.executable, "-c", "import torch, torchvision, torchao"]
    flag = ", strict=True" if strict else ""
    check_cmd = [
        sys.executable,
        "-c",
        "import torch, torchvision\n"
        "from qlint.model import export, pt2e, pt2e_quantizer\n"
        "with torch.device('meta'):\n"
        f"    m = torchvision.models.get_model({name!r}, weights=None).eval()\n"
        f"e = export.export_on_meta(m, export.example_inputs(m){flag})\n"
        "g = pt2e.annotate(e, pt2e_quantizer.quantizer_for('x86'))\n",
    ]

    def timed(cmd):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - start

    floors, checks = [], []
    for _ in range(repeat):
        floors.append(timed(floor_cmd))
        checks.append(timed(check_cmd))
    floor, check = min(floors), min(checks)
    print(f"import floor (torch + torchvision + torchao): {floor:.2f} s")
    print(f"{name} build on meta + export + annotate (x86{', strict' if strict else ''}): {check:.2f} s")
    print(f"ratio: {check / floor:.2f}x the import floor (best of {repeat})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("stats", "verify", "speed"))
    parser.add_argument("models", nargs="+")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.mode == "speed":
        for name in args.models:
            speed(name, args.strict, args.repeat)
        return
    from qlint.model import pt2e_facts

    for name in args.models:
        graph, failure, seconds = analyse(name, args.strict)
        print(f"## {name} (export + annotate on meta: {seconds:.2f} s)")
        if failure is not None:
            print(f"  export failed: {failure.reason} ({failure.torch_message})")
            continue
        print(pt2e_facts.render_statistics(pt2e_facts.statistics(graph)))
        if args.mode == "verify" and graph.prepare_error is None:
            print(verify(name, graph, args.strict))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
