"""The PT2E graph path of ``qlint check``: build each root model on meta, export it, annotate it with
the chosen quantizer. The QL5xx graph rules query the result (one analysis, many queries).

The export follows the file: ``strict=True`` when the file exports strictly, training mode when the
file exports a model it never puts in eval mode (QL510). When the whole model does not export, the
QL508 fact says where and why, and the largest exportable submodules are annotated instead (as
QL002 does for tracing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qlint.config import Settings
from qlint.diagnostics import Diagnostic, Span
from qlint.model import export, loader
from qlint.model.pt2e import PT2EGraph, annotate
from qlint.model.pt2e_facts import ExportFailed, Statistics, export_failed, statistics
from qlint.model.pt2e_quantizer import Pt2eUnavailable, quantizer_for, quantizer_name_for
from qlint.source.file import SourceFile
from qlint.source.pt2e_flow import pt2e_intent

_QLINTS_INPUT = (export.NO_EXAMPLE_INPUT, export.INPUT_MISMATCH)


@dataclass
class Pt2eModel:
    """A root model of the file on the PT2E path: its annotated graphs (the root's, or its largest
    exportable submodules' when the root does not export) and why the root did not export."""

    spec: loader.ModelSpec
    quantizer: str
    graphs: list[PT2EGraph] = field(default_factory=list)
    export_failure: ExportFailed | None = None


def load_pt2e_models(
    source: SourceFile, settings: Settings, checked: tuple[str, ...]
) -> tuple[list[Pt2eModel], list[Diagnostic]]:
    """Build, export and annotate the file's root models once; QL001 for what could not be built or
    exported for a reason of qlint's (no example input)."""
    intent = pt2e_intent(source.text)
    name = quantizer_name_for(source.text, settings)
    try:
        # before the file imports it: a check never compiles, so inductor's passes are not registered
        quantizer = quantizer_for(name, for_compile=False, qat=intent.qat)
    except Pt2eUnavailable as exc:
        return [], [Diagnostic("QL001", f"qlint could not check the PT2E flow: {exc}", Span(source.path, 1, 1))]
    roots, found = loader.build_roots(source.path, settings, source, checked=checked)
    own = (source.path,)
    models = []
    for spec, model in roots:
        checked_model = Pt2eModel(spec, name)
        # a QAT file exports its model in training mode (prepare_qat_pt2e expects it)
        training = intent.qat or intent.export_in_train_mode
        options = {"strict": intent.strict, "training": training, "checked": own}
        result = export.export_on_meta(model, export.example_inputs(model, settings), **options)
        if isinstance(result, export.Exported):
            checked_model.graphs.append(annotate(result, quantizer, spec, own, qat=intent.qat))
        elif result.kind in _QLINTS_INPUT:
            found.append(
                Diagnostic(
                    "QL001",
                    f"qlint could not export `{spec.name}` for the PT2E checks: {result.reason}",
                    spec.span,
                    model=spec.name,
                )
            )
        else:
            subs = export.largest_exportable_submodules(model, settings, checked=own, **_no_checked(options))
            checked_model.graphs.extend(annotate(sub, quantizer, spec, own, qat=intent.qat) for sub in subs)
            checked_model.export_failure = export_failed(result, spec, own, subs, _build_span(model, spec))
        models.append(checked_model)
    return models, found


def coverage(models: list[Pt2eModel]) -> list[Statistics]:
    """``--statistics`` under PT2E: the coverage table of each annotated graph."""
    return [statistics(graph) for model in models for graph in model.graphs]


def _no_checked(options: dict) -> dict:
    return {k: v for k, v in options.items() if k != "checked"}


def _build_span(model, spec: loader.ModelSpec):
    from qlint.model import frames as fr

    span, _ = fr.locate(fr.construction_frames(model), [spec.path], spec.span)
    return span
