"""PT2E source rules: imports that moved to torchao (QL505), the removed capture APIs (QL502),
``.eval()`` on an exported model (QL501), torch.ao and torchao pieces mixed (QL503) and a converted
model run without ``torch.compile`` (QL509). Whether an import resolves is asked of the installed
packages (``qlint.model.pt2e_imports``); user code never runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst
from libcst.helpers import get_full_name_for_node

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Severity
from qlint.model import pt2e_imports
from qlint.model.pt2e_quiet import quiet_imports
from qlint.rules.base import Basis, EditsFound, FixAvailability, FixItems, Flow, Invalid, Rule, Valid, precomputed_fixes
from qlint.source.pipeline import PipelineScan, bodies, callee, callee_attr, import_aliases, qualified, receiver

EVAL_HELPERS = {"eval": "move_exported_model_to_eval", "train": "move_exported_model_to_train"}
HELPER_MODULE = "torchao.quantization.pt2e"
PT2E_CALLS = ("prepare_pt2e", "prepare_qat_pt2e", "convert_pt2e")
REMOVED_CAPTURE = ("torch._export.capture_pre_autograd_graph", "torch.export.export_for_training")


@dataclass(frozen=True)
class ImportLine:
    """One import statement: its node, its module (``from X``, else None) and its names."""

    statement: cst.SimpleStatementLine
    node: cst.Import | cst.ImportFrom
    indent: str


def _imports(index) -> Iterator[ImportLine]:
    """Every import statement line of the file (module level, functions, classes, blocks)."""
    found: list[ImportLine] = []

    class Visitor(cst.CSTVisitor):
        def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
            if len(node.body) == 1 and isinstance(node.body[0], (cst.Import, cst.ImportFrom)):
                col = index.span(node).col
                found.append(ImportLine(node, node.body[0], " " * (col - 1)))

    index.module.visit(Visitor())
    return iter(found)


def may_have_moved(module: str, name: str | None = None) -> bool:
    """A move of ``pt2e_imports.MOVES`` applies to the import: only then are packages imported to ask."""
    for move in pt2e_imports.MOVES:
        if move.old_name is None and (module == move.old_module or module.startswith(move.old_module + ".")):
            return True
        if move.old_name is not None and move.old_module == module and move.old_name == name:
            return True
    return False


def _alias_text(name: str, asname: cst.AsName | None) -> str:
    alias = get_full_name_for_node(asname.name) if asname is not None else None
    return f"{name} as {alias}" if alias and alias != name else name


def _line_edit(index, line: ImportLine, text: str) -> Edit:
    """Replace the whole statement line (with its newline) by ``text`` lines (none: delete it)."""
    span = index.span(line.statement)
    content = "".join(f"{line.indent}{t}\n" for t in text.splitlines())
    return Edit(content, (span.line, 1), (span.end_line + 1, 1))


def _rewrite_from(module: str, node: cst.ImportFrom, only: set[str] | None = None) -> tuple[str, list[str]] | None:
    """New import text for ``from module import ...``: each moved name at its home (names of removed
    APIs dropped). ``only`` limits the names moved. Returns (text, moved names) or None if none moved
    or a home does not resolve."""
    groups: dict[str, list[str]] = {}
    moved: list[str] = []
    for alias in node.names if not isinstance(node.names, cst.ImportStar) else ():
        name = get_full_name_for_node(alias.name) or ""
        asked = (only is None or name in only) and may_have_moved(module, name)
        home = pt2e_imports.moved_import(module, name) if asked else None
        if home is None and only is not None and name in only:
            home = pt2e_imports.new_home(module, name)
        if home is None:
            groups.setdefault(module, []).append(_alias_text(name, alias.asname))
            continue
        if home.resolves is not True:
            return None
        moved.append(name)
        if not home.replacement:
            groups.setdefault(home.module, []).append(_alias_text(name, alias.asname))
    if not moved:
        return None
    text = "\n".join(f"from {m} import {', '.join(names)}" for m, names in groups.items())
    return text, moved


@dataclass(frozen=True)
class MovedImport:
    """QL505's facts: the import's old path and each name's new home."""

    module: str
    names: tuple[str, ...]
    homes: tuple[str, ...]


class MovedPt2eImport(Rule):
    """## What it does
    Reports an import (`from X import Y` or `import X`) that does not resolve in the installed
    torch / torchao / executorch but has a known new home: `torch.ao.quantization.quantize_pt2e`
    and `torch.ao.quantization.quantizer.*` (moved to torchao in torch 2.11),
    `from torchao.quantization.pt2e import prepare_pt2e` (never re-exported there: it lives in
    `torchao.quantization.pt2e.quantize_pt2e`), and the removed `capture_pre_autograd_graph`.
    Whether a name resolves is asked of the installed packages (`importlib`), never of a table;
    the checked file is not imported.

    ## Why is this bad?
    The script stops at its first line with `ModuleNotFoundError` or `ImportError`, and the
    tutorials that still show the old paths do not say where the names went.

    ## Fix safety
    Safe: the import is rewritten to the new home, which qlint checked resolves in the installed
    packages (names that did not move stay where they were). An import of a removed API
    (`capture_pre_autograd_graph`) is deleted; QL502 rewrites its calls. `import a.b.c` without
    `as` is reported but not rewritten (it binds `a`).

    ## References
    - [pytorch/pytorch#169151](https://github.com/pytorch/pytorch/issues/169151) (PT2E moved to torchao in torch 2.11)
    - [pytorch/ao: PT2E quantization](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_ptq.html)
    - issue 11 (`from torchao.quantization.pt2e import prepare_pt2e` fails)
    """

    code = "QL505"
    name = "moved-pt2e-import"
    severity = Severity.ERROR
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE,)
    summary = "an import of a PT2E name that moved (to torchao) and does not resolve here"
    fix_availability = FixAvailability.ALWAYS
    triggers = ("torch.ao.quantization", "torchao", "torch._export", "export_for_training")
    examples = (
        Invalid(
            """\
import torch
from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e import prepare_qat_pt2e
""",
            lines=(2, 3),
            fixed="""\
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
""",
        ),
        Valid(
            """\
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer
"""
        ),
    )

    def check_source(self, index) -> Iterator[Diagnostic]:
        with quiet_imports():
            found = list(self._check(index))
        return iter(found)

    def _check(self, index) -> Iterator[Diagnostic]:
        for line in _imports(index):
            node = line.node
            if isinstance(node, cst.ImportFrom):
                if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
                    continue
                module = get_full_name_for_node(node.module) or ""
                if module.split(".")[0] not in pt2e_imports.IMPORTABLE:
                    continue
                names = [get_full_name_for_node(a.name) or "" for a in node.names]
                if not any(may_have_moved(module, name) for name in names):
                    continue  # nothing is imported to answer (a --no-graph check stays torch-free)
                homes = [(name, pt2e_imports.moved_import(module, name)) for name in names]
                homes = [(n, h) for n, h in homes if h is not None]
                if not homes:
                    continue
                rewrite = _rewrite_from(module, node)
                fix = None
                if rewrite is not None:
                    title = "Import from the new home" if rewrite[0] else "Remove the import of the removed API"
                    fix = Fix(Applicability.SAFE, title, (_line_edit(index, line, rewrite[0]),))
                where = ", ".join(
                    f"`{n}`: {h.replacement and 'removed, use `' + h.replacement + '`' or 'now `' + h.statement + '`'}"
                    for n, h in homes
                )
                message = f"`from {module} import ...` does not resolve here ({homes[0][1].note}); {where}"
                yield index.diagnostic(self.code, message, line.statement, EditsFound(fix))
            else:
                for alias in node.names:
                    module = get_full_name_for_node(alias.name) or ""
                    if module.split(".")[0] not in pt2e_imports.IMPORTABLE or not may_have_moved(module):
                        continue
                    home = pt2e_imports.moved_import(module)
                    if home is None or home.replacement:
                        continue
                    fix = None
                    if alias.asname is not None and len(node.names) == 1 and home.resolves:
                        text = f"import {_alias_text(home.module, alias.asname)}"
                        fix = Fix(Applicability.SAFE, "Import from the new home", (_line_edit(index, line, text),))
                    message = f"`import {module}` does not resolve here ({home.note}); now `{home.statement}`"
                    yield index.diagnostic(self.code, message, line.statement, EditsFound(fix))

    def fix(self, ctx, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


class RemovedCaptureApi(Rule):
    """## What it does
    Reports a call of `capture_pre_autograd_graph` (from `torch._export`) or
    `torch.export.export_for_training`, the capture APIs of the torch 2.1-2.10 PT2E tutorials.

    ## Why is this bad?
    Both were removed from torch (`capture_pre_autograd_graph` in December 2024,
    `export_for_training` in 2.11): the script fails with `ImportError` or `AttributeError`.
    `torch.export.export(model, args).module()` captures the same pre-dispatch graph that
    `prepare_pt2e` expects.

    ## Fix safety
    Safe: `capture_pre_autograd_graph(model, args)` becomes `torch.export.export(model, args).module()`
    and `torch.export.export_for_training(...)` becomes `torch.export.export(...)` (the arguments are
    kept). Offered when the file imports `torch`.

    ## References
    - [pytorch/pytorch#143426](https://github.com/pytorch/pytorch/pull/143426) (`capture_pre_autograd_graph` removed)
    - [torch.export](https://pytorch.org/docs/stable/export.html)
    """

    code = "QL502"
    name = "removed-capture-api"
    severity = Severity.ERROR
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE,)
    summary = "capture_pre_autograd_graph or torch.export.export_for_training (removed from torch)"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe, when the file imports torch"
    triggers = ("capture_pre_autograd_graph", "export_for_training")
    examples = (
        Invalid(
            """\
import torch

model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
args = (torch.randn(1, 4),)
exported = torch._export.capture_pre_autograd_graph(model, args)
trained = torch.export.export_for_training(model, args).module()
""",
            lines=(5, 6),
            fixed="""\
import torch

model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
args = (torch.randn(1, 4),)
exported = torch.export.export(model, args).module()
trained = torch.export.export(model, args).module()
""",
        ),
        Valid(
            """\
import torch

model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
exported = torch.export.export(model, (torch.randn(1, 4),)).module()
"""
        ),
    )

    def check_source(self, index) -> Iterator[Diagnostic]:
        aliases = import_aliases(index.module)
        has_torch = aliases.get("torch") == "torch"
        for site in index.calls:
            full = qualified(callee(site.node), aliases)
            if full not in REMOVED_CAPTURE:
                continue
            call = site.node
            fix = None
            if has_torch:
                span = index.span(call)
                args = index.module.code_for_node(call).partition("(")[2].rpartition(")")[0]
                suffix = ".module()" if full.endswith("capture_pre_autograd_graph") else ""
                text = f"torch.export.export({args}){suffix}"
                fix = Fix(Applicability.SAFE, f"Use `{text}`", (Edit(text, (span.line, span.col), span.end),))
            message = f"`{full.rpartition('.')[2]}` was removed from torch; use `{pt2e_imports.CAPTURE}`"
            yield index.diagnostic(self.code, message, call, EditsFound(fix))

    def fix(self, ctx, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


def _exported_by(value: cst.BaseExpression, aliases: dict[str, str]) -> str | None:
    """What makes ``value`` an exported PT2E module: ``torch.export.export(...).module()``,
    ``prepare_pt2e(...)``, ``prepare_qat_pt2e(...)``, ``convert_pt2e(...)`` or a removed capture call."""
    if not isinstance(value, cst.Call):
        return None
    inner = receiver(value)
    if callee_attr(value) == "module" and isinstance(inner, cst.Call):
        if qualified(callee(inner), aliases) in ("torch.export.export", *REMOVED_CAPTURE):
            return "torch.export.export(...).module()"
    if callee_attr(value) in PT2E_CALLS:
        return f"{callee_attr(value)}(...)"
    if qualified(callee(value), aliases) == REMOVED_CAPTURE[0]:
        return "capture_pre_autograd_graph(...)"
    return None


@dataclass(frozen=True)
class EvalOnExported:
    """QL501's facts: the model's name, the method called and the module that made it."""

    model: str
    method: str
    made_by: str


class _ExportedModels(PipelineScan):
    """Names bound to an exported / prepared / converted PT2E module, and the ``.eval()``/``.train()`` on them."""

    def __init__(self, index, aliases: dict[str, str]):
        super().__init__(index)
        self.aliases = aliases
        self.made_by: dict[str, str] = {}
        self.found: list[tuple[cst.Call, EvalOnExported]] = []

    def on_call(self, call: cst.Call) -> Iterator[Diagnostic]:
        target = receiver(call)
        if callee_attr(call) in EVAL_HELPERS and not call.args and isinstance(target, cst.Name):
            if target.value in self.made_by:
                self.found.append((call, EvalOnExported(target.value, callee_attr(call), self.made_by[target.value])))
        return iter(())

    def on_assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> Iterator[Diagnostic]:
        if isinstance(target, cst.Name):
            made = _exported_by(value, self.aliases)
            if made is not None:
                self.made_by[target.value] = made
            elif not (isinstance(value, cst.Name) and value.value in self.made_by):
                self.made_by.pop(target.value, None)
            else:
                self.made_by[target.value] = self.made_by[value.value]
        return iter(())


def _import_insertion(index, statement: str) -> Edit:
    """Insert ``statement`` after the last module-level import (at the top when there is none)."""
    line = 1
    for node in index.module.body:
        if isinstance(node, cst.SimpleStatementLine) and isinstance(node.body[0], (cst.Import, cst.ImportFrom)):
            line = index.span(node).end_line + 1
    return Edit(statement + "\n", (line, 1), (line, 1))


class EvalOnExportedModel(Rule):
    """## What it does
    Follows each name bound to `torch.export.export(...).module()`, `prepare_pt2e(...)`,
    `prepare_qat_pt2e(...)` or `convert_pt2e(...)` through the module body and each function body,
    in statement order, and reports `.eval()` or `.train()` called on it.

    ## Why is this bad?
    An exported module is a graph: batch norm and dropout were captured in the mode the model had
    at export, and `.eval()` / `.train()` no longer change them. torch makes the exported module's
    `.eval()` and `.train()` raise (`NotImplementedError: Calling eval() is not supported yet.`,
    torch 2.14); torchao's `move_exported_model_to_eval` /
    `move_exported_model_to_train` rewrite the batch-norm and dropout nodes instead.

    ## Fix safety
    Safe: `m.eval()` becomes `move_exported_model_to_eval(m)` (`.train()`:
    `move_exported_model_to_train(m)`), imported from `torchao.quantization.pt2e`.

    ## References
    - [torchao: PT2E quantization, "Calibration"](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_ptq.html)
    """

    code = "QL501"
    name = "eval-on-exported-model"
    severity = Severity.ERROR
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE,)
    summary = ".eval()/.train() on an exported, prepared or converted PT2E module"
    fix_availability = FixAvailability.ALWAYS
    triggers = ("eval", "train")
    examples = (
        Invalid(
            """\
import torch
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout()).eval()
exported = torch.export.export(model, (torch.randn(1, 4),)).module()
exported.eval()
prepared = prepare_pt2e(exported, quantizer)
prepared.eval()
""",
            lines=(6, 8),
            fixed="""\
import torch
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
from torchao.quantization.pt2e import move_exported_model_to_eval

model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout()).eval()
exported = torch.export.export(model, (torch.randn(1, 4),)).module()
move_exported_model_to_eval(exported)
prepared = prepare_pt2e(exported, quantizer)
move_exported_model_to_eval(prepared)
""",
        ),
        Valid(
            """\
import torch
from torchao.quantization.pt2e import move_exported_model_to_eval

model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout())
model.eval()
exported = torch.export.export(model, (torch.randn(1, 4),)).module()
move_exported_model_to_eval(exported)
"""
        ),
    )

    def check_source(self, index) -> Iterator[Diagnostic]:
        aliases = import_aliases(index.module)
        imported = set(aliases)
        for body in bodies(index):
            scan = _ExportedModels(index, aliases)
            list(scan.scan(body))
            for call, facts in scan.found:
                helper = EVAL_HELPERS[facts.method]
                span = index.span(call)
                edits = [Edit(f"{helper}({facts.model})", (span.line, span.col), span.end)]
                if helper not in imported:
                    imported.add(helper)
                    edits.append(_import_insertion(index, f"from {HELPER_MODULE} import {helper}"))
                fix = Fix(Applicability.SAFE, f"Use `{helper}({facts.model})`", tuple(edits))
                message = (
                    f"`{facts.model}.{facts.method}()` on a module made by `{facts.made_by}`: exported modules do not "
                    f"switch batch norm and dropout this way; use `{helper}({facts.model})`"
                )
                yield index.diagnostic(self.code, message, call, EditsFound(fix))

    def fix(self, ctx, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


def _package(module: str) -> str | None:
    """``torch.ao`` or ``torchao`` for a PT2E module path, else None."""
    if module == "torch.ao" or module.startswith("torch.ao."):
        return "torch.ao"
    if module == "torchao" or module.startswith("torchao."):
        return "torchao"
    return None


def _pt2e_piece(module: str, name: str) -> str | None:
    """``prepare`` for the PT2E entry points, ``quantizer`` for quantizers and quantization specs."""
    if name in PT2E_CALLS:
        return "prepare"
    if ".quantizer" in module or name.endswith(("Quantizer", "QuantizationSpec", "QuantizationConfig")):
        return "quantizer"
    if "quantization_config" in name or name in ("QuantizationSpecBase", "SharedQuantizationSpec"):
        return "quantizer"
    return None


class MixedAoTorchao(Rule):
    """## What it does
    Reports a file that takes the PT2E entry points (`prepare_pt2e`, `prepare_qat_pt2e`,
    `convert_pt2e`) from one package and its quantizers or quantization specs from the other:
    `torch.ao.quantization...` with `torchao.quantization.pt2e...`. Each `from torch.ao... import`
    statement that holds a PT2E piece is reported.

    ## Why is this bad?
    The two packages have separate annotation classes; torchao's `prepare_pt2e` refuses a model
    annotated by a torch.ao quantizer (`Cannot be prepared using both torch.ao and torchao`, in
    `torchao/quantization/pt2e/quantize_pt2e.py`). Since torch 2.11
    the torch.ao side does not exist any more (QL505 reports the import too).

    ## Fix safety
    Safe: the torch.ao import is rewritten to the torchao home of each name, when that home
    resolves in the installed torchao.

    ## References
    - [torchao: PT2E quantization](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_ptq.html)
    - issue 11 (PT2E lives only in torchao since torch 2.11)
    """

    code = "QL503"
    name = "mixed-ao-torchao"
    severity = Severity.ERROR
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE,)
    summary = "PT2E quantizers/specs from one of torch.ao and torchao, prepare_pt2e from the other"
    fix_availability = FixAvailability.SOMETIMES
    fix_title = "safe, when each name's torchao home resolves"
    triggers = ("torch.ao", "torchao")
    examples = (
        Invalid(
            """\
from torch.ao.quantization.quantizer.x86_inductor_quantizer import X86InductorQuantizer
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
""",
            lines=(1,),
            fixed="""\
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
""",
        ),
        Valid(
            """\
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
"""
        ),
    )

    def check_source(self, index) -> Iterator[Diagnostic]:
        with quiet_imports():
            found = list(self._check(index))
        return iter(found)

    def _check(self, index) -> Iterator[Diagnostic]:
        pieces: list[tuple[ImportLine, str, str, set[str], set[str]]] = []  # line, module, package, kinds, names
        for line in _imports(index):
            node = line.node
            if not isinstance(node, cst.ImportFrom) or node.module is None or isinstance(node.names, cst.ImportStar):
                continue
            module = get_full_name_for_node(node.module) or ""
            package = _package(module)
            if package is None:
                continue
            names = {get_full_name_for_node(a.name) or "" for a in node.names}
            mine = {n for n in names if _pt2e_piece(module, n)}
            if mine:
                pieces.append((line, module, package, {_pt2e_piece(module, n) or "" for n in mine}, mine))
        by_package: dict[str, set[str]] = {}
        for _, _, package, kinds, _ in pieces:
            by_package.setdefault(package, set()).update(kinds)
        ao, tao = by_package.get("torch.ao", set()), by_package.get("torchao", set())
        if not (("prepare" in ao and "quantizer" in tao) or ("quantizer" in ao and "prepare" in tao)):
            return
        for line, module, package, _, names in pieces:
            if package != "torch.ao":
                continue
            rewrite = _rewrite_from(module, line.node, only=names)
            fix = None
            if rewrite is not None and rewrite[0]:
                fix = Fix(Applicability.SAFE, "Import from torchao", (_line_edit(index, line, rewrite[0]),))
            listed = ", ".join(f"`{n}`" for n in sorted(names))
            message = (
                f"{listed} from `{module}` while other PT2E pieces come from torchao: torchao refuses "
                '"both torch.ao and torchao"; import all from torchao'
            )
            yield index.diagnostic(self.code, message, line.statement, EditsFound(fix))

    def fix(self, ctx, items: FixItems) -> dict[int, Fix]:
        return precomputed_fixes(items)


class _ConvertedCalls(PipelineScan):
    """Names bound to ``convert_pt2e(...)``, the calls of them, and the names given to ``torch.compile``."""

    def __init__(self, index, aliases: dict[str, str]):
        super().__init__(index)
        self.aliases = aliases
        self.converted: set[str] = set()
        self.compiled: set[str] = set()
        self.calls: list[tuple[cst.Call, str]] = []

    def on_call(self, call: cst.Call) -> Iterator[Diagnostic]:
        func = call.func
        if qualified(callee(call), self.aliases) == "torch.compile":
            self.compiled.update(a.value.value for a in call.args if isinstance(a.value, cst.Name))
        elif isinstance(func, cst.Name) and func.value in self.converted:
            self.calls.append((call, func.value))
        elif callee_attr(call) == "forward" and isinstance(receiver(call), cst.Name):
            name = receiver(call).value
            if name in self.converted:
                self.calls.append((call, name))
        return iter(())

    def on_assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> Iterator[Diagnostic]:
        if isinstance(target, cst.Name):
            if isinstance(value, cst.Call) and callee_attr(value) == "convert_pt2e":
                self.converted.add(target.value)
            elif isinstance(value, cst.Name) and value.value in self.converted:
                self.converted.add(target.value)
            else:
                self.converted.discard(target.value)
        return iter(())


class UncompiledPt2eModel(Rule):
    """## What it does
    Follows each name bound to `convert_pt2e(...)` through the module body and each function body
    and reports a call of it (`q(x)`, `q.forward(x)`) when the same body never hands it to
    `torch.compile`. Files that build an XNNPACK quantizer (lowered with executorch, not Inductor)
    are not reported.

    ## Why is this bad?
    `convert_pt2e` returns a reference model: quantize / dequantize nodes around float ops. Only
    Inductor (`torch.compile`) fuses those patterns into int8 kernels on x86; run as is, the model
    computes in float with extra quantize and dequantize steps, usually slower than the float model.
    It is correct, so nothing warns.

    ## Fix safety
    No automatic fix: compiling takes time and changes how the script runs. Wrap the converted
    model: `with torch.no_grad(): compiled = torch.compile(converted)` and call `compiled`.

    ## References
    - [torchao: PT2E quantization with X86 backend through Inductor](https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_x86_inductor.html) ("lower into Inductor")
    - issue 11 (int8 slower than float because the converted model was not compiled)
    """

    code = "QL509"
    name = "uncompiled-pt2e-model"
    severity = Severity.WARNING
    flows = (Flow.PT2E,)
    basis = (Basis.SOURCE,)
    summary = "the result of convert_pt2e run for inference without torch.compile"
    triggers = ("convert_pt2e",)
    examples = (
        Invalid(
            """\
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e


def infer(prepared, batch):
    converted = convert_pt2e(prepared)
    with torch.no_grad():
        return converted(batch)
""",
            lines=(8,),
        ),
        Valid(
            """\
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e


def infer(prepared, batch):
    converted = convert_pt2e(prepared)
    with torch.no_grad():
        compiled = torch.compile(converted)
        return compiled(batch)
"""
        ),
    )

    def check_source(self, index) -> Iterator[Diagnostic]:
        if "XNNPACKQuantizer" in index.source.text or "executorch" in index.source.text:
            return
        aliases = import_aliases(index.module)
        for body in bodies(index):
            scan = _ConvertedCalls(index, aliases)
            list(scan.scan(body))
            for call, name in scan.calls:
                if name in scan.compiled:
                    continue
                message = (
                    f"`{name}` (from `convert_pt2e`) runs without `torch.compile`: reference int8 ops, "
                    f"usually slower than float; call `torch.compile({name})` under `torch.no_grad()`"
                )
                yield index.diagnostic(self.code, message, call)
