"""Ask ``pt2e_imports`` without torchao's import-time log noise on the user's terminal."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# torchao 0.18 logs a deprecation warning (``register_constant() on Enum subclasses``) through
# torch's pytree logger when it is first imported; it is not about the checked file.
_NOISY = ("torch.utils._pytree",)


@contextmanager
def quiet_imports() -> Iterator[None]:
    """Raise the noisy loggers to ERROR while packages are imported to answer a question."""
    loggers = [logging.getLogger(name) for name in _NOISY]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
