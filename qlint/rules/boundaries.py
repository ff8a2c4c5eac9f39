"""QL101-QL105: where float and quantized tensors meet, read off the tensor-kind pass."""

from __future__ import annotations

import re
from collections.abc import Iterator

from qlint.diagnostics import Diagnostic
from qlint.rules.registry import graph_rule


def _augmented(text: str) -> str | None:
    """``+=`` for ``out += identity`` (fx records augmented assignment as the plain operator)."""
    match = re.match(r"^[\w.\[\]]+\s*([-+*/@]|//)=", text)
    return f"`{match.group(1)}=`" if match else None


def _name(facts) -> str:
    return facts.module_type.__name__ if facts.module_type else str(facts.target)


@graph_rule("QL101", "QL102")
def stubs(qg) -> Iterator[Diagnostic]:
    from qlint.model.analysis import Kind

    for name, facts in qg.nodes():
        if facts.swapped and facts.module_type.__name__ != "QuantStub":
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
    for _, facts in qg.nodes("output"):
        if facts.kind is Kind.QUANT and not qg.prefix:  # a sub-root's output flows on into the model
            yield qg.diagnostic(
                "QL102",
                "the model returns a quantized tensor: add a DeQuantStub and dequantize before returning",
                location=qg.return_location(),
            )


@graph_rule("QL103", "QL104", "QL105")
def ops(qg) -> Iterator[Diagnostic]:
    from qlint.model import support
    from qlint.model.analysis import Kind

    for name, facts in qg.nodes():
        if Kind.QUANT not in facts.input_kinds:
            continue
        if facts.op == "call_module" and not facts.swapped and facts.quantized_support is False:
            island = "" if qg.quantized_by_qconfig(facts.module) else " (its qconfig is None, so it stays float)"
            yield qg.diagnostic(
                "QL105",
                f"`{qg.full(facts.module)}` ({_name(facts)}) has no quantized kernel{island} but receives a quantized "
                "tensor: wrap it in a float island (DeQuantStub before, QuantStub after)",
                name,
            )
        elif facts.op in ("call_function", "call_method") and facts.module is None:
            what = _augmented(qg.source_text(name)) or support.describe_target(facts.op, facts.target)
            if facts.quantized_support is False and support.is_arithmetic(facts.op, facts.target):
                yield qg.diagnostic(
                    "QL103",
                    f"{what} on a quantized tensor has no quantized kernel (QuantizedCPU): "
                    "use a FloatFunctional declared in __init__ (e.g. `self.skip_add.add(a, b)`)",
                    name,
                    op=what,
                )
            elif facts.quantized_support is False:
                yield qg.diagnostic(
                    "QL105",
                    f"{what} has no quantized kernel but receives a quantized tensor: "
                    "dequantize before it and quantize after (a float island)",
                    name,
                    op=what,
                )
            elif facts.quantized_support and facts.target in support.CAT_FUNCTIONS:
                yield qg.diagnostic(
                    "QL104",
                    f"{what} on quantized tensors runs, but the result silently takes the first input's "
                    "scale and zero point: use `FloatFunctional().cat` declared in __init__",
                    name,
                    op=what,
                )
