"""What a file says about its PT2E flow, read with ``ast`` (nothing is run, nothing heavy imported).

Whether it calls ``prepare_pt2e`` / ``prepare_qat_pt2e`` (the flow is then PT2E by itself), which
quantizer it builds (``X86InductorQuantizer()``, ``XNNPACKQuantizer()``, ``ArmInductorQuantizer()``),
whether it exports with ``strict=True``, and whether the model it hands to ``torch.export.export``
is in eval mode (for QL510: exported for post-training quantization in training mode).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache

from qlint.config import FLOWS

EAGER, PT2E = FLOWS
PREPARE = ("prepare_pt2e", "prepare_qat_pt2e")
QUANTIZER_CLASSES = {"X86InductorQuantizer": "x86", "XNNPACKQuantizer": "xnnpack", "ArmInductorQuantizer": "arm"}
_EXPORTS = ("export", "capture_pre_autograd_graph", "export_for_training")


@dataclass(frozen=True)
class Pt2eIntent:
    """The PT2E flow as the file writes it."""

    prepares: bool = False  # calls prepare_pt2e or prepare_qat_pt2e
    qat: bool = False  # calls prepare_qat_pt2e
    quantizer: str | None = None  # x86 / xnnpack / arm: the quantizer class the file builds
    strict: bool = False  # an export call passes strict=True
    export_in_train_mode: bool = False  # the exported model is never put in eval mode (PTQ only)


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _is_torch_export(call: ast.Call) -> bool:
    """``torch.export.export(...)``, ``export(...)``, the removed capture APIs; not ``torch.onnx.export``."""
    func = call.func
    if isinstance(func, ast.Name):
        return True
    owner = _target_name(func.value) if isinstance(func, ast.Attribute) else None
    return owner is not None and "onnx" not in owner


def _target_name(node: ast.expr) -> str | None:
    """``model`` / ``self.model`` as a dotted name (None for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _target_name(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


@lru_cache(maxsize=256)
def pt2e_intent(text: str) -> Pt2eIntent:
    """Read ``text``; a file that does not parse says nothing."""
    if not any(word in text for word in (*PREPARE, *QUANTIZER_CLASSES, "export")):
        return Pt2eIntent()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return Pt2eIntent()
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    names = [_callee(c) for c in calls]
    quantizer = next((QUANTIZER_CLASSES[n] for n in names if n in QUANTIZER_CLASSES), None)
    exports = [c for c, n in zip(calls, names, strict=True) if n in _EXPORTS and _is_torch_export(c)]
    strict = any(
        k.arg == "strict" and isinstance(k.value, ast.Constant) and k.value.value is True
        for c in exports
        for k in c.keywords
    )
    qat = "prepare_qat_pt2e" in names
    return Pt2eIntent(
        prepares=any(n in PREPARE for n in names),
        qat=qat,
        quantizer=quantizer,
        strict=strict,
        export_in_train_mode=not qat and _exports_in_train_mode(tree, exports),
    )


def _exports_in_train_mode(tree: ast.AST, exports: list[ast.Call]) -> bool:
    """An export call's model is a name the file assigns and nothing in it puts in eval mode
    (``m.eval()``, ``m = Net().eval()``), or an explicit ``m.train()``. A function's parameter is
    the caller's business: not reported."""
    evaluated: set[str] = set()
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            assigned.update(n for n in map(_target_name, node.targets) if n)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "eval":
            name = _target_name(node.func.value)
            if name:
                evaluated.add(name)
        if isinstance(node, ast.Assign) and _ends_in_eval(node.value):
            evaluated.update(n for n in map(_target_name, node.targets) if n)
    for call in exports:
        if not call.args:
            continue
        model = call.args[0]
        if isinstance(model, ast.Call) and isinstance(model.func, ast.Attribute):
            if model.func.attr == "train" and not _false_arg(model):
                return True
            continue
        name = _target_name(model)
        if name is not None and name in assigned and name not in evaluated:
            return True
    return False


def _ends_in_eval(value: ast.expr) -> bool:
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "eval"


def _false_arg(call: ast.Call) -> bool:
    args = [*call.args, *(k.value for k in call.keywords)]
    return bool(args) and isinstance(args[0], ast.Constant) and args[0].value is False


def flow_of(text: str, configured: str | None) -> str:
    """The flow a file is checked with: ``configured`` (--flow / ``flow``), else PT2E for a file that
    calls ``prepare_pt2e`` / ``prepare_qat_pt2e``, else eager."""
    if configured is not None:
        return configured
    return PT2E if pt2e_intent(text).prepares else EAGER
