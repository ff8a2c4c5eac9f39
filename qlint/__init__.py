"""qlint: a linter and auto-fixer for PyTorch quantization.

The Python API (``qlint.check``) lives in :mod:`qlint.api`; importing qlint does not import torch.
"""

from __future__ import annotations

from qlint.version import __version__

__all__ = ["__version__", "check", "check_paths", "check_source"]


def __getattr__(name: str):
    if name in ("check", "check_paths", "check_source"):
        from qlint import api

        return getattr(api, name)
    raise AttributeError(name)
