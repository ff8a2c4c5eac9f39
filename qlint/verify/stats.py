"""Timing statistics with no torch: per-pair ratios, their median and interquartile range, verdicts.

Two models timed in interleaved pairs (A B, A B, ... in one loop) see the same load from other
processes; the ratio of each pair cancels most of it. The verdict asks the whole interquartile range of
those ratios to sit on one side of the bar, so that one noisy run cannot flip it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

SLOWER = "slower"
FASTER = "faster"
UNCLEAR = "could not tell"


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range (25th..75th percentile) of ``n`` per-pair ratios."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        vals = sorted(values)
        if not vals:
            raise ValueError("no values")
        if len(vals) == 1:
            return cls(vals[0], vals[0], vals[0], 1)
        q1, q2, q3 = statistics.quantiles(vals, n=4, method="inclusive")
        return cls(q2, q1, q3, len(vals))

    def inverse(self) -> Spread:
        """The spread of the reciprocal ratios (speedup <-> slowdown)."""
        return Spread(1 / self.median, 1 / self.high, 1 / self.low, self.n)

    def text(self) -> str:
        """``1.32x (IQR 1.20-1.45x, 10 pairs)``."""
        return f"{self.median:.2f}x (IQR {self.low:.2f}-{self.high:.2f}x, {self.n} pairs)"


def pair_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """``numerator[i] / denominator[i]`` for each pair measured in the same round."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} vs {len(denominator)} timings: not pairs")
    return [a / b for a, b in zip(numerator, denominator, strict=True) if b > 0]


def speedup(float_ms: Sequence[float], int8_ms: Sequence[float]) -> Spread:
    """float / int8 per pair: above 1 the int8 model is faster."""
    return Spread.of(pair_ratios(float_ms, int8_ms))


def verdict(spread: Spread, bar: float = 1.0) -> str:
    """SLOWER when the whole interval is below ``bar`` (a speedup below 1), FASTER when it is above, else
    UNCLEAR: the pairs disagree at this noise level."""
    if spread.high < bar:
        return SLOWER
    if spread.low > bar:
        return FASTER
    return UNCLEAR
