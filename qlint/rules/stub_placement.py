"""Stub rules: quantization modules that live outside the module tree ``prepare``/``convert`` walk.

QL106 FloatFunctional built in ``forward`` (a fresh module per call; fixed by creating it in ``__init__``);
QL107 QuantStub/DeQuantStub called outside the model. Torch-free: nothing is imported or executed.

QL107's fix: QL107: a QuantStub/DeQuantStub called outside the model -> remove the dead call.

A stub that is never a submodule of a prepared model stays an identity, so ``img = quant(img)`` does
nothing: the line goes, ``model(quant(img))`` becomes ``model(img)``, ``QuantStub()(x)`` becomes ``x``.
A named stub is removed only when every use of its name is such a call; its binding
(``quant = QuantStub()``) then goes too. Safe: float and quantized behaviour are unchanged.
Imports are kept (another fix of the same round may start using them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst
from libcst.metadata import Assignment, ScopeProvider

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.rules.base import Basis, EditsFound, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, precomputed_fixes
from qlint.source.edit import FileText
from qlint.source.facts import calls_any, fact, one_pass
from qlint.source.index import self_attributes
from qlint.source.names import STUBS
from qlint.source.pipeline import callee, callee_attr

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.source.index import SourceIndex


class FloatfunctionalInForward(Rule):
    """## What it does
    Reports `FloatFunctional()` (any spelling: `nn.quantized.FloatFunctional`,
    `torch.ao.nn.quantized.FloatFunctional`, an imported name) constructed inside `forward` or a
    method `forward` calls.

    ## Why is this bad?
    `FloatFunctional` exists so that `prepare` can attach an observer to an add, mul or cat, and
    `convert` can swap it for `QFunctional`, which runs the op on quantized tensors. Both only
    see registered submodules. One created inside `forward` is a new object on every call: it is
    never observed and never swapped, so calibration runs, and then the converted model fails on
    the quantized tensors it receives. The wording depends on the torch version:

    ```text
    RuntimeError: empty_strided not supported on quantized tensors yet see https://github.com/pytorch/pytorch/issues/74540
    NotImplementedError: Could not run 'aten::add.Tensor' with arguments from the 'QuantizedCPU' backend.
    ```

    ## Fix safety
    Safe: the fix adds `self.<name> = FloatFunctional()` right after `super().__init__()` and
    uses that attribute where the object was built (in float, `FloatFunctional().add(a, b)` is
    `a + b`, so the float model does not change). The name comes from the local variable or the
    method called (`add_ff`), made unique in the class. One instance serves every call of that
    line, so an op inside a loop shares one observer: give each call site its own attribute if
    their ranges differ. No fix is offered when the class has no `__init__` calling
    `super().__init__()`, or when the object is assigned to a `self` attribute inside `forward`.

    ## References
    - [`torch.ao.nn.quantized.FloatFunctional`](https://pytorch.org/docs/stable/generated/torch.ao.nn.quantized.FloatFunctional.html) ("State collector class for float operations")
    - [pytorch/tutorials#1227](https://github.com/pytorch/tutorials/issues/1227) (a `FloatFunctional` built in `forward`)
    - torchvision's `models/quantization/resnet.py`: `self.skip_add = nn.quantized.FloatFunctional()` in `__init__`
    """

    code = "QL106"
    name = "floatfunctional-in-forward"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.SOURCE,)
    summary = "FloatFunctional() is built inside forward"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (moves it to `__init__`), when the class has an `__init__`"
    triggers = ("FloatFunctional",)
    examples = (
        Invalid(
            """\
import torch
import torch.ao.nn.quantized as nnq
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        out = nnq.FloatFunctional().add(self.conv(x), x)  # never observed, never converted
        return self.dequant(out)


print(Residual()(torch.rand(1, 8, 16, 16)).shape)
""",
            lines=(16,),
            fixed="""\
import torch
import torch.ao.nn.quantized as nnq
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.add_ff = nnq.FloatFunctional()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        out = self.add_ff.add(self.conv(x), x)  # never observed, never converted
        return self.dequant(out)


print(Residual()(torch.rand(1, 8, 16, 16)).shape)
""",
        ),
        Valid(
            """\
import torch
import torch.ao.nn.quantized as nnq
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.skip_add = nnq.FloatFunctional()  # a submodule: observed, then converted
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        out = self.skip_add.add(self.conv(x), x)
        return self.dequant(out)


print(Residual()(torch.rand(1, 8, 16, 16)).shape)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return floatfunctional_in_forward(index)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


class StubOutsideModel(Rule):
    """## What it does
    Reports a call of a `QuantStub` or `DeQuantStub` instance that is not a submodule of the
    model: a stub created at script or function level and called there (`quant = QuantStub();
    img = quant(img)`), a stub built and called on the spot (`QuantStub()(x)`), or a stub held
    in a local variable of `forward`. Stubs registered in `__init__` (`self.quant = QuantStub()`)
    and stubs passed into a container (`nn.Sequential(QuantStub(), net, DeQuantStub())`) are
    fine.

    ## Why is this bad?
    `prepare` and `convert` only see the submodules of the model they are given. A stub outside
    the model never gets an observer and is never swapped for `Quantize`/`DeQuantize`: it stays
    an identity. The tensor it "quantizes" is still a float tensor, so the converted model fails
    at its first quantized layer (seed 002, on torch 1.4):

    ```text
    RuntimeError: Could not run 'quantized::conv2d' with arguments from the 'CPUTensorId' backend.
    'quantized::conv2d' is only available for these backends: [QuantizedCPUTensorId].
    ```

    A `DeQuantStub` outside the model is an identity as well: the output stays quantized.

    ## Use instead
    For a model you cannot edit (e.g. a torchvision model), wrap it before `prepare`:
    `model = torch.ao.quantization.QuantWrapper(model)` adds both stubs around its `forward`.

    ## Fix safety
    Safe: a stub outside the model is an identity, so the fix only removes dead code and the script
    computes exactly what it did before, float and quantized. `img = quant(img)` on its own line is
    deleted; elsewhere the call is replaced by its argument (`model(quant(img))` becomes `model(img)`,
    `QuantStub()(x)` becomes `x`). Once every call of a named stub is gone, its `quant = QuantStub()`
    line goes too; imports are kept.

    The fix is offered only for a call with one positional argument, and for a named stub only when
    every use of the name is such a call: a stub that is configured (`quant.qconfig = ...`), prepared
    or passed anywhere is left alone. The fix does not put stubs into the model: add
    `QuantStub`/`DeQuantStub` attributes in `__init__` and call them at the start and end of `forward`,
    or wrap the model in `QuantWrapper` (QL101 and QL102 report, and fix, any remaining float input or
    quantized output).

    ## References
    - [Eager mode static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization) (stubs are part of the model)
    - [`torch.ao.quantization.QuantWrapper`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.QuantWrapper.html)
    - [pytorch/pytorch#34583](https://github.com/pytorch/pytorch/issues/34583) (`Could not run 'quantized::conv2d' with arguments from the 'CPU' backend`)
    - seed 002: `quant = QuantStub(); img = quant(img)` next to a converted vgg16; the answer: "QuantStub() need to be added to the model instead of using it directly"
    """

    code = "QL107"
    name = "stub-outside-model"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.SOURCE,)
    summary = "a QuantStub/DeQuantStub is called outside the model"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (removes the no-op call), when the stub is used nowhere else"
    triggers = ("QuantStub",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantStub, convert, get_default_qconfig, prepare


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


model = Net().eval()
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
for _ in range(4):
    prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)

quant = QuantStub()
img = quant(torch.rand(1, 3, 32, 32))  # an identity: img is still a float tensor
output = qmodel(img)  # NotImplementedError: Could not run 'quantized::conv2d.new' ... 'CPU' backend
""",
            lines=(24,),
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantStub, convert, get_default_qconfig, prepare


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


model = Net().eval()
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
for _ in range(4):
    prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)

img = torch.rand(1, 3, 32, 32)  # an identity: img is still a float tensor
output = qmodel(img)  # NotImplementedError: Could not run 'quantized::conv2d.new' ... 'CPU' backend
""",
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, convert, get_default_qconfig, prepare


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.relu = nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        return self.dequant(self.relu(self.conv(x)))


model = Net().eval()
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
for _ in range(4):
    prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
output = qmodel(torch.rand(1, 3, 32, 32))  # float in, float out
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return stub_outside_model(index)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return outside_stub_fixes(ctx, items)


# QL107 -------------------------------------------------------------------------------------------


def stub_outside_model(index: SourceIndex) -> Iterator[Diagnostic]:
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


def floatfunctional_in_forward(index: SourceIndex) -> Iterator[Diagnostic]:
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
                    data=EditsFound(fix),
                )


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


def outside_stub_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
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
            scopes = file.wrapper.resolve(ScopeProvider)
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
