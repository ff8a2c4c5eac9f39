"""Engine and namespace rules: what the quantization backend and the imports say.

QL402 a qconfig built for one engine while ``torch.backends.quantized.engine`` is set (or defaults) to
another; QL405 the deprecated ``torch.quantization`` namespace (fixed by naming ``torch.ao``).
Torch-free: nothing is imported or executed.
"""

from __future__ import annotations

import contextlib
import platform
import re
import sys
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related, Severity
from qlint.rules.base import Basis, EditsFound, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, precomputed_fixes
from qlint.source.facts import calls_any, fact, one_pass
from qlint.source.names import QCONFIG_GETTERS
from qlint.source.pipeline import argument, callee_attr

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.source.index import SourceIndex


class QconfigEngineMismatch(Rule):
    """## What it does
    Reports `get_default_qconfig("A")`, `get_default_qat_qconfig("A")` and
    `get_default_qconfig_mapping("A")` (and their QAT / dict variants) when the file sets
    `torch.backends.quantized.engine` to an engine of another family, or never sets it and `A`
    differs from the engine torch picks on this host. A call without a backend means `"x86"`,
    torch's default argument.

    Engines of one family are compatible: `"x86"` and `"fbgemm"` build the same qconfig
    (`reduce_range=True` activations, per-channel weights) and the x86 engine runs fbgemm kernels.
    `"qnnpack"` (`reduce_range=False`, per-tensor weights) and `"onednn"` (`reduce_range=False`,
    per-channel weights) are each their own family. The engine's value is read from string
    literals, also through a name assigned one string literal in the file; when the engine is set
    from anything else, nothing is reported.

    When the file never sets the engine, qlint uses the host's default without importing torch:
    `"x86"` on x86 CPUs (`platform.machine()` is `x86_64`, `AMD64`, `i686`...), `"qnnpack"` on
    ARM (`aarch64`, `arm64`, `armv7l`...), and nothing on other machines. This is torch's choice
    on its official builds; a custom build with other engines may differ.

    ## Why is this bad?
    The qconfig decides how the observers measure ranges; the engine decides which kernels
    `convert` packs the weights for and which kernels run the model. With a qconfig made for
    another engine the model still converts and runs, but the numbers are off: a `"qnnpack"`
    qconfig has `reduce_range=False` activations, which can saturate fbgemm's 16-bit intermediate
    sums on x86 CPUs without VNNI, and a `"x86"` qconfig on qnnpack throws away a bit of the
    activation range. Nothing fails; accuracy silently drops and the output differs from what was
    tested on the other engine (pytorch/pytorch#70512).

    ## Use instead
    Set the engine in every process that converts or runs the model (an evaluation script that
    loads a qnnpack model on an x86 server needs `torch.backends.quantized.engine = "qnnpack"`
    too).

    ## Fix safety
    No automatic fix: which engine is right depends on the deployment target. Pick it, then use
    the same name for `torch.backends.quantized.engine` and the qconfig.

    ## References
    - [pytorch/pytorch#70512](https://github.com/pytorch/pytorch/issues/70512) (a model prepared with qnnpack settings and run on fbgemm gives numerical errors: "fbgemm only works with reduce_range settings")
    - [pytorch/pytorch#46749](https://github.com/pytorch/pytorch/issues/46749) (tracking the quantization backend settings in a model)
    - [pytorch/pytorch#56028](https://github.com/pytorch/pytorch/issues/56028) (a qnnpack-quantized model on x86: "it might not get the same numerics")
    - [Quantization: backend and hardware support](https://pytorch.org/docs/stable/quantization.html#backend-hardware-support)
    - seed 002: `get_default_qconfig('qnnpack')` with `engine = 'qnnpack'` on a Jetson (ARM): consistent, not reported
    """

    code = "QL402"
    name = "qconfig-engine-mismatch"
    severity = Severity.ERROR
    flows = (
        Flow.EAGER,
        Flow.FX,
    )
    basis = (Basis.SOURCE,)
    summary = "a default qconfig for one engine, another engine set"
    triggers = ("qconfig",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

torch.backends.quantized.engine = "x86"  # the server that runs the model

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("qnnpack")  # observers tuned for the ARM engine
prepared = prepare(model)
for _ in range(4):
    prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
print(qmodel(torch.rand(1, 3, 32, 32)).shape)
""",
            lines=(8,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

ENGINE = "x86"  # one name for the engine and the qconfig
torch.backends.quantized.engine = ENGINE

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig(ENGINE)
prepared = prepare(model)
for _ in range(4):
    prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
print(qmodel(torch.rand(1, 3, 32, 32)).shape)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return qconfig_engine_mismatch(index)


class DeprecatedQuantizationNamespace(Rule):
    """## What it does
    Reports the old quantization namespaces, kept by torch only as aliases for backward
    compatibility, in attribute chains (`torch.quantization.prepare(...)`) and imports
    (`import torch.quantization as tq`, `from torch.quantization import QuantStub`,
    `from torch import quantization`):

    | old | new |
    |---|---|
    | `torch.quantization` | `torch.ao.quantization` |
    | `torch.quantization._numeric_suite`, `._numeric_suite_fx` | `torch.ao.ns._numeric_suite`, `._numeric_suite_fx` |
    | `torch.nn.quantized` | `torch.ao.nn.quantized` |
    | `torch.nn.intrinsic` | `torch.ao.nn.intrinsic` |
    | `torch.nn.qat` | `torch.ao.nn.qat` |
    | `torch.nn.quantizable` | `torch.ao.nn.quantizable` |

    Private modules with no `torch.ao` home (`torch.quantization._quantized_conversions`,
    `torch.nn.quantized._reference`) are not reported.

    ## Why is this bad?
    The code moved to `torch.ao` in torch 1.10; the old names are thin re-exports that receive no
    new features and may be removed. Code written against them mixes two spellings of one API,
    and an `isinstance` check or a mapping keyed by the old and the new module object still work
    today only because the objects are the same. In recent torch releases `torch.ao.quantization`
    itself points eager and FX users to torchao (PT2E): the move to `torch.ao` is the first step
    of a migration, not the last.

    ## Fix safety
    Safe: the fix replaces exactly the old namespace text (`torch.quantization` becomes
    `torch.ao.quantization`, `from torch import quantization` becomes
    `from torch.ao import quantization`). Every public name of the old namespaces exists under
    the new one, as the same object, so behaviour does not change. An import that mixes names
    with two different new homes (`from torch.quantization import _numeric_suite, prepare`) is
    not reported: split it by hand.

    ## References
    - [Quantization API reference](https://pytorch.org/docs/stable/quantization-support.html) (`torch.ao.quantization`, `torch.ao.nn.quantized`, ...)
    - [torch/quantization/__init__.py](https://github.com/pytorch/pytorch/blob/main/torch/quantization/__init__.py) (the re-exports kept "for BC")
    - seeds 000, 002 and 004: all written against `torch.quantization`
    """

    code = "QL405"
    name = "deprecated-quantization-namespace"
    severity = Severity.INFO
    flows = (
        Flow.EAGER,
        Flow.FX,
    )
    basis = (Basis.SOURCE,)
    summary = "the deprecated torch.quantization namespace"
    fix_availability = FixAvailability.ALWAYS
    fix_title = "safe"
    triggers = ("quantiz", "intrinsic", "nn.qat")
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn

model = nn.Sequential(torch.quantization.QuantStub(), nn.Conv2d(3, 8, 3), torch.quantization.DeQuantStub())
model.eval()
model.qconfig = torch.quantization.get_default_qconfig("x86")
prepared = torch.quantization.prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = torch.quantization.convert(prepared)
""",
            lines=(4, 4, 6, 7, 9),
            fixed="""\
import torch
import torch.nn as nn

model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(3, 8, 3), torch.ao.quantization.DeQuantStub())
model.eval()
model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
prepared = torch.ao.quantization.prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = torch.ao.quantization.convert(prepared)
""",
        ),
        Valid(
            """\
import torch
import torch.nn as nn

model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(3, 8, 3), torch.ao.quantization.DeQuantStub())
model.eval()
model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
prepared = torch.ao.quantization.prepare(model)
prepared(torch.rand(1, 3, 32, 32))
qmodel = torch.ao.quantization.convert(prepared)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return deprecated_namespace(index)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


# engines whose default qconfigs are interchangeable: x86 runs fbgemm kernels and both use
# reduce_range=True activations with per-channel weights; onednn and qnnpack use reduce_range=False
ENGINE_FAMILY = {"x86": "x86", "fbgemm": "x86", "onednn": "onednn", "qnnpack": "qnnpack"}
DEPRECATED_NAMESPACES = {
    "torch.quantization": "torch.ao.quantization",
    "torch.nn.quantized": "torch.ao.nn.quantized",
    "torch.nn.intrinsic": "torch.ao.nn.intrinsic",
    "torch.nn.qat": "torch.ao.nn.qat",
    "torch.nn.quantizable": "torch.ao.nn.quantizable",
}
# submodules that moved elsewhere, or have no torch.ao home (not reported: nothing to suggest)
MOVED_SUBMODULES = {("torch.quantization", "_numeric_suite"): "torch.ao.ns",
                    ("torch.quantization", "_numeric_suite_fx"): "torch.ao.ns"}  # fmt: skip
NO_AO_HOME = {("torch.quantization", "_quantized_conversions"), ("torch.nn.quantized", "_reference")}


# QL402 -------------------------------------------------------------------------------------------

_X86_MACHINES = {"x86_64", "amd64", "i386", "i686", "x86"}


def host_engine(machine: str | None = None) -> str | None:
    """The engine torch defaults to on this host, without importing torch: "x86" on x86 CPUs,
    "qnnpack" on ARM, None when unsure."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in _X86_MACHINES:
        return "x86"
    if machine.startswith(("arm", "aarch64")):
        return "qnnpack"
    return None


def host_cpu() -> str | None:
    """This machine as a ``--target-cpu`` value: "arm", "x86-vnni" (AVX-512 VNNI), "x86-avx2" (an x86 CPU
    without it), or None when it cannot be told (not x86 or ARM; neither torch nor /proc/cpuinfo says)."""
    engine = host_engine()
    if engine == "qnnpack":
        return "arm"
    if engine != "x86":
        return None
    vnni = _host_vnni()
    return None if vnni is None else ("x86-vnni" if vnni else "x86-avx2")


@cache
def _host_vnni() -> bool | None:
    """Whether this CPU has AVX-512 VNNI, the int8 dot product fbgemm uses when it can: asked of torch
    when the process imported it (``torch.cpu._is_vnni_supported``), else of the kernel's CPU flags."""
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):  # an older torch without the query
            return bool(torch.cpu._is_vnni_supported())
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx512_vnni" in line.split()
    except OSError:  # not Linux
        pass
    return None


def file_engines(index: SourceIndex) -> list[tuple[str, cst.CSTNode]] | None:
    """Each ``torch.backends.quantized.engine = "..."`` of the file, with its statement; None when the
    engine is also set in a way qlint cannot read (a computed value, ``override_quantized_engine``)."""
    scoped = scoped_engines(index)
    return None if scoped is None else [(engine, node) for engine, node, _ in scoped]


def scoped_engines(index: SourceIndex) -> list[tuple[str, cst.CSTNode, str | None]] | None:
    """``file_engines`` with the function each is set in (None: the module body)."""
    assignments = fact(index, _EngineAssignments)
    if assignments.unreadable:
        return None
    strings = fact(index, _StringConstants).values
    engines: list[tuple[str, cst.CSTNode, str | None]] = []
    for node, value, function in assignments.found:
        engine = _resolve_string(value, strings)
        if engine not in ENGINE_FAMILY:
            return None
        engines.append((engine, node, function))
    return engines


def qconfig_engine_mismatch(index: SourceIndex) -> Iterator[Diagnostic]:
    """A getter is compared with the engines set where it runs: its own function (or the module body
    for module-level code). A function that sets none runs with whatever is in effect when it is
    called: the module's setting or the host's default, or one set by another function; it is
    reported only when none of those matches."""
    if not calls_any(index, QCONFIG_GETTERS):
        return
    scoped = scoped_engines(index)
    if scoped is None:
        return  # the engine is set in a way qlint cannot read: nothing to compare with
    strings = fact(index, _StringConstants).values
    host = host_engine()
    for site in index.calls:
        if site.attr not in QCONFIG_GETTERS:
            continue
        expr = argument(site.node, 0, "backend")
        backend = "x86" if expr is None else _resolve_string(expr, strings)  # torch's default argument
        if backend not in ENGINE_FAMILY:
            continue
        own = [(e, n) for e, n, f in scoped if f == site.function]
        module = [(e, n) for e, n, f in scoped if f is None]
        others = [(e, n) for e, n, f in scoped if f != site.function and f is not None]
        scope = f"`{site.function}`" if site.function else "the module body"
        if own:
            engines, default = own, None
            where = f"is set to {_names(own)} in {scope}"
        elif module:
            engines, default = module + others, None
            where = f"is set to {_names(engines)} in this file"
        elif others:
            engines, default = others, host
            where = f"is not set in {scope}; it is {_names(others)} where another function sets it" + (
                f', and "{host}" (this {platform.machine()} host\'s default) otherwise' if host else ""
            )
        elif host is not None:
            engines, default = [], host
            where = f'is never set in this file, so it defaults to "{host}" on this {platform.machine()} host'
        else:
            continue
        in_effect = [e for e, _ in engines] + ([default] if default else [])
        if not in_effect or any(ENGINE_FAMILY[e] == ENGINE_FAMILY[backend] for e in in_effect):
            continue
        related = tuple(Related(index.span(n), f'the engine is set to "{e}" here') for e, n in engines)
        call = f'`{site.attr}("{backend}")`'
        engine = "/".join(sorted(set(in_effect)))
        effect = _MISMATCH_EFFECT.get((ENGINE_FAMILY[backend], ENGINE_FAMILY[in_effect[0]]), "")
        yield index.diagnostic(
            "QL402",
            f"{call} builds observers for the {backend} engine, but `torch.backends.quantized.engine` "
            f"{where}: `convert` packs the weights for {engine} and inference runs {engine} kernels with "
            f"qparams chosen for {backend}{effect}; use one engine name for both",
            site.node,
        ).with_changes(related=related)


def _names(engines: list[tuple[str, cst.CSTNode]]) -> str:
    return ", ".join(sorted({f'"{e}"' for e, _ in engines}))


_MISMATCH_EFFECT = {
    ("qnnpack", "x86"): " (reduce_range=False activations can saturate fbgemm kernels on CPUs without VNNI)",
    ("onednn", "x86"): " (reduce_range=False activations can saturate fbgemm kernels on CPUs without VNNI)",
    ("x86", "qnnpack"): " (reduce_range=True activations waste one bit of range)",
    ("x86", "onednn"): " (reduce_range=True activations waste one bit of range)",
}


@one_pass
class _EngineAssignments(cst.CSTVisitor):
    """``torch.backends.quantized.engine = ...`` statements with their innermost function (None: the
    module body); ``unreadable`` when the engine is also set some other way
    (``override_quantized_engine(...)``, ``setattr``)."""

    def __init__(self) -> None:
        self.found: list[tuple[cst.Assign, cst.BaseExpression, str | None]] = []
        self.unreadable = False
        self.functions: list[str] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node.name.value)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.functions.pop()

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if (get_full_name_for_node(target.target) or "").endswith("backends.quantized.engine"):
                self.found.append((node, node.value, self.functions[-1] if self.functions else None))

    def visit_Call(self, node: cst.Call) -> None:
        name = callee_attr(node)
        target = get_full_name_for_node(node.args[0].value) if node.args else None
        if name == "override_quantized_engine" or (name == "setattr" and "quantized" in (target or "")):
            self.unreadable = True


@one_pass
class _StringConstants(cst.CSTVisitor):
    """Names assigned exactly one string literal in the file, in ``values`` (None: anything else too)."""

    def __init__(self) -> None:
        self.values: dict[str, str | None] = {}

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                name = target.target.value
                value = node.value.evaluated_value if isinstance(node.value, cst.SimpleString) else None
                self.values[name] = value if self.values.get(name, value) == value else None

    def visit_Param(self, node: cst.Param) -> None:
        self.values[node.name.value] = None


def _resolve_string(expr: cst.BaseExpression, strings: dict[str, str | None]) -> str | None:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    if isinstance(expr, cst.Name):
        return strings.get(expr.value)
    return None


# QL405 -------------------------------------------------------------------------------------------


def deprecated_namespace(index: SourceIndex) -> Iterator[Diagnostic]:
    if not _OLD_NAMESPACE_TEXT.search(index.source.text):
        return
    finder = fact(index, _NamespaceFinder)
    for node, old in finder.found:
        following = finder.following.get(id(node), set())
        if following & {sub for ns, sub in NO_AO_HOME if ns == old}:
            continue
        moved = {MOVED_SUBMODULES.get((old, sub)) for sub in following}
        if len(moved) > 1:
            continue  # e.g. `from torch.quantization import _numeric_suite, prepare`: two new homes
        new = moved.pop() if moved and None not in moved else DEPRECATED_NAMESPACES.get(old, "torch.ao")
        shown = "from torch import quantization" if old == "torch" else f"{old}"
        span = index.span(node)
        yield index.diagnostic(
            "QL405",
            f"`{shown}` is a deprecated alias kept for backward compatibility: use `{new}`",
            node,
            data=EditsFound(Fix(Applicability.SAFE, f"Use `{new}`", (Edit(new, (span.line, span.col), span.end),))),
        )


_OLD_NAMESPACE_TEXT = re.compile(
    r"\btorch\s*\.\s*(quantization|nn\s*\.\s*(quantized|intrinsic|qat|quantizable))\b|\btorch\s+import\b"
)


@one_pass
class _NamespaceFinder(cst.CSTVisitor):
    """``torch.quantization``-like attribute chains, with the names that follow them."""

    def __init__(self) -> None:
        self.found: list[tuple[cst.CSTNode, str]] = []
        self.following: dict[int, set[str]] = {}

    def visit_Attribute(self, node: cst.Attribute) -> None:
        name = get_full_name_for_node(node)
        if name in DEPRECATED_NAMESPACES:
            self.found.append((node, name))
        if isinstance(node.value, cst.Attribute) and get_full_name_for_node(node.value) in DEPRECATED_NAMESPACES:
            self.following.setdefault(id(node.value), set()).add(node.attr.value)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        module = get_full_name_for_node(node.module)
        names = {get_full_name_for_node(a.name) or "" for a in node.names}
        if module in DEPRECATED_NAMESPACES:
            self.following.setdefault(id(node.module), set()).update(names)
        elif module == "torch" and names == {"quantization"}:
            self.found.append((node.module, "torch"))
