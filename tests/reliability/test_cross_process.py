"""A stale etag across processes: no cache in one process can know what another wrote.

Process A writes P and holds its etag E1; a second process (spawned: nothing inherited)
opens its own store and writes Q; A writes P again with E1. The bytes are the ones A last
wrote at E1, so a cache of "P is stored at E1" would skip the write and report success;
the service must be asked, and the answer is ``ConcurrencyError`` with Q kept.
"""

from __future__ import annotations

import multiprocessing

import pytest

from durastate.errors import ConcurrencyError
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import BackendSpec, opened, spec_for


def write_from_another_process(spec: BackendSpec, instance_id: str, value: str) -> None:
    with opened(spec) as store:
        store.set_custom_status(instance_id, value)


def _in_another_process(spec: BackendSpec, instance_id: str, value: str) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=write_from_another_process, args=(spec, instance_id, value)
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0


#: The kinds this file covers so far (azure-tables has its own test in test_azure_tables.py).
KINDS = ("dynamodb-moto", "dynamodb-dynalite", "s3")


@pytest.mark.parametrize("network_kind", KINDS)
def test_stale_etag_with_unchanged_bytes_fails_across_processes(
    network_kind: str, shared_emulator: RunningEmulator
) -> None:
    spec = spec_for(network_kind, shared_emulator)
    with opened(spec) as store:
        store.create_instance("x", name="wf")
        e1 = store.set_custom_status("x", "P")
        _in_another_process(spec, "x", "Q")
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("x", "P", etag=e1)
        assert store.get_custom_status("x") == "Q"
        current = store.get_instance("x")
        assert current is not None
        store.set_custom_status("x", "P", etag=current.etag)  # a current etag still works
        assert store.get_custom_status("x") == "P"
