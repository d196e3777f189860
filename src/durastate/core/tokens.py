"""Opaque continuation tokens: base64url JSON, so backends can carry any cursor."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from durastate.errors import InvalidContinuationToken

__all__ = [
    "InvalidContinuationToken",
    "after_token",
    "decode_after",
    "decode_token",
    "encode_token",
]


def encode_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode("ascii").rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """The state inside ``token``; `InvalidContinuationToken` for anything else."""
    if not isinstance(token, str):
        raise InvalidContinuationToken("continuation token must be a str")
    try:
        padded = token + "=" * (-len(token) % 4)
        state = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidContinuationToken("continuation token is not valid") from None
    if not isinstance(state, dict):
        raise InvalidContinuationToken("continuation token is not valid")
    return state


def after_token(last_id: str) -> str:
    """The token of keyset paging in id order: the last id returned."""
    return encode_token({"after": last_id})


def decode_after(token: str | None) -> str | None:
    """The last id of the previous page, from an `after_token`; ``None`` without a token.

    A token of another shape (forged, truncated, or made by a backend that pages otherwise)
    raises `InvalidContinuationToken` instead of a ``KeyError`` deep in a query.
    """
    if token is None:
        return None
    state = decode_token(token)
    after = state.get("after")
    if len(state) != 1 or not isinstance(after, str):
        raise InvalidContinuationToken(
            "continuation token was not made by this backend (keyset paging by id)"
        )
    return after
