"""PT2E graph rules: what the quantizer does with the exported model. Each queries the one analysis of
``qlint.model.pt2e_check`` (export on meta, ``prepare_pt2e`` with the chosen quantizer) through the
typed facts of ``qlint.model.pt2e_facts``: ops under grad-disabled mode (QL504), nothing quantized
(QL506), float ops between quantized ones (QL507), export failures (QL508), ops captured in training
mode (QL510).

QL504 and QL510 also have a source half, read from the file's ``qlint.source.pt2e_flow`` facts (so
they report with ``--no-graph`` and when the model cannot be built); where both halves report a line,
the engine keeps the graph half's finding.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import lru_cache

from qlint.config import Settings
from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related, Severity, Span
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
from qlint.source.pt2e_flow import PT2E as PT2E_FLOW
from qlint.source.pt2e_flow import flow_of, grad_disabled_forwards, pt2e_intent

PT2E = ("--flow", "pt2e")


MAX_OPS = 6  # op types named in a message; the rest are counted


def _counts(pairs: tuple[tuple[str, int], ...]) -> str:
    named = ", ".join(f"`{op}`" + (f" x{n}" if n > 1 else "") for op, n in pairs[:MAX_OPS])
    rest = len(pairs) - MAX_OPS
    return named + (f" and {rest} more op type{'s' if rest > 1 else ''}" if rest > 0 else "")


def _model_name(graph) -> str:
    return f"{graph.spec.name}:{graph.prefix}" if graph.prefix else graph.spec.name


class GradModeInForward(Rule):
    """## What it does
    Reports `torch.no_grad()`, `@torch.no_grad()`, `torch.set_grad_enabled(False)` or
    `torch.inference_mode()` on or inside a `forward` that is exported for PT2E quantization, at
    the decorator, `with` or call line.

    Two halves, one finding per line: the source half reads the file (a `forward` of a class in a
    file checked with the PT2E flow: it calls `prepare_pt2e` / `prepare_qat_pt2e`, or `--flow
    pt2e`), so it also reports with `--no-graph` and when the model cannot be built; the graph
    half reads the exported graph, names the ops that run under it, and also finds grad-disabled
    code in helpers and submodules. Where both report a line, the graph half's finding is kept.

    ## Why is this bad?
    `torch.export` captures a grad-disabled region as a `wrap_with_set_grad_enabled` sub-graph,
    and PT2E quantizers never look inside it: `prepare_pt2e` inserts no observer there,
    `convert_pt2e` no quantize op, and the ops stay float. No error, no warning: with the whole
    `forward` under `@torch.no_grad()` the "int8" model is the float model
    (pytorch/executorch#22069).

    ## Fix safety
    No automatic fix: move `torch.no_grad()` out of `forward`, into the caller (calibration and
    inference loops run under it anyway).

    ## References
    - [pytorch/executorch#22069](https://github.com/pytorch/executorch/issues/22069)
    - [torch.export: control flow and higher-order ops](https://pytorch.org/docs/stable/export.html)
    """

    code = "QL504"
    name = "grad-mode-in-forward"
    severity = Severity.ERROR
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE, Basis.GRAPH)
    triggers = ("no_grad", "set_grad_enabled", "inference_mode")
    reads_settings = True  # --flow pt2e
    summary = "`torch.no_grad()` on or inside an exported `forward`: the quantizer never annotates the ops under it"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    @torch.no_grad()
    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
""",
            lines=(11,),
            args=PT2E,
        ),
        Invalid(
            """\
import torch
import torch.nn as nn
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            x = self.conv(x)
        return self.fc(x.mean((2, 3)))


def quantize(model, quantizer):
    exported = torch.export.export(model.eval(), (torch.randn(1, 3, 8, 8),)).module()
    return prepare_pt2e(exported, quantizer)
""",
            lines=(13,),
            args=("--no-graph",),
        ),
        Valid(
            """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
""",
            args=PT2E,
        ),
    )

    def check_source(self, index, settings: Settings | None = None) -> Iterator[Diagnostic]:
        text = index.source.text
        if flow_of(text, settings.flow if settings is not None else None) != PT2E_FLOW:
            return
        for site in grad_disabled_forwards(text):
            effect = (
                "export captures what runs under it as grad-disabled code (a `wrap_with_set_grad_enabled` "
                "sub-graph) that the quantizer never annotates, so those ops stay float"
            )
            yield Diagnostic(
                self.code,
                f"`{site.written}` {'on' if site.written.startswith('@') else 'in'} `{site.cls}.forward`, a module this file quantizes with PT2E: {effect}; "
                "move it out of `forward`, into the caller",
                Span(index.path, site.line, site.col),
            )

    def check_pt2e(self, model) -> Iterator[Diagnostic]:
        from qlint.model.pt2e_facts import grad_mode_regions

        # regions of one decorator or `with` (e.g. a submodule's call and the root's own ops under
        # `@torch.no_grad()`) are one finding at its line
        sites: dict[tuple[str, int], list] = {}
        for graph in model.graphs:
            for region in grad_mode_regions(graph):
                span = region.span
                site = _grad_site(span.path, region.lines[0]) if region.lines else None
                related = region.related
                if site is not None:
                    note = (
                        "first op under it"
                        if span.line in region.lines
                        else "first op under it: its module, built here"
                    )
                    related = (*related, Related(span, note))[:4] if site[0] != span.line else related
                    span = Span(span.path, site[0], site[1])
                sites.setdefault((span.path, span.line), []).append((graph, region, span, related))
        for found in sites.values():
            graph, region, span, _ = found[0]
            ops: dict[str, int] = {}
            for _, r, _, _ in found:
                for op, n in r.ops:
                    ops[op] = ops.get(op, 0) + n
            ranked = tuple(sorted(ops.items(), key=lambda kv: -kv[1]))
            total = sum(ops.values())
            compute = sum(r.compute_ops for _, r, _, _ in found)
            modules = list(dict.fromkeys(r.module or _model_name(g) for g, r, _, _ in found))
            where = ", ".join(f"`{m}`" for m in modules)
            related = tuple(dict.fromkeys(rel for *_, rels in found for rel in rels))[:4]
            yield Diagnostic(
                self.code,
                f"{total} op{'s' if total > 1 else ''}{f' ({compute} compute)' if compute else ''} of {where} run "
                f"with grad disabled inside `forward` ({_counts(ranked[:4])}): export captures them in a "
                "`wrap_with_set_grad_enabled` sub-graph the quantizer never annotates, so they stay float; move "
                f"`{_written_at(span.path, span.line)}` out of `forward`, into the caller",
                span,
                related=related,
                model=graph.spec.name,
                module=region.module if len(found) == 1 else None,
            )


def _written_at(path: str, line: int) -> str:
    """The grad-disabling code at ``line`` as the file writes it (``torch.no_grad()`` when unknown)."""
    try:
        with open(path, encoding="utf-8") as handle:
            sites = grad_disabled_forwards(handle.read())
    except (OSError, UnicodeDecodeError):
        sites = ()
    written = next((site.written for site in sites if site.line == line), "torch.no_grad()")
    return written.removeprefix("@").removeprefix("with ")


_GRAD_CALLS = ("no_grad", "set_grad_enabled", "inference_mode", "enable_grad")


def _grad_site(path: str, line: int) -> tuple[int, int] | None:
    """The line of the ``with torch.no_grad():`` around ``line``, else of the grad decorator on the
    function holding it (read with ast from the checked file)."""
    return _grad_sites(path).get(line)


@lru_cache(maxsize=32)
def _grad_sites(path: str) -> dict[int, tuple[int, int]]:
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return {}

    def is_grad(expr: ast.expr) -> bool:
        call = expr.func if isinstance(expr, ast.Call) else expr
        name = call.attr if isinstance(call, ast.Attribute) else getattr(call, "id", "")
        return name in _GRAD_CALLS

    sites: dict[int, tuple[int, int]] = {}

    def mark(node: ast.AST, site: tuple[int, int]) -> None:
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            sites.setdefault(line, site)

    # innermost first: with-statements, then the functions' decorators
    for node in sorted(ast.walk(tree), key=lambda n: -getattr(n, "lineno", 0)):
        if isinstance(node, ast.With) and any(is_grad(item.context_expr) for item in node.items):
            mark(node, (node.lineno, node.col_offset + 1))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorator = next((d for d in node.decorator_list if is_grad(d)), None)
            if decorator is not None:
                mark(node, (decorator.lineno, decorator.col_offset))  # at the "@"
    return sites


class NothingQuantized(Rule):
    """## What it does
    Reports a model whose compute ops (conv, linear, matmul, ...) the quantizer annotates none
    of, at the line that builds the model, with the cause where qlint knows it: `prepare_pt2e`
    raises (e.g. a module called twice under non-strict export), the ops run under
    `torch.no_grad()` inside `forward`, the quantizer has no config, its module-name configs
    match no module, or it has no pattern for any of the model's ops.

    The quantizer asked is `--quantizer` (or `quantizer` in `[tool.qlint]`), else the one the
    file builds, else the host's default (x86).

    ## Why is this bad?
    `prepare_pt2e` and `convert_pt2e` run without complaint and the "int8" model is the float
    model: no smaller, no faster, and nothing says so (pytorch/ao#3914, pytorch/pytorch#174457
    "Found 0 partitions").

    ## Fix safety
    No automatic fix: the remedy depends on the cause the message names.

    ## References
    - [pytorch/ao#3914](https://github.com/pytorch/ao/issues/3914)
    - [PT2E quantization (torchao)](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_ptq.html)
    """

    code = "QL506"
    name = "nothing-quantized"
    severity = Severity.ERROR
    flows = (Flow.PT2E,)
    basis = (Basis.GRAPH,)
    summary = "the quantizer annotates none of the model's compute ops: the int8 model is the float model"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            return self.fc(self.conv(x).mean((2, 3)))
""",
            lines=(5,),
            args=PT2E,
        ),
        Valid(
            """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
""",
            args=PT2E,
        ),
    )

    def check_pt2e(self, model) -> Iterator[Diagnostic]:
        from qlint.model.pt2e_facts import nothing_quantized

        for graph in model.graphs:
            fact = nothing_quantized(graph)
            if fact is None:
                continue
            why = "; ".join(c.message for c in fact.causes) or "qlint cannot tell why"
            related = tuple(Related(c.span, f"cause ({c.kind})") for c in fact.causes if c.span is not None)
            yield Diagnostic(
                self.code,
                f"the {fact.quantizer} quantizer annotates none of the {fact.compute_ops} compute ops of "
                f"`{_model_name(graph)}` ({_counts(fact.compute_op_types[:4])}): prepare and convert run, and the "
                f"int8 model is the float model; {why}",
                fact.span,
                related=related,
                model=graph.spec.name,
            )


class OpLeftFloat(Rule):
    """## What it does
    Reports, once per source line, the ops the quantizer leaves float between quantized
    neighbours, naming each op and how many, and why (no annotation pattern in this quantizer,
    input from a float region, excluded by the quantizer config). Ops of a library model
    (torchvision) are reported at the line that builds the model, the library lines in
    `related`. `--statistics` prints the whole picture per model.

    ## Why is this bad?
    Each one costs a dequantize -> float op -> quantize round trip after `convert_pt2e`
    (e.g. the `hardsigmoid` and `mul` of mobilenet_v3's squeeze-excitation blocks under
    `X86InductorQuantizer`): time, and the accuracy of a re-quantization. Often it is expected;
    often it is the layer that makes int8 slower or worse than it should be.

    ## Fix safety
    No automatic fix. Rewrite the op with one the quantizer covers, give it a config
    (`set_module_name` / `set_module_type`), or accept it.

    ## References
    - [pytorch/executorch#21943](https://github.com/pytorch/executorch/issues/21943)
    - [X86InductorQuantizer](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_x86_inductor.html)
    """

    code = "QL507"
    name = "op-left-float"
    severity = Severity.INFO
    flows = (Flow.PT2E,)
    basis = (Basis.GRAPH,)
    summary = "an op between quantized neighbours that the quantizer leaves float (a dequantize/quantize round trip)"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv1(x)
        x = torch.sigmoid(x)
        return self.conv2(x)
""",
            lines=(13,),
            args=PT2E,
        ),
        Valid(
            """\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        return self.conv2(x)
""",
            args=PT2E,
        ),
    )

    def check_pt2e(self, model) -> Iterator[Diagnostic]:
        from qlint.model.pt2e_facts import ops_left_float

        for graph in model.graphs:
            for fact in ops_left_float(graph):
                yield Diagnostic(
                    self.code,
                    f"{_counts(fact.ops)} {'stays' if fact.count == 1 else 'stay'} float between quantized ops under the {graph.quantizer_name} "
                    f"quantizer (a dequantize -> float -> quantize round trip each): {_why(graph, fact)}; "
                    "`--statistics` lists the float ops by op type and module",
                    fact.span,
                    related=fact.related,
                    model=graph.spec.name,
                    module=fact.modules[0] if len(fact.modules) == 1 else None,
                )


def _why(graph, fact) -> str:
    """Each reason with the ops it applies to: "`hardsigmoid` x8: no annotation pattern in this quantizer"."""
    by_reason: dict[str, dict[str, int]] = {}
    for name in fact.nodes:
        node = graph.node(name)
        ops = by_reason.setdefault(node.reason_text or "unknown", {})
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    ranked = sorted(by_reason.items(), key=lambda item: -sum(item[1].values()))
    parts = [f"{_counts(tuple(sorted(ops.items(), key=lambda kv: -kv[1])))}: {reason}" for reason, ops in ranked]
    return parts[0].split(": ", 1)[1] if len(parts) == 1 else "; ".join(parts)


_REMEDIES = {
    "data-dependent": "use `torch.cond` for the branch, `torch._check` on the value, or move the branch out of "
    "`forward`",
    "inference-mode": "call the model under `torch.inference_mode()` instead of using it inside `forward`",
    "unsupported-python": "write the line with torch ops, or export with `strict=False`",
}


class ExportFailed(Rule):
    """## What it does
    Reports a model `torch.export.export` cannot capture, at the line of the checked file where
    export stopped, with torch's reason in plain words and the usual remedy. The PT2E rules then
    check the model's largest exportable submodules (the message names them).

    ## Why is this bad?
    PT2E quantization starts with `torch.export`: a model it cannot capture cannot be quantized
    this way at all. The usual causes are a Python branch on a tensor's values
    (`if x.sum() > 0`), `.item()` / `.tolist()` / `nonzero()` deciding a shape, or Python that
    export cannot trace.

    ## Fix safety
    No automatic fix: `torch.cond`, `torch._check`, hoisting the branch out of `forward`, or
    `strict=False` depend on what the code means.

    ## References
    - [torch.export: data-dependent control flow](https://pytorch.org/docs/stable/export.html)
    - [torch.cond](https://pytorch.org/docs/stable/generated/torch.cond.html)
    """

    code = "QL508"
    name = "export-failed"
    severity = Severity.WARNING
    flows = (Flow.PT2E,)
    basis = (Basis.GRAPH,)
    summary = "`torch.export` cannot capture the model; the largest exportable submodules are checked instead"
    examples = (
        Invalid(
            """\
import torch.nn as nn


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.features(x)
        if x.mean() > 0:
            x = x * 2
        return self.fc(x.mean((2, 3)))
""",
            lines=(12,),
            args=PT2E,
        ),
        Valid(
            """\
import torch
import torch.nn as nn


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.features(x)
        x = torch.where(x.mean() > 0, x * 2, x)
        return self.fc(x.mean((2, 3)))
""",
            args=PT2E,
        ),
    )

    def check_pt2e(self, model) -> Iterator[Diagnostic]:
        fact = model.export_failure
        if fact is None:
            return
        remedy = _REMEDIES.get(fact.kind)
        subs = ", ".join(f"`{s}`" for s in fact.checked_submodules) or "none exports"
        yield Diagnostic(
            self.code,
            f"`torch.export` cannot capture `{fact.model}`: {fact.reason}"
            + (f"; {remedy}" if remedy else "")
            + f"; the PT2E rules check its exportable submodules instead ({subs})",
            fact.span,
            related=fact.related,
            model=fact.model,
        )


class ExportInTrainMode(Rule):
    """## What it does
    Reports a file that exports a model for post-training quantization (`prepare_pt2e`, or
    `--flow pt2e`; not `prepare_qat_pt2e`) without putting it in eval mode first: the model
    handed to `torch.export.export` is never put in eval mode (`model.eval()`, `Net().eval()`),
    or is passed as `model.train()`.

    Two halves: the source half reports the export call (also with `--no-graph` and when the
    model cannot be built); the graph half exports the model the way the file does and reports
    each batch norm and dropout captured in training mode (`training=True` nodes in the exported
    graph), at the line of its module.

    ## Why is this bad?
    Export bakes the mode into the graph: batch norm keeps normalizing with the batch's
    statistics and dropout keeps dropping, through calibration and after `convert_pt2e`, and
    `.eval()` on the exported module does not change it (QL501). The int8 model's accuracy
    suffers, without an error.

    ## Fix safety
    Safe: `model.eval()` is inserted before the statement that exports `model` (on the export
    call's finding; not when the model is written `model.train()` or the call shares its line
    with another statement). Use `prepare_qat_pt2e` instead if training-mode capture is meant.

    ## References
    - [pytorch/pytorch#151726](https://github.com/pytorch/pytorch/issues/151726)
    - [PT2E quantization (torchao)](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_ptq.html)
    """

    code = "QL510"
    name = "export-in-train-mode"
    severity = Severity.WARNING
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE, Basis.GRAPH)
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe, `model.eval()` before the export"
    triggers = ("export",)
    reads_settings = True  # --flow pt2e
    summary = "a model exported for post-training quantization in training mode (batch norm and dropout as in training)"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def build():
    return Net()


if __name__ == "__main__":
    model = build()
    exported = torch.export.export(model, (torch.randn(1, 3, 8, 8),)).module()
""",
            lines=(9, 22),
            args=PT2E,
            fixed="""\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def build():
    return Net()


if __name__ == "__main__":
    model = build()
    model.eval()
    exported = torch.export.export(model, (torch.randn(1, 3, 8, 8),)).module()
""",
        ),
        Valid(
            """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def build():
    return Net()


if __name__ == "__main__":
    model = build().eval()
    exported = torch.export.export(model, (torch.randn(1, 3, 8, 8),)).module()
""",
            args=PT2E,
        ),
    )

    def check_source(self, index, settings: Settings | None = None) -> Iterator[Diagnostic]:
        text = index.source.text
        if flow_of(text, settings.flow if settings is not None else None) != PT2E_FLOW:
            return
        for export in pt2e_intent(text).train_mode_exports:
            fix = None
            if export.statement_line is not None:
                edit = Edit(
                    f"{export.indent}{export.model}.eval()\n", (export.statement_line, 1), (export.statement_line, 1)
                )
                fix = Fix(Applicability.SAFE, f"Call `{export.model}.eval()` before the export", (edit,))
            yield Diagnostic(
                self.code,
                f"`{export.model}` is exported for post-training quantization in training mode (nothing in the "
                "file puts it in eval mode): batch norm and dropout are captured as in training and stay so "
                f"through calibration and convert; call `{export.model}.eval()` before `torch.export.export`",
                Span(index.path, export.line, export.col, export.end_line, export.end_col),
                data=EditsFound(fix),
            )

    def fix(self, ctx, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)

    def check_pt2e(self, model) -> Iterator[Diagnostic]:
        from qlint.model.pt2e_facts import train_mode_nodes

        for graph in model.graphs:
            for fact in train_mode_nodes(graph):
                kind = (fact.module_type or "").rpartition(".")[2] or fact.op_type
                yield Diagnostic(
                    self.code,
                    f"`{fact.op_type}` of `{fact.module or _model_name(graph)}` ({kind}) is captured in training "
                    "mode: the file exports the model for post-training quantization without `model.eval()`, "
                    "and the exported graph keeps training behaviour through calibration and convert; call "
                    "`model.eval()` before `torch.export.export`",
                    fact.span,
                    related=fact.related,
                    model=graph.spec.name,
                    module=fact.module,
                )
