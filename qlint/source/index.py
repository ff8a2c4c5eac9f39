"""SourceIndex: one libcst pass over a file, collecting what source rules query.

Every call with its dotted callee name, its enclosing class and function, and its position;
the classes and their methods; the functions. Rules ask the index instead of re-walking the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, PositionProvider

from qlint.diagnostics import Diagnostic, Span
from qlint.source.file import SourceFile
from qlint.source.names import FX_PREPARE


@dataclass(frozen=True)
class CallSite:
    node: cst.Call
    name: str  # dotted callee, e.g. "torch.ao.quantization.convert", "self.relu", "x.cuda"
    function: str | None  # innermost enclosing function name
    cls: str | None  # innermost enclosing class name
    span: Span

    @property
    def attr(self) -> str:
        """The last component of the callee (``cuda`` for ``x.cuda``)."""
        return self.name.rsplit(".", 1)[-1]


@dataclass
class ClassInfo:
    node: cst.ClassDef
    bases: tuple[str, ...]
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)


class SourceIndex:
    """The parsed file plus the facts source rules share."""

    def __init__(self, source: SourceFile):
        self.source = source
        self.module = cst.parse_module(source.text)
        self.wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        self.positions = self.wrapper.resolve(PositionProvider)
        self.calls: list[CallSite] = []
        self.classes: dict[str, ClassInfo] = {}
        self.functions: list[cst.FunctionDef] = []
        self.wrapper.visit(_Collector(self))

    @property
    def path(self) -> str:
        return self.source.path

    def span(self, node: cst.CSTNode) -> Span:
        pos = self.positions[node]
        return Span(self.path, pos.start.line, pos.start.column + 1, pos.end.line, pos.end.column + 1)

    def diagnostic(self, code: str, message: str, node: cst.CSTNode, data: object = None) -> Diagnostic:
        return Diagnostic(code, message, self.span(node), data=data)

    def calls_in(self, cls: str, functions: set[str]) -> list[CallSite]:
        return [c for c in self.calls if c.cls == cls and c.function in functions]

    @cached_property
    def module_classes(self) -> dict[str, ClassInfo]:
        """Classes that look like nn.Modules: an ``nn.Module``-ish base, or a ``forward`` method."""
        return {
            name: info
            for name, info in self.classes.items()
            if "forward" in info.methods or any(b.endswith("Module") or b in self.classes for b in info.bases)
        }

    def forward_closure(self, cls: str) -> set[str]:
        """``forward`` and the methods it reaches through ``self.<method>(...)`` calls."""
        info = self.classes[cls]
        reached, todo = set(), ["forward"]
        while todo:
            name = todo.pop()
            if name in reached or name not in info.methods:
                continue
            reached.add(name)
            todo.extend(
                c.attr for c in self.calls if c.cls == cls and c.function == name and c.name == f"self.{c.attr}"
            )
        return reached


def self_attributes(cls: cst.ClassDef) -> set[str]:
    """Every ``self.<name>`` mentioned in the class, and its method names (names a new attribute must avoid)."""
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    names = {s.name.value for s in body if isinstance(s, cst.FunctionDef)}

    class Visitor(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            if isinstance(node.value, cst.Name) and node.value.value == "self":
                names.add(node.attr.value)

    cls.visit(Visitor())
    return names


def index_of(source: SourceFile) -> SourceIndex:
    """The file's SourceIndex, parsed once per text: the source rules and the graph rules that read
    the file's pipelines (QL201) share it."""
    return _parsed(source.path, source.text)


def uses_fx_flow(source: SourceFile) -> bool:
    """The file calls ``prepare_fx``/``prepare_qat_fx`` (read from its calls, not a word): its qconfigs come from a
    ``QConfigMapping``, and ``prepare_fx`` traces the model."""
    if not any(name in source.text for name in FX_PREPARE):
        return False
    try:
        return any(site.attr in FX_PREPARE for site in index_of(source).calls)
    except Exception:  # noqa: BLE001 - libcst failed: the engine reports the source pass (QL000)
        return False


@lru_cache(maxsize=8)
def _parsed(path: str, text: str) -> SourceIndex:
    return SourceIndex(SourceFile.from_text(path, text))


class _Collector(cst.CSTVisitor):
    def __init__(self, index: SourceIndex):
        self.index = index
        self.class_stack: list[str] = []
        self.function_stack: list[str] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        bases = tuple(get_full_name_for_node(a.value) or "" for a in node.bases)
        self.index.classes.setdefault(node.name.value, ClassInfo(node, bases))
        self.class_stack.append(node.name.value)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.class_stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if self.class_stack and len(self.function_stack) == 0:
            self.index.classes[self.class_stack[-1]].methods[node.name.value] = node
        self.index.functions.append(node)
        self.function_stack.append(node.name.value)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_stack.pop()

    def visit_Call(self, node: cst.Call) -> None:
        name = get_full_name_for_node(node.func) or ""
        self.index.calls.append(
            CallSite(
                node,
                name,
                self.function_stack[-1] if self.function_stack else None,
                self.class_stack[-1] if self.class_stack else None,
                self.index.span(node),
            )
        )
