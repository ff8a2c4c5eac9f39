"""Issue 10, item 5/defect 10: checking a package folder gives what checking its files one by one gives.

The package is not called ``mynet``: until files are checked in their own process, a package name
stays in ``sys.modules`` for the rest of the test session (tests/test_safe_writes.py uses ``mynet``)."""

from __future__ import annotations

BLOCKS = """
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))
"""

MODEL = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub

from .blocks import Block


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.b1 = Block(3, 8)

    def forward(self, x):
        return self.dequant(self.b1(self.quant(x)))
"""

TEST_FILE = """
from blocknet.blocks import Block


def test_block():
    assert Block(3, 4) is not None
"""


def _found(diagnostics: list[dict]) -> list[tuple]:
    return sorted(
        (
            d["filename"].rsplit("blocknet/", 1)[-1],
            d["code"],
            d["location"]["row"],
            d["location"]["column"],
            bool(d["fix"]),
        )
        for d in diagnostics
    )


def test_a_package_folder_gives_the_findings_of_its_files_checked_one_by_one(write, qlint_json, tmp_path):
    write("blocknet/__init__.py", "")
    write("blocknet/blocks.py", BLOCKS)
    write("blocknet/model.py", MODEL)
    _, model_alone = qlint_json("blocknet/model.py", cwd=tmp_path)
    assert ("model.py", "QL201", 11, 19, True) in _found(model_alone)  # the block's chain, fixable, in the model
    _, folder = qlint_json(".", cwd=tmp_path)
    assert _found(folder) == _found(model_alone)  # the block class is checked through Net: no QL001 of its own
    assert "QL001" not in {d["code"] for d in folder}


def test_a_block_only_imported_by_a_test_file_is_still_reported_in_its_own_file(write, qlint_json, tmp_path):
    write("blocknet/__init__.py", "")
    write("blocknet/blocks.py", BLOCKS)
    write("blocknet/test_blocks.py", TEST_FILE)
    _, folder = qlint_json(".", cwd=tmp_path)
    assert [(d["code"], d["location"]["row"]) for d in folder] == [("QL001", 4)]
