"""Graph findings on models nobody on the team wrote, judged by the real eager conversion:
no false alarm where ``convert`` handles a module, the right advice, each op on a line, default arguments."""

from __future__ import annotations

import torch

from tests.conftest import codes
from tests.real_flow import load, real_flow

LSTM = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        out, _ = self.lstm(x)
        return self.dequant(self.fc(out))
"""


def test_lstm_swapped_by_convert_is_no_false_alarm(write, qlint_json):
    path = write("net.py", LSTM)
    code, found = qlint_json(path)
    assert (code, codes(found)) == (0, [])
    assert real_flow(load(path, "Net()"), lambda: torch.randn(2, 5, 8)) is None


EMBEDDING = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.quant = QuantStub()
        self.fc = nn.Linear(16, 4)
        self.dequant = DeQuantStub()

    def forward(self, ids):
        x = self.quant(self.emb(ids))
        return self.dequant(self.fc(x))
"""


def test_embedding_fed_token_ids_is_not_told_to_add_a_quant_stub(write, qlint_json):
    path = write("net.py", EMBEDDING)
    code, found = qlint_json(path)
    assert "QL101" not in {d["code"] for d in found}
    ids = lambda: torch.randint(0, 100, (2, 5))  # noqa: E731
    assert real_flow(load(path, "Net()"), ids).startswith("convert: AssertionError: Embedding quantization")


ATTENTION = """
import math

import torch
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Attn(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.d = d
        self.quant = QuantStub()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        q, k = self.q(x), self.k(x)
        s = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d)
        return self.dequant(s)
"""


def test_two_ops_on_one_line_are_two_findings(write, qlint_json):
    path = write("attn.py", ATTENTION)
    code, found = qlint_json(path, "--input-shape", "1x4x16")
    assert codes(found) == [("QL103", 20), ("QL103", 20)]
    assert sorted(d["message"].split(" ")[0] for d in found) == ["`/`", "torch.matmul"]
    assert real_flow(load(path, "Attn()"), lambda: torch.randn(1, 4, 16)).startswith("forward: NotImplementedError")


FEATURES = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x, return_features=False):
        x = self.conv(x)
        if return_features:
            return x
        return self.fc(x.mean((2, 3)))
"""


def test_default_arguments_are_traced_as_concrete_values(write, qlint, qlint_json):
    path = write("net.py", FEATURES)
    code, found = qlint_json(path)
    assert codes(found) == [("QL101", 11), ("QL102", 14)]
    image = lambda: torch.rand(1, 3, 16, 16)  # noqa: E731
    assert real_flow(load(path, "Net()"), image).startswith("forward: NotImplementedError")
    qlint("check", "--fix", path)
    assert real_flow(load(path, "Net()"), image) is None
