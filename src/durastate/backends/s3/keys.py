"""Instance ids as S3 keys: reversible per-character escaping, and hashed keys for long ids.

Per-character escaping makes ``escape_id(a + b) == escape_id(a) + escape_id(b)``, so the
escaped form of an id prefix is a prefix of the escaped id and a prefix query is a key-prefix
listing. ``%`` is always escaped, so two ids never share a key. This is the stored layout:
changing it would strand every object written before.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass

from durastate.errors import ConfigurationError

__all__ = [
    "MAX_KEY_BYTES",
    "KeyLayout",
    "escape_id",
    "instance_key",
    "listing_prefix",
    "unescape_id",
]

MAX_KEY_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes
HASH_SUFFIX_BYTES = 2 + 64  # "%~" + sha256 hex, for ids whose escaped form is too long

# ASCII kept as-is: letters, digits and the punctuation S3 documents as safe or harmless.
# Everything else in ASCII ('/', '%', controls, and S3's "characters to avoid") is %XX.
_SAFE_ASCII = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!-_.*'()&$@=;:+ ,?"
)


def _escape_char(char: str) -> str:
    code = ord(char)
    keep = (
        char in _SAFE_ASCII
        if code < 0x80
        else not (code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF))
    )
    if keep:
        return char
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def escape_id(instance_id: str) -> str:
    """Percent-encode, character by character, what S3 keys should not carry (reversible by
    `unescape_id`; the escaped form of a prefix is a prefix of the escaped id)."""
    return "".join(_escape_char(char) for char in instance_id)


def unescape_id(escaped: str) -> str:
    """The inverse of `escape_id` (for people reading keys, and for listing hints)."""
    return urllib.parse.unquote(escaped, errors="surrogatepass")


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form has at most ``limit`` bytes."""
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def instance_key(instance_id: str, budget: int) -> str:
    """The key suffix of an id: its escaped form, or, if over ``budget`` bytes, a hashed one.

    A long id keeps the first ``budget - 66`` bytes of its escaped form (so prefix listings
    still find it) followed by ``%~`` and the SHA-256 of the id. ``%~`` never occurs in an
    escaped id, so hashed keys cannot collide with plain ones.
    """
    escaped = escape_id(instance_id)
    if len(escaped.encode("utf-8")) <= budget:
        return escaped
    digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()
    return _truncate_utf8(escaped, budget - HASH_SUFFIX_BYTES) + "%~" + digest


def listing_prefix(id_prefix: str, budget: int) -> str:
    """A key prefix shared by every id starting with ``id_prefix``, plain or hashed."""
    return _truncate_utf8(escape_id(id_prefix), budget - HASH_SUFFIX_BYTES)


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Where one store's objects live: ``PREFIX/records/K`` and ``PREFIX/status/K``."""

    prefix: str
    records: str
    statuses: str
    budget: int

    @classmethod
    def under(cls, prefix: str) -> KeyLayout:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        records = f"{base}records/"
        budget = MAX_KEY_BYTES - len(records.encode("utf-8"))
        if budget < 2 * HASH_SUFFIX_BYTES:
            raise ConfigurationError(f"s3 prefix {prefix[:40]!r}... is too long")
        return cls(prefix, records, f"{base}status/", budget)

    def record_key(self, instance_id: str) -> str:
        return self.records + instance_key(instance_id, self.budget)

    def status_key(self, instance_id: str) -> str:
        return self.statuses + instance_key(instance_id, self.budget)

    def status_key_of(self, record_key: str) -> str:
        """The status object beside a listed record object (its id may be unknown)."""
        return self.statuses + record_key[len(self.records) :]

    def record_listing_prefix(self, id_prefix: str) -> str:
        return self.records + listing_prefix(id_prefix, self.budget)

    def id_hint(self, record_key: str) -> str:
        """The id a listed record key names, for messages (a hashed key has no way back)."""
        suffix = record_key[len(self.records) :]
        return unescape_id(suffix) if "%~" not in suffix else suffix
