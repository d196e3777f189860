"""Pickle behind two locks: an HMAC checked before unpickling, and an exact class allow-list.

Plain pickle runs code on load (Celery CVE-2021-23727, Flask-Caching CVE-2021-33026). Here a
payload is only unpickled when (1) its HMAC-SHA256, keyed by one of the configured keys and
bound to the format id, key id and instance id, verifies in constant time, and (2) every
global it names is on an exact ``(module, name)`` allow-list (the Python docs' "Restricting
Globals"). With no key configured the serializer refuses to read or write.

Wire format: ``DSP1 | len(key_id) | key_id | mac[32] | pickle``.

What the locks do not cover: the signature binds a payload to its instance, not to the
field or the moment it was written, so someone who can write to the storage can put back an
older payload of the same instance (or move its input into its custom status). Every such
payload was written by this application for that instance; nothing foreign runs.

The default allow-list holds only classes whose construction is bounded by the payload's
own size: ``bytearray`` and ``range`` are not on it (``bytearray(2**31)`` or
``set(range(2**31))`` in a 40-byte payload would allocate gigabytes), nor is ``Fraction``
(``Fraction("1e999999999")`` computes a billion-digit integer). Protocol 5 writes
bytearrays without naming a class, so they still round-trip.
"""

from __future__ import annotations

import copyreg
import hmac
import io
import pickle
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import SecretStr

from durastate.errors import ConfigurationError, SerializationError
from durastate.serializers.base import Serializer, SerializerSettings

MAGIC = b"DSP1"
MAC_SIZE = 32

DEFAULT_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("collections", "OrderedDict"),
        ("collections", "deque"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("uuid", "UUID"),
        ("uuid", "SafeUUID"),
    }
)


class PayloadRejected(SerializationError):
    """A pickle-safe payload failed its signature or names a class that is not allowed."""


def _parse_allow(entries: Iterable[str | tuple[str, str]]) -> frozenset[tuple[str, str]]:
    allowed: set[tuple[str, str]] = set()
    for entry in entries:
        if isinstance(entry, str):
            module, sep, name = entry.partition(":")
            if not sep:
                module, _, name = entry.rpartition(".")
            if not module or not name:
                raise ConfigurationError(f"pickle allow-list entry {entry!r} must be 'module:Name'")
            allowed.add((module, name))
        else:
            allowed.add((entry[0], entry[1]))
    return frozenset(allowed)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: frozenset[tuple[str, str]]) -> None:
        super().__init__(io.BytesIO(data))
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise PayloadRejected(
                f"pickle-safe refuses global {module}.{name}: not on the allow-list"
            )
        return super().find_class(module, name)


#: Types the pickler writes as ``type(None)``-style reductions (``builtins.type`` + an
#: argument), not under their own names.
_SAVED_AS_TYPE_CALL = frozenset({type(None), type(NotImplemented), type(...)})


class _Undecidable(Exception):
    """The recording pickler cannot name a global for sure: unpickle (restricted) to decide."""


class _RecordingPickler(pickle.Pickler):
    """``pickle.Pickler`` that notes every ``(module, name)`` it writes as a global.

    Those pairs are exactly what an unpickler passes to ``find_class``, so checking them
    against the allow-list is as strict as unpickling, without unpickling. The C pickler
    calls `reducer_override` only for objects that are not plain data (None, bools, ints,
    floats, str, bytes, bytearray, dicts, lists, tuples, sets): JSON-like values cost
    nothing extra. The reduction is computed as the pickler would (``copyreg``'s dispatch
    table, else ``__reduce_ex__(5)``) and handed back to it.
    """

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=5)
        self.named: set[tuple[str, str]] = set()

    def _note(self, obj: Any, name: Any) -> None:
        if not isinstance(name, str):
            raise _Undecidable
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str):
            module = pickle.whichmodule(obj, name)  # type: ignore[attr-defined]  # as pickle does
        self.named.add((module, name))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type | types.FunctionType):
            if obj not in _SAVED_AS_TYPE_CALL:
                self._note(obj, getattr(obj, "__qualname__", None))
            return NotImplemented  # the pickler writes it by reference (save_global)
        reduce = copyreg.dispatch_table.get(type(obj))
        reduction = reduce(obj) if reduce is not None else obj.__reduce_ex__(5)
        if isinstance(reduction, str):  # "pickle me by this global name"
            self._note(obj, reduction)
        return reduction  # its callable is saved next, and noted if it is a global


_NO_GLOBALS: frozenset[tuple[str, str]] = frozenset()
_PLAIN_TYPES = frozenset({dict, list, tuple, str, int, float, bool, bytes, type(None)})


class _PicklerPerThread(threading.local):
    """One recording pickler per thread, reused: building one costs more than a small dump."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.pickler = _RecordingPickler(self.buffer)
        self.busy = False


_per_thread = _PicklerPerThread()


def _pickle_noting_globals(
    value: Any,
) -> tuple[bytes, frozenset[tuple[str, str]] | set[tuple[str, str]] | None]:
    """The protocol 5 pickle of ``value`` and the globals it names (``None``: undecided)."""
    state = _per_thread
    if state.busy:  # a __reduce__ that pickles again, in this thread: use a fresh one
        state = _PicklerPerThread()
    buffer, pickler = state.buffer, state.pickler
    state.busy = True
    try:
        buffer.seek(0)
        buffer.truncate()
        pickler.clear_memo()  # the memo must not reach into the previous dump
        pickler.named.clear()
        pickler.dump(value)
        named = pickler.named
        return buffer.getvalue(), (set(named) if named else _NO_GLOBALS)
    except _Undecidable:
        return pickle.dumps(value, protocol=5), None
    finally:
        state.busy = False


def _length_prefixed(part: bytes) -> bytes:
    return len(part).to_bytes(8, "big") + part


class SafePickleSerializer(Serializer):
    """Signed, allow-listed pickle; the first key signs, every key verifies (rotation)."""

    id = "pickle-safe"

    def __init__(
        self,
        keys: Mapping[str, SecretStr | str | bytes] | None = None,
        *,
        allow: Iterable[str | tuple[str, str]] = (),
        include_default_allow: bool = True,
    ) -> None:
        self._keys: dict[bytes, bytes] = {}
        for key_id, secret in (keys or {}).items():
            raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            key = raw.encode() if isinstance(raw, str) else raw
            key_id_bytes = key_id.encode()
            if not key_id_bytes or len(key_id_bytes) > 255 or len(key) < 16:
                raise ConfigurationError(
                    f"pickle-safe key {key_id!r}: id must be 1-255 bytes, key at least 16 bytes"
                )
            self._keys[key_id_bytes] = key
        self._signing_key_id = next(iter(self._keys), None)
        base = DEFAULT_ALLOWED if include_default_allow else frozenset()
        self._allowed = base | _parse_allow(allow)

    @classmethod
    def from_settings(cls, settings: SerializerSettings) -> Self:
        return cls(settings.pickle_keys, allow=settings.pickle_allow)

    def __repr__(self) -> str:
        ids = [key_id.decode() for key_id in self._keys]
        return f"SafePickleSerializer(key_ids={ids!r}, allowed={len(self._allowed)} globals)"

    def _require_keys(self) -> None:
        if self._signing_key_id is None:
            raise ConfigurationError(
                "pickle-safe needs an HMAC key (DURASTATE_PICKLE_KEYS='id:secret'); "
                "without one it refuses to read or write"
            )

    def _mac(self, key: bytes, key_id: bytes, instance_id: str, body: bytes) -> bytes:
        """HMAC-SHA256 over length-prefixed format id, key id and instance id, then body."""
        instance = instance_id.encode("utf-8", "surrogatepass")
        message = (
            _length_prefixed(self.id.encode())
            + _length_prefixed(key_id)
            + _length_prefixed(instance)
            + body
        )
        return hmac.digest(key, message, "sha256")

    def dumps(self, value: Any, *, instance_id: str) -> bytes:
        self._require_keys()
        assert self._signing_key_id is not None
        if type(value) not in _PLAIN_TYPES and (
            hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None))
        ):
            value = value.model_dump()
        try:
            body, named = _pickle_noting_globals(value)
            self._refuse_disallowed(body, named)  # refuse now what we could not read
        except PayloadRejected as exc:
            raise SerializationError(f"{exc}; add it to the pickle allow-list") from None
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise SerializationError(f"pickle cannot serialize this value: {exc}") from None
        key_id = self._signing_key_id
        mac = self._mac(self._keys[key_id], key_id, instance_id, body)
        return MAGIC + bytes([len(key_id)]) + key_id + mac + body

    def _refuse_disallowed(
        self, body: bytes, named: frozenset[tuple[str, str]] | set[tuple[str, str]] | None
    ) -> None:
        """`PayloadRejected` when ``body`` names a global ``find_class`` would refuse.

        Decided from the globals the pickler wrote, without unpickling; only a pickle whose
        globals could not be told for sure is unpickled, restricted, as on read.
        """
        if named is None:
            _RestrictedUnpickler(body, self._allowed).load()
            return
        if not named or named <= self._allowed:
            return
        for module, name in sorted(named - self._allowed):
            raise PayloadRejected(
                f"pickle-safe refuses global {module}.{name}: not on the allow-list"
            )

    def loads(self, data: bytes, *, instance_id: str) -> Any:
        self._require_keys()
        if data[:4] != MAGIC or len(data) < 5:
            raise PayloadRejected("pickle-safe payload has no valid header")
        id_length = data[4]
        key_id = data[5 : 5 + id_length]
        mac = data[5 + id_length : 5 + id_length + MAC_SIZE]
        body = data[5 + id_length + MAC_SIZE :]
        key = self._keys.get(key_id)
        if key is None:
            raise PayloadRejected(
                f"pickle-safe payload is signed with key id {key_id.decode(errors='replace')!r}, "
                "which is not configured"
            )
        expected = self._mac(key, key_id, instance_id, body)
        if len(mac) != MAC_SIZE or not hmac.compare_digest(mac, expected):
            raise PayloadRejected(
                "pickle-safe signature does not match (tampered, or written for another instance)"
            )
        return _RestrictedUnpickler(body, self._allowed).load()
