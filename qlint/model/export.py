"""``torch.export`` on the meta device: the capture step of the PT2E flow, or why it failed.

The model comes from qlint's loader (built on meta, in eval mode; on CPU when a constructor needs
real data, e.g. torchvision's RegNets). ``export_on_meta`` exports it with empty example inputs on
the model's device and returns the unlifted module (``ExportedProgram.module()``, what users
hand to ``prepare_pt2e``), or an ``ExportFailure``: torch's reason in plain words and the frames of
the user's line where export stopped (for QL508). When the whole model does not export,
``largest_exportable_submodules`` finds the outermost submodules that do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from qlint.config import Settings
from qlint.diagnostics import Related, Span
from qlint.model import frames as fr
from qlint.model.loader import describe, quiet

MAX_SUBMODULES = 12

DATA_DEPENDENT = "data-dependent"
INFERENCE_MODE = "inference-mode"
UNSUPPORTED_PYTHON = "unsupported-python"
NO_EXAMPLE_INPUT = "no-example-input"
INPUT_MISMATCH = "input-mismatch"
OTHER = "other"

_MESSAGE_FRAME = re.compile(r'File "([^"]+)", line (\d+), in ([^\s,]+)')
_MISMATCH = re.compile(
    r"size mismatch|shapes? cannot|must have same|mat1 and mat2|expected input|input of size|"
    r"to have \d+ channels|unbatched|dimension|size of tensor",
    re.IGNORECASE,
)


@dataclass
class Exported:
    """A model captured by ``torch.export.export``: ``module`` is ``program.module()``."""

    module: object  # torch.fx.GraphModule
    program: object  # torch.export.ExportedProgram
    model: object  # the nn.Module that was exported
    example_inputs: tuple
    training: bool  # the mode the model was exported in
    strict: bool  # export's strict flag
    prefix: str = ""  # qualified name of ``model`` inside the checked root model ("" for the root)


@dataclass(frozen=True)
class ExportFailure:
    """``torch.export`` could not capture the model.

    ``kind`` is one of ``data-dependent``, ``inference-mode``, ``unsupported-python``, ``other``,
    or, when qlint's example input rather than the model is at fault, ``no-example-input`` /
    ``input-mismatch`` (a rule should ask for ``input-shape`` then, not report QL508).
    ``reason`` says it in plain words; ``torch_message`` is the first line of what torch raised;
    ``frames`` (innermost first) lead to the line where export stopped; ``prefix`` names the
    submodule that was exported ("" for the root).
    """

    kind: str
    reason: str
    torch_message: str
    exception_type: str
    frames: tuple[fr.Frame, ...] = ()
    prefix: str = ""

    def location(self, checked: tuple[str, ...], fallback: Span) -> tuple[Span, tuple[Related, ...]]:
        """Where a QL508 finding points: the checked file's line where export stopped (else ``fallback``)."""
        return fr.locate(self.frames, checked, fallback)


def example_inputs(model, settings: Settings | None = None) -> tuple | None:
    """Meta example inputs for ``model``: ``settings.input_shape``, else a shape guessed from its first conv
    or linear layer (the first guess that an eager meta run accepts)."""
    import torch

    if settings is not None and settings.input_shape is not None:
        return (torch.empty(settings.input_shape, device=model_device(model)),)
    guesses = [(torch.empty(shape, device=model_device(model)),) for shape in _guessed_shapes(model)]
    if len(guesses) > 1:
        return next((inputs for inputs in guesses if _fits(model, inputs)), guesses[0])
    return guesses[0] if guesses else None


def _guessed_shapes(model) -> list[tuple[int, ...]]:
    import torch.nn as nn

    shapes = []
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    linear = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    for layer in sorted(filter(None, (conv, linear)), key=lambda m: _registration_index(model, m)):
        if isinstance(layer, nn.modules.conv._ConvNd):
            dims = len(layer.kernel_size)
            spatial = {1: (224,), 2: (224, 224), 3: (16, 112, 112)}.get(dims, (224,) * dims)
            shapes.append((1, layer.in_channels, *spatial))
        else:
            shapes.append((1, layer.in_features))
    return shapes


def _registration_index(model, module) -> int:
    return next(i for i, m in enumerate(model.modules()) if m is module)


def _fits(model, inputs: tuple) -> bool:
    """Does an eager run on meta accept ``inputs`` (anything but a shape or argument error counts as yes)?"""
    import torch

    try:
        with quiet(), torch.no_grad():
            model(*inputs)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        return not is_input_mismatch(exc)
    return True


def is_input_mismatch(exc: BaseException) -> bool:
    """An error saying the inputs do not fit ``forward`` (its arguments, or the tensors' shapes)."""
    text = str(exc)
    if isinstance(exc, TypeError):
        return "argument" in text
    return isinstance(exc, (RuntimeError, ValueError)) and bool(_MISMATCH.search(text))


def export_on_meta(
    model,
    example_inputs: tuple | None,
    *,
    training: bool | None = None,
    strict: bool = False,
    checked: tuple[str, ...] = (),
) -> Exported | ExportFailure:
    """``torch.export.export(model, example_inputs)`` on meta; an ExportFailure instead of raising.

    ``training`` exports the model in that mode (restored afterwards); ``None`` keeps its mode.
    ``strict`` is export's own flag (torch's default, False, is what most scripts run).
    ``checked`` files keep their helper functions' frames in the nodes' stack traces (export keeps
    only ``forward`` frames otherwise), so findings can point inside them.
    """
    import torch

    if example_inputs is None:
        return ExportFailure(
            NO_EXAMPLE_INPUT,
            "qlint could not guess an example input (no conv or linear layer to read a shape from); "
            "give one with `# qlint: input-shape = 1x3x224x224` or `--input-shape`",
            "",
            "",
        )
    inputs = tuple(_on(x, model_device(model)) for x in example_inputs)
    was_training = bool(model.training)
    mode = was_training if training is None else training
    try:
        with quiet(), _quiet_torch_logs(), _anchored(checked):
            model.train(mode)
            program = torch.export.export(model, inputs, strict=strict)
            module = program.module()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever export raises is a failure to report
        return _failure(exc)
    finally:
        with quiet():
            model.train(was_training)
    return Exported(module, program, model, inputs, mode, strict)


def largest_exportable_submodules(
    model,
    settings: Settings | None = None,
    *,
    training: bool | None = None,
    strict: bool = False,
    checked: tuple[str, ...] = (),
    limit: int = MAX_SUBMODULES,
) -> list[Exported]:
    """Breadth-first: the outermost submodules that export, each with the inputs seen in a meta run.

    Containers are looked into; a submodule that does not export is replaced by its children.
    Each result's ``prefix`` is the submodule's qualified name in ``model``.
    """
    import torch.nn as nn

    containers = (nn.ModuleList, nn.ModuleDict)

    def worth_checking(module: nn.Module) -> bool:
        if isinstance(module, (nn.Sequential, *containers)):
            return True
        has_weights = next(module.parameters(), None) is not None
        return has_weights and not type(module).__module__.startswith("torch.nn")

    seen = observed_inputs(model, example_inputs(model, settings))
    out: list[Exported] = []
    queue = list(model.named_children())
    while queue and len(out) < limit:
        name, module = queue.pop(0)
        if not worth_checking(module):
            continue
        if isinstance(module, containers):
            queue.extend((f"{name}.{n}", c) for n, c in module.named_children())
            continue
        inputs = seen.get(id(module))
        result = None
        if inputs is not None:
            result = export_on_meta(module, inputs, training=training, strict=strict, checked=checked)
        if not isinstance(result, Exported):
            queue.extend((f"{name}.{n}", c) for n, c in module.named_children())
            continue
        result.prefix = name
        out.append(result)
    return out


def observed_inputs(model, inputs: tuple | None) -> dict[int, tuple]:
    """Run ``model`` eagerly on meta ``inputs``; each submodule's first positional arguments, as meta tensors."""
    import torch

    if inputs is None:
        return {}
    seen: dict[int, tuple] = {}

    def hook(module, args):
        if args and id(module) not in seen and any(isinstance(a, torch.Tensor) for a in args):
            seen[id(module)] = tuple(_on(a, model_device(module)) for a in args)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    try:
        with quiet(), torch.no_grad():
            model(*inputs)
    except Exception:  # noqa: BLE001 - the run stops somewhere (data-dependent ops); what it saw is enough
        pass
    finally:
        for handle in handles:
            handle.remove()
    return seen


def model_device(model) -> str:
    """Where the model's weights are: "meta" as qlint builds it, "cpu" when building on meta failed."""
    first = next(model.parameters(), None)
    return first.device.type if first is not None else "meta"


def _on(value: object, device: str) -> object:
    """An empty tensor like ``value`` on ``device`` (no data is ever needed)."""
    import torch

    if isinstance(value, torch.Tensor) and value.device.type != device:
        return torch.empty(value.shape, dtype=value.dtype, device=device)
    return value


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch's export loggers print warnings and graph dumps on their own handlers."""
    loggers = [logging.getLogger(n) for n in ("torch", "torch._dynamo", "torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _anchored(checked: tuple[str, ...]) -> Iterator[None]:
    """Register the checked files' functions as stack-trace anchors of torch.fx (kept in ``stack_trace``)."""
    import torch.fx.proxy as proxy

    anchors = getattr(proxy, "_STACK_TRACE_ANCHORS", None)
    added = set()
    if isinstance(anchors, set):
        for path in checked:
            for name in _function_names(path):
                for filename in {path, os.path.abspath(path)}:
                    if (filename, name) not in anchors:
                        added.add((filename, name))
        anchors.update(added)
    try:
        yield
    finally:
        if isinstance(anchors, set):
            anchors.difference_update(added)


def _function_names(path: str) -> set[str]:
    import ast

    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return set()
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _failure(exc: BaseException) -> ExportFailure:
    frames = fr.frames_from_traceback(exc.__traceback__)
    if not any(not fr.is_torch(f.path) for f in frames):
        frames = _frames_in_message(str(exc)) or frames
    kind, reason = _plain_reason(exc)
    return ExportFailure(kind, reason, describe(exc), type(exc).__name__, frames)


def _frames_in_message(message: str) -> tuple[fr.Frame, ...]:
    """Strict export (dynamo) names the user's frames in its message ("from user code: File ..."); innermost first."""
    out: list[fr.Frame] = []
    for path, line, func in _MESSAGE_FRAME.findall(message):
        path = os.path.abspath(path)
        frame = fr.Frame(path, int(line), 0, int(line), 0, func)
        if not fr.is_internal(path) and os.path.exists(path) and frame not in out:
            out.append(frame)
    return tuple(reversed(out))


def _plain_reason(exc: BaseException) -> tuple[str, str]:
    """torch's reason in plain words: (kind, sentence)."""
    text = str(exc)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if is_input_mismatch(exc):
        return (
            INPUT_MISMATCH,
            "the example input does not fit `forward` (its arguments or shapes); "
            "give the real one with `# qlint: input-shape = ...` or `--input-shape`",
        )
    if "GuardOnDataDependentSymNode" in names or "data-dependent" in text or "data dependent" in text:
        return (
            DATA_DEPENDENT,
            "a Python branch or a shape depends on the values in a tensor (`if x.sum() > 0`, `.item()`, "
            "`.tolist()`, `nonzero()`), which export cannot know when it captures the graph",
        )
    if "Inference tensors" in text or "inference_mode" in text:
        return INFERENCE_MODE, "`torch.inference_mode()` inside `forward`: export cannot capture ops under it"
    if "Unsupported" in names or "not supported" in text or ".numpy()" in text:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return UNSUPPORTED_PYTHON, f"`forward` runs Python that export cannot capture ({first.rstrip('.')})"
    return OTHER, f"export raised {describe(exc)}"
