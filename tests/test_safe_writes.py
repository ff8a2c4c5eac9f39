"""Safe writes: `--fix` and `emit` keep links, modes, encodings and line endings, refuse what they must
not write, and leave nothing behind in the user's folder, even when killed mid-run."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

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
FIXED_LINES = ("        self.skip_add = nn.quantized.FloatFunctional()", "        out = self.skip_add.add(out, x)")


def assert_fixed(text: str) -> None:
    lines = text.splitlines()
    assert all(line in lines for line in FIXED_LINES), text
    assert "        out += x" not in lines


# ---- --fix: links, permissions, mode ---------------------------------------------------------------


def test_fix_writes_through_a_symlink_and_the_link_stays_a_link(tmp_path, qlint):
    target = tmp_path / "real" / "net.py"
    target.parent.mkdir()
    target.write_text(FLOAT_ADD)
    link = tmp_path / "net.py"
    link.symlink_to(target)
    code, out, err = qlint("check", "--fix", link)
    assert (code, err) == (0, "") and "Fixed 1 problem (0 remaining)." in out
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert_fixed(target.read_text())


def test_fix_keeps_hard_links(tmp_path, qlint):
    path = tmp_path / "net.py"
    path.write_text(FLOAT_ADD)
    other = tmp_path / "alias.py"
    os.link(path, other)
    inode = path.stat().st_ino
    code, _, err = qlint("check", "--fix", path)
    assert (code, err) == (0, "")
    assert path.stat().st_ino == inode and path.stat().st_nlink == 2
    assert other.read_text() == path.read_text()
    assert_fixed(other.read_text())


def test_fix_replaces_a_single_link_file_atomically_and_keeps_its_mode(tmp_path, qlint):
    path = tmp_path / "net.py"
    path.write_text(FLOAT_ADD)
    path.chmod(0o750)
    inode = path.stat().st_ino
    code, _, err = qlint("check", "--fix", path)
    assert (code, err) == (0, "")
    assert path.stat().st_ino != inode  # a new file renamed over the old one: no half-written state
    assert stat.S_IMODE(path.stat().st_mode) == 0o750
    assert_fixed(path.read_text())
    assert sorted(os.listdir(tmp_path)) == ["net.py"]


def test_fix_refuses_a_read_only_file(tmp_path, qlint):
    path = tmp_path / "net.py"
    path.write_text(FLOAT_ADD)
    path.chmod(0o444)  # the tests may run as root, who could write it anyway: the mode decides
    code, out, err = qlint("check", "--fix", path)
    assert code == 2
    assert err == (
        f"qlint: error: {path}: could not write the fixed file (read-only: mode 0444); the file was left unchanged\n"
    )
    assert path.read_text() == FLOAT_ADD and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert f"{path}:14:9: QL103" in out  # what is still in the file is reported
    assert "All checks passed!" not in out


def test_a_read_only_file_with_nothing_to_fix_is_not_an_error(tmp_path, qlint):
    path = tmp_path / "clean.py"
    path.write_text("x = 1\n")
    path.chmod(0o444)
    assert qlint("check", "--fix", path)[:2] == (0, "All checks passed!\nFixed 0 problems (0 remaining).\n")


# ---- --fix: the bytes of the file ------------------------------------------------------------------


def test_fix_keeps_crlf_line_endings_on_the_lines_it_adds(tmp_path, qlint):
    path = tmp_path / "net.py"
    path.write_bytes(FLOAT_ADD.replace("\n", "\r\n").encode())
    code, _, err = qlint("check", "--fix", path)
    assert (code, err) == (0, "")
    data = path.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") == FLOAT_ADD.count("\n") + 1  # one line added
    assert_fixed(data.decode())


def test_fix_keeps_a_mixed_file_as_mixed_as_it_was(tmp_path, qlint):
    path = tmp_path / "net.py"
    lines = FLOAT_ADD.splitlines(keepends=True)
    lines[0] = lines[0].replace("\n", "\r\n")  # the first line decides what added lines get
    path.write_bytes("".join(lines).encode())
    assert qlint("check", "--fix", path)[0] == 0
    fixed = path.read_bytes().decode().splitlines(keepends=True)
    crlf = [line for line in fixed if line.endswith("\r\n")]
    assert crlf == [lines[0], FIXED_LINES[0] + "\r\n"]  # the unchanged LF lines stay LF


def test_a_file_declaring_latin1_is_checked_and_fixed_in_latin1(tmp_path, qlint):
    path = tmp_path / "net.py"
    text = '# -*- coding: latin-1 -*-\n"""Modèle de café."""\n' + FLOAT_ADD
    path.write_bytes(text.encode("latin-1"))
    code, out, _ = qlint("check", path)
    assert code == 1 and "QL000" not in out and f"{path}:16:9: QL103" in out
    code, _, err = qlint("check", "--fix", path)
    assert (code, err) == (0, "")
    data = path.read_bytes()
    assert data.startswith(b"# -*- coding: latin-1 -*-\n") and b"Mod\xe8le de caf\xe9" in data
    assert_fixed(data.decode("latin-1"))


def test_an_undeclared_non_utf8_byte_is_still_ql000(write, qlint):
    path = write("bad.py", b'name = "caf\xe9"\n')
    code, out, _ = qlint("check", path)
    assert code == 1 and f"{path}:1:12: QL000" in out and "not valid UTF-8 (byte 0xe9)" in out


def test_an_unknown_encoding_declaration_is_ql000(write, qlint):
    path = write("bad.py", b"# coding: klingon\nx = 1\n")
    code, out, _ = qlint("check", path)
    assert code == 1 and f"{path}:1:1: QL000 [error] SyntaxError: unknown encoding: klingon" in out


def test_fix_keeps_a_utf8_bom(tmp_path, qlint):
    path = tmp_path / "net.py"
    path.write_bytes(b"\xef\xbb\xbf" + ('"""Café."""\n' + FLOAT_ADD).encode())
    code, _, err = qlint("check", "--fix", path)
    assert (code, err) == (0, "")
    data = path.read_bytes()
    assert data.startswith(b'\xef\xbb\xbf"""Caf\xc3\xa9."""\n') and data.count(b"\xef\xbb\xbf") == 1
    assert_fixed(data.decode("utf-8-sig"))


# ---- --fix: imports resolve as the original's, nothing is left next to it -------------------------


def test_fix_of_a_package_module_resolves_relative_and_sibling_imports(tmp_path, qlint):
    package = tmp_path / "mynet"
    package.mkdir()
    (package / "__init__.py").write_text("from .blocks import WIDTH\n")
    (package / "blocks.py").write_text("WIDTH = 3\n")
    (tmp_path / "helpers.py").write_text("def width():\n    return 3\n")
    model = FLOAT_ADD.replace("import torch.nn as nn\n", "import torch.nn as nn\n\nfrom . import WIDTH\n")
    (package / "model.py").write_text(model.replace("nn.Conv2d(3, 3, 1)", "nn.Conv2d(WIDTH, WIDTH, 1)"))
    plain = FLOAT_ADD.replace("import torch.nn as nn\n", "import torch.nn as nn\nfrom helpers import width\n")
    (tmp_path / "plain.py").write_text(plain.replace("nn.Conv2d(3, 3, 1)", "nn.Conv2d(width(), 3, 1)"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = qlint("check", "--fix", package / "model.py", tmp_path / "plain.py")
    assert (code, err) == (0, "") and "Fixed 2 problems (0 remaining)." in out  # no QL001: imports resolved
    assert_fixed((package / "model.py").read_text())
    assert_fixed((tmp_path / "plain.py").read_text())
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no copy, no __pycache__


SLOW_IMPORT = """\
import os
import time

with open(os.environ["QLINT_TEST_MARKER"], "w") as fh:
    fh.write("importing")
time.sleep(120)
"""


def _start_fix_and_wait_for_the_import(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """A `qlint check --fix` process stopped inside the import of a model whose import sleeps."""
    project, scratch, marker = tmp_path / "project", tmp_path / "scratch", tmp_path / "marker"
    project.mkdir()
    scratch.mkdir()
    (project / "net.py").write_text(SLOW_IMPORT + FLOAT_ADD)
    env = {**os.environ, "QLINT_TEST_MARKER": str(marker), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qlint", "check", "--fix", "."],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"qlint never imported the model (exit {proc.returncode}): {out}{err}")
        time.sleep(0.1)
    return proc, project, scratch


def test_sigkill_mid_fix_leaves_only_the_users_files(tmp_path):
    proc, project, _ = _start_fix_and_wait_for_the_import(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert sorted(os.listdir(project)) == ["net.py"]
    assert (project / "net.py").read_text() == SLOW_IMPORT + FLOAT_ADD


def test_sigterm_mid_fix_cleans_up_and_dies_of_the_signal(tmp_path):
    proc, project, scratch = _start_fix_and_wait_for_the_import(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert "qlint: terminated; files written so far are fixed; the others are unchanged" in err
    assert "All checks passed!" not in out
    assert sorted(os.listdir(project)) == ["net.py"]
    assert os.listdir(scratch) == []  # the private copy in the temporary folder is gone too


# ---- emit: where it writes -------------------------------------------------------------------------

TINY_LIBRARY = """\
import torch.nn as nn


class Tiny(nn.Module):
    def __init__(self, c=3):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.conv(x) + x
"""
SCRIPT = """\
from tinylib import Tiny


def build():
    return Tiny(3)


def main():
    print(build())


if __name__ == "__main__":
    main()
"""


@pytest.fixture
def script(tmp_path) -> Path:
    (tmp_path / "tinylib.py").write_text(TINY_LIBRARY)
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def test_emit_refuses_to_overwrite_its_input(script, tmp_path, qlint):
    link = tmp_path / "same.py"
    link.symlink_to(script)
    for output in (script, link, tmp_path / "." / "script.py"):
        code, out, err = qlint("emit", script, "-o", output, "--force")
        assert (code, out) == (2, "")
        assert err == f"qlint: error: {output}: is the input file; emit writes a new file: choose another -o; " \
            "nothing was written\n"  # fmt: skip
    assert script.read_text() == SCRIPT


def test_emit_refuses_an_existing_output_without_force(script, tmp_path, qlint):
    output = tmp_path / "out.py"
    output.write_text("# mine\n")
    code, out, err = qlint("emit", script, "-o", output)
    assert (code, out) == (2, "")
    assert err == f"qlint: error: {output}: already exists; use --force to overwrite it; nothing was written\n"
    assert output.read_text() == "# mine\n"
    code, out, err = qlint("emit", script, "-o", output, "--force")
    assert (code, err) == (0, "") and out.startswith(f"Wrote {output}: a quantizable `build()`")
    assert "class Tiny(nn.Module):" in output.read_text()
    output.chmod(0o444)
    code, _, err = qlint("emit", script, "-o", output, "--force")
    assert (code, err) == (2, f"qlint: error: {output}: cannot write (read-only: mode 0444); nothing was written\n")


def test_emit_creates_the_missing_folders_of_its_output(script, tmp_path, qlint):
    output = tmp_path / "generated" / "deeper" / "tiny_quantizable.py"
    code, out, err = qlint("emit", script, "-o", output)
    assert (code, err) == (0, "") and out.startswith(f"Wrote {output}")
    assert "def build_model()" in output.read_text()


def test_emit_names_a_bad_output_folder(script, tmp_path, qlint):
    code, _, err = qlint("emit", script, "-o", tmp_path)
    assert code == 2 and err.startswith(f"qlint: error: {tmp_path}: is a folder; name the file to write")
    blocker = tmp_path / "tinylib.py"
    code, _, err = qlint("emit", script, "-o", blocker / "x.py")
    assert (code, err) == (2, f"qlint: error: {blocker / 'x.py'}: {blocker} is not a folder; nothing was written\n")


def test_emit_removes_the_folders_it_created_when_it_fails(tmp_path, qlint):
    own = tmp_path / "own.py"
    own.write_text(TINY_LIBRARY)  # the model's code is in the file: nothing to emit
    code, _, err = qlint("emit", own, "-o", tmp_path / "new" / "x.py")
    assert code == 2 and "use `qlint check --fix` instead" in err
    assert not (tmp_path / "new").exists()
