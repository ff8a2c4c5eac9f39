"""Settings: ``[tool.qlint]`` in the nearest pyproject.toml, overridden by the command line."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


KNOWN_KEYS = ("select", "ignore", "per-file-ignores", "backend", "models", "input-shape", "timeout", "cache-dir")
DEFAULT_TIMEOUT = 120.0
BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")


class ConfigError(Exception):
    """Bad configuration: qlint exits with code 2 and this message."""


@dataclass(frozen=True)
class Settings:
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    backend: str | None = None
    models: tuple[str, ...] = ()
    model_exprs: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None
    input_shape_from_cli: bool = False  # --input-shape beats a file's `# qlint: input-shape` pragma
    no_graph: bool = False
    config_dir: str | None = None
    timeout: float = DEFAULT_TIMEOUT  # seconds one file's check (import, build, trace) may take
    cache_dir: str | None = None  # default: .qlint_cache next to the pyproject.toml (else the working folder)
    no_cache: bool = False
    jobs: int | None = None  # files checked at once (default: the usable cores)

    @classmethod
    def default(cls) -> Settings:
        return cls()

    def selection(self, path: str) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """(select, ignore) prefixes for ``path``: select/ignore, then per-file-ignores.

        The codes they enable are the rules' business (``qlint.rules.registry.select_codes``).
        """
        ignore = list(self.ignore)
        rel = _relative(path, self.config_dir)
        for pattern, codes in self.per_file_ignores.items():
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(Path(rel).name, pattern):
                ignore.extend(codes)
        return self.select, tuple(ignore)

    def models_for(self, path: str) -> tuple[str, ...]:
        """Model expressions configured for ``path`` (``models = ["file.py:EXPR"]``)."""
        out = []
        for item in self.models:
            file_part, _, expr = item.partition(":")
            target = Path(self.config_dir or ".") / file_part
            if expr and _same_file(target, Path(path)):
                out.append(expr.strip())
        return tuple(out)


def with_pragmas(settings: Settings, source) -> Settings:
    """``settings`` for one SourceFile: its ``# qlint: input-shape`` unless ``--input-shape`` was given."""
    pragmas = source.pragma_values("input-shape")
    if not pragmas or settings.input_shape_from_cli:
        return settings
    try:
        return replace(settings, input_shape=parse_shape(pragmas[0].value))
    except ConfigError:
        return settings


def parse_shape(text: str) -> tuple[int, ...]:
    """``1x3x224x224`` (or ``1,3,224,224``) -> ``(1, 3, 224, 224)``."""
    parts = [p for p in re.split(r"[x,\s]+", text.strip().lower()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"invalid input shape {text!r}: expected e.g. 1x3x224x224")
    return tuple(int(p) for p in parts)


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def clear_cache() -> None:
    """Forget pyproject lookups (one run sees one state of the files; the next may differ)."""
    _pyproject_with_table.cache_clear()
    _read_toml.cache_clear()


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml holding a ``[tool.qlint]`` table, from ``start`` upwards."""
    directory = start if start.is_dir() else start.parent
    for candidate in [directory, *directory.parents]:
        found = _pyproject_with_table(str(candidate.resolve()))
        if found:
            return Path(found)
    return None


@cache
def _pyproject_with_table(directory: str) -> str | None:
    path = os.path.join(directory, "pyproject.toml")
    if not os.path.isfile(path):
        return None
    return path if "qlint" in _read_toml(path).get("tool", {}) else None


@cache
def _read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None


def settings_from_table(table: dict, source: str, config_dir: str | None) -> Settings:
    """Validate a ``[tool.qlint]`` table; an unknown key is an error naming it."""
    unknown = sorted(set(table) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} in [tool.qlint] (known: {', '.join(KNOWN_KEYS)})")

    def str_list(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: [tool.qlint] {key} must be a list of strings")
        return tuple(value)

    pfi = table.get("per-file-ignores", {})
    if not isinstance(pfi, dict) or not all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in pfi.values()
    ):
        raise ConfigError(f"{source}: [tool.qlint] per-file-ignores must map patterns to lists of codes")
    backend = table.get("backend")
    shape = table.get("input-shape")
    if shape is not None and not isinstance(shape, (str, list)):
        raise ConfigError(f"{source}: [tool.qlint] input-shape must be a string like '1x3x224x224'")
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"{source}: [tool.qlint] timeout must be a positive number of seconds")
    cache_dir = table.get("cache-dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise ConfigError(f"{source}: [tool.qlint] cache-dir must be a path")
    return Settings(
        select=str_list("select") if "select" in table else None,
        ignore=str_list("ignore"),
        per_file_ignores={k: tuple(v) for k, v in pfi.items()},
        backend=check_backend(backend) if backend is not None else None,
        models=str_list("models"),
        input_shape=(
            parse_shape(shape if isinstance(shape, str) else "x".join(map(str, shape))) if shape is not None else None
        ),
        config_dir=config_dir,
        timeout=float(timeout),
        cache_dir=os.path.join(config_dir or ".", cache_dir) if cache_dir is not None else None,
    )


def load_settings(path: str | Path, cli_overrides: dict | None = None) -> Settings:
    """Settings for ``path``: its nearest ``[tool.qlint]``, then non-None CLI overrides."""
    pyproject = find_pyproject(Path(path).resolve())
    if pyproject is None:
        settings = Settings()
    else:
        table = _read_toml(str(pyproject))["tool"]["qlint"]
        settings = settings_from_table(table, str(pyproject), str(pyproject.parent))
    overrides = {k: v for k, v in (cli_overrides or {}).items() if v is not None}
    return replace(settings, **overrides) if overrides else settings


def _relative(path: str, base: str | None) -> str:
    try:
        return Path(path).resolve().relative_to(Path(base or os.getcwd()).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
