"""MessagePack: compact binary; carries bytes and integer keys that JSON cannot."""

from __future__ import annotations

from typing import Any

import msgpack

from durastate.errors import SerializationError
from durastate.serializers.base import Serializer, plain_default


class MsgpackSerializer(Serializer):
    """Binary and str stay distinct (``use_bin_type``); tuples read back as lists."""

    id = "msgpack"

    def dumps(self, value: Any, *, instance_id: str) -> bytes:
        try:
            data: bytes = msgpack.packb(
                value, use_bin_type=True, datetime=False, default=plain_default
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"msgpack cannot serialize this value: {exc}") from None
        return data

    def loads(self, data: bytes, *, instance_id: str) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
