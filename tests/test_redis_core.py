"""The sans-I/O core of the Redis backend, byte for byte: keys, script arguments, replies."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from durastate.backends.redis import core, scripts
from durastate.backends.redis.core import RedisCore, ScriptCall, escape_id
from durastate.core.records import InstanceQuery, NewInstance, Payload, RuntimeStatus
from durastate.core.tokens import decode_token, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
    InvalidContinuationToken,
)

NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NOW_MICROS = 1893553445678000


def test_keys_are_escaped_reversibly_and_carry_a_hash_tag() -> None:
    rc = RedisCore("app:")
    assert rc.instance_key("job-1") == "app:i:{job-1}"
    assert rc.channel("job-1") == "app:i:{job-1}"  # channels are not keys: same name
    assert rc.instance_key("a{b}c%") == "app:i:{a%7Bb%7Dc%25}"
    look_alikes = ["a{b}", "a%7Bb%7D", "a%257Bb", "a%", "a%25", "{", "}", "%7B", ""]
    keys = {rc.instance_key(instance_id) for instance_id in look_alikes}
    assert len(keys) == len(look_alikes)
    for instance_id in look_alikes:  # one brace pair: the whole escaped id is the hash tag
        key = rc.instance_key(instance_id)
        assert key.count("{") == 1
        assert key.count("}") == 1
    assert escape_id("plain") == "plain"


def test_index_keys() -> None:
    rc = RedisCore("p:")
    assert rc.all_key == "p:ix:all"
    assert rc.created_key == "p:ix:created"
    assert rc.status_keys == tuple(f"p:ix:s:{status.value}" for status in RuntimeStatus)


def test_scripts_are_called_by_their_sha1() -> None:
    for script in core.SCRIPTS:
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
    assert len({script.sha for script in core.SCRIPTS}) == len(core.SCRIPTS)


def test_custom_status_call_is_one_script_with_exact_arguments() -> None:
    rc = RedisCore("p:", ttl_seconds=60)
    call = rc.custom_status("job", Payload(b'{"n":1}', "json", "zlib"), "etag-1", NOW)
    assert call.script is core.CUSTOM_STATUS
    assert call.keys == ("p:i:{job}",)
    header, data = call.args
    assert isinstance(header, str)
    write_id = header[1 : 1 + scripts.WRITE_ID_LENGTH]
    assert int(write_id, 16) >= 0  # 24 hex digits
    expires = NOW_MICROS // 1000 + 60_000
    assert header == f"0{write_id}{NOW_MICROS},{expires},9,json+zlibetag-1"
    assert data == b'{"n":1}'
    retry = call.as_retry()
    assert retry.args == ("1" + header[1:], data)
    unconditional = RedisCore("p:").custom_status("job", Payload(b"1", "json"), None, NOW)
    other = unconditional.args[0]
    assert isinstance(other, str)
    assert other.endswith(f"{NOW_MICROS},,4,json")  # no etag, no expiry asked
    assert other[1:25] != write_id  # a fresh write id per write


def test_create_call() -> None:
    rc = RedisCore("p:")
    new = NewInstance("job", "wf", RuntimeStatus.PENDING, NOW, Payload(b"[1]", "json"), None)
    call = rc.create(new, restart=True)
    assert call.script is core.CREATE
    assert call.keys == ("p:i:{job}", rc.all_key, rc.created_key, *rc.status_keys)
    assert call.args == (
        "job",
        "wf",
        "pending",
        NOW_MICROS,
        call.args[4],
        "1",
        "0",
        b"",
        "",
        b"[1]",
        "json",
        "",
        "",  # no ttl of its own
    )
    assert call.as_retry().args[6] == "1"
    own = rc.create(replace(new, ttl=timedelta(minutes=5, microseconds=3)), restart=False)
    assert own.args[-1] == 300_000_003  # the run's own ttl, in microseconds


def test_runtime_status_call() -> None:
    rc = RedisCore("p:")
    call = rc.runtime_status(
        "job", RuntimeStatus.COMPLETED, output=None, set_output=True, etag="e", now=NOW
    )
    assert call.keys == ("p:i:{job}", *rc.status_keys)
    assert call.args == (
        "e",
        "completed",
        NOW_MICROS,
        call.args[3],
        "0",
        "1",
        b"",
        "",
        "",
        "job",
    )
    assert call.as_retry().args[4] == "1"


def test_replies_become_results_and_typed_errors() -> None:
    rc = RedisCore("p:")
    call = rc.custom_status("job", Payload(b"1", "json"), "old", NOW)
    assert rc.status_written(call, b"onew").etag == "new"
    same = rc.status_written(call, b"scur")
    assert (same.etag, same.written) == ("cur", False)
    with pytest.raises(ConcurrencyError, match="'old' is stale"):
        rc.status_written(call, b"xcur")
    with pytest.raises(InstanceNotFound):
        rc.status_written(call, b"m")
    with pytest.raises(BackendUnavailable, match="outcome is unknown"):
        rc.status_written(call, b"u")
    new = NewInstance("job", "wf", RuntimeStatus.PENDING, NOW, None, None)
    create = rc.create(new, restart=False)
    with pytest.raises(InstanceExists, match="running"):
        rc.created(create, [b"exists", b"running"])
    assert rc.deleted(1) is True
    assert rc.deleted(0) is False


def test_record_from_fields_and_corrupt_fields() -> None:
    values = [
        b"job",
        b"wf",
        b"running",
        str(NOW_MICROS).encode(),
        str(NOW_MICROS).encode(),
        None,
        b"etag",
        b'"s"',
        b"json",
        b"90000000",  # the run's own ttl, microseconds
        b"[1]",
        b"json",
        None,
        None,
    ]
    record = RedisCore.record(values, True)
    assert record is not None
    assert record.ttl == timedelta(seconds=90)
    assert record.created_at == NOW
    assert record.custom_status_updated_at is None
    assert record.custom_status == Payload(b'"s"', "json")
    assert record.input == Payload(b"[1]", "json")
    assert record.output is None
    assert RedisCore.record([None] * 10, False) is None
    bad = list(values)
    bad[2] = b"exploded"
    with pytest.raises(CorruptRecord, match="job"):
        RedisCore.record(bad, True)


def test_query_plans() -> None:
    rc = RedisCore("p:")
    by_status = rc.query(
        InstanceQuery(runtime_status=frozenset({RuntimeStatus.FAILED, RuntimeStatus.RUNNING}))
    )
    assert by_status.keys == (rc.all_key, rc.created_key, *rc.status_keys)
    assert by_status.args[6:10] == ("status", "1", "", "running,failed")
    assert rc.query(InstanceQuery(prefix="a")).args[6] == "lex"
    assert rc.query(InstanceQuery()).args[6] == "lex"
    timed = rc.query(InstanceQuery(created_from=NOW, page_size=7))
    assert timed.args[1:7] == (7, "0", "", NOW_MICROS, "", "time")
    assert rc.query(InstanceQuery(), purge=True).args[1:3] == (core.PURGE_BATCH, "p")
    assert rc.query(InstanceQuery(fetch_payloads=True)).args[2] == "1"


def test_continuation_tokens_round_trip_and_forgeries_are_refused() -> None:
    rc = RedisCore("p:")
    query = InstanceQuery(runtime_status=frozenset({RuntimeStatus.RUNNING}), page_size=2)
    page = rc.page(query, [b"1", b"job-2", 0])
    assert page.continuation is not None
    following = rc.query(replace(query, continuation=page.continuation))
    assert following.args[7:9] == ("1", "job-2")
    assert rc.page(query, [None, None, 0]).continuation is None
    state = decode_token(page.continuation)
    forgeries = [
        "not a token",
        encode_token({**state, "q": "0" * 16}),  # another query's token
        encode_token({**state, "a": "9"}),  # a status position out of range
        encode_token({**state, "b": 3}),
        encode_token({**state, "v": 2}),
        encode_token({"a": "1"}),
    ]
    for token in forgeries:
        with pytest.raises(InvalidContinuationToken):
            rc.query(replace(query, continuation=token))
    other_store = RedisCore("q:")
    with pytest.raises(InvalidContinuationToken):
        other_store.query(replace(query, continuation=page.continuation))


def test_a_call_without_a_retry_flag_is_resent_unchanged() -> None:
    call = RedisCore("p:").delete("job")
    assert isinstance(call, ScriptCall)
    assert call.retry_at is None
    assert call.as_retry() is call
