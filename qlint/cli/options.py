"""Options shared by ``qlint check`` and ``qlint verify``, and checks of rule selectors."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

from qlint.config import ConfigError, Settings
from qlint.diagnostics import Diagnostic, Severity


class UsageError(Exception):
    """Bad arguments: exit 2 with this one-line reason."""


FAIL_ON = tuple(s.value for s in Severity)  # error, warning, info
_RANK = {Severity.ERROR: 2, Severity.WARNING: 1, Severity.INFO: 0}


def add_fail_on(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--fail-on", choices=FAIL_ON, metavar="{error,warning,info}", help=help_text)


def at_least(severity: Severity | str, fail_on: str) -> bool:
    """Whether ``severity`` is at least as severe as ``fail_on`` (error > warning > info)."""
    return _RANK[Severity(severity)] >= _RANK[Severity(fail_on)]


def failing(diagnostics: Sequence[Diagnostic], fail_on: str | None) -> list[Diagnostic]:
    """The diagnostics that make ``qlint check`` exit 1: all of them, or those at least ``fail_on``."""
    if fail_on is None:
        return list(diagnostics)
    from qlint.report.meta import severity_of

    return [d for d in diagnostics if at_least(severity_of(d), fail_on)]


def check_selectors(selectors: Iterable[str], where: str) -> None:
    """ConfigError naming every selector that names no rule (``QL130``, ``QL1O1``)."""
    from qlint.rules.registry import unknown_selectors

    bad = unknown_selectors(selectors)
    if bad:
        from qlint.rules.registry import rules

        s = "s" if len(bad) > 1 else ""
        raise ConfigError(
            f"{where}: unknown rule code{s} or prefix{'es' if s else ''} {', '.join(repr(b) for b in bad)} "
            f"(known: {min(rules())}..{max(rules())}; `qlint rules` lists them)"
        )


def check_settings(settings: Settings) -> None:
    """Every selector of a configuration names a rule; the error names the file and the key."""
    where = settings.config_file or "settings"
    for key, selectors in settings.selectors().items():
        check_selectors(selectors, f"{where}: [tool.qlint] {key}")


@contextlib.contextmanager
def output_stream(path: str | None) -> Iterator[TextIO]:
    """stdout, or ``--output-file`` (its folder is created; written only when the run got that far)."""
    if path is None:
        yield sys.stdout
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"--output-file {path}: cannot write ({exc.strerror or exc})") from None
    with fh:
        yield fh
