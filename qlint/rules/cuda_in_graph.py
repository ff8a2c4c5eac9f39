"""QL401 in the traced graph: CUDA tensors or moves inside the model's forward (any file, any helper).

The source half of QL401 (pipelines, model code read by libcst) is in devices.py; this half needs no
libcst, so the graph path does not import it.
"""

from __future__ import annotations

from collections.abc import Iterator

from qlint.diagnostics import Diagnostic
from qlint.rules.registry import graph_rule


def is_cuda_text(value: object) -> bool:
    return isinstance(value, str) and value.startswith("cuda")


@graph_rule("QL401")
def traced_cuda(qg) -> Iterator[Diagnostic]:
    for name, facts in qg.nodes():
        node = qg.fx_nodes[name]
        device = node.kwargs.get("device")
        if facts.op == "call_method" and facts.target == "cuda":
            what = "`.cuda()`"
        elif (
            facts.op == "call_method"
            and facts.target == "to"
            and any(is_cuda_text(str(a)) for a in (*node.args[1:], device) if a is not None)
        ):
            what = "`.to(<cuda>)`"
        elif device is not None and is_cuda_text(str(device)):
            what = "`device=<cuda>`"
        else:
            continue
        yield qg.diagnostic(
            "QL401",
            f"{what} in the model's forward: a quantized model runs on the CPU only; use the input's device",
            name,
        )
