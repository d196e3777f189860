"""Tables for the terminal (rich) and for Markdown (the committed summary, docs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from durastate.bench.compare import Comparison
from durastate.bench.results import Measurement, RunResult

MAIN_HEADERS = ["backend", "serializer", "payload", "kind", "bytes", "CAS µs", "CAS p99",
                "CAS CPU", "LWW µs", "unchanged µs", "read µs", "report() µs", "updates/s",
                "calls/update", "writes/update", "HTTP/update", "reporter writes"]
REF_HEADERS = ["backend", "reference", "payload", "median µs", "p99 µs", "CPU µs", "HTTP/op",
               "durastate µs", "durastate CPU", "latency ratio", "CPU ratio"]
TARGET_HEADERS = ["target", "backend", "value", "limit", "result", "detail"]


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _calls(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def main_rows(result: RunResult, kinds: Iterable[str] = ("dict", "model")) -> list[list[str]]:
    """One row per backend x serializer x payload x kind; columns per operation."""
    cells: dict[tuple[str, ...], dict[str, Measurement]] = {}
    for m in result.durastate():
        if m.kind in kinds:
            cells.setdefault((m.backend, m.serializer, m.payload, m.kind), {})[m.operation] = m
    rows = []
    for (backend, serializer, payload, kind), ops in cells.items():
        cas, rep = ops.get("update_cas"), ops.get("report")

        def median(op: str, ops: dict[str, Measurement] = ops) -> str:
            m = ops.get(op)
            if m is None:
                return "—"
            return "error" if m.error else _num(m.median_us)

        sized = next((m for m in ops.values() if m.stored_bytes), None)
        rows.append([
            backend, serializer, payload, kind,
            str(sized.stored_bytes) if sized else "—",
            median("update_cas"), _num(cas.p99_us if cas else None),
            _num(cas.cpu_us if cas else None), median("update_lww"),
            median("update_unchanged"), median("read"), median("report"),
            _num(cas.ops_per_s if cas else None),
            _calls(cas.backend_calls if cas else None),
            _calls(cas.backend_writes if cas else None),
            _calls(cas.http_requests if cas else None),
            (f"{rep.extra['backend_writes']} ≤ {rep.extra['write_bound']}"
             if rep and rep.ok else "—"),
        ])
    return rows


def reference_rows(result: RunResult) -> list[list[str]]:
    rows = []
    for m in result.measurements:
        if m.subject == "durastate":
            continue
        if m.error:
            rows.append([m.backend, f"{m.subject}: {m.name}", m.payload, "error", "", "", "",
                         "", "", "", m.error[:80]])
            continue
        rows.append([
            m.backend, f"{m.subject}: {m.name}", m.payload, _num(m.median_us), _num(m.p99_us),
            _num(m.cpu_us), _calls(m.http_requests),
            _num(m.extra.get("durastate_median_us")), _num(m.extra.get("durastate_cpu_us")),
            _ratio(m.extra.get("ratio_latency")), _ratio(m.extra.get("ratio_cpu")),
        ])
    return rows


def _ratio(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2f}x"


def target_rows(result: RunResult) -> list[list[str]]:
    rows = []
    for t in result.targets:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["passed"]]
        value = t["value"]
        rows.append([t["target"], t["backend"], "—" if value is None else f"{value:.3g}",
                     f"{t['limit']:g} {t['unit']}".strip(), verdict, t.get("detail", "")])
    return rows


def compare_rows(comparisons: Sequence[Comparison]) -> list[list[str]]:
    return [[c.new.subject, c.new.name, c.new.backend, c.new.serializer, c.new.payload,
             c.new.kind, c.new.operation, _num(c.old.median_us), _num(c.new.median_us),
             _ratio(c.latency_ratio), _ratio(c.cpu_ratio)] for c in comparisons]


COMPARE_HEADERS = ["subject", "name", "backend", "serializer", "payload", "kind", "operation",
                   "old µs", "new µs", "latency new/old", "CPU new/old"]


def rich_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def clean(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_report(result: RunResult, console: Console,
                 comparisons: Sequence[Comparison] | None = None) -> None:
    console.print(rich_table("durastate: custom-status operations (per operation)",
                             MAIN_HEADERS, main_rows(result)))
    refs = reference_rows(result)
    if refs:
        console.print(rich_table("anchors and peers (ratio = durastate / reference)",
                                 REF_HEADERS, refs))
    if result.targets:
        console.print(rich_table("targets", TARGET_HEADERS, target_rows(result)))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if comparisons is not None:
        console.print(rich_table("compared with the earlier run", COMPARE_HEADERS,
                                 compare_rows(comparisons)))


def summary_markdown(result: RunResult, chart_name: str | None = "chart.png") -> str:
    """The committed summary: machine, date, command, method, tables, targets, profiles."""
    meta = result.meta
    machine = meta.get("machine", {})
    out = [
        "# durastate benchmark run",
        "",
        f"- date: {meta.get('date')}",
        f"- command: `{meta.get('command')}`",
        f"- machine: {machine.get('cpu')} ({machine.get('cpus')} CPUs), "
        f"{machine.get('platform')}, Python {machine.get('python')}",
        f"- durastate {meta.get('durastate')}; packages: "
        + ", ".join(f"{k} {v}" for k, v in meta.get("packages", {}).items()),
        "- backends: " + ", ".join(f"{b['label']} ({b['url']})" for b in meta.get("backends", [])),
        f"- effort: {meta.get('effort')}",
        "",
        "## Method",
        "",
        *[f"- {line}" for line in meta.get("method", [])],
        "",
    ]
    if chart_name:
        out += [f"![update cost by backend, serializer and payload size]({chart_name})", ""]
    if result.targets:
        out += ["## Targets", "", markdown_table(TARGET_HEADERS, target_rows(result)), ""]
    refs = reference_rows(result)
    if refs:
        out += ["## Anchors and peers (ratio = durastate / reference, same run, same server)",
                "", markdown_table(REF_HEADERS, refs), ""]
    out += ["## All cells", "", markdown_table(MAIN_HEADERS, main_rows(result)), ""]
    if result.notes:
        out += ["## Notes", "", *[f"- {note}" for note in result.notes], ""]
    profiles = [t for t in result.targets if t.get("profile")]
    if profiles:
        out += ["## Profiles of missed targets", ""]
        for t in profiles:
            out += [f"### {t['id']} on {t['backend']}", "", t["target"], "",
                    f"value {t['value']:.3g} against {t['limit']:g} {t['unit']}: {t['detail']}",
                    "", "durastate:", "", "```", t["profile"], "```", ""]
            if t.get("profile_reference"):
                out += [f"reference ({t['profile_cell'].get('reference')}):", "", "```",
                        t["profile_reference"], "```", ""]
    return "\n".join(out)
