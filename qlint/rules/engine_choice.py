"""The quantized engine against the host and against the qconfig's activation dtype.

QL304 an engine made for another CPU family than the target's (the ``target-cpu`` setting, by default
this host, read from ``platform.machine()``);
QL407 activations observed as ``torch.qint8`` for an engine whose kernels take ``quint8``;
QL411 full-range activations (``reduce_range=False``) for fbgemm/x86 on a CPU without VNNI (the
``target-cpu`` setting, by default this host).
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

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related, Severity
from qlint.rules.base import (
    Basis,
    EditsFound,
    FixAvailability,
    FixItems,
    Flow,
    Invalid,
    Rule,
    Valid,
    precomputed_fixes,
)
from qlint.rules.engines import ENGINE_FAMILY, file_engines, host_cpu, host_engine
from qlint.source.pipeline import argument, callee_attr

if TYPE_CHECKING:
    from qlint.config import Settings
    from qlint.context import FileContext
    from qlint.source.index import SourceIndex

_HOST_ENGINES = {"x86": ("x86", "fbgemm", "onednn"), "qnnpack": ("qnnpack",)}  # host default -> engines made for it
_TARGET_ENGINES = {"x86-vnni": "x86", "x86-avx2": "x86", "arm": "qnnpack"}  # --target-cpu -> its default engine


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
    family than the target CPU: `"qnnpack"` (ARM's engine) on an x86 CPU, `"x86"`, `"fbgemm"` or
    `"onednn"` on an ARM CPU. The target is `--target-cpu` (`target-cpu` in `[tool.qlint]`):
    `x86-avx2` or `x86-vnni` (x86), `arm`, or `host` (the default): the machine that runs qlint,
    read from `platform.machine()`; on any other machine nothing is reported.

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
    summary = "a quantized engine made for another CPU family than the target CPU (by default the host)"
    triggers = ("engine",)
    reads_settings = True
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
        Invalid(
            """\
import torch

torch.backends.quantized.engine = "x86"  # the model ships to phones
""",
            lines=(3,),
            args=("--target-cpu", "arm"),
        ),
        Valid(
            """\
import torch

torch.backends.quantized.engine = "qnnpack"  # the model ships to phones
""",
            args=("--target-cpu", "arm"),
        ),
    )

    def check_source(self, index: SourceIndex, settings: Settings | None = None) -> Iterator[Diagnostic]:
        chosen = settings.target_cpu if settings is not None else "host"
        target = host_engine() if chosen == "host" else _TARGET_ENGINES.get(chosen)
        if target is None:
            return
        where = (
            f"this is an {host_description()}" if chosen == "host" else f"the target CPU is `{chosen}` (--target-cpu)"
        )
        for engine, node in file_engines(index) or ():
            if engine in _HOST_ENGINES[target]:
                continue
            made_for = "ARM CPUs" if engine == "qnnpack" else "x86 CPUs"
            yield index.diagnostic(
                self.code,
                f'the quantized engine is set to "{engine}", made for {made_for}, but {where}: its int8 kernels '
                f'run far slower there than the "{target}" engine\'s; use the engine of the machine that runs the model',
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


_SATURATING_ENGINES = ("x86", "fbgemm")  # engines whose int8 kernels sum products in 16 bits without VNNI


class ReduceRangeOff(Rule):
    """## What it does
    Reports `reduce_range=False` in the activation observer of a `QConfig(activation=...)` (also through
    a name bound once in the file) when the engine is x86 or fbgemm (the one the file sets, or the
    default of an x86 CPU) and the model is deployed on an x86 CPU without AVX-512 VNNI. The CPU is
    `--target-cpu` (`target-cpu` in `[tool.qlint]`): `x86-avx2` (any x86 CPU without VNNI: AVX2, or
    AVX-512 before Cascade Lake), `x86-vnni`, `arm`, or `host` (the default): this machine, asked of
    torch (`torch.cpu._is_vnni_supported()`) when qlint imported it, else of the CPU flags in
    `/proc/cpuinfo`. Where the host cannot be read, nothing is reported.

    ## Why is this bad?
    Without VNNI, fbgemm computes an int8 convolution or linear layer with `vpmaddubsw`, which
    multiplies uint8 activations by int8 weights and adds each pair of products in a signed 16-bit
    register that saturates at 32767. With full 8-bit activations one pair reaches 2 x 255 x 127 = 64770:
    the sums clip and the outputs are silently wrong, worse the larger the activations (nothing
    raises; accuracy just drops on that CPU). `reduce_range=True` observes activations in 7 bits,
    2 x 127 x 127 = 32258 never saturates; it is what torch's default `x86` and `fbgemm` qconfigs use.
    VNNI's `vpdpbusd` accumulates in 32 bits, so on a VNNI CPU (Cascade Lake and later) full-range
    activations are safe.

    ## Fix safety
    Unsafe: `reduce_range=True` halves the activations' resolution, which changes the quantized outputs
    (on a CPU without VNNI, for the better). A model that is only deployed on VNNI CPUs should say so
    with `--target-cpu x86-vnni` instead.

    ## References
    - [pytorch/pytorch#44939](https://github.com/pytorch/pytorch/issues/44939) (fbgemm and qnnpack disagree: saturation in `vpmaddubsw`, "there is a `reduce_range` argument for observers to prevent the overflow in fbgemm")
    - [pytorch/FBGEMM#125](https://github.com/pytorch/FBGEMM/issues/125) (the same model: MSE 260 on Cascade Lake, 195320 on Skylake)
    - [torch.ao.quantization.qconfig](https://github.com/pytorch/pytorch/blob/main/torch/ao/quantization/qconfig.py) (`get_default_qconfig("x86")`: `HistogramObserver.with_args(reduce_range=True)`)
    """

    code = "QL411"
    name = "reduce-range-off"
    severity = Severity.WARNING
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.SOURCE,)
    summary = "full-range activations for fbgemm/x86 on a CPU without VNNI (the int8 sums saturate)"
    fix_availability = FixAvailability.ALWAYS
    fix_title = "`reduce_range=True`"
    triggers = ("reduce_range",)
    reads_settings = True
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import HistogramObserver, QConfig, QuantWrapper, convert, prepare
from torch.ao.quantization import default_per_channel_weight_observer

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(
    activation=HistogramObserver.with_args(reduce_range=False),
    weight=default_per_channel_weight_observer,
)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            lines=(9,),
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import HistogramObserver, QConfig, QuantWrapper, convert, prepare
from torch.ao.quantization import default_per_channel_weight_observer

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(
    activation=HistogramObserver.with_args(reduce_range=True),
    weight=default_per_channel_weight_observer,
)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            unsafe=True,
            args=("--target-cpu", "x86-avx2"),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import HistogramObserver, QConfig, QuantWrapper, convert, prepare
from torch.ao.quantization import default_per_channel_weight_observer

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(
    activation=HistogramObserver.with_args(reduce_range=True),
    weight=default_per_channel_weight_observer,
)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            args=("--target-cpu", "x86-avx2"),
        ),
        Invalid(  # through a name, with the host's default engine (x86)
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import MinMaxObserver, QConfig, QuantWrapper, convert, default_weight_observer, prepare

activations = MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=False)
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(activation=activations, weight=default_weight_observer)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            lines=(5,),
            args=("--target-cpu", "x86-avx2"),
        ),
        Valid(  # deployed on a VNNI CPU: full-range activations are safe
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import HistogramObserver, QConfig, QuantWrapper, convert, prepare
from torch.ao.quantization import default_per_channel_weight_observer

torch.backends.quantized.engine = "x86"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(
    activation=HistogramObserver.with_args(reduce_range=False),
    weight=default_per_channel_weight_observer,
)
prepared = prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            args=("--target-cpu", "x86-vnni"),
        ),
        Valid(  # qnnpack's kernels do not saturate: its qconfig keeps the full range
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import HistogramObserver, QConfig, QuantWrapper, convert, default_weight_observer, prepare

torch.backends.quantized.engine = "qnnpack"
model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = QConfig(activation=HistogramObserver.with_args(reduce_range=False), weight=default_weight_observer)
""",
            args=("--target-cpu", "x86-avx2"),
        ),
    )

    def check_source(self, index: SourceIndex, settings: Settings | None = None) -> Iterator[Diagnostic]:
        chosen = settings.target_cpu if settings is not None else "host"
        target = host_cpu() if chosen == "host" else chosen
        if target != "x86-avx2":
            return  # a VNNI CPU, ARM (QL304's business), or a host qlint cannot read
        engines = file_engines(index)
        if engines is None:
            return
        names = {e for e, _ in engines} or {"x86"}  # an x86 CPU's default engine
        if not names <= set(_SATURATING_ENGINES):
            return  # qnnpack or onednn too: qlint cannot tell which runs
        where = (
            "this host, an x86 CPU without AVX-512 VNNI"
            if chosen == "host"
            else "an x86 CPU without AVX-512 VNNI (`--target-cpu x86-avx2`)"
        )
        engine = "/".join(sorted(names))
        bound = _single_bindings(index)
        for site in index.calls:
            if site.attr != "QConfig":
                continue
            activation = argument(site.node, 0, "activation")
            if isinstance(activation, cst.Name):
                activation = bound.get(activation.value)
            for arg in _keyword_args(activation, "reduce_range"):
                if not (isinstance(arg.value, cst.Name) and arg.value.value == "False"):
                    continue
                value = index.span(arg.value)
                fix = Fix(
                    Applicability.UNSAFE,
                    "Observe activations with `reduce_range=True` (7 bits)",
                    (Edit("True", (value.line, value.col), value.end),),
                )
                yield index.diagnostic(
                    self.code,
                    f"`reduce_range=False` on the activation observer, for the {engine} engine on {where}: "
                    f"fbgemm's int8 kernels add pairs of uint8 x int8 products in 16 bits there (`vpmaddubsw`), "
                    f"which saturate with full-range activations and silently change the outputs; use "
                    f"`reduce_range=True`",
                    arg,
                    EditsFound(fix),
                )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


def _keyword_args(expr: cst.BaseExpression | None, keyword: str) -> list[cst.Arg]:
    """The ``keyword=...`` arguments of the calls inside ``expr``."""
    import libcst.matchers as m  # 0.4 s to import: only when this runs

    return [] if expr is None else list(m.findall(expr, m.Arg(keyword=m.Name(keyword))))


def _signed_dtypes(expr: cst.BaseExpression | None) -> list[cst.Arg]:
    """The ``dtype=torch.qint8`` arguments of the calls inside ``expr``."""
    return [
        a for a in _keyword_args(expr, "dtype") if (get_full_name_for_node(a.value) or "").split(".")[-1] == "qint8"
    ]


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
