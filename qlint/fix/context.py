"""What fixers know about one file: its text (libcst) and, lazily, its models and their QGraphs.

The graph path rebuilds the file's models on the meta device (cheap next to the check that just
ran: torch's probes are cached) so a fixer can ask which inputs are float, what a module holds,
or which fusion chains are left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from qlint.config import Settings
from qlint.diagnostics import Diagnostic
from qlint.fix.source import FileText
from qlint.source.file import SourceFile


@dataclass
class ModelInfo:
    spec: object  # loader.ModelSpec
    model: object  # nn.Module
    graphs: list = field(default_factory=list)  # QGraph, the root's first when it traced

    @property
    def root_graph(self):
        return next((g for g in self.graphs if not g.prefix), None)


class FixContext:
    def __init__(self, source: SourceFile, settings: Settings | None = None, checked: tuple[str, ...] = ()):
        self.source = source
        self.settings = settings
        self.checked = checked or (source.path,)
        self.file = FileText(source.path, source.text)

    @property
    def path(self) -> str:
        return self.source.path

    @cached_property
    def models(self) -> list[ModelInfo]:
        """The file's root models with their QGraphs ([] when the file cannot be built)."""
        if self.settings is None or self.settings.no_graph or "torch" not in self.source.text:
            return []
        try:
            return _build_models(self.source, self.settings, self.checked)
        except Exception:  # noqa: BLE001 - no graph facts: graph fixes are simply not offered
            if os.environ.get("QLINT_DEBUG"):
                raise
            return []

    def model_for(self, diag: Diagnostic) -> ModelInfo | None:
        for info in self.models:
            if info.spec.name == diag.model:
                return info
        return self.models[0] if len(self.models) == 1 and diag.model is None else None

    def defined_here(self, cls: type) -> bool:
        """True when ``cls`` is defined in this file (so its source can be edited)."""
        import inspect

        try:
            path = inspect.getsourcefile(cls)
        except (TypeError, OSError):
            return False
        return bool(path) and os.path.abspath(path) == os.path.abspath(self.path)

    def class_node(self, cls: type):
        """The ClassDef of a class defined in this file."""
        import inspect

        if not self.defined_here(cls):
            return None
        try:
            line = inspect.getsourcelines(cls)[1]
        except (OSError, TypeError):
            line = None
        return self.file.class_named(cls.__name__, line)


def _build_models(source: SourceFile, settings: Settings, checked: tuple[str, ...]) -> list[ModelInfo]:
    from dataclasses import replace

    from qlint.config import ConfigError, parse_shape
    from qlint.model import loader
    from qlint.model.check import analyses

    pragmas = source.pragma_values("input-shape")
    if pragmas and not settings.input_shape_from_cli:
        try:
            settings = replace(settings, input_shape=parse_shape(pragmas[0].value))
        except ConfigError:
            pass
    with loader.quiet():
        specs, _, _ = loader.find_models(source.path, settings, source)
    built = []
    for spec in specs:
        try:
            built.append((spec, loader.build(spec)))
        except loader.UserCodeError:
            continue
    out = []
    for spec, model in loader.select_roots(built):
        out.append(ModelInfo(spec, model, analyses(spec, model, settings, checked, [])))
    return out
