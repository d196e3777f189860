"""PostgreSQL: the conformance suite and the backend's own promises, on a real server."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from durastate import open_store
from durastate.backends.postgres import PostgresBackend, PostgresOptions, core
from durastate.backends.postgres.connect import SpareConnections
from durastate.bench import BackendSpec as BenchSpec
from durastate.bench import BenchConfig, run_bench
from durastate.core.backend import Backend
from durastate.core.records import InstanceQuery, RuntimeStatus
from durastate.core.tokens import encode_token
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    InstanceNotFound,
    InvalidContinuationToken,
    OutcomeUnknown,
)
from durastate.testing import BackendConformance, closing_opener
from durastate.testing.emulators import (
    RunningEmulator,
    free_port,
    postgres_port,
    restart,
    start_postgres,
)
from tests.reliability.backends import BackendSpec, opened, postgres_spec
from tests.reliability.pgproxy import PostgresFaultProxy, proxy_for, with_port
from tests.reliability.test_secrets import _describe, _exercise


def fresh_table() -> str:
    return "t_" + uuid.uuid4().hex[:16]


class TestPostgresConformance(BackendConformance):
    @pytest.fixture
    def backend(self, postgres_server: RunningEmulator) -> Iterator[Backend]:
        backend = PostgresBackend(postgres_server.endpoint, PostgresOptions(table=fresh_table()))
        yield backend
        backend.close()

    @pytest.fixture
    def open_other_backend(
        self, postgres_server: RunningEmulator, backend: PostgresBackend
    ) -> Iterator[Callable[[], Backend]]:
        table = backend.options.table
        yield from closing_opener(
            lambda: PostgresBackend(postgres_server.endpoint, PostgresOptions(table=table))
        )


# -- the backend's own promises ---------------------------------------------------------------

SECRET = "pgSecretDoNotLeak-4Rt9Wq2Zx"


@pytest.fixture
def spec(postgres_server: RunningEmulator) -> BackendSpec:
    return postgres_spec(postgres_server)


@pytest.fixture
def proxy(postgres_server: RunningEmulator) -> Iterator[PostgresFaultProxy]:
    with proxy_for(postgres_server) as running:
        yield running


def test_custom_status_update_is_one_prepared_round_trip(
    spec: BackendSpec, proxy: PostgresFaultProxy
) -> None:
    """Counted on the wire: one request (Bind/Execute/Sync, no Parse) per update, with or
    without an etag, changed or unchanged; no read before the write."""
    with opened(BackendSpec(spec.kind, with_port(spec.url, proxy.port), spec.options)) as store:
        etag = store.create_instance("job", name="wf", custom_status={"p": 0})
        for warm_up in range(2):  # the first use of a statement on a connection prepares it
            etag = store.set_custom_status("job", {"p": warm_up}, etag=etag)
            store.set_custom_status("job", {"p": -warm_up})
        etag = store.set_custom_status("job", {"p": 1})
        proxy.counters.clear()
        for percent in range(2, 22):
            etag = store.set_custom_status("job", {"p": percent}, etag=etag)
        for percent in range(22, 42):
            store.set_custom_status("job", {"p": percent})
        assert dict(proxy.counters) == {"requests": 40, "round_trips": 40}
        proxy.counters.clear()
        same = store.set_custom_status("job", {"p": 41})  # unchanged bytes: no write
        assert dict(proxy.counters) == {"requests": 1, "round_trips": 1}
        got = store.get_instance("job")
        assert got is not None
        assert got.etag == same


def test_every_write_notifies_the_id_and_never_the_status(
    postgres_server: RunningEmulator, spec: BackendSpec
) -> None:
    instance_id = "job/\x00🙂"
    with opened(spec) as store, psycopg.connect(postgres_server.endpoint, autocommit=True) as ear:
        ear.execute(f"LISTEN {spec.options['table']}")
        store.create_instance(instance_id, name="wf", custom_status="secret-status-1")
        store.set_custom_status(instance_id, "secret-status-2")
        store.set_custom_status(instance_id, "secret-status-2")  # unchanged: no write, no notify
        store.set_runtime_status(instance_id, "completed", output="out")
        store.purge(instance_id)
        heard = [note.payload for note in ear.notifies(timeout=2.0, stop_after=4)]
        heard += [note.payload for note in ear.notifies(timeout=0.3)]  # nothing more
    assert [bytes.fromhex(payload).decode() for payload in heard] == [instance_id] * 4
    assert not any("secret" in payload for payload in heard)


def test_without_notify_nothing_is_announced(
    postgres_server: RunningEmulator, spec: BackendSpec
) -> None:
    quiet = spec.with_options(notify=False)
    with opened(quiet) as store, psycopg.connect(postgres_server.endpoint, autocommit=True) as ear:
        assert store.capabilities.push is False
        ear.execute(f"LISTEN {quiet.options['table']}")
        store.create_instance("job", name="wf", custom_status=1)
        store.set_custom_status("job", 2)
        assert list(ear.notifies(timeout=0.5)) == []


def test_expired_instances_are_absent_until_swept(spec: BackendSpec) -> None:
    # 2 s to live; the checks fall 0.8 s before (or 0.7 s after) an expiry, room for a
    # loaded machine
    with opened(spec.with_options(ttl_seconds=2)) as store:
        assert store.capabilities.ttl is True
        store.create_instance("old", name="wf", custom_status="x")
        store.create_instance("kept", name="wf", custom_status="x")
        assert store.get_custom_status("old") == "x"
        time.sleep(1.2)
        store.set_custom_status("kept", "refreshed")  # every write moves the expiry on
        time.sleep(1.2)
        assert store.get_instance("old") is None
        assert store.get_custom_status("kept") == "refreshed"
        assert [item.instance_id for item in store.query()] == ["kept"]
        with pytest.raises(InstanceNotFound):
            store.set_custom_status("old", "late")
        with pytest.raises(InstanceNotFound):
            store.set_runtime_status("old", "running")
        assert store.purge("old") is False
        assert store.purge_by(prefix="old") == 0
        time.sleep(1.5)
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        # the store's purge_expired sweeps the backend's own expiry, no retention needed
        assert store.purge_expired() == 1  # "kept" expired meanwhile; "old" went on purge
        assert backend.purge_expired() == 0
        store.create_instance("old", name="wf2")  # an expired id is free again
        got = store.get_instance("old")
        assert got is not None
        assert got.name == "wf2"
        assert got.custom_status is None


@contextmanager
def _row_locked(server: RunningEmulator, spec: BackendSpec, instance_id: str) -> Iterator[None]:
    """Another session holds the row lock of ``instance_id`` for the block."""
    with psycopg.connect(server.endpoint) as blocker:
        blocker.execute(
            f"SELECT 1 FROM {spec.options['table']} WHERE instance_id = %s FOR UPDATE",
            (instance_id.encode(),),
        )
        try:
            yield
        finally:
            blocker.rollback()


def test_statement_timeout_cancels_a_blocked_write_and_applies_nothing(
    postgres_server: RunningEmulator, spec: BackendSpec
) -> None:
    with opened(spec.with_options(statement_timeout=0.5, timeout=5.0)) as store:
        store.create_instance("job", name="wf", custom_status="before")
        with _row_locked(postgres_server, spec, "job"):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="statement_timeout") as raised:
                store.set_custom_status("job", "during")
            assert time.monotonic() - started < 0.5 + 1.0
            assert "job" in str(raised.value)
        assert store.get_custom_status("job") == "before"


def test_a_write_cut_off_by_the_client_timeout_says_its_outcome_is_unknown(
    postgres_server: RunningEmulator, spec: BackendSpec
) -> None:
    """The server would wait (statement_timeout 30 s); the client's 1 s bound cuts it off."""
    with opened(spec.with_options(statement_timeout=30.0, timeout=1.0)) as store:
        store.create_instance("job", name="wf", custom_status="before")
        with _row_locked(postgres_server, spec, "job"):
            started = time.monotonic()
            with pytest.raises(OutcomeUnknown):
                store.set_custom_status("job", "during")
            assert time.monotonic() - started < 1.0 + 1.0
        assert store.get_custom_status("job") in ("before", "during")
        store.set_custom_status("job", "after")  # the store works on
        assert store.get_custom_status("job") == "after"


def test_schema_version_row_and_create_table_false(
    postgres_server: RunningEmulator, spec: BackendSpec
) -> None:
    missing = spec.with_options(create_table=False, table=fresh_table())
    with pytest.raises(ConfigurationError, match="does not exist"):
        missing.open()
    table = spec.options["table"]
    with opened(spec) as store:
        store.create_instance("job", name="wf")
    assert _schema_version(postgres_server.endpoint, table) == 1
    with opened(spec.with_options(create_table=False)) as store:
        assert store.get_instance("job") is not None
    with psycopg.connect(postgres_server.endpoint, autocommit=True) as connection:
        connection.execute(
            "UPDATE durastate_schema SET version = 99 WHERE table_name = %s", (table,)
        )
    with pytest.raises(ConfigurationError, match="newer"):
        spec.open()


def _schema_version(url: str, table: str) -> int | None:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT version FROM durastate_schema WHERE table_name = %s", (table,)
        ).fetchone()
    return None if row is None else int(row[0])


def test_url_forms_and_options(postgres_server: RunningEmulator) -> None:
    url = postgres_server.endpoint
    for form in (url, url.replace("postgresql://", "postgres://", 1)):
        with opened(BackendSpec("postgres", form, {"table": fresh_table()})) as store:
            assert isinstance(store.backend, PostgresBackend)
            store.create_instance("job", name="wf")
    bad_options: list[dict[str, Any]] = [
        {"table": "no spaces"},
        {"table": "x" * 64},
        {"timeout": 0},
        {"min_pool_size": 5, "max_pool_size": 2},
        {"colour": "blue"},
        {"channel": "bad-channel"},
    ]
    for options in bad_options:
        with pytest.raises(ConfigurationError):
            open_store(url, **options)
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresBackend("mysql://u:p@h/db")


def test_forged_continuation_tokens_are_refused(spec: BackendSpec) -> None:
    with opened(spec) as store:
        for number in range(3):
            store.create_instance(f"i{number}", name="wf")
        page = store.query(page_size=2)
        assert page.continuation is not None
        assert [item.instance_id for item in store.query(continuation=page.continuation)] == ["i2"]
        forged = [
            "not base64 !!",
            encode_token({"after": "i1"}),  # another backend's shape
            encode_token({"pg": "zz-not-hex"}),
            encode_token({"pg": 12}),
            "W10",  # a JSON list
        ]
        for token in forged:
            with pytest.raises(InvalidContinuationToken):
                store.query(continuation=token)


def test_queries_can_use_indexes_not_scans(spec: BackendSpec) -> None:
    with opened(spec) as store:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        queries = {
            "status": InstanceQuery(runtime_status=frozenset({RuntimeStatus.RUNNING})),
            "prefix": InstanceQuery(prefix="job-"),
            "created": InstanceQuery(created_from=datetime(2030, 1, 1, tzinfo=UTC)),
        }
        with psycopg.connect(spec.url) as connection:
            connection.execute("SET enable_seqscan = off")
            for name, query in queries.items():
                sql, params = core.query_statement(backend._stmts, query)
                plan = "\n".join(
                    str(row[0]) for row in connection.execute("EXPLAIN " + sql, params)
                )
                assert "Index" in plan, (name, plan)
                assert "Seq Scan" not in plan, (name, plan)


def test_missing_extra_gives_the_install_hint() -> None:
    script = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "from durastate import open_store\n"
        "from durastate.errors import MissingDependency\n"
        "try:\n"
        "    open_store('postgresql://u:p@127.0.0.1:1/db')\n"
        "except MissingDependency as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'durastate[postgres]'" in result.stdout


# -- secrets and grants -----------------------------------------------------------------------


@pytest.fixture
def least_privileged(postgres_server: RunningEmulator) -> tuple[str, str]:
    """A login role with a secret password and only the grants docs/postgres.md lists; its
    URL, and the URL of a second role that may only use an existing table."""
    role, user = "r_" + uuid.uuid4().hex[:12], "u_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server.endpoint, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
        admin.execute(f"GRANT CONNECT ON DATABASE postgres TO {role}")
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        # the version table is shared by every store table of the database: made by whoever
        # came first (here the admin), it needs SELECT and INSERT for a role that adds a table
        admin.execute(core.VERSION_TABLE)
        admin.execute(f"GRANT SELECT, INSERT ON durastate_schema TO {role}")
        admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{SECRET}'")
    port = postgres_port(postgres_server)
    return (
        f"postgresql://{role}:{SECRET}@127.0.0.1:{port}/postgres",
        f"postgresql://{user}:{SECRET}@127.0.0.1:{port}/postgres",
    )


def _clean(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, f"the password leaked into: {text[:300]!r}"
        assert SECRET[:12] not in text


def test_the_password_is_never_shown_and_the_documented_grants_suffice(
    postgres_server: RunningEmulator,
    least_privileged: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("psycopg", "psycopg.pool", "durastate"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    owner_url, user_url = least_privileged
    table = fresh_table()
    with open_store(owner_url, table=table, timeout=3.0) as store:  # creates the table
        _clean(*_exercise(store))
    with psycopg.connect(postgres_server.endpoint, autocommit=True) as admin:
        user = user_url.split("//")[1].split(":")[0]
        admin.execute(f"GRANT CONNECT ON DATABASE postgres TO {user}")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {user}")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {user}")
        admin.execute(f"GRANT SELECT ON durastate_schema TO {user}")
    with open_store(user_url, table=table, create_table=False, timeout=3.0) as store:
        _clean(*_exercise(store))
        store.create_instance("by-user", name="wf")
        store.set_custom_status("by-user", 1)
        assert store.get_custom_status("by-user") == 1
    wrong = owner_url.replace(SECRET, SECRET + "-wrong")
    with pytest.raises(ConfigurationError, match="refused the login") as refused:
        open_store(wrong, table=table, timeout=3.0)
    in_query = owner_url.replace(f":{SECRET}@", "@") + f"?password={SECRET}"
    with open_store(in_query, table=table, timeout=3.0) as store:  # libpq's other spelling
        _clean(*_exercise(store))
    dead = with_port(owner_url, free_port())
    with pytest.raises(BackendUnavailable) as unreachable:
        open_store(dead, table=table, timeout=2.0)
    with pytest.raises(ConfigurationError) as malformed:
        open_store(owner_url.replace("127.0.0.1:", "127.0.0.1:notaport"), table=table)
    _clean(
        *(_describe(raised.value) for raised in (refused, unreachable, malformed)),
        caplog.text,
        *(repr(record.args) for record in caplog.records),
    )


def test_bench_runs_postgres_with_its_anchors_and_the_celery_peer(
    postgres_server: RunningEmulator, tmp_path: Path
) -> None:
    """`durastate bench` on a postgresql:// URL: durastate's cells, both psycopg anchors and
    Celery's database backend run side by side, every ratio from the same run."""
    spec = BenchSpec(postgres_server.endpoint, {"table": fresh_table()})
    config = BenchConfig(
        backends=[spec],
        serializers=["json"],
        payloads=["150B"],
        kinds=["dict"],
        quick=True,
        output=tmp_path / "out",
        peers=True,
        operations=["update_cas", "update_lww"],
        repeat=20,
    )
    result = run_bench(config, progress=False)
    found = {m.operation: m for m in result.durastate()}
    assert all(m.ok for m in found.values()), [m.error for m in found.values()]
    assert found["update_cas"].backend_writes == 1.0
    refs = {m.name: m for m in result.measurements if m.subject != "durastate"}
    for name in (
        "psycopg UPDATE WHERE etag (one connection)",
        "psycopg UPDATE WHERE etag (ConnectionPool)",
        "celery store_result (database, SQLAlchemy)",
    ):
        assert refs[name].ok, refs[name].error
        assert refs[name].extra["ratio_cpu"] > 0


def test_start_postgres_runs_unprivileged_in_a_throwaway_directory() -> None:
    """As root the server runs as ``postgres`` (PostgreSQL refuses root); stopping it by PID
    ends the server and removes the data directory; restart keeps the data."""
    server: RunningEmulator = start_postgres()
    try:
        assert server.workdir is not None
        data = server.workdir / "data"
        if os.geteuid() == 0:
            assert data.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        with psycopg.connect(server.endpoint, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int)")
            assert connection.execute("SHOW fsync").fetchone() == ("off",)
        server = restart(server)
        with psycopg.connect(server.endpoint, autocommit=True) as connection:
            assert connection.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not data.exists()


def test_a_released_connection_goes_to_the_pool_while_anyone_waits_there(
    postgres_server: RunningEmulator,
) -> None:
    """The spares are counted out of the pool's private queue: while a caller waits in
    the pool (``waiting``), a released connection goes to it, not to the spares."""
    spare = SpareConnections(4)
    with psycopg.connect(postgres_server.endpoint, autocommit=True) as connection:
        with spare.waiting():
            assert not spare.keep(connection)
        assert spare.take() is None
        assert spare.keep(connection)
        assert spare.take() is connection
        connection.execute("BEGIN")
        assert not spare.keep(connection)  # in a transaction: never a spare
        connection.execute("ROLLBACK")
