"""Bounded decompression: a stored payload may never inflate past a limit.

A few kilobytes of zlib or gzip can inflate to gigabytes (a decompression bomb). Every
place that inflates stored bytes (the codec's ``+zlib`` payloads, gzip blobs and objects
that backends offload) goes through `inflate`, which stops at ``limit`` bytes and raises
`CorruptRecord` naming the instance, instead of allocating whatever the bytes ask for.
"""

from __future__ import annotations

import zlib
from typing import Final, Literal

from durastate.errors import CorruptRecord

#: The default bound: far above any payload durastate writes (16 KiB custom status by
#: default, 4 MiB offloaded payloads in the tests), far below what a bomb would allocate.
DEFAULT_MAX_INFLATED_BYTES: Final = 64 * 1024 * 1024

_WBITS: Final = {"zlib": 15, "gzip": 31}


def inflate(
    data: bytes,
    *,
    container: Literal["zlib", "gzip"],
    instance_id: str,
    what: str = "payload",
    limit: int = DEFAULT_MAX_INFLATED_BYTES,
) -> bytes:
    """Inflate ``data`` (a zlib stream or one gzip member) to at most ``limit`` bytes.

    Truncated, trailing-garbage or malformed input and output over ``limit`` all raise
    `CorruptRecord` for ``instance_id``; ``what`` names the stored thing in the message.
    """
    inflater = zlib.decompressobj(_WBITS[container])
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CorruptRecord(instance_id, f"{what}: {container} data is invalid ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise CorruptRecord(
            instance_id, f"{what}: inflates past the limit of {limit} bytes ({container})"
        )
    if not inflater.eof:
        raise CorruptRecord(instance_id, f"{what}: {container} data is truncated")
    if inflater.unused_data:
        raise CorruptRecord(instance_id, f"{what}: trailing bytes after the {container} data")
    return out
