"""The matrix: which backends, serializers, payloads and operations a run covers."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from durastate.bench.payloads import KINDS, SIZES
from durastate.opening import redact_url
from durastate.registry import scheme_of

DEFAULT_SERIALIZERS: Final = ("json", "msgpack", "pickle-safe")
OPERATIONS: Final = ("update_cas", "update_lww", "update_unchanged", "update_cold",
                     "update_clock_miss", "read", "read_typed", "serialize", "report")
#: Cells that say the same for every serializer and kind: json and dict only.
JSON_DICT_ONLY: Final = frozenset({"update_cold", "update_clock_miss"})
#: Per backend, not per payload: queries and iteration at two table sizes, and footprint.
SCALE_SIZES: Final = {"1k": 1_000, "100k": 100_000}
SCALE_OPERATIONS: Final = ("query_1k", "query_100k", "iter_1k", "iter_100k", "footprint")
#: Where scale cells run: a fresh, empty store of the same kind is cheap to make and to
#: fill with 100k instances (over HTTP it would take longer than the rest of the run).
SCALE_SCHEMES: Final = frozenset({"memory", "sqlite"})
DEFAULT_OUTPUT: Final = Path("benchmarks/results/latest")


@dataclass(frozen=True)
class BackendSpec:
    """A backend to benchmark: its URL, keyword options and the label shown in results."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def scheme(self) -> str:
        return scheme_of(self.url)

    @property
    def name(self) -> str:
        return self.label or self.scheme

    def __repr__(self) -> str:  # never show options: they may hold secrets
        return f"BackendSpec({redact_url(self.url)!r}, label={self.name!r})"


def default_backends(workdir: Path | None = None) -> list[BackendSpec]:
    """The embedded backends: memory, and SQLite in a temporary directory."""
    directory = workdir or Path(tempfile.mkdtemp(prefix="durastate-bench-"))
    return [
        BackendSpec("memory://"),
        BackendSpec(f"sqlite:///{directory / 'bench.db'}"),
    ]


@dataclass(frozen=True)
class Effort:
    """How long each cell runs: a time budget per cell, bounded by operation counts."""

    seconds: float
    min_ops: int
    max_ops: int
    count_ops: int  # operations in the separate counting pass
    report_seconds: float  # duration of the status-reporter hot loop
    report_interval: float  # its min_interval
    tail_ops: int  # operations timed one by one for p99 (when batched)
    cold_ops: int = 20  # cold-path operations, each after its own untimed setup

    @classmethod
    def quick(cls) -> Effort:
        return cls(seconds=0.05, min_ops=30, max_ops=20_000, count_ops=10,
                   report_seconds=0.15, report_interval=0.03, tail_ops=1000, cold_ops=10)

    @classmethod
    def full(cls) -> Effort:
        return cls(seconds=0.5, min_ops=200, max_ops=200_000, count_ops=50,
                   report_seconds=1.5, report_interval=0.1, tail_ops=10_000, cold_ops=25)


@dataclass
class BenchConfig:
    """Everything that defines a run; the CLI and ``benchmarks/run_full.py`` build one."""

    backends: list[BackendSpec] = field(default_factory=list)
    serializers: list[str] = field(default_factory=lambda: list(DEFAULT_SERIALIZERS))
    payloads: list[str] = field(default_factory=lambda: list(SIZES))
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    quick: bool = False
    repeat: int | None = None  # timed operations per cell (default: from the time budget)
    anchors: bool = True
    peers: bool = True
    chart: bool = True
    output: Path = DEFAULT_OUTPUT
    compare: Path | None = None
    max_custom_status_bytes: int = 16 * 1024
    command: str = ""
    profile_misses: bool = True
    scale: bool = True  # query / iteration / footprint cells on embedded backends
    scale_counts: dict[str, int] = field(default_factory=lambda: dict(SCALE_SIZES))
    async_cells: bool = False  # bench/async_cells.py: async store, reporter writer, watch
    web_cells: bool = False  # bench/web_cells.py: the HTTP app (memory and SQLite only)

    def applies(self, operation: str, serializer: str, kind: str, size: str = "150B") -> bool:
        """Whether this matrix runs ``operation`` for ``serializer``, ``kind`` and ``size``.

        A cold write reopens the backend for every call (seconds on a network backend): it
        runs at the smallest requested size only, where the opening is the whole story.
        """
        if operation == "update_cold" and size != self.payloads[0]:
            return False
        if operation in JSON_DICT_ONLY:
            return serializer == "json" and kind == "dict"
        if kind == "nulls":  # the null check is the JSON serializer's: json only
            return serializer == "json" and operation != "update_unchanged"
        return True

    def scale_operations(self, spec: BackendSpec) -> tuple[str, ...]:
        return SCALE_OPERATIONS if self.scale and spec.scheme in SCALE_SCHEMES else ()

    @property
    def effort(self) -> Effort:
        return Effort.quick() if self.quick else Effort.full()

    def validate(self) -> None:
        unknown = [p for p in self.payloads if p not in SIZES]
        if unknown:
            raise ValueError(f"unknown payload(s) {unknown}; choose from {list(SIZES)}")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown payload kind(s) {unknown}; choose from {list(KINDS)}")
        unknown = [o for o in self.operations if o not in OPERATIONS]
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; choose from {list(OPERATIONS)}")
        labels = [b.name for b in self.backends]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two backends share a label: {labels}; name them LABEL=URL")


def parse_backend(text: str, options: dict[str, Any] | None = None) -> BackendSpec:
    """``URL`` or ``LABEL=URL`` (the label may not contain ``://``, ``?`` or ``=``)."""
    label, sep, rest = text.partition("=")
    if sep and "://" in rest and "://" not in label and "?" not in label:
        return BackendSpec(rest, dict(options or {}), label)
    return BackendSpec(text, dict(options or {}))


def unique_labels(specs: list[BackendSpec]) -> list[BackendSpec]:
    """Give backends of the same scheme distinct labels (``sqlite``, ``sqlite-2``)."""
    seen: dict[str, int] = {}
    out: list[BackendSpec] = []
    for spec in specs:
        count = seen.get(spec.name, 0) + 1
        seen[spec.name] = count
        out.append(spec if count == 1 else BackendSpec(spec.url, spec.options,
                                                        f"{spec.name}-{count}"))
    return out
