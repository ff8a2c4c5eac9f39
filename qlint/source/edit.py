"""The user's file as fixers see it: libcst tree with positions and parents, and edit builders.

Edits are text replacements with 1-based (line, col) start/end, columns counted in characters,
ends exclusive (the convention of ``qlint.diagnostics``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from qlint.diagnostics import Edit, Span


@dataclass(frozen=True)
class ClassSite:
    node: cst.ClassDef
    name: str
    line: int


class FileText:
    """Parsed text of one file plus the queries fixers share."""

    def __init__(self, path: str, text: str, wrapper: MetadataWrapper | None = None):
        """``wrapper``: the file's parsed tree, shared with the SourceIndex (parsed here when None)."""
        self.path = path
        self.text = text
        self.wrapper = wrapper or MetadataWrapper(cst.parse_module(text), unsafe_skip_copy=True)
        self.module = self.wrapper.module
        self.positions = self.wrapper.resolve(PositionProvider)
        self.parents = self.wrapper.resolve(ParentNodeProvider)
        self.lines = text.splitlines(keepends=True)

    # ---- positions -------------------------------------------------------------------------

    def start(self, node: cst.CSTNode) -> tuple[int, int]:
        pos = self.positions[node].start
        return pos.line, pos.column + 1

    def end(self, node: cst.CSTNode) -> tuple[int, int]:
        pos = self.positions[node].end
        return pos.line, pos.column + 1

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def indent_of(self, node: cst.CSTNode) -> str:
        line, col = self.start(node)
        return self.lines[line - 1][: col - 1]

    def replace(self, node: cst.CSTNode, content: str) -> Edit:
        return Edit(content, self.start(node), self.end(node))

    def insert_lines_after(self, node: cst.CSTNode, lines: list[str], indent: str | None = None) -> Edit:
        """Whole lines inserted after the (last line of the) statement ``node``."""
        indent = self.indent_of(node) if indent is None else indent
        body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
        end_line = self.end(node)[0]
        if end_line >= len(self.lines) and not self.text.endswith("\n"):
            return Edit(
                "\n" + body.rstrip("\n"),
                (end_line, len(self.lines[-1]) + 1),
                (end_line, len(self.lines[-1]) + 1),
            )
        return Edit(body, (end_line + 1, 1), (end_line + 1, 1))

    def insert_lines_before(self, node: cst.CSTNode, lines: list[str], indent: str | None = None) -> Edit:
        indent = self.indent_of(node) if indent is None else indent
        line = self.start(node)[0]
        return Edit("".join(f"{indent}{text}\n" if text else "\n" for text in lines), (line, 1), (line, 1))

    def delete_line_of(self, node: cst.CSTNode) -> Edit | None:
        """Delete the whole line(s) of a statement, when nothing else shares them."""
        (line, col), (end_line, end_col) = self.start(node), self.end(node)
        before = self.lines[line - 1][: col - 1]
        after = self.lines[end_line - 1][end_col - 1 :]
        if before.strip() or after.strip().split("#")[0].strip():
            return None
        return Edit("", (line, 1), (end_line + 1, 1))

    # ---- lookups ---------------------------------------------------------------------------

    def nodes_at(self, span: Span, types: tuple[type, ...]) -> list[cst.CSTNode]:
        """Nodes of ``types`` starting at the span's start; exact end matches first, then largest."""
        if span.path and span.line is None:
            return []
        found = []
        for node, pos in self.positions.items():
            if isinstance(node, types) and (pos.start.line, pos.start.column + 1) == (span.line, span.col):
                exact = (pos.end.line, pos.end.column + 1) == span.end
                found.append((not exact, -(pos.end.line * 10000 + pos.end.column), node))
        found.sort(key=lambda t: (t[0], t[1]))
        return [n for *_, n in found]

    def ancestor(self, node: cst.CSTNode, types: tuple[type, ...] | type) -> cst.CSTNode | None:
        current = node
        while current is not None:
            current = self.parents.get(current)
            if isinstance(current, types):
                return current
        return None

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        return self.ancestor(node, cst.FunctionDef)

    def enclosing_class(self, node: cst.CSTNode) -> cst.ClassDef | None:
        return self.ancestor(node, cst.ClassDef)

    def statement_of(self, node: cst.CSTNode) -> cst.SimpleStatementLine | None:
        return node if isinstance(node, cst.SimpleStatementLine) else self.ancestor(node, cst.SimpleStatementLine)

    @cached_property
    def classes(self) -> list[ClassSite]:
        out = []
        for node, pos in self.positions.items():
            if isinstance(node, cst.ClassDef):
                out.append(ClassSite(node, node.name.value, pos.start.line))
        return out

    def class_named(self, name: str, line: int | None = None) -> cst.ClassDef | None:
        sites = [c for c in self.classes if c.name == name]
        if line is not None:
            exact = [c for c in sites if c.line == line]
            sites = exact or sites
        return sites[0].node if len(sites) == 1 or (sites and line is not None) else None

    # ---- imports ---------------------------------------------------------------------------

    @cached_property
    def bound_names(self) -> dict[str, str]:
        """Top-level names bound by imports -> dotted origin (``nn`` -> ``torch.nn``)."""
        out: dict[str, str] = {}
        for stmt in self._top_statements():
            for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
                if isinstance(small, cst.Import):
                    for alias in small.names:
                        full = get_full_name_for_node(alias.name) or ""
                        if alias.asname is not None:
                            out[alias.asname.name.value] = full
                        else:
                            out[full.split(".")[0]] = full.split(".")[0]
                elif isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                    base = get_full_name_for_node(small.module) if small.module else ""
                    for alias in small.names:
                        name = get_full_name_for_node(alias.name) or ""
                        bound = alias.asname.name.value if alias.asname is not None else name
                        out[bound] = f"{base}.{name}" if base else name
        return out

    def _top_statements(self):
        for stmt in self.module.body:
            yield stmt
            if isinstance(stmt, cst.Try):
                yield from stmt.body.body

    def spell(self, candidates: tuple[str, ...]) -> str | None:
        """How the file can spell one of ``candidates`` (dotted names, preferred first) with its imports."""
        for cand in candidates:
            for bound, origin in self.bound_names.items():
                if origin == cand:
                    return bound
        for cand in candidates:
            for bound, origin in sorted(self.bound_names.items(), key=lambda kv: -len(kv[1])):
                if origin and cand.startswith(origin + "."):
                    return bound + cand[len(origin) :]
        return None

    def import_edit(self, line: str) -> Edit:
        """Insert ``line`` after the last top-level import (after the docstring otherwise); a
        ``from M import N`` joins an existing one-line ``from M import ...`` instead."""
        joined = self._join_import(line)
        return joined if joined is not None else self.insert_after_imports([line])

    def insert_after_imports(self, lines: list[str]) -> Edit:
        """Top-level ``lines`` after the last top-level import (after the docstring otherwise)."""
        last = None
        for stmt in self.module.body:
            if isinstance(stmt, cst.SimpleStatementLine) and all(
                isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body
            ):
                last = stmt
            elif last is not None:
                break
        first = self.module.body[0] if self.module.body else None
        if last is None and first is not None and _is_docstring(first):
            last = first
        if last is not None:
            return self.insert_lines_after(last, lines, indent="")
        return Edit("".join(f"{line}\n" for line in lines), (1, 1), (1, 1))

    def top_statement(self, node: cst.CSTNode) -> cst.CSTNode:
        """The module-level statement that contains ``node``."""
        current = node
        while (parent := self.parents.get(current)) is not None and not isinstance(parent, cst.Module):
            current = parent
        return current

    def _join_import(self, line: str) -> Edit | None:
        match = re.fullmatch(r"from ([\w.]+) import ([\w, ]+)", line.strip())
        if match is None:
            return None
        names = [n.strip() for n in match.group(2).split(",")]
        for stmt in self._top_statements():
            small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
            if (
                isinstance(small, cst.ImportFrom)
                and small.module is not None
                and get_full_name_for_node(small.module) in _SAME_MODULE.get(match.group(1), (match.group(1),))
                and not small.relative
                and not isinstance(small.names, cst.ImportStar)
                and small.lpar is None
                and self.start(stmt)[0] == self.end(stmt)[0]
            ):
                have = {a.evaluated_alias or a.evaluated_name for a in small.names}
                new = [n for n in names if n not in have]
                return Edit("".join(f", {n}" for n in new), *(self.end(small.names[-1].name),) * 2) if new else None
        return None


# a name imported from the first can be imported from the others too (deprecated aliases re-export it)
_SAME_MODULE = {"torch.ao.quantization": ("torch.ao.quantization", "torch.quantization")}


# ---- class helpers ----------------------------------------------------------------------------


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def methods(cls: cst.ClassDef) -> dict[str, cst.FunctionDef]:
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    return {s.name.value: s for s in body if isinstance(s, cst.FunctionDef)}


def body_statements(fn: cst.FunctionDef | cst.ClassDef) -> list[cst.BaseStatement]:
    return list(fn.body.body) if isinstance(fn.body, cst.IndentedBlock) else []


def first_real_statement(fn: cst.FunctionDef) -> cst.BaseStatement | None:
    for stmt in body_statements(fn):
        if not _is_docstring(stmt):
            return stmt
    return None


def super_init_statement(init: cst.FunctionDef) -> cst.SimpleStatementLine | None:
    """``super().__init__(...)`` / ``super(X, self).__init__()`` / ``nn.Module.__init__(self)``."""
    for stmt in body_statements(init):
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            call = small.value if isinstance(small, cst.Expr) else None
            if (
                isinstance(call, cst.Call)
                and isinstance(call.func, cst.Attribute)
                and call.func.attr.value == "__init__"
            ):
                return stmt
    return None


def attribute_assignments(init: cst.FunctionDef, attr: str) -> list[cst.SimpleStatementLine]:
    """Statements ``self.<attr> = ...`` (a single target) anywhere in ``init``."""
    found: list[cst.SimpleStatementLine] = []

    class Visitor(cst.CSTVisitor):
        def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
            for small in node.body:
                if isinstance(small, cst.Assign) and len(small.targets) == 1:
                    target = small.targets[0].target
                    if (
                        isinstance(target, cst.Attribute)
                        and isinstance(target.value, cst.Name)
                        and target.value.value == "self"
                        and target.attr.value == attr
                    ):
                        found.append(node)
                elif isinstance(small, cst.AnnAssign) and small.value is not None:
                    target = small.target
                    if isinstance(target, cst.Attribute) and target.attr.value == attr:
                        found.append(node)

    init.visit(Visitor())
    return found


def free_name(base: str, taken: set[str], first_plain: bool = True) -> str:
    """``base`` if free, else ``base_1``, ``base_2``...; ``taken`` is updated."""
    if first_plain and base not in taken:
        taken.add(base)
        return base
    index = 1
    while f"{base}_{index}" in taken:
        index += 1
    name = f"{base}_{index}"
    taken.add(name)
    return name


def numbered(base: str, k: int) -> str:
    """``relu`` -> ``relu2``; ``relu1`` -> ``relu1_2``."""
    return f"{base}_{k}" if re.search(r"\d$", base) else f"{base}{k}"


def parameters(fn: cst.FunctionDef) -> list[str]:
    return [p.name.value for p in fn.params.params] + [p.name.value for p in fn.params.posonly_params]
