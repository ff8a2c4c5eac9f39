"""The rule catalog: codes, names and severities (the public contract of ../rule-catalog.md).

Only implemented rules are listed. Torch-free: ``qlint rules`` and ``--no-graph`` use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

from qlint.diagnostics import Severity

DOCS_URL = "https://qlint.readthedocs.io/en/latest/rules/{code}.html"


class Basis(str, Enum):
    SOURCE = "source"  # libcst over the file, nothing is executed
    GRAPH = "graph"  # the traced model, built on the meta device
    MEASURED = "measured"  # a real conversion (qlint verify)


class FixAvailability(str, Enum):
    NONE = "none"
    SOMETIMES = "sometimes"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    code: str
    name: str
    severity: Severity
    basis: Basis
    summary: str
    fix: FixAvailability = FixAvailability.NONE
    # source rules: words a file must contain for the rule to have anything to find (required for them)
    triggers: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return DOCS_URL.format(code=self.code)

    @property
    def fixable(self) -> bool:
        return self.fix is not FixAvailability.NONE


E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO
S, G, M = Basis.SOURCE, Basis.GRAPH, Basis.MEASURED

_RULES = [
    RuleInfo("QL000", "invalid-syntax", E, S, "the file cannot be parsed"),
    RuleInfo("QL001", "model-not-built", W, G, "a model in the file could not be built"),
    RuleInfo("QL002", "trace-failed", W, G, "torch.fx could not trace the model"),
    RuleInfo(
        "QL101",
        "missing-quant-stub",
        E,
        G,
        "a float tensor reaches a module that convert swaps",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL102",
        "missing-dequant-stub",
        E,
        G,
        "a quantized tensor leaves the model",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL103",
        "float-op-on-quantized",
        E,
        G,
        "arithmetic with no quantized kernel on a quantized tensor",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL104",
        "silent-qparams-cat",
        W,
        G,
        "torch.cat on quantized tensors takes the first input's qparams",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL105",
        "unsupported-op-in-quantized-region",
        E,
        G,
        "an op with no quantized kernel gets a quantized tensor",
    ),
    RuleInfo(
        "QL106",
        "floatfunctional-in-forward",
        E,
        S,
        "FloatFunctional() is built inside forward",
        FixAvailability.SOMETIMES,
        triggers=("FloatFunctional",),
    ),
    RuleInfo(
        "QL107",
        "stub-outside-model",
        E,
        S,
        "a QuantStub/DeQuantStub is called outside the model",
        fix=FixAvailability.SOMETIMES,
        triggers=("QuantStub",),
    ),
    RuleInfo(
        "QL201",
        "unfused-conv-bn-relu",
        W,
        G,
        "a fusable Conv/Linear-BN-ReLU chain is left unfused",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL202",
        "reused-module",
        W,
        G,
        "one module instance is called at several sites",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL205",
        "relu6-blocks-fusion",
        W,
        G,
        "Conv-BN-ReLU6: eager mode has no ReLU6 fuser",
        fix=FixAvailability.SOMETIMES,
    ),
    RuleInfo(
        "QL301",
        "dilated-grouped-conv",
        W,
        G,
        "a dilated grouped conv runs slower in int8 than in float on this engine",
    ),
    RuleInfo(
        "QL401",
        "gpu-only-call",
        E,
        S,
        "model code or a converted model is tied to CUDA",
        fix=FixAvailability.SOMETIMES,
        triggers=("cuda",),
    ),
    RuleInfo(
        "QL402",
        "qconfig-engine-mismatch",
        E,
        S,
        "a default qconfig for one engine, another engine set",
        triggers=("qconfig",),
    ),
    RuleInfo(
        "QL403",
        "missing-calibration",
        E,
        S,
        "prepare then convert with no calibration in between",
        fix=FixAvailability.SOMETIMES,
        triggers=("prepare",),
    ),
    RuleInfo(
        "QL404",
        "ptq-in-train-mode",
        E,
        S,
        "fuse_modules or prepare on a model still in training mode",
        triggers=("fuse_modules", "prepare"),
    ),
    RuleInfo(
        "QL405",
        "deprecated-quantization-namespace",
        I,
        S,
        "the deprecated torch.quantization namespace",
        FixAvailability.ALWAYS,
        triggers=("quantiz", "intrinsic", "nn.qat"),
    ),
    RuleInfo(
        "QL406",
        "qat-ptq-mix",
        W,
        S,
        "QAT and post-training quantization pieces are mixed",
        triggers=("prepare",),
    ),
    RuleInfo("QL601", "conversion-failed", E, M, "the real conversion or the first int8 forward raised"),
    RuleInfo("QL602", "slow-quantized-layer", W, M, "a layer measured slower in int8 than in float"),
    RuleInfo("QL603", "low-sqnr", W, M, "output (or a layer's) SQNR against float below the threshold"),
    RuleInfo("QL604", "cold-start", I, M, "first call(s) much slower than steady state"),
    RuleInfo("QL605", "quantized-slower-than-float", E, M, "the whole int8 model is slower than float"),
]

RULES: dict[str, RuleInfo] = {r.code: r for r in _RULES}


def rule_page_dir() -> Path:
    """The folder of ``QLxxx.md`` pages: inside the wheel, or ``rules/`` of a source checkout."""
    shipped = resources.files("qlint") / "rule_pages"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[2] / "rules"


def rule_page(code: str) -> str | None:
    path = rule_page_dir() / f"{code}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def select_codes(select: list[str] | None, ignore: list[str] | None) -> frozenset[str]:
    """Codes enabled by ``select`` / ``ignore`` prefixes (``QL1``, ``QL201``, ``ALL``)."""

    def matches(code: str, prefixes: list[str]) -> bool:
        return any(p == "ALL" or code.startswith(p) for p in prefixes)

    chosen = [c for c in RULES if select is None or matches(c, select)]
    return frozenset(c for c in chosen if not (ignore and matches(c, ignore)))
