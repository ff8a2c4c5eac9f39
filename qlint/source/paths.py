"""Which files a run checks: the Python files under the given paths, broken links named, not fatal."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterable

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", "build", "dist", "node_modules",
             ".mypy_cache", ".ruff_cache", ".pytest_cache", ".qlint_cache", "site-packages"}  # fmt: skip
PYTHON_SUFFIXES = (".py", ".pyi")


def warn_stderr(message: str) -> None:
    print(f"qlint: warning: {message}", file=sys.stderr)


def collect_files(
    paths: Iterable[str], warn: Callable[[str], None] = warn_stderr, respect_gitignore: bool = True
) -> tuple[list[str], list[str]]:
    """Python files under ``paths`` (folders recursively) and errors for paths that are not.

    Each file is listed once, however often it is named (``b.py b.py``, ``. b.py``). Inside a folder
    that git tracks, the files ``.gitignore`` excludes are skipped (``respect_gitignore=False`` keeps
    them); a file named on the command line is checked even when ignored, as ruff does.

    Inside a folder, an entry that cannot be read (a dangling symbolic link, a link loop, a folder
    without permission) is passed to ``warn`` and skipped: the other files are still checked. A path
    named on the command line that cannot be read is an error.
    """
    files, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            found = _walk(path, warn)
            files.extend(_not_ignored(path, found) if respect_gitignore else found)
        elif os.path.islink(path) and not os.path.exists(path):
            errors.append(f"{path}: {_broken_link(path)}")
        elif not os.path.exists(path):
            errors.append(f"{path}: no such file or directory")
        elif not path.endswith(PYTHON_SUFFIXES):
            errors.append(f"{path}: not a Python file (qlint checks .py files); skipped")
        else:
            files.append(path)
    return _once(files), errors


def _once(files: list[str]) -> list[str]:
    """``files`` without repeats (the same file by another spelling included), in first-seen order."""
    seen: set[str] = set()
    out = []
    for path in files:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def _not_ignored(folder: str, files: list[str]) -> list[str]:
    """``files`` minus those git ignores (``git check-ignore``); all of them outside a git work tree."""
    if not files:
        return files
    try:
        run = subprocess.run(
            ["git", "check-ignore", "-z", "--stdin"],
            cwd=folder,
            input="\0".join(os.path.abspath(f) for f in files),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):  # no git: nothing is ignored
        return files
    if run.returncode not in (0, 1):  # 128: not a git repository
        return files
    ignored = {os.path.realpath(p) for p in run.stdout.split("\0") if p}
    return [f for f in files if os.path.realpath(os.path.abspath(f)) not in ignored]


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
