"""Command line: arguments, exit codes, wiring. Exit 0 clean, 1 findings, 2 qlint could not run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from qlint.cli.options import UsageError, add_fail_on, output_stream
from qlint.config import BACKENDS, FLOWS, QUANTIZERS, TARGET_CPUS, ConfigError, check_backend, parse_shape
from qlint.version import __version__


def _codes(text: str) -> tuple[str, ...]:
    """``QL101, ql2`` -> ``("QL101", "QL2")``; codes that name no rule are refused after parsing (all named)."""
    return tuple(c.strip().upper() for c in text.split(",") if c.strip())


def _shape(text: str) -> tuple[int, ...]:
    try:
        return parse_shape(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: expected a number of seconds > 0")
    return value


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid job count {text!r}: expected an integer >= 1")
    return int(text)


def _backend(text: str) -> str:
    try:
        return check_backend(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlint", description="Lint and fix PyTorch models for int8 quantization.")
    parser.add_argument("--version", action="version", version=f"qlint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check", help="check files or folders for quantization hazards")
    check.add_argument("paths", nargs="*", default=["."], help="files or folders (default: .)")
    check.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text")
    check.add_argument("--select", type=_codes, help="comma-separated rule codes or prefixes to enable")
    check.add_argument("--extend-select", type=_codes, metavar="CODES", help="enable these too (added to select)")
    check.add_argument("--ignore", type=_codes, help="comma-separated rule codes or prefixes to disable")
    check.add_argument("--extend-ignore", type=_codes, metavar="CODES", help="disable these too (added to ignore)")
    check.add_argument("--config", metavar="PATH", help="use this pyproject.toml (or toml file) instead of the nearest")
    check.add_argument("--backend", type=_backend, help=f"quantized engine ({', '.join(BACKENDS)})")
    check.add_argument(
        "--flow",
        choices=FLOWS,
        help="quantization flow to check the models for (default: pt2e for a file calling prepare_pt2e, else eager)",
    )
    check.add_argument(
        "--quantizer",
        choices=QUANTIZERS,
        help="PT2E quantizer to ask (default: the one the file builds, else the host's: x86 on x86)",
    )
    check.add_argument(
        "--model",
        action="append",
        dest="model_exprs",
        metavar="EXPR",
        help="how to build the model of a single file, e.g. 'Net(num_classes=10)' (replaces configured models)",
    )
    check.add_argument("--input-shape", type=_shape, metavar="SHAPE", help="e.g. 1x3x224x224")
    check.add_argument(
        "--target-cpu",
        choices=TARGET_CPUS,
        help="the CPU the model is deployed on (default: host, this machine; x86-avx2: x86 without AVX-512 VNNI)",
    )
    check.add_argument("--no-graph", action="store_true", help="source rules only: never import or run the file")
    check.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="per-file limit on importing and tracing (default 120)"
    )
    check.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    check.add_argument("--jobs", "-j", type=_jobs, metavar="N", help="files checked in parallel (default: the cores)")
    check.add_argument(
        "--no-respect-gitignore",
        dest="respect_gitignore",
        action="store_false",
        help="also check the files .gitignore excludes in the folders given",
    )
    check.add_argument("--exit-zero", action="store_true", help="exit 0 even when problems are found")
    add_fail_on(check, "exit 1 only for findings at least this severe (default: any finding)")
    check.add_argument("--fix", action="store_true", help="apply safe fixes")
    check.add_argument("--unsafe-fixes", action="store_true", help="also apply unsafe fixes (with --fix)")
    check.add_argument("--diff", action="store_true", help="print the fixes as a diff, write nothing")
    check.add_argument("--show-fixes", action="store_true", help="list the fixes on offer (with --fix: those applied)")
    check.add_argument(
        "--statistics",
        action="store_true",
        help="print the number of findings of each code instead (PT2E flow: and each model's quantized/float ops)",
    )
    check.add_argument("--output-file", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    check.add_argument("--quiet", "-q", action="store_true", help="print the findings only: no summary, no progress")
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto")

    emit = sub.add_parser("emit", help="write a quantizable copy of a library model that a file builds")
    emit.add_argument("path", help="the file building the model (e.g. torchvision.models.resnet18(weights=None))")
    emit.add_argument("-o", "--output", required=True, help="the Python file to write")
    emit.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    emit.add_argument("--model", dest="model_expr", metavar="EXPR", help="how to build the model, e.g. 'build()'")
    emit.add_argument(
        "--unsafe-fixes",
        action="store_true",
        help="also apply unsafe fixes (ReLU6 -> ReLU so Conv-BN-ReLU fuses: changes float numerics)",
    )

    rule = sub.add_parser("rule", help="show a rule's documentation")
    rule.add_argument("code")
    rules = sub.add_parser("rules", help="list all rules")
    rules.add_argument("--format", choices=("text", "json"), default="text")

    from qlint.cli.verify import add_parser as add_verify

    add_verify(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed why)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "emit":
            from qlint.cli.fix import run_emit

            return run_emit(args)
        if args.command == "rule":
            return _rule(args.code)
        if args.command == "rules":
            return _rules(args.format)
        if args.command == "verify":
            from qlint.cli.verify import run

            return run(args)
        parser.print_help()
        return 2
    except (UsageError, ConfigError) as exc:
        print(f"qlint: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qlint: interrupted", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `qlint ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - an internal error is exit 2 with one line, not a traceback
        if os.environ.get("QLINT_DEBUG"):
            raise
        print(
            f"qlint: internal error: {type(exc).__name__}: {exc} (set QLINT_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 2


def _check(args: argparse.Namespace) -> int:
    from qlint.engine import collect_files

    files, errors = collect_files(args.paths, respect_gitignore=args.respect_gitignore)
    if args.model_exprs and len(files) != 1:
        raise UsageError('--model applies to a single file; use [tool.qlint] models = ["path.py:EXPR"] for several')
    overrides = _overrides(args)
    _validate(args, files)
    pt2e_error = _pt2e_unavailable(args, files)
    if pt2e_error:
        overrides["no_graph"] = True  # the source rules still run; the run ends with exit 2
        errors = [*errors, pt2e_error]
    if args.fix or args.diff:
        from qlint.cli.fix import run_fix

        return run_fix(args, files, errors, overrides)
    with output_stream(args.output_file) as out:
        return _report(args, files, errors, overrides, out)


def _pt2e_unavailable(args: argparse.Namespace, files: list[str]) -> str | None:
    """Why the PT2E flow asked for (``--flow pt2e`` or ``flow = "pt2e"``) cannot be checked here, or None."""
    from qlint.config import clear_cache, load_settings

    if args.no_graph:
        return None
    import importlib.util

    if args.quantizer == "xnnpack" and importlib.util.find_spec("executorch") is None:
        return "--quantizer xnnpack needs executorch (`pip install executorch`), which is not installed"
    clear_cache()
    asked = args.flow == "pt2e" or (
        args.flow is None and any(load_settings(p, {"config": args.config}).flow == "pt2e" for p in files)
    )
    if not asked:
        return None
    from qlint.model.pt2e_quantizer import Pt2eUnavailable, require_torchao

    try:
        require_torchao()
    except Pt2eUnavailable as exc:
        return str(exc)
    return None


def _overrides(args: argparse.Namespace) -> dict:
    """Settings fields the command line sets; they win over [tool.qlint] (None: not given)."""
    return {
        "config": args.config,
        "select": args.select,
        "extend_select": args.extend_select,
        "ignore": args.ignore,
        "extend_ignore": args.extend_ignore,
        "backend": args.backend,
        "flow": args.flow,
        "quantizer": args.quantizer,
        "model_exprs": tuple(args.model_exprs) if args.model_exprs else None,
        "models": () if args.model_exprs else None,  # --model replaces the configured models of the file
        "input_shape": args.input_shape,
        "input_shape_from_cli": True if args.input_shape else None,
        "no_graph": True if args.no_graph else None,
        "timeout": args.timeout,
        "no_cache": True if args.no_cache else None,
        "jobs": args.jobs,
        "target_cpu": args.target_cpu,
    }


def _validate(args: argparse.Namespace, files: list[str]) -> None:
    """Unknown rule codes on the command line or in a configuration are an error (exit 2) naming them."""
    from qlint.cli.options import check_selectors, check_settings
    from qlint.config import clear_cache, load_settings

    for option in ("select", "extend_select", "ignore", "extend_ignore"):
        check_selectors(getattr(args, option) or (), "--" + option.replace("_", "-"))
    clear_cache()
    seen = set()
    for path in files or ["."]:
        settings = load_settings(path, {"config": args.config})
        if settings.config_file not in seen:
            seen.add(settings.config_file)
            check_settings(settings)


def _report(args: argparse.Namespace, files: list[str], errors: list[str], overrides: dict, out: TextIO) -> int:
    from qlint import report
    from qlint.cli.options import failing
    from qlint.engine import check_files
    from qlint.fix.attach import attach_fixes  # show what is fixable
    from qlint.report.progress import Progress

    progress = Progress(len(files), enabled=False if args.quiet else None)

    def stage(diagnostics, source, settings, checked, models):
        diagnostics = attach_fixes(diagnostics, source, settings, checked, models)
        progress.advance(source.path)
        return diagnostics

    try:
        results = check_files(files, overrides, stage=stage)
    finally:
        progress.close()
    diagnostics = [d for r in results for d in r.diagnostics]
    errors += [r.error for r in results if r.error]
    for error in errors:
        print(f"qlint: error: {error}", file=sys.stderr)
    if args.statistics:
        from qlint.report.statistics import render_statistics

        pt2e = [r for r in results if r.flow == "pt2e" and r.source is not None]
        coverage = (
            [(r.path, stats) for r in pt2e for stats in r.coverage] if pt2e and not overrides.get("no_graph") else None
        )
        render_statistics(diagnostics, "json" if args.format == "json" else "text", out, coverage)
    elif args.quiet and args.format == "text":
        report.render_text(diagnostics, _sources(results), color=_color(args, out), out=out)
    else:
        report.render(
            diagnostics,
            args.format,
            sources=_sources(results),
            color=_color(args, out),
            out=out,
            files_checked=len(files),
            tool_version=__version__,
            errors=len(errors),
        )
    if args.show_fixes and args.format == "text" and not args.statistics:
        from qlint.report.statistics import render_fixes

        render_fixes(diagnostics, out)
    if errors:
        return 2
    return 1 if failing(diagnostics, args.fail_on) and not args.exit_zero else 0


def _sources(results: list) -> dict[str, str]:
    return {r.path: r.source.text for r in results if r.source is not None}


def _color(args: argparse.Namespace, out: TextIO) -> bool:
    from qlint import report

    return report.use_color(args.color) if out is sys.stdout else args.color == "always"


def _rule(code: str) -> int:
    from qlint.rules.catalog import RULES, rule_page

    code = code.upper()
    if code not in RULES:
        raise UsageError(f"unknown rule {code!r}; `qlint rules` lists them")
    page = rule_page(code)
    info = RULES[code]
    print(page if page else f"# {code}: {info.name}\n\n{info.summary}\n")
    return 0


def _rules(fmt: str) -> int:
    import json

    from qlint.rules.catalog import RULES

    if fmt == "json":
        print(
            json.dumps(
                [
                    {
                        "code": r.code,
                        "name": r.name,
                        "severity": r.severity.value,
                        "basis": " + ".join(b.value for b in r.basis),
                        "fix": r.fix_availability.value,
                        "summary": r.summary,
                        "url": r.url,
                    }
                    for r in RULES.values()
                ],
                indent=2,
            )
        )
        return 0
    width = max(len(r.name) for r in RULES.values())
    print(f"{'code':<6} {'name':<{width}} {'severity':<8} {'fix':<9} summary")
    for r in RULES.values():
        print(f"{r.code:<6} {r.name:<{width}} {r.severity.value:<8} {r.fix_availability.value:<9} {r.summary}")
    return 0
