"""What anchors and peers share: a reference implementation of "write one progress update".

A reference opens once per backend (clients, tables, buckets), then hands out one operation
per payload; ``op(i)`` writes variant ``i & 1`` so every call writes different bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from durastate.bench.timing import Op


class Session(Protocol):
    """An opened reference: one operation per payload, then close."""

    def op(self, values: tuple[Any, Any], key: str) -> Op: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Reference:
    """An anchor (the raw SDK call) or a peer (another library) on one backend's service."""

    subject: str  # anchor | peer
    name: str
    serializer: str
    compares_to: str  # the durastate operation it does the same job as
    open: Callable[[], Session]
    note: str = ""
    operation: str = "raw_update"  # what the reference itself does (``raw_read``, ...)


@dataclass(frozen=True)
class AwsTarget:
    """Where an AWS backend points, from its URL and options (emulator or AWS)."""

    endpoint_url: str | None
    region: str
    access_key: str | None
    secret_key: str | None

    @classmethod
    def from_options(cls, url: str, options: dict[str, Any]) -> AwsTarget:
        from urllib.parse import parse_qsl

        merged = {**dict(parse_qsl(urlsplit(url).query)), **options}
        secret = merged.get("aws_secret_access_key")
        if secret is not None and hasattr(secret, "get_secret_value"):
            secret = secret.get_secret_value()
        return cls(
            endpoint_url=merged.get("endpoint_url"),
            region=str(merged.get("region") or merged.get("region_name") or "us-east-1"),
            access_key=merged.get("aws_access_key_id"),
            secret_key=None if secret is None else str(secret),
        )

    def client_kwargs(self, *, tuned: bool = False) -> dict[str, Any]:
        """boto3.client arguments; ``tuned``: the client settings durastate's backends use
        (no client-side parameter validation), so the comparison is like for like."""
        kwargs: dict[str, Any] = {"region_name": self.region}
        if tuned:
            import botocore.config

            kwargs["config"] = botocore.config.Config(parameter_validation=False)
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = self.secret_key
        return kwargs
