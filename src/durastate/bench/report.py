"""Tables for the terminal (rich) and for Markdown (the committed summary, docs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from durastate.bench.compare import Comparison
from durastate.bench.results import Measurement, RunResult

MAIN_HEADERS = ["backend", "serializer", "payload", "kind", "bytes", "CAS µs", "CAS p99",
                "CAS CPU", "LWW µs", "unchanged µs", "cold µs", "clock-miss µs", "read µs",
                "typed read µs", "serialize µs", "report() µs", "updates/s", "calls/update",
                "writes/update", "HTTP/update", "HTTP/cold update", "reporter writes"]
REF_HEADERS = ["backend", "reference", "payload", "operation", "compared with", "median µs",
               "p99 µs", "CPU µs", "HTTP/op", "latency ratio", "CPU ratio"]
TARGET_HEADERS = ["target", "backend", "value", "limit", "result", "detail"]
SCALE_HEADERS = ["backend", "cell", "1k", "100k", "unit"]

#: Console columns whose text wraps within its cap rather than ending in an ellipsis, and
#: text columns that are not named like one.
WRAPPED = frozenset({"reference, by backend"})
LEFT_ALIGNED = WRAPPED
#: The console's tables: the essential columns, so they fit a 100-column terminal.
CONSOLE_MAIN_HEADERS = ["backend", "serializer", "size", "CAS", "LWW", "cold", "read",
                        "typed", "report", "HTTP"]
CONSOLE_REF_HEADERS = ["reference, by backend", "vs", "size", "µs", "ratio", "CPU ratio"]
CONSOLE_TARGET_HEADERS = ["target", "backend", "value", "limit", "result"]

def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _calls(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _cells(result: RunResult, kinds: Iterable[str]) -> dict[tuple[str, ...],
                                                         dict[str, Measurement]]:
    cells: dict[tuple[str, ...], dict[str, Measurement]] = {}
    for m in result.durastate():
        if m.kind in kinds and m.operation in CELL_OPERATIONS:
            cells.setdefault((m.backend, m.serializer, m.payload, m.kind), {})[m.operation] = m
    return cells


CELL_OPERATIONS = frozenset({"update_cas", "update_lww", "update_unchanged", "update_cold",
                             "update_clock_miss", "read", "read_typed", "serialize", "report"})


def _median(ops: dict[str, Measurement], op: str) -> str:
    m = ops.get(op)
    if m is None:
        return "—"
    return "error" if m.error else _num(m.median_us)


def main_rows(result: RunResult,
              kinds: Iterable[str] = ("dict", "model", "nulls")) -> list[list[str]]:
    """One row per backend x serializer x payload x kind; one figure per cell."""
    rows = []
    for (backend, serializer, payload, kind), ops in _cells(result, kinds).items():
        cas, rep, cold = ops.get("update_cas"), ops.get("report"), ops.get("update_cold")
        sized = next((m for m in ops.values() if m.stored_bytes), None)
        rows.append([
            backend, serializer, payload, kind,
            str(sized.stored_bytes) if sized else "—",
            _median(ops, "update_cas"), _num(cas.p99_us if cas else None),
            _num(cas.cpu_us if cas else None), _median(ops, "update_lww"),
            _median(ops, "update_unchanged"), _median(ops, "update_cold"),
            _median(ops, "update_clock_miss"), _median(ops, "read"),
            _median(ops, "read_typed"), _median(ops, "serialize"), _median(ops, "report"),
            _num(cas.ops_per_s if cas else None),
            _calls(cas.backend_calls if cas else None),
            _calls(cas.backend_writes if cas else None),
            _calls(cas.http_requests if cas else None),
            _calls(cold.http_requests if cold else None),
            (f"{rep.extra['backend_writes']} ≤ {rep.extra['write_bound']}"
             if rep and rep.ok else "—"),
        ])
    return rows


def console_main_rows(result: RunResult) -> list[list[str]]:
    """The console's view: dict payloads, medians in µs, HTTP requests per update."""
    rows = []
    for (backend, serializer, payload, _), ops in _cells(result, ("dict",)).items():
        cas = ops.get("update_cas")
        rows.append([backend, serializer, payload, _median(ops, "update_cas"),
                     _median(ops, "update_lww"), _median(ops, "update_cold"),
                     _median(ops, "read"), _median(ops, "read_typed"),
                     _median(ops, "report"), _calls(cas.http_requests if cas else None)])
    return rows


def scale_rows(result: RunResult) -> list[list[str]]:
    """Queries, iteration and footprint by table size, per backend."""
    rows = []
    backends = [b["label"] for b in result.meta.get("backends", [])]
    for backend in backends:
        def figure(operation: str, subject: str = "durastate",
                   backend: str = backend) -> str:
            found = [m for m in result.measurements if m.subject == subject
                     and m.backend == backend and m.operation == operation and m.ok]
            return _num(found[0].median_us) if found else "—"

        if figure("query_1k") == "—" and figure("query_100k") == "—":
            continue
        rows.append([backend, "query(runtime_status), 50 matches", figure("query_1k"),
                     figure("query_100k"), "µs per query"])
        rows.append([backend, "iter_instances()", figure("iter_1k"), figure("iter_100k"),
                     "µs per item"])
        if figure("raw_iter_1k", "anchor") != "—":
            rows.append([backend, "raw sqlite3 keyset paging", figure("raw_iter_1k", "anchor"),
                         figure("raw_iter_100k", "anchor"), "µs per row"])
        sized = result.find(subject="durastate", backend=backend, operation="footprint")
        if sized and sized[0].stored_bytes is not None:
            how = "allocated" if "tracemalloc" in sized[0].extra.get("method", "") else "file"
            rows.append([backend, f"footprint ({how})", "", str(sized[0].stored_bytes),
                         "bytes per instance"])
    return rows


def reference_rows(result: RunResult) -> list[list[str]]:
    """Anchors and peers: their own figures, and the ratios from the interleaved rounds."""
    rows = []
    for m in result.measurements:
        if m.subject == "durastate":
            continue
        if m.error:
            rows.append([m.backend, f"{m.subject}: {m.name}", m.payload, m.operation,
                         m.compares_to or "", "error", "", "", "", "", m.error[:80]])
            continue
        rows.append([
            m.backend, f"{m.subject}: {m.name}", m.payload, m.operation, m.compares_to or "",
            _num(m.median_us), _num(m.p99_us), _num(m.cpu_us), _calls(m.http_requests),
            _ratio(m.extra.get("ratio_latency")), _ratio(m.extra.get("ratio_cpu")),
        ])
    return rows


_SHORT = {"update_lww": "LWW", "update_cas": "CAS", "read": "read", "read_typed": "typed"}


def console_reference_rows(result: RunResult) -> list[list[str]]:
    """Each reference with the durastate cell it is held against (``CAS``, ``LWW``, ...),
    under a row naming its backend, its name once for all its sizes: whole names fit."""
    rows = []
    backend = named = None
    for m in result.measurements:
        if m.subject == "durastate" or not m.ok:
            continue
        if m.backend != backend:
            backend = m.backend
            rows.append([escape(backend), "", "", "", "", ""])
        name = f"  {m.subject}: {m.name}"
        against = m.compares_to or ""
        size = m.payload
        if against.startswith("iter_"):
            against, size = "iter", against.partition("_")[2]
        rows.append(["" if name == named else escape(name), _SHORT.get(against, against), size,
                     _num(m.median_us), _ratio(m.extra.get("ratio_latency")),
                     _ratio(m.extra.get("ratio_cpu"))])
        named = name
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


WEB_HEADERS = ["backend", "cell", "value", "detail"]
ASYNC_HEADERS = WEB_HEADERS


def web_rows(result: RunResult) -> list[list[str]]:
    """`--web`: the HTTP app's cells, one row each (the targets judge them)."""
    rows = []
    for m in result.durastate():
        if not m.operation.startswith("web_"):
            continue
        if not m.ok:
            rows.append([m.backend, m.operation, "error", (m.error or "")[:200]])
            continue
        e = m.extra
        if m.operation == "web_get":
            rows.append([m.backend, "GET /instances/{id} CPU", f"{_num(m.cpu_us)} µs/req",
                         f"ratio {_ratio(e['cpu_ratio_vs_minimal'])} to minimal "
                         f"{_num(e['minimal_cpu_us'])} µs/req; {_num(m.ops_per_s)} vs "
                         f"{_num(e['minimal_requests_per_s'])} req/s; in-process "
                         f"{_ratio(e['asgi_cpu_ratio_vs_minimal'])}"])
        elif m.operation == "web_sse_latency":
            how = "push" if e["push"] else f"poll {e['poll_interval_s']:g} s"
            rows.append([m.backend, f"SSE latency ({how})",
                         f"{_num((m.median_us or 0) / 1000)} ms",
                         f"p90 {_num(e['p90_ms'])} ms, max {_num(e['max_ms'])} ms, "
                         f"{m.ops} changes"])
        elif m.operation == "web_sse_fanout":
            rows.append([m.backend, f"{e['clients']:,} SSE clients, idle",
                         f"{e['reads_per_interval']:.2f} reads/poll",
                         f"poll {e['poll_interval_s']:g} s; 1 change: {e['delivered']}/"
                         f"{e['clients']} clients, {_num((m.median_us or 0) / 1000)} ms, "
                         f"{e['change_reads']} reads"])
    return rows


def async_rows(result: RunResult) -> list[list[str]]:
    """The async cells that compare with something in the same run: the sync store, and
    (where the async SDK is installed) the async SDK and the lean async limit."""
    rows = []
    for m in result.durastate():
        if m.operation not in ("async_set_status", "async_update_vs_sdk",
                               "async_in_flight_vs_sdk"):
            continue
        if not m.ok:
            rows.append([m.backend, m.operation, "error", (m.error or "")[:200]])
            continue
        e = m.extra
        if m.operation == "async_set_status":
            rows.append([m.backend, "async set_custom_status, one at a time",
                         f"{_num(m.cpu_us)} µs CPU", f"{_ratio(e['cpu_ratio_vs_sync'])} the "
                         f"sync store ({_num(e['sync_cpu_us'])} µs)"])
        elif m.operation == "async_in_flight_vs_sdk":
            rows.append([m.backend, f"1,000 updates, {e['in_flight']} in flight, vs the async "
                         "SDK", f"{_num(m.ops_per_s)} updates/s, {_num(m.cpu_us)} µs CPU",
                         f"{_ratio(e['throughput_ratio_vs_async_sdk'])} the updates/s and "
                         f"{_ratio(e['cpu_ratio_vs_async_sdk'])} the CPU of {e['sdk']}"])
        else:
            lean = ("" if "lean_cpu_us" not in e else  # the lean async limit: Azure only
                    f"; lean async limit {_num(e['lean_cpu_us'])} µs "
                    f"({_ratio(e['lean_cpu_ratio_vs_async_sdk'])})")
            rows.append([m.backend, "async set_custom_status vs the async SDK",
                         f"{_num(m.cpu_us)} µs CPU",
                         f"{_ratio(e['cpu_ratio_vs_async_sdk'])} {e['sdk']} "
                         f"({_num(e['sdk_cpu_us'])} µs){lean}"])
    return rows


def compare_rows(comparisons: Sequence[Comparison]) -> list[list[str]]:
    rows = []
    for c in comparisons:
        m = c.new
        who = "" if m.subject == "durastate" else f"{m.name} "
        rows.append([f"{m.backend} {who}{m.serializer} {m.payload} {m.kind} {m.operation}",
                     _num(c.old.median_us), _num(m.median_us), _ratio(c.latency_ratio),
                     _ratio(c.cpu_ratio)])
    return rows


COMPARE_HEADERS = ["cell", "old µs", "new µs", "latency new/old", "CPU new/old"]


def rich_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
               widths: dict[str, int] | None = None) -> Table:
    """A compact table: no outer box, one space between columns; ``widths`` caps the
    named columns (longer text ends in an ellipsis; summary.md has it whole)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                  padding=(0, 1), collapse_padding=True, title_justify="left",
                  show_edge=False)
    for header in headers:
        cap = (widths or {}).get(header)
        numeric = header not in {"backend", "serializer", "size", "reference", "target",
                                 "result", "limit", "cell", "unit", "vs", *LEFT_ALIGNED}
        wraps = header in WRAPPED
        table.add_column(header, overflow="fold" if wraps or not cap else "ellipsis",
                         max_width=cap, no_wrap=(bool(cap) and not wraps) or numeric,
                         justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def clean(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def console_target_rows(result: RunResult) -> list[list[str]]:
    return [[t["id"], t["backend"], row[2], row[3], row[4]]
            for t, row in zip(result.targets, target_rows(result), strict=True)]


def bench_console() -> Console:
    """The terminal's console; to a file or a pipe, 100 columns and no colour or redraws."""
    console = Console()
    return console if console.is_terminal else Console(width=100)


def print_report(result: RunResult, console: Console,
                 comparisons: Sequence[Comparison] | None = None,
                 output: Path | None = None) -> None:
    """The essential tables, each within 100 columns; summary.md has every column."""
    console.print(rich_table("durastate, dict payloads: median µs per operation (CAS: with "
                             "etag, LWW: without, cold: first write after opening, typed: "
                             "read_custom_status_as)", CONSOLE_MAIN_HEADERS,
                             console_main_rows(result), {"backend": 20}))
    scale = scale_rows(result)
    if scale:
        console.print(rich_table("queries and iteration by table size", SCALE_HEADERS, scale,
                                 {"backend": 20, "cell": 34}))
    refs = console_reference_rows(result)
    if refs:
        console.print(rich_table("anchors and peers: their median µs; ratio = durastate / "
                                 "reference (interleaved rounds)", CONSOLE_REF_HEADERS, refs,
                                 {"reference, by backend": 58}))
    web = web_rows(result)
    if web:
        console.print(rich_table("HTTP app (durastate serve): one uvicorn worker, memory and "
                                 "SQLite", WEB_HEADERS, web,
                                 {"backend": 10, "cell": 26, "value": 16, "detail": 44}))
    if result.targets:
        console.print(rich_table("targets", CONSOLE_TARGET_HEADERS,
                                 console_target_rows(result),
                                 {"target": 28, "backend": 20, "limit": 20}))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if comparisons is not None:
        console.print(rich_table("compared with the earlier run", COMPARE_HEADERS,
                                 compare_rows(comparisons), {"cell": 52}))
    if output is not None:
        console.print(f"results: {output / 'summary.md'} (every cell, the targets' details, "
                      f"the method), results.json, results.csv, chart.png in {output}")


METHOD = [
    "**One figure per cell.** Every durastate cell appears once, in *All cells*; the "
    "anchors and peers table gives the reference's own figures and the ratios, never a "
    "second durastate figure.",
    "**Medians.** Latency is `perf_counter_ns`; client CPU is `thread_time_ns` of the "
    "calling thread (emulators are other processes). Fast operations run in rounds of "
    "`batch` calls (a round lasts ~200 µs) timed as a whole and divided; the harness loop's "
    "own cost (an empty operation through the same loop, `calibration_ns` in results.json) "
    "is subtracted from wall **and** CPU figures alike. Medians are over rounds; p99 comes "
    "from a second pass timing each call alone (timer overhead subtracted).",
    "**Ratios are paired.** A ratio (durastate ÷ reference) comes from rounds that "
    "alternate the two sides (A, B, A, B, …), so load on the shared machine hits both "
    "alike; it may therefore differ slightly from the quotient of the two medians in the "
    "tables. SQLite's paired rounds run on a fresh file on each side (the raw anchor's own "
    "file, and a fresh durastate file), so both start from the same state.",
    "**Every update writes different bytes**: two same-sized variants alternate, so the "
    "unchanged-write skip never hides the cost; `update_unchanged` measures the skip alone.",
    "**Cold paths**: `update_cold` is the first last-write-wins update through a backend "
    "opened just before (fresh clients and caches), timed one call at a time after an "
    "untimed reopening; `update_clock_miss` is a last-write-wins update that finds the "
    "store's per-millisecond clock cache empty, as when writes come more than 1 ms apart "
    "(the harness empties it before each call rather than waiting, which would also cool "
    "the CPU's caches), timed in rounds like the other cells.",
    "**Kinds**: `dict` (plain JSON types), `model` (a pydantic model with nested models) "
    "and `nulls` (the dict with `None` values, json only). `read` is `get_instance` + "
    "`custom_status`; `read_typed` is `get_instance` + `read_custom_status_as(Progress)`; "
    "`serialize` is the serializer's `dumps` alone, what `report()` is held against.",
    "**Scale cells** fill a fresh store per size (memory:// unnamed, or a new SQLite file) "
    "with 1k or 100k instances, 50 of them running: `query_*` is one "
    "`query(runtime_status='running')` page; `iter_*` is a whole `iter_instances()` pass, "
    "per item, paired on SQLite with raw sqlite3 keyset paging over the same file; "
    "`footprint` is bytes per small instance (memory: tracemalloc; SQLite: the file after "
    "a checkpoint).",
    "**Calls are counted, not assumed**, in a separate untimed pass: backend calls, writes "
    "that really wrote, and HTTP requests at `http.client` (retries and hidden reads show).",
    "**Anchors and peers** serialize the dict inside the timed call, as hand-written code "
    "must; pickle-safe signs with a key generated for the run; `ops_per_s` is operations "
    "over the timed pass's wall time.",
]


def headline_rows(result: RunResult) -> list[list[str]]:
    """json, 150 B dict, per backend: the figures the README shows."""
    rows = []
    cells = _cells(result, ("dict",))
    for (backend, serializer, payload, _), ops in cells.items():
        if serializer != "json" or payload != "150B":
            continue
        cas, cold = ops.get("update_cas"), ops.get("update_cold")
        rows.append([backend, _median(ops, "update_cas"), _median(ops, "update_lww"),
                     _median(ops, "update_cold"), _median(ops, "read"),
                     _median(ops, "read_typed"), _median(ops, "report"),
                     _calls(cas.http_requests if cas else None),
                     _calls(cold.http_requests if cold else None)])
    return rows


HEADLINE_HEADERS = ["backend", "CAS µs", "LWW µs", "cold LWW µs", "read µs", "typed read µs",
                    "report() µs", "HTTP/update", "HTTP/cold LWW"]


def _duration_and_load(meta: dict[str, Any]) -> list[str]:
    """How long the run took and how loaded the machine was (a run from before has none)."""
    out = []
    if meta.get("duration_s") is not None:
        out.append(f"- duration: {meta['duration_s'] / 60:.1f} min")
    load = meta.get("load_average") or {}
    if load.get("start") or load.get("end"):
        def show(loads: list[float] | None) -> str:
            return "n/a" if not loads else " / ".join(f"{x:g}" for x in loads)

        out.append(f"- load average (1 / 5 / 15 min) at the start: {show(load.get('start'))}; "
                   f"at the end: {show(load.get('end'))}")
    return out


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
        *_duration_and_load(meta),
        "",
        "## Method",
        "",
        *[f"- {line}" for line in METHOD],
        "",
    ]
    if chart_name:
        out += ["![update, read and query cost by backend (log scale, lower is better)]"
                f"({chart_name})", ""]
    headline = headline_rows(result)
    if headline:
        out += ["## Headline (json, 150 B dict, median µs per operation)", "",
                markdown_table(HEADLINE_HEADERS, headline), ""]
    if result.targets:
        out += ["## Targets", "", markdown_table(TARGET_HEADERS, target_rows(result)), ""]
    web = web_rows(result)
    if web:
        out += ["## HTTP app (`durastate serve`, `--web`)", "",
                "GET: two uvicorn servers (one worker each, subprocesses) over the same kind "
                "of store, the app and a minimal hand-written Starlette endpoint doing the same "
                "read, hammered in interleaved rounds by 8 keep-alive connections; server CPU "
                "from /proc per request. SSE latency: from `set_custom_status` returning to the "
                "event at a client (memory: pushed; SQLite: written by a second store, polled). "
                "Fan-out: backend reads counted while the clients sit idle, then for one "
                "change.", "", markdown_table(WEB_HEADERS, web), ""]
    asynchronous = async_rows(result)
    if asynchronous:
        out += ["## Async store (`--async`)", "",
                "Process CPU per update (every thread), medians of interleaved rounds in one "
                "event loop; the ratio is durastate / the reference.", "",
                markdown_table(ASYNC_HEADERS, asynchronous), ""]
    scale = scale_rows(result)
    if scale:
        out += ["## Queries, iteration and footprint by table size", "",
                markdown_table(SCALE_HEADERS, scale), ""]
    refs = reference_rows(result)
    if refs:
        out += ["## Anchors and peers (their own figures; ratio = durastate / reference, "
                "interleaved rounds, same run, same server)", "",
                markdown_table(REF_HEADERS, refs), ""]
    out += ["## All cells (median µs unless named; one figure per cell)", "",
            markdown_table(MAIN_HEADERS, main_rows(result)), ""]
    if result.notes:
        out += ["## Notes", "", *[f"- {note}" for note in result.notes], ""]
    profiles = [t for t in result.targets if t.get("profile")]
    if profiles:
        out += ["## Profiles of missed targets", ""]
        for t in profiles:
            value = "n/a" if t["value"] is None else f"{t['value']:.3g}"
            out += [f"### {t['id']} on {t['backend']}", "", t["target"], "",
                    f"value {value} against {t['limit']:g} {t['unit']}: {t['detail']}",
                    "", "durastate:", "", "```", t["profile"], "```", ""]
            if t.get("profile_reference"):
                out += [f"reference ({t['profile_cell'].get('reference')}):", "", "```",
                        t["profile_reference"], "```", ""]
    return "\n".join(out)
