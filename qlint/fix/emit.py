"""``qlint emit``: a self-contained, quantizable copy of a model whose code lives in a library.

1. build the file's model once more, recording the constructor arguments of the library's classes;
2. write one Python file: the library classes the model uses (their own source, via ``inspect``),
   the helpers defined beside them, imports for everything else, and ``build_model()`` calling the
   root class with the recorded arguments;
3. where a ReLU6 blocks Conv-BN-ReLU fusion (``qlint.rules.relu6``): build it as ReLU + clamp (safe), or,
   with ``unsafe``, as ReLU (what torchvision's own quantizable MobileNetV2 does);
4. run the fix loop on that file (safe fixes: stubs, FloatFunctional, distinct modules,
   ``fuse_model()``; with ``unsafe`` also the unsafe ones), so the result is what ``qlint check --fix``
   would make of the code;
5. what the fix loop leaves and ``build_model()`` can still repair: layers QL105 reports run in float (hooks), a
   ``padding="same"`` that quantized convs do not take is written as numbers, and a model whose own forward does
   not trace quantizes each of its parts on its own (hooks);
6. check that the emitted model loads the original model's state_dict (strict) and gives the same
   float output (only that it runs, with ``unsafe``: its numerics changed), then write it atomically.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import inspect
import os
import sys
import textwrap
import types
from dataclasses import dataclass, field

from qlint.config import Settings

HEADER = '''"""Quantizable {what}, emitted by `qlint emit` from {source}.

The classes are {libraries}'s own code with qlint's safe fixes applied (QuantStub/DeQuantStub,
FloatFunctional, one module per call site, fuse_model()); the state_dict keys are the original's,
so `build_model().load_state_dict(original.state_dict())` works.{note}
"""
# qlint: model = build_model()
'''


class EmitError(Exception):
    """The model cannot be emitted (the reason is for the user)."""


class CheckFailed(EmitError):
    """The emitted model failed its check: it did not build, load the original's state, or run in float."""


@dataclass
class _Code:
    imports: dict[str, str] = field(default_factory=dict)  # bound name -> import line
    functions: list[object] = field(default_factory=list)
    classes: list[type] = field(default_factory=list)
    aliases: dict[str, type] = field(default_factory=dict)  # ``SElayer = SqueezeExcitation``
    visiting: set = field(default_factory=set)  # functions whose names are being resolved
    library_types: bool = False  # a class passed as an argument: the library's own, not the copy


SPLIT_NOTE = """
ReLU6 is built as ReLUClamp6 (ReLU then Hardtanh(0, 6), the same numbers) at {sites}, so that its ReLU
fuses with the Conv-BN before it."""
UNSAFE_NOTE = """
Emitted with --unsafe-fixes: ReLU6 -> ReLU at {sites}, so the float outputs differ from the original's."""


def emit(
    path: str, out: str, settings: Settings, expr: str | None = None, unsafe: bool = False
) -> tuple[str, int, list[str]]:
    """Write the quantizable copy of the library model built by ``path`` to ``out``; (model name, fixes, notes for
    the user: what the measured float fallback keeps float, or why the copy still does not convert).

    ``unsafe`` also applies the fixes that change numerics (ReLU6 -> ReLU so Conv-BN-ReLU fuses, as
    torchvision's hand-written quantizable models do) or interfaces.
    """
    from qlint.config import with_pragmas
    from qlint.fix.apply import write_atomic
    from qlint.source.file import SourceFile

    settings = with_pragmas(settings, SourceFile.read(path))  # the file's `# qlint: input-shape`
    spec, model, ctor = _library_model(path, settings, expr)
    swaps = _swapped_after_build(model, ctor)
    try:
        text, fixes, notes = _emitted(path, out, settings, spec, model, ctor, swaps, unsafe, library_types=False)
    except CheckFailed as first:
        # a class passed to the constructor that the library looks up by identity (timm's `norm_layer` registry:
        # "No equivalent norm_act layer for batchnormact2d"): pass the library's own class instead
        try:
            text, fixes, notes = _emitted(path, out, settings, spec, model, ctor, swaps, unsafe, library_types=True)
        except EmitError:
            raise first from None
    write_atomic(out, text)
    return spec.name, fixes, notes


def _emitted(path: str, out: str, settings: Settings, spec, model, ctor, swaps, unsafe: bool, library_types: bool):
    """(the emitted text, fixes applied, notes): render, the fix loop, the float islands and fallback, the check."""
    from qlint.fix.apply import fix_text
    from qlint.rules.relu6 import relu6_to_relu, split_relu6

    draw = functools.partial(render, swaps=swaps, library_types=library_types)
    text = draw(model, ctor, spec.name, path, shape=settings.input_shape)
    rewrites = 0
    for rewrite, note, wanted in ((relu6_to_relu, UNSAFE_NOTE, unsafe), (split_relu6, SPLIT_NOTE, True)):
        _, rewrites = rewrite(text, model) if wanted else (text, 0)
        if rewrites:
            note = note.format(sites=f"{rewrites} site{'s' * (rewrites > 1)}")
            text, _ = rewrite(draw(model, ctor, spec.name, path, note=note, shape=settings.input_shape), model)
            break
    fix_settings = Settings(select=settings.select, ignore=settings.ignore, backend=settings.backend,
                            input_shape=settings.input_shape)  # fmt: skip
    outcome = fix_text(out, text, fix_settings, unsafe=unsafe)
    text, islands = with_float_islands(outcome.text, model, outcome.remaining)
    text, paddings = with_explicit_padding(text, model)
    text, parts = with_quantized_parts(text, model, outcome.remaining)
    text, fallback = with_float_fallback(text, out, model, settings)
    plain = _verify(text, out, model, exact=not unsafe, shape=settings.input_shape)
    notes = fallback.notes()
    if plain:
        notes.append(f"Not in the state_dict (plain tensor attributes, not parameters or buffers): {', '.join(plain)}; "
                     "copy them from your model after `load_state_dict`.")  # fmt: skip
    return text, outcome.fixed + rewrites + islands + paddings + parts + fallback.kinds, notes


FLOAT_ISLANDS = '''
def _island_in(module: nn.Module, args: tuple) -> tuple:
    return tuple(module.island_dequant(a) if isinstance(a, torch.Tensor) else a for a in args)


def _island_out(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return module.island_quant(output)


def float_islands(model: nn.Module, *kinds: type) -> nn.Module:
    """Run the layers of these kinds in float (they have no quantized kernel): a DeQuantStub before and a
    QuantStub after each, as hooks, so the state_dict keys and the float outputs stay the original's.
    A layer already in an island where it is called (`self.dequant_<name>` beside it), or inside another island, is
    left alone. A kind copied into this file also matches the library's own class of that name (a library may
    build its layers through a registry, not through this file's copy)."""
    copied = {kind.__name__ for kind in kinds if kind.__module__ == __name__}
    islands: list[str] = []
    for name, module in list(model.named_modules()):
        parent, _, attr = name.rpartition(".")
        kind = type(module) in kinds or type(module).__name__ in copied
        inside = any(name.startswith(f"{island}.") for island in islands)  # already float
        if kind and not inside and not hasattr(model.get_submodule(parent), f"dequant_{attr}"):
            islands.append(name)
            module.island_dequant, module.island_quant = DeQuantStub(), QuantStub()
            module.register_forward_pre_hook(_island_in)
            module.register_forward_hook(_island_out)
    return model
'''


def with_float_islands(text: str, model, remaining) -> tuple[str, int]:
    """QL105 on a layer the fix loop could not wrap at a call site (a layer inside an ``nn.Sequential``, built by
    ``activation_layer()``): ``build_model()`` runs every layer of that kind in float; (text, kinds wrapped).

    Only layers with one tensor output and nothing inside that ``convert`` swaps (timm's ``BatchNormAct2d`` calls
    ``F.batch_norm``, then its activation). qlint reports one layer per source line, so every layer of the kind
    is wrapped; the stubs hold no state (the state_dict loads) and are the identity before ``convert``."""
    kinds: list[type] = []
    for diag in remaining:
        if diag.code != "QL105":
            continue
        try:
            module = model.get_submodule(diag.module) if diag.module else _calling_layer(diag, model)
        except AttributeError:
            continue
        if module is not None and _floatable(module) and type(module) not in kinds:
            kinds.append(type(module))
    names = [f"nn.{k.__name__}" if k.__module__.startswith("torch.nn.modules") else k.__name__ for k in kinds]
    if not names:
        return text, 0
    imports = (("torch", "import torch"), ("DeQuantStub", "from torch.ao.quantization import DeQuantStub"),
               ("QuantStub", "from torch.ao.quantization import QuantStub"))  # fmt: skip
    build = _wrapped_build(text, "float_islands", names, FLOAT_ISLANDS, imports)
    return build, len(kinds) if build != text else 0


EXPLICIT_PADDING = '''
def explicit_padding(model: nn.Module) -> nn.Module:
    """A quantized conv takes its padding only as numbers: the convs built with `padding="same"` that pad both
    sides alike (odd kernels) get those numbers, which give the same outputs."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd) and module.padding == "same":
            module.padding = tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))
    return model
'''


def with_explicit_padding(text: str, model) -> tuple[str, int]:
    """Convs built with ``padding="same"`` (timm's ConvMixer): ``convert`` fails on them (``conv2d_prepack`` takes a
    list of ints). Where "same" is symmetric, ``build_model()`` writes it as numbers; (text, convs rewritten). An
    asymmetric "same" (even kernel) is left as it is."""
    import torch.nn as nn

    count = sum(
        1
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd) and m.padding == "same" and m.padding_mode == "zeros"
        and all(d * (k - 1) % 2 == 0 for d, k in zip(m.dilation, m.kernel_size, strict=True))
    )  # fmt: skip
    if not count:
        return text, 0
    build = _wrapped_build(text, "explicit_padding", [], EXPLICIT_PADDING, ())
    return build, count if build != text else 0


QUANTIZED_PARTS = '''
def _part_in(stubs: nn.ModuleDict, module: nn.Module, args):
    if isinstance(args, torch.Tensor):
        return stubs.quant(args) if args.is_floating_point() else args
    if type(args) in (tuple, list):  # the arguments, and a list of feature maps among them
        return type(args)(_part_in(stubs, module, a) for a in args)
    return args


def _part_out(stubs: nn.ModuleDict, module: nn.Module, args: tuple, output):
    if isinstance(output, torch.Tensor):
        return stubs.dequant(output) if output.is_quantized else output
    if type(output) in (tuple, list):
        return type(output)(_part_out(stubs, module, args, o) for o in output)
    if type(output) is dict:
        return {k: _part_out(stubs, module, args, v) for k, v in output.items()}
    return output


def quantized_parts(model: nn.Module, *names: str) -> nn.Module:
    """The model's own code does not trace, so it cannot get stubs: each of these parts (the ones qlint checks
    instead) quantizes its float inputs (a QuantStub) and dequantizes its outputs (a DeQuantStub), as hooks; the
    stubs live in `model.part_stubs` (they hold no state: the state_dict loads, the float outputs stay the same)."""
    model.part_stubs = nn.ModuleDict()
    for name in names:
        stubs = nn.ModuleDict({"quant": QuantStub(), "dequant": DeQuantStub()})
        model.part_stubs[name.replace(".", "__")] = stubs
        part = model.get_submodule(name)
        part.register_forward_pre_hook(partial(_part_in, stubs))
        part.register_forward_hook(partial(_part_out, stubs))
    return model
'''


def with_quantized_parts(text: str, model, remaining) -> tuple[str, int]:
    """A model whose own forward does not trace (QL002: torchvision's detection models, timm's ByobNet) keeps QL101
    in the parts qlint checked instead, since no stub can go in its forward: ``build_model()`` quantizes each part
    on its own (``quantized_parts``); (text, parts)."""
    import torch.nn as nn
    from torch.ao.quantization import DeQuantStub, QuantStub
    from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

    from qlint.model.check import CheckedParts

    found = [d.data.names for d in remaining if isinstance(d.data, CheckedParts)]
    if not found or isinstance(model, nn.Sequential):
        return text, 0
    checked = found[0]
    swapped = set(get_default_static_quant_module_mappings()) - {QuantStub, DeQuantStub}
    # every part gets float tensors from the untraceable code (QL101 is reported once per source line, so for one
    # of the instances of a block class only): each part with a layer `convert` swaps, and no stub of its own
    kinds = [{type(m) for m in model.get_submodule(p).modules()} for p in checked]
    names = [p for p, k in zip(checked, kinds, strict=True) if k & swapped and QuantStub not in k]
    # a layer `convert` swaps, called by the untraceable code itself (no part holds it): float in, as for a part
    names += [n for n, m in model.named_modules() if n and type(m) in swapped
              and not any(n == p or n.startswith(p + ".") for p in checked)]  # fmt: skip
    if not names:
        return text, 0
    imports = (("torch", "import torch"), ("partial", "from functools import partial"),
               ("DeQuantStub", "from torch.ao.quantization import DeQuantStub"),
               ("QuantStub", "from torch.ao.quantization import QuantStub"))  # fmt: skip
    build = _wrapped_build(text, "quantized_parts", [f'"{n}"' for n in names], QUANTIZED_PARTS, imports)
    return build, len(names) if build != text else 0


def with_float_fallback(text: str, out: str, model, settings: Settings):
    """What still fails at the first int8 forward runs in float, found by real conversions (``qlint.fix.fallback``);
    (text, the search's ``Fallback``)."""
    import torch

    from qlint.fix.fallback import FLOAT_FALLBACK, IMPORTS, Fallback, measured_fallback

    x = _example_input(model, settings.input_shape)
    if x is None:
        return text, Fallback(failure="not measured: no example input (add `# qlint: input-shape = ...`)")

    def example():
        return torch.randint_like(x, 0, int(x.max()) + 1) if not x.is_floating_point() else torch.rand_like(x)

    def wrap(text: str, extra: list[str]) -> str:
        return _wrapped_build(text, "float_fallback", extra, FLOAT_FALLBACK, IMPORTS)

    from qlint.config import BACKENDS

    engine = settings.backend if settings.backend in BACKENDS else "x86"
    return measured_fallback(text, out, model, example, wrap, engine=engine)


def _floatable(module) -> bool:
    """A layer that can run in float between stubs (hooks): not recurrent or attention (several outputs), not a
    container (its forward would run the stubs), and nothing inside it that ``convert`` swaps."""
    import torch.nn as nn
    from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

    if isinstance(module, (nn.RNNBase, nn.MultiheadAttention, nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    swapped = get_default_static_quant_module_mappings()
    return not any(type(m) in swapped for m in list(module.modules())[1:])


def _calling_layer(diag, model):
    """A layer of ``model`` whose class's code makes the call QL105 reports with no module (a function in a library
    layer's forward: timm's ``LayerNorm2d`` calling ``F.layer_norm``, found by the traceback's frames)."""
    sites = [diag.span, *(r.span for r in diag.related)]
    for module in model.modules():
        try:
            lines, start = inspect.getsourcelines(type(module))
            path = os.path.abspath(inspect.getsourcefile(type(module)) or "")
        except (OSError, TypeError):
            continue
        for site in sites:
            same = path == os.path.abspath(site.path) or path.endswith(os.sep + site.path.lstrip(os.sep))
            if same and start <= site.line < start + len(lines):
                return module
    return None


def _wrapped_build(text: str, helper: str, extra: list[str], definition: str, imports) -> str:
    """``build_model()`` returning ``helper(<what it returned>, *extra)``, with ``definition`` placed before it and
    the ``(bound name, import line)`` pairs of ``imports`` it needs added; ``text`` unchanged without a build_model."""
    start = text.rfind("\ndef build_model()")
    ret = text.find("\n    return ", start)
    if start < 0 or ret < 0:
        return text
    call = text[ret + len("\n    return ") :].rstrip()
    listed = "".join(f"\n        {name}," for name in extra)
    build = text[:ret] + f"\n    return {helper}(\n        {call},{listed}\n    )\n"
    tree = ast.parse(text)
    bound = {a.asname or a.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             for a in node.names}  # fmt: skip
    missing = [line for name, line in imports if name not in bound]
    build = build[: start + 1] + definition.strip("\n") + "\n\n\n" + build[start + 1 :]
    if missing:
        first = next(n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
        lines = build.splitlines(keepends=True)
        lines[first.lineno - 1 : first.lineno - 1] = [line + "\n" for line in missing]
        build = "".join(lines)
    return build


def _library_model(path: str, settings: Settings, expr: str | None):
    """(spec, model on CPU, recorded constructor args of the root) for the file's library model."""
    from qlint.model import loader
    from qlint.source.file import SourceFile

    source = SourceFile.read(path)
    if expr:
        from dataclasses import replace

        settings = replace(settings, model_exprs=(expr,))
    with loader.quiet():
        specs, found, module = loader.find_models(path, settings, source)
    if module is None:
        raise EmitError(found[0].message if found else f"cannot import {path}")
    for spec in specs:
        try:
            probe = loader.build(spec)
        except loader.UserCodeError as err:
            raise EmitError(err.diagnostic.message) from None
        cls = type(probe)
        if not _defined_in(cls, path) and not _is_torch(cls):
            with _recording(cls):
                model = loader.build(spec, device="cpu")
            ctor = getattr(model, "__qlint_ctor__", None)
            if ctor is None:
                raise EmitError(f"could not record how `{spec.name}` builds its {cls.__name__}")
            return spec, model, ctor
    raise EmitError(
        f"{path} builds no library model (its models' code is in the file: use `qlint check --fix` instead)"
    )


def _is_torch(cls: type) -> bool:
    """Part of torch itself; torch's own test models (``torch.testing``) are model code like a library's."""
    return cls.__module__.split(".")[0] == "torch" and not cls.__module__.startswith("torch.testing")


def _library(cls: type) -> str:
    """The modules whose classes are recorded: the top-level package (``torchvision``), or for a model of torch's
    own test helpers only its module (not all of torch)."""
    return cls.__module__ if cls.__module__.startswith("torch.") else cls.__module__.split(".")[0]


def _defined_in(cls: type, path: str) -> bool:
    try:
        return os.path.abspath(inspect.getsourcefile(cls) or "") == os.path.abspath(path)
    except TypeError:
        return False


class _recording:
    """Record ``(args, kwargs)`` of every object built by the classes of the root's library modules."""

    def __init__(self, root_cls: type):
        package = _library(root_cls)
        self.classes = [
            obj
            for name, mod in list(sys.modules.items())
            if (name == package or name.startswith(package + ".")) and mod is not None
            for obj in vars(mod).values()
            if isinstance(obj, type) and obj.__module__ == name and ("__init__" in vars(obj) or _is_module(obj))
        ]
        self.saved: list[tuple[type, object]] = []

    def __enter__(self):
        for cls in set(self.classes):
            original = vars(cls).get("__init__")  # None: inherited (DeepLabV3 is its base's __init__ alone)

            @functools.wraps(original or cls.__init__)
            def init(obj, *args, __original=original, __cls=cls, **kwargs):
                if type(obj) is __cls and "__qlint_ctor__" not in obj.__dict__:
                    object.__setattr__(obj, "__qlint_ctor__", (_snapshot(args), _snapshot(kwargs)))
                if __original is None:
                    super(__cls, obj).__init__(*args, **kwargs)
                else:
                    __original(obj, *args, **kwargs)

            self.saved.append((cls, original))
            cls.__init__ = init
        return self

    def __exit__(self, *exc):
        for cls, original in self.saved:
            if original is None:
                del cls.__init__
            else:
                cls.__init__ = original


def _snapshot(value):
    """``value`` with its lists, tuples, dicts and sets copied (their items too), the rest as it is: the arguments as
    passed, though the constructor changes them (timm's ``EfficientNetBuilder`` pops ``block_type`` off each block's
    argument dict)."""
    kind = type(value)
    if kind is dict:
        return {k: _snapshot(v) for k, v in value.items()}
    if kind in (list, tuple, set):
        return kind(_snapshot(v) for v in value)
    return value


def _is_module(cls: type) -> bool:
    import torch.nn as nn

    return issubclass(cls, nn.Module)


# ---- rendering --------------------------------------------------------------------------------------


def _swapped_after_build(model, ctor) -> list[tuple[type, object]]:
    """Layers the library replaced after constructing the model (torchvision's quantizable builders call
    ``_replace_relu``: every ReLU6 becomes ReLU), as (kind, the layer now there); the constructor alone would
    give the other layers, numerics and fusions (the fix loop then fought the library's own ``fuse_model``)."""
    import torch.nn as nn

    args, kwargs = ctor
    try:
        built = dict(type(model)(*_snapshot(args), **_snapshot(kwargs)).named_modules())  # the recorded ones unchanged
    except Exception:  # noqa: BLE001 - a second construction is a guess; _verify judges the emitted model
        return []
    now = dict(model.named_modules())
    if built.keys() != now.keys():
        return []
    changed: dict[type, list[nn.Module]] = {}
    for name, module in now.items():
        before = built[name]
        if type(before) is not type(module):
            stateless = not any(True for _ in (*module.children(), *module.parameters(), *module.buffers()))
            if not (stateless and type(module).__module__.startswith("torch.nn.modules")):
                raise EmitError(f"the library replaces `{name}` after building the model: cannot write that as code")
            changed.setdefault(type(before), []).append(module)
    swaps = []
    for kind, modules in changed.items():
        texts = {f"{type(m).__name__}({m.extra_repr()})" for m in modules}
        if len(texts) > 1 or len(modules) != sum(type(m) is kind for m in built.values()):
            raise EmitError(f"the library replaces some of its {kind.__name__} layers after building the model")
        swaps.append((kind, modules[0]))
    return swaps


SWAPPED = '''
def swapped(model: nn.Module, *swaps: tuple) -> nn.Module:
    """What the library does after constructing the model: every layer of a kind replaced by a new one."""
    for kind, make in swaps:
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if type(child) is kind:
                    setattr(module, name, make())
    return model
'''


def render(model, ctor, name: str, path: str, note: str = "", shape: tuple[int, ...] | None = None,
            swaps: list[tuple[type, object]] = (), library_types: bool = False) -> str:  # fmt: skip
    """The emitted file's text, before fixes; ``shape`` (the source's input-shape pragma) is kept as a pragma;
    ``swaps`` (``_swapped_after_build``) are done in ``build_model()``; ``library_types``: a class passed as a
    constructor argument is imported from its library, not the copy (the library may look it up by identity)."""
    code = _Code(library_types=library_types)
    types_used = [type(m) for m in model.modules()]
    wanted: list[type] = []
    for cls in types_used:
        for base in reversed(cls.__mro__):
            if isinstance(base, type) and not _is_torch(base) and base is not object and base not in wanted:
                if base.__module__ not in ("builtins", "typing", "abc"):
                    wanted.append(base)
    call = _value(ctor, type(model), code, wanted)
    if swaps:
        pairs = [
            f"({_type_name(kind, code, wanted)}, lambda: {_torch_module(layer, code, wanted)})" for kind, layer in swaps
        ]
        call = f"swapped({call}, {', '.join(pairs)})"
    for cls in list(wanted):
        _add_class(cls, code, wanted)
    code.imports.setdefault("nn", "import torch.nn as nn")
    libraries = ", ".join(sorted({c.__module__.split(".")[0] for c in code.classes}))
    source = os.path.basename(path)
    parts = [HEADER.format(what=f"`{name}`", source=source, libraries=libraries, note=note)]
    if shape:
        parts[0] += f"# qlint: input-shape = {'x'.join(map(str, shape))}\n"
    parts.append("\n".join(_merged_imports(code.imports.values())))
    for obj in _ordered([*code.functions, *code.classes], type(model).__module__):
        aliases = "".join(f"\n\n\n{a} = {obj.__name__}" for a, c in code.aliases.items() if c is obj)
        parts.append(_absolute_imports(textwrap.dedent(inspect.getsource(obj)), obj.__module__).rstrip() + aliases)
    if swaps:
        parts.append(SWAPPED.strip("\n"))
    parts.append(
        "def build_model() -> nn.Module:\n"
        f'    """`{name}` of {os.path.basename(path)}, as its library builds it."""\n'
        f"    return {call}"
    )
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


def _absolute_imports(source: str, module: str) -> str:
    """``source`` (copied from ``module``) with its relative imports made absolute: an import inside a function
    (timm's ``from .vision_transformer import ...`` in naflexvit) runs in the emitted file, which has no package."""
    import importlib.util
    import re

    package = getattr(sys.modules.get(module), "__package__", None) or module.rpartition(".")[0]
    lines = source.splitlines(keepends=True)
    relative = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.level]
    for node in relative:
        line = lines[node.lineno - 1]
        absolute = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
        head = re.compile(r"from\s+\.+\s*(?:[\w.]+)?(?=\s+import\b)").match(line, node.col_offset)
        if head is not None:
            lines[node.lineno - 1] = line[: head.start()] + f"from {absolute}" + line[head.end() :]
    return "".join(lines)


def _ordered(copied: list, root_module: str) -> list:
    """The copied helper functions (in the order their names were resolved) then classes (source order, the
    root's module last), each after what its definition reads when it runs (``_definition_deps``)."""

    def key(obj) -> tuple:
        if not isinstance(obj, type):
            return (0, copied.index(obj))
        try:
            line = inspect.getsourcelines(obj)[1]
        except (OSError, TypeError):
            line = 0
        return (1, obj.__module__ == root_module, obj.__module__, line)

    out: list = []
    visiting: set = set()

    def place(obj) -> None:
        if obj in out or obj not in copied or obj in visiting:
            return
        visiting.add(obj)  # a cycle of definition-time names is cut, not followed forever
        for dep in [*getattr(obj, "__bases__", ()), *_definition_deps(obj, copied)]:
            place(dep)
        out.append(obj)

    for obj in sorted(copied, key=key):
        place(obj)
    return out


def _signature_reads(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """What a ``def`` evaluates when it runs: decorators, default values, annotations."""
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    read = [*node.decorator_list, *args.defaults, *[d for d in args.kw_defaults if d is not None]]
    read += [a.annotation for a in every if a is not None and a.annotation is not None]
    return read + ([node.returns] if node.returns is not None else [])


def _definition_deps(obj, copied: list) -> list:
    """The copied classes and functions that ``obj``'s definition reads when it runs, so they must be defined
    before it: for a class its bases, decorators, class attributes and its methods' signatures
    (``se_layer=partial(SElayer, ...)`` in torchvision's MobileNetV3); for a function its signature (timm's
    ``make_blocks(block_fns: Tuple[Type[BasicBlock], ...])``). Names read inside bodies need not be."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return []
    node = tree.body[0] if tree.body else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        read = _signature_reads(node)
    elif isinstance(node, ast.ClassDef):
        read = [*node.bases, *node.keywords, *node.decorator_list]
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                read += _signature_reads(item)
            elif not isinstance(item, ast.ClassDef):
                read.append(item)
    else:
        return []
    namespace = vars(sys.modules[obj.__module__])
    names = {n.id for part in read for n in ast.walk(part) if isinstance(n, ast.Name)}
    return [namespace[n] for n in sorted(names) if namespace.get(n) in copied and namespace[n] is not obj]


def _merged_imports(lines) -> list[str]:
    """``from m import a`` + ``from m import b`` -> ``from m import a, b``; stdlib, torch, others."""
    plain, names = set(), {}
    for line in lines:
        if line.startswith("from "):
            module, _, name = line[5:].partition(" import ")
            names.setdefault(module, set()).add(name)
        else:
            plain.add(line)
    merged = plain | {f"from {m} import {', '.join(sorted(n))}" for m, n in names.items()}
    return sorted(merged, key=_import_order)


def _import_order(line: str) -> tuple:
    module = line.split()[1]
    top = module.split(".")[0]
    group = 0 if top in sys.stdlib_module_names else (1 if top == "torch" else 2)
    return group, line


def _value(value, owner: type, code: _Code, wanted: list[type]) -> str:
    """Source text that rebuilds ``value`` (constructor arguments)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict) and owner is not None:
        args, kwargs = value
        rendered = [_value(a, None, code, wanted) for a in args]
        rendered += [f"{k}={_value(v, None, code, wanted)}" for k, v in kwargs.items()]
        return f"{_type_name(owner, code, wanted)}({', '.join(rendered)})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v, None, code, wanted) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_value(v, None, code, wanted) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{_value(k, None, code, wanted)}: {_value(v, None, code, wanted)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, type):
        if code.library_types and not _is_torch(value):
            return _library_alias(value, code)
        return _type_name(value, code, wanted)
    if isinstance(value, functools.partial):
        code.imports["partial"] = "from functools import partial"
        args = [_value(value.func, None, code, wanted)] + [_value(a, None, code, wanted) for a in value.args]
        args += [f"{k}={_value(v, None, code, wanted)}" for k, v in value.keywords.items()]
        return f"partial({', '.join(args)})"
    if isinstance(value, types.FunctionType):
        return _import_name(value, value.__name__, code)
    torch_module = _torch_module(value, code, wanted)
    if torch_module is not None:
        return torch_module
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # timm's ByoModelCfg, CspModelCfg
        fields = [f"{f.name}={_value(getattr(value, f.name), None, code, wanted)}"
                  for f in dataclasses.fields(value) if f.init]  # fmt: skip
        return f"{_type_name(type(value), code, wanted)}({', '.join(fields)})"
    recorded = getattr(value, "__dict__", {}).get("__qlint_ctor__")
    if recorded is not None:
        if type(value) not in wanted:
            wanted.append(type(value))
        return _value(recorded, type(value), code, wanted)
    raise EmitError(f"cannot write the constructor argument {value!r} as code")


def _torch_module(value, code: _Code, wanted: list[type]) -> str | None:
    """A torch.nn module passed built (VGG's ``features``), written from its repr: ``nn.Sequential(...)``."""
    import torch.nn as nn

    if not isinstance(value, nn.Module) or not type(value).__module__.startswith("torch.nn.modules"):
        return None
    if isinstance(value, nn.Sequential) and list(value._modules) == [str(i) for i in range(len(value))]:
        items = [_value(child, None, code, wanted) for child in value]
        return "nn.Sequential(\n" + "".join(f"        {item},\n" for item in items) + "    )"
    if next(value.children(), None) is not None:
        return None
    code.imports["nn"] = "import torch.nn as nn"
    return f"nn.{type(value).__name__}({value.extra_repr()})"


def _type_name(cls: type, code: _Code, wanted: list[type]) -> str:
    if cls in wanted:
        return cls.__name__
    if cls.__module__.startswith("torch.nn.modules"):
        code.imports["nn"] = "import torch.nn as nn"
        return f"nn.{cls.__name__}"
    return _import_name(cls, cls.__name__, code)


def _library_alias(cls: type, code: _Code) -> str:
    """The library's own ``cls`` under a name the copied class of the same name does not shadow."""
    module = cls.__module__
    if getattr(sys.modules.get(module), cls.__name__, None) is not cls:
        raise EmitError(f"cannot import {cls.__name__!r}")
    alias = f"{cls.__name__}_of_{module.split('.')[0]}"
    code.imports.setdefault(alias, f"from {module} import {cls.__name__} as {alias}")
    return alias


def _import_name(obj: object, name: str, code: _Code) -> str:
    module = getattr(obj, "__module__", None)
    if module and getattr(sys.modules.get(module), name, None) is obj:
        code.imports.setdefault(name, f"from {module} import {name}")
        return name
    raise EmitError(f"cannot import {name!r}")


def _add_class(cls: type, code: _Code, wanted: list[type]) -> None:
    if cls in code.classes:
        return
    module = sys.modules[cls.__module__]
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        raise EmitError(f"the source of {cls.__module__}.{cls.__name__} is not available") from None
    for base in cls.__bases__:
        if base in wanted:
            _add_class(base, code, wanted)
    _resolve_names(source, module, code, wanted, {cls.__name__})
    code.classes.append(cls)


def _resolve_names(source: str, module, code: _Code, wanted: list[type], local: set[str]) -> None:
    """Import (or copy, for helpers defined beside the copied classes) every global name ``source`` reads."""
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    for name in sorted(names - local):
        if hasattr(builtins, name):
            continue
        if name not in vars(module):
            continue
        obj = vars(module)[name]
        if isinstance(obj, type) and obj in wanted:
            if name != obj.__name__:
                code.aliases[name] = obj
            continue
        if isinstance(obj, types.ModuleType):
            code.imports[name] = (
                f"import {obj.__name__}" if obj.__name__ == name else f"import {obj.__name__} as {name}"
            )
        elif isinstance(obj, types.FunctionType) and obj.__module__ == module.__name__ and not name.startswith("__"):
            if obj not in code.functions and obj not in code.visiting:
                code.visiting.add(obj)  # the helpers it reads go first (a default argument is read when defined)
                _resolve_names(textwrap.dedent(inspect.getsource(obj)), module, code, wanted, {name})
                code.functions.append(obj)
        else:
            home = getattr(obj, "__module__", None)
            if home and getattr(sys.modules.get(home), name, None) is obj:
                code.imports.setdefault(name, f"from {home} import {name}")
            else:
                code.imports.setdefault(name, f"from {module.__name__} import {name}")


# ---- verification -----------------------------------------------------------------------------------


def _verify(text: str, out: str, original, exact: bool = True, shape: tuple[int, ...] | None = None) -> list[str]:
    """The emitted model loads the original's state_dict (strict) and gives the same float output once the plain
    tensor attributes no state_dict carries are copied too (``load_original_state``); their names.

    Not ``exact`` (unsafe fixes may change the numerics): only that it runs, output of the same shape.
    """
    import torch

    from qlint.fix.apply import candidate_module
    from qlint.fix.fallback import load_original_state
    from qlint.model.loader import quiet

    try:
        with candidate_module(out, text) as module, quiet():
            module.__loader__.exec_module(module)
            emitted = module.build_model().eval()
            plain = load_original_state(emitted, original)
            original.eval()
            x = _example_input(original, shape)
            if x is not None:
                with torch.no_grad():
                    want, got = _flat(original(x)), _flat(emitted(x))
                    same = want.shape == got.shape and (not exact or torch.allclose(want, got, rtol=1e-4, atol=1e-5))
                if not same:
                    raise EmitError("the emitted model's float output differs from the original's (a qlint bug)")
            return plain
    except EmitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means the emitted file is not usable
        raise CheckFailed(f"the emitted model failed its check: {type(exc).__name__}: {exc}") from None


def _example_input(model, shape: tuple[int, ...] | None):
    """A random input at ``shape`` (token ids when the model starts with an embedding), else guessed from the
    first layer: 1xCx64x64 before a Conv2d, or, when the model does not take that (timm's ViTs assert their image
    size), the shape ``qlint check`` analyses without a pragma (1xCx224x224); None when there is nothing to guess."""
    import torch
    import torch.nn as nn

    from qlint.model.loader import quiet
    from qlint.model.trace import shape_for_first_layer

    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding, nn.EmbeddingBag))),
                 None)  # fmt: skip
    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        return torch.randint(0, first.num_embeddings, shape or (1, 8))
    if shape is None and isinstance(first, nn.Conv2d):
        default = shape_for_first_layer(model.modules())
        for guess in dict.fromkeys(((1, first.in_channels, 64, 64), default)):
            x = torch.rand(guess)
            try:
                with torch.no_grad(), quiet():
                    model(x)
                return x
            except Exception:  # noqa: BLE001 - the model does not take this shape: the next guess
                continue
        return x
    if shape is None and isinstance(first, nn.Linear):
        shape = (1, first.in_features)
    return None if shape is None else torch.rand(shape)


def _flat(out):
    import torch

    if isinstance(out, (tuple, list)):
        return torch.cat([_flat(o) for o in out])
    if isinstance(out, dict):
        return torch.cat([_flat(v) for v in out.values()])
    return out.reshape(-1)
