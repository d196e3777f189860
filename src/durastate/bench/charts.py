"""The PNG chart: three dot plots (update, read, query), log scale, lower is better.

Dots, not bars: on a log scale a bar has no zero to start from, so its length would lie.
Each panel puts one row per backend (or backend and cell) and one marker per series;
legends sit outside the panels, on the right, so no dot is hidden.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from durastate.bench.payloads import SIZES
from durastate.bench.results import Measurement, RunResult
from durastate.errors import MissingDependency

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MARKERS = ("o", "s", "^", "D", "v")
#: durastate's own series; no red, which is Celery's.
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:cyan", "tab:olive")
#: References by the series name they are drawn under: (colour, marker, hollow). A name
#: says what the reference does (its condition, its client), so no two references of one
#: row share a series and hide each other.
REFERENCE_STYLE = {
    "raw conditional write": ("black", "|", False),
    "raw conditional write, SDK's default client": ("dimgray", "|", False),
    "raw conditional write, connection pool": ("dimgray", "D", True),
    "raw write, no condition": ("black", "d", True),
    "raw write, no condition, SDK's default client": ("dimgray", "d", True),
    "lean limit: hand-built conditional write": ("tab:purple", "|", False),
    "Celery store_result": ("tab:red", "x", False),
    "raw read + orjson.loads": ("black", "o", True),
    "raw read + orjson.loads, SDK's default client": ("dimgray", "o", True),
    "raw read + Model.model_validate_json": ("black", "s", True),
    "lean limit: hand-built read + orjson.loads": ("tab:purple", "o", True),
    "raw keyset paging, 1k": ("black", "o", True),
    "raw keyset paging, 100k": ("black", "s", True),
}


def reference_series(ref: Measurement) -> str:
    """The series a reference is drawn under (a key of ``REFERENCE_STYLE``)."""
    if ref.subject == "peer":
        return "Celery store_result"
    if ref.operation in ("raw_read", "raw_read_typed"):
        what = ("read + Model.model_validate_json" if ref.operation == "raw_read_typed"
                else "read + orjson.loads")
    elif ref.compares_to == "update_lww":
        what = "write, no condition"
    else:
        what = "conditional write"
    if ref.subject == "lean":
        return f"lean limit: hand-built {what}"
    if "default client" in ref.name:
        return f"raw {what}, SDK's default client"
    if "ConnectionPool" in ref.name:
        return f"raw {what}, connection pool"
    return f"raw {what}"


Row = tuple[str, dict[str, float]]  # (row label, {series: µs})


def _ours(result: RunResult, backend: str, operation: str, payload: str = "150B",
          kind: str = "dict") -> float | None:
    found = [m for m in result.durastate() if m.backend == backend and m.ok
             and m.serializer == "json" and m.kind == kind and m.payload == payload
             and m.operation == operation]
    return found[0].median_us if found else None


def _references(result: RunResult, backend: str, operations: tuple[str, ...],
                payload: str = "150B") -> list[Measurement]:
    return [m for m in result.measurements if m.subject != "durastate" and m.ok
            and m.backend == backend and m.payload == payload and m.operation in operations
            and m.median_us]


def _update_rows(result: RunResult, backends: list[str]) -> list[Row]:
    rows: list[Row] = []
    for backend in backends:
        series = {f"durastate {size}": _ours(result, backend, "update_cas", size)
                  for size in SIZES}
        series["durastate 150B, no etag"] = _ours(result, backend, "update_lww")
        for ref in _references(result, backend, ("raw_update", "store_result")):
            series[reference_series(ref)] = ref.median_us
        rows.append((backend, {k: v for k, v in series.items() if v}))
    return rows


def _read_rows(result: RunResult, backends: list[str]) -> list[Row]:
    rows: list[Row] = []
    for backend in backends:
        series = {"get_instance + custom_status": _ours(result, backend, "read"),
                  "get_instance + read_custom_status_as": _ours(result, backend,
                                                                "read_typed")}
        for ref in _references(result, backend, ("raw_read", "raw_read_typed")):
            series[reference_series(ref)] = ref.median_us
        rows.append((backend, {k: v for k, v in series.items() if v}))
    return rows


def _query_rows(result: RunResult, backends: list[str]) -> list[Row]:
    rows: list[Row] = []
    for backend in backends:
        for cell, unit in (("query", "µs per query, 50 matches"),
                           ("iter", "µs per item of iter_instances")):
            series = {f"{size} instances": _ours(result, backend, f"{cell}_{size}")
                      for size in ("1k", "100k")}
            for size in ("1k", "100k"):
                raw = [m for m in result.measurements if m.subject == "anchor" and m.ok
                       and m.backend == backend and m.operation == f"raw_{cell}_{size}"]
                if raw:
                    series[f"raw keyset paging, {size}"] = raw[0].median_us
            if any(series.values()):
                rows.append((f"{backend}: {cell} ({unit})",
                             {k: v for k, v in series.items() if v}))
    return rows


def _microseconds(value: float, _: object) -> str:
    """Tick labels short enough never to collide: 0.5, 20, 1k, 50k."""
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def _panel(ax: Axes, title: str, rows: list[Row]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    labels = [label for label, _ in rows]
    series: list[str] = []
    for _, values in rows:
        series += [name for name in values if name not in series]
    for y in range(len(rows)):
        ax.axhline(y, color="0.9", linewidth=0.8, zorder=0)
    ours = 0
    for name in series:
        ys = [y for y, (_, values) in enumerate(rows) if name in values]
        xs = [rows[y][1][name] for y in ys]
        style = REFERENCE_STYLE.get(name)
        if style is None:
            ax.scatter(xs, ys, marker=MARKERS[ours % len(MARKERS)], s=36, label=name,
                       color=COLORS[ours % len(COLORS)], zorder=3)
            ours += 1
            continue
        color, marker, hollow = style
        if hollow:
            ax.scatter(xs, ys, marker=marker, s=80, facecolors="none", edgecolors=color,
                       linewidths=1.4, label=name, zorder=4)
        else:
            ax.scatter(xs, ys, marker=marker, s=90, color=color, linewidths=2.0, label=name,
                       zorder=4)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    wide = high / max(low, 1e-9) > 1e3  # over three decades: 1-2-5 ticks would collide
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_microseconds))
    # a panel spanning under a decade would label its minor ticks 3x10^0, 4x10^0, ...
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", which="major", color="0.85")
    ax.set_xlabel("median µs per operation (log scale) — lower is better", fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def write_chart(result: RunResult, path: Path) -> bool:
    """Update, read and query panels; False when there is nothing to draw."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("the benchmark chart", "charts", "matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b["label"] for b in result.meta.get("backends", [])]
    panels: list[tuple[str, list[Row]]] = [
        ("update (json dict): set_custom_status with etag at each size, and without at 150 B;"
         " references at 150 B",
         _update_rows(result, backends)),
        ("read: one instance, json 150 B, untyped and typed, next to the raw read",
         _read_rows(result, backends)),
        ("query and iteration by table size (json 150 B statuses)",
         _query_rows(result, backends)),
    ]
    panels = [(title, [row for row in rows if row[1]]) for title, rows in panels]
    panels = [(title, rows) for title, rows in panels if rows]
    if not panels:
        return False
    heights = [max(1.6, 0.42 * len(rows) + 0.9) for _, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], panels, strict=True):
        _panel(ax, title, rows)
    meta: dict[str, Any] = result.meta
    fig.suptitle(f"durastate benchmark {meta.get('date', '')}: "
                 f"{meta.get('machine', {}).get('cpu', '')} — lower is better", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True
