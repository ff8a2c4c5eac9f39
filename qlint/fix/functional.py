"""QL103 / QL104: tensor arithmetic and ``torch.cat`` on quantized tensors -> one FloatFunctional per site.

``out += identity`` -> ``out = self.skip_add.add(out, identity)``; ``a * b`` -> ``self.mul.mul(a, b)``;
``x + 1.0`` -> ``self.add_scalar.add_scalar(x, 1.0)``; ``torch.cat(xs, 1)`` -> ``self.cat.cat(xs, 1)``;
an add immediately followed by a ReLU of its result -> ``self.skip_add_relu.add_relu(a, b)``.
In float, a FloatFunctional computes exactly the op it replaces and holds no state: the fix is safe
(unsafe only for ``x += y`` on a function parameter, whose in-place update the caller could see).
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix
from qlint.fix.common import FLOAT_FUNCTIONAL, declare, spelled
from qlint.fix.context import FixContext
from qlint.fix.source import attribute_assignments, free_name, methods, parameters
from qlint.source.index import self_attributes

_AUG = {"`+=`": cst.AddAssign, "`*=`": cst.MultiplyAssign, "`@=`": cst.MatrixMultiplyAssign}
_BIN = {"`+`": cst.Add, "`*`": cst.Multiply, "`@`": cst.MatrixMultiply}
_METHOD = {cst.Add: "add", cst.AddAssign: "add", cst.Multiply: "mul", cst.MultiplyAssign: "mul",
           cst.MatrixMultiply: "matmul", cst.MatrixMultiplyAssign: "matmul"}  # fmt: skip
_FUNCTIONS = {"add": "add", "mul": "mul", "multiply": "mul", "matmul": "matmul", "cat": "cat",
              "concat": "cat", "concatenate": "cat"}  # fmt: skip
_NAMES = {"add": "skip_add", "add_relu": "skip_add_relu", "add_scalar": "add_scalar", "mul": "mul",
          "mul_scalar": "mul_scalar", "cat": "cat", "matmul": "matmul"}  # fmt: skip
_RELU_CLASSES = {"ReLU", "nn.ReLU", "torch.nn.ReLU"}
_RELU_FUNCTIONS = {"F.relu", "torch.relu", "torch.nn.functional.relu", "nn.functional.relu"}


@dataclass
class _Site:
    index: int
    diag: Diagnostic
    cls: cst.ClassDef
    method: str  # FloatFunctional method
    args: tuple[str, str] | None  # operands (code), None: keep the call's own arguments
    replace: cst.CSTNode  # node replaced (or whose func is replaced)
    func_only: bool = False
    assign_to: str | None = None  # "t = ..." (augmented assignment / add-relu)
    until: cst.CSTNode | None = None  # add-relu: the ReLU statement, replaced too
    unsafe: bool = False


def fixes(ctx: FixContext, items: list[tuple[int, Diagnostic]]) -> dict[int, Fix]:
    sites = [s for s in (_site(ctx, i, d) for i, d in items) if s is not None]
    out: dict[int, Fix] = {}
    by_class: dict[int, list[_Site]] = {}
    for site in sites:
        by_class.setdefault(id(site.cls), []).append(site)
    ff, import_edits = spelled(ctx, FLOAT_FUNCTIONAL)
    for group in by_class.values():
        taken = self_attributes(group[0].cls)
        group.sort(key=lambda s: ctx.file.start(s.replace))
        for site in group:
            name = free_name(_NAMES[site.method], taken)
            declaration = declare(ctx, site.cls, [f"self.{name} = {ff}()"])
            if declaration is None:
                continue
            call = f"self.{name}.{site.method}"
            edits = [declaration, *import_edits, _replacement(ctx, site, call)]
            what = f"`self.{name}.{site.method}(...)`"
            out[site.index] = Fix(
                Applicability.UNSAFE if site.unsafe else Applicability.SAFE,
                f"Use a FloatFunctional: {what} (declared in `__init__`)",
                tuple(edits),
            )
    return out


def _replacement(ctx: FixContext, site: _Site, call: str) -> Edit:
    if site.func_only:
        return ctx.file.replace(site.replace.func, call)
    text = f"{call}({site.args[0]}, {site.args[1]})"
    if site.assign_to is not None:
        text = f"{site.assign_to} = {text}"
    if site.until is not None:
        return Edit(text, ctx.file.start(site.replace), ctx.file.end(site.until))
    return ctx.file.replace(site.replace, text)


def _site(ctx: FixContext, index: int, diag: Diagnostic) -> _Site | None:
    op = str(diag.get("op", ""))
    file = ctx.file
    site: _Site | None = None
    if op in _AUG:
        for node in file.nodes_at(diag.span, (cst.AugAssign,)):
            if isinstance(node.operator, _AUG[op]):
                method = _METHOD[type(node.operator)]
                target = file.code(node.target)
                site = _Site(index, diag, None, method, (target, file.code(node.value)), node, assign_to=target)
                fn = file.enclosing_function(node)
                site.unsafe = isinstance(node.target, cst.Name) and fn is not None and target in parameters(fn)
                break
    elif op in _BIN:
        for node in file.nodes_at(diag.span, (cst.BinaryOperation,)):
            if isinstance(node.operator, _BIN[op]):
                site = _Site(
                    index,
                    diag,
                    None,
                    _METHOD[type(node.operator)],
                    (file.code(node.left), file.code(node.right)),
                    node,
                )
                break
    elif op in (".add()", ".mul()", ".matmul()"):
        for node in file.nodes_at(diag.span, (cst.Call,)):
            if isinstance(node.func, cst.Attribute) and f".{node.func.attr.value}()" == op and _plain_args(node, 1):
                site = _Site(
                    index,
                    diag,
                    None,
                    op[1:-2],
                    (file.code(node.func.value), file.code(node.args[0].value)),
                    node,
                )
                break
    elif op.startswith("torch."):
        leaf = op.rsplit(".", 1)[-1]
        for node in file.nodes_at(diag.span, (cst.Call,)):
            name = get_full_name_for_node(node.func) or ""
            if leaf in _FUNCTIONS and name.rsplit(".", 1)[-1] == leaf and _fixable_call(node, _FUNCTIONS[leaf]):
                method = _FUNCTIONS[leaf]
                if method == "cat":
                    site = _Site(index, diag, None, "cat", None, node, func_only=True)
                else:
                    site = _Site(
                        index,
                        diag,
                        None,
                        method,
                        (file.code(node.args[0].value), file.code(node.args[1].value)),
                        node,
                    )
                break
    if site is None:
        return None
    site.cls = file.enclosing_class(site.replace)
    if site.cls is None or file.enclosing_function(site.replace) is None or "__init__" not in methods(site.cls):
        return None
    if site.method in ("add", "mul") and site.args is not None:
        _scalar(ctx, site)
        if site.method == "add":
            _add_relu(ctx, site)
    return site


def _plain_args(call: cst.Call, count: int) -> bool:
    return len(call.args) == count and all(a.keyword is None and not a.star for a in call.args)


def _fixable_call(call: cst.Call, method: str) -> bool:
    if method == "cat":
        return (
            bool(call.args)
            and all(a.keyword is None or a.keyword.value == "dim" for a in call.args)
            and not any(a.star for a in call.args)
        )
    return _plain_args(call, 2)


def _is_number(code: str) -> bool:
    try:
        value = float(code.replace("_", ""))
    except ValueError:
        return False
    return value == value


def _scalar(ctx: FixContext, site: _Site) -> None:
    """``x + 1.0`` / ``2 * x``: the scalar forms (the tensor goes first)."""
    left, right = site.args
    if _is_number(right):
        site.method = f"{site.method}_scalar"
    elif _is_number(left) and site.assign_to is None:
        site.method, site.args = f"{site.method}_scalar", (right, left)


def _add_relu(ctx: FixContext, site: _Site) -> None:
    """``t = a + b`` (or ``t += b``) directly followed by ``t = relu(t)`` -> one ``add_relu``."""
    file = ctx.file
    statement = file.statement_of(site.replace)
    if statement is None or len(statement.body) != 1:
        return
    small = statement.body[0]
    if site.assign_to is not None:
        target = site.assign_to
    elif isinstance(small, cst.Assign) and small.value is site.replace and len(small.targets) == 1:
        target = file.code(small.targets[0].target)
    else:
        return
    block = file.parents.get(statement)
    body = list(getattr(block, "body", ()))
    if statement not in body or body.index(statement) + 1 >= len(body):
        return
    nxt = body[body.index(statement) + 1]
    if (
        not isinstance(nxt, cst.SimpleStatementLine)
        or len(nxt.body) != 1
        or any(line.comment is not None for line in nxt.leading_lines)
    ):
        return
    assign = nxt.body[0]
    if not (
        isinstance(assign, cst.Assign) and len(assign.targets) == 1 and file.code(assign.targets[0].target) == target
    ):
        return
    call = assign.value
    if not (isinstance(call, cst.Call) and call.args and file.code(call.args[0].value) == target):
        return
    if not all(a.keyword is not None and a.keyword.value == "inplace" for a in call.args[1:]):
        return
    name = get_full_name_for_node(call.func) or ""
    relu = name in _RELU_FUNCTIONS
    if name.startswith("self.") and name.count(".") == 1:
        init = methods(site.cls).get("__init__")
        declared = attribute_assignments(init, name[5:]) if init is not None else []
        relu = len(declared) == 1 and _constructs_relu(declared[0])
    if relu:
        site.method, site.until = "add_relu", nxt
        site.assign_to = target
        site.replace = small if site.replace is not small and isinstance(small, cst.AugAssign) else site.replace
        if isinstance(small, cst.Assign):
            site.replace = small


def _constructs_relu(statement: cst.SimpleStatementLine) -> bool:
    value = statement.body[0].value
    return isinstance(value, cst.Call) and (get_full_name_for_node(value.func) or "") in _RELU_CLASSES
