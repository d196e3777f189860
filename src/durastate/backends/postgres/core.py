"""The PostgreSQL backend's decisions as plain data: statements, parameters, outcomes.

No connection and no ``await`` here (the sans-I/O idea): the sync driver (`sync.py`, psycopg
``Connection`` + ``ConnectionPool``) and the async driver (`aio.py`, ``AsyncConnection`` +
``AsyncConnectionPool``) execute exactly these statements and hand the rows back to these
functions, so both stores share one logic and the core is unit-tested without a server.

Layout: one table, one row per instance. ``instance_id`` is ``bytea`` (the UTF-8 bytes of the
id): any id, NUL included, is stored exactly and ids sort by code point (keyset paging and
prefix ranges use the primary key). ``etag`` is made by the client for every write; ``run_id``
is the etag of the create that started the run, so a create whose answer was lost is
recognised as our own. ``expires_at`` (``ttl_seconds``) hides a row from every read and query
until a sweep deletes it. Every write notifies ``channel`` in its own transaction with the
hex of the id's UTF-8 bytes (at most 4 KiB: a 512-character id), never the status.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from durastate.core.etags import EtagSource
from durastate.core.records import (
    TERMINAL_STATUSES,
    Capabilities,
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
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
    InvalidContinuationToken,
    OutcomeUnknown,
    SerializationError,
)

SCHEMA_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 256 * 1024 * 1024  # bytea holds 1 GB; keep well below
#: One row per store table of the database: (table name, schema version), for migrations.
VERSION_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS durastate_schema "
    "(table_name text PRIMARY KEY, version integer NOT NULL)"
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TERMINAL_SQL: Final = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))
_LIVE: Final = "(expires_at IS NULL OR expires_at > now())"

new_etag = EtagSource()


class PostgresOptions(BaseModel):
    """Backend options besides the connection URL (see docs/postgres.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str = "durastate_instances"
    create_table: bool = True
    timeout: float = Field(default=10.0, gt=0)  # bounds every call: pool wait + statement
    connect_timeout: float = Field(default=5.0, ge=2)  # libpq's minimum is 2 s
    statement_timeout: float | None = Field(default=None, gt=0)  # default: ``timeout``
    min_pool_size: int = Field(default=1, ge=0)
    max_pool_size: int = Field(default=10, ge=1)
    ttl_seconds: int | None = Field(default=None, gt=0)
    notify: bool = True
    channel: str | None = None  # default: the table name
    application_name: str = "durastate"

    def model_post_init(self, context: Any, /) -> None:
        if not _IDENTIFIER.match(self.table):
            raise ConfigurationError(
                f"invalid PostgreSQL table name {self.table!r}: letters, digits and _, "
                "at most 63, not starting with a digit"
            )
        if self.channel is not None and not _IDENTIFIER.match(self.channel):
            raise ConfigurationError(f"invalid PostgreSQL channel name {self.channel!r}")
        if self.min_pool_size > self.max_pool_size:
            raise ConfigurationError("min_pool_size must not exceed max_pool_size")

    @property
    def server_timeout_ms(self) -> int:
        return int((self.statement_timeout or self.timeout) * 1000)


def id_key(instance_id: str) -> bytes:
    """The stored key: the id's UTF-8 bytes (validated ids have no lone surrogates)."""
    return instance_id.encode()


def read_many_statement(read: str) -> str:
    """A one-id read statement made to read every id of an array parameter."""
    return read.replace("instance_id = %s", "instance_id = ANY(%s)", 1)


def id_of(key: bytes) -> str:
    return bytes(key).decode()


def channel_of(options: PostgresOptions) -> str:
    """The channel every write NOTIFYs (payload: the hex of the id's UTF-8 bytes)."""
    return options.channel or options.table


def listen_statement(options: PostgresOptions) -> str:
    """LISTEN on the write channel (a validated name; quoted, since NOTIFY keeps its case)."""
    return 'LISTEN "{}"'.format(channel_of(options).replace('"', '""'))


def notified_id(payload: str) -> str | None:
    """The instance id a NOTIFY payload names, or None for a payload no write sends."""
    try:
        return id_of(bytes.fromhex(payload))
    except ValueError:  # (UnicodeDecodeError included)
        return None


def _prefix_range(prefix: str) -> tuple[bytes, bytes | None]:
    """The key range ``[low, high)`` of ids starting with ``prefix`` (UTF-8 has no 0xFF)."""
    low = id_key(prefix)
    return low, low[:-1] + bytes([low[-1] + 1])


_META_COLUMNS: Final = (
    "instance_id, name, runtime_status, created_at, last_updated_at, "
    "custom_status_updated_at, etag, custom_status, custom_status_encoding"
)
_ALL_COLUMNS: Final = _META_COLUMNS + ", input, input_encoding, output, output_encoding"


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of one table, built once per backend (identifiers validated)."""

    schema: tuple[str, ...]
    schema_probe: str
    schema_version: str
    read: str
    read_all: str
    write_status: str
    write_status_if_match: str
    create: str
    create_or_restart: str
    delete: str
    current_etag: str
    forget_lost_backend: str
    backend_alive: str
    purge_expired: str
    table: str
    ttl: timedelta | None
    notify: str  # the RETURNING item that notifies for each changed row, or ""


def statements(options: PostgresOptions) -> Statements:
    table = options.table
    ttl = timedelta(seconds=options.ttl_seconds) if options.ttl_seconds else None
    expires = ", expires_at = now() + %(ttl)s" if ttl else ""
    channel = channel_of(options)
    # in RETURNING: a data-modifying CTE runs to completion, so every changed row notifies
    notify = f", pg_notify('{channel}', encode(instance_id, 'hex'))" if options.notify else ""
    write_status = (
        f"WITH current AS (SELECT etag, custom_status = %(data)s "
        f"AND custom_status_encoding = %(encoding)s AS same FROM {table} "
        f"WHERE instance_id = %(id)s AND {_LIVE}), "
        f"changed AS (UPDATE {table} SET custom_status = %(data)s, "
        "custom_status_encoding = %(encoding)s, custom_status_updated_at = %(now)s, "
        f"last_updated_at = %(now)s, etag = %(new_etag)s{expires} "
        f"WHERE instance_id = %(id)s AND {_LIVE}{{match}} AND (custom_status IS DISTINCT FROM "
        "%(data)s OR custom_status_encoding IS DISTINCT FROM %(encoding)s) "
        f"RETURNING instance_id{notify}) "
        # no row when written (the common case: nothing to send back or parse); otherwise
        # the row before, or NULLs when there is none
        "SELECT current.etag, current.same FROM (SELECT 1) AS one LEFT JOIN current ON true "
        "WHERE NOT EXISTS (SELECT 1 FROM changed)"
    )
    insert = (
        f"WITH changed AS (INSERT INTO {table} (instance_id, name, runtime_status, "
        "created_at, last_updated_at, custom_status_updated_at, etag, run_id, custom_status, "
        "custom_status_encoding, input, input_encoding, expires_at) VALUES (%(id)s, %(name)s, "
        "%(status)s, %(now)s, %(now)s, %(status_at)s, %(new_etag)s, %(new_etag)s, %(data)s, "
        f"%(encoding)s, %(input)s, %(input_encoding)s, {'now() + %(ttl)s' if ttl else 'NULL'}) "
        "ON CONFLICT (instance_id) DO UPDATE SET name = EXCLUDED.name, "
        "runtime_status = EXCLUDED.runtime_status, created_at = EXCLUDED.created_at, "
        "last_updated_at = EXCLUDED.last_updated_at, "
        "custom_status_updated_at = EXCLUDED.custom_status_updated_at, etag = EXCLUDED.etag, "
        "run_id = EXCLUDED.run_id, custom_status = EXCLUDED.custom_status, "
        "custom_status_encoding = EXCLUDED.custom_status_encoding, input = EXCLUDED.input, "
        "input_encoding = EXCLUDED.input_encoding, output = NULL, output_encoding = NULL, "
        f"expires_at = EXCLUDED.expires_at WHERE {table}.expires_at <= now(){{restart}} "
        f"RETURNING instance_id{notify}) "
        "SELECT (SELECT count(*) FROM changed), "
        f"(SELECT runtime_status FROM {table} WHERE instance_id = %(id)s)"
    )
    return Statements(
        schema=(
            f"CREATE TABLE IF NOT EXISTS {table} (instance_id bytea PRIMARY KEY, "
            "name text NOT NULL, runtime_status text NOT NULL, "
            "created_at timestamptz NOT NULL, last_updated_at timestamptz NOT NULL, "
            "custom_status_updated_at timestamptz, etag text NOT NULL, run_id text NOT NULL, "
            "custom_status bytea, custom_status_encoding text, input bytea, "
            "input_encoding text, output bytea, output_encoding text, expires_at timestamptz)",
            f"CREATE INDEX IF NOT EXISTS {table}_by_status_created "
            f"ON {table} (runtime_status, created_at)",
            f"CREATE INDEX IF NOT EXISTS {table}_by_created ON {table} (created_at)",
            f"CREATE INDEX IF NOT EXISTS {table}_by_expiry ON {table} (expires_at) "
            "WHERE expires_at IS NOT NULL",
            VERSION_TABLE,
            "INSERT INTO durastate_schema (table_name, version) "
            f"VALUES ('{table}', {SCHEMA_VERSION}) ON CONFLICT (table_name) DO NOTHING",
        ),
        schema_probe=(
            f"SELECT to_regclass('{table}') IS NOT NULL "
            "AND to_regclass('durastate_schema') IS NOT NULL"
        ),
        schema_version=f"SELECT version FROM durastate_schema WHERE table_name = '{table}'",
        read=f"SELECT {_META_COLUMNS} FROM {table} WHERE instance_id = %s AND {_LIVE}",
        read_all=f"SELECT {_ALL_COLUMNS} FROM {table} WHERE instance_id = %s AND {_LIVE}",
        write_status=write_status.replace("{match}", ""),
        write_status_if_match=write_status.replace("{match}", " AND etag = %(etag)s"),
        create=insert.replace("{restart}", ""),
        create_or_restart=insert.replace(
            "{restart}", f" OR {table}.runtime_status IN ({_TERMINAL_SQL})"
        ),
        delete=(
            f"WITH changed AS (DELETE FROM {table} WHERE instance_id = %(id)s "
            f"RETURNING instance_id, {_LIVE} AS live{notify}) "
            f"SELECT (SELECT live FROM changed)"
        ),
        current_etag=f"SELECT etag, run_id FROM {table} WHERE instance_id = %s AND {_LIVE}",
        forget_lost_backend="SELECT pg_terminate_backend(%s, %s)",
        backend_alive="SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)",
        purge_expired=(
            f"WITH changed AS (DELETE FROM {table} WHERE expires_at <= now() "
            f"RETURNING instance_id{notify}) SELECT (SELECT count(*) FROM changed)"
        ),
        table=table,
        ttl=ttl,
        notify=notify,
    )


def schema_statements(stmts: Statements) -> tuple[str, ...]:
    """Run in one transaction; the advisory lock keeps concurrent openers from racing
    (CREATE TABLE IF NOT EXISTS alone can fail when two run at once)."""
    return ("SELECT pg_advisory_xact_lock(8243117)", *stmts.schema)


def schema_present(probe: Sequence[Any] | None, options: PostgresOptions) -> bool:
    """Whether the table and its version row exist; missing and not to be created: an error."""
    if probe is not None and probe[0]:
        return True
    if not options.create_table:
        raise ConfigurationError(
            f"postgresql table {options.table!r} does not exist and create_table is False"
        )
    return False


def check_schema_version(table: str, row: Sequence[Any] | None) -> None:
    if row is None:
        raise ConfigurationError(
            f"postgresql table {table!r} has no schema version row in durastate_schema "
            "(open the store with create_table=True once)"
        )
    if row[0] > SCHEMA_VERSION:
        raise ConfigurationError(
            f"postgresql table {table!r} has schema version {row[0]}, newer than this "
            f"durastate's {SCHEMA_VERSION}: upgrade durastate"
        )


def capabilities(options: PostgresOptions) -> Capabilities:
    return Capabilities(
        max_payload_bytes=MAX_PAYLOAD_BYTES,
        skips_unchanged=True,
        native_query=True,
        ttl=options.ttl_seconds is not None,
        push=options.notify,
        max_instance_id_length=512,
    )


def parse_options(options: dict[str, Any]) -> PostgresOptions:
    try:
        return PostgresOptions(**options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'options'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid postgresql options: {problems}") from None


def try_again_on(exc: BaseException, deadline: float, now: float) -> bool:
    """Opening is idempotent: try again after a connection failure (no server answer,
    ``sqlstate`` unset) while time is left; a server's refusal (login, rights) is final."""
    refused = getattr(exc, "sqlstate", None) is not None or login_refused(exc)
    return not refused and now + 0.2 < deadline


def login_refused(exc: BaseException) -> bool:
    """libpq reports a refused login as text only (no sqlstate before a session exists)."""
    text = str(exc)
    return "authentication failed" in text or ("FATAL" in text and "does not exist" in text)


def wait_ms(deadline: float, now: float) -> int:
    """How long the recovery may wait for the lost server process to end."""
    return max(int((deadline - now) * 1000) - 200, 1)


# -- writes -------------------------------------------------------------------------------


def check_name(instance_id: str, name: str) -> None:
    if "\x00" in name:
        raise SerializationError(
            f"the workflow name of instance {instance_id!r} contains a NUL character, "
            "which PostgreSQL text cannot store"
        )


def create_params(new: NewInstance, etag: str, ttl: timedelta | None) -> dict[str, Any]:
    check_name(new.instance_id, new.name)
    status = new.custom_status
    return {
        "id": id_key(new.instance_id),
        "name": new.name,
        "status": new.runtime_status.value,
        "now": new.created_at,
        "status_at": new.created_at if status is not None else None,
        "new_etag": etag,
        "data": status.data if status is not None else None,
        "encoding": status.encoding if status is not None else None,
        "input": new.input.data if new.input is not None else None,
        "input_encoding": new.input.encoding if new.input is not None else None,
        "ttl": ttl,
    }


def create_outcome(instance_id: str, row: Sequence[Any]) -> None:
    """``(inserted, current runtime status, ...)``: nothing inserted means a run is in the way."""
    if not row[0]:
        raise InstanceExists(instance_id, row[1])


def status_params(
    instance_id: str, payload: Payload, etag: str | None, now: datetime, new: str, ttl: Any
) -> dict[str, Any]:
    return {
        "id": id_key(instance_id),
        "data": payload.data,
        "encoding": payload.encoding,
        "now": now,
        "new_etag": new,
        "etag": etag,
        "ttl": ttl,
    }


#: How often a write without an etag runs again after racing another writer (each run
#: sees a newer snapshot, so one more almost always settles it).
LAST_WRITE_ATTEMPTS = 20


def status_outcome(
    instance_id: str, etag: str | None, new: str, row: Sequence[Any] | None
) -> WriteResult | None:
    """No row: written. Otherwise ``(etag before, same bytes before)``, in one round trip.

    Absent -> not found; an etag given that is not the one before -> conflict; the same
    bytes before -> a skipped write at that etag; otherwise a writer changed the row between
    this statement's snapshot and its update: a conflict with an etag, and ``None`` without
    one (last write wins: run the statement again, it will see that writer's row).
    """
    if row is None:
        return WriteResult(new)
    current = row[0]
    if current is None:
        raise InstanceNotFound(instance_id)
    if etag is not None and etag != current:
        raise ConcurrencyError(instance_id, etag)
    if row[1]:
        return WriteResult(current, written=False)
    if etag is None:
        return None
    raise ConcurrencyError(instance_id, etag)


def kept_racing(instance_id: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"custom-status write of instance {instance_id!r} kept racing other writers "
        f"({LAST_WRITE_ATTEMPTS} attempts)"
    )


def runtime_statement(stmts: Statements, set_output: bool, etag: str | None) -> str:
    """The runtime-status update: output only when asked, the etag check only when given."""
    expires = ", expires_at = now() + %(ttl)s" if stmts.ttl else ""
    output = ", output = %(output)s, output_encoding = %(output_encoding)s" if set_output else ""
    match = " AND etag = %(etag)s" if etag is not None else ""
    table = stmts.table
    return (
        f"WITH current AS (SELECT etag FROM {table} WHERE instance_id = %(id)s AND {_LIVE}), "
        f"changed AS (UPDATE {table} SET runtime_status = %(status)s, "
        f"last_updated_at = %(now)s, etag = %(new_etag)s{output}{expires} "
        f"WHERE instance_id = %(id)s AND {_LIVE}{match} RETURNING instance_id{stmts.notify}) "
        f"SELECT (SELECT count(*) FROM changed), (SELECT etag FROM current)"
    )


def runtime_params(
    instance_id: str,
    status: RuntimeStatus,
    output: Payload | None,
    etag: str | None,
    now: datetime,
    new: str,
    ttl: Any,
) -> dict[str, Any]:
    return {
        "id": id_key(instance_id),
        "status": status.value,
        "now": now,
        "new_etag": new,
        "output": output.data if output is not None else None,
        "output_encoding": output.encoding if output is not None else None,
        "etag": etag,
        "ttl": ttl,
    }


def runtime_outcome(instance_id: str, etag: str | None, new: str, row: Sequence[Any]) -> str:
    if row[0]:
        return new
    if row[1] is None:
        raise InstanceNotFound(instance_id)
    raise ConcurrencyError(instance_id, etag)


def delete_params(instance_id: str) -> dict[str, Any]:
    return {"id": id_key(instance_id)}


def delete_outcome(row: Sequence[Any] | None) -> bool:
    """Deleted a live row; an expired one was already absent to every reader."""
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class LostWrite:
    """What to check after a write whose answer was lost: did *this* write land?"""

    instance_id: str
    new_etag: str
    expected_etag: str | None
    create: bool = False

    def landed(self, row: Sequence[Any] | None) -> bool | None:
        """True: it landed; False: it surely did not (safe to send again); None: unknown.

        ``row`` is ``(etag, run_id)`` read after the lost backend has ended. Our etag (or,
        for a create, our run id) means it landed. The etag we expected still in place
        means it did not. Anything else: another writer acted in between, and whether ours
        landed before it cannot be told.
        """
        if row is not None and (
            row[0] == self.new_etag or (self.create and row[1] == self.new_etag)
        ):
            return True
        if self.create:
            return False if row is None else None
        if row is not None and self.expected_etag is not None and row[0] == self.expected_etag:
            return False
        return None


# -- reads and queries --------------------------------------------------------------------


def _payload(data: bytes | None, encoding: str | None) -> Payload | None:
    if data is None or encoding is None:
        return None
    return Payload.from_encoding(bytes(data), encoding)


def record(row: Sequence[Any], fetch_payloads: bool) -> InstanceRecord:
    """One row of `_META_COLUMNS` (or `_ALL_COLUMNS`) as a record; a bad row is corrupt."""
    instance_id = id_of(row[0])
    try:
        return InstanceRecord(
            instance_id=instance_id,
            name=row[1],
            runtime_status=RuntimeStatus(row[2]),
            created_at=row[3],
            last_updated_at=row[4],
            custom_status_updated_at=row[5],
            etag=row[6],
            custom_status=_payload(row[7], row[8]),
            input=_payload(row[9], row[10]) if fetch_payloads else None,
            output=_payload(row[11], row[12]) if fetch_payloads else None,
        )
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptRecord(instance_id, f"postgresql row: {exc}") from None


def _after(continuation: str | None) -> bytes | None:
    if continuation is None:
        return None
    state = decode_token(continuation)
    after = state.get("pg")
    if not isinstance(after, str):
        raise InvalidContinuationToken("continuation token is not valid for postgresql")
    try:
        return bytes.fromhex(after)
    except ValueError:
        raise InvalidContinuationToken("continuation token is not valid for postgresql") from None


def where(query: InstanceQuery, after: bytes | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause of a query (live rows only) and its parameters."""
    clauses = [_LIVE]
    params: list[Any] = []
    if query.runtime_status is not None:
        clauses.append("runtime_status = ANY(%s)")
        params.append(sorted(status.value for status in query.runtime_status))
    if query.created_from is not None:
        clauses.append("created_at >= %s")
        params.append(query.created_from)
    if query.created_to is not None:
        clauses.append("created_at < %s")
        params.append(query.created_to)
    if query.name is not None:
        clauses.append("name = %s")
        params.append(query.name)
    if query.updated_from is not None:
        clauses.append("last_updated_at >= %s")
        params.append(query.updated_from)
    if query.updated_to is not None:
        clauses.append("last_updated_at < %s")
        params.append(query.updated_to)
    if query.prefix:
        low, high = _prefix_range(query.prefix)
        clauses.append("instance_id >= %s AND instance_id < %s")
        params.extend([low, high])
    if after is not None:
        clauses.append("instance_id > %s")
        params.append(after)
    return " WHERE " + " AND ".join(clauses), params


def query_statement(stmts: Statements, query: InstanceQuery) -> tuple[str, list[Any]]:
    """Keyset paging in id order: one row more than a page tells whether another follows."""
    clause, params = where(query, _after(query.continuation))
    columns = _ALL_COLUMNS if query.fetch_payloads else _META_COLUMNS
    params.append(query.page_size + 1)
    return (
        f"SELECT {columns} FROM {stmts.table}{clause} ORDER BY instance_id LIMIT %s",
        params,
    )


def page(rows: Sequence[Sequence[Any]], query: InstanceQuery) -> RecordPage:
    items = [record(row, query.fetch_payloads) for row in rows[: query.page_size]]
    more = len(rows) > query.page_size
    token = encode_token({"pg": bytes(rows[query.page_size - 1][0]).hex()}) if more else None
    return RecordPage(items, token)


def count_statement(stmts: Statements, query: InstanceQuery) -> tuple[str, list[Any]]:
    """Matches per runtime status, counted by the server."""
    clause, params = where(query)
    return f"SELECT runtime_status, count(*) FROM {stmts.table}{clause} GROUP BY 1", params


def counts(rows: Sequence[Sequence[Any]]) -> dict[RuntimeStatus, int]:
    known = {status.value: status for status in RuntimeStatus}
    return {known[status]: int(number) for status, number in rows if status in known}


def purge_statement(stmts: Statements, query: InstanceQuery) -> tuple[str, list[Any]]:
    clause, params = where(query)
    return (
        f"WITH changed AS (DELETE FROM {stmts.table}{clause} RETURNING instance_id"
        f"{stmts.notify}) SELECT (SELECT count(*) FROM changed)",
        params,
    )


# -- lost answers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One statement a recovery asks its driver to run; the driver sends back the first row.

    ``fresh`` asks for another connection than the one the previous statement used.
    """

    sql: str
    params: Sequence[Any] | dict[str, Any]
    fresh: bool = False


class ConnectionLost(Exception):
    """Thrown into a recovery by its driver: the connection of the last `Run` broke."""

    def __init__(self, backend_pid: int | None) -> None:
        super().__init__(backend_pid)
        self.backend_pid = backend_pid


LANDED: Final = object()


def timed_out(operation: str, instance_id: str | None, timeout: float) -> BackendUnavailable:
    target = f" of instance {instance_id!r}" if instance_id is not None else ""
    return BackendUnavailable(f"postgresql {operation}{target} got no answer within {timeout:g} s")


def unknown_outcome(instance_id: str, why: str) -> OutcomeUnknown:
    """The transport's `OutcomeUnknown` (a `BackendUnavailable`): one type for callers."""
    return OutcomeUnknown(
        f"postgresql write of instance {instance_id!r}: the connection was lost after the "
        f"statement was sent and the outcome is unknown ({why}); read the instance to see "
        "whether it was applied"
    )


def recover(
    stmts: Statements,
    lost: LostWrite,
    backend_pid: int | None,
    resend: Run,
    wait_ms: int,
) -> Generator[Run, Sequence[Any] | None, Sequence[Any] | object]:
    """After a write's connection broke: end the old backend, then look whether it landed.

    Returns `LANDED`, or the row of the write sent again (when it surely had not landed).
    Never sends a write twice unless the first surely did not apply.
    """
    key = id_key(lost.instance_id)
    fresh = True
    while True:
        try:
            if backend_pid is None:
                raise unknown_outcome(lost.instance_id, "the server process is unknown")
            yield Run(stmts.forget_lost_backend, (backend_pid, wait_ms), fresh=fresh)
            fresh = False
            alive = yield Run(stmts.backend_alive, (backend_pid,))
            if alive is None or alive[0]:
                raise unknown_outcome(lost.instance_id, "the old server process still runs")
            verdict = lost.landed((yield Run(stmts.current_etag, (key,))))
        except ConnectionLost:
            fresh = True  # the checking connection broke: check again on another
            continue
        if verdict is True:
            return LANDED
        if verdict is None:
            raise unknown_outcome(lost.instance_id, "another writer changed it meanwhile")
        try:
            return (yield resend)
        except ConnectionLost as again:
            backend_pid, fresh = again.backend_pid, True
