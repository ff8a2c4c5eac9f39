"""Plain data produced by ``qlint verify``: options in, measurements out."""

from __future__ import annotations

from dataclasses import dataclass, field

from qlint.diagnostics import Diagnostic

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

    @property
    def slower(self) -> bool:
        return self.float_ms is not None and self.int8_ms is not None and self.int8_ms > self.float_ms

    def to_json(self) -> dict:
        return {
            "module": self.module,
            "module_type": self.module_type,
            "float_ms": _r(self.float_ms),
            "int8_ms": _r(self.int8_ms),
            "sqnr_db": _r(self.sqnr_db),
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

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "engine": self.engine,
            "float_modules": list(self.float_modules),
            "int8_ms": _r(self.int8_ms),
            "sqnr_db": _r(self.sqnr_db),
            "error": self.error,
        }


@dataclass
class Recommendation:
    name: str
    int8_ms: float
    speedup_vs_float: float
    change: str

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "int8_ms": _r(self.int8_ms),
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
    float_cold_ms: float | None = None
    cold_start_ms: list[float] = field(default_factory=list)
    cold_layers: list[tuple[str, float]] = field(default_factory=list)  # where the first call's extra goes
    layers: list[LayerStat] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    recommendation: Recommendation | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        if self.float_ms and self.int8_ms:
            return self.float_ms / self.int8_ms
        return None

    @property
    def exit_code(self) -> int:
        """1 when conversion fails, SQNR is below the bar, or int8 is slower than float."""
        if not self.converted:
            return 1
        if self.sqnr_db is not None and self.sqnr_db < self.min_sqnr:
            return 1
        if self.slower_than_float:
            return 1
        return 0

    @property
    def slower_than_float(self) -> bool:
        return self.flow != "pt2e" and bool(self.float_ms and self.int8_ms and self.int8_ms > self.float_ms)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)
