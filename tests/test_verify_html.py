"""``qlint verify --html``: one self-contained page, opened in a real headless Chromium (no console errors,
the charts render); without plotly, --html names the extra to install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from qlint.verify import timing

SMALL = """
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.dw(self.relu(self.conv(self.quant(x)))))


# qlint: model = Small()
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip
SLOW_RED = (214, 39, 40)  # the int8 bar of a layer slower in int8 (QL602)


def _chromium(tmp_path, page, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=8000", *args, page.as_uri()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def report(write, qlint, monkeypatch, tmp_path):
    """The report of Small with a constructed per-layer clock: its dilated conv `dw` 10x slower in int8."""
    pytest.importorskip("plotly")

    def layer_rounds(float_model, int8_model, engine, batch, names, repeats):
        f = {n: [0.5 if n == "dw" else 1.0] * repeats for n in names}
        q = {n: [5.0 if n == "dw" else 0.5] * repeats for n in names}
        return f, q

    monkeypatch.setattr(timing, "layer_rounds", layer_rounds)
    path = write("small.py", SMALL)
    page = tmp_path / "report.html"
    code, out, err = qlint("verify", path, "--input-shape", "1x3x16x16", "--calibration", "1", "--repeat", "4",
                           "--remedies", "always", "--no-compile", "--html", page)  # fmt: skip
    assert code in (0, 1) and f"wrote {page}" in err, err
    return path, page


def test_html_report_self_contained_linked_and_renders_in_headless_chromium(report, tmp_path):
    path, page = report
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http", text)  # nothing fetched: works offline
    assert "Plotly.newPlot" in text and text.count('class="plotly-graph-div"') == 3  # time, SQNR, cold start
    for words in ("output SQNR", "float/int8", "IQR", "Candidates, measured in this run", "Cold start",
                  "(as configured)", "dilated grouped convs kept float", "Findings", "QL602"):  # fmt: skip
        assert words in text
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "self.dw = " in s)
    assert f'href="file://{path}#L{line}"' in text  # the slow layer links to the line that builds it

    if CHROMIUM is None:
        pytest.skip("needs Chromium (apt-get install chromium; .ci/run installs it)")
    from PIL import Image

    dom = _chromium(tmp_path, page, "--dump-dom")
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert dom.returncode == 0 and not console, console
    assert dom.stdout.count('class="main-svg"') >= 3  # plotly drew every chart
    assert re.search(r'id="qlint-errors"[^>]*hidden', dom.stdout)  # the page caught no script error

    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, page, "--window-size=1200,2200", f"--screenshot={shot}")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2200)
    colors = image.getcolors(maxcolors=1 << 22)
    non_white = sum(n for n, rgb in colors if rgb != (255, 255, 255))
    assert non_white > 0.05 * 1200 * 2200  # not a blank page
    assert any(rgb == SLOW_RED for _, rgb in colors)  # the slow layer's int8 bar is drawn, highlighted


def test_html_without_plotly_names_the_extra(write, qlint, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if not installed
    path = write("small.py", SMALL)
    code, out, err = qlint("verify", path, "--html", tmp_path / "r.html")
    assert code == 2 and "pip install qlint[report]" in err and "Traceback" not in err + out
    assert not (tmp_path / "r.html").exists()
