"""Latency: models called in interleaved rounds (one call of each per round), and per-layer time from
forward hooks, also in rounds, so that every ratio can be taken pair by pair (see ``stats``)."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn

from qlint.verify.calibrate import Batch


def call_ms(model: nn.Module, batch: Batch) -> float:
    t0 = time.perf_counter()
    model(*batch)
    return (time.perf_counter() - t0) * 1000


def interleaved_ms(
    models: dict[str, tuple[nn.Module, str | None]], batch: Batch, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Latency of each model over ``repeats`` rounds, one call of each per round (after ``warmup`` rounds).

    Interleaved (A B C, C B A, A B C, ...: the order alternates so that no model always follows the same
    one), so that load from other processes hits every model alike and ``times[a][r] / times[b][r]`` is a
    fair pair; ``str`` is the engine to run a quantized model under (None for float).
    """
    from qlint.verify.flows import use_engine

    times: dict[str, list[float]] = {k: [] for k in models}
    order = list(models.items())
    with torch.no_grad():
        for r in range(warmup + max(1, repeats)):
            for key, (model, engine) in order if r % 2 == 0 else reversed(order):
                with use_engine(engine):
                    ms = call_ms(model, batch)
                if r >= warmup:
                    times[key].append(ms)
    return times


FUNCTIONAL_TYPES = ("FloatFunctional", "QFunctional", "FXFloatFunctional")
FUNCTIONAL_METHODS = ("add", "add_scalar", "add_relu", "mul", "mul_scalar", "cat", "matmul")


class LayerTimer:
    """Forward pre/post hooks with perf_counter on the named modules; per-call sums per module.

    FloatFunctional / QFunctional are called through methods (``skip_add.add(a, b)``), never through
    ``forward``: their methods are wrapped on the instance while the timer is active.
    """

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        mods = dict(model.named_modules())
        self.modules = {n: mods[n] for n in names if n in mods}
        self.start: dict[str, float] = {}
        self.current: dict[str, float] = defaultdict(float)
        self.calls: list[dict[str, float]] = []
        self.handles: list = []
        self.patched: list[tuple[nn.Module, str]] = []

    def _pre(self, name: str, *_: object) -> None:
        self.start[name] = time.perf_counter()

    def _post(self, name: str, *_: object) -> None:
        self.current[name] += (time.perf_counter() - self.start.pop(name, time.perf_counter())) * 1000

    def __enter__(self) -> LayerTimer:
        for name, mod in self.modules.items():
            if type(mod).__name__ in FUNCTIONAL_TYPES:
                for method in FUNCTIONAL_METHODS:
                    if callable(getattr(mod, method, None)):
                        object.__setattr__(mod, method, self._timed(name, getattr(mod, method)))
                        self.patched.append((mod, method))
                continue
            self.handles.append(mod.register_forward_pre_hook(functools.partial(self._pre, name)))
            self.handles.append(mod.register_forward_hook(functools.partial(self._post, name)))
        return self

    def _timed(self, name: str, method):
        def timed(*args, **kwargs):
            self._pre(name)
            try:
                return method(*args, **kwargs)
            finally:
                self._post(name)

        return timed

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        for mod, method in self.patched:
            object.__delattr__(mod, method)
        self.handles.clear()
        self.patched.clear()

    def call(self, model: nn.Module, batch: Batch) -> float:
        self.current = defaultdict(float)
        ms = call_ms(model, batch)
        self.calls.append(dict(self.current))
        return ms

    def rounds(self, skip: int = 0) -> dict[str, list[float]]:
        """Per layer, its time in each call after the first ``skip``."""
        calls = self.calls[skip:] or self.calls
        return {n: [c.get(n, 0.0) for c in calls] for n in self.modules}


def layer_rounds(
    float_model: nn.Module, int8_model: nn.Module, engine: str, batch: Batch, names: list[str], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-layer time of both models in each of ``repeats`` interleaved rounds, after one warm-up round."""
    from qlint.verify.flows import use_engine

    with torch.no_grad(), LayerTimer(float_model, names) as ft, LayerTimer(int8_model, names) as qt:
        for r in range(repeats + 1):
            if r % 2:
                with use_engine(engine):
                    qt.call(int8_model, batch)
                ft.call(float_model, batch)
            else:
                ft.call(float_model, batch)
                with use_engine(engine):
                    qt.call(int8_model, batch)
        return ft.rounds(skip=1), qt.rounds(skip=1)
