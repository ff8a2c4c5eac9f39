"""The quantized engine against the host and against the qconfig's activation dtype.

QL304 an engine made for another CPU family than the host's (read from ``platform.machine()``);
QL407 activations observed as ``torch.qint8`` for an engine whose kernels take ``quint8``.
Torch-free: nothing is imported or executed (torch's CPU capability is named only when the process
already imported torch).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Diagnostic, Related, Severity
from qlint.rules.base import Basis, Flow, Invalid, Rule, Valid
from qlint.rules.engines import ENGINE_FAMILY, file_engines, host_engine
from qlint.source.pipeline import argument, callee_attr

if TYPE_CHECKING:
    from qlint.source.index import SourceIndex

_HOST_ENGINES = {"x86": ("x86", "fbgemm", "onednn"), "qnnpack": ("qnnpack",)}  # host default -> engines made for it


def host_description() -> str:
    """``x86_64 host`` (with torch's CPU capability when torch is already imported, e.g. ``AVX512``)."""
    words = f"{platform.machine()} host"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            words += f", CPU capability {torch.backends.cpu.get_cpu_capability()}"
        except Exception:  # noqa: BLE001 - an old torch: the machine alone says enough
            pass
    return words


class EngineHostMismatch(Rule):
    """## What it does
    Reports `torch.backends.quantized.engine = "..."` when the engine is made for another CPU
    family than the host that runs qlint: `"qnnpack"` (ARM's engine) on an x86 host, `"x86"`,
    `"fbgemm"` or `"onednn"` on an ARM host. The host is read from `platform.machine()`; on any
    other machine nothing is reported.

    ## Why is this bad?
    The engine picks the kernels the quantized model runs. qnnpack's kernels are written for ARM
    NEON; on an x86 CPU they run through a slow generic path, about ten times slower than the x86
    engine (fbgemm + oneDNN) on the same model, and fbgemm does not run on ARM at all. The int8
    model then looks slower than float and gets dropped for the wrong reason. When the engine is
    chosen for a deployment target that is not this host (a phone), the script is right but every
    timing taken here is meaningless.

    ## Fix safety
    No automatic fix: the engine belongs to the deployment target. Use the host's engine when the
    model runs here (`"x86"` on x86, `"qnnpack"` on ARM), and prepare with the matching qconfig
    (QL402).

    ## References
    - [Quantization: backend and hardware support](https://pytorch.org/docs/stable/quantization.html#backend-hardware-support) ("x86 CPUs: fbgemm/x86 ... ARM CPUs: qnnpack")
    """

    code = "QL304"
    name = "engine-host-mismatch"
    severity = Severity.WARNING
    basis = (Basis.SOURCE,)
    summary = "a quantized engine made for another CPU family than the host"
    triggers = ("engine",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

torch.backends.quantized.engine = "qnnpack"  # run here, on an x86 workstation
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("qnnpack")
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            lines=(5,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        host = host_engine()
        if host is None:
            return
        for engine, node in file_engines(index) or ():
            if engine in _HOST_ENGINES[host]:
                continue
            made_for = "ARM CPUs" if engine == "qnnpack" else "x86 CPUs"
            yield index.diagnostic(
                self.code,
                f'the quantized engine is set to "{engine}", made for {made_for}, but this is an '
                f'{host_description()}: its int8 kernels run far slower here than the "{host}" engine\'s; '
                f"use the engine of the machine that runs the model",
                node,
            )


class SignedActivationDtype(Rule):
    """## What it does
    Reports an activation observer built with `dtype=torch.qint8` inside a `QConfig(activation=...)`
    (also through a name bound once in the file) when the engine is x86, fbgemm or onednn: the
    engine the file sets, or the host's default (x86 on x86 CPUs) when it sets none.

    ## Why is this bad?
    The x86, fbgemm and onednn quantized kernels take unsigned 8-bit activations. `prepare` and
    `convert` accept a signed activation observer, and the first quantized forward fails:

    ```text
    RuntimeError: quantized::conv2d (ONEDNN): data type of input should be QUint8.
    ```

    ## Fix safety
    No automatic fix: the observer's range settings (`quant_min`/`quant_max`, `reduce_range`) go
    with the dtype. Use `dtype=torch.quint8` for activations (weights stay `torch.qint8`).

    ## References
    - [torch.ao.quantization.qconfig](https://github.com/pytorch/pytorch/blob/main/torch/ao/quantization/qconfig.py) (every default qconfig observes activations as `quint8`)
    - [Quantization: backend and hardware support](https://pytorch.org/docs/stable/quantization.html#backend-hardware-support)
    """

    code = "QL407"
    name = "signed-activation-dtype"
    severity = Severity.ERROR
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.SOURCE,)
    summary = "activations observed as torch.qint8 for an engine that takes quint8"
    triggers = ("qint8",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import MinMaxObserver, QConfig, QuantWrapper, convert, default_weight_observer, prepare

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.qint8), weight=default_weight_observer)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            lines=(7,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import MinMaxObserver, QConfig, QuantWrapper, convert, default_weight_observer, prepare

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8), weight=default_weight_observer)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        engines = file_engines(index)
        if engines is None:
            return
        names = {e for e, _ in engines} or ({host_engine()} - {None})
        unsigned = sorted(e for e in names if ENGINE_FAMILY.get(e) in ("x86", "onednn"))
        if not unsigned or len(unsigned) != len(names):
            return  # no engine known, or a qnnpack one too: qlint cannot tell which runs
        bound = _single_bindings(index)
        related = tuple(Related(index.span(n), f'the engine is set to "{e}" here') for e, n in engines)
        for site in index.calls:
            if site.attr != "QConfig":
                continue
            activation = argument(site.node, 0, "activation")
            if isinstance(activation, cst.Name):
                activation = bound.get(activation.value)
            for dtype in _signed_dtypes(activation):
                engine = "/".join(unsigned)
                yield index.diagnostic(
                    self.code,
                    f"activations observed as `torch.qint8`, but the {engine} engine's quantized kernels take "
                    f"`quint8` inputs: the first int8 forward fails (`data type of input should be QUint8`); "
                    f"use `dtype=torch.quint8` for activations",
                    dtype,
                ).with_changes(related=related)


def _signed_dtypes(expr: cst.BaseExpression | None) -> list[cst.Arg]:
    """The ``dtype=torch.qint8`` arguments of the calls inside ``expr``."""
    if expr is None:
        return []
    found: list[cst.Arg] = []

    class Visitor(cst.CSTVisitor):
        def visit_Arg(self, node: cst.Arg) -> None:
            if node.keyword is not None and node.keyword.value == "dtype":
                if (get_full_name_for_node(node.value) or "").split(".")[-1] == "qint8":
                    found.append(node)

    expr.visit(Visitor())
    return found


def _single_bindings(index: SourceIndex) -> dict[str, cst.BaseExpression]:
    """Names assigned exactly once in the file, with their value."""
    values: dict[str, list[cst.BaseExpression]] = {}

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    values.setdefault(target.target.value, []).append(node.value)

    index.module.visit(Visitor())
    return {name: found[0] for name, found in values.items() if len(found) == 1 and _followable(found[0])}


def _followable(expr: cst.BaseExpression) -> bool:
    """A value worth following: a call (``MinMaxObserver.with_args(...)``) or a name."""
    return isinstance(expr, (cst.Call, cst.Name)) and (not isinstance(expr, cst.Call) or bool(callee_attr(expr)))
