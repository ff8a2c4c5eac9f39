"""Everything ``qlint verify`` asks of the rest of qlint: settings, model loading, source spans, the
static check and the shape of diagnostics, in one place."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

import qlint.config as config
from qlint.config import Settings
from qlint.diagnostics import Diagnostic, Related, Span
from qlint.engine import enabled_codes, finalize
from qlint.model import frames as fr
from qlint.model import loader
from qlint.source.file import SourceFile, UnreadableFile


class BadInput(Exception):
    """Input qlint verify cannot work with (exit 2)."""


@dataclass
class Target:
    """One model to verify, built on the CPU; ``model`` is never mutated (construction frames stay valid)."""

    name: str
    path: str
    span: Span  # where the file defines or builds it
    model: nn.Module
    settings: Settings | None = None

    @property
    def checked(self) -> tuple[str, ...]:
        return (self.path,)


def load_settings(path: str, overrides: dict) -> Settings:
    try:
        return config.load_settings(path, overrides)
    except config.ConfigError as exc:
        raise BadInput(str(exc)) from exc


def load_targets(path: str, settings: Settings | None, exprs: Sequence[str] = ()) -> list[Target]:
    """The root models of ``path`` (pragmas, config, ``--model``, discovery), built on the CPU."""
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such file")
    settings = settings or Settings.default()
    if exprs:
        settings = replace(settings, model_exprs=tuple(exprs))
    roots, diags = loader.build_roots(path, settings, device="cpu")
    if diags and not roots:
        raise BadInput("; ".join(f"{d.span}: {d.code} {d.message}" for d in diags))
    if not roots:
        raise BadInput(f"{path}: no model found; add a `# qlint: model = Net()` comment or pass --model EXPR")
    return [
        Target(spec.name, path, construction_span(model, [spec.path], spec.span)[0], model, settings)
        for spec, model in roots
    ]


def construction_span(module: nn.Module, checked: Sequence[str], fallback: Span) -> tuple[Span, tuple[Related, ...]]:
    """The catalog's pointing rule for ``module``: where the checked file constructs it."""
    return fr.locate(fr.construction_frames(module), checked, fallback)


def frame_span(path: str, line: int, col: int, end_line: int, end_col: int, display: str | None = None) -> Span:
    """A traceback position (1-based byte columns) as a Span of ``display`` (default: a short path)."""
    return fr.display_span(fr.Frame(path, line, col - 1, end_line, end_col - 1, ""), display)


def static_diagnostics(path: str, settings: Settings | None) -> list[Diagnostic] | None:
    """What ``qlint check`` reports for ``path`` (None when the static check itself fails)."""
    from qlint.engine import check_file, check_files

    try:
        results = check_files([path]) if settings is None else [check_file(path, settings, (path,))]
        return [d for r in results for d in r.diagnostics]
    except Exception:  # noqa: BLE001 - verify goes on without a prediction
        return None


def suppress(diagnostics: list[Diagnostic], path: str, settings: Settings | None) -> list[Diagnostic]:
    """Apply ``# noqa`` and select/ignore to verify's own findings, as ``qlint check`` does."""
    if settings is None:
        return diagnostics
    try:
        source = SourceFile.read(path)
    except UnreadableFile:
        return diagnostics
    return finalize(diagnostics, source, enabled_codes(settings, path))
