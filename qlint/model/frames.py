"""Where things happen in source: call-site and construction frames, and the catalog's pointing rule.

Frames carry exact columns (Python 3.11+ code positions), so a diagnostic can underline
``out += identity`` rather than a whole line. Construction sites are recorded by wrapping
``nn.Module.__init__`` while user code runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import FrameType

from qlint.diagnostics import Related, Span

_QLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH_DIR: str | None = None
_CONTAINER_FILES = ("container.py",)
_MAX_FRAMES = 40


@dataclass(frozen=True, slots=True)
class Frame:
    path: str
    line: int
    col: int
    end_line: int
    end_col: int
    func: str

    def span(self) -> Span:
        return Span(self.path, self.line, self.col, self.end_line, self.end_col)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: in {self.func}"


def torch_dir() -> str:
    global _TORCH_DIR
    if _TORCH_DIR is None:
        import torch

        _TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    return _TORCH_DIR


def is_internal(path: str) -> bool:
    """qlint's own frames and torch's machinery (fx, module call wrappers): never a location."""
    return path.startswith(_QLINT_DIR) or (path.startswith(torch_dir()) and not is_torch_container(path))


def is_torch_container(path: str) -> bool:
    return path.startswith(torch_dir()) and os.path.basename(path) in _CONTAINER_FILES and "nn" in path


def is_torch(path: str) -> bool:
    return path.startswith(torch_dir())


_positions_cache: dict = {}


def _frame_position(frame: FrameType) -> tuple[int, int, int, int]:
    code = frame.f_code
    line = frame.f_lineno or code.co_firstlineno
    if not hasattr(code, "co_positions"):  # Python 3.10: line only
        return line, 0, line, 0
    positions = _positions_cache.get(code)
    if positions is None:
        positions = _positions_cache[code] = list(code.co_positions())
    index = frame.f_lasti // 2
    if 0 <= index < len(positions):
        start, end, col, end_col = positions[index]
        if start is not None and col is not None:
            return start, col, end or start, end_col if end_col is not None else col
    return line, 0, line, 0


_where_cache: dict[str, tuple[str, bool]] = {}


def _where(filename: str) -> tuple[str, bool]:
    """A code object's file as an absolute path, and whether it is internal (cached: tracing captures
    the stack at every node, mostly through the same few files)."""
    known = _where_cache.get(filename)
    if known is None:
        path = os.path.abspath(filename)
        known = (path, is_internal(path))
        if os.path.isabs(filename):  # a relative name depends on the working directory
            _where_cache[filename] = known
    return known


def capture(frame: FrameType | None, skip_internal: bool = True) -> tuple[Frame, ...]:
    """The stack from ``frame`` outwards, innermost first, torch/qlint internals dropped."""
    out = []
    while frame is not None and len(out) < _MAX_FRAMES:
        path, internal = _where(frame.f_code.co_filename)
        if not (skip_internal and internal) and not path.startswith("<"):
            line, col, end_line, end_col = _frame_position(frame)
            out.append(Frame(path, line, col, end_line, end_col, frame.f_code.co_name))
        frame = frame.f_back
    return tuple(out)


def frames_from_traceback(tb) -> tuple[Frame, ...]:
    """Frames of an exception's traceback, innermost first (internals dropped)."""
    stack = []
    while tb is not None:
        stack.append((tb.tb_frame, tb.tb_lineno, tb.tb_lasti))
        tb = tb.tb_next
    out = []
    for frame, lineno, lasti in reversed(stack):
        path = os.path.abspath(frame.f_code.co_filename)
        if is_internal(path) or path.startswith("<"):
            continue
        line, col, end_line, end_col = lineno, 0, lineno, 0
        code = frame.f_code
        if hasattr(code, "co_positions"):
            positions = _positions_cache.get(code) or list(code.co_positions())
            _positions_cache[code] = positions
            if 0 <= lasti // 2 < len(positions):
                s, e, c, ec = positions[lasti // 2]
                if s is not None and c is not None:
                    line, col, end_line, end_col = s, c, e or s, ec if ec is not None else c
        out.append(Frame(path, line, col, end_line, end_col, code.co_name))
    return tuple(out)


# ---- construction recording ---------------------------------------------------------------------

_construction: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def construction_frames(module: object) -> tuple[Frame, ...]:
    """Where ``module`` was constructed, innermost first; () when it was built unrecorded."""
    try:
        return _construction.get(module, ())
    except TypeError:
        return ()


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Record the construction site of every ``nn.Module`` built inside the block."""
    import torch.nn as nn

    original = nn.Module.__init__
    if getattr(original, "_qlint_recording", False):
        yield
        return

    def __init__(self, *args, **kwargs):  # noqa: N807
        original(self, *args, **kwargs)
        if self in _construction:
            return
        frame = sys._getframe(1)
        # skip the __init__ frames of this very object (subclass chain, torch's own classes)
        while frame is not None and frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is self:
            frame = frame.f_back
        try:
            _construction[self] = capture(frame)
        except TypeError:
            pass

    __init__._qlint_recording = True  # type: ignore[attr-defined]
    nn.Module.__init__ = __init__
    try:
        yield
    finally:
        nn.Module.__init__ = original


# ---- the catalog's pointing rule --------------------------------------------------------------------


def locate(frames: Iterable[Frame], checked: Iterable[str], fallback: Span) -> tuple[Span, tuple[Related, ...]]:
    """The most specific line in a checked file; library frames inside it become ``related``.

    ``frames`` are innermost first. The first frame in a checked file is the location; when the
    innermost frame lies elsewhere (e.g. torchvision), it is named in ``related``. Without any
    checked frame the diagnostic goes to ``fallback`` (the line that builds the model).
    """
    frames = tuple(frames)
    checked_map = {os.path.abspath(p): p for p in checked}
    primary = next((f for f in frames if f.path in checked_map), None)
    related: tuple[Related, ...] = ()
    inner = frames[0] if frames else None
    if inner is not None and (primary is None or inner is not primary) and not is_torch(inner.path):
        related = (Related(display_span(inner), f"in {inner.func}"),)
    if primary is None:
        return fallback, related
    return display_span(primary, checked_map[primary.path]), related


def display_span(frame: Frame, display_path: str | None = None) -> Span:
    """A frame as a 1-based Span, columns converted from UTF-8 byte offsets to characters."""
    path = display_path or _display_path(frame.path)
    col, end_col = frame.col, frame.end_col
    line_text = _line(frame.path, frame.line)
    if line_text is not None:
        raw = line_text.encode("utf-8")
        col = len(raw[: frame.col].decode("utf-8", errors="ignore"))
        if frame.end_line == frame.line:
            end_col = len(raw[: frame.end_col].decode("utf-8", errors="ignore"))
        else:
            end_line_text = _line(frame.path, frame.end_line) or ""
            end_col = len(end_line_text.encode("utf-8")[: frame.end_col].decode("utf-8", errors="ignore"))
        if frame.col == 0 and frame.end_col == 0:  # no column information: the stripped line
            col = len(line_text) - len(line_text.lstrip())
            end_col = len(line_text.rstrip())
    return Span(
        path,
        frame.line,
        col + 1,
        frame.end_line,
        max(end_col + 1, col + 2 if frame.end_line == frame.line else 1),
    )


def _display_path(path: str) -> str:
    """Relative to the working directory when below it; library files relative to their sys.path entry."""
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd):
        return path[len(cwd) :]
    key = (path, cwd, tuple(sys.path))
    shown = _display_cache.get(key)
    if shown is None:
        roots = sorted((p for p in sys.path if p and path.startswith(os.path.abspath(p) + os.sep)), key=len)
        shown = _display_cache[key] = os.path.relpath(path, os.path.abspath(roots[-1])) if roots else path
    return shown


_display_cache: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _line(path: str, line: int) -> str | None:
    import linecache

    text = linecache.getline(path, line)
    return text.rstrip("\n") if text else None
