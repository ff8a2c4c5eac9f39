"""Finding and building the models of a file: import it (never as ``__main__``), discover, build on meta."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import io
import os
import sys
import typing
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

from qlint.config import Settings, config_relative
from qlint.diagnostics import Diagnostic, Related, Span
from qlint.model import frames as fr
from qlint.model import meta_fills
from qlint.model.peers import used_by_peers
from qlint.source.file import SourceFile

FACTORY_NAMES = ("build", "build_model", "create_model", "get_model", "make_model")
HOW_TO = (
    "tell qlint how to build it with a `# qlint: model = {expr}` comment in the file, "
    'or `models = ["{path}:{expr}"]` in [tool.qlint]'
)


@dataclass(frozen=True)
class ModelSpec:
    """A model qlint will build: how (``factory``), and where the file defines it."""

    name: str
    path: str
    line: int
    col: int
    factory: Callable[[], object]

    @property
    def span(self) -> Span:
        return Span(self.path, self.line, self.col)


class UserCodeError(Exception):
    """User code raised while qlint imported or built it; carries the QL001 diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings (torch's deprecation notices) and anything user code prints."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ("" when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def describe(exc: BaseException) -> str:
    first = first_line(exc)
    if len(first) > 160:  # long torch messages: keep the first sentence
        first = first.split(". ")[0].rstrip(".")
        first = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _module_name(path: str) -> tuple[str, str]:
    """(dotted module name, sys.path entry): package-aware, so relative imports work."""
    directory, filename = os.path.split(os.path.abspath(path))
    parts = [os.path.splitext(filename)[0]]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        parts.insert(0, package)
    return ".".join(parts), directory


def import_user_file(path: str) -> ModuleType:
    """Import ``path`` as a module with its folder on sys.path; QL001 (UserCodeError) if it raises."""
    name, root = _module_name(path)
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") != os.path.abspath(path):
        name = f"_qlint_user_{abs(hash(os.path.abspath(path)))}"
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(Diagnostic("QL001", f"cannot import {path}", Span(path, 1, 1)))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with quiet(), fr.recording():
            spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit
        sys.modules.pop(name, None)
        tb_frames = fr.frames_from_traceback(exc.__traceback__)
        here = next((f for f in tb_frames if f.path == os.path.abspath(path)), None)
        span = fr.locate([here], [path], Span(path, 1, 1))[0] if here else Span(path, 1, 1)
        hint = (
            "install the missing package or fix the import"
            if isinstance(exc, ImportError)
            else 'qlint imports the file as a module: keep scripts under `if __name__ == "__main__":`'
        )
        raise UserCodeError(Diagnostic("QL001", f"importing the file raised {describe(exc)}; {hint}", span)) from None
    return module


def find_models(
    path: str, settings: Settings, source: SourceFile | None = None, checked: tuple[str, ...] = ()
) -> tuple[list[ModelSpec], list[Diagnostic], ModuleType | None]:
    """The models of ``path``: pragmas, config, ``--model``; otherwise classes and factories.

    Classes that another file of the run (``checked``) imports are left to the models of that file.
    """
    source = source or SourceFile.read(path)
    try:
        module = import_user_file(path)
    except UserCodeError as err:
        return [], [err.diagnostic], None

    explicit = [_expr_spec(p.value, module, path, p.line, p.col) for p in source.pragma_values("model")]
    for expr in (*settings.models_for(path), *settings.model_exprs):
        explicit.append(_expr_spec(expr, module, path, _definition_line(source, expr), 1))
    if explicit:
        return explicit, [], module
    specs, diagnostics = _discover(module, source, path, used_by_peers(path, checked, FACTORY_NAMES))
    return specs, diagnostics, module


def _expr_spec(expr: str, module: ModuleType, path: str, line: int, col: int) -> ModelSpec:
    def factory() -> object:
        tree = ast.parse(expr.strip(), mode="eval")
        ast.increment_lineno(tree, line - 1)
        code = compile(tree, path, "eval")
        return eval(code, module.__dict__)  # noqa: S307 - the user's own pragma

    return ModelSpec(expr.strip(), path, line, col, factory)


def _definition_line(source: SourceFile, expr: str) -> int:
    head = expr.strip().split("(")[0].split(".")[-1]
    for number, text in enumerate(source.lines, 1):
        stripped = text.lstrip()
        if stripped.startswith((f"class {head}", f"def {head}")):
            return number
    return 1


def _needs_arguments(func: Callable) -> list[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [
        name
        for name, p in signature.parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _returns_module(func: Callable, namespace: dict) -> bool:
    import torch.nn as nn

    try:
        hint = typing.get_type_hints(func, globalns=namespace).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not hints
        hint = func.__annotations__.get("return") if hasattr(func, "__annotations__") else None
    return inspect.isclass(hint) and issubclass(hint, nn.Module)


def _is_factory(obj: object, name: str, module: ModuleType) -> bool:
    """A function of the file that builds a model with no arguments (by name or by return annotation)."""
    return (
        inspect.isfunction(obj)
        and obj.__module__ == module.__name__
        and (name in FACTORY_NAMES or _returns_module(obj, vars(module)))
        and not _needs_arguments(obj)
    )


@dataclass(frozen=True)
class Skipped:
    """A model class of the file that discovery did not build, and why."""

    name: str
    span: Span
    missing: tuple[str, ...]  # the constructor arguments it needs
    used_by: tuple[str, ...]  # the classes and factories of the file whose code names it

    @property
    def reason(self) -> str:
        needs = ", ".join(f"`{m}`" for m in self.missing)
        where = ", ".join(f"`{u}`" for u in self.used_by)
        return f"its constructor needs {needs}" + (f"; {where} names it" if where else "")

    def diagnostic(self, path: str, why: str = "") -> Diagnostic:
        expr = f"{self.name}({', '.join(f'{m}=...' for m in self.missing)})"
        return Diagnostic(
            "QL001",
            f"cannot build `{self.name}`: {self.reason}{why}; " + HOW_TO.format(expr=expr, path=config_relative(path)),
            self.span,
            model=self.name,
        )


def _discover(
    module: ModuleType, source: SourceFile, path: str, used_elsewhere: frozenset[str] = frozenset()
) -> tuple[list[ModelSpec], list[Diagnostic]]:
    specs, skipped = discover(module, source, path, used_elsewhere)
    return specs, [s.diagnostic(path) for s in skipped if not s.used_by]


def discover(
    module: ModuleType, source: SourceFile, path: str, used_elsewhere: frozenset[str] = frozenset()
) -> tuple[list[ModelSpec], list[Skipped]]:
    """The classes and factories of the file that build a model with no arguments, and every model
    class it skipped (its constructor needs arguments) with the classes and factories that name it:
    those are checked through them when they build one (``build_roots`` reports it otherwise).
    Classes another checked file uses (``used_elsewhere``) are left to that file's models."""
    import torch.nn as nn

    tree = ast.parse(source.text)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    users: dict[str, list[str]] = {}
    for cls in classes.values():
        for name in {n.id for n in ast.walk(cls) if isinstance(n, ast.Name) and n.id != cls.name}:
            users.setdefault(name, []).append(cls.name)
    # a class a factory builds (``return Wrapper(vgg16())``) is checked through that factory
    for fname, fn in functions.items():
        if _is_factory(getattr(module, fname, None), fname, module):
            for name in {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}:
                users.setdefault(name, []).append(f"{fname}()")
    specs: list[ModelSpec] = []
    skipped: list[Skipped] = []
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and name in classes:
            if obj.__module__ != module.__name__ or name in used_elsewhere:
                continue  # a class another checked file uses is checked through that file's models
            node = classes[name]
            missing = _needs_arguments(obj)
            if not missing:
                specs.append(ModelSpec(f"{name}()", path, node.lineno, node.col_offset + 1, obj))
            else:
                span = Span(path, node.lineno, node.col_offset + 1, node.lineno, node.col_offset + 7 + len(name))
                skipped.append(Skipped(name, span, tuple(missing), tuple(users.get(name, ()))))
        elif inspect.isfunction(obj) and name in functions and obj.__module__ == module.__name__:
            node = functions[name]
            if _is_factory(obj, name, module):
                specs.append(ModelSpec(f"{name}()", path, node.lineno, node.col_offset + 1, obj))
    return specs, skipped


def build(spec: ModelSpec, device: str = "meta"):
    """Build ``spec`` (on the meta device, falling back to CPU), in eval mode; QL001 if it fails."""
    import torch
    import torch.nn as nn

    def attempt(dev: str):
        fills = meta_fills.skipped_on_meta() if dev == "meta" else contextlib.nullcontext()
        with quiet(), fr.recording(), torch.device(dev), fills:
            return spec.factory()

    try:
        model = attempt(device)
    except KeyboardInterrupt:
        raise
    except BaseException as first:  # noqa: BLE001
        if device == "cpu":
            raise UserCodeError(_build_failure(spec, first)) from None
        try:
            model = attempt("cpu")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise UserCodeError(_build_failure(spec, exc)) from None
    if not isinstance(model, nn.Module):
        raise UserCodeError(
            Diagnostic(
                "QL001",
                f"`{spec.name}` returned {type(model).__name__}, not an nn.Module",
                spec.span,
                model=spec.name,
            )
        )
    with quiet():
        model.eval()
    return model


def _build_failure(spec: ModelSpec, exc: BaseException) -> Diagnostic:
    tb_frames = fr.frames_from_traceback(exc.__traceback__)
    raised = next((f for f in tb_frames if f.path == os.path.abspath(spec.path)), None)
    related = (Related(fr.locate([raised], [spec.path], spec.span)[0], "raised here"),) if raised else ()
    expr = spec.name
    return Diagnostic(
        "QL001",
        f"building `{spec.name}` raised {describe(exc)}; "
        + HOW_TO.format(expr=expr if "(" in expr else f"{expr}(...)", path=config_relative(spec.path)),
        spec.span,
        related=related,
        model=spec.name,
    )


def build_roots(
    path: str,
    settings: Settings,
    source: SourceFile | None = None,
    device: str = "meta",
    checked: tuple[str, ...] = (),
) -> tuple[list[tuple[ModelSpec, object]], list[Diagnostic]]:
    """Find, build and keep the root models of ``path``; QL001 diagnostics for what could not be built."""
    specs, found, module = find_models(path, settings, source, checked)
    built = []
    for spec in specs:
        try:
            built.append((spec, build(spec, device)))
        except UserCodeError as err:
            found.append(err.diagnostic)
    if module is not None and not _explicit(path, settings, source):
        elsewhere = used_by_peers(path, checked, FACTORY_NAMES)
        found += _uncovered(module, source or SourceFile.read(path), path, built, elsewhere)
    return select_roots(built), found


def _explicit(path: str, settings: Settings, source: SourceFile | None) -> bool:
    source = source or SourceFile.read(path)
    return bool(source.pragma_values("model") or settings.models_for(path) or settings.model_exprs)


def _uncovered(
    module: ModuleType, source: SourceFile, path: str, built: list, used_elsewhere: frozenset[str] = frozenset()
) -> list[Diagnostic]:
    """QL001 for each skipped class that a user names but no built model contains (nothing checked it)."""
    _, skipped = discover(module, source, path, used_elsewhere)
    inside = {type(m).__name__ for _, model in built for m in model.modules() if _defined_in(type(m), path)}
    unbuilt = {s.name for s in skipped}
    out = []
    for item in skipped:
        if not item.used_by or item.name in inside:
            continue
        if all(user in unbuilt for user in item.used_by):
            why = " and cannot be built either (its QL001): once it is, it checks this class too"
        else:
            why = ", but no model qlint built contains one"
        out.append(item.diagnostic(path, why))
    return out


def select_roots(built: list[tuple[ModelSpec, object]]) -> list[tuple[ModelSpec, object]]:
    """Drop models whose class is a submodule of another found model: they are checked through it.

    A class of the checked file found twice (as a class and through a factory) is checked once;
    library classes (two factories building different torchvision ResNets) are all kept. A model is
    dropped only for another model holding a submodule of its class with at least its module types, so
    a model that nests its own class (``QuantWrapper(m)`` where ``m`` holds a ``QuantWrapper``) is kept.
    """
    kinds = [_module_types(model) for _, model in built]
    roots, seen = [], set()
    for i, (spec, model) in enumerate(built):
        cls = type(model)
        if any(j != i and _holds(other, cls, kinds[i]) for j, (_, other) in enumerate(built)):
            continue
        if _defined_in(cls, spec.path):
            if cls in seen:
                continue
            seen.add(cls)
        roots.append((spec, model))
    return roots


def _module_types(model: object) -> frozenset[type]:
    return frozenset(type(m) for m in model.modules())


def _holds(model: object, cls: type, kinds: frozenset[type]) -> bool:
    """``model`` has a submodule of class ``cls`` that contains at least the module types ``kinds``."""
    return any(type(m) is cls and _module_types(m) >= kinds for m in list(model.modules())[1:])


def _defined_in(cls: type, path: str) -> bool:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    return bool(file) and os.path.abspath(file) == os.path.abspath(path)
