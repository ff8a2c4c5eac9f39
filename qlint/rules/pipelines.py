"""Pipeline rules: a model followed through build, ``prepare``, calibration and ``convert``.

QL403 ``prepare`` then ``convert`` with no calibration; QL404 fusing / calibrating in training mode;
QL406 QAT and PTQ pieces mixed. Torch-free: nothing is imported or executed.

QL403's fix: QL403: ``convert`` with no calibration since ``prepare`` -> calibrate with the script's own batch.

``q = convert(m)`` followed later by ``q(img)`` gets ``m(img)`` inserted right before the convert, so
the observers see one real batch. Offered only when every argument of that later call is a plain name
bound before the ``prepare`` line and not re-bound from there to the call; never for QAT (it needs
training, not calibration). Unsafe: the script computes something else, and one batch stands in for
representative data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, shared
from qlint.source.edit import FileText
from qlint.source.facts import fact
from qlint.source.names import CONVERT, PREPARE_PTQ, PREPARE_QAT
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
    is_quant_api,
    keyword_true,
    mentions,
    qualified,
    receiver,
    root_name,
)

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.source.index import SourceIndex


@dataclass(frozen=True)
class Uncalibrated:
    """QL403's facts: the line of the ``prepare*`` call, and whether it was ``prepare_qat*``."""

    prepare_line: int
    qat: bool


class MissingCalibration(Rule):
    """## What it does
    Follows each model through the module body and each function body, in statement order, and
    reports a `convert` (`convert`, `convert_fx`, `convert_pt2e`, `convert_to_reference_fx`) of
    a model made by `prepare`, `prepare_fx`, `prepare_pt2e` (or their QAT variants) when nothing
    ran the prepared model in between. Both `m = prepare(m)` and `prepare(m, inplace=True)` are
    followed, as are names bound to the same model (`p = prepared`, `prepared.cpu()`).

    Counts as calibration: a call of the model (`m(x)`, `m.forward(x)`, `m.layer(x)`), a method
    that may feed it data or load its observers' state (`m.load_state_dict(...)`), a call of any
    function given the model (`evaluate(m, loader)`, `run_evaluation(net=m)`), and a call of a
    function defined in the file that uses the model's name. `prepare` and `convert` called from
    a module qlint cannot identify as a quantization API (a bare `prepare(...)` not imported from
    `torch.ao.quantization`) are ignored.

    ## Why is this bad?
    `prepare` inserts observers; they learn the activation ranges only while data flows through
    the model. `convert` then turns what they saw into scales and zero points. With no data, every
    observer returns its default (scale 1.0, zero point 0) and torch only warns:

    ```text
    UserWarning: must run observer before calling calculate_qparams. Returning default values.
    ```

    The converted model runs and returns garbage: with scale 1.0 and zero point 0, every
    activation is rounded to a whole number and negative ones become 0. On
    torch 1.4 it was an exception (`must run observer before calling calculate_qparams!`,
    pytorch/pytorch#28951).

    ## Fix safety
    Unsafe. When the script later runs the converted model on a batch (`qmodel(img)` or
    `qmodel.forward(img)`, the first such call after `convert`), the fix inserts one calibration call
    with that batch right before `convert`:

    ```python
    prepared = prepare(model)
    prepared(img)  # calibrate: run representative batches through the prepared model before convert
    qmodel = convert(prepared)
    output = qmodel(img)
    ```

    It is offered only when every argument of that later call is a plain name, bound before the
    `prepare` line and not re-bound between `prepare` and the call, and the argument of `convert` is a
    plain name (`q = convert(m)`, or a bare `convert(m, inplace=True)`). Never for a model prepared by
    `prepare_qat`: it needs training, not calibration. The fix is unsafe because the script then
    computes something else (an extra forward pass, different scales), and one batch only stands in
    for calibration data: replace it with a few hundred representative samples under
    `torch.no_grad()`, and make sure every branch of the model runs at least once (an observer that
    never ran keeps the default qparams).

    ## References
    - [pytorch/pytorch#28951](https://github.com/pytorch/pytorch/issues/28951) (`must run observer before calling calculate_qparams`, an exception in torch 1.4)
    - [pytorch/pytorch#100654](https://github.com/pytorch/pytorch/issues/100654) (`UserWarning: must run observer before calling calculate_qparams. Returning default values.`)
    - [Post-training static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization) ("calibrate the prepared model to determine quantization parameters")
    - seed 002: `model = prepare(model)` then `model = convert(model)`; the answer: "Between prepare() and convert() you need to run the model"
    """

    code = "QL403"
    name = "missing-calibration"
    severity = Severity.ERROR
    flows = (
        Flow.EAGER,
        Flow.FX,
        Flow.PT2E,
    )
    basis = (Basis.SOURCE,)
    summary = "prepare then convert with no calibration in between"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "unsafe (calibrates with the script's own batch), when it has one"
    triggers = ("prepare",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
qmodel = convert(prepared)  # no data went through the observers
print(qmodel(torch.rand(1, 3, 32, 32)))  # scale 1.0: every value rounded to a whole number
""",
            lines=(8,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
with torch.no_grad():
    for _ in range(16):  # representative batches: real data, not random
        prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
print(qmodel(torch.rand(1, 3, 32, 32)).max())
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return (d for d in shared(index, model_workflow) if d.code == self.code)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return calibration_fixes(ctx, items)


class PtqInTrainMode(Rule):
    """## What it does
    Follows each model through the module body and each function body, in statement order, and
    reports:
    - `fuse_modules` on a model (or a submodule of it, `m.layer1[0]`) that is in training mode:
      freshly built (`Net()`, `nn.Sequential(...)`, a torchvision factory) or put there by
      `.train()`, with no `.eval()` since. Fuse lists made only of names that cannot be a
      BatchNorm (`[["conv", "relu"]]`) are not reported, since they fuse in either mode. When
      `prepare_qat` follows, the message points to `fuse_modules_qat`.
    - `prepare` (post-training) on a model in training mode, when calibration then runs it in
      that mode: a direct call `prepared(x)`, or a function defined in the file that does not
      call `.eval()`. A `.eval()` between `prepare` and the first calibration batch is fine.

    A model whose mode qlint cannot know (a function parameter, a model loaded from a file) is
    not reported.

    ## Why is this bad?
    `fuse_modules` folds BatchNorm into the preceding conv or linear layer with the BatchNorm's
    running statistics, which only makes sense in eval mode; on a model in training mode it
    raises:

    ```text
    AssertionError: Fusion only for eval!
    ```

    For quantization-aware training, `fuse_modules_qat` keeps the BatchNorm trainable
    (`ConvBn2d`) instead. Calibrating in training mode does not fail, but it is wrong: BatchNorm
    normalizes with each batch's statistics and overwrites its running statistics with the
    calibration data, and dropout zeroes activations, so the observers record ranges the
    deployed model never produces.

    ## Use instead
    For quantization-aware training, keep the model in training mode and fuse with
    `torch.ao.quantization.fuse_modules_qat(model, ...)` before `prepare_qat`.

    ## Fix safety
    No automatic fix: qlint cannot tell whether a model in training mode is meant for QAT or was
    meant to be put in eval mode. Call `model.eval()` before `fuse_modules` and `prepare` for
    post-training quantization, or use `fuse_modules_qat` and `prepare_qat` for QAT.

    ## References
    - [`torch.ao.quantization.fuse_modules`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.fuse_modules.fuse_modules.html) and `fuse_modules_qat`
    - [Post-training static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization) ("model must be set to eval mode for static quantization logic to work")
    - [pytorch/pytorch#87679](https://github.com/pytorch/pytorch/issues/87679) (fusion and the train/eval mode)
    - seed 004: `fuse_modules` on a freshly built (training-mode) resnet18 before `prepare_qat`; today it raises `Fusion only for eval!`
    """

    code = "QL404"
    name = "ptq-in-train-mode"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.SOURCE,)
    summary = "fuse_modules or prepare on a model still in training mode"
    triggers = ("fuse_modules", "prepare")
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5)))
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)  # still in training mode
with torch.no_grad():
    for _ in range(8):
        prepared(torch.rand(4, 3, 32, 32))  # batch statistics and dropout during calibration
qmodel = convert(prepared)
""",
            lines=(7,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, fuse_modules, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5)))
model.eval()  # before fusing and calibrating
fuse_modules(model.module, [["0", "1", "2"]], inplace=True)
model.qconfig = get_default_qconfig("x86")
prepared = prepare(model)
with torch.no_grad():
    for _ in range(8):
        prepared(torch.rand(4, 3, 32, 32))
qmodel = convert(prepared)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return (d for d in shared(index, model_workflow) if d.code == self.code)


class QatPtqMix(Rule):
    """## What it does
    Follows each model through the module body and each function body, in statement order, and
    reports a `prepare` / `prepare_qat` that does not match the rest of the recipe:
    - `prepare` (post-training) on a model whose `qconfig` is a QAT one
      (`get_default_qat_qconfig`, `default_qat_qconfig`, a `QConfig` built from fake-quantize
      classes), and `prepare_fx` given a QAT qconfig mapping;
    - `prepare_qat` on a model whose `qconfig` is a post-training one (`get_default_qconfig`,
      `default_qconfig`, a `QConfig` of observers), and `prepare_qat_fx` given such a mapping;
    - `prepare` on a model already prepared by `prepare_qat`, or on a wrapper built around one
      (seed 004: `qmodel = Qresnet(resnet)`, then `prepare(qmodel)`).

    The qconfig is read from `model.qconfig = ...` assignments and from names assigned a qconfig
    in the same body. Dynamic and weight-only qconfigs are not considered.

    ## Why is this bad?
    Post-training quantization and quantization-aware training use different modules. A QAT
    qconfig creates fake-quantize modules with moving-average ranges: under `prepare`, calibration
    then fake-quantizes activations and keeps ranges that follow the last batches instead of the
    post-training observers (e.g. `HistogramObserver`). A post-training qconfig under
    `prepare_qat` inserts plain observers where fake-quantize modules belong: training never sees
    the quantization error and QAT does nothing. And `prepare` on a model that `prepare_qat`
    already prepared keeps its fake-quantize modules running: calibration overwrites the qparams
    training learned, and PTQ observers are mixed into a QAT model. Nothing fails; the accuracy
    QAT was for is lost.

    ## Use instead
    For QAT, pair `get_default_qat_qconfig` with `prepare_qat`, train, then
    `convert(model.eval())`: add the stubs (or `QuantWrapper`) before `prepare_qat` rather than
    wrapping the trained model and preparing it again.

    ## Fix safety
    No automatic fix: whether the user meant QAT or post-training quantization decides which half
    of the recipe is wrong.

    ## References
    - [Quantization-aware training](https://pytorch.org/docs/stable/quantization.html#quantization-aware-training-for-static-quantization) (`get_default_qat_qconfig` with `prepare_qat`)
    - [Post-training static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization) (`get_default_qconfig` with `prepare`)
    - seed 004: a `prepare_qat` resnet18, trained, then wrapped with stubs and passed to `prepare` again
    - seed 002: `get_default_qat_qconfig('qnnpack')` built next to a post-training recipe (unused there, so not reported)
    """

    code = "QL406"
    name = "qat-ptq-mix"
    severity = Severity.WARNING
    flows = (Flow.EAGER,)
    basis = (Basis.SOURCE,)
    summary = "QAT and post-training quantization pieces are mixed"
    triggers = ("prepare",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qat_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qat_qconfig("x86")  # a QAT recipe ...
prepared = prepare(model)  # ... with post-training prepare
with torch.no_grad():
    for _ in range(8):
        prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
            lines=(7,),
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")  # post-training qconfig with prepare
prepared = prepare(model)
with torch.no_grad():
    for _ in range(8):
        prepared(torch.rand(1, 3, 32, 32))
qmodel = convert(prepared)
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        return (d for d in shared(index, model_workflow) if d.code == self.code)


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


def model_workflow(index: SourceIndex) -> list[Diagnostic]:
    """QL403/QL404/QL406 from one scan of the file's pipelines."""
    return list(_model_workflow(index))


def _model_workflow(index: SourceIndex) -> Iterator[Diagnostic]:
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
            data=Uncalibrated(prepare_line, model.qat),
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
        return is_quant_api(call, names, self.aliases)

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


MAX_LINE = 110
COMMENTS = (
    "  # calibrate: run representative batches through the prepared model before convert",
    "  # calibrate: run representative batches here",
    "  # calibrate",
    "",
)
_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)  # their targets are their own


def calibration_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    out: dict[int, Fix] = {}
    for index, diag in items:
        fix = _fix(ctx.file, diag)
        if fix is not None:
            out[index] = fix
    return out


def _fix(file: FileText, diag: Diagnostic) -> Fix | None:
    if not isinstance(diag.data, Uncalibrated) or diag.data.qat:
        return None
    prepare_line = diag.data.prepare_line
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
