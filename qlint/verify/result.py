"""Plain data produced by ``qlint verify``: options in, measurements out."""

from __future__ import annotations

from dataclasses import dataclass, field

from qlint.diagnostics import Diagnostic, Severity
from qlint.verify.stats import FASTER, SLOWER, UNCLEAR, Spread

DEFAULT_SHAPE = (1, 3, 224, 224)


@dataclass(frozen=True)
class VerifyOptions:
    backend: str | None = None  # quantized engine; None = torch's default on this host
    flow: str = "eager"  # eager | fx | pt2e
    input_shape: tuple[int, ...] = DEFAULT_SHAPE
    calibration: int | str = 8  # N random batches, or "module:function" yielding batches
    eval_batches: int = 2  # held-out random batches for SQNR
    min_sqnr: float = 20.0
    threads: int = 2
    warmup: int = 3
    repeats: int = 10
    cold_calls: int = 5
    layer_repeats: int = 3
    remedies: str = "auto"  # auto (when int8 is slow) | always | never
    seed: int = 0
    random_weights: bool = True  # False with --weights
    compile: bool = True  # pt2e: measure the converted model under torch.compile (inductor)
    fail_on: str | None = None  # error | warning | info: exit 1 on any finding at least this severe


@dataclass
class Failure:
    """A flow step that raised (QL601)."""

    phase: str  # fuse | prepare | calibrate | convert | forward
    error_type: str
    error: str  # torch's message, first line
    module: str | None = None  # qualified name of the culprit module ("" = the root)
    module_type: str | None = None
    explanation: str = ""  # plain words
    rule_hint: str | None = None  # the static rule this error class belongs to
    predicted_by: str | None = None  # the rule `qlint check` reported for it
    static_check: bool = False  # whether `qlint check` could be asked
    # traceback, innermost first: (path, line, col, end_line, end_col, func, qualified name of `self` or None)
    frames: tuple[tuple, ...] = ()

    def to_json(self) -> dict:
        return {
            "phase": self.phase,
            "error_type": self.error_type,
            "error": self.error,
            "module": self.module,
            "module_type": self.module_type,
            "explanation": self.explanation,
            "rule_hint": self.rule_hint,
            "predicted_by": self.predicted_by,
        }


@dataclass
class LayerStat:
    module: str
    module_type: str
    float_ms: float | None
    int8_ms: float | None
    sqnr_db: float | None
    dilated_grouped: bool = False
    slowdown: Spread | None = None  # int8 / float time, pair by pair
    source: str | None = None  # path:line where the checked file builds it

    def to_json(self) -> dict:
        return {
            "module": self.module,
            "module_type": self.module_type,
            "float_ms": _r(self.float_ms),
            "int8_ms": _r(self.int8_ms),
            "sqnr_db": _r(self.sqnr_db),
            **_spread_json("int8_vs_float", self.slowdown),
            "source": self.source,
        }


@dataclass
class Candidate:
    name: str
    engine: str
    float_modules: tuple[str, ...] = ()
    int8_ms: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    cold_start_ms: list[float] = field(default_factory=list)
    error: str | None = None  # why the candidate could not be measured
    baseline: bool = False  # the configuration as given
    speedup: Spread | None = None  # float / int8, pair by pair
    flow: str | None = None  # when it differs from the flow as given (a PT2E candidate of an eager model)
    compiled: bool = False  # measured under torch.compile
    scripted: bool = False  # measured as a frozen TorchScript trace of the converted model
    suspect: str | None = None  # why its numbers are not believed (never recommended)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "engine": self.engine,
            "flow": self.flow,
            "compiled": self.compiled,
            "scripted": self.scripted,
            "float_modules": list(self.float_modules),
            "int8_ms": _r(self.int8_ms),
            "sqnr_db": _r(self.sqnr_db),
            **_spread_json("speedup_vs_float", self.speedup),
            "first_call_ms": _r(self.cold_start_ms[0]) if self.cold_start_ms else None,
            "suspect": self.suspect,
            "error": self.error,
        }


@dataclass
class Recommendation:
    name: str
    int8_ms: float
    speedup_vs_float: float
    change: str
    speedup: Spread | None = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "int8_ms": _r(self.int8_ms),
            **_spread_json("speedup_vs_float", self.speedup),
            "speedup_vs_float": _r(self.speedup_vs_float, 3),
            "change": self.change,
        }


@dataclass
class VerifyResult:
    model: str
    path: str
    backend: str
    flow: str
    input_shape: tuple[int, ...]
    threads: int
    min_sqnr: float
    converted: bool = False
    fusion: str = "none"
    failure: Failure | None = None
    float_ms: float | None = None
    int8_ms: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    speedup_spread: Spread | None = None  # float / int8 of the configuration as given, pair by pair
    compiled: bool = False  # int8 measured under torch.compile (pt2e)
    cold_start_ms: list[float] = field(default_factory=list)
    aot_first_call_ms: float | None = None  # the AOTInductor package's first call (pt2e, when compiled)
    aot_load_ms: float | None = None  # aoti_load_package
    aot_build_s: float | None = None  # building that package, ahead of time
    fail_on: str | None = None
    diagnosed: bool = False  # diagnostics computed from the measurements (the gates read them)
    cold_layers: list[tuple[str, float]] = field(default_factory=list)  # where the first call's extra goes
    layers: list[LayerStat] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    recommendation: Recommendation | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        """float / int8: the median of the pairs (the ratio of the medians without pairs)."""
        if self.speedup_spread is not None:
            return self.speedup_spread.median
        if self.float_ms and self.int8_ms:
            return self.float_ms / self.int8_ms
        return None

    @property
    def timed(self) -> bool:
        """Whether the speed of int8 means something (an un-compiled PT2E graph is a reference only)."""
        return self.flow != "pt2e" or self.compiled

    @property
    def speed_verdict(self) -> str | None:
        """slower | faster | could not tell (stats), None when not timed."""
        if not self.timed or self.speedup is None:
            return None
        if self.speedup_spread is None:  # one measurement each: all there is to go on
            return SLOWER if self.speedup < 1 else FASTER
        from qlint.verify.stats import verdict

        return verdict(self.speedup_spread)

    @property
    def slower_than_float(self) -> bool:
        return self.speed_verdict == SLOWER

    @property
    def speed_unclear(self) -> bool:
        return self.speed_verdict == UNCLEAR

    @property
    def exit_code(self) -> int:
        """1 when conversion fails; with ``fail_on``, on any finding at least that severe; otherwise when
        SQNR is below the bar or int8 is measurably slower than float (QL605 as an error)."""
        if not self.converted:
            return 1
        if self.fail_on:
            rank = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}
            bar = rank[Severity(self.fail_on)]
            return int(any(rank[d.severity] >= bar for d in self.diagnostics))
        if self.sqnr_db is not None and self.sqnr_db < self.min_sqnr:
            return 1
        if self.diagnosed:
            return int(any(d.code == "QL605" and d.severity is Severity.ERROR for d in self.diagnostics))
        return int(self.slower_than_float)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _spread_json(key: str, spread: Spread | None) -> dict:
    """``key`` (the median of the pairs), ``key_low`` / ``key_high`` (interquartile range), ``key_pairs``."""
    if spread is None:
        return {}
    return {
        key: _r(spread.median),
        f"{key}_low": _r(spread.low),
        f"{key}_high": _r(spread.high),
        f"{key}_pairs": spread.n,
    }
