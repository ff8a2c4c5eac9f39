"""Issue 10, item 6: what a ruff user expects from ``qlint check``, through the real CLI."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
from conftest import run_subprocess

from qlint.report.progress import Progress

# QL405 (info, safe fix) on line 2; source rules only, so --no-graph keeps these tests torch-free
INFO_ONLY = "import torch\nfrom torch.quantization import QuantStub\n"
SYNTAX_ERROR = "def f(:\n"


@pytest.fixture
def project(write, tmp_path):
    write("a.py", INFO_ONLY)
    write("b.py", INFO_ONLY)
    write("broken.py", SYNTAX_ERROR)
    return tmp_path


def test_statistics_counts_findings_by_code(project, qlint):
    code, out, _ = qlint("check", ".", "--no-graph", "--statistics", cwd=project)
    assert code == 1
    assert out.splitlines() == [
        "2\tQL405\t[*] deprecated-quantization-namespace [info]",
        "1\tQL000\t[ ] invalid-syntax [error]",
    ]
    code, out, _ = qlint("check", ".", "--no-graph", "--statistics", "--format", "json", cwd=project)
    rows = json.loads(out)
    assert [(r["code"], r["count"], r["fixable"]) for r in rows] == [("QL405", 2, 2), ("QL000", 1, 0)]


def test_output_file_gets_the_report_and_stdout_stays_empty(project, qlint):
    code, out, _ = qlint(
        "check", ".", "--no-graph", "--format", "json", "--output-file", "out/report.json", cwd=project
    )
    assert code == 1 and out == ""
    found = json.loads((project / "out" / "report.json").read_text())
    assert sorted(d["code"] for d in found) == ["QL000", "QL405", "QL405"]


def test_quiet_prints_the_findings_and_no_summary(project, qlint):
    code, out, _ = qlint("check", "a.py", "--no-graph", "--quiet", cwd=project)
    assert code == 1 and "a.py:2:6: QL405" in out and "Found" not in out and "fixable" not in out


def test_show_fixes_lists_fixes_on_offer_and_fixes_applied(project, qlint):
    code, out, _ = qlint("check", "a.py", "--no-graph", "--show-fixes", cwd=project)
    assert "Fixes available:" in out and "a.py:2:6: QL405 (--fix): Use `torch.ao.quantization`" in out
    code, out, _ = qlint("check", "a.py", "--no-graph", "--fix", "--show-fixes", cwd=project)
    assert code == 0 and "- a.py: 1 fixed" in out
    assert "torch.ao.quantization" in (project / "a.py").read_text()


def test_fail_on_chooses_the_severities_that_make_exit_1(project, qlint):
    assert qlint("check", "a.py", "--no-graph", cwd=project)[0] == 1  # default: any finding
    assert qlint("check", "a.py", "--no-graph", "--fail-on", "info", cwd=project)[0] == 1
    code, out, _ = qlint("check", "a.py", "--no-graph", "--fail-on", "warning", cwd=project)
    assert code == 0 and "QL405" in out  # still reported, just not failing
    assert qlint("check", "broken.py", "--no-graph", "--fail-on", "error", cwd=project)[0] == 1
    code, _, err = qlint("check", "a.py", "--fail-on", "fatal", cwd=project)
    assert code == 2 and "--fail-on" in err


def test_extend_select_and_extend_ignore_in_config_and_on_the_command_line(project, write, qlint):
    write("pyproject.toml", '[tool.qlint]\nselect = ["QL1"]\nextend-select = ["QL405"]\n')
    code, out, _ = qlint("check", "a.py", "--no-graph", cwd=project)
    assert code == 1 and "QL405" in out
    code, out, _ = qlint("check", "a.py", "--no-graph", "--extend-ignore", "QL4", cwd=project)
    assert code == 0 and "QL405" not in out
    write("pyproject.toml", '[tool.qlint]\nselect = ["QL1"]\nextend-ignore = ["QL2"]\n')
    assert qlint("check", "a.py", "--no-graph", cwd=project)[0] == 0
    code, out, _ = qlint("check", "a.py", "--no-graph", "--extend-select", "QL405", cwd=project)
    assert code == 1 and "QL405" in out


def test_config_option_uses_the_named_file(project, write, qlint):
    write("pyproject.toml", '[tool.qlint]\nselect = ["QL405"]\n')
    write("ci/strict.toml", 'ignore = ["QL405"]\n')
    assert qlint("check", "a.py", "--no-graph", cwd=project)[0] == 1
    assert qlint("check", "a.py", "--no-graph", "--config", "ci/strict.toml", cwd=project)[0] == 0
    code, _, err = qlint("check", "a.py", "--config", "nowhere.toml", cwd=project)
    assert code == 2 and "nowhere.toml" in err
    write("ci/bad.toml", 'select = ["QL777"]\n')
    code, _, err = qlint("check", "a.py", "--config", "ci/bad.toml", cwd=project)
    assert code == 2 and "'QL777'" in err and "bad.toml" in err


def test_timeout_no_cache_and_jobs_reach_the_settings(project, write, qlint, monkeypatch):
    import qlint.engine as engine

    seen = []
    real = engine.check_many

    def spy(plans, *args, **kwargs):
        seen.extend((settings.timeout, settings.no_cache, settings.jobs) for _, settings in plans)
        return real(plans, *args, **kwargs)

    monkeypatch.setattr(engine, "check_many", spy)
    qlint("check", "a.py", "--no-graph", cwd=project)
    qlint("check", "a.py", "--no-graph", "--timeout", "7.5", "--no-cache", "--jobs", "3", cwd=project)
    write("pyproject.toml", "[tool.qlint]\ntimeout = 30\n")
    qlint("check", "a.py", "--no-graph", cwd=project)
    qlint("check", "a.py", "--no-graph", "--timeout", "5", cwd=project)  # the command line wins
    assert seen == [(120.0, False, None), (7.5, True, 3), (30.0, False, None), (5.0, False, None)]
    for bad in (["--timeout", "0"], ["--timeout", "soon"], ["--jobs", "0"]):
        code, _, err = qlint("check", "a.py", *bad, cwd=project)
        assert code == 2 and bad[0] in err
    write("pyproject.toml", "[tool.qlint]\ntimeout = -1\n")
    code, _, err = qlint("check", "a.py", "--no-graph", cwd=project)
    assert code == 2 and "timeout must be a number of seconds" in err


def test_progress_is_shown_on_a_terminal_and_never_in_piped_output(project):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(2, stream=screen, delay=0.0)
    progress.advance("a.py")
    progress.advance("b.py")
    progress.close()
    assert "[1/2] a.py" in screen.getvalue() and "[2/2] b.py" in screen.getvalue()
    assert screen.getvalue().endswith("\r\x1b[2K")  # the line is cleared at the end
    piped = io.StringIO()
    quiet = Progress(2, stream=piped, delay=0.0)
    quiet.advance("a.py")
    assert piped.getvalue() == ""
    run = run_subprocess("check", ".", "--no-graph", cwd=project)
    assert "\r" not in run.stderr and "[1/" not in run.stderr and run.returncode == 1


def _git(repo, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_gitignored_files_are_skipped_unless_asked_or_named(project, write, qlint):
    _git(project, "init", "-q")
    write(".gitignore", "generated/\nbroken.py\n")
    write("generated/gen.py", INFO_ONLY)
    code, out, _ = qlint("check", ".", "--no-graph", "--statistics", cwd=project)
    assert out.splitlines() == ["2\tQL405\t[*] deprecated-quantization-namespace [info]"]
    code, out, _ = qlint("check", ".", "--no-graph", "--statistics", "--no-respect-gitignore", cwd=project)
    assert out.splitlines()[0] == "3\tQL405\t[*] deprecated-quantization-namespace [info]" and "QL000" in out
    code, out, _ = qlint("check", "broken.py", "--no-graph", cwd=project)  # named: checked, as ruff does
    assert code == 1 and "QL000" in out


def test_a_path_given_twice_is_checked_once(project, qlint):
    code, out, _ = qlint("check", "a.py", "a.py", "./a.py", "--no-graph", "--statistics", cwd=project)
    assert out.splitlines() == ["1\tQL405\t[*] deprecated-quantization-namespace [info]"]
    code, out, _ = qlint("check", ".", "a.py", "--no-graph", "--format", "json", cwd=project)
    assert sorted(d["filename"].split("/")[-1] for d in json.loads(out)) == ["a.py", "b.py", "broken.py"]


# QL411 on line 3 when the deployment CPU is an x86 CPU without VNNI; source rules only (--no-graph)
REDUCE_RANGE_OFF = (
    "import torch\n"
    "from torch.ao.quantization import HistogramObserver, QConfig, default_weight_observer\n"
    "qconfig = QConfig(activation=HistogramObserver.with_args(reduce_range=False), weight=default_weight_observer)\n"
)


def test_target_cpu_from_the_config_and_the_command_line(write, tmp_path, qlint):
    write("pyproject.toml", '[tool.qlint]\ntarget-cpu = "x86-avx2"\n')
    write("q.py", REDUCE_RANGE_OFF)
    code, out, _ = qlint("check", "q.py", "--no-graph", "--select", "QL411", cwd=tmp_path)
    assert code == 1 and "q.py:3:58: QL411" in out and "x86 CPU without AVX-512 VNNI" in out
    code, out, _ = qlint("check", "q.py", "--no-graph", "--select", "QL411", "--target-cpu", "x86-vnni", cwd=tmp_path)
    assert code == 0 and "QL411" not in out  # the command line wins over the config
    write("pyproject.toml", '[tool.qlint]\ntarget-cpu = "skylake"\n')
    code, out, err = qlint("check", "q.py", "--no-graph", cwd=tmp_path)
    assert code == 2 and "target-cpu must be one of host, x86-vnni, x86-avx2, arm" in err
    assert "All checks passed" not in out


def test_target_cpu_defaults_to_this_host(write, tmp_path, qlint):
    from qlint.rules.engines import host_cpu

    write("q.py", REDUCE_RANGE_OFF)
    code, default, _ = qlint("check", "q.py", "--no-graph", "--select", "QL411", cwd=tmp_path)
    named = host_cpu()
    if named is None:
        pytest.skip("this host's CPU cannot be read")
    code_named, out_named, _ = qlint(
        "check", "q.py", "--no-graph", "--select", "QL411", "--target-cpu", named, cwd=tmp_path
    )
    assert code == code_named and ("q.py:3:58: QL411" in default) == ("q.py:3:58: QL411" in out_named)
    assert (code == 1) == (named == "x86-avx2")
    if code == 1:
        assert "this host, an x86 CPU without AVX-512 VNNI" in default
