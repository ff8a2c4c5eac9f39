"""What the measurements mean: slow layers (QL602), cold start (QL604), suspect candidates; no torch."""

from __future__ import annotations

from qlint.verify.result import LayerStat, VerifyResult
from qlint.verify.stats import SLOWER, UNCLEAR

SLOW_LAYER_RATIO = 1.1  # QL602: int8 at least 10% slower than float ...
SLOW_LAYER_MIN_MS = 0.05  # ... and at least this much slower (timer noise on tiny layers)
SLOW_LAYER_SHARE = 0.005  # ... and at least this share of the whole int8 latency

COLD_RATIO = 2.0  # QL604: the first call costs at least this many steady-state calls ...
COLD_MIN_MS = 5.0  # ... and at least this much more in all

SUSPECT_SPEEDUP = 20.0  # int8 more than this many times faster than float: not believed, not recommended


def layer_verdict(layer: LayerStat, total_ms: float | None = None) -> str | None:
    """SLOWER when the whole interquartile range of int8/float is above 1.1x and the layer costs enough
    (0.05 ms and 0.5% of the int8 model); UNCLEAR when only the median is; None otherwise."""
    if layer.float_ms is None or layer.int8_ms is None:
        return None
    floor = max(SLOW_LAYER_MIN_MS, SLOW_LAYER_SHARE * (total_ms or 0.0))
    if layer.int8_ms - layer.float_ms < floor:
        return None
    if layer.slowdown is None:  # one measurement each
        return SLOWER if layer.int8_ms > layer.float_ms * SLOW_LAYER_RATIO else None
    if layer.slowdown.low > SLOW_LAYER_RATIO:
        return SLOWER
    if layer.slowdown.median > SLOW_LAYER_RATIO:
        return UNCLEAR
    return None


def is_slow(layer: LayerStat, total_ms: float | None = None) -> bool:
    """QL602 as a warning: measurably slower in int8 than in float."""
    return layer_verdict(layer, total_ms) == SLOWER


def cold_start(result: VerifyResult) -> bool:
    """QL604: the first call costs 2x steady state and the first calls 5 ms more in all."""
    steady, cold = result.int8_ms, result.cold_start_ms
    if not steady or not cold:
        return False
    excess = sum(max(0.0, c - steady) for c in cold)
    return cold[0] >= COLD_RATIO * steady and excess >= COLD_MIN_MS


def suspect(speedup: float | None) -> str | None:
    """Why a candidate's speedup is not believed: more than 20x faster than float is a measurement artefact
    (a model that skips work, a timer around nothing) until shown otherwise."""
    if speedup is not None and speedup > SUSPECT_SPEEDUP:
        return f"{speedup:.1f}x faster than float is beyond {SUSPECT_SPEEDUP:g}x: suspect, not recommended"
    return None
