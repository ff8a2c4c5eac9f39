"""Pipeline rules: a model followed through build, ``prepare``, calibration and ``convert``.

QL403 ``prepare`` then ``convert`` with no calibration; QL404 fusing / calibrating in training mode;
QL406 QAT and PTQ pieces mixed. Torch-free: nothing is imported or executed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Diagnostic
from qlint.rules._source_helpers import fact, one_pass
from qlint.rules.registry import source_rule
from qlint.source.pipeline import (
    SAME_OBJECT_METHODS,
    Branch,
    ImportAliases,
    PipelineScan,
    argument,
    bodies,
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

PREPARE_PTQ = {"prepare", "prepare_fx", "prepare_pt2e"}
PREPARE_QAT = {"prepare_qat", "prepare_qat_fx", "prepare_qat_pt2e"}
CONVERT = {"convert", "convert_fx", "convert_pt2e", "convert_to_reference_fx"}
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

one_pass(ImportAliases)  # the aliases come from the shared pass


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
    aliases = fact(index, ImportAliases).aliases
    functions = {f.name.value: f for f in index.functions}
    for body in bodies(index, where):
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
            to_train = attr == "train" and not (isinstance(train_arg, cst.Name) and train_arg.value == "False")
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
        prepare_line = self.index.span(model.prepared).line
        yield self.index.diagnostic(
            "QL403",
            f"`{callee_attr(call)}` of {_shown(arg)} with no {step} since `{prep}` (line "
            f"{prepare_line}): the observers never ran, so every scale and zero "
            "point is a default (garbage output, 'must run observer before calling calculate_qparams'); run "
            "representative batches through the prepared model first",
            call,
            prepare_line=prepare_line,
            qat=model.qat,
        )
        model.calibrated = True  # report an uncalibrated model once

    def _fuse(self, call: cst.Call) -> None:
        arg = argument(call, 0, "model")
        model = self._model_of(arg) or self._model_of_root(arg)
        if model is None or model.mode != "train" or not _may_fuse_batchnorm(argument(call, 1, "modules_to_fuse")):
            return
        model.fused_in_train.append(call)
        self._remember(model)
        if not keyword_true(call, "inplace"):
            self.made[id(call)] = model.copy(self.branch)

    def _fused_in_train(self, call: cst.Call, qat_next: bool) -> Diagnostic:
        model = _shown(argument(call, 0, "model"))
        if qat_next:
            advice = "for QAT, fuse with `fuse_modules_qat` (it keeps BatchNorm trainable) before `prepare_qat`"
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
        model = _Model(mode=mode, contains_qat=any(m.qat or m.contains_qat for m in inner), branch=self.branch)
        self.made[id(call)] = model
        self._remember(model)

    def _calibration(self, call: cst.Call) -> None:
        """Mark prepared models that ``call`` runs (directly, or through a function it is given)."""
        for model in {id(m): m for m in self.models.values() if m.prepared is not None and not m.calibrated}.values():
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
            return "qat" if "fakequant" in text or "fake_quant" in text else ("ptq" if "observer" in text else None)
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
