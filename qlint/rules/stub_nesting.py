"""QL109: a QuantStub that receives an already-quantized tensor (an outer stub or ``QuantWrapper`` around a
model that quantizes its own input), and its fix: the file's ``QuantWrapper(model)`` becomes ``model``. Also a
QuantStub fed integer token ids (a ``QuantWrapper`` around a model that starts with an embedding): no fix."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph


@dataclass(frozen=True)
class NestedStub:
    """What QL109 hands its fix: the outer stub, and the ``QuantWrapper`` holding it ("" for the root)."""

    outer: str  # qualified name of the outer QuantStub in the checked model
    wrapper: str | None  # qualified name of the QuantWrapper it belongs to, or None


class DoubleQuantization(Rule):
    """## What it does
    Reports a `QuantStub` whose input is already quantized after `convert`: an outer `QuantStub`
    or a `QuantWrapper` around a model that quantizes its own input, or nested stubs. Points at
    the outer stub (for a `QuantWrapper`, the line of the file that builds it).

    Also a `QuantStub` fed integer token ids (a `QuantWrapper` around a model that starts with an
    `nn.Embedding`/`EmbeddingBag`): ids are not quantized, the embedding takes them as they are.

    ## Why is this bad?
    After `convert` the inner stub is a `Quantize` module, and quantizing a quantized tensor has no
    kernel; the first forward pass of the converted model fails:

    ```text
    NotImplementedError: Could not run 'aten::quantize_per_tensor' with arguments from the 'QuantizedCPU' backend.
    ```

    A stub fed token ids fails earlier, in calibration (its observer takes float tensors only):

    ```text
    RuntimeError: expected scalar type Float but found Long
    ```

    ## Use instead
    Quantize once: drop the outer wrapper when the model already has its own stubs. Feed token ids
    to the embedding unquantized (its weight-only qconfig quantizes the table, not the ids).

    ## Fix safety
    Safe when the file builds the outer stub as `QuantWrapper(model)`: the fix writes `model`.
    In float the stubs are the identity, so float outputs do not change (the state_dict keys lose
    the prefix `module.`). Other nestings are not fixed automatically.

    ## References
    - [`torch.ao.quantization.QuantWrapper`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.QuantWrapper.html)
    - [pytorch/pytorch#47046](https://github.com/pytorch/pytorch/issues/47046) (`Could not run 'aten::quantize_per_tensor' with arguments from the 'QuantizedCPU' backend`)
    """

    code = "QL109"
    name = "double-quantization"
    severity = Severity.ERROR
    flows = (Flow.EAGER,)
    basis = (Basis.GRAPH,)
    summary = "a QuantStub receives a tensor that is already quantized"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (the outer `QuantWrapper` removed)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))


def build_model() -> nn.Module:
    return QuantWrapper(Net())
""",
            lines=(17,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))


def build_model() -> nn.Module:
    return Net()
""",
        ),
        Invalid(
            """\
# qlint: input-shape = 1x12
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper, float_qparams_weight_only_qconfig


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.EmbeddingBag(10, 12, mode="sum")
        self.emb.qconfig = float_qparams_weight_only_qconfig
        self.quant = QuantStub()
        self.fc = nn.Linear(12, 4)
        self.dequant = DeQuantStub()

    def forward(self, ids):
        return self.dequant(self.fc(self.quant(self.emb(ids))))


def build_model() -> nn.Module:
    return QuantWrapper(Bag())
""",
            lines=(20,),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import QuantWrapper


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


def build_model() -> nn.Module:
    return QuantWrapper(Net())
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        from torch.ao.quantization import QuantStub, QuantWrapper

        from qlint.model.analysis import Kind

        for name, facts in qg.nodes("call_module"):
            if not (facts.module_type and issubclass(facts.module_type, QuantStub) and facts.swapped):
                continue
            ids = _integer_input(qg, name)
            if ids is not None:
                yield qg.diagnostic(
                    self.code,
                    f"`{qg.full(facts.module)}` receives integer token ids ({ids}), which a QuantStub cannot quantize: "
                    "its observer takes float tensors only and calibration fails; feed the ids to the embedding "
                    "without a stub",
                    name,
                )
                continue
            if not facts.input_kinds or facts.input_kinds[0] is not Kind.QUANT:
                continue
            outer = _outer_stub(qg, name)
            if outer is None:
                continue
            outer_module = qg.facts(outer).module
            parent = outer_module.rpartition(".")[0]
            wrapper = parent if isinstance(qg.submodule(parent) if parent else qg.root, QuantWrapper) else None
            yield qg.diagnostic(
                self.code,
                f"`{qg.full(facts.module)}` quantizes a tensor that `{qg.full(outer_module)}` already quantized: after "
                "`convert` the forward fails (no 'aten::quantize_per_tensor' kernel for QuantizedCPU); "
                + ("remove the outer `QuantWrapper`" if wrapper is not None else "remove the outer stub"),
                outer,
                data=NestedStub(qg.full(outer_module), qg.full(wrapper) if wrapper else wrapper),
            )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        out: dict[int, Fix] = {}
        for i, diag in items:
            facts = diag.data
            info = ctx.model_for(diag)
            if not isinstance(facts, NestedStub) or facts.wrapper is None or info is None:
                continue
            wrapper = info.model.get_submodule(facts.wrapper) if facts.wrapper else info.model
            call = ctx.construction_call(wrapper, direct=True)
            if call is None or len(call.args) != 1 or call.args[0].keyword is not None or call.args[0].star:
                continue
            inner = call.args[0].value
            edit = ctx.file.replace(call, ctx.file.code(inner))
            out[i] = Fix(
                Applicability.SAFE, "Remove the outer `QuantWrapper` (the model quantizes its own input)", (edit,)
            )
        return out


def _integer_input(qg: QGraph, name: str) -> str | None:
    """The dtype of the stub's input when it is an integer tensor (token ids), else None."""
    import torch.fx as fx

    node = qg.fx_nodes[name]
    arg = node.args[0] if node.args else None
    value = qg.facts(arg.name).value if isinstance(arg, fx.Node) else None
    dtype = getattr(value, "dtype", None)
    if dtype is None or dtype.is_floating_point or dtype.is_complex or getattr(value, "is_quantized", False):
        return None
    return str(dtype).removeprefix("torch.")


def _outer_stub(qg: QGraph, name: str) -> str | None:
    """The nearest QuantStub upstream of ``name`` whose output reaches it quantized."""
    from torch.ao.quantization import QuantStub

    from qlint.model.analysis import Kind

    seen: set[str] = set()
    queue = list(qg.graph.predecessors(name))
    while queue:
        node = queue.pop(0)
        if node in seen:
            continue
        seen.add(node)
        facts = qg.facts(node)
        if facts.kind is not Kind.QUANT:
            continue
        if facts.op == "call_module" and facts.module_type and issubclass(facts.module_type, QuantStub):
            return node
        queue.extend(qg.graph.predecessors(node))
    return None
