"""QL107: a QuantStub/DeQuantStub called outside the model -> remove the dead call.

A stub that is never a submodule of a prepared model stays an identity, so ``img = quant(img)`` does
nothing: the line goes, ``model(quant(img))`` becomes ``model(img)``, ``QuantStub()(x)`` becomes ``x``.
A named stub is removed only when every use of its name is such a call; its binding
(``quant = QuantStub()``) then goes too. Safe: float and quantized behaviour are unchanged.
Imports are kept (another fix of the same round may start using them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import Assignment, MetadataWrapper, ScopeProvider

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix
from qlint.fix.context import FixContext
from qlint.fix.source import FileText
from qlint.source.pipeline import callee_attr

STUBS = {"QuantStub", "DeQuantStub"}
# expressions that stay one operand wherever they are pasted
_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.BaseNumber, cst.BaseString, cst.List, cst.Dict,
          cst.Set, cst.ListComp, cst.SetComp, cst.DictComp, cst.Ellipsis)  # fmt: skip
# parents where any expression may replace the call without parentheses
_OPEN_SLOTS = (cst.Arg, cst.Assign, cst.AnnAssign, cst.Expr, cst.Return, cst.Element, cst.DictElement)


@dataclass
class _Group:
    """The flagged calls of one stub name (or one stub built on the spot)."""

    binding: Assignment | None
    calls: list[tuple[int, cst.Call]] = field(default_factory=list)


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    file = ctx.file
    scopes = None
    groups: dict[int, _Group] = {}
    for index, diag in items:
        call = _call_at(file, diag)
        if call is None:
            continue
        if isinstance(call.func, cst.Call):  # QuantStub()(x)
            groups[-index - 1] = _Group(None, [(index, call)])
            continue
        if scopes is None:
            scopes = MetadataWrapper(file.module, unsafe_skip_copy=True).resolve(ScopeProvider)
        binding = _binding(scopes, call.func)
        if binding is None:
            continue
        groups.setdefault(id(binding), _Group(binding)).calls.append((index, call))
    out: dict[int, Fix] = {}
    for group in groups.values():
        fix = _fix(file, group)
        if fix is not None:
            out.update({index: fix for index, _ in group.calls})
    return out


def _call_at(file: FileText, diag: Diagnostic) -> cst.Call | None:
    """The stub call at the diagnostic, when it has exactly one positional argument."""
    for call in file.nodes_at(diag.span, (cst.Call,)):
        if (file.start(call), file.end(call)) != ((diag.span.line, diag.span.col), diag.span.end):
            continue
        func = call.func
        if not (isinstance(func, cst.Name) or (isinstance(func, cst.Call) and callee_attr(func) in STUBS)):
            continue
        if len(call.args) == 1 and call.args[0].keyword is None and not call.args[0].star:
            return call
    return None


def _binding(scopes, name: cst.Name) -> Assignment | None:
    """The one assignment ``name`` can refer to: ``name = <stub>(...)``, the name's only binding."""
    scope = scopes.get(name)
    if scope is None:
        return None
    referents = {a for access in scope.accesses[name] for a in access.referents}
    if len(referents) != 1:
        return None
    binding = next(iter(referents))
    if not isinstance(binding, Assignment) or len(binding.scope.assignments[name.value]) != 1:
        return None
    return binding


def _fix(file: FileText, group: _Group) -> Fix | None:
    calls = {id(call.func) for _, call in group.calls}
    if group.binding is not None and any(id(ref.node) not in calls for ref in group.binding.references):
        return None  # the stub is used some other way (prepared, configured, passed on): not dead code
    statement = _binding_statement(file, group.binding) if group.binding is not None else None
    if group.binding is not None and statement is None:
        return None
    deletions: list[cst.SimpleStatementLine] = []
    replacements: list[cst.Call] = []
    for _, call in group.calls:
        line = _own_line_assignment(file, call)
        (deletions if line is not None else replacements).append(line or call)
    if statement is not None and file.delete_line_of(statement) is not None:
        deletions.append(statement)
    else:
        statement = None
    edits = [_unwrap(file, call) for call in replacements]
    edits += _delete(file, deletions)
    if any(e is None for e in edits):
        return None
    func = group.calls[0][1].func
    shown = f"{file.code(func)}(...)" if isinstance(func, cst.Name) else f"{file.code(func)}(x)"
    also = f" (and `{file.code(statement.body[0]).strip()}`)" if statement is not None else ""
    plural = "s" if len(group.calls) > 1 else ""
    return Fix(Applicability.SAFE, f"Remove the no-op `{shown}` call{plural}{also}", tuple(edits))


def _binding_statement(file: FileText, binding: Assignment) -> cst.SimpleStatementLine | None:
    """``quant = QuantStub()`` (a single target, alone on its line) that made ``binding``."""
    target = file.parents.get(binding.node)
    assign = file.parents.get(target) if isinstance(target, cst.AssignTarget) else None
    if not isinstance(assign, cst.Assign) or len(assign.targets) != 1:
        return None
    if not (isinstance(assign.value, cst.Call) and callee_attr(assign.value) in STUBS):
        return None
    statement = file.parents.get(assign)
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    return statement


def _own_line_assignment(file: FileText, call: cst.Call) -> cst.SimpleStatementLine | None:
    """The statement ``img = quant(img)`` (same name on both sides) or ``quant(img)``, alone on its
    line, else None."""
    assign, arg = file.parents.get(call), call.args[0].value
    if isinstance(assign, cst.Expr):
        if not isinstance(arg, cst.Name):
            return None
    elif not isinstance(assign, cst.Assign) or assign.value is not call or len(assign.targets) != 1:
        return None
    else:
        target = assign.targets[0].target
        if not (isinstance(target, cst.Name) and isinstance(arg, cst.Name) and target.value == arg.value):
            return None
    statement = file.parents.get(assign)
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    return statement if file.delete_line_of(statement) is not None else None


def _unwrap(file: FileText, call: cst.Call) -> Edit | None:
    """Replace ``stub(expr)`` by ``expr`` (parenthesized where it would bind differently)."""
    value = call.args[0].value
    if isinstance(value, cst.GeneratorExp) and not value.lpar:
        return None
    code = file.code(value)
    if "\n" in code and not value.lpar:
        code = f"({code})"
    elif not isinstance(value, _ATOMS) and not value.lpar and not isinstance(file.parents.get(call), _OPEN_SLOTS):
        code = f"({code})"
    return file.replace(call, code)


def _delete(file: FileText, statements: list[cst.SimpleStatementLine]) -> list[Edit | None]:
    """Line deletions; a block that would be left empty keeps a ``pass``."""
    doomed = {id(s) for s in statements}
    edits: list[Edit | None] = []
    for statement in statements:
        block = file.parents.get(statement)
        siblings = block.body if isinstance(block, cst.IndentedBlock) else ()
        last = bool(siblings) and all(id(s) in doomed for s in siblings) and statement is siblings[-1]
        edits.append(file.replace(statement.body[0], "pass") if last else file.delete_line_of(statement))
    return edits
