"""QL403: ``convert`` with no calibration since ``prepare`` -> calibrate with the script's own batch.

``q = convert(m)`` followed later by ``q(img)`` gets ``m(img)`` inserted right before the convert, so
the observers see one real batch. Offered only when every argument of that later call is a plain name
bound before the ``prepare`` line and not re-bound from there to the call; never for QAT (it needs
training, not calibration). Unsafe: the script computes something else, and one batch stands in for
representative data.
"""

from __future__ import annotations

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Fix
from qlint.fix.context import FixContext
from qlint.fix.source import FileText
from qlint.rules.pipelines import CONVERT
from qlint.source.pipeline import argument, callee_attr, keyword_true

MAX_LINE = 110
COMMENTS = (
    "  # calibrate: run representative batches through the prepared model before convert",
    "  # calibrate: run representative batches here",
    "  # calibrate",
    "",
)
_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)  # their targets are their own


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    for index, diag in items:
        fix = _fix(ctx.file, diag)
        if fix is not None:
            out[index] = fix
    return out


def _fix(file: FileText, diag: Diagnostic) -> Fix | None:
    data = dict(diag.data)
    prepare_line = data.get("prepare_line")
    if data.get("qat") or not isinstance(prepare_line, int):
        return None
    call = next((c for c in file.nodes_at(diag.span, (cst.Call,)) if callee_attr(c) in CONVERT), None)
    if call is None or not call.args:
        return None
    model = argument(call, 0, "module") or argument(call, 0, "model") or argument(call, 0, "graph_module")
    if not isinstance(model, cst.Name):
        return None
    statement = file.statement_of(call)
    converted = _converted_name(file, call, model.value)
    if statement is None or converted is None:
        return None
    fn = file.enclosing_function(call)
    scope: cst.CSTNode = fn if fn is not None else file.module
    use = _first_use(file, scope, converted, file.end(statement.body[0]))
    if use is None:
        return None
    names = _batch(use)
    if names is None or model.value in names or converted in names:
        return None
    bindings = _bindings(file, scope)
    if fn is not None:  # a name the function never binds is the module's
        outer = _bindings(file, file.module)
        bindings.update({n: outer.get(n, []) for n in names if n not in bindings})
    if not all(_stable(bindings.get(n, []), prepare_line, use, file) for n in names):
        return None
    args = ", ".join(names)
    indent = file.indent_of(statement)
    head = f"{model.value}({args})"
    comment = next(c for c in COMMENTS if len(indent) + len(head) + len(c) <= MAX_LINE)
    edit = file.insert_lines_before(statement, [head + comment])
    shown = ", ".join(f"`{n}`" for n in names)
    which = "the batch" if len(names) == 1 else "the inputs"
    return Fix(
        Applicability.UNSAFE,
        f"Calibrate with {shown}, {which} this script runs later (replace with representative data)",
        (edit,),
    )


def _converted_name(file: FileText, call: cst.Call, model: str) -> str | None:
    """``q`` for ``q = convert(m)``; ``m`` for a bare ``convert(m, inplace=True)``."""
    small = file.parents.get(call)
    statement = file.parents.get(small)
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    if isinstance(small, cst.Assign) and small.value is call and len(small.targets) == 1:
        target = small.targets[0].target
        return target.value if isinstance(target, cst.Name) else None
    if isinstance(small, cst.Expr) and small.value is call and keyword_true(call, "inplace"):
        return model
    return None


def _first_use(file: FileText, scope: cst.CSTNode, name: str, after: tuple[int, int]) -> cst.Call | None:
    """The first ``name(...)`` / ``name.forward(...)`` in ``scope`` after ``after``, unless ``name`` is
    re-bound before it."""
    found: list[cst.Call] = []

    class Visitor(_ScopeVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            func = node.func
            if isinstance(func, cst.Attribute) and func.attr.value == "forward":
                func = func.value
            if isinstance(func, cst.Name) and func.value == name and file.start(node) >= after:
                found.append(node)

    _visit_scope(scope, Visitor(scope))
    if not found:
        return None
    use = min(found, key=file.start)
    if file.ancestor(use, _COMPREHENSIONS) is not None:
        return None  # its arguments may be the comprehension's own variables
    rebound = [n for n in _bindings(file, scope).get(name, []) if after < _effect(file, n) < file.start(use)]
    return None if rebound else use


def _batch(use: cst.Call) -> list[str] | None:
    """The call's arguments as names: all positional plain names, at least one."""
    names = []
    for arg in use.args:
        if arg.keyword is not None or arg.star or not isinstance(arg.value, cst.Name):
            return None
        names.append(arg.value.value)
    return names or None


def _stable(binds: list[cst.CSTNode], prepare_line: int, use: cst.Call, file: FileText) -> bool:
    """Bound before the ``prepare`` line, and not re-bound from that line until ``use`` runs."""
    before = any(file.start(n)[0] < prepare_line for n in binds)
    between = any(prepare_line <= _effect(file, n)[0] and _effect(file, n) < file.start(use) for n in binds)
    return before and not between


def _effect(file: FileText, node: cst.CSTNode) -> tuple[int, int]:
    """Where a binding takes effect: after the value of an assignment, at the name otherwise."""
    parent = file.parents.get(node)
    while parent is not None and not isinstance(parent, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
        parent = file.parents.get(parent)
    if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign)):
        return file.end(parent)
    return file.start(node)


def _bindings(file: FileText, scope: cst.CSTNode) -> dict[str, list[cst.CSTNode]]:
    """Name -> the nodes that bind it in ``scope`` (nested functions and classes excluded)."""
    out: dict[str, list[cst.CSTNode]] = {}

    def bind(target: cst.CSTNode | None) -> None:
        if isinstance(target, cst.Name):
            out.setdefault(target.value, []).append(target)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                bind(element.value)
        elif isinstance(target, cst.StarredElement):
            bind(target.value)

    class Visitor(_ScopeVisitor):
        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            bind(node.target)

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
            bind(node.target)

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            bind(node.target)

        def visit_For(self, node: cst.For) -> None:
            bind(node.target)

        def visit_AsName(self, node: cst.AsName) -> None:  # with ... as x, except ... as x, import ... as x
            bind(node.name)

        def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
            bind(node.target)

        def visit_Del(self, node: cst.Del) -> None:
            bind(node.target)

        def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
            if node.asname is None and isinstance(node.name, cst.Name):
                bind(node.name)

        def on_nested(self, node: cst.CSTNode) -> None:
            if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
                bind(node.name)

    _visit_scope(scope, Visitor(scope))
    if isinstance(scope, cst.FunctionDef):
        for param in scope.params.params + scope.params.posonly_params + scope.params.kwonly_params:
            out.setdefault(param.name.value, []).insert(0, param.name)
        for star in (scope.params.star_arg, scope.params.star_kwarg):
            if isinstance(star, cst.Param):
                out.setdefault(star.name.value, []).insert(0, star.name)
    return out


class _ScopeVisitor(cst.CSTVisitor):
    """Visits one scope's own code: nested functions, classes and lambdas are skipped."""

    def __init__(self, scope: cst.CSTNode):
        super().__init__()
        self.scope = scope

    def on_nested(self, node: cst.CSTNode) -> None:
        pass

    def on_visit(self, node: cst.CSTNode) -> bool:
        if node is not self.scope and isinstance(node, _SCOPES):
            self.on_nested(node)
            return False
        return super().on_visit(node)


def _visit_scope(scope: cst.CSTNode, visitor: _ScopeVisitor) -> None:
    if isinstance(scope, cst.FunctionDef):
        scope.body.visit(visitor)
    else:
        scope.visit(visitor)
