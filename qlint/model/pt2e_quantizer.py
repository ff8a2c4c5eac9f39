"""The PT2E quantizers qlint can ask: x86 and arm (torchao), xnnpack (executorch).

torchao is an optional extra (``qlint[pt2e]``); without it every entry point here raises
``Pt2eUnavailable`` with a one-line message naming the extra.
"""

from __future__ import annotations

import importlib
import platform

QUANTIZERS = ("x86", "arm", "xnnpack")
INSTALL_HINT = "pip install qlint[pt2e]"


class Pt2eUnavailable(Exception):
    """The PT2E flow cannot be checked here: a one-line reason, for an exit-2 error."""


def torchao_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def require_torchao() -> None:
    if not torchao_available():
        raise Pt2eUnavailable(f"the PT2E checks need torchao: {INSTALL_HINT}")


def default_quantizer_name(machine: str | None = None) -> str:
    """x86 on x86 hosts, arm on ARM hosts (``platform.machine()``)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in ("arm64", "aarch64") or machine.startswith("arm"):
        return "arm"
    return "x86"


def quantizer_for(name: str | None = None):
    """A ready quantizer with its default global config: ``x86``, ``arm`` or ``xnnpack``.

    ``None`` picks the host's default. Raises ``Pt2eUnavailable`` when the package that
    provides it is not installed, ``ValueError`` for an unknown name.
    """
    name = (name or default_quantizer_name()).lower()
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}: expected one of {', '.join(QUANTIZERS)}")
    require_torchao()
    if name == "x86":
        module = _import("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
        return module.X86InductorQuantizer().set_global(module.get_default_x86_inductor_quantization_config())
    if name == "arm":
        module = _import("torchao.quantization.pt2e.quantizer.arm_inductor_quantizer")
        return module.ArmInductorQuantizer().set_global(module.get_default_arm_inductor_quantization_config())
    try:
        module = importlib.import_module("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    except ImportError as exc:
        raise Pt2eUnavailable(
            "the xnnpack quantizer lives in executorch, which is not installed "
            "(`pip install executorch`); use --quantizer x86 or arm"
        ) from exc
    return module.XNNPACKQuantizer().set_global(module.get_symmetric_quantization_config())


def quantizer_name(quantizer: object) -> str:
    """A short name for a quantizer object: x86 / arm / xnnpack, else its class name."""
    cls = type(quantizer).__name__
    return {"X86InductorQuantizer": "x86", "ArmInductorQuantizer": "arm", "XNNPACKQuantizer": "xnnpack"}.get(cls, cls)


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise Pt2eUnavailable(f"the installed torchao has no {module_name} ({exc}); {INSTALL_HINT}") from exc
