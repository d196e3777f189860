"""What a read returns: InstanceMetadata's surface, typed reads from the stored bytes, and
errors that stay with the one instance whose payload is bad."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from durastate import InstanceMetadata, StateStore
from durastate.backends.memory import MemoryBackend
from durastate.backends.sqlite import SQLiteBackend
from durastate.errors import CorruptRecord, SerializationError


class Progress(BaseModel):
    percent: int
    stage: str


class StrictStamp(BaseModel):
    """Strict: a datetime field takes no string in Python mode, only from JSON."""

    model_config = ConfigDict(strict=True)
    at: datetime
    percent: int


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "memory":
        backend: MemoryBackend | SQLiteBackend = MemoryBackend()
    else:
        backend = SQLiteBackend(tmp_path / "state.db")
    with StateStore(backend) as store:
        yield store


def test_metadata_is_a_light_read_only_object(store: StateStore) -> None:
    store.create_instance("a", name="job", input={"k": 1}, custom_status={"percent": 5})
    got = store.get_instance("a")
    assert got is not None
    assert not isinstance(got, BaseModel)
    assert not hasattr(got, "__dict__")  # slots: no per-object dict
    with pytest.raises(AttributeError):
        got.etag = "forged"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        got.payloads_fetched = True  # type: ignore[misc]
    assert (got.instance_id, got.name, got.runtime_status.value) == ("a", "job", "pending")
    assert got.created_at.tzinfo is not None
    assert got.last_updated_at >= got.created_at
    assert got.custom_status_updated_at == got.created_at
    assert got.has_custom_status
    assert got.custom_status == {"percent": 5}
    assert got.input is None
    assert got.payloads_fetched is False
    full = store.get_instance("a", fetch_payloads=True)
    assert full is not None
    assert full.input == {"k": 1}
    assert full.payloads_fetched is True


def test_model_dump_exports_fields_and_decoded_payloads(store: StateStore) -> None:
    store.create_instance("a", name="job", custom_status=[1, None])
    got = store.get_instance("a")
    assert got is not None
    data = got.model_dump(mode="json", exclude={"input", "output"})
    assert data["instance_id"] == "a"
    assert data["runtime_status"] == "pending"
    assert data["custom_status"] == [1, None]
    assert datetime.fromisoformat(data["created_at"]) == got.created_at
    assert "input" not in data
    assert got.model_dump(include={"etag"}) == {"etag": got.etag}
    assert got.model_dump()["runtime_status"] is got.runtime_status


def test_typed_read_validates_the_stored_json_bytes(store: StateStore) -> None:
    """A strict model takes an ISO string for a datetime only from JSON: validating the
    decoded dict would refuse what the bytes say."""
    store.create_instance("a", name="job")
    store.set_custom_status("a", {"at": "2026-11-29T07:00:00Z", "percent": 3})
    got = store.get_instance("a")
    assert got is not None
    stamp = got.read_custom_status_as(StrictStamp)
    assert stamp.percent == 3
    assert stamp.at.year == 2026
    assert stamp.at.tzinfo is not None
    assert got.read_custom_status_as(dict[str, int | str]) == got.custom_status


@pytest.mark.parametrize("options", [{"serializer": "msgpack"}, {"compress_above": 8}])
def test_typed_read_of_other_encodings_validates_the_decoded_value(
    tmp_path: Path, options: dict[str, object]
) -> None:
    with StateStore(SQLiteBackend(tmp_path / "s.db"), **options) as store:  # type: ignore[arg-type]
        store.create_instance("a", name="job", custom_status={"percent": 7, "stage": "x" * 40})
        got = store.get_instance("a")
        assert got is not None
        assert got.read_custom_status_as(Progress) == Progress(percent=7, stage="x" * 40)


def test_a_value_of_the_wrong_shape_is_a_typed_error_naming_the_instance(
    store: StateStore,
) -> None:
    store.create_instance("job-7", name="job", custom_status={"percent": "lots"})
    got = store.get_instance("job-7")
    assert got is not None
    with pytest.raises(SerializationError, match=r"job-7.*Progress.*percent"):
        got.read_custom_status_as(Progress)
    assert got.custom_status == {"percent": "lots"}  # still readable untyped


def test_a_corrupt_payload_fails_for_its_instance_only_and_only_on_access(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with StateStore(SQLiteBackend(path)) as store:
        store.create_instance("good", name="job", custom_status={"percent": 1, "stage": "a"})
        store.create_instance("bad", name="job", custom_status={"percent": 2, "stage": "b"})
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE instances SET custom_status = ? WHERE instance_id = 'bad'",
                        (b'{"percent": 2, "st',))
        items = {item.instance_id: item for item in store.iter_instances()}
        assert set(items) == {"good", "bad"}  # listing decodes nothing
        assert items["good"].read_custom_status_as(Progress).percent == 1
        bad = items["bad"]
        assert bad.has_custom_status
        assert bad.etag
        with pytest.raises(CorruptRecord, match="'bad'"):
            bad.read_custom_status_as(Progress)
        with pytest.raises(CorruptRecord, match="'bad'"):
            bad.custom_status  # noqa: B018
        assert items["good"].custom_status == {"percent": 1, "stage": "a"}


def test_metadata_is_exported_at_top_level() -> None:
    assert InstanceMetadata.__slots__
