"""Finding and building the models of a file, and what happens when that fails."""

from __future__ import annotations

from conftest import codes

BLOCK = """
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3)

    def forward(self, x):
        return self.conv(x)
"""


def test_pragma_builds_a_model_that_needs_arguments(write, qlint_json):
    path = write(
        "pragma.py",
        BLOCK
        + """

# qlint: model = Net("test")
class Net(nn.Module):
    def __init__(self, phase):
        super().__init__()
        self.block = Block(3)

    def forward(self, x):
        return self.block(x)
""",
    )
    _, diags = qlint_json(path, "--select", "QL1")
    assert codes(diags) == [("QL101", 10), ("QL102", 20)]
    assert {d["model"] for d in diags} == {'Net("test")'}


def test_root_class_needing_arguments_gets_ql001_with_the_pragma_to_add(write, qlint_json):
    path = write(
        "needs.py",
        BLOCK
        + """

class Net(nn.Module):
    def __init__(self, phase):
        super().__init__()
        self.block = Block(3)

    def forward(self, x):
        return self.block(x)
""",
    )
    _, diags = qlint_json(path)
    # Net is a root that cannot be built; Block, used by Net, is then checked by nothing: said, not dropped
    assert codes(diags) == [("QL001", 4), ("QL001", 13)]
    block, net = diags
    assert "`phase`" in net["message"] and "# qlint: model = Net(phase=...)" in net["message"]
    assert "`Net` names it and cannot be built either" in block["message"]


def test_model_option_and_config_models(write, qlint_json, tmp_path):
    path = write("opt.py", BLOCK)
    _, diags = qlint_json(path, "--model", "Block(4)", "--select", "QL101")
    assert codes(diags) == [("QL101", 10)] and diags[0]["model"] == "Block(4)"
    write("pyproject.toml", '[tool.qlint]\nmodels = ["opt.py:Block(5)"]\nselect = ["QL101"]\n')
    _, diags = qlint_json("opt.py", cwd=tmp_path)
    assert [d["model"] for d in diags] == ["Block(5)"]


def test_only_roots_are_checked_and_factories_are_found(write, qlint_json):
    path = write(
        "roots.py",
        """
        import torch.nn as nn
        from torch.ao.quantization import DeQuantStub, QuantStub


        class Inner(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 1)

            def forward(self, x):
                return self.conv(x)


        class Outer(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant, self.dequant = QuantStub(), DeQuantStub()
                self.inner = Inner()

            def forward(self, x):
                return self.dequant(self.inner(self.quant(x)))


        def make_model():
            return nn.Sequential(nn.Conv2d(3, 3, 1))
        """,
    )
    _, diags = qlint_json(path, "--select", "QL101")
    # Inner alone would miss its stubs; it is checked through Outer. make_model's Sequential is a root.
    assert [(d["model"], d["location"]["row"]) for d in diags] == [("make_model()", 25)]


def test_file_is_imported_not_run_and_its_output_is_silenced(write, qlint):
    path = write(
        "script.py",
        """
        import torch.nn as nn
        import warnings

        print("user output at import")
        warnings.warn("user warning")


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return self.fc(x)


        if __name__ == "__main__":
            raise SystemExit("must not run")
        """,
    )
    code, out, err = qlint("check", path, "--format", "json", "--select", "QL101")
    assert code == 1 and err == ""
    assert out.lstrip().startswith("[") and "user output" not in out


def test_constructor_that_raises_is_ql001_at_the_class_line(write, qlint_json):
    path = write(
        "raises.py",
        """
        import torch.nn as nn


        class Broken(nn.Module):
            def __init__(self):
                super().__init__()
                raise RuntimeError("no weights file")
        """,
    )
    code, diags = qlint_json(path)
    assert code == 1 and codes(diags) == [("QL001", 4)]
    assert "RuntimeError: no weights file" in diags[0]["message"]
    assert diags[0]["related"][0]["location"]["row"] == 7


def test_import_error_is_ql001_at_the_import_line(write, qlint_json):
    path = write(
        "imports.py",
        """
        import torch

        import not_a_real_package_qlint
        """,
    )
    _, diags = qlint_json(path)
    assert codes(diags) == [("QL001", 3)]
    assert "ModuleNotFoundError" in diags[0]["message"] and "install the missing package" in diags[0]["message"]


def test_untraceable_model_is_ql002_where_tracing_stopped(write, qlint_json):
    path = write(
        "flow.py",
        """
        import torch.nn as nn


        class Flow(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())

            def forward(self, x):
                if x.sum() > 0:
                    return self.head(x)
                return x
        """,
    )
    _, diags = qlint_json(path)
    assert ("QL002", 10) in codes(diags)
    ql002 = next(d for d in diags if d["code"] == "QL002")
    assert "`head`" in ql002["message"]  # the traceable submodule is still checked
    assert ("QL201", 7) in codes(diags)


def test_relative_imports_inside_a_package(write, qlint_json):
    write("pkg/__init__.py", "")
    write("pkg/blocks.py", BLOCK)
    path = write(
        "pkg/model.py",
        """
        import torch.nn as nn

        from .blocks import Block


        def build_model() -> nn.Module:
            return nn.Sequential(Block(3))
        """,
    )
    _, diags = qlint_json(path, "--select", "QL101")
    assert [d["location"]["row"] for d in diags] == [7]
    assert diags[0]["related"][0]["filename"].endswith("blocks.py")


def test_a_class_named_inside_another_that_does_not_contain_it_is_reported(write, qlint_json):
    path = write(
        "named.py",
        """
        import torch.nn as nn


        class Head(nn.Module):
            def __init__(self, classes):
                super().__init__()
                self.fc = nn.Linear(8, classes)

            def forward(self, x):
                return self.fc(x)


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)

            def forward(self, x):
                if isinstance(self.conv, Head):
                    return x
                return self.conv(x)
        """,
    )
    _, diags = qlint_json(path, "--select", "QL001")
    assert codes(diags) == [("QL001", 4)]
    assert "`classes`" in diags[0]["message"] and "no model qlint built contains one" in diags[0]["message"]


NET = """
import torch.nn as nn

{pragma}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)
"""


def test_a_malformed_input_shape_pragma_is_reported_at_its_line(write, qlint_json):
    path = write("shape.py", NET.format(pragma="# qlint: input-shape = 1x3xfoo"))
    _, diags = qlint_json(path, "--select", "QL001")
    assert codes(diags) == [("QL001", 3)]
    assert "1x3xfoo" in diags[0]["message"] and "default input shape" in diags[0]["message"]


def test_an_unknown_pragma_key_is_reported(write, qlint_json):
    path = write("key.py", NET.format(pragma="# qlint: input_shape = 1x3x32x32"))
    _, diags = qlint_json(path, "--select", "QL001")
    assert codes(diags) == [("QL001", 3)]
    assert "unknown key `input_shape`" in diags[0]["message"] and "`input-shape`" in diags[0]["message"]


def test_a_source_pass_that_fails_is_reported_not_silent(write, qlint_json, monkeypatch):
    import libcst

    from qlint.source import index

    def refuse(text, *args, **kwargs):
        raise libcst.ParserSyntaxError(
            "a syntax libcst does not know", lines=text.splitlines(), raw_line=3, raw_column=0
        )

    monkeypatch.setattr(index.cst, "parse_module", refuse)
    index._parsed.cache_clear()
    path = write("new_syntax.py", "from torch.ao.quantization import prepare\n\nprepare(model)\n")
    _, diags = qlint_json(path, "--no-graph")
    assert [(d["code"], d["location"]["row"]) for d in diags] == [("QL000", 3)]
    assert "libcst" in diags[0]["message"] and "QL403" in diags[0]["message"]


INIT_ON_A_LEAF = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.scale = nn.Parameter(torch.empty(8))
        self.scale.{fill}  # {comment}

    def forward(self, x):
        return self.conv(x) * self.scale.view(1, -1, 1, 1)
"""


def test_random_init_on_meta_builds_or_fails_as_on_the_cpu(write, qlint_json):
    # qlint builds on the meta device, where it skips the work of normal_/uniform_ (no values to fill):
    # a fill that torch rejects still fails the build, one it accepts still builds
    rejected = write("leaf.py", INIT_ON_A_LEAF.format(fill="normal_(0, 1)", comment="a leaf requiring grad: raises"))
    _, found = qlint_json(rejected, "--select", "QL001")
    assert [(d["code"], d["message"].split(":")[0]) for d in found] == [
        ("QL001", "building `Net()` raised RuntimeError")
    ]
    accepted = write("nograd.py", INIT_ON_A_LEAF.format(fill="data.uniform_(-1, 1)", comment="accepted"))
    _, found = qlint_json(accepted, "--select", "QL001,QL101")
    assert codes(found) == [("QL101", 13)]  # built, traced and checked: the float input reaching the conv


def test_a_model_that_nests_its_own_class_is_still_checked(write, qlint_json):
    """``QuantWrapper(m)`` where ``m`` holds a ``QuantWrapper`` of its own (torch's test model
    ``AnnotatedSingleLayerLinearModel``): the root must not be dropped as "a submodule of another model"
    because its class appears inside itself. Before, this file was "All checks passed!" while its
    forward fails after convert (double quantization, QL109)."""
    path = write(
        "nested.py",
        """
        # qlint: input-shape = 1x5
        import torch.nn as nn
        from torch.ao.quantization import QuantWrapper


        class Annotated(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = QuantWrapper(nn.Linear(5, 5))

            def forward(self, x):
                return self.fc(x)


        def build_model():
            return QuantWrapper(Annotated())
        """,
    )
    code, found = qlint_json(path)
    assert code == 1
    assert codes(found) == [("QL109", 16)]
