"""What a rule is: one class holding its metadata, its page, its examples, its check and its fix.

Modelled on Fixit's ``LintRule`` (examples inside the rule, tests generated from them) and ruff's
violations (a doc comment that becomes the rule's page, ``FIX_AVAILABILITY``). Defining a subclass
with a ``code`` registers it; ``qlint rules``, the pages under ``rules/``, the README's table, the fix
loop's order and the example tests are all derived from these definitions.

Torch-free and libcst-free: rule modules import heavy packages inside their checks and fixes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from qlint.diagnostics import Diagnostic, Fix, Severity

if TYPE_CHECKING:
    from qlint.context import FileContext
    from qlint.model.analysis import QGraph
    from qlint.model.pt2e_check import Pt2eModel
    from qlint.source.index import SourceIndex

DOCS_URL = "https://qlint.readthedocs.io/en/latest/rules/{code}.html"
PAGE_SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead", "Fix safety", "References")


class Basis(str, Enum):
    SOURCE = "source"  # libcst over the file, nothing is executed
    GRAPH = "graph"  # the traced model, built on the meta device
    MEASURED = "measured"  # a real conversion (qlint verify)


class Flow(str, Enum):
    EAGER = "eager"
    FX = "FX"
    PT2E = "PT2E"


ALL_FLOWS = (Flow.EAGER, Flow.FX, Flow.PT2E)


class FixAvailability(str, Enum):
    """Whether a finding comes with a fix (ruff's ``FIX_AVAILABILITY``)."""

    NONE = "none"
    SOMETIMES = "sometimes"
    ALWAYS = "always"


@dataclass(frozen=True)
class Invalid:
    """Source the rule reports: ``lines`` are the lines of its findings (exactly, in order).

    ``fixed`` is the text ``qlint check --fix --select <code>`` (``--unsafe-fixes`` when ``unsafe``)
    must write; ``args`` are extra command-line arguments for both runs.
    """

    source: str
    lines: tuple[int, ...]
    fixed: str | None = None
    unsafe: bool = False
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Valid:
    """Source the rule must not report (with ``args`` on the command line)."""

    source: str
    args: tuple[str, ...] = ()


Example = Invalid | Valid
FixItems = Sequence[tuple[int, Diagnostic]]

REGISTRY: dict[str, Rule] = {}


@dataclass(frozen=True)
class EditsFound:
    """A check that already knows its fix (a pure source rewrite) hands it over as is."""

    fix: Fix | None


def precomputed_fixes(items: FixItems) -> dict[int, Fix]:
    """The fixes of findings whose check handed over ``EditsFound``."""
    return {i: d.data.fix for i, d in items if isinstance(d.data, EditsFound) and d.data.fix is not None}


class Rule:
    """Subclass it once per code; the class docstring is the rule's page body (markdown).

    The page is the title, a metadata line, then the docstring's sections in ``PAGE_SECTIONS`` order,
    with the first ``Invalid`` example under "Example" and the first ``Valid`` one under "Use instead"
    (any text the docstring puts under those headings follows the code block).

    Checks: ``check_source`` gets the file's ``SourceIndex`` (only when the file contains one of
    ``triggers``; and the file's ``Settings`` when ``reads_settings``), ``check_graph`` gets each
    analysed model's ``QGraph`` (eager and FX flows), ``check_pt2e`` each root model's exported,
    annotated ``Pt2eModel`` (PT2E flow). Rules with neither are
    reported by qlint itself (QL0xx: could not look) or by ``qlint verify`` (QL6xx: measured).
    Fix: ``fix`` gets the file's context and this rule's findings in it, and returns a ``Fix`` per
    finding index it can repair; it reads the typed facts the check put in ``Diagnostic.data``.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    flows: ClassVar[tuple[Flow, ...]] = ALL_FLOWS
    basis: ClassVar[tuple[Basis, ...]]
    summary: ClassVar[str]
    fix_availability: ClassVar[FixAvailability] = FixAvailability.NONE
    fix_title: ClassVar[str] = ""  # what the fix does, for the page's metadata line
    fix_order: ClassVar[int] = 9  # lower fixes are applied first in a round
    fix_alone: ClassVar[bool] = False  # applied only in a round where no other fix is
    fix_edits_class: ClassVar[bool] = False  # the fix edits a class of the checked file
    # the fix is offered only when the rule is selected by its own code (`--select QL414`), not by a
    # prefix (`QL4`) or `ALL`: a rewrite too large to come with a family's fixes
    fix_only_when_selected: ClassVar[bool] = False
    triggers: ClassVar[tuple[str, ...]] = ()  # words a file must contain for check_source to run
    reads_settings: ClassVar[bool] = False  # check_source(index, settings): the check reads a setting (target-cpu)
    examples: ClassVar[tuple[Example, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if code is None:
            return  # an abstract helper class
        if code in REGISTRY and type(REGISTRY[code]) is not cls:
            raise TypeError(f"{code} is defined twice: {type(REGISTRY[code]).__qualname__} and {cls.__qualname__}")
        REGISTRY[code] = cls()

    # ---- what a rule implements (the defaults do nothing) -------------------------------------

    def check_source(self, index: SourceIndex) -> Iterable[Diagnostic]:
        """Findings in the file's source (libcst, nothing executed)."""
        return ()

    def check_graph(self, qg: QGraph) -> Iterable[Diagnostic]:
        """Findings in one analysed model."""
        return ()

    def check_pt2e(self, model: Pt2eModel) -> Iterable[Diagnostic]:
        """Findings in one root model on the PT2E path: exported, annotated by the quantizer
        (``model.graphs``, the root's or its largest exportable submodules'), or why it did not export."""
        return ()

    def fix(self, ctx: FileContext, items: FixItems) -> dict[int, Fix]:
        """A fix per finding (by its index in ``items``) that this rule can repair in ``ctx``'s file."""
        return {}

    # ---- derived facts -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return DOCS_URL.format(code=self.code)

    @property
    def fixable(self) -> bool:
        return self.fix_availability is not FixAvailability.NONE

    @property
    def family(self) -> str:
        return self.code[:3]

    def runs_on_source(self) -> bool:
        return type(self).check_source is not Rule.check_source

    def has_graph_check(self) -> bool:
        return type(self).check_graph is not Rule.check_graph

    def has_pt2e_check(self) -> bool:
        return type(self).check_pt2e is not Rule.check_pt2e

    def applies_to(self, flow: Flow) -> bool:
        return flow in self.flows

    def runs_on_graph(self, pt2e: bool = False) -> bool:
        """Whether the rule needs the models built on the flow's graph path (PT2E: export and annotate;
        eager/FX: trace): it has a check there, or it is reported while building them (QL001, QL002)
        and applies to the flow."""
        if pt2e:
            return self.has_pt2e_check() or (self._reported_while_building() and self.applies_to(Flow.PT2E))
        on_trace = self.applies_to(Flow.EAGER) or self.applies_to(Flow.FX)
        return self.has_graph_check() or (self._reported_while_building() and on_trace)

    def _reported_while_building(self) -> bool:
        return Basis.GRAPH in self.basis and self.family == "QL0"

    def has_fix(self) -> bool:
        return type(self).fix is not Rule.fix

    def invalid(self) -> list[Invalid]:
        return [e for e in self.examples if isinstance(e, Invalid)]

    def valid(self) -> list[Valid]:
        return [e for e in self.examples if isinstance(e, Valid)]


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # subject -> {query: result}


def shared(subject: object, query: Callable[[object], object]) -> object:
    """``query(subject)``, computed once per subject (a QGraph or a SourceIndex) for all the rules
    that read it (e.g. QL403/QL404/QL406 from one pipeline scan)."""
    results = _SHARED.setdefault(subject, {})
    if query not in results:
        results[query] = query(subject)
    return results[query]
