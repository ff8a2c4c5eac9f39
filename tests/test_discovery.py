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
    # Block is used by Net: a building block, not reported; Net is a root that cannot be built
    assert codes(diags) == [("QL001", 13)]
    assert "`phase`" in diags[0]["message"] and "# qlint: model = Net(phase=...)" in diags[0]["message"]


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
