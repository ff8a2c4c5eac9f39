"""What a file says about its PT2E flow, read with ``ast`` (nothing is run, nothing heavy imported).

Whether it calls ``prepare_pt2e`` / ``prepare_qat_pt2e`` (the flow is then PT2E by itself), which
quantizer it builds (``X86InductorQuantizer()``, ``XNNPACKQuantizer()``, ``ArmInductorQuantizer()``),
whether it exports with ``strict=True``, and whether the model it hands to ``torch.export.export``
is in eval mode (for QL510: exported for post-training quantization in training mode; the export
calls that do so, for its source half), and where a module's ``forward`` disables grad
(``grad_disabled_forwards``, QL504's source half).
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
    train_mode_exports: tuple[TrainModeExport, ...] = ()  # the export calls that do so (PTQ only)
    prepare_at: tuple[int, int] | None = (
        None  # (line, 1-based column) of the first prepare_pt2e / prepare_qat_pt2e call
    )


@dataclass(frozen=True)
class TrainModeExport:
    """An export call whose model the file never puts in eval mode (1-based columns, ends exclusive).
    ``statement_line`` / ``indent``: the simple statement holding the call, where ``model.eval()`` can
    go (None when the call is not in one, or the model is written ``m.train()``)."""

    model: str
    line: int
    col: int
    end_line: int
    end_col: int
    statement_line: int | None
    indent: str


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
    in_train_mode = () if qat else _exports_in_train_mode(tree, exports, text)
    prepare_at = [(c.lineno, c.col_offset + 1) for c, n in zip(calls, names, strict=True) if n in PREPARE]
    return Pt2eIntent(
        prepares=bool(prepare_at),
        qat=qat,
        quantizer=quantizer,
        strict=strict,
        export_in_train_mode=bool(in_train_mode),
        train_mode_exports=in_train_mode,
        prepare_at=min(prepare_at, default=None),
    )


def _exports_in_train_mode(tree: ast.AST, exports: list[ast.Call], text: str) -> tuple[TrainModeExport, ...]:
    """The export calls whose model is a name the file assigns and nothing in it puts in eval mode
    (``m.eval()``, ``m = Net().eval()``), or an explicit ``m.train()``. A function's parameter is
    the caller's business: not reported."""
    evaluated: set[str] = set()
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            assigned.update(n for n in map(_target_name, node.targets) if n)
        if isinstance(node, ast.Call) and _ends_in_eval(node):
            name = _target_name(node.func.value)
            if name:
                evaluated.add(name)
        if isinstance(node, ast.Assign) and _ends_in_eval(node.value):
            evaluated.update(n for n in map(_target_name, node.targets) if n)
    statements = _statements_of(tree, exports)
    lines = text.splitlines()
    found = []
    for call in exports:
        if not call.args:
            continue
        model = call.args[0]
        if isinstance(model, ast.Call) and isinstance(model.func, ast.Attribute):
            if model.func.attr == "train" and not _false_arg(model):
                found.append(_train_export(call, _target_name(model.func.value) or "model", None, lines))
            continue
        name = _target_name(model)
        if name is not None and name in assigned and name not in evaluated:
            found.append(_train_export(call, name, statements.get(id(call)), lines))
    return tuple(found)


def _statements_of(tree: ast.AST, calls: list[ast.Call]) -> dict[int, ast.stmt]:
    """The simple statement (not a compound one's header) holding each call, by ``id`` of the call."""
    wanted = {id(c) for c in calls}
    out: dict[int, ast.stmt] = {}
    for stmt in ast.walk(tree):
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr, ast.Return)):
            out.update((id(n), stmt) for n in ast.walk(stmt) if id(n) in wanted)
    return out


def _train_export(call: ast.Call, model: str, stmt: ast.stmt | None, lines: list[str]) -> TrainModeExport:
    indent = ""
    if stmt is not None and stmt.lineno <= len(lines):
        line = lines[stmt.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        if len(indent) != stmt.col_offset:  # `a = 1; b = export(m)`: no line of its own
            stmt = None
    return TrainModeExport(
        model,
        call.lineno,
        call.col_offset + 1,
        call.end_lineno or call.lineno,
        (call.end_col_offset or call.col_offset) + 1,
        stmt.lineno if stmt is not None else None,
        indent,
    )


def _ends_in_eval(value: ast.expr) -> bool:
    """``m.eval()`` or ``m.train(False)``."""
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        return False
    return value.func.attr == "eval" or (value.func.attr == "train" and _false_arg(value))


def _false_arg(call: ast.Call) -> bool:
    args = [*call.args, *(k.value for k in call.keywords)]
    return bool(args) and isinstance(args[0], ast.Constant) and args[0].value is False


_GRAD_OFF = ("no_grad", "inference_mode", "set_grad_enabled")


@dataclass(frozen=True)
class GradSite:
    """QL504's source half: grad disabled on or inside a class's ``forward`` (1-based columns)."""

    cls: str
    line: int
    col: int
    written: str  # as the file writes it: "@torch.no_grad()", "with torch.no_grad()", "torch.set_grad_enabled(False)"
    api: str  # no_grad / inference_mode / set_grad_enabled


def _grad_off(expr: ast.expr) -> str | None:
    """``torch.no_grad`` / ``no_grad()`` / ``torch.inference_mode()`` / ``torch.set_grad_enabled(False)``:
    the API name when ``expr`` disables grad."""
    call = expr if isinstance(expr, ast.Call) else None
    func = call.func if call is not None else expr
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in _GRAD_OFF:
        return None
    args = [*call.args, *(k.value for k in call.keywords)] if call is not None else []
    if name == "set_grad_enabled":
        return name if args and isinstance(args[0], ast.Constant) and args[0].value is False else None
    if name == "inference_mode" and args and isinstance(args[0], ast.Constant) and args[0].value is False:
        return None
    return name


@lru_cache(maxsize=256)
def grad_disabled_forwards(text: str) -> tuple[GradSite, ...]:
    """Where a class's ``forward`` runs with grad disabled: a grad decorator on it, a ``with`` block
    or a ``torch.set_grad_enabled(False)`` call inside it (nested functions included)."""
    if not any(word in text for word in _GRAD_OFF):
        return ()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return ()
    sites: list[GradSite] = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for forward in cls.body:
            if not isinstance(forward, (ast.FunctionDef, ast.AsyncFunctionDef)) or forward.name != "forward":
                continue
            for decorator in forward.decorator_list:
                api = _grad_off(decorator)
                if api:
                    written = "@" + ast.get_source_segment(text, decorator)
                    sites.append(GradSite(cls.name, decorator.lineno, decorator.col_offset, written, api))
            for node in ast.walk(forward):
                if isinstance(node, (ast.With, ast.AsyncWith)):
                    for item in node.items:
                        api = _grad_off(item.context_expr)
                        if api:
                            written = "with " + ast.get_source_segment(text, item.context_expr)
                            sites.append(GradSite(cls.name, node.lineno, node.col_offset + 1, written, api))
                            break
                elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                    api = _grad_off(node.value)
                    if api == "set_grad_enabled":
                        written = ast.get_source_segment(text, node.value)
                        sites.append(GradSite(cls.name, node.lineno, node.col_offset + 1, written, api))
    return tuple(sorted(set(sites), key=lambda s: (s.line, s.col)))


def flow_of(text: str, configured: str | None) -> str:
    """The flow a file is checked with: ``configured`` (--flow / ``flow``), else PT2E for a file that
    calls ``prepare_pt2e`` / ``prepare_qat_pt2e``, else eager."""
    if configured is not None:
        return configured
    return PT2E if pt2e_intent(text).prepares else EAGER
