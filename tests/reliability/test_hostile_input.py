"""Hostile input: awkward ids and values on every backend, forged pickles, corrupt bytes.

- Hypothesis drives instance ids (unicode, control characters, ``/ \\ # ? % ^``, lone
  surrogates, very long) and JSON values through every backend: each round-trips exactly or
  is refused with ``InvalidInstanceId``/``PayloadTooLarge``, and no two ids collide.
- pickle-safe, through the StateStore on real backends: a tampered payload, an unknown or
  rotated-out key, a payload moved to another instance and a payload naming a class that is
  not allowed (one that would create a file) are all refused, and nothing runs.
- Corrupt stored bytes raise ``CorruptRecord`` for that instance alone.
"""

from __future__ import annotations

import pickle
import sqlite3
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durastate.core.records import Payload
from durastate.core.store import StateStore
from durastate.errors import CorruptRecord, InvalidInstanceId, PayloadTooLarge
from durastate.serializers.pickle_safe import MAGIC, SafePickleSerializer
from tests.reliability.backends import BackendSpec, opened, sqlite_spec

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LIMIT = 4096  # custom-status / input limit for the property tests: big values are refused

_SPECIALS = [
    *"/\\#?%^~'\" .\t\n\r",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "\ud800",
    "\udfff",
    "é",
    "e\u0301",
    "漢",
    "🙂",
    "\U0010ffff",
    "%2F",
    "^2F",
    "^u00E9",
]
_TOKENS = st.characters(codec="utf-8") | st.sampled_from(_SPECIALS)
_IDS = st.one_of(
    st.lists(_TOKENS, max_size=16).map("".join),
    st.lists(_TOKENS, min_size=2, max_size=8).map(  # around the 512-character limit
        lambda parts: ("".join(parts) * 600)[: 500 + len(parts) * 2]
    ),
    st.integers(200, 600).map(lambda n: "🙂/" * (n // 2)),  # long, and heavy to escape
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=30)
    | st.integers(0, 6000).map(lambda n: "x" * n),  # some over the limit
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def _id_family(draw: st.DrawFn) -> list[str]:
    """An id and look-alikes that a careless key escape would map to the same key."""
    base = draw(_IDS)
    variants = [
        base,
        base + "/",
        base + "%2F",
        base + "^2F",
        base + "\\",
        base.upper(),
        unicodedata.normalize("NFD", base),
        unicodedata.normalize("NFC", base),
        base + "\x00",
        "/" + base,
    ]
    chosen = draw(st.lists(st.sampled_from(variants), min_size=1, max_size=4))
    return list(dict.fromkeys([base, *chosen]))


def _valid(instance_id: str, max_length: int) -> bool:
    if not 0 < len(instance_id) <= max_length:
        return False
    try:
        instance_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _exact(value: Any) -> bytes:
    """A comparison that also tells 1 from 1.0 and True from 1."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _round_trip_family(store: StateStore, family: list[str], value: Any) -> None:
    max_length = store.capabilities.max_instance_id_length
    created: dict[str, Any] = {}
    try:
        for number, instance_id in enumerate(family):
            mine = [value, number]  # different per id, so a collision shows
            try:
                store.create_instance(instance_id, name="wf", input=mine, custom_status=mine)
            except InvalidInstanceId:
                assert not _valid(instance_id, max_length), repr(instance_id)
                continue
            except PayloadTooLarge:
                assert len(_exact(mine)) > LIMIT
                continue
            assert _valid(instance_id, max_length), repr(instance_id)
            created[instance_id] = mine
        for instance_id, mine in created.items():
            got = store.get_instance(instance_id, fetch_payloads=True)
            assert got is not None, repr(instance_id)
            assert got.instance_id == instance_id
            assert _exact(got.custom_status) == _exact(mine), repr(instance_id)
            assert _exact(got.input) == _exact(mine)
        listed = sorted(item.instance_id for item in store.iter_instances(page_size=3))
        assert listed == sorted(created)
    finally:
        for instance_id in created:
            store.purge(instance_id)
    for instance_id in created:
        assert store.get_instance(instance_id) is None


def test_ids_and_values_round_trip_or_are_refused(any_spec: BackendSpec) -> None:
    network = any_spec.kind not in ("memory", "sqlite")
    with opened(any_spec, max_custom_status_bytes=LIMIT, max_payload_bytes=LIMIT) as store:

        @settings(
            max_examples=30 if network else 150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(family=_id_family(), value=_JSON)
        def run(family: list[str], value: Any) -> None:
            _round_trip_family(store, family, value)

        run()


# -- pickle-safe ------------------------------------------------------------------------------

KEY_NEW = "new-secret-key-0123456789"
KEY_OLD = "old-secret-key-0123456789"


def _pickle_store(spec: BackendSpec, keys: dict[str, str]) -> StateStore:
    return spec.open(serializer="pickle-safe", pickle_keys=keys)


class FileCreator:
    """Unpickling this calls ``Path.touch`` on the marker: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def _signed(body: bytes, key_id: str, key: str, instance_id: str) -> bytes:
    """A payload signed correctly with ``key``: only the allow-list stands in the way."""
    signer = SafePickleSerializer({key_id: key})
    mac = signer._mac(key.encode(), key_id.encode(), instance_id, body)
    return MAGIC + bytes([len(key_id)]) + key_id.encode() + mac + body


def _plant(store: StateStore, instance_id: str, data: bytes) -> None:
    store.backend.write_custom_status(instance_id, Payload(data, "pickle-safe"), etag=None, now=NOW)


def _stored(store: StateStore, instance_id: str) -> Payload:
    record = store.backend.read(instance_id)
    assert record is not None
    assert record.custom_status is not None
    return record.custom_status


def test_pickle_safe_refuses_forgeries_and_runs_nothing(
    durable_spec: BackendSpec, tmp_path: Path
) -> None:
    both = {"k2": KEY_NEW, "k1": KEY_OLD}
    with _pickle_store(durable_spec, both) as store:
        value = {"when": NOW, "tags": {"a", "b"}}
        for instance_id in ("a", "b", "c", "d", "e"):
            store.create_instance(instance_id, name="wf", custom_status=value)
        assert store.get_custom_status("a") == value  # the control: it works when genuine

        # 1. Tampered: one byte of the pickle body changed.
        genuine = _stored(store, "a")
        _plant(store, "a", genuine.data[:-2] + bytes([genuine.data[-2] ^ 1]) + genuine.data[-1:])
        with pytest.raises(CorruptRecord, match="signature"):
            store.get_custom_status("a")

        # 2. Moved: b's genuine payload written under c.
        _plant(store, "c", _stored(store, "b").data)
        with pytest.raises(CorruptRecord, match="signature"):
            store.get_custom_status("c")
        assert store.get_custom_status("b") == value

        # 3. Signed with a key this store does not have.
        with _pickle_store(durable_spec, {"k9": "some-other-key-0123456789"}) as stranger:
            stranger.set_custom_status("d", value)
        with pytest.raises(CorruptRecord, match="not configured"):
            store.get_custom_status("d")

        # 4. Rotated out: written under k1; a store that dropped k1 refuses it.
        with _pickle_store(durable_spec, {"k1": KEY_OLD}) as old:
            old.set_custom_status("e", value)
        assert store.get_custom_status("e") == value  # k1 still verifies here
        with _pickle_store(durable_spec, {"k2": KEY_NEW}) as rotated:
            with pytest.raises(CorruptRecord, match="not configured"):
                rotated.get_custom_status("e")
            assert rotated.get_custom_status("b") == value  # b was signed by k2

        # 5. A correctly signed payload whose class is not on the allow-list.
        marker = tmp_path / "pwned"
        body = pickle.dumps(FileCreator(marker), protocol=5)
        _plant(store, "b", _signed(body, "k2", KEY_NEW, "b"))
        with pytest.raises(CorruptRecord, match="allow-list"):
            store.get_custom_status("b")
        listed = {item.instance_id: item for item in store.iter_instances()}
        with pytest.raises(CorruptRecord):
            _ = listed["b"].custom_status
        assert not marker.exists()  # nothing ran

    # The control: the same bytes, unpickled without the locks, do run.
    pickle.loads(body)  # deliberately, to prove the payload is live
    assert marker.exists()


def test_rotated_store_reads_payloads_signed_by_its_own_key(durable_spec: BackendSpec) -> None:
    with _pickle_store(durable_spec, {"k2": KEY_NEW, "k1": KEY_OLD}) as store:
        store.create_instance("x", name="wf", custom_status={1, 2, 3})
    with _pickle_store(durable_spec, {"k2": KEY_NEW}) as rotated:
        assert rotated.get_custom_status("x") == {1, 2, 3}


# -- corrupt stored bytes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        Payload(b"\xff\xfe{not json", "json"),
        Payload(b"", "json"),
        Payload(b"\xc1", "msgpack"),
        Payload(b"not zlib at all", "json", "zlib"),
        Payload(b"{}", "json", "zstd-from-the-future"),
        Payload(b"DSP1\x02k2" + b"\x00" * 40, "pickle-safe"),
    ],
    ids=["bad-json", "empty", "bad-msgpack", "bad-zlib", "unknown-compression", "bad-pickle"],
)
def test_corrupt_payload_affects_that_instance_alone(
    durable_spec: BackendSpec, payload: Payload
) -> None:
    with opened(
        durable_spec, accept=["json", "msgpack", "pickle-safe"], pickle_keys={"k2": KEY_NEW}
    ) as store:
        store.create_instance("good", name="wf", custom_status={"ok": True})
        store.create_instance("bad", name="wf", custom_status={"ok": True})
        store.backend.write_custom_status("bad", payload, etag=None, now=NOW)
        with pytest.raises(CorruptRecord) as raised:
            store.get_custom_status("bad")
        assert raised.value.instance_id == "bad"
        assert store.get_custom_status("good") == {"ok": True}
        listed = {item.instance_id: item for item in store.iter_instances()}
        assert set(listed) == {"good", "bad"}
        assert listed["good"].custom_status == {"ok": True}
        with pytest.raises(CorruptRecord):
            _ = listed["bad"].custom_status
        store.set_custom_status("bad", "repaired")  # a corrupt record can be overwritten
        assert store.get_custom_status("bad") == "repaired"


def test_corrupt_sqlite_row_affects_that_instance_alone(tmp_path: Path) -> None:
    spec = sqlite_spec(tmp_path / "rows.db")
    with opened(spec) as store:
        store.create_instance("good", name="wf", custom_status=1)
        store.create_instance("bad", name="wf", custom_status=2)
    raw = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
    try:
        raw.execute("UPDATE instances SET runtime_status = 'exploded' WHERE instance_id = 'bad'")
    finally:
        raw.close()
    with opened(spec) as store:
        with pytest.raises(CorruptRecord) as raised:
            store.get_instance("bad")
        assert raised.value.instance_id == "bad"
        assert store.get_custom_status("good") == 1
