"""QL414 eager-flow-deprecated: an eager or FX pipeline, and its port to torchao PT2E (unsafe fix).

The port rewrites the pipeline's statements with one libcst transformer over the file; the edits are
the changed line ranges. Torch-free: the rewrite reads the source only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, shared
from qlint.source.names import QCONFIG_GETTERS
from qlint.source.pipeline import (
    SAME_OBJECT_METHODS,
    argument,
    callee,
    callee_attr,
    calls,
    import_aliases,
    keyword_true,
    mentions,
    qualified,
    root_name,
    walk,
)

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.source.index import SourceIndex

QUANT_MODULES = ("torch.ao.quantization", "torch.quantization")
PREPARES = {"prepare": False, "prepare_qat": True, "prepare_fx": False, "prepare_qat_fx": True}
CONVERTS = {"convert", "convert_fx"}
FUSES = {"fuse_model", "fuse_modules", "fuse_modules_qat"}
QCONFIG_MAPPINGS = {"get_default_qconfig_mapping", "get_default_qat_qconfig_mapping", "QConfigMapping"}
QUANTIZED_TENSOR_CALLS = {"quantize_per_tensor", "quantize_per_channel", "int_repr", "q_scale", "q_zero_point"}
HEADER_CALLS = {"range", "enumerate", "zip", "len", "reversed"}
PT2E = "torchao.quantization.pt2e.quantize_pt2e"
X86 = "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer"
EXPORT_UTILS = "torchao.quantization.pt2e"
IMPORT_HOMES = {
    "prepare_pt2e": PT2E,
    "prepare_qat_pt2e": PT2E,
    "convert_pt2e": PT2E,
    "X86InductorQuantizer": X86,
    "get_default_x86_inductor_quantization_config": X86,
    "move_exported_model_to_eval": EXPORT_UTILS,
    "move_exported_model_to_train": EXPORT_UTILS,
}
XNNPACK_NOTE = (
    "# the script targeted qnnpack (ARM): for ARM, quantize with executorch's XNNPACKQuantizer",
    "# (executorch.backends.xnnpack.quantizer.xnnpack_quantizer) and lower through executorch",
)
CALIBRATE_NOTE = "  # calibrate: run representative batches through the prepared model"
SHAPE_NOTE = "  # an input of the shape qlint knows: pass a real batch"


@dataclass(frozen=True)
class EagerPipeline:
    """QL414's facts: where the pipeline is prepared, whether it is QAT / FX, and what blocks a port."""

    prepare_line: int
    qat: bool
    fx: bool
    blockers: tuple[str, ...]


class EagerFlowDeprecated(Rule):
    """## What it does
    Reports each eager (`prepare`/`prepare_qat`/`convert`) or FX (`prepare_fx`/`convert_fx`)
    quantization pipeline once, at its `prepare` call. A model prepared again later in the same
    pipeline (a QAT model handed to a second `prepare`) is part of the pipeline that prepared it.

    ## Why is this bad?
    PyTorch deprecates both flows: the docs plan their removal, and since torch 2.13 creating the
    quantized tensors eager modules are built on warns on every call. The maintained flow is PT2E in
    torchao: `torch.export`, a quantizer (`X86InductorQuantizer` on x86), `prepare_pt2e`/`convert_pt2e`,
    then `torch.compile`, which is also the fastest int8 path on x86 CPUs.

    ## Fix safety
    Unsafe, and only when the rule is selected by its code (`--select QL414 --fix --unsafe-fixes`; a
    plain `--fix --unsafe-fixes` leaves the pipeline to the other rules): its statements are rewritten.
    - a global qconfig (or `QConfigMapping`) becomes an `X86InductorQuantizer` with
      `get_default_x86_inductor_quantization_config(is_qat=...)`; a qnnpack target gets a comment
      about executorch's `XNNPACKQuantizer`; `m.sub.qconfig = None` becomes
      `quantizer.set_module_name_qconfig("sub", None)`; `torch.backends.quantized.engine = ...` goes;
    - `fuse_model()` / `fuse_modules*(...)` calls go (PT2E fuses by itself), and so does a function
      that only fused (its calls become its argument); stubs inside the model stay (they export as
      identity); a `QuantStub()` applied outside the model (a no-op) goes;
    - `prepare(m)` becomes `torch.export.export(m.eval(), example_inputs).module()` then
      `prepare_pt2e(exported, quantizer)` (`prepare_qat_pt2e` for QAT, no `.eval()`); the example
      input is the script's own (the tensor later fed to the model, the first batch of its
      calibration loop, `prepare_fx`'s `example_inputs`), else `torch.randn(<the input shape qlint
      knows>)` with a comment; with no calibration, that input calibrates once;
    - a second `prepare` of an already prepared model goes (PT2E keeps its observers), and a stub
      wrapper around it (`QuantWrapper`, a class of the file holding `QuantStub`s) becomes the model;
    - `convert(m)` becomes `convert_pt2e(m)`; a converted model called later in the same function is
      wrapped in `torch.compile` and the rest of the function runs under `torch.no_grad()`;
      `torch.jit.script` of it becomes `torch.compile`;
    - `.eval()` / `.train()` on the exported model become `move_exported_model_to_eval/train`;
      quantization imports left unused go; torchao imports are added from their homes.

    Not ported (the finding then has no fix, and says why): a custom `QConfig(...)`, `torch.jit.save`,
    quantized-tensor calls (`quantize_per_tensor`, `int_repr`, ...), a `prepare` whose result qlint
    cannot follow, or no example input and no known input shape (`--input-shape`).

    ## References
    - [torchao PT2E tutorial](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_x86_inductor.html)
    - [pytorch/pytorch#169151](https://github.com/pytorch/pytorch/pull/169151) (PT2E moved to torchao)
    - [pytorch/pytorch#184982](https://github.com/pytorch/pytorch/pull/184982) (quantized tensors deprecated)
    """

    code = "QL414"
    name = "eager-flow-deprecated"
    severity = Severity.INFO
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.SOURCE,)
    summary = "an eager or FX quantization pipeline: deprecated; torchao PT2E is the maintained flow"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "unsafe (ports the pipeline to torch.export + X86InductorQuantizer + torch.compile)"
    fix_alone = True
    triggers = ("prepare",)
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
model.qconfig = get_default_qconfig("x86")
batch = torch.rand(1, 3, 32, 32)
prepared = prepare(model)
prepared(batch)
qmodel = convert(prepared)
print(qmodel(batch).shape)
""",
            lines=(8,),
            unsafe=True,
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())).eval()
quantizer = X86InductorQuantizer()
quantizer.set_global(get_default_x86_inductor_quantization_config())
batch = torch.rand(1, 3, 32, 32)
example_inputs = (batch,)
exported = torch.export.export(model.eval(), example_inputs).module()
prepared = prepare_pt2e(exported, quantizer)
prepared(batch)
qmodel = convert_pt2e(prepared)
qmodel = torch.compile(qmodel)
with torch.no_grad():
    print(qmodel(batch).shape)
""",
        ),
        Invalid(
            """\
import torch
import torch.nn as nn
import torch.ao.quantization as tq

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
model.train()
loader = [torch.rand(2, 3, 32, 32) for _ in range(4)]
model.qconfig = tq.get_default_qat_qconfig("x86")
model = tq.prepare_qat(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for images in loader:
    optimizer.zero_grad()
    model(images).mean().backward()
    optimizer.step()
model.eval()
qmodel = tq.convert(model)
""",
            lines=(9,),
            unsafe=True,
            fixed="""\
import torch
import torch.nn as nn
from torchao.quantization.pt2e import move_exported_model_to_eval
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
model.train()
loader = [torch.rand(2, 3, 32, 32) for _ in range(4)]
quantizer = X86InductorQuantizer()
quantizer.set_global(get_default_x86_inductor_quantization_config(is_qat=True))
example_inputs = (next(iter(loader)),)
exported = torch.export.export(model, example_inputs).module()
model = prepare_qat_pt2e(exported, quantizer)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for images in loader:
    optimizer.zero_grad()
    model(images).mean().backward()
    optimizer.step()
move_exported_model_to_eval(model)
qmodel = convert_pt2e(model)
""",
        ),
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
example_inputs = (torch.rand(1, 3, 32, 32),)
qconfig_mapping = get_default_qconfig_mapping("x86")
prepared = prepare_fx(model, qconfig_mapping, example_inputs)
prepared(*example_inputs)
qmodel = convert_fx(prepared)
print(qmodel(*example_inputs).shape)
""",
            lines=(9,),
            unsafe=True,
            fixed="""\
import torch
import torch.nn as nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
example_inputs = (torch.rand(1, 3, 32, 32),)
quantizer = X86InductorQuantizer()
quantizer.set_global(get_default_x86_inductor_quantization_config())
exported = torch.export.export(model.eval(), example_inputs).module()
prepared = prepare_pt2e(exported, quantizer)
prepared(*example_inputs)
qmodel = convert_pt2e(prepared)
qmodel = torch.compile(qmodel)
with torch.no_grad():
    print(qmodel(*example_inputs).shape)
""",
        ),
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))).eval()
model.qconfig = get_default_qconfig("x86")
model.module.fuse_model()
model.module[2].qconfig = None
prepare(model, inplace=True)
for _ in range(4):
    model(torch.rand(1, 3, 16, 16))
convert(model, inplace=True)
""",
            lines=(9,),
            unsafe=True,
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantWrapper
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

model = QuantWrapper(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))).eval()
quantizer = X86InductorQuantizer()
quantizer.set_global(get_default_x86_inductor_quantization_config())
quantizer.set_module_name_qconfig("module.2", None)
example_inputs = (torch.rand(1, 3, 16, 16),)
exported = torch.export.export(model.eval(), example_inputs).module()
model = prepare_pt2e(exported, quantizer)
for _ in range(4):
    model(torch.rand(1, 3, 16, 16))
model = convert_pt2e(model)
""",
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
example_inputs = (torch.rand(1, 3, 32, 32),)
quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
prepared = prepare_pt2e(torch.export.export(model, example_inputs).module(), quantizer)
prepared(*example_inputs)
qmodel = torch.compile(convert_pt2e(prepared))
""",
        ),
        Valid(
            """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)  # a model file: nothing is prepared here
""",
        ),
    )

    def check_source(self, index: SourceIndex) -> Iterator[Diagnostic]:
        analysis: _Analysis = shared(index, _Analysis.of)  # type: ignore[assignment]
        for call in analysis.pipeline_starts:
            attr = callee_attr(call)
            fx = attr.endswith("_fx")
            data = EagerPipeline(index.span(call).line, PREPARES[attr], fx, tuple(analysis.blockers))
            flow = "FX" if fx else "eager"
            message = (
                f"{flow}-mode quantization (`{attr}`) is deprecated in PyTorch (quantized tensors warn since "
                "2.13); the maintained flow is torchao PT2E (torch.export + a quantizer + convert_pt2e + "
                "torch.compile): `--select QL414 --fix --unsafe-fixes` ports this pipeline"
            )
            if analysis.blockers:
                message += f" (not automatically: {'; '.join(analysis.blockers)})"
            yield index.diagnostic(self.code, message, call, data)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        mine = [(i, d) for i, d in items if isinstance(d.data, EagerPipeline) and not d.data.blockers]
        selected = ctx.settings.select if ctx.settings is not None else None
        # a rewrite of the whole pipeline: only when asked for by name (the fix loop resolves the selection
        # to codes, so "by name" is: no other rule but qlint's own QL0xx is enabled)
        if not mine or self.code not in (selected or ()) or any(c != self.code and c[:3] != "QL0" for c in selected):
            return {}
        shape = ctx.settings.input_shape if ctx.settings is not None else None
        if shape is None and ctx.settings is not None:
            from qlint.config import with_pragmas

            shape = with_pragmas(ctx.settings, ctx.source).input_shape
        analysis = _Analysis.of(ctx.index)
        port = _Port(analysis, shape)
        try:
            new = ctx.file.module.visit(port)
        except _CannotPort:
            return {}
        edits = _line_edits(ctx.file.text, new.code)
        if not edits:
            return {}
        notes = ["fuse calls removed (PT2E fuses)"] if port.removed_fuse else []
        notes += port.notes
        message = "Port to torchao PT2E: torch.export + X86InductorQuantizer + prepare/convert_pt2e"
        if notes:
            message += f" ({'; '.join(dict.fromkeys(notes))})"
        fix = Fix(Applicability.UNSAFE, message, tuple(edits))
        return {mine[0][0]: fix}  # one rewrite of the file: the other pipelines are ported with it


# ---- analysis ----------------------------------------------------------------------------------------


class _Analysis:
    """The file's eager/FX quantization calls, the names holding prepared models, and what blocks a port."""

    def __init__(self, index: SourceIndex):
        self.module = index.module
        self.aliases = import_aliases(self.module)
        self.functions = {f.name.value: f for f in index.functions}
        self.prepared_params: set[tuple[str, str]] = set()
        self.prepared_fns: set[str] = set()
        self.prepared: dict[str | None, set[str]] = {}  # function name (None: module) -> prepared names
        self.before: dict[int, frozenset[str]] = {}  # id of a statement -> the names prepared before it
        self.pipeline_starts: list[cst.Call] = []
        self.blockers: list[str] = []
        self.wrappers = {"QuantWrapper"} | {
            c.name.value for c in _classes(self.module) if "QuantStub" in cst.Module([c]).code
        }
        self.fuse_only = {name for name, f in self.functions.items() if self._fuse_only(f)}
        self.stubs_outside: dict[str | None, set[str]] = {}
        for _ in range(4):  # prepared models flow through calls and returns: a few rounds reach a fixpoint
            before = (len(self.prepared_params), len(self.prepared_fns))
            self._scan_all()
            if (len(self.prepared_params), len(self.prepared_fns)) == before:
                break
        self._scan_all(record=True)
        self._find_blockers()

    @classmethod
    def of(cls, index: SourceIndex) -> _Analysis:
        return cls(index)

    # is a call one of the quantization API's
    def quant_attr(self, call: cst.Call, names: Sequence[str] | set[str] | dict) -> str | None:
        attr = callee_attr(call)
        if attr not in names:
            return None
        if attr == "fuse_model":
            return attr
        origin = qualified(callee(call), self.aliases)
        return attr if origin.startswith(QUANT_MODULES) else None

    def _scan_all(self, record: bool = False) -> None:
        for fn_name, body in [(None, self.module.body)] + [
            (f.name.value, f.body.body) for f in self.functions.values() if isinstance(f.body, cst.IndentedBlock)
        ]:
            names = {p for fn, p in self.prepared_params if fn == fn_name}
            stubs: set[str] = set()
            for small, _ in walk(body):
                if record:
                    self.before[id(small)] = frozenset(names)
                value = getattr(small, "value", None)
                if isinstance(small, cst.Return) and _is_prepared(value, names, self) and fn_name:
                    self.prepared_fns.add(fn_name)
                if isinstance(value, cst.BaseExpression):
                    for call in calls(value):
                        self._passes(call, names)
                        attr = self.quant_attr(call, PREPARES)
                        if record and attr and not _is_prepared(argument(call, 0, "model"), names, self):
                            if call not in self.pipeline_starts:
                                self.pipeline_starts.append(call)
                        if attr and keyword_true(call, "inplace"):
                            model = argument(call, 0, "model")
                            if isinstance(model, cst.Name):
                                names.add(model.value)
                if isinstance(small, cst.Assign) and len(small.targets) == 1:
                    target = small.targets[0].target
                    if isinstance(target, cst.Name):
                        if _is_prepared(value, names, self):
                            names.add(target.value)
                        else:
                            names.discard(target.value)
                        if isinstance(value, cst.Call) and callee_attr(value) == "QuantStub":
                            stubs.add(target.value)
            if record:
                self.prepared[fn_name] = names
                self.stubs_outside[fn_name] = stubs

    def _passes(self, call: cst.Call, names: set[str]) -> None:
        """A prepared model handed to a function of the file: that parameter holds a prepared model."""
        fn = self.functions.get(call.func.value) if isinstance(call.func, cst.Name) else None
        if fn is None:
            return
        params = [p.name.value for p in fn.params.params]
        for position, arg in enumerate(a for a in call.args if a.keyword is None and not a.star):
            if position < len(params) and _is_prepared(arg.value, names, self):
                self.prepared_params.add((fn.name.value, params[position]))

    def _fuse_only(self, fn: cst.FunctionDef) -> bool:
        params = {p.name.value for p in fn.params.params}
        statements = list(walk(fn.body.body)) if isinstance(fn.body, cst.IndentedBlock) else []
        seen_fuse = False
        for small, _ in statements:
            value = getattr(small, "value", None)
            if isinstance(small, cst.Return):
                if not (isinstance(value, cst.Name) and value.value in params):
                    return False
            elif isinstance(small, cst.Expr) and isinstance(value, cst.Call) and callee_attr(value) in FUSES:
                seen_fuse = True
            elif isinstance(small, cst.Expr) and (not isinstance(value, cst.Call) or callee(value) in HEADER_CALLS):
                continue  # a loop's or branch's header, a docstring
            elif not isinstance(small, cst.Pass):
                return False
        return seen_fuse

    def _find_blockers(self) -> None:
        for call in calls(self.module):
            name = qualified(callee(call), self.aliases)
            attr = callee_attr(call)
            if name == "torch.jit.save":
                self._block("`torch.jit.save` of the quantized model (a PT2E model is saved with torch.export.save)")
            elif attr == "QConfig" or (attr == "with_args" and "Observer" in name):
                self._block("a custom `QConfig` (its observers have no PT2E quantizer equivalent)")
            elif attr in QUANTIZED_TENSOR_CALLS:
                self._block(f"`{attr}` on quantized tensors outside the model")
        for call in self.pipeline_starts:
            if keyword_true(call, "inplace") and not isinstance(argument(call, 0, "model"), cst.Name):
                self._block("a `prepare(..., inplace=True)` of an expression qlint cannot follow")

    def _block(self, why: str) -> None:
        if why not in self.blockers:
            self.blockers.append(why)


def _classes(module: cst.Module) -> list[cst.ClassDef]:
    return [s for s in module.body if isinstance(s, cst.ClassDef)]


def _is_prepared(expr: cst.BaseExpression | None, names: set[str], analysis: _Analysis) -> bool:
    """``expr`` holds a prepared (or converted) model: a name known to, a prepare/convert call, a method
    returning the model itself, a file function returning one, or a stub wrapper around one."""
    if isinstance(expr, cst.Name):
        return expr.value in names
    if not isinstance(expr, cst.Call):
        return False
    attr = callee_attr(expr)
    if analysis.quant_attr(expr, PREPARES) or analysis.quant_attr(expr, CONVERTS):
        return True
    if isinstance(expr.func, cst.Name) and expr.func.value in analysis.prepared_fns:
        return True
    if isinstance(expr.func, cst.Attribute) and attr in SAME_OBJECT_METHODS:
        return _is_prepared(expr.func.value, names, analysis)
    if attr in analysis.wrappers and expr.args:
        return _is_prepared(expr.args[0].value, names, analysis)
    return False


# ---- the rewrite -------------------------------------------------------------------------------------


class _CannotPort(Exception):
    pass


def _stmt(code: str) -> cst.BaseStatement:
    return cst.parse_statement(code)


class _Port(cst.CSTTransformer):
    """The file with its eager/FX pipelines rewritten for PT2E."""

    def __init__(self, analysis: _Analysis, shape: tuple[int, ...] | None):
        super().__init__()
        self.a = analysis
        self.shape = shape
        self.scope: list[str | None] = [None]
        self.bodies: list[Sequence[cst.BaseStatement]] = [analysis.module.body]
        self.wrap_after: str | None = None  # the inserted `m = torch.compile(m)`: what follows runs under no_grad
        self.statement: cst.CSTNode | None = None
        # placeholders for removed statements (their comments move on), by id; the value keeps each alive,
        # so its id is never reused by a node built later (which would then be dropped too)
        self.removed: dict[int, cst.SimpleStatementLine] = {}
        self.removed_fuse = False
        self.notes: list[str] = []
        self.qat = any(self.a.quant_attr(c, {"prepare_qat", "prepare_qat_fx"}) for c in calls(analysis.module))
        self.last_qconfig: dict[str | None, cst.CSTNode] = {}
        for fn_name, body in [(None, analysis.module.body)] + [
            (f.name.value, f.body.body) for f in analysis.functions.values() if isinstance(f.body, cst.IndentedBlock)
        ]:
            for small, _ in walk(body):
                if self._global_qconfig(small, fn_name) is not None:
                    self.last_qconfig[fn_name] = small

    # ---- scopes

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.scope.append(node.name.value)
        self.bodies.append(node.body.body if isinstance(node.body, cst.IndentedBlock) else ())
        return True

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        self.scope.pop()
        self.bodies.pop()
        if original.name.value in self.a.fuse_only:
            self.removed_fuse = True
            return cst.RemoveFromParent()
        return updated

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False  # the model's own code stays (stubs export as identity)

    @property
    def prepared(self) -> set[str]:
        """The names holding a prepared model before the statement being rewritten."""
        return set(self.a.before.get(id(self.statement), ()))

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        self.statement = node.body[0] if node.body else None
        return True

    # ---- expressions

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        name = qualified(callee(original), self.a.aliases)
        if isinstance(original.func, cst.Name) and original.func.value in self.a.fuse_only and original.args:
            return updated.args[0].value
        if name == "torch.jit.script" and original.args and _is_prepared(original.args[0].value, self.prepared, self.a):
            self.notes.append("torch.jit.script of the int8 model -> torch.compile")
            return cst.parse_expression(f"torch.compile({cst.Module([]).code_for_node(updated.args[0].value)})")
        return updated

    # ---- statements

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        if len(original.body) != 1:
            return updated
        small = original.body[0]
        lines = self._rewrite(small, updated.body[0])
        if lines is None:
            return updated
        if not lines:
            placeholder = cst.SimpleStatementLine([cst.Pass()], leading_lines=original.leading_lines)
            self.removed[id(placeholder)] = placeholder
            return placeholder
        statements: list[cst.BaseStatement] = []
        comments: list[cst.EmptyLine] = list(original.leading_lines)
        for line in lines:
            if line.startswith("#"):
                comments.append(cst.EmptyLine(comment=cst.Comment(line)))
            else:
                statements.append(_stmt(line).with_changes(leading_lines=comments))
                comments = []
        return cst.FlattenSentinel(statements)

    def _rewrite(self, small: cst.BaseSmallStatement, updated: cst.BaseSmallStatement) -> list[str] | None:
        """The lines replacing ``small`` ([] removes it), or None to keep it."""
        fn = self.scope[-1]
        code = cst.Module([]).code_for_node
        value = getattr(small, "value", None)
        target = small.targets[0].target if isinstance(small, cst.Assign) and len(small.targets) == 1 else None
        # the engine and per-module / global qconfigs
        if target is not None and qualified(code(target), self.a.aliases).startswith("torch.backends.quantized"):
            return []
        if isinstance(target, cst.Attribute) and target.attr.value == "qconfig":
            owner = target.value
            if (
                isinstance(value, cst.Name)
                and value.value == "None"
                and isinstance(owner, (cst.Attribute, cst.Subscript))
            ):
                path = _dotted(owner).split(".", 1)[1]
                return [f'quantizer.set_module_name_qconfig("{path}", None)']
            if isinstance(owner, cst.Name) and owner.value in self.prepared:
                self.notes.append("the second prepare of an already prepared model dropped (PT2E keeps its observers)")
                return []
        qconfig = self._global_qconfig(small, fn)
        if qconfig is not None:
            if self.last_qconfig.get(fn) is not small:
                return []
            qat = self.qat or "qat" in code(qconfig)
            lines = list(XNNPACK_NOTE) if "qnnpack" in self.a.module.code else []
            config = (
                "get_default_x86_inductor_quantization_config(is_qat=True)"
                if qat
                else ("get_default_x86_inductor_quantization_config()")
            )
            return lines + ["quantizer = X86InductorQuantizer()", f"quantizer.set_global({config})"]
        # a qconfig bound to a name nothing reads: eager-only state
        if isinstance(target, cst.Name) and isinstance(value, cst.Call) and callee_attr(value) in QCONFIG_GETTERS:
            others = [s for s, _ in walk(self.bodies[-1]) if s is not small]
            if not any(mentions(s, target.value) for s in others):
                self.notes.append(f"the unused qconfig `{target.value}` removed")
                return []
        # QuantStub applied outside the model (an identity)
        stubs = self.a.stubs_outside.get(fn, set())
        if isinstance(value, cst.Call):
            if target is not None and callee_attr(value) == "QuantStub":
                return []
            if isinstance(value.func, cst.Name) and value.func.value in stubs:
                return []
        if isinstance(small, cst.Expr) and isinstance(value, cst.Call):
            if self.a.quant_attr(value, FUSES):
                self.removed_fuse = True
                return []
        if not isinstance(value, cst.Call):
            return None
        assigned = target.value if isinstance(target, cst.Name) else None
        if assigned is None and not isinstance(small, cst.Expr):
            return None
        # stub wrappers around a prepared model
        if assigned and callee_attr(value) in self.a.wrappers and value.args:
            if _is_prepared(value.args[0].value, self.prepared, self.a):
                self.notes.append("the stub wrapper around the prepared model dropped")
                return [f"{assigned} = {code(value.args[0].value)}"]
        prepare = self.a.quant_attr(value, PREPARES)
        if prepare:
            return self._prepare(small, value, assigned, prepare)
        if self.a.quant_attr(value, CONVERTS):
            return self._convert(small, value, assigned)
        # .eval() / .train() on an exported model
        if isinstance(value.func, cst.Attribute) and value.func.attr.value in {"eval", "train"}:
            if _is_prepared(value.func.value, self.prepared, self.a) and not value.args:
                helper = f"move_exported_model_to_{value.func.attr.value}({code(value.func.value)})"
                return [f"{assigned} = {helper}" if assigned else helper]
        return None

    def _global_qconfig(self, small: cst.CSTNode, fn: str | None) -> cst.BaseExpression | None:
        """The qconfig / QConfigMapping a global-qconfig statement sets."""
        if not isinstance(small, cst.Assign) or len(small.targets) != 1:
            return None
        target, value = small.targets[0].target, small.value
        if isinstance(target, cst.Attribute) and target.attr.value == "qconfig" and isinstance(target.value, cst.Name):
            if target.value.value in self.a.before.get(id(small), ()):
                return None
            return value if not (isinstance(value, cst.Name) and value.value == "None") else None
        if isinstance(target, cst.Name) and isinstance(value, cst.Call):
            if any(callee_attr(c) in QCONFIG_MAPPINGS for c in calls(value)):
                return value
        return None

    def _prepare(self, small, call: cst.Call, assigned: str | None, attr: str) -> list[str]:
        code = cst.Module([]).code_for_node
        model = argument(call, 0, "model")
        if model is None:
            raise _CannotPort
        if _is_prepared(model, self.prepared, self.a):
            return [f"{assigned} = {code(model)}"] if assigned and assigned != code(model) else []
        name = assigned or (model.value if isinstance(model, cst.Name) else None)
        if name is None:
            raise _CannotPort
        qat = PREPARES[attr]
        example = self._example_inputs(small, call, {name, code(model)})
        lines = [example] if example != "example_inputs = example_inputs" else []
        captured = code(model) if qat else f"{code(model)}.eval()"
        lines.append(f"exported = torch.export.export({captured}, example_inputs).module()")
        lines.append(f"{name} = {'prepare_qat_pt2e' if qat else 'prepare_pt2e'}(exported, quantizer)")
        if not qat and not self._calibrated(small, name):
            lines.append(f"{name}(*example_inputs){CALIBRATE_NOTE}")
            self.notes.append("calibrates once with the example input (use representative data)")
        return lines

    def _convert(self, small, call: cst.Call, assigned: str | None) -> list[str]:
        code = cst.Module([]).code_for_node
        model = argument(call, 0, "module") or argument(call, 0, "model") or argument(call, 0, "graph_module")
        if model is None:
            raise _CannotPort
        name = assigned or root_name(model)
        if name is None:
            raise _CannotPort
        lines = [f"{name} = convert_pt2e({code(model)})"]
        if self._called_later(small, name):
            lines.append(f"{name} = torch.compile({name})")
            self.wrap_after = lines[-1]
        return lines

    # ---- the body around a statement

    def _body_after(self, small) -> list[cst.BaseSmallStatement]:
        found, after = False, []
        for s, _ in walk(self.bodies[-1]):
            if s is small:
                found = True
            elif found:
                after.append(s)
        return after

    def _called_later(self, small, name: str) -> bool:
        for s in self._body_after(small):
            for c in calls(s):
                func = c.func.value if isinstance(c.func, cst.Attribute) and c.func.attr.value == "forward" else c.func
                if isinstance(func, cst.Name) and func.value == name:
                    return True
        return False

    def _calibrated(self, small, name: str) -> bool:
        for s in self._body_after(small):
            for c in calls(s):
                if self.a.quant_attr(c, CONVERTS):
                    return False
                func = c.func.value if isinstance(c.func, cst.Attribute) and c.func.attr.value == "forward" else c.func
                if isinstance(func, cst.Name) and func.value == name:
                    return True
                if any(isinstance(a.value, cst.Name) and a.value.value == name for a in c.args):
                    return True
        return False

    def _example_inputs(self, small, call: cst.Call, names: set[str]) -> str:
        code = cst.Module([]).code_for_node
        given = argument(call, 2, "example_inputs")
        if given is not None:
            return f"example_inputs = {code(given)}"
        body = self.bodies[-1]
        loops = _for_targets(body)
        bound_before = _names_bound_before(body, small)
        for s in self._body_after(small):
            for c in calls(s):
                func = c.func.value if isinstance(c.func, cst.Attribute) and c.func.attr.value == "forward" else c.func
                if not (isinstance(func, cst.Name) and func.value in names) or len(c.args) != 1:
                    continue
                arg = c.args[0].value
                if isinstance(arg, cst.Name) and arg.value in bound_before:
                    return f"example_inputs = ({arg.value},)"
                if _free_names(arg) <= bound_before | set(self.a.aliases):
                    return f"example_inputs = ({code(arg)},)"  # e.g. torch.rand(...) written in the call
                root = root_name(arg)
                if root in loops:
                    iterable, position = loops[root]
                    first = f"next(iter({iterable}))" + (f"[{position}]" if position is not None else "")
                    return f"example_inputs = ({code(_replace_name(arg, root, first))},)"
        if self.shape is None:
            raise _CannotPort
        shape = ", ".join(str(d) for d in self.shape)
        return f"example_inputs = (torch.randn({shape}),){SHAPE_NOTE}"

    # ---- blocks: the rest of a body after `m = torch.compile(m)` runs under no_grad

    def _drop_removed(self, body: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
        """The body without the placeholders of removed statements; their comments go to the next one."""
        out: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        for statement in body:
            if id(statement) in self.removed:
                lines = list(statement.leading_lines)
                while lines and lines[-1].comment:  # the comment right above a removed statement goes with it
                    lines.pop()
                carried += lines
                continue
            if carried and hasattr(statement, "leading_lines"):
                lines = [*carried, *statement.leading_lines]
                lines = [line for i, line in enumerate(lines) if line.comment or i == 0 or lines[i - 1].comment]
                statement = statement.with_changes(leading_lines=lines)
                carried = []
            out.append(statement)
        return out

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock):
        body = self._drop_removed(updated.body)
        if not body:
            return updated.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])])
        return updated.with_changes(body=self._no_grad(body))

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        body = self._no_grad(self._drop_removed(updated.body))
        return updated.with_changes(body=_fix_imports(body, self.a))

    def _no_grad(self, body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
        for position, statement in enumerate(body):
            if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
                text = cst.Module([]).code_for_node(statement.body[0])
                if text == self.wrap_after and position + 1 < len(body):
                    rest = body[position + 1 :]
                    lines = getattr(rest[0], "leading_lines", ())
                    if lines:
                        rest[0] = rest[0].with_changes(leading_lines=())
                    block = cst.With(
                        items=[cst.WithItem(cst.parse_expression("torch.no_grad()"))],
                        body=cst.IndentedBlock(body=rest),
                        leading_lines=lines,
                    )
                    return [*body[: position + 1], block]
        return body

    def leave_For(self, original: cst.For, updated: cst.For):
        return _drop_if_empty(updated)

    def leave_If(self, original: cst.If, updated: cst.If):
        return _drop_if_empty(updated)


def _drop_if_empty(node: cst.For | cst.If):
    body = node.body
    empty = isinstance(body, cst.IndentedBlock) and all(
        isinstance(s, cst.SimpleStatementLine) and all(isinstance(x, cst.Pass) for x in s.body) for s in body.body
    )
    if empty and node.orelse is None:
        return cst.RemoveFromParent()
    return node


def _for_targets(body: Sequence[cst.BaseStatement]) -> dict[str, tuple[str, int | None]]:
    """Loop variable -> (the iterable's code, its position in the target tuple) of the body's ``for`` loops."""
    out: dict[str, tuple[str, int | None]] = {}

    class Visitor(cst.CSTVisitor):
        def visit_For(self, node: cst.For) -> None:
            iterable = cst.Module([]).code_for_node(node.iter)
            if isinstance(node.target, cst.Name):
                out.setdefault(node.target.value, (iterable, None))
            elif isinstance(node.target, (cst.Tuple, cst.List)):
                for position, element in enumerate(node.target.elements):
                    if isinstance(element.value, cst.Name):
                        out.setdefault(element.value.value, (iterable, position))

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False

    for statement in body:
        statement.visit(Visitor())
    return out


def _names_bound_before(body: Sequence[cst.BaseStatement], small) -> set[str]:
    names: set[str] = set()
    for s, _ in walk(body):
        if s is small:
            break
        if isinstance(s, cst.Assign):
            for t in s.targets:
                if isinstance(t.target, cst.Name):
                    names.add(t.target.value)
    return names


def _free_names(expr: cst.BaseExpression) -> set[str]:
    """The names ``expr`` reads (attribute names and keyword names excluded)."""
    names: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            names.add(node.value)

        def visit_Attribute(self, node: cst.Attribute) -> bool:
            node.value.visit(self)
            return False

        def visit_Arg(self, node: cst.Arg) -> bool:
            node.value.visit(self)
            return False

    expr.visit(Visitor())
    return names


def _dotted(expr: cst.BaseExpression) -> str:
    """``m.layer[2].conv`` -> ``m.layer.2.conv`` (a module's qualified name)."""
    if isinstance(expr, cst.Attribute):
        return f"{_dotted(expr.value)}.{expr.attr.value}"
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        index = expr.slice[0].slice
        if isinstance(index, cst.Index) and isinstance(index.value, (cst.Integer, cst.SimpleString)):
            value = index.value.value.strip("'\"")
            return f"{_dotted(expr.value)}.{value}"
    return cst.Module([]).code_for_node(expr)


def _replace_name(expr: cst.BaseExpression, name: str, replacement: str) -> cst.BaseExpression:
    new = cst.parse_expression(replacement)

    class Swap(cst.CSTTransformer):
        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
            return new if original.value == name else updated

        def visit_Attribute(self, node: cst.Attribute) -> bool:
            node.value.visit(self)
            return True

    result = expr.visit(Swap())
    return result if isinstance(result, cst.BaseExpression) else expr


# ---- imports -----------------------------------------------------------------------------------------


def _used_names(body: Sequence[cst.BaseStatement]) -> set[str]:
    used: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Import(self, node: cst.Import) -> bool:
            return False

        def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
            return False

        def visit_Name(self, node: cst.Name) -> None:
            used.add(node.value)

    for statement in body:
        statement.visit(Visitor())
    return used


def _fix_imports(body: list[cst.BaseStatement], analysis: _Analysis) -> list[cst.BaseStatement]:
    used = _used_names(body)
    out: list[cst.BaseStatement] = []
    last_import = -1
    for statement in body:
        if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
            small = statement.body[0]
            if isinstance(small, (cst.Import, cst.ImportFrom)):
                kept = _prune_import(small, used)
                if kept is None:
                    continue
                statement = statement.with_changes(body=[kept])
                last_import = len(out)
        out.append(statement)
    wanted: dict[str, list[str]] = {}
    for name, home in IMPORT_HOMES.items():
        if name in used and name not in analysis.aliases:
            wanted.setdefault(home, []).append(name)
    new = [_stmt(_import_line(home, sorted(names))) for home, names in sorted(wanted.items())]
    if "torch" in used and "torch" not in analysis.aliases:
        new.insert(0, _stmt("import torch"))
    return [*out[: last_import + 1], *new, *out[last_import + 1 :]]


def _import_line(home: str, names: list[str]) -> str:
    line = f"from {home} import {', '.join(names)}"
    if len(line) <= 120:
        return line
    return f"from {home} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def _prune_import(small: cst.Import | cst.ImportFrom, used: set[str]) -> cst.BaseSmallStatement | None:
    """``small`` without the quantization names nothing uses any more (None: nothing left)."""
    if isinstance(small, cst.ImportFrom):
        module = get_full_name_for_node(small.module) if small.module else ""
        if not module or not module.startswith(QUANT_MODULES) or isinstance(small.names, cst.ImportStar):
            return small
        names = [a for a in small.names if _bound(a) in used]
        if not names:
            return None
        names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return small.with_changes(names=names)
    names = [a for a in small.names if not (_full(a).startswith(QUANT_MODULES) and _bound(a) not in used)]
    if not names:
        return None
    names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return small.with_changes(names=names)


def _full(alias: cst.ImportAlias) -> str:
    return get_full_name_for_node(alias.name) or ""


def _bound(alias: cst.ImportAlias) -> str:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return _full(alias).split(".")[0] if isinstance(alias.name, cst.Attribute) else _full(alias)


# ---- edits -------------------------------------------------------------------------------------------


def _line_edits(old: str, new: str) -> list[Edit]:
    """The changed line ranges of ``old`` -> ``new``, as whole-line edits."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    edits = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            edits.append(Edit("".join(b[j1:j2]), (i1 + 1, 1), (i2 + 1, 1)))
    return edits
