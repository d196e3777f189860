"""Keeping secrets out of messages, reprs and dumps, whatever the user typed where.

Users put credentials in places meant for other things: ``azure-tables://acct:KEY@Table``,
a whole connection string pasted as the URL, ``dynamodb://AKIA...:SECRET@table``, a key in
an option whose name says so. Everything durastate shows about a URL or options goes through
here first: `redact_url` for a URL, `mask_options` for options, and `scrub` for a message that
may quote either (a backend's error echoing the table name it was given, for example).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

MASK: Final = "***"

#: Option names that hold secrets; any name containing one of `_SECRET_WORDS` counts too.
SECRET_OPTION_NAMES: Final = frozenset(
    {
        "connection_string",
        "aws_secret_access_key",
        "aws_session_token",
        "account_key",
        "credential",
        "sas_token",
        "password",
    }
)
_SECRET_WORDS: Final = ("secret", "key", "token", "password", "passwd", "credential", "sas", "sig")

#: ``name=value`` pairs inside connection strings and query strings whose value is secret
#: (``AccountKey=...;``, ``SharedAccessSignature=...``, ``?sig=...``, ``password=...``).
_SECRET_PAIR: Final = re.compile(
    r"(?i)\b([\w.-]*(?:key|secret|token|password|passwd|signature|credential|sig|sas)[\w.-]*)"
    r"=([^;&\s]*)"
)


def is_secret_name(name: str) -> bool:
    """True for option names that say they hold a secret (``*_key``, ``*token*``, ...)."""
    lowered = name.lower()
    return lowered in SECRET_OPTION_NAMES or any(word in lowered for word in _SECRET_WORDS)


def mask_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with every secret-named value (at any depth) replaced by ``***``."""
    masked: dict[str, Any] = {}
    for name, value in options.items():
        if is_secret_name(str(name)):
            masked[name] = MASK
        elif isinstance(value, Mapping):
            masked[name] = mask_options(value)
        elif isinstance(value, str):
            masked[name] = mask_text(value)
        else:
            masked[name] = value
    return masked


_USERINFO: Final = re.compile(r"://[^/?#@\s]*@")


def mask_text(text: str) -> str:
    """``text`` with URL userinfo and secret-looking ``name=value`` pairs masked."""
    return _SECRET_PAIR.sub(rf"\1={MASK}", _USERINFO.sub(f"://{MASK}@", text))


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be secret: its userinfo (and the password alone), and
    the values of secret-looking ``name=value`` pairs (a pasted connection string)."""
    found: list[str] = []
    _, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
        found.append(userinfo)
        found.extend(part for part in userinfo.split(":")[1:] if part)
    found.extend(match.group(2) for match in _SECRET_PAIR.finditer(url) if match.group(2))
    return found


def redact_url(url: str) -> str:
    """The URL without its query string, userinfo or secret-looking pairs, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK  # not a URL at all: perhaps a pasted connection string
    rest = rest.split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = MASK + "@" + authority.rsplit("@", 1)[1]
    return _SECRET_PAIR.sub(rf"\1={MASK}", f"{scheme}{sep}{authority}{slash}{path}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (longest first) replaced by ``***``."""
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_text(text)


def secrets_of(url: str | None, options: Mapping[str, Any]) -> list[str]:
    """Everything secret that a URL and options carry, to `scrub` from messages."""
    found = url_secrets(url) if url else []
    for name, value in options.items():
        if is_secret_name(str(name)) and value is not None:
            raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            found.append(str(raw))
        elif isinstance(value, Mapping):
            found.extend(secrets_of(None, value))
    return found
