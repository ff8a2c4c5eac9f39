"""``qlint verify --html report.html``: one self-contained page (placeholder until the charts land)."""

from __future__ import annotations

REPORT_HINT = "--html needs the report extra (plotly): pip install qlint[report]"


class MissingReportExtra(RuntimeError):
    """plotly is not installed (exit 2 with the install command)."""


def check_available() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError as exc:
        raise MissingReportExtra(REPORT_HINT) from exc


def write_html(results, path: str) -> None:
    raise NotImplementedError
