"""Engine and namespace rules: what the quantization backend and the imports say.

QL402 a qconfig built for one engine while ``torch.backends.quantized.engine`` is set (or defaults) to
another; QL405 the deprecated ``torch.quantization`` namespace (fixed by naming ``torch.ao``).
Torch-free: nothing is imported or executed.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterator

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related
from qlint.rules._source_helpers import calls_any, fact, one_pass
from qlint.rules.registry import source_rule
from qlint.source.pipeline import argument, callee_attr

QCONFIG_GETTERS = {
    "get_default_qconfig", "get_default_qat_qconfig", "get_default_qconfig_mapping",
    "get_default_qat_qconfig_mapping", "get_default_qconfig_dict", "get_default_qat_qconfig_dict",
}  # fmt: skip
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


@source_rule("QL402")
def qconfig_engine_mismatch(index) -> Iterator[Diagnostic]:
    if not calls_any(index, QCONFIG_GETTERS):
        return
    assignments = fact(index, _EngineAssignments)
    if assignments.unreadable:
        return  # the engine is set in a way qlint cannot read: nothing to compare with
    strings = fact(index, _StringConstants).values
    engines: list[tuple[str, cst.CSTNode]] = []
    for node, value in assignments.found:
        engine = _resolve_string(value, strings)
        if engine not in ENGINE_FAMILY:
            return  # set from something qlint cannot read: nothing to compare with
        engines.append((engine, node))
    host = host_engine()
    for site in index.calls:
        if site.attr not in QCONFIG_GETTERS:
            continue
        expr = argument(site.node, 0, "backend")
        backend = "x86" if expr is None else _resolve_string(expr, strings)  # torch's default argument
        if backend not in ENGINE_FAMILY:
            continue
        call = f'`{site.attr}("{backend}")`'
        if engines:
            if any(ENGINE_FAMILY[e] == ENGINE_FAMILY[backend] for e, _ in engines):
                continue
            shown = ", ".join(sorted({f'"{e}"' for e, _ in engines}))
            where = f"is set to {shown} in this file"
            related = tuple(Related(index.span(n), f'the engine is set to "{e}" here') for e, n in engines)
        elif host is not None and ENGINE_FAMILY[host] != ENGINE_FAMILY[backend]:
            where = f'is never set in this file, so it defaults to "{host}" on this {platform.machine()} host'
            related = ()
        else:
            continue
        engine = "/".join(sorted({e for e, _ in engines})) if engines else host
        effect = _MISMATCH_EFFECT.get((ENGINE_FAMILY[backend], ENGINE_FAMILY[engines[0][0] if engines else host]), "")
        yield index.diagnostic(
            "QL402",
            f"{call} builds observers for the {backend} engine, but `torch.backends.quantized.engine` "
            f"{where}: `convert` packs the weights for {engine} and inference runs {engine} kernels with "
            f"qparams chosen for {backend}{effect}; use one engine name for both",
            site.node,
        ).with_changes(related=related)


_MISMATCH_EFFECT = {
    ("qnnpack", "x86"): " (reduce_range=False activations can saturate fbgemm kernels on CPUs without VNNI)",
    ("onednn", "x86"): " (reduce_range=False activations can saturate fbgemm kernels on CPUs without VNNI)",
    ("x86", "qnnpack"): " (reduce_range=True activations waste one bit of range)",
    ("x86", "onednn"): " (reduce_range=True activations waste one bit of range)",
}


@one_pass
class _EngineAssignments(cst.CSTVisitor):
    """``torch.backends.quantized.engine = ...`` statements; ``unreadable`` when the engine is also set
    some other way (``override_quantized_engine(...)``, ``setattr``)."""

    def __init__(self) -> None:
        self.found: list[tuple[cst.Assign, cst.BaseExpression]] = []
        self.unreadable = False

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if (get_full_name_for_node(target.target) or "").endswith("backends.quantized.engine"):
                self.found.append((node, node.value))

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


@source_rule("QL405")
def deprecated_namespace(index) -> Iterator[Diagnostic]:
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
        ).with_changes(fix=Fix(Applicability.SAFE, f"Use `{new}`", (Edit(new, (span.line, span.col), span.end),)))


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
