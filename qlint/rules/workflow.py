"""Workflow source rules: how the script around a model quantizes it.

QL106 FloatFunctional built in ``forward``; QL107 stubs called outside the model; QL402 qconfig for one
engine, engine set (or defaulting) to another; QL403 ``prepare`` then ``convert`` with no calibration;
QL404 fusing / calibrating in training mode; QL405 the deprecated ``torch.quantization`` namespace;
QL406 QAT and PTQ pieces mixed. Torch-free: nothing is imported or executed.
"""

from __future__ import annotations

import platform
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related
from qlint.rules.registry import source_rule
from qlint.source.pipeline import (
    Branch,
    ImportAliases,
    PipelineScan,
    argument,
    callee,
    callee_attr,
    calls,
    exclusive,
    keyword_true,
    mentions,
    qualified,
    receiver,
    root_name,
)

STUBS = {"QuantStub", "DeQuantStub"}
PREPARE_PTQ = {"prepare", "prepare_fx", "prepare_pt2e"}
PREPARE_QAT = {"prepare_qat", "prepare_qat_fx", "prepare_qat_pt2e"}
CONVERT = {"convert", "convert_fx", "convert_pt2e", "convert_to_reference_fx"}
QCONFIG_GETTERS = {
    "get_default_qconfig", "get_default_qat_qconfig", "get_default_qconfig_mapping",
    "get_default_qat_qconfig_mapping", "get_default_qconfig_dict", "get_default_qat_qconfig_dict",
}  # fmt: skip
# engines whose default qconfigs are interchangeable: x86 runs fbgemm kernels and both use
# reduce_range=True activations with per-channel weights; onednn and qnnpack use reduce_range=False
ENGINE_FAMILY = {"x86": "x86", "fbgemm": "x86", "onednn": "onednn", "qnnpack": "qnnpack"}
# methods that return the module itself
SAME_OBJECT_METHODS = {"eval", "train", "cpu", "cuda", "to", "float", "half", "double", "requires_grad_"}
NON_CALIBRATING_METHODS = SAME_OBJECT_METHODS | {
    "state_dict", "parameters", "named_parameters", "modules", "named_modules", "children", "named_children",
    "buffers", "named_buffers", "apply", "zero_grad", "print_readable", "register_forward_hook",
    "register_forward_pre_hook", "add_module", "register_buffer", "get_submodule", "extra_repr",
}  # fmt: skip
NON_CALIBRATING_FUNCTIONS = PREPARE_PTQ | PREPARE_QAT | CONVERT | {
    "print", "repr", "str", "len", "type", "isinstance", "id", "hasattr", "getattr", "setattr", "vars", "dir",
    "deepcopy", "copy", "fuse_modules", "fuse_modules_qat", "fuse_fx", "propagate_qconfig_", "add_observer_",
    "move_exported_model_to_eval", "move_exported_model_to_train", "disable_observer", "enable_observer",
}  # fmt: skip
DEPRECATED_NAMESPACES = {
    "torch.quantization": "torch.ao.quantization",
    "torch.nn.quantized": "torch.ao.nn.quantized",
    "torch.nn.intrinsic": "torch.ao.nn.intrinsic",
    "torch.nn.qat": "torch.ao.nn.qat",
    "torch.nn.quantizable": "torch.ao.nn.quantizable",
}
# submodules that moved elsewhere, or have no torch.ao home (not reported: nothing to suggest)
MOVED_SUBMODULES = {("torch.quantization", "_numeric_suite"): "torch.ao.ns",
                    ("torch.quantization", "_numeric_suite_fx"): "torch.ao.ns"}  # fmt: skip
NO_AO_HOME = {("torch.quantization", "_quantized_conversions"), ("torch.nn.quantized", "_reference")}


# One pass for the module-wide facts ---------------------------------------------------------------


@dataclass
class _Facts:
    stubs: _StubScopes
    engines: _EngineAssignments
    strings: _StringConstants
    namespaces: _NamespaceFinder
    imports: ImportAliases


_FACTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _facts(index) -> _Facts:
    """Every module-wide fact these rules need, from one libcst pass over the file (cached per index)."""
    facts = _FACTS.get(index)
    if facts is None:
        facts = _Facts(
            _StubScopes(), _EngineAssignments(), _StringConstants(), _NamespaceFinder(), ImportAliases()
        )
        index.module.visit(
            _Composite(facts.stubs, facts.engines, facts.strings, facts.namespaces, facts.imports)
        )
        _FACTS[index] = facts
    return facts


class _Composite(cst.CSTVisitor):
    """Runs several visitors in one traversal (none of them prunes the tree)."""

    def __init__(self, *visitors: cst.CSTVisitor):
        self.visitors = visitors

    def on_visit(self, node: cst.CSTNode) -> bool:
        for visitor in self.visitors:
            visitor.on_visit(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        for visitor in self.visitors:
            visitor.on_leave(original_node)


def _calls_any(index, names: set[str]) -> bool:
    return any(site.attr in names for site in index.calls)


# QL107 -------------------------------------------------------------------------------------------


@source_rule("QL107")
def stub_outside_model(index) -> Iterator[Diagnostic]:
    if not _calls_any(index, STUBS):
        return
    scopes = _facts(index).stubs
    in_forward = {
        id(index.classes[cls].methods[m]) for cls in index.module_classes for m in index.forward_closure(cls)
    }
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
        where = (
            "inside `forward`, but it is not a submodule" if inside else "outside any nn.Module's `forward`"
        )
        yield index.diagnostic(
            "QL107",
            f"{what} is called {where}: `prepare`/`convert` never see it, so it stays an identity and "
            f"{effect}; create it in the model's `__init__` and call it in `forward` (or wrap the model in "
            "`QuantWrapper`)",
            call,
        )


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
        if not any(
            site.attr == "FloatFunctional" for site in index.calls_in(cls, index.forward_closure(cls))
        ):
            continue
        taken = _self_attributes(info.node) | set(info.methods) | _MODULE_ATTRIBUTES
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


def _self_attributes(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Attribute(self, n: cst.Attribute) -> None:
            if isinstance(n.value, cst.Name) and n.value.value == "self":
                names.add(n.attr.value)

    node.visit(Visitor())
    return names


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


# QL402 -------------------------------------------------------------------------------------------

_X86_MACHINES = {"x86_64", "amd64", "i386", "i686", "x86"}


def host_engine(machine: str | None = None) -> str | None:
    """The engine torch defaults to on this host, without importing torch: "x86" on x86 CPUs,
    "qnnpack" on ARM, None when unsure."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in _X86_MACHINES:
        return "x86"
    if machine.startswith(("arm", "aarch64")):
        return "qnnpack"
    return None


@source_rule("QL402")
def qconfig_engine_mismatch(index) -> Iterator[Diagnostic]:
    if not _calls_any(index, QCONFIG_GETTERS):
        return
    facts = _facts(index)
    if facts.engines.unreadable:
        return  # the engine is set in a way qlint cannot read: nothing to compare with
    strings = facts.strings.values
    engines: list[tuple[str, cst.CSTNode]] = []
    for node, value in facts.engines.found:
        engine = _resolve_string(value, strings)
        if engine not in ENGINE_FAMILY:
            return  # set from something qlint cannot read: nothing to compare with
        engines.append((engine, node))
    host = host_engine()
    for site in index.calls:
        if site.attr not in QCONFIG_GETTERS:
            continue
        expr = argument(site.node, 0, "backend")
        backend = "x86" if expr is None else _resolve_string(expr, strings)  # torch's default argument
        if backend not in ENGINE_FAMILY:
            continue
        call = f'`{site.attr}("{backend}")`'
        if engines:
            if any(ENGINE_FAMILY[e] == ENGINE_FAMILY[backend] for e, _ in engines):
                continue
            shown = ", ".join(sorted({f'"{e}"' for e, _ in engines}))
            where = f"is set to {shown} in this file"
            related = tuple(Related(index.span(n), f'the engine is set to "{e}" here') for e, n in engines)
        elif host is not None and ENGINE_FAMILY[host] != ENGINE_FAMILY[backend]:
            where = f'is never set in this file, so it defaults to "{host}" on this {platform.machine()} host'
            related = ()
        else:
            continue
        engine = "/".join(sorted({e for e, _ in engines})) if engines else host
        effect = _MISMATCH_EFFECT.get(
            (ENGINE_FAMILY[backend], ENGINE_FAMILY[engines[0][0] if engines else host]), ""
        )
        yield index.diagnostic(
            "QL402",
            f"{call} builds observers for the {backend} engine, but `torch.backends.quantized.engine` "
            f"{where}: `convert` packs the weights for {engine} and inference runs {engine} kernels with "
            f"qparams chosen for {backend}{effect}; use one engine name for both",
            site.node,
        ).with_changes(related=related)


_MISMATCH_EFFECT = {
    ("qnnpack", "x86"): " (reduce_range=False activations can saturate fbgemm kernels on CPUs without VNNI)",
    ("onednn", "x86"): " (reduce_range=False activations can saturate fbgemm kernels on CPUs without VNNI)",
    ("x86", "qnnpack"): " (reduce_range=True activations waste one bit of range)",
    ("x86", "onednn"): " (reduce_range=True activations waste one bit of range)",
}


class _EngineAssignments(cst.CSTVisitor):
    """``torch.backends.quantized.engine = ...`` statements; ``unreadable`` when the engine is also set
    some other way (``override_quantized_engine(...)``, ``setattr``)."""

    def __init__(self) -> None:
        self.found: list[tuple[cst.Assign, cst.BaseExpression]] = []
        self.unreadable = False

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if (get_full_name_for_node(target.target) or "").endswith("backends.quantized.engine"):
                self.found.append((node, node.value))

    def visit_Call(self, node: cst.Call) -> None:
        name = callee_attr(node)
        target = get_full_name_for_node(node.args[0].value) if node.args else None
        if name == "override_quantized_engine" or (name == "setattr" and "quantized" in (target or "")):
            self.unreadable = True


class _StringConstants(cst.CSTVisitor):
    """Names assigned exactly one string literal in the file, in ``values`` (None: anything else too)."""

    def __init__(self) -> None:
        self.values: dict[str, str | None] = {}

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                name = target.target.value
                value = node.value.evaluated_value if isinstance(node.value, cst.SimpleString) else None
                self.values[name] = value if self.values.get(name, value) == value else None

    def visit_Param(self, node: cst.Param) -> None:
        self.values[node.name.value] = None


def _resolve_string(expr: cst.BaseExpression, strings: dict[str, str | None]) -> str | None:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    if isinstance(expr, cst.Name):
        return strings.get(expr.value)
    return None


# QL405 -------------------------------------------------------------------------------------------


@source_rule("QL405")
def deprecated_namespace(index) -> Iterator[Diagnostic]:
    if not _OLD_NAMESPACE_TEXT.search(index.source.text):
        return
    finder = _facts(index).namespaces
    for node, old in finder.found:
        following = finder.following.get(id(node), set())
        if following & {sub for ns, sub in NO_AO_HOME if ns == old}:
            continue
        moved = {MOVED_SUBMODULES.get((old, sub)) for sub in following}
        if len(moved) > 1:
            continue  # e.g. `from torch.quantization import _numeric_suite, prepare`: two new homes
        new = moved.pop() if moved and None not in moved else DEPRECATED_NAMESPACES.get(old, "torch.ao")
        shown = "from torch import quantization" if old == "torch" else f"{old}"
        span = index.span(node)
        yield index.diagnostic(
            "QL405",
            f"`{shown}` is a deprecated alias kept for backward compatibility: use `{new}`",
            node,
        ).with_changes(
            fix=Fix(Applicability.SAFE, f"Use `{new}`", (Edit(new, (span.line, span.col), span.end),))
        )


_OLD_NAMESPACE_TEXT = re.compile(
    r"\btorch\s*\.\s*(quantization|nn\s*\.\s*(quantized|intrinsic|qat|quantizable))\b|\btorch\s+import\b"
)


class _NamespaceFinder(cst.CSTVisitor):
    """``torch.quantization``-like attribute chains, with the names that follow them."""

    def __init__(self) -> None:
        self.found: list[tuple[cst.CSTNode, str]] = []
        self.following: dict[int, set[str]] = {}

    def visit_Attribute(self, node: cst.Attribute) -> None:
        name = get_full_name_for_node(node)
        if name in DEPRECATED_NAMESPACES:
            self.found.append((node, name))
        if (
            isinstance(node.value, cst.Attribute)
            and get_full_name_for_node(node.value) in DEPRECATED_NAMESPACES
        ):
            self.following.setdefault(id(node.value), set()).add(node.attr.value)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        module = get_full_name_for_node(node.module)
        names = {get_full_name_for_node(a.name) or "" for a in node.names}
        if module in DEPRECATED_NAMESPACES:
            self.following.setdefault(id(node.module), set()).update(names)
        elif module == "torch" and names == {"quantization"}:
            self.found.append((node.module, "torch"))


# QL403, QL404, QL406 -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Model:
    """What a pipeline knows about one model object (names bound to it share the record)."""

    mode: str | None = None  # "train" / "eval" / None: unknown
    prepared: cst.Call | None = None  # the prepare* call that produced it
    qat: bool = False  # prepared by prepare_qat*
    contains_qat: bool = False  # wraps a model prepared by prepare_qat*
    calibrated: bool = False
    qconfig: str | None = None  # kind of `model.qconfig`: "ptq" / "qat" / "weight" (dynamic, weight-only)
    qat_next: bool = False  # prepare_qat* was applied to it later on
    pending_train: Diagnostic | None = None  # QL404 at prepare, kept if calibration runs in train mode
    fused_in_train: list[cst.Call] = field(default_factory=list)
    branch: Branch = ()  # where it was made (prepared copies: where prepare ran)
    prepared_branch: Branch = ()  # where it was prepared

    def copy(self, branch: Branch) -> _Model:
        model = _Model(self.mode, self.prepared, self.qat, self.contains_qat, self.calibrated, self.qconfig)
        model.branch = model.prepared_branch = branch
        return model


@source_rule("QL403", "QL404", "QL406")
def model_workflow(index) -> Iterator[Diagnostic]:
    steps = PREPARE_PTQ | PREPARE_QAT | CONVERT | {"fuse_modules"}
    where = {site.function for site in index.calls if site.attr in steps}  # None: the module body
    if not where:
        return
    aliases = _facts(index).imports.aliases
    functions = {f.name.value: f for f in index.functions}
    scanned = [index.module.body] if None in where else []
    scanned += [
        f.body.body
        for f in index.functions
        if f.name.value in where and isinstance(f.body, cst.IndentedBlock)
    ]
    for body in scanned:
        yield from _WorkflowScan(index, aliases, functions).scan(body)


class _WorkflowScan(PipelineScan):
    """Follows models through build -> eval/train -> fuse -> qconfig -> prepare -> calibrate -> convert."""

    post_order = True

    def __init__(self, index, aliases: dict[str, str], functions: dict[str, cst.FunctionDef]):
        super().__init__(index)
        self.aliases = aliases
        self.functions = functions
        self.models: dict[str, _Model] = {}
        self.made: dict[int, _Model] = {}  # id(call) -> the model a constructor / prepare call returned
        self.qconfig_names: dict[str, str | None] = {}
        self.seen: list[_Model] = []
        self.weight_only = False  # some module got a dynamic / weight-only qconfig: no calibration needed

    # -- the scan --------------------------------------------------------------------------------

    def scan(self, statements) -> Iterator[Diagnostic]:
        yield from super().scan(statements)
        for model in self.seen:
            for call in model.fused_in_train:
                yield self._fused_in_train(call, model.qat_next)
            if model.pending_train is not None and model.calibrated:
                yield model.pending_train

    def on_call(self, call: cst.Call) -> Iterator[Diagnostic]:
        attr = callee_attr(call)
        if self._quant_api(call, PREPARE_PTQ | PREPARE_QAT):
            yield from self._prepare(call, attr in PREPARE_QAT)
        elif self._quant_api(call, CONVERT):
            yield from self._convert(call)
        elif attr == "fuse_modules" and self._quant_api(call, {"fuse_modules"}):
            self._fuse(call)
        elif self._constructs_model(call):
            self._construct(call)
        obj = receiver(call)
        model = self._model_of(obj) if obj is not None else None
        if model is not None and attr in ("eval", "train"):
            train_arg = argument(call, 0, "mode")
            to_train = attr == "train" and not (
                isinstance(train_arg, cst.Name) and train_arg.value == "False"
            )
            mode = "train" if to_train else "eval"
            if set(self.branch) <= set(model.branch):
                model.mode = mode
            elif model.mode != mode:
                model.mode = None  # switched in one arm of an if: unknown afterwards
            if not to_train and not model.calibrated:
                model.pending_train = None
        self._calibration(call)

    def on_assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> Iterator[Diagnostic]:
        if isinstance(target, cst.Name):
            model = self._model_of(value)
            if model is not None:
                self.models[target.value] = model
            else:
                self.models.pop(target.value, None)
            self.qconfig_names[target.value] = self._qconfig_kind(value)
        elif isinstance(target, cst.Attribute) and target.attr.value == "qconfig":
            kind = self._qconfig_kind(value)
            self.weight_only = self.weight_only or kind == "weight"
            model = self._model_of(target.value) if isinstance(target.value, cst.Name) else None
            if model is not None:
                model.qconfig = kind
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                if isinstance(element.value, cst.Name):
                    self.models.pop(element.value.value, None)
        return iter(())

    # -- steps -------------------------------------------------------------------------------------

    def _prepare(self, call: cst.Call, qat: bool) -> Iterator[Diagnostic]:
        attr = callee_attr(call)
        arg = argument(call, 0, "model")
        source = self._model_of(arg) if arg is not None else None
        if source is None:
            source = self._track(_Model(branch=self.branch), arg)
        if attr in ("prepare", "prepare_qat") and keyword_true(call, "inplace"):
            model = source
        else:
            model = source.copy(self.branch)
        mapping = argument(call, 1, "qconfig_mapping") if attr.endswith("_fx") else None
        kind = self._qconfig_kind(mapping) if mapping is not None else source.qconfig
        name = _shown(arg)
        if qat:
            source.qat_next = True
            if kind == "ptq":
                yield self._diag(
                    "QL406",
                    f"`{attr}` with a post-training qconfig on {name}: it inserts observers, not "
                    "fake-quantize modules, so training learns nothing about quantization; use "
                    "`get_default_qat_qconfig` (or `get_default_qat_qconfig_mapping`) with `prepare_qat`",
                    call,
                )
        else:
            if (source.qat and not exclusive(source.prepared_branch, self.branch)) or source.contains_qat:
                yield self._diag(
                    "QL406",
                    f"`{attr}` on {name}, which holds a model already prepared by `prepare_qat`: "
                    "calibrating it keeps updating the trained fake-quantize qparams and mixes PTQ observers "
                    "into a QAT model; add the stubs before `prepare_qat` and convert the trained model "
                    "directly (`convert(model.eval())`)",
                    call,
                )
            elif kind == "qat":
                yield self._diag(
                    "QL406",
                    f"`{attr}` with a QAT qconfig on {name}: calibration then runs fake-quantize modules "
                    "with moving-average ranges that follow the last batches, not the post-training "
                    "observers; use `get_default_qconfig` with `prepare`, or `prepare_qat` for QAT",
                    call,
                )
            if source.mode == "train" and attr in PREPARE_PTQ:
                model.pending_train = self._diag(
                    "QL404",
                    f"`{attr}` on {name}, which is in training mode: calibration then updates BatchNorm "
                    "statistics and applies dropout, so the observers see the wrong activations; call "
                    f"`{_shown(arg, bare=True)}.eval()` before `{attr}`",
                    call,
                )
        model.prepared, model.qat, model.calibrated = call, qat, False
        model.prepared_branch = self.branch
        self.made[id(call)] = model
        self._remember(model)

    def _convert(self, call: cst.Call) -> Iterator[Diagnostic]:
        arg = argument(call, 0, "module") or argument(call, 0, "model") or argument(call, 0, "graph_module")
        model = self._model_of(arg) if arg is not None else None
        if model is None or model.prepared is None or model.calibrated:
            return
        if exclusive(model.prepared_branch, self.branch):
            return  # prepared in one arm of an if, converted in another
        if model.qconfig == "weight" or (model.qconfig is None and self.weight_only):
            return  # dynamic / weight-only quantization observes the weights at convert
        model.pending_train = None
        step = "training or calibration" if model.qat else "calibration"
        prep = callee_attr(model.prepared)
        yield self._diag(
            "QL403",
            f"`{callee_attr(call)}` of {_shown(arg)} with no {step} since `{prep}` (line "
            f"{self.index.span(model.prepared).line}): the observers never ran, so every scale and zero "
            "point is a default (garbage output, 'must run observer before calling calculate_qparams'); run "
            "representative batches through the prepared model first",
            call,
        )
        model.calibrated = True  # report an uncalibrated model once

    def _fuse(self, call: cst.Call) -> None:
        arg = argument(call, 0, "model")
        model = self._model_of(arg) or self._model_of_root(arg)
        if (
            model is None
            or model.mode != "train"
            or not _may_fuse_batchnorm(argument(call, 1, "modules_to_fuse"))
        ):
            return
        model.fused_in_train.append(call)
        self._remember(model)
        if not keyword_true(call, "inplace"):
            self.made[id(call)] = model.copy(self.branch)

    def _fused_in_train(self, call: cst.Call, qat_next: bool) -> Diagnostic:
        model = _shown(argument(call, 0, "model"))
        if qat_next:
            advice = (
                "for QAT, fuse with `fuse_modules_qat` (it keeps BatchNorm trainable) before `prepare_qat`"
            )
        else:
            advice = "call `.eval()` first for post-training quantization, or use `fuse_modules_qat` for QAT"
        return self._diag(
            "QL404",
            f"`fuse_modules` on {model}, which is in training mode: conv+BatchNorm fusion raises "
            f"`AssertionError: Fusion only for eval!`; {advice}",
            call,
        )

    def _construct(self, call: cst.Call) -> None:
        """A new model: in training mode, unless it wraps modules whose mode is eval or unknown."""
        inner: list[_Model] = []
        modes: set[str | None] = set()
        for arg in call.args:
            if _is_literal(arg.value):
                continue
            found = self._model_of(arg.value)
            nested = [found] if found else [self.made[id(c)] for c in calls(arg.value) if id(c) in self.made]
            inner += nested
            modes |= {m.mode for m in nested} if nested else {None}
        mode = "train" if "train" in modes or not modes else (None if None in modes else "eval")
        model = _Model(
            mode=mode, contains_qat=any(m.qat or m.contains_qat for m in inner), branch=self.branch
        )
        self.made[id(call)] = model
        self._remember(model)

    def _calibration(self, call: cst.Call) -> None:
        """Mark prepared models that ``call`` runs (directly, or through a function it is given)."""
        for model in {
            id(m): m for m in self.models.values() if m.prepared is not None and not m.calibrated
        }.values():
            names = {n for n, m in self.models.items() if m is model}
            func = call.func
            through: str | None = None
            if isinstance(func, cst.Name) and func.value in names:
                through = "call"
            elif isinstance(func, (cst.Attribute, cst.Subscript)) and root_name(func) in names:
                if not (isinstance(func, cst.Attribute) and func.attr.value in NON_CALIBRATING_METHODS):
                    through = "call"
            elif callee_attr(call) not in NON_CALIBRATING_FUNCTIONS and any(
                mentions(a.value, n) for a in call.args for n in names
            ):
                through = "function"
            elif (
                isinstance(func, cst.Name)
                and func.value in self.functions
                and any(mentions(self.functions[func.value].body, n) for n in names)
            ):
                through = "function"
            if through is None:
                continue
            model.calibrated = True
            if through == "function" and model.pending_train is not None and not self._runs_in_train(call):
                model.pending_train = None

    # -- helpers -----------------------------------------------------------------------------------

    def _runs_in_train(self, call: cst.Call) -> bool:
        """A function given the model: known (defined here) not to switch it to eval mode."""
        func = self.functions.get(call.func.value) if isinstance(call.func, cst.Name) else None
        if func is None:
            return False
        for site in self.index.calls:
            if site.function == func.name.value and site.attr == "eval":
                return False
        return True

    def _model_of(self, expr: cst.BaseExpression | None) -> _Model | None:
        if isinstance(expr, cst.Name):
            return self.models.get(expr.value)
        if not isinstance(expr, cst.Call):
            return None
        if id(expr) in self.made:
            return self.made[id(expr)]
        attr = callee_attr(expr)
        if isinstance(expr.func, cst.Attribute) and attr in SAME_OBJECT_METHODS:
            return self._model_of(expr.func.value)
        if attr in ("deepcopy", "copy") and expr.args:
            return self._model_of(expr.args[0].value)
        return None

    def _model_of_root(self, expr: cst.BaseExpression | None) -> _Model | None:
        """The model a submodule expression (``m.layer1[0]``) belongs to."""
        name = root_name(expr) if isinstance(expr, (cst.Attribute, cst.Subscript)) else None
        return self.models.get(name) if name else None

    def _track(self, model: _Model, expr: cst.BaseExpression | None) -> _Model:
        if isinstance(expr, cst.Name):
            self.models[expr.value] = model
        self._remember(model)
        return model

    def _remember(self, model: _Model) -> None:
        if all(m is not model for m in self.seen):
            self.seen.append(model)

    def _quant_api(self, call: cst.Call, names: set[str]) -> bool:
        """A quantization API call: distinctive names always, ``prepare``/``convert`` only from a
        quantization module (``tq.prepare``, ``from torch.ao.quantization import convert``)."""
        attr = callee_attr(call)
        if attr not in names:
            return False
        if attr not in ("prepare", "convert"):
            return True
        full = qualified(callee(call), self.aliases)
        return "quantiz" in full or "pt2e" in full

    def _constructs_model(self, call: cst.Call) -> bool:
        name = callee(call)
        attr = callee_attr(call)
        full = qualified(name, self.aliases)
        if attr in self.index.module_classes or attr == "QuantWrapper":
            return True
        if full.startswith("torchvision.models."):
            return True
        return full.startswith("torch.nn.") and attr[:1].isupper()

    def _qconfig_kind(self, expr: cst.BaseExpression | None) -> str | None:
        if expr is None:
            return None
        if isinstance(expr, cst.Name) and expr.value in self.qconfig_names:
            return self.qconfig_names[expr.value]
        if isinstance(expr, cst.Call) and callee_attr(expr) == "QConfig":
            text = self.index.module.code_for_node(expr).lower()
            return (
                "qat"
                if "fakequant" in text or "fake_quant" in text
                else ("ptq" if "observer" in text else None)
            )
        name = callee_attr(expr) if isinstance(expr, cst.Call) else (get_full_name_for_node(expr) or "")
        name = name.rsplit(".", 1)[-1].lower()
        if "qconfig" not in name:
            return None
        if any(w in name for w in ("dynamic", "weight_only", "float_qparams")):
            return "weight"
        return "qat" if "qat" in name else "ptq"

    def _diag(self, code: str, message: str, node: cst.CSTNode) -> Diagnostic:
        return self.index.diagnostic(code, message, node)


def _is_literal(expr: cst.BaseExpression) -> bool:
    """Numbers, strings, True/False/None, and containers of them: no module can hide there."""
    if isinstance(expr, (cst.BaseNumber, cst.BaseString)):
        return True
    if isinstance(expr, cst.Name):
        return expr.value in ("True", "False", "None")
    if isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
        return all(_is_literal(e.value) for e in expr.elements)
    if isinstance(expr, cst.UnaryOperation):
        return _is_literal(expr.expression)
    return False


def _shown(expr: cst.BaseExpression | None, bare: bool = False) -> str:
    """How a model expression is named in messages."""
    text = cst.Module([]).code_for_node(expr) if expr is not None else "the model"
    if bare:
        return text
    return f"`{text}`" if expr is not None else text


_BATCHNORM_HINTS = ("bn", "batch", "norm")


def _may_fuse_batchnorm(modules: cst.BaseExpression | None) -> bool:
    """False only when the fuse lists are literal and no name looks like a BatchNorm (or an index)."""
    if not isinstance(modules, (cst.List, cst.Tuple)):
        return True
    names: list[str] = []
    for group in modules.elements:
        items = group.value.elements if isinstance(group.value, (cst.List, cst.Tuple)) else [group]
        for item in items:
            if not isinstance(item.value, cst.SimpleString):
                return True
            names.append(str(item.value.evaluated_value).rsplit(".", 1)[-1].lower())
    return any(n.isdigit() or any(h in n for h in _BATCHNORM_HINTS) for n in names)
