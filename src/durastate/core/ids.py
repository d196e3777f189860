"""Argument rules shared by every backend: instance ids, workflow names, query times.

They run in the store before any I/O, so a backend never sees a value it would have to
reject with its own (raw) exception.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from durastate.errors import InvalidArgument, InvalidInstanceId

MAX_INSTANCE_ID_LENGTH = 512
MAX_NAME_LENGTH = 1024


def validate_instance_id(instance_id: Any, max_length: int = MAX_INSTANCE_ID_LENGTH) -> str:
    """Any non-empty str up to ``max_length`` characters that encodes to UTF-8."""
    if type(instance_id) is str and 0 < len(instance_id) <= max_length and instance_id.isascii():
        return instance_id  # the common case, decided without encoding
    return _checked_text(instance_id, "instance id", max_length, InvalidInstanceId)


def validate_name(name: Any) -> str:
    """A workflow name: a non-empty str of up to `MAX_NAME_LENGTH` characters, valid UTF-8."""
    if type(name) is str and 0 < len(name) <= MAX_NAME_LENGTH and name.isascii():
        return name
    return _checked_text(name, "workflow name", MAX_NAME_LENGTH, InvalidArgument)


def _checked_text(value: Any, what: str, max_length: int, error: type[InvalidArgument]) -> str:
    """``value`` if it is a non-empty str of at most ``max_length`` characters, valid UTF-8;
    otherwise ``error`` saying which rule it broke."""
    if not isinstance(value, str):
        raise error(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise error(f"{what} must not be empty")
    if len(value) > max_length:
        raise error(
            f"{what} {value[:40]!r}... is {len(value)} characters, over the limit of {max_length}"
        )
    if not _encodes(value):
        raise error(f"{what} {value[:40]!r} contains a lone surrogate (not valid unicode)")
    return value


def validate_moment(moment: Any, what: str) -> datetime | None:
    """A query bound: ``None`` or a timezone-aware datetime (a naive one is ambiguous)."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise InvalidArgument(f"{what} must be a datetime, not {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise InvalidArgument(
            f"{what} must be timezone-aware (e.g. datetime(..., tzinfo=UTC)), got a naive "
            "datetime"
        )
    return moment


def validate_prefix(prefix: Any) -> str | None:
    """An instance-id prefix: ``None`` or a str that encodes to UTF-8."""
    if prefix is None:
        return None
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a str, not {type(prefix).__name__}")
    if not _encodes(prefix):
        raise InvalidArgument(f"prefix {prefix[:40]!r} contains a lone surrogate")
    return prefix


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
