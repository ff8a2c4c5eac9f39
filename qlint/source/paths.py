"""Which files a run checks: the Python files under the given paths, broken links named, not fatal."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterable

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", "build", "dist", "node_modules",
             ".mypy_cache", ".ruff_cache", ".pytest_cache", ".qlint_cache", "site-packages"}  # fmt: skip
PYTHON_SUFFIXES = (".py", ".pyi")


def warn_stderr(message: str) -> None:
    print(f"qlint: warning: {message}", file=sys.stderr)


def collect_files(paths: Iterable[str], warn: Callable[[str], None] = warn_stderr) -> tuple[list[str], list[str]]:
    """Python files under ``paths`` (folders recursively) and errors for paths that are not.

    Inside a folder, an entry that cannot be read (a dangling symbolic link, a link loop, a folder
    without permission) is passed to ``warn`` and skipped: the other files are still checked. A path
    named on the command line that cannot be read is an error.
    """
    files, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            files.extend(_walk(path, warn))
        elif os.path.islink(path) and not os.path.exists(path):
            errors.append(f"{path}: {_broken_link(path)}")
        elif not os.path.exists(path):
            errors.append(f"{path}: no such file or directory")
        elif not path.endswith(PYTHON_SUFFIXES):
            errors.append(f"{path}: not a Python file (qlint checks .py files); skipped")
        else:
            files.append(path)
    return files, errors


def _walk(folder: str, warn: Callable[[str], None]) -> list[str]:
    found = []

    def unreadable(exc: OSError) -> None:
        warn(f"{exc.filename or folder}: cannot list folder ({exc.strerror or exc}); skipped")

    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(root, name)
            if not name.endswith(PYTHON_SUFFIXES):
                continue
            if os.path.islink(path) and not os.path.exists(path):
                warn(f"{path}: {_broken_link(path)}; skipped")
                continue
            found.append(path)
    return found


def _broken_link(path: str) -> str:
    """Why a symbolic link leads nowhere: a loop, or a missing target."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
    return "symbolic link"  # pragma: no cover - only when the link was repaired meanwhile
