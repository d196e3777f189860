"""Benchmark payloads: progress statuses of about 150 B, 2 KB and 16 KB.

Kinds: ``dict`` (plain JSON types), ``model`` (a pydantic model with nested models) and
``nulls`` (the dict with ``None`` in some values, as real statuses have: an unknown eta,
a step not timed yet). All three validate as `Progress`, so typed reads work on each.

Every payload comes in two variants that differ only in a counter, so that consecutive
updates always write different bytes of the same size (the store skips unchanged bytes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import BaseModel

#: label -> target size of the JSON encoding, in bytes. 16 KB stays under the default
#: 16 KiB custom-status limit for every built-in serializer (checked by the runner).
SIZES: Final[dict[str, int]] = {"150B": 150, "2KB": 2048, "16KB": 15_800}
KINDS: Final = ("dict", "model", "nulls")


class Step(BaseModel):
    """One finished step of a workflow, as a status might list it."""

    name: str
    seconds: float | None
    ok: bool


class Progress(BaseModel):
    """A typical custom status: where the workflow is and what it has done."""

    stage: str
    percent: float
    done: int
    total: int
    eta_s: float | None
    message: str
    steps: list[Step]


def _progress(counter: int, steps: int, message: str) -> Progress:
    return Progress(
        stage="resize",
        percent=42.5,
        done=1000 + counter,
        total=2400,
        eta_s=12.25,
        message=message,
        steps=[Step(name=f"step-{n:05d}", seconds=0.125 + n, ok=n % 7 != 0) for n in range(steps)],
    )


def _json_size(model: Progress) -> int:
    return len(orjson.dumps(model.model_dump(mode="json")))


@functools.cache
def build_model(label: str, counter: int = 0) -> Progress:
    """The model whose JSON encoding is closest to (and not above) the size ``label`` names."""
    target = SIZES[label]
    steps = 0
    while _json_size(_progress(counter, steps + 1, "")) <= target:
        steps += 1
    base = _json_size(_progress(counter, steps, ""))
    return _progress(counter, steps, "x" * max(0, target - base))


@dataclass(frozen=True)
class PayloadPair:
    """Two same-sized values (variants 0 and 1) of one size and kind."""

    label: str
    kind: str
    values: tuple[Any, Any]

    @property
    def json_bytes(self) -> int:
        first = self.values[0]
        plain = first.model_dump(mode="json") if isinstance(first, BaseModel) else first
        return len(orjson.dumps(plain))


def payload_pair(label: str, kind: str) -> PayloadPair:
    """The two variants of the payload ``label`` (``150B``/``2KB``/``16KB``) as ``kind``."""
    if label not in SIZES:
        raise ValueError(f"unknown payload size {label!r}; choose from {', '.join(SIZES)}")
    if kind not in KINDS:
        raise ValueError(f"unknown payload kind {kind!r}; choose from {', '.join(KINDS)}")
    models = (build_model(label, 0), build_model(label, 1))
    if kind == "model":
        return PayloadPair(label, kind, models)
    dicts = (models[0].model_dump(), models[1].model_dump())
    if kind == "nulls":
        dicts = (_with_nulls(dicts[0]), _with_nulls(dicts[1]))
    return PayloadPair(label, kind, dicts)


def _with_nulls(status: dict[str, Any]) -> dict[str, Any]:
    """No eta yet, and every third step not timed yet."""
    steps = [{**step, "seconds": None} if n % 3 == 0 else step
             for n, step in enumerate(status["steps"])]
    return {**status, "eta_s": None, "steps": steps}
