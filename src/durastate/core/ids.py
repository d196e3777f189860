"""Instance-id rules shared by every backend."""

from __future__ import annotations

from typing import Any

from durastate.errors import InvalidInstanceId

MAX_INSTANCE_ID_LENGTH = 512


def validate_instance_id(instance_id: Any, max_length: int = MAX_INSTANCE_ID_LENGTH) -> str:
    """Any non-empty str up to ``max_length`` characters that encodes to UTF-8."""
    if type(instance_id) is str and 0 < len(instance_id) <= max_length and instance_id.isascii():
        return instance_id  # the common case, decided without encoding
    if not isinstance(instance_id, str):
        raise InvalidInstanceId(f"instance id must be a str, not {type(instance_id).__name__}")
    if not instance_id:
        raise InvalidInstanceId("instance id must not be empty")
    if len(instance_id) > max_length:
        raise InvalidInstanceId(
            f"instance id {instance_id[:40]!r}... is {len(instance_id)} characters, "
            f"over the limit of {max_length}"
        )
    try:
        instance_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInstanceId(
            f"instance id {instance_id[:40]!r} contains a lone surrogate (not valid unicode)"
        ) from None
    return instance_id
