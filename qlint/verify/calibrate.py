"""Calibration and held-out batches: random ones of the input shape, or a user's ``module:function``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

Batch = tuple[torch.Tensor, ...]


class CalibrationError(ValueError):
    """The user's calibration function cannot be imported or yields nothing usable (exit 2)."""


def as_args(batch: object) -> Batch:
    """One batch as the positional arguments of ``model(*args)``."""
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in batch):
        return tuple(batch)
    if isinstance(batch, dict) and "input" in batch:
        return as_args(batch["input"])
    raise CalibrationError(f"a calibration batch must be a Tensor or a tuple of Tensors, got {type(batch).__name__}")


def random_batches(shape: Sequence[int], n: int, seed: int) -> list[Batch]:
    """``n`` batches of standard-normal inputs, reproducible from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=gen),) for _ in range(n)]


def load_function(ref: str, search_paths: Iterable[str] = ()) -> object:
    """Import ``module:function`` (``module`` a dotted name or a ``.py`` path)."""
    mod_name, sep, func_name = ref.rpartition(":")
    if not sep or not mod_name or not func_name:
        raise CalibrationError(f"--calibration must be a number or module:function, got {ref!r}")
    added = [p for p in search_paths if p not in sys.path]
    sys.path[:0] = added
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise CalibrationError(f"calibration module {mod_name} does not exist")
            spec = importlib.util.spec_from_file_location(f"_qlint_calib_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(mod_name)
    except CalibrationError:
        raise
    except Exception as exc:  # the user's module raised on import
        raise CalibrationError(f"cannot import {mod_name}: {type(exc).__name__}: {exc}") from exc
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise CalibrationError(f"{mod_name} has no function {func_name}")
    return func


def user_batches(ref: str, search_paths: Iterable[str] = ()) -> list[Batch]:
    """The batches ``function()`` yields (or returns as an iterable)."""
    func = load_function(ref, search_paths)
    try:
        batches = [as_args(b) for b in func()]  # type: ignore[operator]
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"{ref} raised: {type(exc).__name__}: {exc}") from exc
    if not batches:
        raise CalibrationError(f"{ref} yielded no batches")
    return batches


def split_batches(
    calibration: int | str,
    shape: Sequence[int],
    eval_batches: int,
    seed: int,
    search_paths: Iterable[str] = (),
) -> tuple[list[Batch], list[Batch]]:
    """(calibration batches, held-out batches). A user's batches: the last fifth is held out."""
    if isinstance(calibration, int):
        if calibration < 1:
            raise CalibrationError("--calibration needs at least one batch")
        calib = random_batches(shape, calibration, seed)
        held = random_batches(shape, max(1, eval_batches), seed + 1)
        return calib, held
    batches = user_batches(calibration, search_paths)
    if len(batches) == 1:
        return batches, batches
    k = max(1, len(batches) // 5)
    return batches[:-k], batches[-k:]
