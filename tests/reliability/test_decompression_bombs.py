"""A decompression bomb stored in an S3 object (the S3 status object, a DynamoDB offload
object) is refused on read: ``CorruptRecord`` for that instance, without inflating it.

About 100 KB of zlib that would inflate to 100 MiB (over the codec's 64 MiB bound) is put in
place of the custom status by the backend itself, as a foreign writer or a damaged object
would; the store's reads go through the bounded inflate.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import pytest

from durastate.core.records import Payload
from durastate.errors import CorruptRecord
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import opened, spec_for, unique

MIB = 1024 * 1024


def _bomb(inflated_mib: int = 100) -> bytes:
    """A JSON string of ``inflated_mib`` MiB, zlib-compressed a MiB at a time."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b'"')]
    parts.extend(packer.compress(b"a" * MIB) for _ in range(inflated_mib))
    parts.append(packer.compress(b'"'))
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.mark.parametrize("network_kind", ["s3", "dynamodb-moto"])
def test_a_bomb_in_an_s3_object_is_refused_for_that_instance_alone(
    network_kind: str, shared_emulator: RunningEmulator
) -> None:
    offload = (
        {"offload_bucket": unique("ds-bomb-"), "offload_threshold": 4096}
        if network_kind == "dynamodb-moto"
        else {}
    )
    with opened(spec_for(network_kind, shared_emulator, **offload)) as store:
        store.create_instance("bomb", name="wf", custom_status=0)
        store.create_instance("fine", name="wf", custom_status=1)
        bomb = Payload(_bomb(), "json", "zlib")
        assert len(bomb.data) > 4096  # DynamoDB puts it in an offload object
        store.backend.write_custom_status("bomb", bomb, etag=None, now=datetime.now(UTC))
        with pytest.raises(CorruptRecord) as raised:
            store.get_custom_status("bomb")
        assert raised.value.instance_id == "bomb"
        assert "limit" in raised.value.reason
        assert store.get_custom_status("fine") == 1
        store.set_custom_status("bomb", "defused")  # the record can be overwritten
        assert store.get_custom_status("bomb") == "defused"
