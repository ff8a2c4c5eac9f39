"""The output layer: text (plain and colour), json, github, sarif."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from qlint.diagnostics import Applicability, Diagnostic, Edit, Fix, Related, Severity, Span
from qlint.report import FORMATS, render
from qlint.report.github import escape_data, escape_property, render_github
from qlint.report.json_format import render_json
from qlint.report.sarif import artifact_uri, render_sarif
from qlint.report.text import render_summary, render_text
from qlint.rules.catalog import RULES, Basis

SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

X = "examples/x.py"
X_SRC = (
    "import torch\n"  # 1
    "\n"  # 2
    "class Block(torch.nn.Module):\n"  # 3
    "    def forward(self, x):\n"  # 4
    "        out = self.conv(x)\n"  # 5
    "        out += identity\n"  # 6
    "\ty = x\t+ 1\n"  # 7: tabs
    "        s = '量化' + t  # é\n"  # 8: wide chars
)
Y = "examples/y.py"  # no source given for this one


def _add() -> Diagnostic:
    return Diagnostic(
        "QL103",
        "`+=` on quantized tensors has no quantized kernel [use FloatFunctional] at 100%",
        Span(X, 6, 9, 6, 24),
        fix=Fix(
            Applicability.SAFE,
            "Replace with FloatFunctional.add",
            (Edit("out = self.ff.add(out, identity)", (6, 9), (6, 24)),),
        ),
        related=(Related(Span("torchvision/models/resnet.py", 102, 9, 102, 24), "in BasicBlock.forward"),),
        model="resnet18",
        module="layer1.0",
    )


def _multiline() -> Diagnostic:
    return Diagnostic("QL202", "module `relu` is called at 2 sites", Span(X, 4, 5, 6, 24))


def _tab() -> Diagnostic:
    return Diagnostic(
        "QL201",
        "unfused chain",
        Span(X, 7, 7, 7, 10),  # the tab, `+` and the space
        fix=Fix(Applicability.UNSAFE, "Fuse conv and bn"),
    )


def _wide() -> Diagnostic:
    return Diagnostic("QL104", "cat of `量化`", Span(X, 8, 20, 8, 21))  # the `t`


def _nosource() -> Diagnostic:
    return Diagnostic("QL401", "`.cuda()` call", Span(Y, 3, 1), fix=Fix(Applicability.DISPLAY_ONLY, "Drop it"))


def _all() -> list[Diagnostic]:
    return [_multiline(), _add(), _tab(), _wide(), _nosource()]


def _text(diags: list[Diagnostic], *, color: bool = False, fixable_hint: bool = True) -> str:
    buf = io.StringIO()
    render_text(diags, {X: X_SRC}, color=color, out=buf, fixable_hint=fixable_hint)
    render_summary(diags, color=color, out=buf, files_checked=3)
    return buf.getvalue()


EXPECTED_TEXT = """\
examples/x.py:4:5: QL202 [warning] module `relu` is called at 2 sites
  |
4 |     def forward(self, x):
  |     ^^^^^^^^^^^^^^^^^^^^^

examples/x.py:6:9: QL103 [*] [error] `+=` on quantized tensors has no quantized kernel \
[use FloatFunctional] at 100%
  |
6 |         out += identity
  |         ^^^^^^^^^^^^^^^
  = note: torchvision/models/resnet.py:102: in BasicBlock.forward
  = help: Replace with FloatFunctional.add

examples/x.py:7:7: QL201 [warning] unfused chain
  |
7 |     y = x   + 1
  |          ^^^^^
  = help: Fuse conv and bn

examples/x.py:8:20: QL104 [warning] cat of `量化`
  |
8 |         s = '量化' + t  # é
  |                      ^

examples/y.py:3:1: QL401 [error] `.cuda()` call
  = help: Drop it

Found 5 problems (2 errors, 3 warnings, 0 info) in 2 files.
[*] 1 fixable with `qlint check --fix` (1 more with --unsafe-fixes).
"""


# ------------------------------------------------------------------------------------------------ text


def test_text_exact_output() -> None:
    assert _text(_all()) == EXPECTED_TEXT


def test_text_without_fixable_hint_drops_marker_only() -> None:
    out = _text([_add()], fixable_hint=False)
    assert "QL103 [error]" in out and "[*] [error]" not in out
    assert "= help: Replace with FloatFunctional.add" in out


def test_text_two_digit_gutter_matches_ruff_layout() -> None:
    src = "\n" * 11 + "        out += identity\n"
    d = Diagnostic("QL103", "msg", Span("a.py", 12, 9, 12, 24), related=(Related(Span("b.py", 3, 1), "here"),))
    buf = io.StringIO()
    render_text([d], {"a.py": src}, color=False, out=buf)
    assert buf.getvalue().splitlines() == [
        "a.py:12:9: QL103 [error] msg",
        "   |",
        "12 |         out += identity",
        "   |         ^^^^^^^^^^^^^^^",
        "   = note: b.py:3: here",
        "",
    ]


@pytest.mark.parametrize(
    ("span", "carets_at", "count"),
    [
        (Span("a.py", 1, 5), 4, 1),  # no end: one caret
        (Span("a.py", 1, 5, 1, 5), 4, 1),  # empty span: still one caret
        (Span("a.py", 1, 1, 3, 2), 0, 10),  # multi-line: to the end of the first line
        (Span("a.py", 1, 12, 1, 14), 11, 2),  # past the end of the line: keeps going
    ],
)
def test_text_caret_extent(span: Span, carets_at: int, count: int) -> None:
    buf = io.StringIO()
    render_text([Diagnostic("QL202", "m", span)], {"a.py": "abc = f(x)\nb\nc\n"}, color=False, out=buf)
    caret_line = buf.getvalue().splitlines()[3]
    assert caret_line == "  | " + " " * carets_at + "^" * count


@pytest.mark.parametrize(
    ("sources", "line"),
    [({}, 1), ({"a.py": "x = 1\n"}, 2), ({"a.py": "x = 1\n"}, 0), ({"a.py": "x = 1\n"}, 3)],
)
def test_text_snippet_skipped_when_line_unknown(sources: dict[str, str], line: int) -> None:
    buf = io.StringIO()
    render_text([Diagnostic("QL202", "m", Span("a.py", line, 1))], sources, color=False, out=buf)
    assert buf.getvalue() == f"a.py:{line}:1: QL202 [warning] m\n\n"


def test_text_crlf_and_control_characters_are_sanitised() -> None:
    src = "a = 1\r\nb = '\x1b[31m'\r\n"
    buf = io.StringIO()
    render_text(
        [Diagnostic("QL202", "bad \x1b[2J msg", Span("a.py", 2, 1, 2, 2))],
        {"a.py": src},
        color=False,
        out=buf,
    )
    out = buf.getvalue()
    assert "\x1b" not in out and "\r" not in out
    assert "2 | b = '\ufffd[31m'" in out
    assert "bad \ufffd[2J msg" in out


def test_plain_text_never_wraps() -> None:
    long_message = "word " * 80 + "[end]"
    d = Diagnostic("QL202", long_message, Span("a.py", 1, 1, 1, 200))
    buf = io.StringIO()
    render_text([d], {"a.py": "x" * 200 + "\n"}, color=False, out=buf)
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"a.py:1:1: QL202 [warning] {long_message}"
    assert lines[2] == "1 | " + "x" * 200
    assert lines[3] == "  | " + "^" * 199


def test_color_output_is_plain_output_plus_ansi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "40")  # narrow terminal: still no wrapping
    coloured = _text(_all(), color=True)
    assert ANSI.search(coloured), "colour was requested but no escape sequence was written"
    assert ANSI.sub("", coloured) == EXPECTED_TEXT
    # the bracketed text in the message reached the terminal verbatim (not eaten as rich markup)
    assert "[use FloatFunctional]" in coloured


def test_color_summary_and_all_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    buf = io.StringIO()
    render_summary([], color=True, out=buf, files_checked=4)
    assert ANSI.search(buf.getvalue())
    assert ANSI.sub("", buf.getvalue()) == "All checks passed!\n"


def test_plain_text_does_not_import_rich() -> None:
    code = (
        "import io, sys\n"
        "from qlint.diagnostics import Diagnostic, Span\n"
        "from qlint.report import render\n"
        "buf = io.StringIO()\n"
        "d = [Diagnostic('QL202', 'm [x]', Span('a.py', 1, 1))]\n"
        "for fmt in ('text', 'json', 'github', 'sarif'):\n"
        "    render(d, fmt, sources={'a.py': 'x\\n'}, color=False, out=buf,\n"
        "           files_checked=1, tool_version='0')\n"
        "assert 'rich' not in sys.modules, sorted(m for m in sys.modules if m.startswith('rich'))\n"
        "assert 'torch' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------- summary


def _summary(diags: list[Diagnostic]) -> str:
    buf = io.StringIO()
    render_summary(diags, color=False, out=buf, files_checked=10)
    return buf.getvalue()


def test_summary_all_passed() -> None:
    assert _summary([]) == "All checks passed!\n"


def test_summary_singular_and_no_fix_line() -> None:
    assert _summary([_multiline()]) == "Found 1 problem (0 errors, 1 warning, 0 info) in 1 file.\n"


def test_summary_safe_fixes_only() -> None:
    out = _summary([_add(), _add()])
    assert out.splitlines()[1] == "[*] 2 fixable with `qlint check --fix`."


def test_summary_unsafe_fixes_only() -> None:
    out = _summary([_tab(), _nosource()])  # one unsafe, one display-only (never counted)
    assert out.splitlines() == [
        "Found 2 problems (1 error, 1 warning, 0 info) in 2 files.",
        "No safe fixes available (1 fix is available with `qlint check --fix --unsafe-fixes`).",
    ]


# ------------------------------------------------------------------------------------------------ json


def test_json_fields() -> None:
    data = json.loads(render_json([_add(), _multiline()]))
    assert isinstance(data, list) and len(data) == 2
    first = data[0]
    assert first == {
        "code": "QL103",
        "name": "float-op-on-quantized",
        "severity": "error",
        "message": "`+=` on quantized tensors has no quantized kernel [use FloatFunctional] at 100%",
        "filename": X,
        "location": {"row": 6, "column": 9},
        "end_location": {"row": 6, "column": 24},
        "fix": {
            "applicability": "safe",
            "message": "Replace with FloatFunctional.add",
            "edits": [
                {
                    "content": "out = self.ff.add(out, identity)",
                    "location": {"row": 6, "column": 9},
                    "end_location": {"row": 6, "column": 24},
                }
            ],
        },
        "url": RULES["QL103"].url,
        "model": "resnet18",
        "module": "layer1.0",
        "related": [
            {
                "filename": "torchvision/models/resnet.py",
                "location": {"row": 102, "column": 9},
                "end_location": {"row": 102, "column": 24},
                "message": "in BasicBlock.forward",
            }
        ],
    }
    second = data[1]
    assert second["fix"] is None and second["related"] == [] and second["model"] is None
    assert second["end_location"] == {"row": 6, "column": 24}


def test_json_is_stable_indented_and_keeps_unicode() -> None:
    text = render_json([_wide()])
    assert text == render_json([_wide()])
    assert text.startswith('[\n  {\n    "code": "QL104",')
    assert "量化" in text
    keys = list(json.loads(text)[0])
    assert keys == sorted(keys)
    assert render_json([]) == "[]"


def test_json_end_location_defaults_to_start() -> None:
    (obj,) = json.loads(render_json([_nosource()]))
    assert obj["location"] == obj["end_location"] == {"row": 3, "column": 1}
    assert obj["fix"] == {"applicability": "display-only", "message": "Drop it", "edits": []}


# ---------------------------------------------------------------------------------------------- github


def test_github_exact_lines() -> None:
    out = render_github([_add(), _multiline(), Diagnostic("QL301", "slow", Span("a.py", 1, 2))])
    assert out.splitlines() == [
        "::error file=examples/x.py,line=6,col=9,endLine=6,endColumn=24,title=QL103 (float-op-on-quantized)::"
        "QL103 `+=` on quantized tensors has no quantized kernel [use FloatFunctional] at 100%25",
        "::warning file=examples/x.py,line=4,col=5,endLine=6,endColumn=24,title=QL202 (reused-module)::"
        "QL202 module `relu` is called at 2 sites",
        "::warning file=a.py,line=1,col=2,endLine=1,endColumn=2,title=QL301 (dilated-grouped-conv)::QL301 slow",
    ]
    assert out.endswith("\n")
    assert render_github([]) == ""


@pytest.fixture
def info_rule(monkeypatch: pytest.MonkeyPatch) -> str:
    """A temporary info-level rule (the catalog may not have one)."""
    from qlint.rules.base import REGISTRY, Rule

    class TestInfo(Rule):
        """## What it does
        A note."""

        code = "QL999"
        name = "test-info"
        severity = Severity.INFO
        basis = (Basis.SOURCE,)
        summary = "a note"

    REGISTRY.pop("QL999")  # defined only for this test
    monkeypatch.setitem(RULES, "QL999", TestInfo())
    return "QL999"


def test_info_severity_in_every_format(info_rule: str, sarif_validator: jsonschema.protocols.Validator) -> None:
    d = Diagnostic(info_rule, "just so you know", Span("a.py", 1, 1))
    assert render_github([d]).startswith("::notice file=a.py,")
    assert _summary([d, _add()]).startswith("Found 2 problems (1 error, 0 warnings, 1 info) in 2 files.")
    assert json.loads(render_json([d]))[0]["severity"] == "info"
    doc = json.loads(render_sarif([d], tool_version="0"))
    assert doc["runs"][0]["results"][0]["level"] == "note"
    assert doc["runs"][0]["tool"]["driver"]["rules"][-1]["defaultConfiguration"]["level"] == "note"
    assert sarif_validator.is_valid(doc)


def test_github_escaping() -> None:
    assert escape_data("50% a\r\nb:c,d") == "50%25 a%0D%0Ab:c,d"
    assert escape_property("50% a\r\nb:c,d") == "50%25 a%0D%0Ab%3Ac%2Cd"
    d = Diagnostic("QL202", "line one\nline two: 5%, ok", Span("dir,1\\odd:name.py", 2, 3))
    (line,) = render_github([d]).splitlines()
    assert line == (
        "::warning file=dir%2C1/odd%3Aname.py,line=2,col=3,endLine=2,endColumn=3,"
        "title=QL202 (reused-module)::"
        "QL202 line one%0Aline two: 5%25, ok"
    )


# ----------------------------------------------------------------------------------------------- sarif


@pytest.fixture(scope="module")
def sarif_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert schema["properties"]["version"]["enum"] == ["2.1.0"]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("diags", [[], _all(), [_add()], [_nosource()]], ids=["empty", "all", "fix", "nosource"])
def test_sarif_is_schema_valid(sarif_validator: jsonschema.protocols.Validator, diags: list[Diagnostic]) -> None:
    doc = json.loads(render_sarif(diags, tool_version="1.2.3"))
    errors = sorted(sarif_validator.iter_errors(doc), key=str)
    assert not errors, "\n".join(e.message for e in errors)


def test_sarif_validator_rejects_a_broken_log(sarif_validator: jsonschema.protocols.Validator) -> None:
    doc = json.loads(render_sarif([_add()], tool_version="1"))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert not sarif_validator.is_valid(doc)


def test_sarif_content() -> None:
    doc = json.loads(render_sarif(_all(), tool_version="1.2.3"))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-schema-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "qlint" and driver["version"] == "1.2.3"
    assert driver["informationUri"].startswith("https://")
    rules = driver["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    qlevels = {"error": "error", "warning": "warning", "info": "note"}
    for rule in rules:
        info = RULES[rule["id"]]
        assert rule["name"] == info.name
        assert rule["shortDescription"]["text"] == info.summary
        assert rule["helpUri"] == info.url
        assert rule["defaultConfiguration"]["level"] == qlevels[info.severity.value]

    results = run["results"]
    assert [r["ruleId"] for r in results] == ["QL202", "QL103", "QL201", "QL104", "QL401"]
    for res in results:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    add = results[1]
    assert add["level"] == "error"
    assert add["message"]["text"] == (
        "`+=` on quantized tensors has no quantized kernel \\[use FloatFunctional\\] at 100%"
    )
    assert add["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "examples/x.py"},
        "region": {"startLine": 6, "startColumn": 9, "endLine": 6, "endColumn": 24},
    }
    assert add["relatedLocations"] == [
        {
            "id": 0,
            "physicalLocation": {
                "artifactLocation": {"uri": "torchvision/models/resnet.py"},
                "region": {"startLine": 102, "startColumn": 9, "endLine": 102, "endColumn": 24},
            },
            "message": {"text": "in BasicBlock.forward"},
        }
    ]
    (fix,) = add["fixes"]
    assert fix["description"]["text"] == "Replace with FloatFunctional.add"
    (change,) = fix["artifactChanges"]
    assert change["artifactLocation"]["uri"] == "examples/x.py"
    assert change["replacements"] == [
        {
            "deletedRegion": {"startLine": 6, "startColumn": 9, "endLine": 6, "endColumn": 24},
            "insertedContent": {"text": "out = self.ff.add(out, identity)"},
        }
    ]
    assert add["properties"] == {"model": "resnet18", "module": "layer1.0"}
    # a fix without edits (QL201 here, QL401 display-only) is not a SARIF fix
    assert "fixes" not in results[2] and "fixes" not in results[4]
    assert "relatedLocations" not in results[0]


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("examples/x.py", "examples/x.py"),
        ("my models\\res net.py", "my%20models/res%20net.py"),
        ("a/量化.py", "a/%E9%87%8F%E5%8C%96.py"),
        ("/abs/p q.py", "file:///abs/p%20q.py"),
        ("C:\\work\\m.py", "file:///C:/work/m.py"),
        ("weird:name#1.py", "weird%3Aname%231.py"),
    ],
)
def test_sarif_uris(path: str, uri: str) -> None:
    assert artifact_uri(path) == uri


def test_sarif_uri_with_space_is_schema_valid(sarif_validator: jsonschema.protocols.Validator) -> None:
    d = Diagnostic("QL401", "m", Span("my dir\\file name.py", 1, 1, 1, 4))
    doc = json.loads(render_sarif([d], tool_version="0"))
    assert sarif_validator.is_valid(doc)
    loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc["uri"] == "my%20dir/file%20name.py"


# ---------------------------------------------------------------------------------------------- render


def _render(fmt: str, diags: list[Diagnostic]) -> str:
    buf = io.StringIO()
    render(diags, fmt, sources={X: X_SRC}, color=False, out=buf, files_checked=2, tool_version="9.9")
    return buf.getvalue()


def test_render_dispatch() -> None:
    diags = _all()
    assert FORMATS == ("text", "json", "github", "sarif")
    assert _render("text", diags) == EXPECTED_TEXT
    assert _render("json", diags) == render_json(diags) + "\n"
    assert _render("github", diags) == render_github(diags)
    assert _render("sarif", diags) == render_sarif(diags, tool_version="9.9") + "\n"
    assert _render("text", []) == "All checks passed!\n"
    assert json.loads(_render("json", [])) == []


def test_render_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        _render("xml", [])
