"""Command line: arguments, exit codes, wiring. Exit 0 clean, 1 findings, 2 qlint could not run."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from qlint.config import BACKENDS, ConfigError, check_backend, parse_shape
from qlint.version import __version__

_SELECTOR = re.compile(r"^(ALL|QL\d{0,3})$")


class UsageError(Exception):
    """Bad arguments: exit 2 with this one-line reason."""


def _codes(text: str) -> tuple[str, ...]:
    codes = tuple(c.strip().upper() for c in text.split(",") if c.strip())
    for code in codes:
        if not _SELECTOR.match(code):
            raise argparse.ArgumentTypeError(f"invalid rule selector {code!r} (expected e.g. QL101, QL2, ALL)")
    return codes


def _shape(text: str) -> tuple[int, ...]:
    try:
        return parse_shape(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    check.add_argument("--ignore", type=_codes, help="comma-separated rule codes or prefixes to disable")
    check.add_argument("--backend", type=_backend, help=f"quantized engine ({', '.join(BACKENDS)})")
    check.add_argument(
        "--model",
        action="append",
        dest="model_exprs",
        metavar="EXPR",
        help="how to build the model of a single file, e.g. 'Net(num_classes=10)'",
    )
    check.add_argument("--input-shape", type=_shape, metavar="SHAPE", help="e.g. 1x3x224x224")
    check.add_argument("--no-graph", action="store_true", help="source rules only: never import or run the file")
    check.add_argument("--exit-zero", action="store_true", help="exit 0 even when problems are found")
    check.add_argument("--fix", action="store_true", help="apply safe fixes")
    check.add_argument("--unsafe-fixes", action="store_true", help="also apply unsafe fixes (with --fix)")
    check.add_argument("--diff", action="store_true", help="print the fixes as a diff, write nothing")
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
    from qlint import report
    from qlint.engine import check_files, collect_files

    files, errors = collect_files(args.paths)
    if args.model_exprs and len(files) != 1:
        raise UsageError('--model applies to a single file; use [tool.qlint] models = ["path.py:EXPR"] for several')
    overrides = {
        "select": args.select,
        "ignore": args.ignore,
        "backend": args.backend,
        "model_exprs": tuple(args.model_exprs) if args.model_exprs else None,
        "input_shape": args.input_shape,
        "input_shape_from_cli": True if args.input_shape else None,
        "no_graph": True if args.no_graph else None,
    }
    if args.fix or args.diff:
        from qlint.cli.fix import run_fix

        return run_fix(args, files, errors, overrides)
    from qlint.fix.attach import attach_fixes  # show what is fixable

    results = check_files(files, overrides, stage=attach_fixes)
    diagnostics = [d for r in results for d in r.diagnostics]
    errors += [r.error for r in results if r.error]
    for error in errors:
        print(f"qlint: error: {error}", file=sys.stderr)
    report.render(
        diagnostics,
        args.format,
        sources={r.path: r.source.text for r in results if r.source is not None},
        color=report.use_color(args.color),
        out=sys.stdout,
        files_checked=len(files),
        tool_version=__version__,
        errors=len(errors),
    )
    if errors:
        return 2
    return 1 if diagnostics and not args.exit_zero else 0


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
