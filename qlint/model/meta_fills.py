"""Random initialisation that costs nothing on the meta device.

A meta tensor has a shape and no values, so ``normal_`` or ``uniform_`` on it produces nothing; yet torch
runs the op's Python decomposition to get there (~0.6 ms for ``normal_``: half of building a ResNet-50 on
meta goes to ``kaiming_normal_``). Inside ``skipped_on_meta()`` those fills return the tensor at once when
they would succeed anyway; anything that could raise (a leaf that requires grad under grad mode, an integer
tensor, an inverted range, a negative std) goes to torch as before, so a model builds or fails as it did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from numbers import Real


def _normal_ok(mean: object = 0.0, std: object = 1.0, *, generator: object = None) -> bool:
    return isinstance(mean, Real) and isinstance(std, Real) and std >= 0


def _uniform_ok(low: object = 0.0, high: object = 1.0, *, generator: object = None) -> bool:
    return isinstance(low, Real) and isinstance(high, Real) and low <= high


_FILLS = {"normal_": _normal_ok, "uniform_": _uniform_ok}


@contextlib.contextmanager
def skipped_on_meta() -> Iterator[None]:
    """While the block runs, ``Tensor.normal_``/``uniform_`` on a meta tensor skip the decomposition."""
    import torch

    originals = {name: torch.Tensor.__dict__.get(name) for name in _FILLS}
    for name, valid in _FILLS.items():
        setattr(torch.Tensor, name, _fill(torch, getattr(torch.Tensor, name), valid))
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def _fill(torch, original, valid):
    def fill(self, *args, **kwargs):
        if (
            type(self) in (torch.Tensor, torch.nn.Parameter)
            and self.is_meta
            and self.is_floating_point()
            and not (self.requires_grad and torch.is_grad_enabled())
        ):
            try:
                if valid(*args, **kwargs):
                    return self
            except TypeError:  # arguments torch would reject: let it say so
                pass
        return original(self, *args, **kwargs)

    fill.__name__ = fill.__qualname__ = original.__name__
    fill.__doc__ = original.__doc__
    return fill
