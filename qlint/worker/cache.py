"""The result cache (ruff's idea): a file's diagnostics, keyed on everything that decides them.

The key hashes the file's path and content, the flow it is checked with (and the PT2E quantizer),
the contents of the project files it imports, qlint's version and code, the Python, torch,
torchvision and torchao versions, the host's quantized engine and CPU,
the effective settings, the set of files checked together and the stage run after the check. A hit
is read without importing torch. Entries are written to a temporary file and renamed into place, so
concurrent runs never read half an entry; an entry that does not load is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import pickle
import sys
import tempfile
from dataclasses import replace
from functools import cache

from qlint.config import Settings
from qlint.diagnostics import Diagnostic
from qlint.version import __version__
from qlint.worker.imports import project_imports

FORMAT = "2"
DIR_NAME = ".qlint_cache"


def cache_dir(settings: Settings) -> str | None:
    """Where results are kept, or None when caching is off (``no_cache``, ``QLINT_NO_CACHE``)."""
    if settings.no_cache or os.environ.get("QLINT_NO_CACHE"):
        return None
    chosen = settings.cache_dir or os.environ.get("QLINT_CACHE_DIR")
    return os.path.abspath(chosen or os.path.join(settings.config_dir or os.getcwd(), DIR_NAME))


def key(path: str, text: str, settings: Settings, checked: tuple[str, ...], stage: str) -> str:
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        for part in parts:
            digest.update(repr(part).encode("utf-8", errors="surrogatepass"))
            digest.update(b"\0")

    add(FORMAT, __version__, _qlint_code(), sys.version, _versions(), _host_engine(), _host_cpu())
    effective = replace(settings, timeout=0.0, jobs=None, no_cache=False, cache_dir=None)
    add(path, os.path.abspath(path), os.getcwd(), effective, checked, stage, text)
    add(*_flow_and_quantizer(text, settings))
    for imported in project_imports(path, text):
        try:
            with open(imported, "rb") as fh:
                add(imported, hashlib.sha256(fh.read()).hexdigest())
        except OSError:
            add(imported, None)
    return digest.hexdigest()


def _flow_and_quantizer(text: str, settings: Settings) -> tuple[str, str | None]:
    """The flow the file is checked with and, for PT2E, the quantizer asked (the host's default included)."""
    from qlint.model.pt2e_quantizer import quantizer_name_for
    from qlint.source.pt2e_flow import PT2E, flow_of

    flow = flow_of(text, settings.flow)
    return (flow, quantizer_name_for(text, settings) if flow == PT2E else None)


def load(directory: str, entry: str) -> tuple[list[Diagnostic], list] | None:
    """(diagnostics, PT2E coverage statistics) kept under ``entry``, or None."""
    try:
        with open(os.path.join(directory, FORMAT, entry[:2], entry), "rb") as fh:
            value = pickle.load(fh)
    except Exception:  # noqa: BLE001 - missing, partial or from another qlint: a miss
        return None
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list)):
        return None
    diagnostics, coverage = value
    return (diagnostics, coverage) if all(isinstance(d, Diagnostic) for d in diagnostics) else None


def store(directory: str, entry: str, diagnostics: list[Diagnostic], coverage: list | None = None) -> None:
    """Keep ``diagnostics`` (and the PT2E coverage) under ``entry``; a cache that cannot be written is
    skipped silently."""
    folder = os.path.join(directory, FORMAT, entry[:2])
    try:
        _prepare(directory)
        os.makedirs(folder, exist_ok=True)
        data = pickle.dumps((diagnostics, coverage or []), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - read-only folder, or a finding that does not pickle
        return
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(folder, entry))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _prepare(directory: str) -> None:
    """Create the cache folder, ignored by git (``*``) and tagged as a cache, as ruff does."""
    if os.path.isdir(os.path.join(directory, FORMAT)):
        return
    os.makedirs(directory, exist_ok=True)
    for name, content in (
        (".gitignore", "# Automatically created by qlint.\n*\n"),
        (
            "CACHEDIR.TAG",
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by qlint.\n",
        ),
    ):
        target = os.path.join(directory, name)
        if not os.path.exists(target):
            with contextlib.suppress(OSError), open(target, "w", encoding="utf-8") as fh:
                fh.write(content)


@cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    out = []
    for name in ("torch", "torchvision", "torchao"):
        try:
            out.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def _host_engine() -> str | None:
    from qlint.rules.engines import host_engine

    return host_engine()


def _host_cpu() -> str | None:
    from qlint.rules.engines import host_cpu

    return host_cpu()


@cache
def _qlint_code() -> str:
    """qlint's own code (size and mtime of each module): a changed rule never serves an old result."""
    digest = hashlib.sha256()
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
