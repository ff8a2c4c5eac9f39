"""Which files a run checks: broken links in a folder are named and skipped, the rest is checked;
stdout never says "All checks passed!" when the exit code is 2."""

from __future__ import annotations

import pytest

FLOAT_ADD = """\
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        x = self.quant(x)
        out = self.conv(x)
        out += x
        return self.dequant(out)
"""


@pytest.mark.parametrize("fix", [False, True])
def test_broken_symlinks_in_a_folder_are_named_and_the_rest_is_checked(tmp_path, qlint, fix):
    (tmp_path / "net.py").write_text(FLOAT_ADD)
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing.py")
    (tmp_path / "loop.py").symlink_to(tmp_path / "loop.py")
    code, out, err = qlint("check", *(["--fix"] if fix else []), ".", cwd=tmp_path)
    assert err.splitlines() == [
        "qlint: warning: ./dangling.py: dangling symbolic link (its target "
        f"{str(tmp_path / 'missing.py')!r} does not exist); skipped",
        "qlint: warning: ./loop.py: symbolic link loop; skipped",
    ]
    if fix:
        assert code == 0 and "Fixed 1 problem (0 remaining)." in out
        assert "out = self.skip_add.add(out, x)" in (tmp_path / "net.py").read_text()
    else:
        assert code == 1 and "./net.py:14:9: QL103" in out


def test_a_broken_symlink_named_on_the_command_line_is_an_error(tmp_path, qlint):
    (tmp_path / "loop.py").symlink_to(tmp_path / "loop.py")
    code, out, err = qlint("check", tmp_path / "loop.py")
    assert (code, err) == (2, f"qlint: error: {tmp_path / 'loop.py'}: symbolic link loop\n")
    assert "All checks passed!" not in out


@pytest.mark.parametrize("fix", [False, True])
def test_exit_2_never_comes_with_all_checks_passed(tmp_path, qlint, fix):
    (tmp_path / "clean.py").write_text("x = 1\n")
    code, out, err = qlint("check", *(["--fix"] if fix else []), tmp_path / "clean.py", tmp_path / "missing.py")
    assert code == 2 and err == f"qlint: error: {tmp_path / 'missing.py'}: no such file or directory\n"
    assert "All checks passed!" not in out
    assert out.startswith("No problems found, but there was 1 error (see stderr).\n")
