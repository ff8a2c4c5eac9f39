"""One checked file as rules and fixes see it: its text, one parsed libcst tree, its models.

The tree is parsed once per text (``SourceIndex``) and shared by the source rules and the fixes; the
models are the ones ``qlint check`` built and analysed (handed over by the engine), built lazily
only when nobody did.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from qlint.config import Settings
from qlint.diagnostics import Diagnostic
from qlint.source.file import SourceFile

if TYPE_CHECKING:
    from qlint.model.check import CheckedModel
    from qlint.source.edit import FileText
    from qlint.source.index import SourceIndex


class FileContext:
    def __init__(
        self,
        source: SourceFile,
        settings: Settings | None = None,
        checked: tuple[str, ...] = (),
        models: list[CheckedModel] | None = None,
        diagnostics: tuple[Diagnostic, ...] = (),
    ):
        self.source = source
        self.settings = settings
        self.checked = checked or (source.path,)
        self.diagnostics = diagnostics  # the file's findings (a fix may read its rule's others)
        if models is not None:  # analysed by the check that produced the diagnostics
            self.__dict__["models"] = models

    @property
    def path(self) -> str:
        return self.source.path

    @cached_property
    def index(self) -> SourceIndex:
        """The file's SourceIndex (its one libcst parse)."""
        from qlint.source.index import index_of

        return index_of(self.source)

    @cached_property
    def file(self) -> FileText:
        """Edit builders over the same parsed tree."""
        from qlint.source.edit import FileText

        return FileText(self.source.path, self.source.text, self.index.wrapper)

    @cached_property
    def models(self) -> list[CheckedModel]:
        """The file's root models with their QGraphs ([] when the file cannot be built)."""
        if self.settings is None or self.settings.no_graph:
            return []
        from qlint.source.imports import worth_building

        if not worth_building(self.source, self.settings):
            return []
        try:
            from qlint.config import with_pragmas
            from qlint.model.check import load_models

            return load_models(self.source, with_pragmas(self.settings, self.source), self.checked)[0]
        except Exception:  # noqa: BLE001 - no graph facts: graph fixes are simply not offered
            if os.environ.get("QLINT_DEBUG"):
                raise
            return []

    def model_for(self, diag: Diagnostic) -> CheckedModel | None:
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

    def construction_call(self, module, direct: bool = False):
        """The call of this file that built ``module`` (its recorded construction frame), or None.

        ``direct``: only a call that constructs the module itself (``nn.ReLU6()``), not one that reaches
        its constructor through library code (``torchvision.models.mobilenet_v2()``).
        """
        import libcst as cst

        from qlint.model import frames as fr

        here = os.path.abspath(self.path)
        frames = fr.construction_frames(module)
        frame = next((f for f in frames if os.path.abspath(f.path) == here), None)
        if frame is None or (direct and frame is not frames[0]):
            return None
        span = fr.display_span(frame, self.path)
        found = [n for n in self.file.nodes_at(span, (cst.Call,)) if self.file.end(n) == span.end]
        return found[0] if found else None
