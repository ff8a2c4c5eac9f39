"""Remedies for a slow int8 model: other engines and float islands, each measured; the code change."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from qlint.model.support import is_dilated_grouped_conv
from qlint.verify.result import Candidate, LayerStat, Recommendation
from qlint.verify.timing import FUNCTIONAL_TYPES
from qlint.verify.verdicts import suspect

TIE = 0.02  # candidates within 2% of the fastest are tied: the higher SQNR wins


def dilated_grouped_names(model: nn.Module) -> list[str]:
    """Qualified names of the modules that hold a dilated grouped conv (a fused module counts)."""
    out = []
    for name, mod in model.named_modules():
        if not name:
            continue
        if is_dilated_grouped_conv(mod) and not any(name.startswith(o + ".") for o in out):
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            # a fused ConvReLU2d holds the conv as child "0": the island is the fused module
            if parent and type(model.get_submodule(parent)).__module__.startswith("torch.ao.nn.intrinsic"):
                name = parent
            out.append(name)
    return out


def swappable(model: nn.Module, name: str) -> bool:
    """Whether eager ``convert`` swaps this module (so keeping it float changes something)."""
    from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

    try:
        mod = model.get_submodule(name)
    except AttributeError:
        return False
    if type(mod).__name__ in ("QuantStub", "DeQuantStub", *FUNCTIONAL_TYPES):
        return False  # stubs are not layers; FloatFunctional is called by method, stubs cannot wrap it
    return type(mod) in get_default_static_quant_module_mappings()


def island_sets(
    model: nn.Module, layers: Sequence[LayerStat], slow: Sequence[str]
) -> list[tuple[str, tuple[str, ...]]]:
    """(label, module names) of the float-island candidates: the slow layers, the dilated grouped convs."""
    sets: list[tuple[str, tuple[str, ...]]] = []
    slow_set = tuple(n for n in slow if swappable(model, n))
    dil = tuple(n for n in dilated_grouped_names(model) if swappable(model, n))
    if dil:
        sets.append(("dilated grouped convs kept float", dil))
    if slow_set and set(slow_set) != set(dil):
        sets.append((f"{len(slow_set)} slow layer{'s' if len(slow_set) != 1 else ''} kept float", slow_set))
    return sets


def speed(c: Candidate, float_ms: float) -> float | None:
    """float / int8 of a candidate: the median of its pairs, else the ratio of the medians."""
    if c.speedup is not None:
        return c.speedup.median
    return float_ms / c.int8_ms if c.int8_ms else None


def recommend(
    candidates: Sequence[Candidate], float_ms: float, min_sqnr: float, flow: str, engine: str
) -> Recommendation | None:
    """The fastest measured candidate whose SQNR meets ``min_sqnr``; candidates within 2% of the fastest
    are tied and the higher SQNR wins. Never one slower than the configuration as given, never a suspect
    one (more than 20x faster than float), never one that failed."""
    measured = [c for c in candidates if c.error is None and speed(c, float_ms) is not None]
    base = next((c for c in measured if c.baseline), None)
    floor = speed(base, float_ms) if base is not None else None
    ok = [
        c
        for c in measured
        if c.sqnr_db is not None
        and c.sqnr_db >= min_sqnr
        and suspect(speed(c, float_ms)) is None
        and (floor is None or speed(c, float_ms) >= floor)
    ]
    if not ok:
        return None
    fastest = max(speed(c, float_ms) for c in ok)
    tied = [c for c in ok if speed(c, float_ms) >= fastest * (1 - TIE)]
    best = max(tied, key=lambda c: (c.sqnr_db, speed(c, float_ms), c.baseline))
    return Recommendation(best.name, best.int8_ms, speed(best, float_ms), change(best, flow, engine), best.speedup)


PT2E_FLOW = (
    "# the PT2E flow (torchao): export -> X86InductorQuantizer -> prepare -> calibrate -> convert -> compile",
    "from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e",
    "from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq",
    "quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())",
)
PT2E_AFTER = (
    "prepared = prepare_pt2e(torch.export.export(model.eval(), example_inputs).module(), quantizer)",
    "for batch in calibration_batches:",
    "    prepared(*batch)",
    "torch._inductor.config.freezing = True",
    "with torch.no_grad():",
    "    model = torch.compile(convert_pt2e(prepared))",
)


SCRIPTED = (
    "# after convert(): one frozen TorchScript graph instead of a Python call per layer",
    "# (TorchScript is deprecated in torch 2.x and warns, but runs; the PT2E flow is its successor)",
    "with torch.no_grad():",
    "    model = torch.jit.freeze(torch.jit.trace(model.eval(), example_inputs))",
)


def change(c: Candidate, flow: str, engine: str) -> str:
    """The exact code change a candidate needs, relative to the configuration as given (``engine``)."""
    if c.baseline:
        return "none: the configuration as given is the fastest measured"
    if c.flow == "pt2e" and flow != "pt2e":
        lines = list(PT2E_FLOW)
        lines += [f'quantizer.set_module_name_qconfig("{n}", None)  # kept float' for n in c.float_modules]
        return "\n".join(lines + list(PT2E_AFTER))
    lines: list[str] = []
    if c.engine != engine:
        lines.append(f'torch.backends.quantized.engine = "{c.engine}"')
        if flow == "fx":
            lines.append(f'qconfig_mapping = torch.ao.quantization.get_default_qconfig_mapping("{c.engine}")')
        elif flow == "eager":
            lines.append(f'model.qconfig = torch.ao.quantization.get_default_qconfig("{c.engine}")')
    if c.scripted:
        lines += list(SCRIPTED)
    if c.float_modules:
        names = ", ".join(f'"{n}"' for n in c.float_modules)
        if flow == "fx":
            lines += [f'qconfig_mapping.set_module_name("{n}", None)' for n in c.float_modules]
        elif flow == "pt2e":
            lines += [f'quantizer.set_module_name_qconfig("{n}", None)' for n in c.float_modules]
        else:
            lines += [
                "# after fuse_model(), before prepare(): keep these layers float, with stubs around them",
                "from torch.ao.quantization import DeQuantStub, QuantStub",
                f"for name in [{names}]:",
                '    parent_name, _, child = name.rpartition(".")',
                "    parent = model.get_submodule(parent_name)",
                "    layer = parent.get_submodule(child)",
                "    layer.qconfig = None  # convert() leaves it float",
                "    setattr(parent, child, torch.nn.Sequential(DeQuantStub(), layer, QuantStub()))",
            ]
    return "\n".join(lines)
