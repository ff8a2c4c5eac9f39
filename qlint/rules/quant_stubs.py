"""QL101 / QL102: QuantStub / DeQuantStub on the model's boundary, and their fix.

The fix:

``self.quant = QuantStub()`` / ``self.dequant = DeQuantStub()`` after ``super().__init__()`` of the
root model's class, the float inputs quantized at the top of ``forward`` (one stub per input: each
observes its own range), every returned quantized tensor dequantized (one DeQuantStub per returned
position). Stubs are the identity in float and hold no state: the fix is safe.
Offered only where it is exact: the class whose ``forward`` the root runs (its own, or one it inherits, as
torchvision's DeepLabV3 does) is in the file; QL101 quantizes the ``forward``
parameters whose float values reach a swapped module without passing a QuantStub (a model that already
quantizes its first input gets a stub for the second; a float island that forgets to re-quantize is
not a boundary problem and is left alone).

A model whose class lives in a library (``torchvision.models.vgg16()``) but is built in the file gets
a subclass of ``QuantWrapper`` written into the file, and the construction wrapped in it. That is
unsafe: the state_dict keys gain the prefix ``module.``. It is offered only when stubs around the
whole model are all the library code needs (one float input, one quantized output, no op that
needs a FloatFunctional, no reused module); otherwise ``qlint emit`` writes a quantizable copy. The
class gives later rounds a place for the model's ``fuse_model()`` (QL201's fix).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules import registry
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid
from qlint.source.edit import first_real_statement, free_name, methods
from qlint.source.idioms import declare, spelled, stub_names
from qlint.source.index import self_attributes

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph
    from qlint.model.check import CheckedModel

BOUNDARY_CODES = frozenset({"QL101", "QL102"})
QUANT_WRAPPER = ("torch.ao.quantization.QuantWrapper", "torch.quantization.QuantWrapper")
# graph findings a wrapper cannot repair: they need edits inside the library's classes
NEEDS_LIBRARY_EDITS = frozenset({"QL103", "QL104", "QL202"})


class MissingQuantStub(Rule):
    '''## What it does
    Reports a float tensor that reaches a module which eager `convert` will swap for a
    quantized kernel (`Conv2d`, `Linear`, a fused `ConvReLU2d`, ...): no `QuantStub` (or
    `QuantWrapper`) quantizes the tensor on its way in. Points at the line that calls the
    module.

    ## Why is this bad?
    In eager mode nothing is quantized implicitly. `convert` swaps the module for its
    quantized version, which only accepts quantized tensors, so the first forward pass of
    the converted model fails:

    ```text
    NotImplementedError: Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend.
    'quantized::conv2d.new' is only available for these backends: [..., QuantizedCPU, ...]
    ```

    (torch 1.4 said `Could not run 'quantized::conv2d' with arguments from the 'CPUTensorId'
    backend`.) This is what happens to any plain torchvision model fed to
    `prepare`/`convert`. Calling a `QuantStub()` on the input *outside* the model does not help:
    an unconverted stub is the identity.

    ## Use instead
    For a model you cannot edit, `torch.ao.quantization.QuantWrapper(model)` adds both stubs
    around it.

    ## Fix safety
    Safe: the fix adds a `QuantStub` attribute in `__init__` and quantizes the input at the
    top of `forward`. Before `convert` a stub is the identity, so the float model computes
    exactly what it did. A model with several tensor inputs gets one stub per input that reaches
    a swapped module in float (`self.quant_a`, `self.quant_b`: each observes its own range), also
    when it already quantizes some of them. A model class that inherits its `forward` gets the
    stubs in the class that defines it.

    For a model whose class lives in a library but is built in the checked file
    (`return torchvision.models.vgg16(weights=None).eval()`), there is no class to edit. The unsafe fix
    writes a subclass of `QuantWrapper` into the file and wraps the construction in it:
    ```python
    class QuantizableVGG(QuantWrapper):
        """torchvision's `VGG` between a QuantStub and a DeQuantStub (eager-mode quantization)."""


    def build_model() -> nn.Module:
        return QuantizableVGG(torchvision.models.vgg16(weights=None)).eval()
    ```
    It is unsafe because the state_dict keys gain the prefix `module.` (load a float checkpoint with
    `model.module.load_state_dict(...)`). The class is where QL201's fix then puts `fuse_model()`. The fix
    is offered only when stubs around the whole model are all it needs: one float input, one quantized
    output, and no QL103/QL104/QL202 finding inside the library's code. Otherwise use `qlint emit` to get
    an editable quantizable copy of the library's classes.

    ## References
    - [Eager mode static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization)
    - [pytorch/pytorch#34583](https://github.com/pytorch/pytorch/issues/34583) (`Could not run 'quantized::conv2d' with arguments from the 'CPUTensorId' backend`)
    - seed 002: torchvision `vgg16` through `prepare`/`convert`, with the `QuantStub` called outside the model
    '''

    code = "QL101"
    name = "missing-quant-stub"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "a float tensor reaches a module that convert swaps"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (adds `QuantStub`); unsafe for a library model (wraps it in `QuantWrapper`)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.conv(x)  # float input, quantized conv after convert
        return self.dequant(x)
""",
            lines=(12,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.conv(x)  # float input, quantized conv after convert
        return self.dequant(x)
""",
        ),
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.dequant = DeQuantStub()
        self.conv_a = nn.Conv2d(3, 8, 3)
        self.conv_b = nn.Conv2d(3, 8, 3)

    def forward(self, a, b):
        a = self.quant(a)
        return self.dequant(self.conv_a(a)), self.dequant(self.conv_b(b))  # b stays float
""",
            lines=(15,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant_b = QuantStub()
        self.quant = QuantStub()
        self.dequant = DeQuantStub()
        self.conv_a = nn.Conv2d(3, 8, 3)
        self.conv_b = nn.Conv2d(3, 8, 3)

    def forward(self, a, b):
        b = self.quant_b(b)
        a = self.quant(a)
        return self.dequant(self.conv_a(a)), self.dequant(self.conv_b(b))  # b stays float
""",
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.conv(x)
        return self.dequant(x)
""",
        ),
    )

    fix_order = 0

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return float_reaches_swapped(qg)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return boundary_fixes(ctx, items)


class MissingDequantStub(Rule):
    '''## What it does
    Reports a quantized tensor that leaves the model: a returned value (or an element of a
    returned tuple, list or dict) that is still quantized once `convert` has run, because no
    `DeQuantStub` turns it back into float. Points at the line that produces the value.

    ## Why is this bad?
    The converted model itself runs, but it returns a `torch.quint8` tensor to code that
    expects float. The failure shows up later, far from its cause: in the loss, the
    post-processing or the metric code:

    ```text
    NotImplementedError: Could not run 'aten::_softmax.out' with arguments from the 'QuantizedCPU' backend.
    ```

    and `.numpy()`, `x + 1`, `x * mask` and most of torch fail the same way.

    ## Fix safety
    Safe: the fix adds a `DeQuantStub` attribute in `__init__` and dequantizes the value before
    `return`. Before `convert` a stub is the identity; after it the caller gets float tensors,
    which is what float code expects. A model returning a tuple gets one DeQuantStub per
    quantized element (`self.dequant_0`, `self.dequant_1`); a DeQuantStub the model already has
    is used when it dequantizes nothing yet.

    For a model whose class lives in a library but is built in the checked file
    (`return torchvision.models.vgg16(weights=None).eval()`), there is no class to edit. The unsafe fix
    writes a subclass of `QuantWrapper` into the file and wraps the construction in it:
    ```python
    class QuantizableVGG(QuantWrapper):
        """torchvision's `VGG` between a QuantStub and a DeQuantStub (eager-mode quantization)."""


    def build_model() -> nn.Module:
        return QuantizableVGG(torchvision.models.vgg16(weights=None)).eval()
    ```
    It is unsafe because the state_dict keys gain the prefix `module.` (load a float checkpoint with
    `model.module.load_state_dict(...)`). The class is where QL201's fix then puts `fuse_model()`. The fix
    is offered only when stubs around the whole model are all it needs: one float input, one quantized
    output, and no QL103/QL104/QL202 finding inside the library's code. Otherwise use `qlint emit` to get
    an editable quantizable copy of the library's classes.

    ## References
    - [Eager mode static quantization](https://pytorch.org/docs/stable/quantization.html#post-training-static-quantization)
    - [`torch.ao.quantization.DeQuantStub`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.DeQuantStub.html)
    '''

    code = "QL102"
    name = "missing-dequant-stub"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "a quantized tensor leaves the model"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (adds `DeQuantStub`); unsafe for a library model (wraps it in `QuantWrapper`)"
    examples = (
        Invalid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        x = self.quant(x)
        return self.conv(x)  # still quantized after convert


def quantize(model, batches):
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for x in batches:
            model(x)
    return torch.ao.quantization.convert(model, inplace=True)


def scores(model, image):
    return torch.softmax(model(image), dim=1)  # fails on the quantized output


if __name__ == "__main__":
    qmodel = quantize(Net(), [torch.rand(1, 3, 16, 16)])
    print(scores(qmodel, torch.rand(1, 3, 16, 16)).shape)
""",
            lines=(14,),
            fixed="""\
import torch
import torch.nn as nn
from torch.ao.quantization import QuantStub, DeQuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.dequant = DeQuantStub()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        x = self.quant(x)
        return self.dequant(self.conv(x))  # still quantized after convert


def quantize(model, batches):
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for x in batches:
            model(x)
    return torch.ao.quantization.convert(model, inplace=True)


def scores(model, image):
    return torch.softmax(model(image), dim=1)  # fails on the quantized output


if __name__ == "__main__":
    qmodel = quantize(Net(), [torch.rand(1, 3, 16, 16)])
    print(scores(qmodel, torch.rand(1, 3, 16, 16)).shape)
""",
        ),
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import QuantStub


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.boxes = nn.Conv2d(3, 4, 1)
        self.scores = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        x = self.quant(x)
        return self.boxes(x), self.scores(x)
""",
            lines=(14,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import QuantStub, DeQuantStub


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.dequant_0 = DeQuantStub()
        self.dequant_1 = DeQuantStub()
        self.quant = QuantStub()
        self.boxes = nn.Conv2d(3, 4, 1)
        self.scores = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        x = self.quant(x)
        return self.dequant_0(self.boxes(x)), self.dequant_1(self.scores(x))
""",
        ),
        Valid(
            """\
import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.conv(x)
        return self.dequant(x)


def quantize(model, batches):
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        for x in batches:
            model(x)
    return torch.ao.quantization.convert(model, inplace=True)


def scores(model, image):
    return torch.softmax(model(image), dim=1)


if __name__ == "__main__":
    qmodel = quantize(Net(), [torch.rand(1, 3, 16, 16)])
    print(scores(qmodel, torch.rand(1, 3, 16, 16)).shape)
""",
        ),
    )

    fix_order = 0

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        return quantized_output(qg)

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return boundary_fixes(ctx, items)


def _name(facts) -> str:
    return facts.module_type.__name__ if facts.module_type else str(facts.target)


def float_reaches_swapped(qg) -> Iterator[Diagnostic]:
    """QL101: each swapped module whose first input is float after convert (a DeQuantStub passes a float
    tensor through: not reported)."""
    from qlint.model.analysis import Kind

    for name, facts in qg.nodes():
        if facts.swapped and facts.module_type.__name__ not in ("QuantStub", "DeQuantStub"):
            first = facts.input_kinds[0] if facts.input_kinds else None
            if first is Kind.FLOAT:
                what = (
                    f"FloatFunctional `{qg.full(facts.module)}`"
                    if facts.op == "call_function"
                    else f"`{qg.full(facts.module)}` ({_name(facts)})"
                )
                yield qg.diagnostic(
                    "QL101",
                    f"a float tensor reaches {what}, which `convert` swaps for a quantized kernel: "
                    "add a QuantStub and quantize the input first",
                    name,
                )


def quantized_output(qg) -> Iterator[Diagnostic]:
    """QL102: the model returns a quantized tensor."""
    from qlint.model.analysis import Kind

    for _, facts in qg.nodes("output"):
        if facts.kind is Kind.QUANT and not qg.prefix:  # a sub-root's output flows on into the model
            yield qg.diagnostic(
                "QL102",
                "the model returns a quantized tensor: add a DeQuantStub and dequantize before returning",
                location=qg.return_location(),
            )


def boundary_fixes(ctx: FileContext, items: FixItems) -> dict[int, Fix]:
    """One fix per model for its QL101 and QL102 findings together (each finding gets the same edits)."""
    out: dict[int, Fix] = {}
    by_model: dict[int, list[tuple[int, Diagnostic]]] = {}
    infos: dict[int, CheckedModel] = {}
    for index, diag in items:
        info = ctx.model_for(diag)
        if info is not None and info.root_graph is not None:
            by_model.setdefault(id(info), []).append((index, diag))
            infos[id(info)] = info
    for key, group in by_model.items():
        codes = {d.code for d in ctx.diagnostics if d.code in BOUNDARY_CODES and ctx.model_for(d) is infos[key]}
        fix = _model_fix(ctx, infos[key], codes | {d.code for _, d in group})
        if fix is not None:
            for index, _ in group:
                out[index] = fix
    return out


def _model_fix(ctx: FileContext, info: CheckedModel, codes: set[str]) -> Fix | None:
    from torch.ao.quantization import DeQuantStub, QuantStub

    qg = info.root_graph
    if not ctx.defined_here(type(info.model)):
        return _library_fix(ctx, info, codes)
    # the class whose forward the model runs: torchvision's DeepLabV3 inherits _SimpleSegmentationModel's
    owner = next((c for c in type(info.model).__mro__ if "forward" in vars(c)), type(info.model))
    cls = ctx.class_node(owner)
    if cls is None or "forward" not in methods(cls):
        return None
    forward = methods(cls)["forward"]
    has_quant = any(isinstance(m, QuantStub) for m in info.model.modules())
    inputs = _float_inputs(qg) if "QL101" in codes else []
    if "QL101" in codes and not has_quant and not inputs:
        return None
    returns = _dequant_returns(ctx, qg, forward) if "QL102" in codes else []
    if "QL102" in codes and returns is None:
        returns = []
    if not inputs and not returns:
        return None
    taken = self_attributes(cls)
    existing_dequant = _existing_attr(info.model, DeQuantStub)
    if existing_dequant is not None and any(f.module == existing_dequant for _, f in qg.nodes("call_module")):
        existing_dequant = None  # it dequantizes another output already: this one gets its own
    positions = sorted({position for position, _ in returns})
    quant, dequant, imports = stub_names(ctx, bool(inputs), len(positions) > (existing_dequant is not None))
    declarations, edits = [], list(imports)
    quant_attrs = []
    for name in inputs:
        attr = free_name("quant" if len(inputs) == 1 and not has_quant else f"quant_{name}", taken)
        quant_attrs.append(attr)
        declarations.append(f"self.{attr} = {quant}()")
    dequant_attrs: dict[int, str] = {}  # one DeQuantStub per returned position
    for position in positions:
        if not dequant_attrs and existing_dequant is not None:
            dequant_attrs[position] = existing_dequant
            continue
        attr = free_name("dequant" if len(positions) == 1 else f"dequant_{position}", taken)
        dequant_attrs[position] = attr
        declarations.append(f"self.{attr} = {dequant}()")
    if declarations:
        declaration = declare(ctx, cls, declarations)
        if declaration is None:
            return None
        edits.append(declaration)
    if inputs:
        first = first_real_statement(forward)
        if first is None:
            return None
        lines = [f"{name} = self.{attr}({name})" for name, attr in zip(inputs, quant_attrs, strict=False)]
        edits.append(ctx.file.insert_lines_before(first, lines))
    for position, node in returns:
        edits.append(ctx.file.replace(node, f"self.{dequant_attrs[position]}({ctx.file.code(node)})"))
    parts = []
    if inputs:
        parts.append("quantize " + ", ".join(f"`{n}`" for n in inputs) + " at the top of `forward`")
    if returns:
        parts.append(f"dequantize the returned tensor{'s' if len(returns) > 1 else ''}")
    return Fix(Applicability.SAFE, "Add stubs: " + " and ".join(parts), tuple(edits))


def _library_fix(ctx: FileContext, info: CheckedModel, codes: set[str]) -> Fix | None:
    """Wrap the file's construction of a library model in a ``QuantWrapper`` subclass written here."""
    from torch.ao.quantization import QuantStub

    model, qg = info.model, info.root_graph
    if "QL101" not in codes or any(isinstance(m, QuantStub) for m in model.modules()):
        return None
    placeholders = [n for n, _ in qg.nodes("placeholder")]
    if len(placeholders) != 1 or _float_inputs(qg) != [str(qg.fx_nodes[placeholders[0]].target)]:
        return None
    if not _returns_one_quantized(qg):
        return None
    if any(True for rule in registry.graph_rules(NEEDS_LIBRARY_EDITS) for _ in rule.check_graph(qg)):
        return None
    call = ctx.construction_call(model)
    if call is None:
        return None
    top = ctx.file.top_statement(call)
    taken = set(ctx.file.bound_names) | _top_level_names(ctx)
    name = free_name(f"Quantizable{type(model).__name__}", taken)
    wrapper, edits = spelled(ctx, QUANT_WRAPPER, prefer_direct=True)
    library = type(model).__module__.split(".")[0]
    edits.append(
        ctx.file.insert_lines_before(
            top,
            [
                f"class {name}({wrapper}):",
                f'    """{library}\'s `{type(model).__name__}` between a QuantStub and a DeQuantStub (eager-mode '
                'quantization)."""',
                "",
                "",
            ],
            indent="",
        )
    )
    edits.append(ctx.file.replace(call, f"{name}({ctx.file.code(call)})"))
    return Fix(
        Applicability.UNSAFE,
        f"Wrap the {library} model in `{name}({wrapper})`, which quantizes its input and dequantizes its output "
        "(state_dict keys gain the prefix `module.`)",
        tuple(edits),
    )


def _top_level_names(ctx: FileContext) -> set[str]:
    names: set[str] = set()
    for stmt in ctx.file.module.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            names.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign):
                    names.update(t.target.value for t in small.targets if isinstance(t.target, cst.Name))
    return names


def _returns_one_quantized(qg) -> bool:
    """The model returns one tensor, and it is quantized (what ``QuantWrapper``'s DeQuantStub takes)."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    value = _output_value(qg)
    return isinstance(value, fx.Node) and qg.facts(value.name).kind is Kind.QUANT


def _output_value(qg):
    """What the traced ``forward`` returns: an fx Node, or a tuple/list of them."""
    output = next(n for n, _ in qg.nodes("output"))
    return qg.fx_nodes[output].args[0]


def _existing_attr(model, kind: type) -> str | None:
    for name, child in model.named_children():
        if isinstance(child, kind):
            return name
    return None


def _float_inputs(qg) -> list[str]:
    """Forward parameters holding float tensors that reach, through float values only, a module ``convert``
    swaps; a parameter that some path takes into a QuantStub already is left alone (one stub per input)."""
    from torch.ao.quantization import QuantStub

    from qlint.model.analysis import Kind

    out = []
    for name, facts in qg.nodes("placeholder"):
        target = str(qg.fx_nodes[name].target)
        if facts.kind is not Kind.FLOAT or target.startswith("*"):
            continue
        reaches_swapped = reaches_stub = False
        seen, todo = {name}, [name]
        while todo:
            for user in qg.users(todo.pop()):
                if user in seen:
                    continue
                seen.add(user)
                user_facts = qg.facts(user)
                if user_facts.module_type is not None and issubclass(user_facts.module_type, QuantStub):
                    reaches_stub = True
                elif user_facts.swapped:
                    reaches_swapped = reaches_swapped or Kind.FLOAT in user_facts.input_kinds[:1]
                elif user_facts.kind in (Kind.FLOAT, Kind.UNKNOWN):  # unknown: meta execution gave up there
                    todo.append(user)
        if reaches_swapped and not reaches_stub:
            out.append(target)
    return out


def _dequant_returns(ctx: FileContext, qg, forward: cst.FunctionDef) -> list[tuple[int, cst.BaseExpression]] | None:
    """The expressions to wrap in a DeQuantStub, with their position in the returned tuple (0 for a single
    value): each quantized element of each ``return``."""
    import torch.fx as fx

    from qlint.model.analysis import Kind

    value = _output_value(qg)

    def kind(v) -> Kind:
        return qg.facts(v.name).kind if isinstance(v, fx.Node) else Kind.NONE

    returns = _returns(forward)
    if not returns:
        return None
    wrap: list[tuple[int, cst.BaseExpression]] = []
    for ret in returns:
        expr = ret.value
        if expr is None:
            return None
        if isinstance(value, (tuple, list)):
            if not isinstance(expr, (cst.Tuple, cst.List)) or len(expr.elements) != len(value):
                return None
            if any(isinstance(e, cst.StarredElement) for e in expr.elements):
                return None
            elements = zip(expr.elements, value, strict=False)
            wrap.extend((i, e.value) for i, (e, v) in enumerate(elements) if kind(v) is Kind.QUANT)
        elif isinstance(value, fx.Node) and kind(value) is Kind.QUANT:
            wrap.append((0, expr))
        else:
            return None
    return wrap


def _returns(forward: cst.FunctionDef) -> list[cst.Return]:
    found: list[cst.Return] = []

    class Visitor(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is forward

        def visit_Lambda(self, node: cst.Lambda) -> bool:
            return False

        def visit_Return(self, node: cst.Return) -> None:
            found.append(node)

    forward.visit(Visitor())
    return found
