"""QL505's knowledge: does an import resolve in the installed packages, and where did a PT2E name move?

``resolve`` asks the installed packages without running user code: ``importlib.util.find_spec`` on
the module, then, for ``from X import Y``, the attribute (or submodule) after importing ``X``, which
is only done for the packages of the PT2E flow (torch, torchao, executorch, torchvision).
``MOVES`` records where the PT2E names went when torch 2.11 moved them to torchao (and the ones
torchao never re-exported); a test asserts every torchao home really resolves.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

IMPORTABLE = ("torch", "torchao", "executorch", "torchvision")
CAPTURE = "torch.export.export(model, args).module()"


@dataclass(frozen=True)
class Move:
    """A PT2E name's new home. ``old_name`` None moves the module and everything under it (a prefix)."""

    old_module: str
    old_name: str | None
    new_module: str
    package: str  # the package providing the new home
    note: str
    replacement: str | None = None  # a removed API replaced by a call rather than an import


MOVES: tuple[Move, ...] = (
    Move(
        "torch.ao.quantization.quantize_pt2e",
        None,
        "torchao.quantization.pt2e.quantize_pt2e",
        "torchao",
        "PT2E moved from torch to torchao in torch 2.11",
    ),
    Move(
        "torch.ao.quantization.quantizer.xnnpack_quantizer",
        None,
        "executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
        "executorch",
        "the XNNPACK quantizer moved to executorch",
    ),
    Move(
        "torch.ao.quantization.quantizer.xnnpack_quantizer_utils",
        None,
        "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils",
        "executorch",
        "the XNNPACK quantizer moved to executorch",
    ),
    Move(
        "torch.ao.quantization.quantizer",
        None,
        "torchao.quantization.pt2e.quantizer",
        "torchao",
        "PT2E quantizers moved from torch to torchao in torch 2.11",
    ),
    Move(
        "torch.ao.quantization.pt2e",
        None,
        "torchao.quantization.pt2e",
        "torchao",
        "PT2E moved from torch to torchao in torch 2.11",
    ),
    *(
        Move(
            "torch.ao.quantization",
            name,
            "torchao.quantization.pt2e",
            "torchao",
            "PT2E moved from torch to torchao in torch 2.11",
        )
        for name in ("move_exported_model_to_eval", "move_exported_model_to_train", "allow_exported_model_train_eval")
    ),
    *(
        Move(
            "torchao.quantization.pt2e",
            name,
            "torchao.quantization.pt2e.quantize_pt2e",
            "torchao",
            "torchao does not re-export it from torchao.quantization.pt2e",
        )
        for name in ("prepare_pt2e", "prepare_qat_pt2e", "convert_pt2e")
    ),
    *(
        Move(
            "torchao.quantization.pt2e.quantizer",
            name,
            "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer",
            "torchao",
            "torchao does not re-export it from torchao.quantization.pt2e.quantizer",
        )
        for name in ("X86InductorQuantizer", "get_default_x86_inductor_quantization_config")
    ),
    *(
        Move(
            "torchao.quantization.pt2e.quantizer",
            name,
            "executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
            "executorch",
            "the XNNPACK quantizer lives in executorch",
        )
        for name in ("XNNPACKQuantizer", "get_symmetric_quantization_config")
    ),
    Move(
        "torch._export",
        "capture_pre_autograd_graph",
        "torch.export",
        "torch",
        "removed from torch in December 2024",
        replacement=CAPTURE,
    ),
    Move(
        "torch.export",
        "export_for_training",
        "torch.export",
        "torch",
        "removed from torch in 2.11",
        replacement=CAPTURE,
    ),
)


@dataclass(frozen=True)
class Resolution:
    """Whether ``from module import name`` (or ``import module``) works in the installed packages.

    ``resolves`` is None when qlint does not import that package to ask; ``missing`` is
    ``"module"`` or ``"name"`` when it does not resolve.
    """

    module: str
    name: str | None
    resolves: bool | None
    missing: str = ""


@dataclass(frozen=True)
class NewHome:
    """Where an unresolvable PT2E import should point now."""

    module: str
    name: str | None
    package: str
    note: str
    resolves: bool | None  # does the new home resolve in the installed packages
    replacement: str | None = None  # for removed APIs: the call to write instead (no import)

    @property
    def statement(self) -> str:
        """The import to write (empty for a call replacement)."""
        if self.replacement:
            return ""
        return f"from {self.module} import {self.name}" if self.name else f"import {self.module}"


def resolve(module: str, name: str | None = None) -> Resolution:
    """Ask the installed packages whether ``module`` (and ``name`` in it) exists; user code never runs."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return Resolution(module, name, False, "module")
    if top not in IMPORTABLE:
        return Resolution(module, name, None)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return Resolution(module, name, False, "module")
    if name is None or name == "*":
        return Resolution(module, name, True)
    try:
        imported = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a package that fails to import does not resolve anything
        return Resolution(module, name, False, "module")
    if hasattr(imported, name):
        return Resolution(module, name, True)
    try:
        submodule = importlib.util.find_spec(f"{module}.{name}") is not None
    except (ImportError, ValueError):
        submodule = False
    return Resolution(module, name, submodule, "" if submodule else "name")


def new_home(module: str, name: str | None = None) -> NewHome | None:
    """The new home of a moved PT2E import (``from module import name``), by ``MOVES``; None if none applies.

    Prefix moves keep the rest of the path (``torch.ao.quantization.quantizer.x86_inductor_quantizer``
    -> ``torchao.quantization.pt2e.quantizer.x86_inductor_quantizer``); a name the prefix move does
    not resolve is looked up again among the name moves at its new module.
    """
    move = _match(module, name)
    if move is None:
        return None
    if move.replacement:
        return NewHome(move.new_module, None, move.package, move.note, True, move.replacement)
    target = move.new_module if move.old_name else move.new_module + module[len(move.old_module) :]
    home = NewHome(target, name, move.package, move.note, resolve(target, name).resolves)
    if name is not None and not home.resolves:
        again = _match(target, name)
        if again is not None and again.old_name is not None and not again.replacement:
            return NewHome(again.new_module, name, again.package, move.note, resolve(again.new_module, name).resolves)
    return home


def moved_import(module: str, name: str | None = None) -> NewHome | None:
    """QL505's question: the import does not resolve here, and has a known new home (else None)."""
    if resolve(module, name).resolves is not False:
        return None
    return new_home(module, name)


def _match(module: str, name: str | None) -> Move | None:
    exact = [m for m in MOVES if m.old_name is not None and m.old_module == module and m.old_name == name]
    if exact:
        return exact[0]
    prefixes = [
        m for m in MOVES if m.old_name is None and (module == m.old_module or module.startswith(m.old_module + "."))
    ]
    return max(prefixes, key=lambda m: len(m.old_module), default=None)
