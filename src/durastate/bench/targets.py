"""The issue's targets, checked against one run's figures (ratios from the same run)."""

from __future__ import annotations

from typing import Any

from durastate.bench.results import Measurement, RunResult

NETWORK = ("azure-tables", "dynamodb", "s3")


def _labels(result: RunResult, *schemes: str) -> list[str]:
    return [b["label"] for b in result.meta.get("backends", []) if b["scheme"] in schemes]


def _cell(result: RunResult, backend: str, operation: str, payload: str = "150B",
          serializer: str = "json", kind: str = "dict") -> Measurement | None:
    found = result.find(subject="durastate", backend=backend, operation=operation,
                        payload=payload, serializer=serializer, kind=kind)
    return found[0] if found and found[0].ok else None


def _target(tid: str, text: str, backend: str, value: float | None, limit: float,
            unit: str, detail: str, cell: dict[str, str], strict: bool = False) -> dict[str, Any]:
    passed = None if value is None else (value < limit if strict else value <= limit)
    return {"id": tid, "target": text, "backend": backend, "value": value, "limit": limit,
            "unit": unit, "passed": passed, "detail": detail, "profile_cell": cell}


def _fmt(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.3g}{unit}"


def _anchor(result: RunResult, backend: str, operation: str,
            payload: str = "150B") -> Measurement | None:
    found = [m for m in result.measurements if m.subject == "anchor" and m.backend == backend
             and m.operation == operation and m.payload == payload and m.ok]
    return found[0] if found else None


def _over(cell: Measurement | None, reference: Measurement | None) -> float | None:
    if cell is None or reference is None or not cell.median_us or not reference.median_us:
        return None
    return cell.median_us / reference.median_us


def _memory(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for label in _labels(result, "memory"):
        anchor = _anchor(result, label, "raw_update")
        paired = anchor.extra.get("ratio_latency") if anchor else None
        for tid, text, value, cell in (
            ("memory-set-status", "memory, json, 150 B dict: set_custom_status ≤ 5x dict + "
             "orjson.dumps (paired rounds)", paired, "update_lww"),
            ("memory-set-status-clock-miss", "the same in a new millisecond (the clock cache "
             "misses) ≤ 5x", _over(_cell(result, label, "update_clock_miss"), anchor),
             "update_clock_miss"),
            ("memory-set-status-nulls", "the same with None values inside ≤ 5x",
             _over(_cell(result, label, "update_lww", kind="nulls"), anchor), "update_lww"),
        ):
            out.append(_target(tid, text, label, value, 5.0, "x",
                               f"against {_fmt(anchor.median_us if anchor else None, ' µs')}",
                               {"backend": label, "operation": cell,
                                "kind": "nulls" if tid.endswith("nulls") else "dict",
                                "reference": anchor.name if anchor else ""}))
    return out


def _reads(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for label in _labels(result, "memory", "sqlite"):
        for tid, operation, raw, text in (
            ("read-untyped", "read", "raw_read", "get_instance + custom_status ≤ 2x raw bytes "
             "+ orjson.loads (json, 150 B, paired rounds)"),
            ("read-typed", "read_typed", "raw_read_typed", "get_instance + "
             "read_custom_status_as(Model) ≤ 2x raw bytes + Model.model_validate_json"),
        ):
            anchor = _anchor(result, label, raw)
            value = anchor.extra.get("ratio_latency") if anchor else None
            out.append(_target(tid, text, label, value, 2.0, "x",
                               f"{anchor.name}: {_fmt(anchor.median_us, ' µs')}" if anchor
                               else "", {"backend": label, "operation": operation,
                                         "reference": anchor.name if anchor else ""}))
    return out


def _scale(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for label in _labels(result, "memory", "sqlite"):
        small, large = _cell(result, label, "query_1k"), _cell(result, label, "query_100k")
        out.append(_target("query-follows-matches", "query(runtime_status) with 50 matches: "
                           "100k instances ≤ 3x 1k instances", label, _over(large, small), 3.0,
                           "x", f"{_fmt(small.median_us if small else None, ' µs')} at 1k, "
                           f"{_fmt(large.median_us if large else None, ' µs')} at 100k",
                           {"backend": label, "operation": "query_100k"}))
        small, large = _cell(result, label, "iter_1k"), _cell(result, label, "iter_100k")
        value = (large.cpu_us / small.cpu_us if small and large and small.cpu_us
                 and large.cpu_us else None)
        out.append(_target("iterate-linear", "iter_instances() per item (CPU): 100k ≤ 2x 1k "
                           "(linear)", label, value, 2.0, "x",
                           f"{_fmt(small.cpu_us if small else None, ' µs')} per item at 1k, "
                           f"{_fmt(large.cpu_us if large else None, ' µs')} at 100k",
                           {"backend": label, "operation": "iter_100k"}))
        raw = _anchor(result, label, "raw_iter_100k")
        if raw is not None:
            out.append(_target("iterate-vs-raw", "iter_instances() per item ≤ 4x raw sqlite3 "
                               "keyset paging (100k, paired passes)", label,
                               raw.extra.get("ratio_latency"), 4.0, "x",
                               f"raw {_fmt(raw.median_us, ' µs')} per row",
                               {"backend": label, "operation": "iter_100k",
                                "reference": raw.name}))
        sized = result.find(subject="durastate", backend=label, operation="footprint")
        if label in _labels(result, "memory"):
            size = sized[0].stored_bytes if sized else None
            out.append(_target("memory-footprint", "memory:// bytes per small instance ≤ 2 KB",
                               label, None if size is None else float(size), 2048.0, "bytes",
                               "tracemalloc over 2,000 instances (150 B status, small input)",
                               {"backend": label, "operation": "footprint"}))
    return out


def _report_cost(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for b in result.meta.get("backends", []):
        label = b["label"]
        extra = []
        for size in result.meta.get("payloads", []):
            report, alone = (_cell(result, label, "report", size),
                             _cell(result, label, "serialize", size))
            overhead = report.extra.get("paired_overhead_cpu_us") if report else None
            if overhead is not None:
                extra.append((overhead, size))
                continue
            paired = report.extra.get("paired_serialize_cpu_us") if report else None
            if paired is None and alone is not None:
                paired = alone.cpu_us  # a run from before the paired rounds
            if report and report.cpu_us is not None and paired:
                extra.append((report.cpu_us - paired, size))
        worst = max(extra) if extra else None
        out.append(_target("report-overhead", "report() ≤ the serializer alone + 0.3 µs, at "
                           "every size (json dict; client CPU, median of the differences of "
                           "rounds alternating with the serializer alone)", label,
                           worst[0] if worst else None, 0.3,
                           "µs", "; ".join(f"{size}: +{value:.3f} µs" for value, size in extra),
                           {"backend": label, "operation": "report",
                            "payload": worst[1] if worst else "150B"}))
    return out


def _refs(result: RunResult, backend: str, subject: str) -> list[Measurement]:
    return [m for m in result.measurements if m.subject == subject and m.backend == backend
            and m.ok and m.extra.get("ratio_cpu") is not None]


def _worst(refs: list[Measurement], key: str) -> tuple[Measurement | None, float | None]:
    worst: tuple[Measurement | None, float | None] = (None, None)
    for ref in refs:
        value = ref.extra.get(key)
        if value is not None and (worst[1] is None or value > worst[1]):
            worst = (ref, float(value))
    return worst


def _detail(refs: list[Measurement], key: str) -> str:
    return "; ".join(f"{r.name} {r.payload}: {r.extra.get(key)}x" for r in refs)


def _sqlite(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for label in _labels(result, "sqlite"):
        refs = [r for r in _refs(result, label, "anchor") if r.operation == "raw_update"]
        ref, value = _worst(refs, "ratio_latency")
        cell = {"backend": label, "operation": ref.compares_to or "update_lww",
                "payload": ref.payload, "reference": ref.name} if ref else {
                    "backend": label, "operation": "update_lww"}
        out.append(_target("sqlite-vs-raw", "SQLite update ≤ 1.3x raw sqlite3 upsert + commit "
                           "(WAL, synchronous=NORMAL), median latency", label, value, 1.3, "x",
                           _detail(refs, "ratio_latency"), cell))
    return out


def _network(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for label in _labels(result, *NETWORK):
        for subject, tid, text, limit, strict in (
            ("anchor", "network-cpu-vs-raw", "client CPU per update ≤ 1.05x the raw SDK call",
             1.05, False),
            ("peer", "network-cpu-vs-celery", "client CPU per update below Celery's "
             "store_result on the same service", 1.0, True),
        ):
            refs = _refs(result, label, subject)
            if subject == "anchor":  # judge against the tuned client where there is one
                tuned = [r for r in refs if "default client" not in r.name]
                judged = tuned or refs
            else:
                judged = refs
            ref, value = _worst(judged, "ratio_cpu")
            cell = {"backend": label, "operation": ref.compares_to or "update_cas",
                    "payload": ref.payload, "reference": ref.name} if ref else {
                        "backend": label, "operation": "update_cas"}
            out.append(_target(tid, text, label, value, limit, "x", _detail(refs, "ratio_cpu"),
                               cell, strict))
    return out


def _lean_limit(result: RunResult, label: str, sdk: Measurement) -> str:
    """The lean cell's own CPU over the SDK anchor's, same operation and payload."""
    for lean in result.measurements:
        if (lean.subject == "lean" and lean.backend == label and lean.ok and lean.cpu_us
                and lean.operation == sdk.operation and lean.payload == sdk.payload
                and sdk.cpu_us):
            return f" (lean limit {lean.cpu_us / sdk.cpu_us:.2f}x)"
    return ""


def _sdk_fraction(result: RunResult) -> list[dict[str, Any]]:
    """Issue 11: a fraction of the official SDK's client CPU, the lean limit alongside."""
    out = []
    for label in _labels(result, *NETWORK):
        for tid, text, operation, limit in (
            ("network-update-vs-sdk", "set_custom_status client CPU ≤ 0.4x the official "
             "SDK's conditional write (default client)", "raw_update", 0.4),
            ("network-read-vs-sdk", "get_instance + custom_status client CPU ≤ 0.5x the "
             "official SDK's read", "raw_read", 0.5),
        ):
            refs = [r for r in _refs(result, label, "anchor") if r.operation == operation
                    and "default client" in r.name and r.compares_to != "update_lww"]
            ref, value = _worst(refs, "ratio_cpu")
            cell = {"backend": label, "operation": ref.compares_to or "read",
                    "payload": ref.payload, "reference": ref.name} if ref else {
                        "backend": label, "operation": "read" if operation == "raw_read"
                        else "update_cas"}
            detail = "; ".join(f"{r.name} {r.payload}: {r.extra.get('ratio_cpu')}x"
                               f"{_lean_limit(result, label, r)}" for r in refs)
            out.append(_target(tid, text, label, value, limit, "x", detail, cell))
    return out


S3_COLD_REASON = (
    "a cold store has no etag, and S3 has no \"write only if the object exists\" condition "
    "(If-Match needs the ETag, If-None-Match only takes *): one unconditional PUT would "
    "create a status object for a deleted or never-created instance instead of raising "
    "InstanceNotFound and would have to guess the current run, so the write reads the "
    "status object first (1 GET + 1 PUT); see docs/s3.md and "
    "benchmarks/results/profiles/s3-cold-lww.md"
)


def _s3_cold(result: RunResult) -> list[dict[str, Any]]:
    """Issue 10: S3 last-write-wins on a cold store in 1 request, or the reason it is not."""
    out = []
    for label in _labels(result, "s3"):
        cold = _cell(result, label, "update_cold")
        value = cold.http_requests if cold else None
        detail = "requests per first last-write-wins update through a backend opened just before"
        if value is not None and value > 1:
            detail += f"; not 1 because {S3_COLD_REASON}"
        out.append(_target("s3-cold-lww", "S3 last-write-wins on a cold store: 1 request "
                           "(stale etags must still fail)", label, value, 1.0, " requests",
                           detail, {"backend": label, "operation": "update_cold"}))
    return out


def _reporter(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for b in result.meta.get("backends", []):
        label = b["label"]
        cell = _cell(result, label, "report")
        out.append(_target("report-coalesced", "status reporter: report() ≤ 1 µs when coalesced "
                           "(json, 150 B dict)", label, cell.median_us if cell else None, 1.0,
                           "µs", "", {"backend": label, "operation": "report"}))
        cells = [m for m in result.find(subject="durastate", backend=label, operation="report")
                 if m.ok]
        if not cells:
            continue
        over = [m for m in cells if m.extra["backend_writes"] > m.extra["write_bound"]]
        worst = max(cells, key=lambda m: m.extra["backend_writes"] - m.extra["write_bound"])
        margin = float(worst.extra["backend_writes"] - worst.extra["write_bound"])
        detail = (f"{len(cells) - len(over)}/{len(cells)} cells within bound; worst: "
                  f"{worst.extra['backend_writes']} writes in {worst.extra['elapsed_s']} s at "
                  f"interval {worst.extra['min_interval_s']} s (bound "
                  f"{worst.extra['write_bound']})")
        out.append(_target("report-writes", "status reporter: backend writes ≤ elapsed / "
                           "interval + 2", label, margin, 0.0, "writes over bound", detail,
                           {"backend": label, "operation": "report"}))
    return out


def _web_cell(result: RunResult, backend: str, operation: str) -> Measurement | None:
    found = result.find(subject="durastate", backend=backend, operation=operation)
    return found[0] if found else None


def _web(result: RunResult) -> list[dict[str, Any]]:
    """`durastate bench --web`: only where the web cells ran (memory and SQLite)."""
    out = []
    for label in _labels(result, "memory", "sqlite"):
        get = _web_cell(result, label, "web_get")
        if get is not None:
            ok = get.ok
            out.append(_target(
                "web-get-vs-minimal", "GET /instances/{id}, one uvicorn worker: server CPU per "
                "request ≤ 1.2x a minimal Starlette endpoint reading the same store", label,
                get.extra["cpu_ratio_vs_minimal"] if ok else None, 1.2, "x",
                f"app {_fmt(get.cpu_us, ' µs')} ({_fmt(get.ops_per_s, ' req/s')}), minimal "
                f"{_fmt(get.extra['minimal_cpu_us'], ' µs')} "
                f"({_fmt(get.extra['minimal_requests_per_s'], ' req/s')}); median of "
                f"interleaved rounds {get.extra['round_ratios']}" if ok else str(get.error),
                {"backend": label, "operation": "web_get"}))
        latency = _web_cell(result, label, "web_sse_latency")
        if latency is not None:
            ok = latency.ok
            interval = latency.extra.get("poll_interval_s") if ok else None
            limit = 50.0 if latency.extra.get("push", label in _labels(result, "memory")) \
                else (interval or 0.0) * 1000 + 100
            text = ("set_custom_status -> SSE event, worst of the samples ≤ 50 ms (push)"
                    if limit == 50.0 else "set_custom_status -> SSE event, worst of the "
                    "samples ≤ poll interval + 100 ms")
            out.append(_target(
                "web-sse-latency", text, label, latency.extra["max_ms"] if ok else None,
                limit, "ms", f"median {_fmt(latency.median_us / 1000, ' ms')}, p90 "
                f"{latency.extra['p90_ms']} ms over {latency.ops} changes; poll interval "
                f"{interval if interval is not None else 'none (push)'}"
                if ok and latency.median_us is not None else str(latency.error),
                {"backend": label, "operation": "web_sse_latency"}))
        fanout = _web_cell(result, label, "web_sse_fanout")
        if fanout is not None:
            ok = fanout.ok
            e = fanout.extra
            out.append(_target(
                "web-sse-fanout-idle", "SSE clients of one instance, idle: ≤ 1 backend read "
                "per poll interval (shared, not one per client)", label,
                e["reads_per_interval"] if ok else None, 1.0, "reads",
                f"{e['clients']} clients: {e['idle_reads']} reads over {e['idle_intervals']} "
                f"intervals of {e['poll_interval_s']} s; one change reached "
                f"{e['delivered']}/{e['clients']} clients with {e['change_reads']} reads"
                if ok else str(fanout.error),
                {"backend": label, "operation": "web_sse_fanout"}))
    return out


def evaluate(result: RunResult) -> list[dict[str, Any]]:
    """Every target that the run has figures for; ``passed`` is None when it could not run."""
    return [*_memory(result), *_reads(result), *_scale(result), *_sqlite(result),
            *_network(result), *_sdk_fraction(result), *_s3_cold(result), *_report_cost(result),
            *_reporter(result), *_web(result)]
