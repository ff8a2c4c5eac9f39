"""QL408 / QL409 / QL412: modules the qconfig that reaches them cannot quantize (a per-channel weight
observer on a transposed conv, a static qconfig on an embedding, a lazy module with no sizes yet).

Which qconfig reaches a module: the one the model sets on it or an ancestor (``self.emb.qconfig = ...``),
else the one a pipeline sets on the root, taken to be ``get_default_qconfig(engine)`` of the installed
torch (``--backend`` / ``backend``, else torch's engine on this host).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Fix, Severity
from qlint.rules.base import Basis, FixAvailability, FixItems, Flow, Invalid, Rule, Valid
from qlint.rules.performance import engine
from qlint.source.idioms import spelled

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph


def reaching_qconfig(qg: QGraph, qualname: str) -> tuple[object, str]:
    """(qconfig, where it comes from) for a module of ``qg``."""
    from qlint.model import support

    found, qconfig = support.qconfig_of(qg.root, qualname)
    if found:
        return qconfig, "the qconfig the model sets"
    backend = engine(qg.settings)
    return support.default_qconfig(backend), f'`get_default_qconfig("{backend}")`'


class PerChannelConvTranspose(Rule):
    """## What it does
    Reports a `ConvTranspose1d/2d/3d` that a qconfig with a per-channel weight observer reaches:
    `get_default_qconfig("x86")` and `get_default_qconfig("fbgemm")` are per-channel. The qconfig is
    the one the model sets on the module or an ancestor, else the engine's default qconfig (the
    engine is `--backend` / `backend`, else torch's engine on this host). Points at the line that
    calls the module.

    ## Why is this bad?
    Eager `prepare` refuses it:

    ```text
    AssertionError: Per channel weight observer is not supported yet for ConvTranspose{n}d.
    ```

    ## Use instead
    Give the transposed conv a per-tensor qconfig (`torch.ao.quantization.default_qconfig`, or
    `get_default_qconfig("qnnpack")`), keeping the per-channel one for the rest of the model.

    ## Fix safety
    Safe: `self.up.qconfig = default_qconfig` right after the layer is built in `__init__` (an
    own qconfig wins over the one `prepare` propagates from the root); float numerics do not
    change, and the rest of the model keeps its per-channel weights. Only a layer the model
    calls by its own attribute, and not in a file that quantizes with FX (`prepare_fx` reads a
    `QConfigMapping`, not the attribute: `.set_module_name("up", default_qconfig)` there).

    ## References
    - [pytorch/pytorch#54816](https://github.com/pytorch/pytorch/issues/54816) (per-channel quantization of ConvTranspose)
    - [`torch.ao.quantization.default_qconfig`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.qconfig.default_qconfig.html)
    """

    code = "QL408"
    name = "per-channel-convtranspose"
    severity = Severity.ERROR
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.GRAPH,)
    summary = "a per-channel weight qconfig reaches a ConvTranspose"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (`default_qconfig`, per-tensor, on that layer)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.up(self.quant(x)))
""",
            lines=(13,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, default_qconfig


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)
        self.up.qconfig = default_qconfig  # per-tensor weights: prepare refuses a per-channel observer here
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.up(self.quant(x)))
""",
            args=("--backend", "x86"),
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, default_qconfig


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)
        self.up.qconfig = default_qconfig  # per-tensor weights
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.up(self.quant(x)))
""",
            args=("--backend", "x86"),
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        import torch.nn as nn

        from qlint.model import support

        for name, facts in qg.nodes("call_module"):
            if not (facts.module_type and issubclass(facts.module_type, nn.modules.conv._ConvTransposeNd)):
                continue
            qconfig, origin = reaching_qconfig(qg, facts.module)
            if qconfig is not None and support.is_per_channel(qconfig):
                yield qg.diagnostic(
                    self.code,
                    f"`{qg.full(facts.module)}` ({facts.module_type.__name__}) gets a per-channel weight observer "
                    f'from {origin}: `prepare` fails ("Per channel weight observer is not supported yet for '
                    'ConvTranspose{n}d"); give it a per-tensor qconfig (`default_qconfig`)',
                    name,
                )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return layer_qconfig_fixes(ctx, items, DEFAULT_QCONFIG, PER_TENSOR_NOTE, "a per-tensor qconfig")


DEFAULT_QCONFIG = ("torch.ao.quantization.default_qconfig", "torch.quantization.default_qconfig")
PER_TENSOR_NOTE = "per-tensor weights: prepare refuses a per-channel observer here"
WEIGHT_ONLY_QCONFIG = (
    "torch.ao.quantization.float_qparams_weight_only_qconfig",
    "torch.quantization.float_qparams_weight_only_qconfig",
)
WEIGHT_ONLY_NOTE = "convert quantizes an embedding's weights only (its output stays float)"


def layer_qconfig_fixes(ctx: FileContext, items: FixItems, qconfig: tuple[str, ...], note: str, what: str):
    """``layer_qconfig_fix`` for each finding; none in a file that quantizes with FX (``prepare_fx`` reads a
    ``QConfigMapping``, not a layer's ``qconfig`` attribute)."""
    from qlint.source.index import uses_fx_flow

    if uses_fx_flow(ctx.source):
        return {}
    fixes = {index: layer_qconfig_fix(ctx, diag, qconfig, note, what) for index, diag in items}
    return {index: fix for index, fix in fixes.items() if fix is not None}


def layer_qconfig_fix(ctx: FileContext, diag: Diagnostic, qconfig: tuple[str, ...], note: str, what: str) -> Fix | None:
    """``self.<layer>.qconfig = <qconfig>  # <note>`` after the one statement of ``__init__`` that builds the layer
    the finding's line calls as ``self.<layer>(...)`` (an own qconfig wins over the one ``prepare`` propagates)."""
    import libcst as cst

    from qlint.source.edit import attribute_assignments, methods

    leaf = (diag.module or "").rsplit(".", 1)[-1]
    for call in ctx.file.nodes_at(diag.span, (cst.Call,)):
        func = call.func
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self"):
            continue
        if func.attr.value != leaf:
            continue
        cls = ctx.file.enclosing_class(call)
        init = methods(cls).get("__init__") if cls is not None else None
        built = attribute_assignments(init, leaf) if init is not None else []
        if len(built) != 1:
            return None
        name, imports = spelled(ctx, qconfig, prefer_direct=True)
        edit = ctx.file.insert_lines_after(built[0], [f"self.{leaf}.qconfig = {name}  # {note}"])
        return Fix(Applicability.SAFE, f"Give `self.{leaf}` {what} (`{name}`)", (edit, *imports))
    return None


class EmbeddingQconfig(Rule):
    """## What it does
    Reports an `nn.Embedding` / `nn.EmbeddingBag` that a static qconfig reaches (any qconfig whose
    weight observer is not the float-qparams one of `float_qparams_weight_only_qconfig`; with no
    qconfig on the module, the engine's default static qconfig a pipeline sets on the root).
    Points at the line that calls the embedding.

    ## Why is this bad?
    `convert` swaps embeddings only for weight-only quantization, and refuses any other qconfig:

    ```text
    AssertionError: Embedding quantization is only supported with float_qparams_weight_only_qconfig.
    ```

    Adding a `QuantStub` before the embedding is the wrong remedy: its input is token ids.

    ## Use instead
    `self.emb.qconfig = float_qparams_weight_only_qconfig` (its output is float: quantize it with a
    `QuantStub` where the static part of the model starts), or `qconfig = None` to keep it float.

    ## Fix safety
    Safe: `self.emb.qconfig = float_qparams_weight_only_qconfig` right after the embedding is built
    in `__init__`; float numerics do not change. Only an embedding the model calls by its own
    attribute, and not in a file that quantizes with FX (set it in the `QConfigMapping` there).

    ## References
    - [`float_qparams_weight_only_qconfig`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.qconfig.float_qparams_weight_only_qconfig.html)
    - [pytorch/pytorch#41396](https://github.com/pytorch/pytorch/issues/41396) (quantized embeddings)
    """

    code = "QL409"
    name = "embedding-qconfig"
    severity = Severity.ERROR
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.GRAPH,)
    summary = "a static qconfig reaches an nn.Embedding"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe (`float_qparams_weight_only_qconfig` on that embedding)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.quant = QuantStub()
        self.fc = nn.Linear(16, 4)
        self.dequant = DeQuantStub()

    def forward(self, ids):
        x = self.quant(self.emb(ids))
        return self.dequant(self.fc(x))
""",
            lines=(14,),
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, float_qparams_weight_only_qconfig


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.emb.qconfig = float_qparams_weight_only_qconfig  # convert quantizes an embedding's weights only (its output stays float)
        self.quant = QuantStub()
        self.fc = nn.Linear(16, 4)
        self.dequant = DeQuantStub()

    def forward(self, ids):
        x = self.quant(self.emb(ids))
        return self.dequant(self.fc(x))
""",
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, float_qparams_weight_only_qconfig


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.emb.qconfig = float_qparams_weight_only_qconfig
        self.quant = QuantStub()
        self.fc = nn.Linear(16, 4)
        self.dequant = DeQuantStub()

    def forward(self, ids):
        x = self.quant(self.emb(ids))
        return self.dequant(self.fc(x))
""",
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        from qlint.model import support

        for name, facts in qg.nodes("call_module"):
            if not (facts.module_type and issubclass(facts.module_type, support.INDEX_INPUT_TYPES)):
                continue
            qconfig, origin = reaching_qconfig(qg, facts.module)
            if qconfig is not None and not support.is_weight_only(qconfig):
                yield qg.diagnostic(
                    self.code,
                    f"`{qg.full(facts.module)}` ({facts.module_type.__name__}) gets a static qconfig from {origin}: "
                    '`convert` fails ("Embedding quantization is only supported with '
                    'float_qparams_weight_only_qconfig"); set '
                    f"`{facts.module}.qconfig = float_qparams_weight_only_qconfig` (or None to keep it float)",
                    name,
                )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        return layer_qconfig_fixes(ctx, items, WEIGHT_ONLY_QCONFIG, WEIGHT_ONLY_NOTE, "weight-only quantization")


class LazyModuleAtPrepare(Rule):
    """## What it does
    Reports a lazy module (`LazyLinear`, `LazyConv2d`, ...) whose sizes are not known yet when the
    model is built, inside a model that gets quantized. Points at the line that calls it.

    ## Why is this bad?
    `prepare` attaches an observer to the lazy module; its first forward pass (calibration) turns it
    into a plain module of another class, and the observer is lost. `convert` then fails:

    ```text
    AttributeError: 'Linear' object has no attribute 'activation_post_process'
    ```

    ## Use instead
    Give the sizes (`nn.Linear(8, 4)` instead of `nn.LazyLinear(4)`), or run one forward pass on a
    real input before `prepare`.

    ## Fix safety
    Unsafe: the fix replaces the lazy module's construction by the concrete module with its input
    size written out, the size the lazy module takes on the analysed input shape (`--input-shape`,
    `# qlint: input-shape`, `input-shape` in the config): `nn.LazyLinear(4)` becomes
    `nn.Linear(8, 4)`, `nn.LazyConv2d(16, 3)` becomes `nn.Conv2d(3, 16, 3)` (the other arguments are
    kept). The state_dict keys are the same (`fc.weight`, `fc.bias`) and a float checkpoint loads
    into the fixed model and gives exactly the same outputs. It is unsafe because the fixed model
    is not the same program: its weights are initialized when it is built, from a different random
    stream than the lazy module's (initialized at its first forward), so a model trained from
    scratch, or seeded, starts from other numbers; and the size is now fixed, so an input whose
    size differs from the analysed shape fails where the lazy module would have adapted.

    Offered where the lazy module is built by a call of the checked file (`self.fc = nn.LazyLinear(4)`,
    or inside an `nn.Sequential(...)`) and the analysed shape reaches it.

    ## References
    - [`torch.nn.modules.lazy.LazyModuleMixin`](https://pytorch.org/docs/stable/generated/torch.nn.modules.lazy.LazyModuleMixin.html)
    """

    code = "QL412"
    name = "lazy-module-at-prepare"
    severity = Severity.ERROR
    flows = (Flow.EAGER, Flow.FX)
    basis = (Basis.GRAPH,)
    summary = "an uninitialized lazy module at prepare loses its observer"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "unsafe (the concrete module, sized from the analysed input shape)"
    examples = (
        Invalid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.fc = nn.LazyLinear(4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc(self.quant(x)))
""",
            lines=(13,),
            args=("--input-shape", "1x8"),
            unsafe=True,
            fixed="""\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.fc = nn.Linear(8, 4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc(self.quant(x)))
""",
        ),
        Valid(
            """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.fc = nn.Linear(8, 4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc(self.quant(x)))
""",
            args=("--input-shape", "1x8"),
        ),
    )

    def check_graph(self, qg: QGraph) -> Iterator[Diagnostic]:
        for name, facts in qg.nodes("call_module"):
            lazy = qg.lazy_modules.get(facts.module)
            if lazy and qg.quantized_by_qconfig(facts.module):
                yield qg.diagnostic(
                    self.code,
                    f"`{qg.full(facts.module)}` is a {lazy} with no sizes yet: calibration turns it into a plain module "
                    "and its observer is lost (`convert` fails: \"no attribute 'activation_post_process'\"); give its "
                    "sizes, or run one forward pass before `prepare`",
                    name,
                    data=_sizes(qg, facts.module, lazy),
                )

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        out: dict[int, Fix] = {}
        for index, diag in items:
            fix = _concrete_fix(ctx, diag)
            if fix is not None:
                out[index] = fix
        return out


# the size a lazy module infers from its input, by the attribute its concrete module stores it in
_INFERRED_SIZES = ("in_features", "in_channels", "num_features")


@dataclass(frozen=True)
class LazySizes:
    """What QL412 hands its fix: the lazy class, the concrete class it became on the analysed input (its
    dotted name under ``torch.nn``) and the input size it inferred, the concrete constructor's first argument."""

    lazy: str
    concrete: str
    size: int


def _sizes(qg: QGraph, qualname: str, lazy: str) -> LazySizes | None:
    """The sizes the lazy module took in the meta run at the analysed shape (None if it did not run)."""
    import torch.nn as nn

    module = qg.submodule(qualname)
    concrete = type(module).__name__
    if concrete == lazy or getattr(nn, concrete, None) is not type(module):
        return None
    size = next((getattr(module, attr) for attr in _INFERRED_SIZES if hasattr(module, attr)), None)
    return LazySizes(lazy, f"torch.nn.{concrete}", size) if isinstance(size, int) else None


def _concrete_fix(ctx: FileContext, diag: Diagnostic) -> Fix | None:
    """``nn.LazyLinear(4)`` -> ``nn.Linear(8, 4)`` at the call of the file that built the module."""
    import libcst as cst

    data = diag.data
    info = ctx.model_for(diag)
    if not isinstance(data, LazySizes) or info is None or not diag.module:
        return None
    try:
        module = info.model.get_submodule(diag.module)
    except AttributeError:
        return None
    call = ctx.construction_call(module, direct=True)
    if call is None or (get_full_name_for_node(call.func) or "").rsplit(".", 1)[-1] != data.lazy:
        return None
    if any(arg.star for arg in call.args):
        return None
    name, imports = spelled(ctx, (data.concrete,))
    size = cst.Arg(cst.Integer(str(data.size)))
    new = call.with_changes(func=cst.parse_expression(name), args=[size, *call.args])
    text = cst.Module([]).code_for_node(new)
    return Fix(
        Applicability.UNSAFE,
        f"Build `{text}` (the size `{data.lazy}` infers from the analysed input shape; the weights are "
        "initialized at construction, not at the first forward)",
        (*imports, ctx.file.replace(call, text)),
    )
