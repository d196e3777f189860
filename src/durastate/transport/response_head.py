"""A cheaper head parser for `http.client` responses.

`http.client` parses response headers with the ``email`` package (feedparser, policies,
header classes): profiled here, that was about 40 % of the client CPU of a small signed
write. `LeanResponse` keeps everything else of ``HTTPResponse`` (status line, 1xx
skipping, body framing, chunked reads, keep-alive rules) and replaces only that parser with
a split on the first colon, folding obsolete continuation lines as RFC 9112 allows.
"""

from __future__ import annotations

import http.client
from typing import Any

from durastate.transport.messages import merge_headers

__all__ = ["LeanResponse", "ResponseHeaders"]


class ResponseHeaders:
    """The answer's headers: raw pairs in order, and a lower-case view for look-ups."""

    __slots__ = ("by_name", "pairs")

    def __init__(self, lines: list[bytes]) -> None:
        pairs: list[tuple[str, str]] = []
        for raw in lines:
            line = raw.decode("iso-8859-1").rstrip("\r\n")
            if not line:
                continue
            if line[0] in " \t":  # obsolete line folding: part of the previous value
                if pairs:
                    name, value = pairs[-1]
                    pairs[-1] = (name, f"{value} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if colon:
                pairs.append((name.strip(), value.strip()))
        self.pairs = pairs
        self.by_name = merge_headers(pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.by_name.get(name.lower(), default)

    def get_all(self, name: str, default: Any = None) -> list[str] | Any:
        lowered = name.lower()
        found = [value for key, value in self.pairs if key.lower() == lowered]
        return found or default

    def items(self) -> list[tuple[str, str]]:
        return self.pairs


class LeanResponse(http.client.HTTPResponse):
    """``HTTPResponse`` whose headers are a `ResponseHeaders` (the rest is the stdlib's)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = ResponseHeaders(http.client._read_headers(self.fp))
        self.headers = self.msg = headers
        coding = headers.get("transfer-encoding")
        self.chunked = bool(coding and coding.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            if self.length is not None and self.length < 0:
                self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True
