"""The graph path of ``qlint check``: find, build, trace and analyse each root model of a file.

The engine runs the graph rules over the QGraphs built here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qlint.config import Settings
from qlint.diagnostics import Diagnostic
from qlint.model import frames as fr
from qlint.model import loader
from qlint.model.analysis import QGraph, analyze
from qlint.model.trace import TraceFailure
from qlint.source.file import SourceFile

MAX_SUBROOTS = 12


@dataclass(frozen=True)
class CheckedParts:
    """QL002's facts: the submodules the graph rules checked instead of the untraceable model (``emit`` quantizes
    each of them on its own)."""

    names: tuple[str, ...]


@dataclass
class CheckedModel:
    """A root model of the file with its QGraphs (the root's own first, when it traced)."""

    spec: loader.ModelSpec
    model: object  # nn.Module
    graphs: list[QGraph] = field(default_factory=list)

    @property
    def root_graph(self) -> QGraph | None:
        return next((g for g in self.graphs if not g.prefix), None)


def load_models(
    source: SourceFile, settings: Settings, checked: tuple[str, ...]
) -> tuple[list[CheckedModel], list[Diagnostic]]:
    """Build and analyse the file's root models once; QL001/QL002 for what could not be."""
    roots, found = loader.build_roots(source.path, settings, source, checked=checked)
    # findings are located in this file, whatever else the run checks: checking a folder gives the same
    # lines (and fixes) as checking its files one by one
    own = (source.path,)
    models = [CheckedModel(spec, model, analyses(spec, model, settings, own, found)) for spec, model in roots]
    from qlint.source.index import uses_fx_flow

    if uses_fx_flow(source):
        found += [_fx_untraceable(d) for d in found if d.code == "QL002"]
    return models, found


def _fx_untraceable(trace_failed: Diagnostic) -> Diagnostic:
    """QL207 where the QL002 trace stopped: ``prepare_fx`` traces the model the same way and fails there."""
    head = trace_failed.message.split("; graph rules check", 1)[0]
    return trace_failed.with_changes(
        code="QL207",
        message=f"{head}: `prepare_fx` traces the model the same way and fails here; make it traceable, "
        "`torch.fx.wrap` the function, or list the module in `set_non_traceable_module_names`",
    )


def analyses(spec, model, settings: Settings, checked: tuple[str, ...], found: list[Diagnostic]) -> list[QGraph]:
    """The QGraph of the model; if it cannot be traced, QL002 and the largest traceable submodules."""
    try:
        return [analyze(model, spec, settings, checked)]
    except TraceFailure as failure:
        subgraphs = _traceable_submodules(spec, model, settings, checked)
        names = ", ".join(f"`{q.prefix}`" for q in subgraphs) or "none"
        fallback = _build_span(model, spec)
        span, related = fr.locate(failure.frames, checked, fallback)
        found.append(
            Diagnostic(
                "QL002",
                f"torch.fx cannot trace `{spec.name}`: {loader.describe(failure.cause)}; "
                f"graph rules check its traceable submodules instead ({names})",
                span,
                related=related,
                model=spec.name,
                data=CheckedParts(tuple(q.prefix for q in subgraphs)),
            )
        )
        return subgraphs


def _build_span(model, spec):
    frames = fr.construction_frames(model)
    span, _ = fr.locate(frames, [spec.path], spec.span)
    return span


def _traceable_submodules(spec, model, settings: Settings, checked: tuple[str, ...]) -> list[QGraph]:
    """Breadth-first: the outermost submodules that trace, with input shapes seen in a meta run."""
    import torch.nn as nn

    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

    def worth_checking(module: nn.Module) -> bool:
        """A container, or a user/library module with weights (a lone torch layer has nothing to find)."""
        if isinstance(module, containers):
            return True
        has_weights = next(module.parameters(), None) is not None
        return has_weights and not type(module).__module__.startswith("torch.nn")

    inputs = _observed_inputs(model, settings)
    out: list[QGraph] = []
    queue = list(model.named_children())
    while queue and len(out) < MAX_SUBROOTS:
        name, module = queue.pop(0)
        if not worth_checking(module):
            continue
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            queue.extend((f"{name}.{n}", c) for n, c in module.named_children())
            continue
        shape, quantized = inputs.get(id(module), (None, False))
        sub_settings = settings if shape is None else replace(settings, input_shape=tuple(shape))
        try:
            qgraph = analyze(module, spec, sub_settings, checked, quantized_input=quantized)
        except TraceFailure:
            queue.extend((f"{name}.{n}", c) for n, c in module.named_children())
            continue
        qgraph.prefix, qgraph.checked_model = name, model
        out.append(qgraph)
    return out


def _observed_inputs(model, settings: Settings) -> dict[int, tuple[tuple[int, ...], bool]]:
    """Run the model eagerly on a meta input and record each submodule's first input: (its shape, whether it is
    quantized after ``convert``: it comes from a QuantStub, straight or through layers that keep it quantized, as
    in a ``QuantWrapper`` around a model whose own forward does not trace)."""
    import torch
    from torch.ao.quantization import DeQuantStub, QuantStub

    shape = settings.input_shape
    if shape is None:
        from qlint.model.trace import shape_for_first_layer

        shape = shape_for_first_layer(model.modules())
    if shape is None:
        return {}
    seen: dict[int, tuple[tuple[int, ...], bool]] = {}
    quantized: dict[int, torch.Tensor] = {}  # id -> the tensor (kept alive so that its id is not reused)
    dequantizes = {id(m) for m in model.modules() if any(isinstance(s, DeQuantStub) for s in m.modules())}

    def before(module, args):
        if args and isinstance(args[0], torch.Tensor) and id(module) not in seen:
            seen[id(module)] = (tuple(args[0].shape), id(args[0]) in quantized)

    def after(module, args, output):
        if not isinstance(output, torch.Tensor):
            return None
        if isinstance(module, QuantStub):
            output = output.view_as(output)  # a tensor of its own: it is quantized, the stub's input is not
            quantized[id(output)] = output
            return output
        if id(module) not in dequantizes and args and isinstance(args[0], torch.Tensor) and id(args[0]) in quantized:
            quantized[id(output)] = output
        return None

    handles = [m.register_forward_pre_hook(before) for m in model.modules()]
    handles += [m.register_forward_hook(after) for m in model.modules()]
    try:
        with loader.quiet(), torch.no_grad():
            model(torch.empty(shape, device="meta"))
    except Exception:  # noqa: BLE001 - the run stops somewhere (data-dependent ops); what it saw is enough
        pass
    finally:
        for handle in handles:
            handle.remove()
    return seen
