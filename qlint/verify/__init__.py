"""``qlint verify``: the real conversion (eager, FX, PT2E), its accuracy and speed, and measured remedies.

Imports torch; the CLI loads it only for the ``verify`` command.
"""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def __getattr__(name: str):
    if name in __all__:
        from qlint.verify import command

        return getattr(command, name)
    raise AttributeError(name)
