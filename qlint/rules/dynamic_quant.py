"""QL410: ``quantize_dynamic`` asked to quantize module types it has no dynamic kernel for (convs).

Torch-free: the call's ``qconfig_spec`` is read from the source; the types dynamic quantization
swaps are torch's ``get_default_dynamic_quant_module_mappings()`` (Linear, the RNNs, embeddings),
and convolutions are never among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Diagnostic, Severity
from qlint.rules.base import Basis, Flow, Invalid, Rule, Valid
from qlint.source.pipeline import argument

if TYPE_CHECKING:
    from qlint.source.index import SourceIndex

_CONV = re.compile(r"^(Lazy)?Conv(Transpose)?[123]d$|^ConvBn(ReLU)?[123]d$|^ConvReLU[123]d$")


class DynamicQuantNoop(Rule):
    """## What it does
    Reports each convolution type (`nn.Conv1d/2d/3d`, `nn.ConvTranspose*d`, fused `ConvReLU2d`...)
    named in the `qconfig_spec` of `quantize_dynamic(model, {...})`: a set, a list or the keys of a
    dict, written in the call or bound once to a name.

    ## Why is this bad?
    Dynamic quantization only has kernels for `nn.Linear`, the RNNs (`LSTM`, `GRU`, their cells) and
    embeddings (what `torch.ao.quantization.quantization_mappings.get_default_dynamic_quant_module_mappings()`
    lists). `quantize_dynamic` silently skips every other type: the convolutions of the returned
    model are the float ones, the model is no smaller and no faster, and nothing says so.

    ## Fix safety
    No automatic fix. Quantize convolutions with static quantization (`prepare`, calibration,
    `convert`, with `QuantStub`/`DeQuantStub`), or keep `quantize_dynamic` for the Linear and RNN
    layers only.

    ## References
    - [torch.ao.quantization.quantize_dynamic](https://pytorch.org/docs/stable/generated/torch.ao.quantization.quantize_dynamic.html) ("only layers like Linear and RNN are supported")
    - [Quantization: dynamic quantization](https://pytorch.org/docs/stable/quantization.html#post-training-dynamic-quantization)
    """

    code = "QL410"
    name = "dynamic-quant-noop"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.SOURCE,)
    summary = "quantize_dynamic asked to quantize convolutions"
    triggers = ("quantize_dynamic",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import quantize_dynamic

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10)).eval()
qmodel = quantize_dynamic(model, {nn.Conv2d, nn.Linear}, dtype=torch.qint8)
""",
            lines=(6,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import quantize_dynamic

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10)).eval()
qmodel = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        bound = _bound_once(index)
        for site in index.calls:
            if site.attr != "quantize_dynamic":
                continue
            spec = argument(site.node, 1, "qconfig_spec")
            if isinstance(spec, cst.Name):
                spec = bound.get(spec.value)
            for element in _elements(spec):
                kind = (get_full_name_for_node(element) or "").split(".")[-1]
                if _CONV.match(kind):
                    yield index.diagnostic(
                        self.code,
                        f"`quantize_dynamic` has no dynamic kernel for `{kind}` (only Linear, RNNs and "
                        f"embeddings): it leaves every `{kind}` float, silently; quantize convolutions "
                        f"with static quantization (prepare, calibrate, convert)",
                        element,
                    )


def _elements(spec: cst.BaseExpression | None) -> list[cst.BaseExpression]:
    if isinstance(spec, (cst.Set, cst.List, cst.Tuple)):
        return [e.value for e in spec.elements if isinstance(e, cst.Element)]
    if isinstance(spec, cst.Dict):
        return [e.key for e in spec.elements if isinstance(e, cst.DictElement)]
    return []


def _bound_once(index: SourceIndex) -> dict[str, cst.BaseExpression]:
    values: dict[str, list[cst.BaseExpression]] = {}

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    values.setdefault(target.target.value, []).append(node.value)

    index.module.visit(Visitor())
    return {name: found[0] for name, found in values.items() if len(found) == 1}
