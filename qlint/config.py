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


KNOWN_KEYS = (
    "select",
    "extend-select",
    "ignore",
    "extend-ignore",
    "per-file-ignores",
    "backend",
    "models",
    "input-shape",
    "timeout",
    "cache-dir",
    "flow",
    "quantizer",
    "target-cpu",
)
DEFAULT_TIMEOUT = 120.0  # seconds a file's import, build and trace may take before it is QL001
BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
FLOWS = ("eager", "pt2e")
QUANTIZERS = ("x86", "arm", "xnnpack")
# the CPU the model is deployed on: "host" reads this machine; x86-avx2 is any x86 CPU without AVX-512 VNNI
TARGET_CPUS = ("host", "x86-vnni", "x86-avx2", "arm")


class ConfigError(Exception):
    """Bad configuration: qlint exits with code 2 and this message."""


@dataclass(frozen=True)
class Settings:
    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()  # added to ``select`` (with no ``select``: every rule is on already)
    ignore: tuple[str, ...] = ()
    extend_ignore: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    backend: str | None = None
    models: tuple[str, ...] = ()
    model_exprs: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None
    input_shape_from_cli: bool = False  # --input-shape beats a file's `# qlint: input-shape` pragma
    no_graph: bool = False
    timeout: float = DEFAULT_TIMEOUT  # per file (``--timeout``, ``timeout``): then QL001 and the run goes on
    no_cache: bool = False  # ``--no-cache``: neither read nor write the result cache
    cache_dir: str | None = None  # ``cache-dir``, resolved against the pyproject.toml holding it
    jobs: int | None = None  # ``--jobs N``: files checked in parallel (None: the cores)
    target_cpu: str = "host"  # ``--target-cpu``, ``target-cpu``: the deployment CPU (one of TARGET_CPUS)
    config_dir: str | None = None  # the folder of the file holding [tool.qlint]: config paths are relative to it
    config_file: str | None = None  # that file (pyproject.toml, or ``--config PATH``)
    flow: str | None = None  # ``--flow`` / ``flow``: eager or pt2e (None: PT2E for a file calling prepare_pt2e)
    quantizer: str | None = None  # ``--quantizer`` / ``quantizer`` (None: the one the file builds, else the host's)

    @classmethod
    def default(cls) -> Settings:
        return cls()

    def selection(self, path: str) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """(select, ignore) prefixes for ``path``: select/ignore, then per-file-ignores.

        The codes they enable are the rules' business (``qlint.rules.registry.select_codes``).
        """
        select = None if self.select is None else (*self.select, *self.extend_select)
        ignore = [*self.ignore, *self.extend_ignore]
        rel = _relative(path, self.config_dir)
        for pattern, codes in self.per_file_ignores.items():
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(Path(rel).name, pattern):
                ignore.extend(codes)
        return select, tuple(ignore)

    def selectors(self) -> dict[str, tuple[str, ...]]:
        """Every rule selector of these settings, by the key that holds it (for validation)."""
        out = {
            "select": self.select or (),
            "extend-select": self.extend_select,
            "ignore": self.ignore,
            "extend-ignore": self.extend_ignore,
        }
        for pattern, codes in self.per_file_ignores.items():
            out[f"per-file-ignores {pattern!r}"] = codes
        return out

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


def check_choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ConfigError naming them."""
    if value not in choices:
        raise ConfigError(f"unknown {key} {value!r}: expected one of {', '.join(choices)}")
    return str(value)


def check_target_cpu(name: str) -> str:
    if name not in TARGET_CPUS:
        raise ConfigError(f"unknown target CPU {name!r}: expected one of {', '.join(TARGET_CPUS)}")
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
        raise ConfigError(f"{source}: [tool.qlint] timeout must be a number of seconds > 0")
    cache_dir = table.get("cache-dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise ConfigError(f"{source}: [tool.qlint] cache-dir must be a path")
    flow, quantizer = table.get("flow"), table.get("quantizer")
    try:
        flow = check_choice("flow", flow, FLOWS) if flow is not None else None
        quantizer = check_choice("quantizer", quantizer, QUANTIZERS) if quantizer is not None else None
    except ConfigError as exc:
        raise ConfigError(f"{source}: [tool.qlint] {exc}") from None
    target_cpu = table.get("target-cpu", "host")
    if target_cpu not in TARGET_CPUS:
        raise ConfigError(f"{source}: [tool.qlint] target-cpu must be one of {', '.join(TARGET_CPUS)}")
    base = Path(config_dir or ".")
    models = str_list("models")
    for item in models:
        file_part, _, expr = item.partition(":")
        if not expr.strip():
            raise ConfigError(f"{source}: [tool.qlint] models entry {item!r} must be 'path.py:EXPR' ('net.py:Net(3)')")
        if not (base / file_part).is_file():
            raise ConfigError(
                f"{source}: [tool.qlint] models entry {item!r} names no file "
                f"({file_part!r} is resolved against {base.as_posix()}/)"
            )
    return Settings(
        select=str_list("select") if "select" in table else None,
        extend_select=str_list("extend-select"),
        ignore=str_list("ignore"),
        extend_ignore=str_list("extend-ignore"),
        per_file_ignores={k: tuple(v) for k, v in pfi.items()},
        backend=check_backend(backend) if backend is not None else None,
        models=models,
        input_shape=(
            parse_shape(shape if isinstance(shape, str) else "x".join(map(str, shape))) if shape is not None else None
        ),
        timeout=float(timeout),
        cache_dir=str(base / cache_dir) if cache_dir is not None else None,
        target_cpu=target_cpu,
        config_dir=config_dir,
        config_file=source,
        flow=flow,
        quantizer=quantizer,
    )


# command-line overrides that extend the configured value instead of replacing it
_EXTENDING = ("extend_select", "extend_ignore")


def load_settings(path: str | Path, cli_overrides: dict | None = None) -> Settings:
    """Settings for ``path``: its nearest ``[tool.qlint]`` (or the file of the ``config`` override,
    like ``--config PATH``), then the non-None command-line overrides, which win over the config.
    """
    overrides = {k: v for k, v in (cli_overrides or {}).items() if v is not None}
    config = overrides.pop("config", None)
    if config is not None:
        settings = settings_from_file(Path(config))
    else:
        pyproject = find_pyproject(Path(path).resolve())
        if pyproject is None:
            settings = Settings()
        else:
            table = _read_toml(str(pyproject))["tool"]["qlint"]
            settings = settings_from_table(table, str(pyproject), str(pyproject.parent))
    for key in _EXTENDING:
        if key in overrides:
            overrides[key] = (*getattr(settings, key), *overrides[key])
    return replace(settings, **overrides) if overrides else settings


def settings_from_file(config: Path) -> Settings:
    """``--config PATH``: a pyproject.toml's ``[tool.qlint]``, or a toml file holding the table itself."""
    if not config.is_file():
        raise ConfigError(f"{config}: --config names no file")
    data = _read_toml(str(config.resolve()))
    table = data["tool"]["qlint"] if "qlint" in data.get("tool", {}) else data
    if config.name == "pyproject.toml" and table is data:
        raise ConfigError(f"{config}: no [tool.qlint] table")
    return settings_from_table(table, str(config), str(config.resolve().parent))


def config_relative(path: str) -> str:
    """``path`` as a ``models = [...]`` entry of the configuration that applies to it: relative to the
    folder of its pyproject.toml with [tool.qlint], or, without one, to the current folder."""
    pyproject = find_pyproject(Path(path).resolve())
    return _relative(path, str(pyproject.parent) if pyproject else None)


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
