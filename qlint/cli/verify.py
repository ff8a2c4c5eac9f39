"""``qlint verify``: arguments, exit codes (0 ok, 1 failed/slow/inaccurate, 2 bad input), output."""

from __future__ import annotations

import argparse
import os
import sys

from qlint.cli.options import add_fail_on
from qlint.config import BACKENDS
from qlint.model.loader import first_line

FLOWS = ("eager", "fx", "pt2e")
DESCRIPTION = (
    "Run the real quantization flow on the model(s) of a file (random weights or --weights), on the CPU: "
    "conversion, accuracy (SQNR vs float), speed (float vs int8, cold start, per layer), measured remedies."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``verify`` on the CLI's subparsers."""
    p = subparsers.add_parser("verify", help="convert for real and measure accuracy and speed", description=DESCRIPTION)
    add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="model file (model.py, or model.py:EXPR to say how to build the model)")
    p.add_argument("--model", action="append", default=[], metavar="EXPR", help="how to build the model, e.g. 'Net(3)'")
    p.add_argument("--backend", choices=BACKENDS, help="quantized engine (default: torch's default on this host)")
    p.add_argument("--flow", choices=FLOWS, default="eager", help="quantization flow (default: eager)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="pt2e: time the un-compiled reference graph, not torch.compile; no PT2E remedies")  # fmt: skip
    p.add_argument("--input-shape", metavar="SHAPE", help="e.g. 1x3x512x512 (default: [tool.qlint] or 1x3x224x224)")
    p.add_argument("--calibration", default="8", metavar="N|module:function",
                   help="N random batches (default 8), or a function yielding batches")  # fmt: skip
    p.add_argument("--weights", metavar="CKPT", help="state_dict checkpoint to load (default: random weights)")
    p.add_argument("--format", "--output-format", dest="format", choices=("text", "json"), default="text")
    p.add_argument("--min-sqnr", type=float, default=20.0, metavar="DB", help="accuracy bar in dB (default 20)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every measurement (default 2)")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per median (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    p.add_argument("--cold-calls", type=int, default=5, help="first calls timed one by one (default 5)")
    p.add_argument(
        "--remedies",
        choices=("auto", "always", "never"),
        default="auto",
        help="measure other engines and float islands: when int8 is slow (auto), always, never",
    )
    add_fail_on(
        p,
        "exit 1 on any finding at least this severe (default: conversion failed, SQNR below "
        "the bar, int8 measurably slower than float)",
    )
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (pip install qlint[report])")


def _error(msg: str) -> int:
    sys.stderr.write(f"qlint verify: error: {msg}\n")
    return 2


def _split_target(text: str) -> tuple[str, list[str]]:
    """``model.py:EXPR`` -> (``model.py``, [EXPR]); a plain path -> (path, [])."""
    if not os.path.exists(text) and ".py:" in text:
        path, _, expr = text.partition(".py:")
        return path + ".py", [expr]
    return text, []


def _shape(args: argparse.Namespace, path: str, settings: object | None) -> tuple[int, ...]:
    from qlint.config import ConfigError, parse_shape
    from qlint.verify.result import DEFAULT_SHAPE

    if args.input_shape:
        try:
            return parse_shape(args.input_shape)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
    try:
        from qlint.source.file import SourceFile

        pragmas = SourceFile.read(path).pragma_values("input-shape")
        if pragmas:
            return parse_shape(pragmas[0].value)
    except Exception:
        pass
    shape = getattr(settings, "input_shape", None)
    return tuple(shape) if shape else DEFAULT_SHAPE


def _calibration(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


def load_weights(model, path: str) -> None:
    import torch

    from qlint.verify.integration import BadInput

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"cannot load --weights {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BadInput(f"--weights {path} holds {type(state).__name__}, not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BadInput(f"--weights {path} does not fit the model: {first_line(exc)}") from exc


def run(args: argparse.Namespace) -> int:
    """Verify every root model of ``args.path``; the exit code of the worst."""
    from qlint.report import verify as report
    from qlint.verify.calibrate import CalibrationError
    from qlint.verify.flows import MissingExtra, check_flow_available
    from qlint.verify.integration import BadInput, load_settings, load_targets
    from qlint.verify.result import VerifyOptions
    from qlint.verify.runner import verify

    path, exprs = _split_target(args.path)
    exprs += list(getattr(args, "model", []) or [])
    if not os.path.isfile(path):
        return _error(f"{path}: no such file")
    if args.threads < 1 or args.repeat < 1 or args.cold_calls < 1 or args.warmup < 0:
        return _error("--threads, --repeat and --cold-calls must be >= 1, --warmup >= 0")
    if args.html:
        from qlint.report.verify_html import MissingReportExtra, check_available

        try:
            check_available()
        except MissingReportExtra as exc:
            return _error(str(exc))
    try:
        check_flow_available(args.flow)
        settings = load_settings(path, {"backend": args.backend})
        options = VerifyOptions(
            backend=args.backend or getattr(settings, "backend", None),
            flow=args.flow,
            input_shape=_shape(args, path, settings),
            calibration=_calibration(args.calibration),
            min_sqnr=args.min_sqnr,
            threads=args.threads,
            warmup=args.warmup,
            repeats=args.repeat,
            cold_calls=args.cold_calls,
            layer_repeats=args.repeat,
            random_weights=not args.weights,
            remedies=args.remedies,
            compile=args.compile,
            fail_on=args.fail_on,
        )
        targets = load_targets(path, settings, exprs)
        results = []
        with report.progress(args.format == "text") as step:
            for target in targets:
                if args.weights:
                    load_weights(target.model, args.weights)
                results.append(verify(target, options, step))
    except (BadInput, MissingExtra, CalibrationError, ValueError) as exc:
        return _error(str(exc))
    if args.format == "json":
        report.render_json(results, sys.stdout)
    else:
        report.render_text(results, sys.stdout)
    sys.stdout.flush()
    if args.html:
        from qlint.report.verify_html import write_html

        write_html(results, args.html)
        sys.stderr.write(f"qlint verify: wrote {args.html}\n")
    return max(r.exit_code for r in results)
