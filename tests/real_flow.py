"""The judge of graph-rule verdicts: the real eager conversion on CPU.

eval, x86 qconfig (unless the model sets its own), prepare, 2 calibration batches, convert, one forward.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
import warnings
from collections.abc import Callable

import torch


def load(path: os.PathLike, expr: str) -> torch.nn.Module:
    """Import a model file under a fresh module name and evaluate ``expr`` in it."""
    name = f"_realflow_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(str(path)))
    try:
        spec.loader.exec_module(module)
        return eval(expr, module.__dict__)  # noqa: S307 - the test's own expression
    finally:
        sys.path.pop(0)


def real_flow(model: torch.nn.Module, make_input: Callable[[], object], qconfig: object = "x86") -> str | None:
    """None when the model converts and runs; else "<stage>: <error>" of the first failure.

    ``make_input`` returns the input, or a tuple of the inputs of a model that takes several.
    """
    torch.manual_seed(0)
    model.eval()
    if qconfig == "x86":
        qconfig = torch.ao.quantization.get_default_qconfig("x86")
    if qconfig is not None and "qconfig" not in model.__dict__:
        model.qconfig = qconfig
    stage = "prepare"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = torch.ao.quantization.prepare(model)
            stage = "calibrate"
            for _ in range(2):
                prepared(*_args(make_input()))
            stage = "convert"
            converted = torch.ao.quantization.convert(prepared)
            stage = "forward"
            converted(*_args(make_input()))
    except Exception as exc:  # noqa: BLE001 - the failure is the verdict
        return f"{stage}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def _args(inputs: object) -> tuple:
    return inputs if isinstance(inputs, tuple) else (inputs,)
