"""What fixers know about one file: its text (libcst) and its models with their QGraphs.

The models are the ones ``qlint check`` just built and analysed (handed over by the engine), so a
fixer can ask which inputs are float, what a module holds, or which fusion chains are left; only a
fixer called on its own (``compute_fix``) builds them.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from qlint.config import Settings
from qlint.diagnostics import Diagnostic
from qlint.fix.source import FileText
from qlint.source.file import SourceFile

if TYPE_CHECKING:
    from qlint.model.check import CheckedModel


class FixContext:
    def __init__(
        self,
        source: SourceFile,
        settings: Settings | None = None,
        checked: tuple[str, ...] = (),
        models: list[CheckedModel] | None = None,
    ):
        self.source = source
        self.settings = settings
        self.checked = checked or (source.path,)
        self.file = FileText(source.path, source.text)
        if models is not None:  # analysed by the check that produced the diagnostics
            self.__dict__["models"] = models

    @property
    def path(self) -> str:
        return self.source.path

    @cached_property
    def models(self) -> list[CheckedModel]:
        """The file's root models with their QGraphs ([] when the file cannot be built)."""
        if self.settings is None or self.settings.no_graph or "torch" not in self.source.text:
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
