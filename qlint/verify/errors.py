"""QL601: a torch error from prepare/calibrate/convert/forward, explained in plain words."""

from __future__ import annotations

import re
import traceback

from torch import nn

from qlint.model.loader import first_line as loader_first_line
from qlint.verify.flows import StepFailed
from qlint.verify.result import Failure

_FLOAT_TO_QUANTIZED = re.compile(r"Could not run '(quantized::[\w.]+)' with arguments from the '(CPU\w*)' backend")
_QUANTIZED_TO_FLOAT = re.compile(r"Could not run '(aten::[\w.]+)' with arguments from the 'QuantizedCPU\w*' backend")
_ARITH = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "matmul", "mm", "bmm", "rsub", "addmm"}
_BATCH_NORM = {
    "native_batch_norm",
    "batch_norm",
    "_native_batch_norm_legit_no_training",
    "_batch_norm_impl_index",
}


def _op_base(op: str) -> str:
    return op.split("::", 1)[1].split(".", 1)[0]


def first_line(exc: BaseException, limit: int = 240) -> str:
    text = loader_first_line(exc) or type(exc).__name__
    cut = text.find(". This could be because")
    if cut > 0:
        text = text[: cut + 1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain(exc: BaseException, culprit: str | None, model: nn.Module | None) -> tuple[str, str | None]:
    """(plain-words explanation, the static rule code that predicts this error class)."""
    msg = str(exc)
    where = f"`{culprit}`" if culprit else "the model"
    m = _FLOAT_TO_QUANTIZED.search(msg)
    if m:
        op = m.group(1).split(".")[0]
        has_stub = model is not None and any(type(x).__name__ in ("QuantStub", "Quantize") for x in model.modules())
        if has_stub:
            why = (
                f"nothing quantizes the input of {where}: "
                "a QuantStub is missing before it, or a DeQuantStub comes too early"
            )
        else:
            why = f"the model has no QuantStub before {where}"
        return f"a float tensor reached {op}: {why}", "QL101"
    m = _QUANTIZED_TO_FLOAT.search(msg)
    if m:
        op, base = m.group(1), _op_base(m.group(1))
        if base in _ARITH:
            sym = {
                "add": "`a + b` / `+=`",
                "sub": "`a - b` / `-=`",
                "mul": "`a * b` / `*=`",
                "div": "`a / b`",
            }
            shown = sym.get(base.rstrip("_"), f"`{base}`")
            return (
                f"`{op}` has no QuantizedCPU kernel: an {shown} on quantized tensors in {where}, "
                "use FloatFunctional (`self.skip_add = nn.quantized.FloatFunctional()` in `__init__`, "
                "`self.skip_add.add(a, b)` in `forward`)",
                "QL103",
            )
        if base in _BATCH_NORM:
            return (
                f"a BatchNorm in {where} got a quantized tensor: fuse it into the conv before it "
                "(`fuse_modules`), or keep it float with stubs around it",
                "QL201",
            )
        return (
            f"`{op}` has no QuantizedCPU kernel and {where} gives it a quantized tensor: "
            "wrap that code in a float island (DeQuantStub before, QuantStub after)",
            "QL105",
        )
    if "has no attribute 'activation_post_process'" in msg:
        return (
            f"{where} lost its observer during calibration (a lazy module?): run one forward before prepare",
            None,  # no static rule predicts this yet
        )
    if "Per channel weight observer is not supported yet for ConvTranspose" in msg:
        return (
            f"{where} is a ConvTranspose with a per-channel weight qconfig: give it a per-tensor qconfig",
            None,  # no static rule predicts this yet
        )
    if "float_qparams_weight_only_qconfig" in msg:
        return (
            f"{where} is an Embedding with a static qconfig: use float_qparams_weight_only_qconfig",
            None,  # no static rule predicts this yet
        )
    return f"torch raised {type(exc).__name__} in {where}", None


def _names_by_id(model: nn.Module | None) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()} if model is not None else {}


def culprit(step: StepFailed) -> str | None:
    """The innermost module running when it raised (hooks), else the innermost one in the traceback."""
    if step.stack:
        return step.stack[-1]
    names = _names_by_id(step.model)
    tb = step.cause.__traceback__
    found = None
    while tb is not None:
        loc = tb.tb_frame.f_locals
        for key in ("mod", "module", "self", "float_module", "observed"):
            obj = loc.get(key)
            if isinstance(obj, nn.Module) and id(obj) in names:
                found = names[id(obj)]
                break
        tb = tb.tb_next
    return found


def to_failure(step: StepFailed) -> Failure:
    name = culprit(step)
    model = step.model
    mtype = None
    if model is not None and name is not None:
        try:
            mtype = type(model.get_submodule(name)).__name__ if name else type(model).__name__
        except AttributeError:
            mtype = None
    plain, hint = explain(step.cause, name, model)
    names = _names_by_id(model)
    summaries = traceback.extract_tb(step.cause.__traceback__)
    owners, tb = [], step.cause.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        owners.append(names.get(id(owner)) if isinstance(owner, nn.Module) else None)
        tb = tb.tb_next
    frames = tuple(
        (
            f.filename,
            f.lineno or 0,
            (f.colno or 0) + 1,
            f.end_lineno or f.lineno or 0,
            (f.end_colno or 0) + 1,
            f.name,
            owner,
        )
        for f, owner in reversed(list(zip(summaries, owners, strict=False)))
    )
    return Failure(
        phase=step.phase,
        error_type=type(step.cause).__name__,
        error=first_line(step.cause),
        module=name,
        module_type=mtype,
        explanation=plain,
        rule_hint=hint,
        frames=frames,
    )
