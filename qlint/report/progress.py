"""Progress of a long ``qlint check`` on a terminal: ``[done/total] current file`` on stderr.

Shown only when stderr is a terminal and the run has taken more than ``delay`` seconds; never in
piped or redirected output. The line is cleared when the run ends.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, stream: TextIO | None = None, delay: float = 2.0, enabled: bool | None = None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.delay = delay
        self.start = time.monotonic()
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self.shown = False

    def advance(self, path: str) -> None:
        """One more file is done; ``path`` is the file just finished."""
        self.done += 1
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        text = f"[{self.done}/{self.total}] {path}"
        self.stream.write("\r\x1b[2K" + text[:200])
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
