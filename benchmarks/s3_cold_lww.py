"""S3 last-write-wins from a cold store: client CPU and requests against a raw put_object.

A "cold" write is the first custom-status update without an etag that a store object makes
for an instance another store object created (a new process, say). Rounds interleave the
durastate write and the raw call on the same moto_server (stock), and the figure is the
median of per-round CPU ratios.

Run: ``.venv/bin/python benchmarks/s3_cold_lww.py [ROUNDS] [WRITES_PER_ROUND]``
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from durastate.backends.s3 import S3Backend
from durastate.core.records import NewInstance, Payload, RuntimeStatus
from durastate.testing import emulators
from durastate.transport import HttpRequest, HttpResponse, LandedHook

CREDS: dict[str, Any] = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region": "us-east-1",
}
STATUS = b'{"percent": 42, "stage": "resize", "eta_s": 12, "note": "' + b"x" * 90 + b'"}'


def _counted(backend: S3Backend) -> list[str]:
    """The methods of the requests the backend's driver sends from now on."""
    sent: list[str] = []
    send = backend.driver.send

    def counting(
        request: HttpRequest,
        may_have_landed: LandedHook | None = None,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        sent.append(request.method)
        return send(request, may_have_landed, deadline=deadline)

    backend.driver.send = counting  # type: ignore[method-assign]
    return sent


def main(rounds: int, writes: int) -> None:
    now = datetime.now(UTC)
    with emulators.running(emulators.start_moto(serialized=False)) as moto:
        url = f"s3://ds-bench-{uuid.uuid4().hex[:8]}/cold"
        maker = S3Backend.from_url(url, endpoint_url=moto.endpoint, **CREDS)
        raw = maker.client
        ratios: list[float] = []
        requests: list[int] = []
        ours_us: list[float] = []
        raw_us: list[float] = []
        for round_no in range(rounds):
            ids = [f"r{round_no}-{n}" for n in range(writes)]
            for instance_id in ids:
                maker.create(NewInstance(instance_id, "wf", RuntimeStatus.RUNNING, now, None, None))
            cold = S3Backend.from_url(url, endpoint_url=moto.endpoint, **CREDS)
            cold._ready()  # the bucket check of first use is not part of the write
            sent = _counted(cold)
            start = time.process_time()
            for instance_id in ids:
                cold.write_custom_status(instance_id, Payload(STATUS, "json"), etag=None, now=now)
            ours = (time.process_time() - start) / writes
            start = time.process_time()
            for instance_id in ids:
                raw.put_object(Bucket=maker.bucket, Key=f"raw/{instance_id}", Body=STATUS)
            theirs = (time.process_time() - start) / writes
            cold.close()
            ratios.append(ours / theirs)
            requests.append(len(sent) // writes)
            ours_us.append(ours * 1e6)
            raw_us.append(theirs * 1e6)
        maker.close()
    print(f"S3 cold last-write-wins, {rounds} rounds x {writes} writes, 150 B status, moto_server")
    print(f"  requests per write: {statistics.median(requests)}")
    print(
        f"  client CPU per write: durastate {statistics.median(ours_us):.0f} us, "
        f"raw put_object {statistics.median(raw_us):.0f} us"
    )
    print(f"  CPU ratio (median of rounds): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 7, int(sys.argv[2]) if len(sys.argv) > 2 else 40
    )
