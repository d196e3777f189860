"""The results of a run: measurements plus metadata, and their JSON and CSV files."""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

#: What each operation is: durastate's cells, its scale cells, then anchors and peers.
OPERATIONS = {
    "update_cas": "set_custom_status(id, value, etag=etag): compare-and-swap update",
    "update_lww": "set_custom_status(id, value): last-write-wins update",
    "update_unchanged": "set_custom_status with the stored value and etag (skipped write)",
    "update_cold": "the first set_custom_status(id, value) through a backend opened just before",
    "update_clock_miss": "set_custom_status(id, value) with the store's clock cache empty",
    "read": "get_instance(id) + custom_status",
    "read_typed": "get_instance(id) + read_custom_status_as(Progress)",
    "serialize": "the serializer's dumps alone (what report() is held against)",
    "report": "StatusReporter.report(value) in a hot loop (coalesced writes)",
    "query_1k": "query(runtime_status='running'), 50 matches among 1,000 instances",
    "query_100k": "query(runtime_status='running'), 50 matches among 100,000 instances",
    "iter_1k": "iter_instances() over 1,000 instances, per item",
    "iter_100k": "iter_instances() over 100,000 instances, per item",
    "footprint": "bytes per small instance (stored_bytes)",
    "raw_update": "the raw SDK call a user would write by hand",
    "raw_read": "raw bytes + orjson.loads",
    "raw_read_typed": "raw bytes + Model.model_validate_json",
    "raw_iter_1k": "raw sqlite3 keyset paging over the same 1,000 rows, per row",
    "raw_iter_100k": "raw sqlite3 keyset paging over the same 100,000 rows, per row",
    "store_result": "Celery backend.store_result(task_id, meta, 'PROGRESS')",
    "web_get": "GET /instances/{id} over one uvicorn worker: server CPU µs per request, "
    "against a minimal hand-written Starlette endpoint (extra.minimal_*)",
    "web_sse_latency": "set_custom_status returning -> the SSE event at a client (median)",
    "web_sse_fanout": "concurrent SSE clients of one instance: backend reads per poll "
    "interval while idle (extra); median_us: a change reaching every client",
}


@dataclass
class Measurement:
    """One cell: who (subject/name) did what (operation) where (backend) with what payload."""

    subject: str  # durastate | anchor | peer
    name: str  # "durastate", "sqlite3 upsert+commit", "celery cache+memory", ...
    backend: str  # backend label: memory, sqlite, azure-tables, dynamodb@dynalite, ...
    serializer: str
    payload: str  # 150B | 2KB | 16KB
    kind: str  # dict | model
    operation: str
    ops: int = 0
    batch: int = 0
    median_us: float | None = None
    p99_us: float | None = None
    cpu_us: float | None = None
    ops_per_s: float | None = None
    stored_bytes: int | None = None
    backend_calls: float | None = None  # calls into the Backend interface, per operation
    backend_writes: float | None = None  # of which wrote something, per operation
    http_requests: float | None = None  # requests on the wire, per operation
    compares_to: str | None = None  # for anchors/peers: the durastate operation compared
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return (self.subject, self.name, self.backend, self.serializer, self.payload,
                self.kind, self.operation)

    @property
    def ok(self) -> bool:
        return self.error is None and self.median_us is not None


@dataclass
class RunResult:
    """Everything one run produced; ``meta`` holds machine, date, command and settings."""

    meta: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def durastate(self) -> list[Measurement]:
        return [m for m in self.measurements if m.subject == "durastate"]

    def find(self, **criteria: str) -> list[Measurement]:
        return [
            m for m in self.measurements
            if all(getattr(m, name) == value for name, value in criteria.items())
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "meta": self.meta,
            "operations": OPERATIONS,
            "measurements": [dataclasses.asdict(m) for m in self.measurements],
            "notes": self.notes,
            "targets": self.targets,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        names = {f.name for f in dataclasses.fields(Measurement)}
        return cls(
            meta=dict(data.get("meta", {})),
            measurements=[
                Measurement(**{k: v for k, v in item.items() if k in names})
                for item in data.get("measurements", [])
            ],
            notes=list(data.get("notes", [])),
            targets=list(data.get("targets", [])),
        )


CSV_FIELDS = [f.name for f in dataclasses.fields(Measurement) if f.name != "extra"] + ["extra"]


def write_json(result: RunResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2, sort_keys=False) + "\n")


def load_json(path: Path) -> RunResult:
    return RunResult.from_json(json.loads(path.read_text()))


def write_csv(result: RunResult, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for m in result.measurements:
            row = dataclasses.asdict(m)
            row["extra"] = json.dumps(m.extra, sort_keys=True) if m.extra else ""
            writer.writerow(row)
