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


def _memory(result: RunResult) -> list[dict[str, Any]]:
    out = []
    for label in _labels(result, "memory"):
        lww, cas = _cell(result, label, "update_lww"), _cell(result, label, "update_cas")
        value = lww.median_us if lww else None
        detail = (f"set_custom_status without etag {_fmt(value, ' µs')}, with etag "
                  f"{_fmt(cas.median_us if cas else None, ' µs')}")
        out.append(_target("memory-set-status", "memory, json, 150 B dict: set_custom_status "
                           "median ≤ 2 µs", label, value, 2.0, "µs", detail,
                           {"backend": label, "operation": "update_lww"}))
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
        refs = _refs(result, label, "anchor")
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
                           "interval + 2", label, margin, 0.0, " writes over bound", detail,
                           {"backend": label, "operation": "report"}))
    return out


def evaluate(result: RunResult) -> list[dict[str, Any]]:
    """Every target that the run has figures for; ``passed`` is None when it could not run."""
    return [*_memory(result), *_sqlite(result), *_network(result), *_reporter(result)]
