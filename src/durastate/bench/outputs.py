"""Write a run's files: results.json, results.csv, chart.png and summary.md."""

from __future__ import annotations

import contextlib
from pathlib import Path

from durastate.bench.charts import write_chart
from durastate.bench.report import summary_markdown
from durastate.bench.results import RunResult, write_csv, write_json

JSON_NAME, CSV_NAME, CHART_NAME, SUMMARY_NAME = (
    "results.json", "results.csv", "chart.png", "summary.md")


def write_outputs(result: RunResult, directory: Path, *, chart: bool = True) -> list[Path]:
    """The files written, in order; a chart is skipped with a note if matplotlib is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / JSON_NAME, directory / CSV_NAME]
    chart_name: str | None = None
    if chart:
        try:
            if write_chart(result, directory / CHART_NAME):
                written.append(directory / CHART_NAME)
                chart_name = CHART_NAME
        except ImportError:
            result.notes.append("no chart: matplotlib is not installed "
                                "(pip install 'durastate[charts]')")
    else:
        with contextlib.suppress(FileNotFoundError):
            (directory / CHART_NAME).unlink()
    write_json(result, directory / JSON_NAME)
    write_csv(result, directory / CSV_NAME)
    (directory / SUMMARY_NAME).write_text(summary_markdown(result, chart_name))
    written.append(directory / SUMMARY_NAME)
    return written
