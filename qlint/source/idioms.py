"""Pieces several fixes share: declaring attributes in ``__init__``, spelling quantization names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Edit
from qlint.source.edit import methods, super_init_statement

if TYPE_CHECKING:
    from qlint.context import FileContext

FLOAT_FUNCTIONAL = (
    "torch.ao.nn.quantized.FloatFunctional",
    "torch.nn.quantized.FloatFunctional",
    "torch.ao.nn.quantized.modules.functional_modules.FloatFunctional",
)
QUANT_STUB = (
    "torch.ao.quantization.QuantStub",
    "torch.quantization.QuantStub",
    "torch.ao.quantization.stubs.QuantStub",
)
DEQUANT_STUB = (
    "torch.ao.quantization.DeQuantStub",
    "torch.quantization.DeQuantStub",
    "torch.ao.quantization.stubs.DeQuantStub",
)


def declare(ctx: FileContext, cls: cst.ClassDef, lines: list[str]) -> Edit | None:
    """Insert ``lines`` (attribute declarations) right after ``super().__init__()`` of ``cls``."""
    init = methods(cls).get("__init__")
    if init is None:
        return None
    stmt = super_init_statement(init)
    if stmt is None:
        return None
    return ctx.file.insert_lines_after(stmt, lines)


def spelled(ctx: FileContext, candidates: tuple[str, ...], prefer_direct: bool = False) -> tuple[str, list[Edit]]:
    """(how to write the class in this file, import edits needed).

    ``prefer_direct``: import the class by name (``QuantStub``) unless the file already binds it.
    """
    name = ctx.file.spell(candidates)
    leaf = candidates[0].rsplit(".", 1)[-1]
    if name is not None and (not prefer_direct or "." not in name):
        return name, []
    module = candidates[0].rsplit(".", 1)[0]
    return leaf, [ctx.file.import_edit(f"from {module} import {leaf}")]


def stub_names(ctx: FileContext, need_quant: bool, need_dequant: bool) -> tuple[str, str, list[Edit]]:
    """QuantStub / DeQuantStub spellings, with one import line for whichever the file lacks."""
    quant = ctx.file.spell(QUANT_STUB)
    dequant = ctx.file.spell(DEQUANT_STUB)
    missing = []
    if need_quant and (quant is None or "." in quant):
        quant, missing = "QuantStub", missing + ["QuantStub"]
    if need_dequant and (dequant is None or "." in dequant):
        dequant, missing = "DeQuantStub", missing + ["DeQuantStub"]
    edits = [ctx.file.import_edit(f"from torch.ao.quantization import {', '.join(sorted(missing))}")] if missing else []
    return quant or "QuantStub", dequant or "DeQuantStub", edits


def torch_name(ctx: FileContext) -> tuple[str, list[Edit]]:
    """How to spell the ``torch`` module here (adds ``import torch`` if the file has no such name)."""
    for bound, origin in ctx.file.bound_names.items():
        if origin == "torch":
            return bound, []
    return "torch", [ctx.file.import_edit("import torch")]
