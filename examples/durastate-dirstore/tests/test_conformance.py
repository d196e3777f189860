"""durastate's conformance suite on dirstore://, plus what is particular to files on disk."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from durastate_dirstore import DirStoreBackend, id_from_key, instance_key

from durastate import open_store
from durastate.backend import (
    Backend,
    BackendUnavailable,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    NewInstance,
    Payload,
    RuntimeStatus,
)
from durastate.registry import backends
from durastate.testing import BackendConformance, FakeClock


class _DamagedRecordFiles:
    """The conformance suite's ``corrupt_record`` hook: garbage in an instance's .rec file."""

    @pytest.fixture
    def corrupt_record(self, tmp_path: Path) -> Callable[[str], None]:
        def corrupt(instance_id: str) -> None:
            path = tmp_path / "store" / "instances" / f"{instance_key(instance_id)}.rec"
            assert path.exists()
            path.write_bytes(b'{"format": "half a rec')

        return corrupt


class TestDirStoreConformance(_DamagedRecordFiles, BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        backend = DirStoreBackend(tmp_path / "store")
        yield backend
        backend.close()


class TestDirStoreWithoutFsync(_DamagedRecordFiles, BackendConformance):
    """The same contract when durability is traded for speed (fsync=false)."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        backend = DirStoreBackend.from_url(f"dirstore://{tmp_path}/store", fsync=False)
        yield backend
        backend.close()


# -- layout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance_id",
    ["plain", "a/b", "..", "nul\u0000", "é", "漢字", "a" * 125, "a" * 126, "🙂" * 512],
)
def test_keys_are_reversible_and_fit_a_file_name(instance_id: str) -> None:
    key = instance_key(instance_id)
    assert len(f"{key}.0123456789abcdef.output".encode()) <= 255
    assert set(key[1:]) <= set("abcdefghijklmnopqrstuvwxyz234567") | set("0123456789")
    decoded = id_from_key(key)
    if key.startswith("b"):
        assert decoded == instance_id
    else:
        assert decoded is None
        assert len(instance_id.encode()) > 125


def test_one_record_file_per_instance_and_payloads_beside_it(tmp_path: Path) -> None:
    store = open_store(f"dirstore://{tmp_path}/s", fsync=False)
    store.create_instance("job/1", name="wf", input={"big": "input"}, custom_status=1)
    store.set_runtime_status("job/1", RuntimeStatus.COMPLETED, output="done")
    files = sorted(os.listdir(tmp_path / "s" / "instances"))
    key = instance_key("job/1")
    assert sorted(name.split(".")[-1] for name in files) == ["input", "output", "rec"]
    assert all(name.startswith(key + ".") for name in files)
    record = (tmp_path / "s" / "instances" / f"{key}.rec").read_text()
    assert '"instance_id":"job/1"' in record
    assert "big" not in record  # input is not rewritten by a custom-status update

    before = {name: os.stat(tmp_path / "s" / "instances" / name).st_ino for name in files}
    store.set_custom_status("job/1", 2)
    after = {name: os.stat(tmp_path / "s" / "instances" / name).st_ino for name in files}
    assert {n: i for n, i in before.items() if not n.endswith(".rec")} == {
        n: i for n, i in after.items() if not n.endswith(".rec")
    }
    assert before[f"{key}.rec"] != after[f"{key}.rec"]  # the record was replaced, not edited

    store.create_instance("job/1", name="wf", input="second run", restart_if_terminal=True)
    assert len(os.listdir(tmp_path / "s" / "instances")) == 2  # old input and output removed
    assert store.purge("job/1")
    assert os.listdir(tmp_path / "s" / "instances") == []


def test_long_ids_are_hashed_and_still_listed(tmp_path: Path) -> None:
    store = open_store(f"dirstore://{tmp_path}/s", fsync=False)
    long_id = "🙂" * 512
    store.create_instance(long_id, name="wf", custom_status="x")
    (name,) = [n for n in os.listdir(tmp_path / "s" / "instances") if n.endswith(".rec")]
    assert name.startswith("h")
    assert len(name) < 80
    assert [item.instance_id for item in store.query(prefix="🙂")] == [long_id]


def test_temporary_files_of_a_crashed_writer_are_ignored(tmp_path: Path) -> None:
    store = open_store(f"dirstore://{tmp_path}/s", fsync=False)
    store.create_instance("a", name="wf")
    (tmp_path / "s" / "instances" / ".tmp-crashed").write_bytes(b"{half a rec")
    assert [item.instance_id for item in store.query()] == ["a"]
    assert DirStoreBackend(tmp_path / "s").read("a") is not None


def test_a_corrupt_record_names_its_instance(tmp_path: Path) -> None:
    backend = DirStoreBackend(tmp_path / "s", fsync=False)
    store = open_store(f"dirstore://{tmp_path}/s", fsync=False)
    store.create_instance("ok", name="wf", custom_status=1)
    store.create_instance("broken", name="wf", custom_status=1)
    (tmp_path / "s" / "instances" / f"{instance_key('broken')}.rec").write_bytes(b"{not json")
    with pytest.raises(CorruptRecord) as raised:
        backend.read("broken")
    assert raised.value.instance_id == "broken"
    assert store.get_custom_status("ok") == 1
    assert backend.delete("broken") is True  # an unreadable record can still be purged
    assert [item.instance_id for item in store.query()] == ["ok"]


def test_refuses_a_directory_that_is_not_a_dirstore(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("not yours")
    with pytest.raises(ConfigurationError, match="not a dirstore"):
        DirStoreBackend(tmp_path)
    assert os.listdir(tmp_path) == ["precious.txt"]
    with pytest.raises(ConfigurationError, match="does not exist"):
        DirStoreBackend(tmp_path / "missing", create=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "dirstore.json").write_text('{"format": "something-else"}')
    with pytest.raises(ConfigurationError, match="marker"):
        DirStoreBackend(tmp_path / "other")


def test_url_and_options(tmp_path: Path) -> None:
    backend = DirStoreBackend.from_url(
        f"dirstore://{tmp_path}/with%20space", fsync="false", lock_timeout="2.5"
    )
    assert backend.directory == tmp_path / "with space"
    assert (backend.fsync, backend.lock_timeout) == (False, 2.5)
    bad: list[tuple[str, dict[str, object]]] = [
        ("dirstore://", {}),
        (f"dirstore://{tmp_path}/x?fsync=0", {}),
        (f"dirstore://{tmp_path}/x", {"bogus": 1}),
        (f"dirstore://{tmp_path}/x", {"fsync": "maybe"}),
        (f"dirstore://{tmp_path}/x", {"lock_timeout": "soon"}),
        (f"dirstore://{tmp_path}/x", {"lock_timeout": 0}),
    ]
    for bad_url, options in bad:
        with pytest.raises(ConfigurationError):
            DirStoreBackend.from_url(bad_url, **options)


def test_registered_only_through_its_entry_point() -> None:
    assert "dirstore" in backends.names()
    assert backends.origin("dirstore") == "plugin durastate-dirstore"
    assert backends.get("dirstore") is DirStoreBackend


def test_a_held_lock_times_out_clearly(tmp_path: Path) -> None:
    import fcntl
    import zlib

    backend = DirStoreBackend(tmp_path / "s", fsync=False, lock_timeout=0.05)
    store = open_store(f"dirstore://{tmp_path}/s", fsync=False)
    store.create_instance("held", name="wf")
    stripe = zlib.crc32(b"held") % 64
    fd = os.open(tmp_path / "s" / "locks" / f"{stripe:02d}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BackendUnavailable, match="held"):
            backend.write_custom_status(
                "held", Payload(b"1", "json"), etag=None, now=datetime.now(UTC)
            )
        assert backend.read("held") is not None  # readers take no lock
    finally:
        os.close(fd)


# -- several processes -------------------------------------------------------------------


def _increment(directory: str, count: int) -> None:
    store = open_store(f"dirstore://{directory}", fsync=False)
    for _ in range(count):
        store.update("shared", lambda value: {"n": value["n"] + 1}, retries=500)


def test_processes_lose_no_update(tmp_path: Path) -> None:
    directory = str(tmp_path / "s")
    store = open_store(f"dirstore://{directory}", fsync=False)
    store.create_instance("shared", name="wf", custom_status={"n": 0})
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_increment, args=(directory, 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert store.get_custom_status("shared") == {"n": 100}


def test_create_races_have_one_winner_across_processes(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    DirStoreBackend(directory)
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        outcomes = pool.map(_try_create, [(str(directory), n) for n in range(8)])
    assert sorted(outcomes) == ["created"] + ["exists"] * 7


def _try_create(arguments: tuple[str, int]) -> str:
    directory, number = arguments
    backend = DirStoreBackend(directory, fsync=False)
    new = NewInstance(
        instance_id="race",
        name=f"wf{number}",
        runtime_status=RuntimeStatus.PENDING,
        created_at=FakeClock().now,
        input=None,
        custom_status=None,
    )
    try:
        backend.create(new)
    except InstanceExists:
        return "exists"
    return "created"
