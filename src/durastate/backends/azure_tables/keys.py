"""Instance ids as Azure Table keys: a reversible, prefix-preserving escape.

Azure forbids ``/ \\ # ?`` and control characters in keys and limits them to 1 KiB of
UTF-16. Every id maps to exactly one key (two ids never share one), and a prefix of an id
maps to a prefix of its key, so an id-prefix query is a key-range query.
"""

from __future__ import annotations

import hashlib
import re

KEY_LIMIT = 512  # 1 KiB of UTF-16: Azure (and Azurite) reject longer keys

ESCAPE = "^"
HASH_MARK = "^~"  # never produced by escape(): '~' is neither a hex digit nor 'u'
_HASH_HEX = 64
TRUNCATED_LIMIT = KEY_LIMIT - len(HASH_MARK) - _HASH_HEX
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f-\x9f/\\\\#?%^\ud800-\udfff\ufffe\uffff]")
_CODEWORD = re.compile(r"\^(?:u([0-9A-F]{4})|([0-9A-F]{2}))")


def _codeword(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"^{code:02X}" if code <= 0xFF else f"^u{code:04X}"


def escape_key(instance_id: str) -> str:
    """Replace each character Azure forbids in keys (and the escape '^') by ^XX or ^uXXXX.

    Every character maps to its own codeword and no codeword is a prefix of another, so
    the escape is injective and preserves prefixes both ways. '%' is escaped too, since
    some Azure tools mishandle it in key URLs; U+FFFE/U+FFFF and lone surrogates too, so
    every key is valid Unicode.
    """
    if _NEEDS_ESCAPE.search(instance_id) is None:
        return instance_id
    return _NEEDS_ESCAPE.sub(_codeword, instance_id)


def unescape_key(key: str) -> str:
    """Inverse of ``escape_key``; ``ValueError`` for anything ``escape_key`` cannot produce."""
    if ESCAPE not in key:
        return key
    parts: list[str] = []
    position = 0
    while True:
        found = key.find(ESCAPE, position)
        if found < 0:
            parts.append(key[position:])
            return "".join(parts)
        match = _CODEWORD.match(key, found)
        if match is None:
            raise ValueError(f"not an escaped key: bad escape at {found}")
        parts.append(key[position:found])
        parts.append(chr(int(match.group(1) or match.group(2), 16)))
        position = match.end()


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, which is how Azure measures keys and strings."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _truncate_escaped(escaped: str, limit: int) -> str:
    """The longest prefix of ``escaped`` ending on a codeword boundary within ``limit``."""
    used = 0
    index = 0
    while index < len(escaped):
        step = 1
        if escaped[index] == ESCAPE:
            step = 6 if escaped[index + 1] == "u" else 3
        width = sum(2 if ord(c) > 0xFFFF else 1 for c in escaped[index : index + step])
        if used + width > limit:
            break
        used += width
        index += step
    return escaped[:index]


def partition_key(instance_id: str) -> str:
    """The PartitionKey: the escaped id, or, past 1 KiB, a truncated escape plus SHA-256.

    Hashed keys carry a mark that no escaped id contains, so a hashed key never equals a
    plain one, and their truncated part keeps prefix queries a (superset) key range.
    """
    escaped = escape_key(instance_id)
    if utf16_length(escaped) <= KEY_LIMIT:
        return escaped
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()
    return _truncate_escaped(escaped, TRUNCATED_LIMIT) + HASH_MARK + digest


def prefix_range(prefix: str) -> tuple[str, str] | None:
    """PartitionKey bounds [low, high) holding every id that starts with ``prefix``.

    A superset under both code-point and UTF-16 ordering (callers filter exactly);
    ``None`` when no useful bound exists.
    """
    low = _truncate_escaped(escape_key(prefix), TRUNCATED_LIMIT)
    while low:
        last = ord(low[-1])
        if last < 0x10FFFF:
            following = 0xE000 if 0xD7FF <= last < 0xE000 else last + 1
            return low, low[:-1] + chr(following)
        low = low[:-1]
    return None
