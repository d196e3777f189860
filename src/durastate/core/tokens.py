"""Opaque continuation tokens: base64url JSON, so backends can carry any cursor."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from durastate.errors import InvalidContinuationToken

__all__ = ["InvalidContinuationToken", "decode_token", "encode_token"]


def encode_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode("ascii").rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        state = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidContinuationToken("continuation token is not valid") from None
    if not isinstance(state, dict):
        raise InvalidContinuationToken("continuation token is not valid")
    return state
