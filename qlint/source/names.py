"""Names of the quantization APIs that pipelines call, shared by the source rules and their fixes.

Plain strings (the last component of a call's name), so reading them costs no import.
"""

from __future__ import annotations

PREPARE_PTQ = frozenset({"prepare", "prepare_fx", "prepare_pt2e"})
PREPARE_QAT = frozenset({"prepare_qat", "prepare_qat_fx", "prepare_qat_pt2e"})
CONVERT = frozenset({"convert", "convert_fx", "convert_pt2e", "convert_to_reference_fx"})
CONVERT_OR_QUANTIZE = CONVERT | {"quantize", "quantize_fx"}  # calls whose result is a quantized model
STUBS = frozenset({"QuantStub", "DeQuantStub"})
FX_PREPARE = frozenset({"prepare_fx", "prepare_qat_fx"})
QCONFIG_GETTERS = frozenset({
    "get_default_qconfig", "get_default_qat_qconfig", "get_default_qconfig_mapping",
    "get_default_qat_qconfig_mapping", "get_default_qconfig_dict", "get_default_qat_qconfig_dict",
})  # fmt: skip
