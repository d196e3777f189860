"""The sans-I/O core of the Redis backend: keys, script calls and what their replies mean.

No socket and no await here: the core turns a backend operation into plain ``ScriptCall``
data (script, keys, arguments) and turns the server's reply into records, etags or typed
errors. The sync driver (redis-py) and the async driver (`aio_connections`) only send the
calls, so both share one logic, and every decision here is unit-testable byte for byte.

Key layout under ``prefix`` (default ``durastate:``)::

    {prefix}i:{<escaped id>}     one hash per instance, and its pub/sub channel (each write
                                 publishes the new etag; "" on delete)
    {prefix}ix:all               sorted set of all ids (score 0: byte order, prefix ranges)
    {prefix}ix:created           sorted set of ids by created time (microseconds)
    {prefix}ix:s:<status>        one sorted set of ids per runtime status (byte order)

The escape (``%`` -> ``%25``, ``{`` -> ``%7B``, ``}`` -> ``%7D``) is reversible, so two ids
never share a key, and the braces make the id a Redis Cluster hash tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn

from durastate.backends.redis import scripts
from durastate.core.clock import from_micros, to_micros
from durastate.core.etags import EtagSource
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.tokens import decode_token, encode_token
from durastate.errors import (
    ConcurrencyError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
    InvalidContinuationToken,
    OutcomeUnknown,
)

PURGE_BATCH: Final = 500
COUNT_BATCH: Final = 5000  # matches one count call tallies at most (no record is sent)
_QUERY_BUDGET: Final = 1000  # index entries one query call examines at most

METADATA_FIELDS: Final = ("id", "n", "s", "c", "u", "cu", "e", "cs", "ce", "t")  # t: own ttl
ALL_FIELDS: Final = (*METADATA_FIELDS, "i", "ie", "o", "oe")
Reply = Any  # what redis-py returns for a script: nested lists of bytes, ints and None


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, the name EVALSHA calls it by."""

    name: str
    source: str
    sha: str

    @classmethod
    def of(cls, name: str, source: str) -> Script:
        digest = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        return cls(name, source, digest)


CREATE = Script.of("create", scripts.CREATE)
CUSTOM_STATUS = Script.of("custom status", scripts.CUSTOM_STATUS)
RUNTIME_STATUS = Script.of("runtime status", scripts.RUNTIME_STATUS)
READ = Script.of("read", scripts.READ)
DELETE = Script.of("delete", scripts.DELETE)
QUERY = Script.of("query", scripts.QUERY)
SCRIPTS: Final = (CREATE, CUSTOM_STATUS, RUNTIME_STATUS, READ, DELETE, QUERY)


@dataclass(slots=True)
class ScriptCall:
    """One EVALSHA: the script, its keys and arguments; ``retry_at`` is the index of the
    argument that starts with the retry flag (a write sent again after a lost answer sets
    it); ``etag`` the one the write is conditional on (for the error message).

    Treat it as immutable (``as_retry`` makes a new one). Not ``frozen``: one is built per
    write, and a frozen dataclass costs twice as much to build (as ``Payload``)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[str | bytes | int, ...]
    instance_id: str | None = None
    retry_at: int | None = None
    etag: str | None = None

    def as_retry(self) -> ScriptCall:
        if self.retry_at is None:
            return self
        args = list(self.args)
        flagged = args[self.retry_at]
        assert isinstance(flagged, str)
        args[self.retry_at] = "1" + flagged[1:]
        return replace(self, args=tuple(args))


#: a unique etag, which is also the write id a retry looks for: every one the same length
#: (12 hex digits of prefix, 12 of counter), as the scripts' list of recent writes needs
new_write_id = EtagSource(width=12)


def _from_micros(value: bytes) -> datetime:
    return from_micros(int(value))


def escape_id(instance_id: str) -> str:
    """Reversible, so no two ids collide; no braces left, so the key's hash tag is the id."""
    if "%" in instance_id or "{" in instance_id or "}" in instance_id:
        return instance_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return instance_id


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8")


def _payload(data: bytes | None, encoding: bytes | None) -> Payload | None:
    if data is None or encoding is None:
        return None
    return Payload.from_encoding(data, encoding.decode("utf-8"))


class RedisCore:
    """Builds the calls of one store (its ``prefix`` and expiry) and reads their replies."""

    def __init__(self, prefix: str = "durastate:", ttl_seconds: int | None = None) -> None:
        self.prefix = prefix
        self.ttl_ms = None if ttl_seconds is None else ttl_seconds * 1000
        self.all_key = f"{prefix}ix:all"
        self.created_key = f"{prefix}ix:created"
        self.status_keys = tuple(f"{prefix}ix:s:{status.value}" for status in scripts.STATUS_ORDER)
        self._index_keys = (self.all_key, self.created_key, *self.status_keys)

    # -- keys -----------------------------------------------------------------------------

    def instance_key(self, instance_id: str) -> str:
        return f"{self.prefix}i:{{{escape_id(instance_id)}}}"

    def channel(self, instance_id: str) -> str:
        """The pub/sub channel each write of this instance publishes its new etag on: named
        like its hash (channels are not keys), so a script needs no extra argument."""
        return self.instance_key(instance_id)

    @staticmethod
    def pushed_channel(message: dict[str, Any] | None) -> str | None:
        """The channel whose watchers a pub/sub message must notify, or None.

        A published write ('message') notifies; so does the server's confirmation of a
        SUBSCRIBE ('subscribe'): until then a write could pass unseen, so a watcher that read
        before the confirmation reads again (this also covers a re-subscription after a
        dropped connection: every watcher re-reads once)."""
        if message is None or message.get("type") not in ("message", "subscribe"):
            return None
        channel = message.get("channel")
        return channel.decode() if isinstance(channel, bytes) else channel

    def _expires(self, moment: datetime) -> str | int:
        return "" if self.ttl_ms is None else to_micros(moment) // 1000 + self.ttl_ms

    # -- writes ---------------------------------------------------------------------------

    def create(self, new: NewInstance, *, restart: bool) -> ScriptCall:
        status, given = new.custom_status, new.input
        created = to_micros(new.created_at)
        args = (
            new.instance_id,
            new.name,
            new.runtime_status.value,
            created,
            new_write_id(),
            "1" if restart else "0",
            "0",
            status.data if status else b"",
            status.encoding if status else "",
            given.data if given else b"",
            given.encoding if given else "",
            self._expires(new.created_at),
            "" if new.ttl_micros is None else new.ttl_micros,
        )
        keys = (self.instance_key(new.instance_id), *self._index_keys)
        return ScriptCall(CREATE, keys, args, new.instance_id, retry_at=6)

    def custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> ScriptCall:
        micros = to_micros(now)
        expires = "" if self.ttl_ms is None else micros // 1000 + self.ttl_ms
        encoding = payload.encoding
        header = f"0{new_write_id()}{micros},{expires},{len(encoding)},{encoding}{etag or ''}"
        return ScriptCall(
            CUSTOM_STATUS,
            (self.instance_key(instance_id),),
            (header, payload.data),
            instance_id,
            0,
            etag,
        )

    def runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> ScriptCall:
        args = (
            etag or "",
            status.value,
            to_micros(now),
            new_write_id(),
            "0",
            "1" if set_output else "0",
            output.data if output else b"",
            output.encoding if output else "",
            self._expires(now),
            instance_id,
        )
        keys = (self.instance_key(instance_id), *self.status_keys)
        return ScriptCall(RUNTIME_STATUS, keys, args, instance_id, retry_at=4, etag=etag)

    def delete(self, instance_id: str) -> ScriptCall:
        keys = (self.instance_key(instance_id), *self._index_keys)
        return ScriptCall(DELETE, keys, (instance_id,), instance_id)

    # -- write replies --------------------------------------------------------------------

    @staticmethod
    def created(call: ScriptCall, reply: Reply) -> str:
        """The etag of the new run; ``InstanceExists`` when a run is in the way."""
        outcome = reply[0]
        if outcome == b"ok":
            return str(reply[1].decode("ascii"))
        assert call.instance_id is not None
        if outcome == b"exists":
            raise InstanceExists(call.instance_id, _text(reply[1]) or None)
        raise _unknown_outcome("create", call.instance_id)

    @staticmethod
    def status_written(call: ScriptCall, reply: bytes) -> WriteResult:
        outcome = reply[:1]
        if outcome == b"o":
            return WriteResult(reply[1:].decode("ascii"))
        if outcome == b"s":
            return WriteResult(reply[1:].decode("ascii"), written=False)
        _refused(call, _STATUS_OUTCOMES.get(outcome, b"unknown"), "custom-status update")

    @staticmethod
    def runtime_written(call: ScriptCall, reply: Reply) -> str:
        outcome = reply[0]
        if outcome == b"ok":
            return str(reply[1].decode("ascii"))
        _refused(call, outcome, "runtime-status update")

    @staticmethod
    def deleted(reply: Reply) -> bool:
        return bool(reply == 1)

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def read_fields(fetch_payloads: bool) -> tuple[str, ...]:
        return ALL_FIELDS if fetch_payloads else METADATA_FIELDS

    def read(self, instance_id: str, fetch_payloads: bool) -> ScriptCall:
        fields = ALL_FIELDS if fetch_payloads else METADATA_FIELDS
        return ScriptCall(READ, (self.instance_key(instance_id),), fields, instance_id)

    @staticmethod
    def record(
        values: Sequence[bytes | None], fetch_payloads: bool, instance_id: str | None = None
    ) -> InstanceRecord | None:
        """A record from the fields in ``read_fields`` order; ``None`` if the hash is gone."""
        if values[0] is None and values[6] is None:
            return None
        name = instance_id if instance_id is not None else _text(values[0])
        try:
            updated = values[5]
            return InstanceRecord(
                instance_id=_text(values[0]),
                name=_text(values[1]),
                runtime_status=RuntimeStatus(_text(values[2])),
                created_at=_from_micros(values[3] or b""),
                last_updated_at=_from_micros(values[4] or b""),
                custom_status_updated_at=None if updated is None else _from_micros(updated),
                etag=_text(values[6]),
                custom_status=_payload(values[7], values[8]),
                input=_payload(values[10], values[11]) if fetch_payloads else None,
                output=_payload(values[12], values[13]) if fetch_payloads else None,
                ttl=None if values[9] is None else timedelta(microseconds=int(values[9])),
            )
        except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise CorruptRecord(name, f"redis hash: {type(exc).__name__}") from None

    # -- queries --------------------------------------------------------------------------

    def query(
        self, query: InstanceQuery, *, purge: bool = False, count: bool = False
    ) -> ScriptCall:
        """The first (or, with the query's continuation, the next) call of a query walk;
        ``purge``: it deletes its matches, ``count``: it tallies them per status."""
        plan, statuses = self._plan(query)
        cursor_a, cursor_b = "", ""
        if plan == "status":
            cursor_a = "1"
        if query.continuation is not None:
            cursor_a, cursor_b = self._cursor(query, plan, len(statuses))
        if purge or count:
            what, limit = ("p", PURGE_BATCH) if purge else ("c", COUNT_BATCH)
        else:
            what, limit = ("1" if query.fetch_payloads else "0"), query.page_size
        args = (
            self.prefix,
            limit,
            what,
            query.prefix or "",
            _micros_or_empty(query.created_from),
            _micros_or_empty(query.created_to),
            plan,
            cursor_a,
            cursor_b,
            ",".join(statuses),
            max(_QUERY_BUDGET, 4 * limit),
            "" if query.name is None else f"={query.name}",
            _micros_or_empty(query.updated_from),
            _micros_or_empty(query.updated_to),
        )
        return ScriptCall(QUERY, self._index_keys, args)

    @staticmethod
    def _plan(query: InstanceQuery) -> tuple[str, list[str]]:
        """Which index to walk: the status sets, the id order (prefix), or created time."""
        if query.runtime_status is not None:
            statuses = [s.value for s in scripts.STATUS_ORDER if s in query.runtime_status]
            return "status", statuses
        if query.prefix or (query.created_from is None and query.created_to is None):
            return "lex", []
        return "time", []

    def _fingerprint(self, query: InstanceQuery) -> str:
        """Ties a token to its store and filters, so one query's token fails another."""
        plan, statuses = self._plan(query)
        shape = (
            self.prefix,
            plan,
            statuses,
            query.prefix,
            _micros_or_empty(query.created_from),
            _micros_or_empty(query.created_to),
            query.name,
            _micros_or_empty(query.updated_from),
            _micros_or_empty(query.updated_to),
        )
        return hashlib.blake2b(repr(shape).encode("utf-8"), digest_size=8).hexdigest()

    def _cursor(self, query: InstanceQuery, plan: str, statuses: int) -> tuple[str, str]:
        assert query.continuation is not None
        state = decode_token(query.continuation)
        cursor_a, cursor_b = state.get("a"), state.get("b")
        if (
            state.get("v") != 1
            or state.get("q") != self._fingerprint(query)
            or not isinstance(cursor_a, str)
            or not isinstance(cursor_b, str)
            or not _valid_cursor(plan, cursor_a, statuses)
        ):
            raise InvalidContinuationToken("continuation token is not valid for this query")
        return cursor_a, cursor_b

    def page(self, query: InstanceQuery, reply: Reply) -> RecordPage:
        width = len(self.read_fields(query.fetch_payloads))
        count = int(reply[2])
        items = []
        for number in range(count):
            values = reply[3 + number * width : 3 + (number + 1) * width]
            record = self.record(values, query.fetch_payloads)
            if record is not None:
                items.append(record)
        token = None
        if reply[0] is not None or reply[1] is not None:
            token = encode_token(
                {
                    "v": 1,
                    "q": self._fingerprint(query),
                    "a": _text(reply[0]),
                    "b": _text(reply[1]),
                }
            )
        return RecordPage(items, token)

    def purged(self, query: InstanceQuery, reply: Reply) -> tuple[int, InstanceQuery | None]:
        """How many one purge call deleted, and the query for the next call (if any)."""
        return int(reply[2]), self._next(query, reply)

    def counted(
        self, query: InstanceQuery, reply: Reply, counts: dict[RuntimeStatus, int]
    ) -> InstanceQuery | None:
        """Add one count call's tally to ``counts``; the query for the next call (if any)."""
        tally = reply[3:]
        for index in range(0, len(tally), 2):
            status = RuntimeStatus(_text(tally[index]))
            counts[status] = counts.get(status, 0) + int(tally[index + 1])
        return self._next(query, reply)

    def _next(self, query: InstanceQuery, reply: Reply) -> InstanceQuery | None:
        if reply[0] is None and reply[1] is None:
            return None
        token = encode_token(
            {"v": 1, "q": self._fingerprint(query), "a": _text(reply[0]), "b": _text(reply[1])}
        )
        return replace(query, continuation=token)


def _micros_or_empty(moment: datetime | None) -> int | str:
    return "" if moment is None else to_micros(moment)


def _valid_cursor(plan: str, cursor_a: str, statuses: int) -> bool:
    if plan == "status":
        return cursor_a.isdigit() and 1 <= int(cursor_a) <= statuses
    if plan == "time":
        try:
            float(cursor_a)
        except ValueError:
            return False
        return True
    return cursor_a == ""


_STATUS_OUTCOMES: Final = {b"x": b"stale", b"m": b"missing", b"u": b"unknown"}


def _refused(call: ScriptCall, outcome: bytes, operation: str) -> NoReturn:
    instance_id = call.instance_id or ""
    if outcome == b"missing":
        raise InstanceNotFound(instance_id)
    if outcome == b"stale":
        raise ConcurrencyError(instance_id, call.etag)
    raise _unknown_outcome(operation, instance_id)


def _unknown_outcome(operation: str, instance_id: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"redis {operation} of instance {instance_id!r}: the connection was lost after the "
        "write was sent and its outcome is unknown (other writes have moved the instance on)"
    )
