"""Queries over a PT2EGraph for the QL5xx rules and ``--statistics``: each returns typed facts.

A rule turns a fact into a diagnostic in a few lines: the facts carry the span (the catalog's
pointing rule already applied), the related library lines, and the numbers for the message.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from qlint.diagnostics import Related, Span
from qlint.model.export import Exported, ExportFailure
from qlint.model.loader import ModelSpec
from qlint.model.pt2e import (
    EXCLUDED,
    NO_PATTERN,
    REASON_TEXT,
    PT2EGraph,
    PT2ENode,
)
from qlint.model.pt2e_quantizer import has_config

MAX_RELATED = 3


# ---- QL506 nothing-quantized ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    """Why nothing is quantized: ``kind`` is one of ``prepare-failed``, ``grad-mode``, ``no-config``,
    ``unmatched-module-config``, ``excluded-by-config``, ``no-supported-op``."""

    kind: str
    message: str
    span: Span | None = None
    related: tuple[Related, ...] = ()


@dataclass(frozen=True)
class NothingQuantized:
    """QL506: the quantizer annotates none of the model's compute ops."""

    model: str
    quantizer: str
    compute_ops: int
    compute_op_types: tuple[tuple[str, int], ...]  # (op type, count), most frequent first
    causes: tuple[Cause, ...]  # empty when qlint cannot tell why
    span: Span  # the line of the checked file that builds the model


def nothing_quantized(graph: PT2EGraph) -> NothingQuantized | None:
    """The QL506 fact, or None when some compute op is annotated (or the model has none)."""
    compute = graph.compute_ops()
    if not compute or any(n.annotated for n in compute):
        return None
    causes: list[Cause] = []
    if graph.prepare_error is not None:
        message = f"`prepare_pt2e` raises {graph.prepare_error}"
        reused = reused_modules(graph)
        if reused and "more than one output node" in graph.prepare_error:
            names = ", ".join(f"`{r.module}`" for r in reused[:3]) + (", ..." if len(reused) > 3 else "")
            message += (
                f": the quantizer's fusion patterns fail on modules called more than once ({names}); "
                "export with `strict=True` or give each call its own module"
            )
        causes.append(Cause("prepare-failed", message))
    under_grad = [n for n in compute if not n.grad_enabled]
    if under_grad:
        span, related = graph.locate(under_grad[0])
        causes.append(
            Cause(
                "grad-mode",
                f"{len(under_grad)} of the {len(compute)} compute ops run with grad disabled inside `forward` "
                "(`torch.no_grad()`): export puts them in a sub-graph the quantizer never annotates",
                span,
                related,
            )
        )
    if not has_config(graph.quantizer):
        causes.append(Cause("no-config", "the quantizer has no config: `set_global(...)` was never called"))
    if graph.unmatched_module_configs:
        names = ", ".join(f"`{n}`" for n in graph.unmatched_module_configs)
        message = f"the quantizer's module-name configs match no module of the model: {names}"
        causes.append(Cause("unmatched-module-config", message))
    rest = [n for n in compute if n.grad_enabled]
    if rest and graph.prepare_error is None:
        if all(n.float_reason == EXCLUDED for n in rest):
            causes.append(Cause("excluded-by-config", "the quantizer config excludes every compute op"))
        elif all(n.float_reason == NO_PATTERN for n in rest) and not not has_config(graph.quantizer):
            kinds = ", ".join(sorted({f"`{n.op_type}`" for n in rest}))
            causes.append(Cause("no-supported-op", f"the quantizer has no annotation pattern for {kinds}"))
    return NothingQuantized(
        graph.spec.name,
        graph.quantizer_name,
        len(compute),
        tuple(Counter(n.op_type for n in compute).most_common()),
        tuple(causes),
        graph.build_span,
    )


# ---- QL507 op-left-float -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpsLeftFloat:
    """QL507: float ops between quantized neighbours (a dequantize -> op -> quantize round trip), per source line."""

    span: Span
    related: tuple[Related, ...]  # library lines (e.g. torchvision) where the ops are, at most MAX_RELATED
    ops: tuple[tuple[str, int], ...]  # (op type, count), most frequent first
    count: int
    modules: tuple[str, ...]  # module paths, in graph order
    reasons: tuple[tuple[str, int], ...]  # (reason text, count)
    nodes: tuple[str, ...]


def ops_left_float(graph: PT2EGraph, include_noops: bool = False) -> list[OpsLeftFloat]:
    """One fact per source line of the checked file with float ops between quantized ones.

    ``include_noops`` also counts views, reshapes and eval-mode dropout (no arithmetic).
    """
    groups: dict[tuple, list[tuple[PT2ENode, Span, tuple[Related, ...]]]] = defaultdict(list)
    for node in graph.tensor_ops():
        if node.between_quantized and (include_noops or not node.is_noop):
            span, related = graph.locate(node)
            groups[(span.path, span.line)].append((node, span, related))
    out = []
    for items in groups.values():
        nodes = [n for n, _, _ in items]
        related: list[Related] = []
        for _, _, rel in items:
            for r in rel:
                if r not in related and len(related) < MAX_RELATED:
                    related.append(r)
        out.append(
            OpsLeftFloat(
                span=items[0][1],
                related=tuple(related),
                ops=tuple(Counter(n.op_type for n in nodes).most_common()),
                count=len(nodes),
                modules=tuple(dict.fromkeys(n.module for n in nodes if n.module is not None)),
                reasons=tuple(Counter(n.reason_text for n in nodes).most_common()),
                nodes=tuple(n.name for n in nodes),
            )
        )
    return sorted(out, key=lambda f: (f.span.path, f.span.line, f.span.col))


# ---- QL508 export-failed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFailed:
    """QL508: ``torch.export`` stopped; where, why in plain words, and which submodules were checked instead."""

    model: str
    kind: str  # data-dependent / inference-mode / unsupported-python / no-example-input / other
    reason: str
    torch_message: str
    span: Span
    related: tuple[Related, ...]
    checked_submodules: tuple[str, ...]


def export_failed(
    failure: ExportFailure,
    spec: ModelSpec,
    checked: tuple[str, ...] | None = None,
    submodules: list[Exported] | tuple[Exported, ...] = (),
    build_span: Span | None = None,
) -> ExportFailed:
    """The QL508 fact: at the checked file's line where export stopped (else ``build_span`` / the spec)."""
    span, related = failure.location(checked or (spec.path,), build_span or spec.span)
    return ExportFailed(
        spec.name,
        failure.kind,
        failure.reason,
        failure.torch_message,
        span,
        related,
        tuple(s.prefix for s in submodules),
    )


# ---- QL510 export-in-train-mode ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainModeOp:
    """QL510: a batch_norm / dropout captured with ``training=True``."""

    name: str
    op_type: str
    module: str | None
    module_type: str | None
    span: Span
    related: tuple[Related, ...]


def train_mode_nodes(graph: PT2EGraph) -> list[TrainModeOp]:
    """Ops exported in training mode, read on the graph as exported (before prepare folds batch norms);
    none for a QAT graph (``prepare_qat_pt2e`` wants the training-mode capture)."""
    out: list[TrainModeOp] = []
    if graph.qat:
        return out
    for node in graph.pre_prepare.values():
        if node.training:
            span, related = graph.locate(node)
            out.append(TrainModeOp(node.name, node.op_type, node.module, node.module_type, span, related))
    return out


# ---- QL504 grad-mode-in-forward (graph half) ---------------------------------------------------------


@dataclass(frozen=True)
class GradModeRegion:
    """QL504: ops that run with grad disabled inside the exported ``forward`` (never annotated)."""

    region: str
    module: str | None  # the module whose forward holds the region (common prefix of its ops)
    ops: tuple[tuple[str, int], ...]  # (op type, count), non-noop tensor ops
    compute_ops: int
    span: Span  # where its first op points (the catalog's pointing rule)
    related: tuple[Related, ...]
    lines: tuple[int, ...]  # lines of the checked files that call its ops (inside the grad-disabled code)


def grad_mode_regions(graph: PT2EGraph) -> list[GradModeRegion]:
    """Grad-disabled regions with at least one tensor op."""
    out = []
    for region in graph.regions:
        if region.enabled:
            continue
        nodes = [graph.node(n) for n in region.nodes if graph.node(n).is_tensor_op]
        if not nodes:
            continue
        located = [graph.locate(n) for n in nodes]
        real = [n for n in nodes if not n.is_noop] or nodes
        out.append(
            GradModeRegion(
                region.name,
                _common_module([n.module for n in nodes if n.module is not None]),
                tuple(Counter(n.op_type for n in real).most_common()),
                sum(n.is_compute for n in nodes),
                located[0][0],
                located[0][1],
                tuple(sorted({f.line for n in nodes for f in _checked_frame(graph, n)})),
            )
        )
    return out


def _checked_frame(graph: PT2EGraph, node: PT2ENode) -> tuple:
    """The innermost frame of ``node`` in a checked file, as a 0- or 1-tuple."""
    checked = {os.path.abspath(p) for p in graph.checked}
    return tuple(f for f in node.frames if f.path in checked)[:1]


def _common_module(paths: list[str]) -> str | None:
    if not paths:
        return None
    parts = [p.split(".") if p else [] for p in paths]
    common = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return ".".join(common)


# ---- reused modules (what makes the x86 quantizer's fusion patterns fail, ao#4480) --------------


@dataclass(frozen=True)
class ReusedModule:
    """A module called more than once in the exported forward (export names its later calls ``@1``, ``@2``...)."""

    module: str
    module_type: str | None
    calls: int
    span: Span  # where its second call points
    related: tuple[Related, ...]


def reused_modules(graph: PT2EGraph) -> list[ReusedModule]:
    """Modules with more than one call: their fusion patterns can break or be skipped under non-strict export."""
    calls: dict[str, list[PT2ENode]] = defaultdict(list)
    for node in graph.tensor_ops():
        if node.module is not None:
            calls[node.module].append(node)
    out = []
    for module, nodes in calls.items():
        count = max(n.call_index for n in nodes) + 1
        if count > 1:
            second = next(n for n in nodes if n.call_index == 1)
            span, related = graph.locate(second)
            out.append(ReusedModule(module, nodes[0].module_type, count, span, related))
    return out


# ---- --statistics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatGroup:
    """Ops left float sharing an op type (or a module)."""

    key: str  # op type, or module path
    module_type: str | None  # for module groups
    count: int
    between: int  # how many of them sit between quantized ops (a dequantize/quantize round trip)
    reasons: tuple[tuple[str, int], ...]  # (reason text, count)


@dataclass(frozen=True)
class Statistics:
    """What the quantizer covers in one model: the answer to "which ops stayed float, and why?"."""

    model: str
    quantizer: str
    ops: int  # tensor ops with arithmetic (views, reshapes and eval dropout not counted)
    annotated: int
    compute_ops: int
    compute_annotated: int
    compute_by_op: tuple[tuple[str, int, int], ...]  # (op type, total, annotated)
    left_float: int
    left_float_between: int
    left_float_by_op: tuple[FloatGroup, ...]
    left_float_by_module: tuple[FloatGroup, ...]
    prepare_error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def statistics(graph: PT2EGraph, include_noops: bool = False) -> Statistics:
    """Per model: compute ops, how many annotated, and the float ops by op type and by module, with reasons."""
    ops = [n for n in graph.tensor_ops() if include_noops or not n.is_noop]
    compute = [n for n in ops if n.is_compute]
    floats = [n for n in ops if not n.annotated]
    by_compute: dict[str, list[int]] = {}
    for n in compute:
        entry = by_compute.setdefault(n.op_type, [0, 0])
        entry[0] += 1
        entry[1] += n.annotated
    return Statistics(
        model=f"{graph.spec.name}:{graph.prefix}" if graph.prefix else graph.spec.name,
        quantizer=graph.quantizer_name,
        ops=len(ops),
        annotated=sum(n.annotated for n in ops),
        compute_ops=len(compute),
        compute_annotated=sum(n.annotated for n in compute),
        compute_by_op=tuple((k, v[0], v[1]) for k, v in sorted(by_compute.items(), key=lambda kv: -kv[1][0])),
        left_float=len(floats),
        left_float_between=sum(n.between_quantized for n in floats),
        left_float_by_op=_groups(floats, lambda n: n.op_type, lambda n: None),
        left_float_by_module=_groups(floats, lambda n: n.module or "", lambda n: n.module_type),
        prepare_error=graph.prepare_error,
    )


def _groups(nodes: list[PT2ENode], key, module_type) -> tuple[FloatGroup, ...]:
    grouped: dict[str, list[PT2ENode]] = defaultdict(list)
    for n in nodes:
        grouped[key(n)].append(n)
    out = [
        FloatGroup(
            k,
            module_type(items[0]),
            len(items),
            sum(n.between_quantized for n in items),
            tuple(Counter(REASON_TEXT.get(n.float_reason or "", "") for n in items).most_common()),
        )
        for k, items in grouped.items()
    ]
    return tuple(sorted(out, key=lambda g: -g.count))


def render_statistics(stats: Statistics, max_modules: int = 12) -> str:
    """A plain-text table of ``stats`` (what ``--statistics`` prints per model)."""
    lines = [
        f"{stats.model} ({stats.quantizer}): {stats.compute_annotated}/{stats.compute_ops} compute ops annotated, "
        f"{stats.annotated}/{stats.ops} ops; {stats.left_float} left float "
        f"({stats.left_float_between} between quantized ops)",
    ]
    if stats.prepare_error:
        lines.append(f"  prepare_pt2e raises {stats.prepare_error}")
    if stats.compute_by_op:
        lines.append("  compute ops: " + ", ".join(f"{op} {a}/{t}" for op, t, a in stats.compute_by_op))
    if stats.left_float_by_op:
        lines.append("  left float, by op:")
        for g in stats.left_float_by_op:
            reasons = "; ".join(f"{r} ({c})" if len(g.reasons) > 1 else r for r, c in g.reasons)
            lines.append(f"    {g.key:<28} {g.count:>4}  between {g.between:>4}  {reasons}")
    if stats.left_float_by_module:
        lines.append("  left float, by module:")
        for g in stats.left_float_by_module[:max_modules]:
            kind = (g.module_type or "").rpartition(".")[2]
            lines.append(f"    {g.key or '(root)':<40} {kind:<20} {g.count:>4}")
        if len(stats.left_float_by_module) > max_modules:
            lines.append(f"    ... {len(stats.left_float_by_module) - max_modules} more modules")
    return "\n".join(lines)
