"""Statement-order scans over pipeline code: the module body and each function body.

A pipeline is the script around a model (build, ``prepare``, calibrate, ``convert``, run). Rules
that follow a model through it subclass ``PipelineScan``: it walks one body in source order,
descending into loops, branches, ``with`` and ``try`` blocks (not into nested functions or
classes), and hands each call and each assignment to the subclass. Helpers for call names,
receivers, method chains and import aliases live here too.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Diagnostic

_CLAUSES = (cst.IndentedBlock, cst.SimpleStatementSuite, cst.Else, cst.ExceptHandler, cst.ExceptStarHandler,
            cst.Finally, cst.If, cst.MatchCase)  # fmt: skip


def bodies(index, only: Container[str | None] | None = None) -> list[Sequence[cst.BaseStatement]]:
    """The module body, then every function body (methods and nested functions included); with
    ``only``, just the functions so named and the module body if ``None`` is in it."""
    out: list[Sequence[cst.BaseStatement]] = [index.module.body] if only is None or None in only else []
    out += [
        f.body.body
        for f in index.functions
        if (only is None or f.name.value in only) and isinstance(f.body, cst.IndentedBlock)
    ]
    return out


Branch = tuple[tuple[int, int], ...]  # the (if/match statement id, arm) pairs a statement sits in


def small_statements(nodes: Sequence[cst.CSTNode]) -> Iterator[cst.BaseSmallStatement]:
    """Simple statements in source order; a compound statement's header expressions come first,
    as ``Expr`` wrappers (``for x in loader(m):`` yields ``loader(m)``)."""
    return (small for small, _ in walk(nodes))


def walk(nodes: Sequence[cst.CSTNode], branch: Branch = ()) -> Iterator[tuple[cst.BaseSmallStatement, Branch]]:
    """``small_statements`` with the arms of ``if``/``elif``/``else`` and ``match`` each lies in
    (``if __name__ == "__main__":`` is not a branch)."""
    for node in nodes:
        if isinstance(node, cst.BaseSmallStatement):
            yield node, branch
        elif isinstance(node, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            yield from ((small, branch) for small in node.body)
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            continue
        elif isinstance(node, cst.IndentedBlock):
            yield from walk(node.body, branch)
        elif isinstance(node, cst.If) and not _is_main_guard(node):
            yield cst.Expr(node.test), branch
            yield from walk([node.body], (*branch, (id(node), 0)))
            if node.orelse is not None:
                yield from walk([node.orelse], (*branch, (id(node), 1)))
        elif isinstance(node, cst.Match):
            yield cst.Expr(node.subject), branch
            for arm, case in enumerate(node.cases):
                yield from walk([case.body], (*branch, (id(node), arm)))
        elif isinstance(node, (cst.BaseCompoundStatement, *_CLAUSES)):
            yield from ((cst.Expr(e), branch) for e in _headers(node))
            yield from walk([c for c in node.children if isinstance(c, _CLAUSES)], branch)


def exclusive(a: Branch, b: Branch) -> bool:
    """Two statements in different arms of one ``if``/``match``: at most one of them runs."""
    arms = dict(a)
    return any(node in arms and arms[node] != arm for node, arm in b)


def _is_main_guard(node: cst.If) -> bool:
    test = node.test
    return isinstance(test, cst.Comparison) and isinstance(test.left, cst.Name) and test.left.value == "__name__"


def _headers(node: cst.CSTNode) -> list[cst.BaseExpression]:
    if isinstance(node, (cst.If, cst.While)):
        return [node.test]
    if isinstance(node, cst.For):
        return [node.iter]
    if isinstance(node, cst.With):
        return [item.item for item in node.items]
    return []


def calls(expr: cst.CSTNode, post_order: bool = False) -> list[cst.Call]:
    """Calls inside ``expr`` (lambdas excluded): outer first, or in evaluation order (inner first)."""
    found: list[cst.Call] = []

    class Visitor(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if not post_order:
                found.append(node)

        def leave_Call(self, original_node: cst.Call) -> None:
            if post_order:
                found.append(original_node)

        def visit_Lambda(self, node: cst.Lambda) -> bool:
            return False

    expr.visit(Visitor())
    return found


def callee(call: cst.Call) -> str:
    """The dotted callee name (``torch.ao.quantization.prepare``), or ``""``."""
    return get_full_name_for_node(call.func) or ""


def callee_attr(call: cst.Call) -> str:
    """The last component of the callee (``prepare`` for ``tq.prepare(m)``)."""
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return func.value if isinstance(func, cst.Name) else ""


def receiver(call: cst.Call) -> cst.BaseExpression | None:
    """``x`` in ``x.method(...)``."""
    return call.func.value if isinstance(call.func, cst.Attribute) else None


def argument(call: cst.Call, position: int, keyword: str) -> cst.BaseExpression | None:
    """The argument at ``position`` (when given positionally) or named ``keyword``."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    return positional[position] if position < len(positional) else None


def keyword_true(call: cst.Call, keyword: str) -> bool:
    """``keyword=True`` is passed literally."""
    value = argument(call, 10**6, keyword)
    return isinstance(value, cst.Name) and value.value == "True"


def root_name(expr: cst.BaseExpression) -> str | None:
    """The name an attribute / subscript / method-call chain starts from (``m`` for ``m.a[0].b()``)."""
    while True:
        if isinstance(expr, cst.Name):
            return expr.value
        if isinstance(expr, (cst.Attribute, cst.Subscript)):
            expr = expr.value
        elif isinstance(expr, cst.Call):
            expr = expr.func
        else:
            return None


def mentions(node: cst.CSTNode, name: str) -> bool:
    """``name`` is read somewhere inside ``node`` (attribute names do not count)."""
    found = False

    class Visitor(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            nonlocal found
            found = found or n.value == name

        def visit_Attribute(self, n: cst.Attribute) -> bool:
            n.value.visit(self)
            return False

    node.visit(Visitor())
    return found


class ImportAliases(cst.CSTVisitor):
    """Local name -> dotted origin of every import (``tq`` -> ``torch.ao.quantization``), in ``aliases``."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = get_full_name_for_node(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.aliases[alias.asname.name.value] = full
            else:
                self.aliases.setdefault(full.split(".")[0], full.split(".")[0])

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        base = get_full_name_for_node(node.module) or ""
        for alias in node.names:
            name = get_full_name_for_node(alias.name) or ""
            asname = alias.asname.name if alias.asname is not None else None
            self.aliases[asname.value if isinstance(asname, cst.Name) else name] = f"{base}.{name}"


def import_aliases(module: cst.Module) -> dict[str, str]:
    """The file's import aliases (see ``ImportAliases``)."""
    visitor = ImportAliases()
    module.visit(visitor)
    return visitor.aliases


def qualified(name: str, aliases: dict[str, str]) -> str:
    """``name`` with its first component expanded through the file's imports."""
    head, _, rest = name.partition(".")
    origin = aliases.get(head)
    if origin is None:
        return name
    return f"{origin}.{rest}" if rest else origin


def is_quant_api(call: cst.Call, names: Container[str], aliases: dict[str, str]) -> bool:
    """A quantization API call named in ``names``: distinctive names always, ``prepare``/``convert``
    only from a quantization module (``tq.prepare``, ``from torch.ao.quantization import convert``)."""
    attr = callee_attr(call)
    if attr not in names:
        return False
    if attr not in ("prepare", "convert"):
        return True
    full = qualified(callee(call), aliases)
    return "quantiz" in full or "pt2e" in full


class PipelineScan:
    """Statement-order dataflow over one body; subclasses react to calls and assignments."""

    post_order = False  # hand over a statement's calls outer first (False) or in evaluation order (True)

    def __init__(self, index):
        self.index = index
        self.branch: Branch = ()  # where the statement being scanned sits

    def scan(self, statements: Sequence[cst.CSTNode]) -> Iterator[Diagnostic]:
        for small, self.branch in walk(statements):
            value = getattr(small, "value", None)
            if not isinstance(value, cst.BaseExpression):
                continue
            for call in calls(value, self.post_order):
                yield from self.on_call(call)
            targets: list[cst.BaseExpression] = []
            if isinstance(small, cst.Assign):
                targets = [t.target for t in small.targets]
            elif isinstance(small, cst.AnnAssign):
                targets = [small.target]
            for target in targets:
                yield from self.on_assign(target, value)

    def on_call(self, call: cst.Call) -> Iterator[Diagnostic]:
        """A call, in the order chosen by ``post_order``."""
        return iter(())

    def on_assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> Iterator[Diagnostic]:
        """``target = value``, after the calls of ``value``."""
        return iter(())


# ---- models prepared without their fuse_model() -----------------------------------------------------

# methods that return the module itself
SAME_OBJECT_METHODS = {"eval", "train", "cpu", "cuda", "to", "float", "half", "double", "requires_grad_"}

PREPARE_CALLS = {"prepare": False, "prepare_qat": True}  # eager prepare -> is QAT
FUSING_CALLS = {"fuse_model", "fuse_modules", "fuse_modules_qat"}


def prepared_unfused(index, expression: str) -> list[tuple[str, cst.Call, bool]]:
    """(name, prepare call, is QAT) for each name bound to ``expression`` (``build_model()``, possibly
    followed by ``.eval()``) in one body and handed to ``prepare``/``prepare_qat`` with no
    ``name.fuse_model()`` or ``fuse_modules*(name, ...)`` in between."""
    found: list[tuple[str, cst.Call, bool]] = []
    for body in bodies(index):
        scan = _PreparedUnfused(index, expression)
        list(scan.scan(body))
        found += scan.found
    return found


class _PreparedUnfused(PipelineScan):
    """Names bound to the model's expression, dropped once fused; a ``prepare`` of one is a finding."""

    def __init__(self, index, expression: str):
        super().__init__(index)
        self.wanted = _squash(expression)
        self.built: set[str] = set()
        self.found: list[tuple[str, cst.Call, bool]] = []

    def on_call(self, call: cst.Call) -> Iterator[Diagnostic]:
        attr = callee_attr(call)
        target = receiver(call) if attr == "fuse_model" else argument(call, 0, "model")
        if isinstance(target, cst.Name) and target.value in self.built:
            if attr in PREPARE_CALLS:
                self.found.append((target.value, call, PREPARE_CALLS[attr]))
            if attr in PREPARE_CALLS or attr in FUSING_CALLS:
                self.built.discard(target.value)
        return iter(())

    def on_assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> Iterator[Diagnostic]:
        if isinstance(target, cst.Name):
            if _squash(self.index.module.code_for_node(_strip_same_object(value))) == self.wanted:
                self.built.add(target.value)
            elif not (isinstance(value, cst.Call) and callee_attr(value) in PREPARE_CALLS):
                self.built.discard(target.value)
        return iter(())


def _squash(code: str) -> str:
    return "".join(code.split()).replace("'", '"')


def _strip_same_object(value: cst.BaseExpression) -> cst.BaseExpression:
    """``build_model().eval()`` -> ``build_model()`` (calls that return the module itself)."""
    while (
        isinstance(value, cst.Call)
        and isinstance(value.func, cst.Attribute)
        and value.func.attr.value in SAME_OBJECT_METHODS
    ):
        value = value.func.value
    return value


# ---- functions of the file that fuse a model by hand --------------------------------------------


def fusing_functions(index) -> list[tuple[str, list[cst.Call]]]:
    """(name, calls of it) for each module-level function of the file that fuses its first
    parameter by hand (``fuse_modules(m, [...])`` / ``fuse_modules_qat(m[i][0], [...])``, the
    receiver rooted at that parameter): the pipeline's own fusion. ``calls`` are where the file
    calls the function (the pipeline's line), possibly none."""
    found = []
    for statement in index.module.body:
        if not isinstance(statement, cst.FunctionDef) or not statement.params.params:
            continue
        param = statement.params.params[0].name.value
        fuses = [
            c
            for c in calls(statement)
            if callee_attr(c) in ("fuse_modules", "fuse_modules_qat")
            and (target := argument(c, 0, "model")) is not None
            and root_name(target) == param
        ]
        if fuses:
            name = statement.name.value
            uses = [site.node for site in index.calls if site.name == name]
            found.append((name, uses))
    return found
