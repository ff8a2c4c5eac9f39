"""Stub rules: quantization modules that live outside the module tree ``prepare``/``convert`` walk.

QL106 FloatFunctional built in ``forward`` (a fresh module per call; fixed by creating it in ``__init__``);
QL107 QuantStub/DeQuantStub called outside the model. Torch-free: nothing is imported or executed.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix
from qlint.rules._source_helpers import calls_any, fact, one_pass
from qlint.rules.registry import source_rule
from qlint.source.index import self_attributes
from qlint.source.pipeline import callee, callee_attr

STUBS = {"QuantStub", "DeQuantStub"}


# QL107 -------------------------------------------------------------------------------------------


@source_rule("QL107")
def stub_outside_model(index) -> Iterator[Diagnostic]:
    if not calls_any(index, STUBS):
        return
    scopes = fact(index, _StubScopes)
    in_forward = {id(index.classes[cls].methods[m]) for cls in index.module_classes for m in index.forward_closure(cls)}
    for chain, call in scopes.calls:
        func = call.func
        if isinstance(func, cst.Call) and callee_attr(func) in STUBS:
            kind, name = callee_attr(func), None
        elif isinstance(func, cst.Name) and (kind := scopes.stub_kind(chain, func.value)):
            name = func.value
        else:
            continue
        inside = any(id(scope) in in_forward for scope in chain)
        what = f"`{name}` ({kind})" if name else f"a {kind} built on the spot"
        effect = "its input stays float" if kind == "QuantStub" else "its input stays quantized"
        where = "inside `forward`, but it is not a submodule" if inside else "outside any nn.Module's `forward`"
        yield index.diagnostic(
            "QL107",
            f"{what} is called {where}: `prepare`/`convert` never see it, so it stays an identity and "
            f"{effect}; create it in the model's `__init__` and call it in `forward` (or wrap the model in "
            "`QuantWrapper`)",
            call,
        )


@one_pass
class _StubScopes(cst.CSTVisitor):
    """Names bound to QuantStub/DeQuantStub instances, per scope, and the calls that may use them."""

    def __init__(self) -> None:
        self.chain: list[cst.CSTNode | None] = [None]  # None = the module scope
        self.bound: dict[tuple[int, str], str | None] = {}  # (scope id, name) -> stub kind, None = other
        self.calls: list[tuple[tuple, cst.Call]] = []

    def _scope_id(self, scope: cst.CSTNode | None) -> int:
        return 0 if scope is None else id(scope)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.chain.append(node)
        for param in (*node.params.params, *node.params.posonly_params, *node.params.kwonly_params):
            self.bound[(id(node), param.name.value)] = None

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.chain.pop()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.chain.append(node)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.chain.pop()

    def visit_Assign(self, node: cst.Assign) -> None:
        kind = callee_attr(node.value) if isinstance(node.value, cst.Call) else None
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                key = (self._scope_id(self.chain[-1]), target.target.value)
                if self.bound.get(key) is None:
                    self.bound[key] = kind if kind in STUBS else None

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append((tuple(self.chain), node))

    def stub_kind(self, chain: tuple, name: str) -> str | None:
        """The stub kind ``name`` holds where it is read: its innermost binding scope, else the module."""
        for depth, scope in enumerate(reversed(chain)):
            if isinstance(scope, cst.ClassDef) and depth > 0:
                continue
            key = (self._scope_id(scope), name)
            if key in self.bound:
                return self.bound[key]
        return None


# QL106 -------------------------------------------------------------------------------------------


@source_rule("QL106")
def floatfunctional_in_forward(index) -> Iterator[Diagnostic]:
    for cls, info in index.module_classes.items():
        if not any(site.attr == "FloatFunctional" for site in index.calls_in(cls, index.forward_closure(cls))):
            continue
        taken = self_attributes(info.node) | _MODULE_ATTRIBUTES
        insertion = _init_insertion(index, info)
        for method in sorted(index.forward_closure(cls)):
            for call, hint in _floatfunctional_calls(info.methods[method]):
                fix = None
                if insertion is not None and hint is not None:
                    attr = _unique(hint, taken)
                    where, indent = insertion
                    span = index.span(call)
                    line = f"\n{indent}self.{attr} = {index.module.code_for_node(call)}"
                    fix = Fix(
                        Applicability.SAFE,
                        f"Create `self.{attr}` in `__init__`",
                        (Edit(line, where, where), Edit(f"self.{attr}", (span.line, span.col), span.end)),
                    )
                yield index.diagnostic(
                    "QL106",
                    f"`{callee(call)}()` is built inside `{cls}.{method}`: a new module on every call, "
                    "never a submodule, so it gets no observer and `convert` never swaps it (its ops then "
                    "fail on quantized tensors); create it once in `__init__`",
                    call,
                ).with_changes(fix=fix)


def _floatfunctional_calls(method: cst.FunctionDef) -> list[tuple[cst.Call, str | None]]:
    """FloatFunctional constructions in ``method`` with a name hint for the attribute (None: no fix)."""
    found: dict[int, tuple[cst.Call, str | None]] = {}

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            if _is_floatfunctional(node.value):
                target = node.targets[0].target
                found[id(node.value)] = (node.value, target.value if isinstance(target, cst.Name) else None)

        def visit_Attribute(self, node: cst.Attribute) -> None:
            if _is_floatfunctional(node.value) and id(node.value) not in found:
                found[id(node.value)] = (node.value, f"{node.attr.value}_ff")

        def visit_Call(self, node: cst.Call) -> None:
            if _is_floatfunctional(node) and id(node) not in found:
                found[id(node)] = (node, "ff")

    method.body.visit(Visitor())
    return list(found.values())


def _is_floatfunctional(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Call) and callee_attr(node) == "FloatFunctional"


# names an nn.Module already uses: an attribute must not shadow them
_MODULE_ATTRIBUTES = {
    "forward", "training", "train", "eval", "to", "cpu", "cuda", "float", "half", "double", "type", "apply",
    "add_module", "register_buffer", "register_module", "parameters", "buffers", "children", "modules",
    "state_dict", "load_state_dict", "zero_grad", "qconfig", "add", "cat", "mul",
}  # fmt: skip


def _unique(hint: str, taken: set[str]) -> str:
    name, n = hint, 2
    while name in taken:
        name, n = f"{hint}{n}", n + 1
    taken.add(name)
    return name


def _init_insertion(index, info) -> tuple[tuple[int, int], str] | None:
    """The end of the ``super().__init__(...)`` line in ``__init__`` and its indentation, if there is one."""
    init = info.methods.get("__init__")
    if init is None or not isinstance(init.body, cst.IndentedBlock):
        return None
    for statement in init.body.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            value = getattr(small, "value", None)
            if isinstance(value, cst.Call) and callee_attr(value) == "__init__":
                span = index.span(statement)
                first, last = index.source.line_text(span.line), index.source.line_text(span.end[0])
                return (span.end[0], len(last) + 1), first[: len(first) - len(first.lstrip())]
    return None
