"""dirstore:///path/to/dir — one record file per workflow instance, in a directory.

Layout (format 1)::

    DIR/dirstore.json               marker: {"format": "durastate-dirstore", "version": 1}
    DIR/locks/NN.lock               64 lock stripes; an instance uses stripe crc32(id) % 64
    DIR/instances/KEY.rec           the record: metadata + custom status (JSON, bytes base64)
    DIR/instances/KEY.GEN.input     the input bytes exactly as the serializer wrote them
    DIR/instances/KEY.GEN.output    the output bytes
    DIR/instances/.tmp-*            files being written; renamed into place when complete

``KEY`` is ``b`` + the unpadded lower-case base32 of the id's UTF-8 while that fits a file
name comfortably (ids up to 125 bytes of UTF-8), else ``h`` + the SHA-256 of it (a 512-char
emoji id is 2 KiB of UTF-8, far over NAME_MAX). The record always holds the real id, so both
forms are reversible, and the two forms can never produce the same name. base32 and hex are
single-case, so case-insensitive file systems cannot merge two ids either.

Input and output live in their own files, named by a fresh generation, and the record points
at them: a custom-status update rewrites only the small record, never input or output
again. Every file is written to a temporary file and renamed over its target (``os.replace``),
so a reader sees the old record or the new one, never a torn one; the record is the commit
point, written after the payload files it names and before the old ones are removed.

Writers take an exclusive ``fcntl.flock`` on their instance's lock stripe (a lock file opened
per operation, so two threads of one process exclude each other as two processes do), then
read the record, check the etag, and replace it. Readers take no lock. POSIX only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import unquote

from durastate.backend import (
    Backend,
    BackendUnavailable,
    Capabilities,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
    InstanceQuery,
    InstanceRecord,
    InvalidInstanceId,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
    after_token,
    decode_after,
    skip_unreadable,
)

FORMAT: Final = "durastate-dirstore"
FORMAT_VERSION: Final = 1
MARKER: Final = "dirstore.json"
LOCK_STRIPES: Final = 64
MAX_BASE32_KEY: Final = 200  # characters; + "b", + ".GEN.output" stays far below 255 bytes
_TMP_PREFIX: Final = ".tmp-"
_OWN_ENTRIES: Final = frozenset({MARKER, "instances", "locks"})
_OPTIONS: Final = frozenset({"fsync", "lock_timeout", "create"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_READ_ATTEMPTS: Final = 20


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _new_token() -> str:
    return secrets.token_hex(8)


def instance_key(instance_id: str) -> str:
    """The file-name stem of an instance: reversible base32, or a hash for long ids."""
    try:
        raw = instance_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInstanceId(
            f"instance id {instance_id[:40]!r} contains a lone surrogate (not valid unicode)"
        ) from None
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) <= MAX_BASE32_KEY:
        return "b" + encoded
    return "h" + hashlib.sha256(raw).hexdigest()


def id_from_key(key: str) -> str | None:
    """The id a ``b`` key spells; ``None`` for a hashed key (the id is in the record)."""
    if not key.startswith("b"):
        return None
    encoded = key[1:].upper()
    try:
        return base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Ref:
    """Where a payload that lives in its own file is: its encoding and file generation."""

    encoding: str
    generation: str


@dataclass(slots=True)
class _Stored:
    """The content of a ``.rec`` file."""

    instance_id: str
    name: str
    runtime_status: RuntimeStatus
    created_at: int
    last_updated_at: int
    custom_status_updated_at: int | None
    etag: str
    custom_status: Payload | None
    input: _Ref | None
    output: _Ref | None

    def dump(self) -> bytes:
        status = self.custom_status
        document = {
            "format": FORMAT_VERSION,
            "instance_id": self.instance_id,
            "name": self.name,
            "runtime_status": self.runtime_status.value,
            "created_at": self.created_at,
            "last_updated_at": self.last_updated_at,
            "custom_status_updated_at": self.custom_status_updated_at,
            "etag": self.etag,
            "custom_status": None
            if status is None
            else {"encoding": status.encoding, "data": base64.b64encode(status.data).decode()},
            "input": _dump_ref(self.input),
            "output": _dump_ref(self.output),
        }
        return json.dumps(document, separators=(",", ":")).encode("ascii")

    @classmethod
    def load(cls, data: bytes, label: str) -> _Stored:
        try:
            document = json.loads(data)
            if document["format"] != FORMAT_VERSION:
                raise ValueError(f"unknown record format {document['format']!r}")
            status = document["custom_status"]
            return cls(
                instance_id=_text(document["instance_id"]),
                name=_text(document["name"]),
                runtime_status=RuntimeStatus(document["runtime_status"]),
                created_at=_integer(document["created_at"]),
                last_updated_at=_integer(document["last_updated_at"]),
                custom_status_updated_at=None
                if document["custom_status_updated_at"] is None
                else _integer(document["custom_status_updated_at"]),
                etag=_text(document["etag"]),
                custom_status=None
                if status is None
                else Payload.from_encoding(
                    base64.b64decode(_text(status["data"]), validate=True),
                    _text(status["encoding"]),
                ),
                input=_load_ref(document["input"]),
                output=_load_ref(document["output"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CorruptRecord(label, f"dirstore record: {exc}") from None

    def record(self, input: Payload | None = None, output: Payload | None = None) -> InstanceRecord:
        updated = self.custom_status_updated_at
        return InstanceRecord(
            instance_id=self.instance_id,
            name=self.name,
            runtime_status=self.runtime_status,
            created_at=_moment(self.created_at),
            last_updated_at=_moment(self.last_updated_at),
            custom_status_updated_at=None if updated is None else _moment(updated),
            etag=self.etag,
            custom_status=self.custom_status,
            input=input,
            output=output,
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, found {type(value).__name__}")
    return value


def _dump_ref(ref: _Ref | None) -> dict[str, str] | None:
    return None if ref is None else {"encoding": ref.encoding, "file": ref.generation}


def _load_ref(value: Any) -> _Ref | None:
    if value is None:
        return None
    generation = _text(value["file"])
    if not generation.isalnum():
        raise ValueError(f"bad payload file generation {generation!r}")
    return _Ref(_text(value["encoding"]), generation)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"dirstore option {name} must be true or false, not {value!r}")


class DirStoreBackend(Backend):
    """Instances as files in ``directory``; safe for many threads and processes on one host.

    ``fsync`` (default true) flushes every file and the directory before a write returns,
    so a completed write survives a power cut; ``lock_timeout`` bounds the wait for another
    writer of the same lock stripe (``BackendUnavailable`` after it); ``create`` makes the
    directory when it does not exist. A non-empty directory that is not a dirstore is refused.
    """

    scheme = "dirstore"
    capabilities = Capabilities(
        native_query=False,
        extra={"layout": "one record file per instance", "locking": "fcntl.flock"},
    )

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        lock_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        if lock_timeout <= 0:
            raise ConfigurationError(f"dirstore lock_timeout must be positive, not {lock_timeout}")
        self.directory = Path(directory).expanduser()
        self.fsync = fsync
        self.lock_timeout = float(lock_timeout)
        self._instances = self.directory / "instances"
        self._locks = self.directory / "locks"
        with self._guard("open"):
            self._open_layout(create)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``dirstore:///absolute/dir`` or ``dirstore://relative/dir`` (percent-decoded)."""
        rest = url.partition("://")[2]
        if "?" in rest or "#" in rest:
            raise ConfigurationError(
                "dirstore URLs take no query string; pass fsync, lock_timeout or create as "
                "options (keyword arguments or [tool.durastate.options])"
            )
        path = unquote(rest)
        if not path:
            raise ConfigurationError("dirstore URL needs a directory: dirstore:///path/to/dir")
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown dirstore options: {sorted(unknown)} (known: {sorted(_OPTIONS)})"
            )
        try:
            lock_timeout = float(options.get("lock_timeout", 10.0))
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"dirstore option lock_timeout must be a number, not {options['lock_timeout']!r}"
            ) from None
        return cls(
            path,
            fsync=_flag("fsync", options.get("fsync", True)),
            lock_timeout=lock_timeout,
            create=_flag("create", options.get("create", True)),
        )

    def __repr__(self) -> str:
        return f"DirStoreBackend(directory={str(self.directory)!r})"

    # -- layout ---------------------------------------------------------------------------

    def _open_layout(self, create: bool) -> None:
        marker = self.directory / MARKER
        if marker.is_file():
            self._check_marker(marker)
        elif self.directory.exists():
            if not self.directory.is_dir():
                raise ConfigurationError(
                    f"dirstore path {str(self.directory)!r} is not a directory"
                )
            strangers = sorted(
                entry
                for entry in os.listdir(self.directory)
                if entry not in _OWN_ENTRIES and not entry.startswith(_TMP_PREFIX)
            )
            if strangers:
                raise ConfigurationError(
                    f"{str(self.directory)!r} is not empty and is not a dirstore "
                    f"(found {strangers[:3]}); refusing to use it"
                )
        elif not create:
            raise ConfigurationError(
                f"dirstore directory {str(self.directory)!r} does not exist (create=false)"
            )
        self._instances.mkdir(parents=True, exist_ok=True)
        self._locks.mkdir(exist_ok=True)
        if not marker.is_file():
            document = {"format": FORMAT, "version": FORMAT_VERSION}
            self._replace(marker, json.dumps(document).encode("ascii"), self.directory)

    def _check_marker(self, marker: Path) -> None:
        try:
            document = json.loads(marker.read_bytes())
            ok = document.get("format") == FORMAT and document.get("version") == FORMAT_VERSION
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise ConfigurationError(
                f"{str(marker)!r} is not a {FORMAT} version {FORMAT_VERSION} marker"
            )

    # -- files ----------------------------------------------------------------------------

    def _record_path(self, key: str) -> Path:
        return self._instances / f"{key}.rec"

    def _payload_path(self, key: str, field: str, ref: _Ref) -> Path:
        return self._instances / f"{key}.{ref.generation}.{field}"

    def _write_file(self, target: Path, data: bytes, directory: Path) -> None:
        """Write ``data`` to a temporary file beside ``target`` and rename it into place."""
        fd, temporary = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _replace(self, target: Path, data: bytes, directory: Path | None = None) -> None:
        """Atomically replace ``target``; with ``fsync``, durable (the rename too) on return."""
        directory = directory or self._instances
        self._write_file(target, data, directory)
        if self.fsync:
            self._sync_directory(directory)

    @staticmethod
    def _sync_directory(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_payload(self, key: str, field: str, payload: Payload) -> _Ref:
        """A payload file under a fresh generation, durable before any record names it."""
        ref = _Ref(payload.encoding, _new_token())
        self._replace(self._payload_path(key, field, ref), payload.data)
        return ref

    def _remove_payload(self, key: str, field: str, ref: _Ref | None) -> None:
        if ref is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._payload_path(key, field, ref))

    def _read_payload(self, key: str, field: str, ref: _Ref | None) -> Payload | None:
        if ref is None:
            return None
        return Payload.from_encoding(self._payload_path(key, field, ref).read_bytes(), ref.encoding)

    def _load(self, key: str, instance_id: str | None) -> _Stored | None:
        """The stored record under ``key``, or ``None``; checks it holds ``instance_id``."""
        try:
            data = self._record_path(key).read_bytes()
        except FileNotFoundError:
            return None
        stored = _Stored.load(data, instance_id if instance_id is not None else key)
        if instance_id is not None and stored.instance_id != instance_id:
            raise CorruptRecord(
                instance_id, f"file {key}.rec holds instance {stored.instance_id[:40]!r}"
            )
        return stored

    def _load_for_write(self, instance_id: str, key: str, etag: str | None) -> _Stored:
        stored = self._load(key, instance_id)
        if stored is None:
            raise InstanceNotFound(instance_id)
        if etag is not None and etag != stored.etag:
            raise ConcurrencyError(instance_id, etag)
        return stored

    # -- locking and errors ---------------------------------------------------------------

    @contextmanager
    def _guard(self, operation: str, instance_id: str | None = None) -> Iterator[None]:
        """File-system failures become `BackendUnavailable`, naming operation and instance."""
        try:
            yield
        except OSError as exc:
            target = f" of instance {instance_id!r}" if instance_id is not None else ""
            reason = exc.strerror or type(exc).__name__
            raise BackendUnavailable(
                f"dirstore {operation}{target} in {str(self.directory)!r} failed: {reason}"
            ) from None

    @contextmanager
    def _locked(self, instance_id: str, operation: str) -> Iterator[None]:
        """Exclusive lock on the instance's stripe, across threads and processes."""
        stripe = zlib.crc32(instance_id.encode("utf-8")) % LOCK_STRIPES
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self._locks / f"{stripe:02d}.lock", flags, 0o644)
        try:
            self._acquire(fd, instance_id, operation)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, instance_id: str, operation: str) -> None:
        deadline: float | None = None
        delay = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.lock_timeout
            elif now >= deadline:
                raise BackendUnavailable(
                    f"dirstore {operation} of instance {instance_id!r}: another writer held "
                    f"the lock for more than {self.lock_timeout} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    # -- contract -------------------------------------------------------------------------

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        key = instance_key(new.instance_id)
        etag = _new_token()
        created = _micros(new.created_at)
        with self._guard("create", new.instance_id), self._locked(new.instance_id, "create"):
            old = self._load(key, new.instance_id)
            if old is not None and not (restart_if_terminal and old.runtime_status.is_terminal):
                raise InstanceExists(new.instance_id, old.runtime_status.value)
            input_ref = None
            if new.input is not None:
                input_ref = self._write_payload(key, "input", new.input)
            stored = _Stored(
                instance_id=new.instance_id,
                name=new.name,
                runtime_status=new.runtime_status,
                created_at=created,
                last_updated_at=created,
                custom_status_updated_at=created if new.custom_status is not None else None,
                etag=etag,
                custom_status=new.custom_status,
                input=input_ref,
                output=None,
            )
            self._replace(self._record_path(key), stored.dump())
            if old is not None:  # the previous run's payload files
                self._remove_payload(key, "input", old.input)
                self._remove_payload(key, "output", old.output)
        return etag

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        key = instance_key(instance_id)
        with self._guard("read", instance_id):
            for _ in range(_READ_ATTEMPTS):
                stored = self._load(key, instance_id)
                if stored is None:
                    return None
                if not fetch_payloads:
                    return stored.record()
                try:
                    return stored.record(
                        self._read_payload(key, "input", stored.input),
                        self._read_payload(key, "output", stored.output),
                    )
                except FileNotFoundError:
                    continue  # a writer replaced the record after we read it: read again
        raise CorruptRecord(instance_id, "a payload file named by the record is missing")

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        key = instance_key(instance_id)
        operation = "custom-status update"
        with self._guard(operation, instance_id), self._locked(instance_id, operation):
            stored = self._load_for_write(instance_id, key, etag)
            if stored.custom_status == payload:
                return WriteResult(stored.etag, written=False)
            moment = _micros(now)
            stored.custom_status = payload
            stored.custom_status_updated_at = stored.last_updated_at = moment
            stored.etag = _new_token()
            self._replace(self._record_path(key), stored.dump())
            return WriteResult(stored.etag)

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        key = instance_key(instance_id)
        operation = "runtime-status update"
        with self._guard(operation, instance_id), self._locked(instance_id, operation):
            stored = self._load_for_write(instance_id, key, etag)
            old_output = stored.output
            if set_output:
                stored.output = (
                    None if output is None else self._write_payload(key, "output", output)
                )
            stored.runtime_status = status
            stored.last_updated_at = _micros(now)
            stored.etag = _new_token()
            self._replace(self._record_path(key), stored.dump())
            if set_output:
                self._remove_payload(key, "output", old_output)
            return stored.etag

    def delete(self, instance_id: str) -> bool:
        key = instance_key(instance_id)
        with self._guard("delete", instance_id), self._locked(instance_id, "delete"):
            try:
                stored = self._load(key, instance_id)
            except CorruptRecord:
                stored = None  # an unreadable record can still be deleted
            try:
                os.unlink(self._record_path(key))
            except FileNotFoundError:
                return False
            if stored is not None:
                self._remove_payload(key, "input", stored.input)
                self._remove_payload(key, "output", stored.output)
            if self.fsync:
                self._sync_directory(self._instances)
            return True

    def query(self, query: InstanceQuery) -> RecordPage:
        """A directory scan, in id order; the token carries the last id returned.

        Ids are decoded from file names where possible, so id and prefix filters (and the
        keyset position) cost no file read; records are read only for the candidates, in
        order, until the page is full.
        """
        after = decode_after(query.continuation)
        candidates: list[tuple[str, str, _Stored | None]] = []
        with self._guard("query"):
            with os.scandir(self._instances) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or not name.endswith(".rec"):
                        continue
                    key = name[: -len(".rec")]
                    instance_id = id_from_key(key)
                    stored: _Stored | None = None
                    if instance_id is None:  # hashed key: the id is inside
                        try:
                            stored = self._load(key, None)
                        except CorruptRecord as exc:  # no id to name: the file is named
                            skip_unreadable(exc, [])
                            continue
                        if stored is None:
                            continue
                        instance_id = stored.instance_id
                    if after is not None and instance_id <= after:
                        continue
                    if query.prefix and not instance_id.startswith(query.prefix):
                        continue
                    candidates.append((instance_id, key, stored))
            candidates.sort(key=lambda candidate: candidate[0])
            items: list[InstanceRecord] = []
            unreadable: list[str] = []
            more = False
            for instance_id, key, known in candidates:
                try:
                    stored = known or self._load(key, instance_id)
                except CorruptRecord as exc:  # that instance alone; purge_by still deletes it
                    skip_unreadable(exc, unreadable)
                    continue
                if stored is None or not query.matches(stored.record()):
                    continue  # deleted since the scan, or filtered out
                if len(items) == query.page_size:
                    more = True
                    break
                record = stored.record()
                if query.fetch_payloads:
                    fetched = self.read(instance_id, fetch_payloads=True)
                    if fetched is None:
                        continue
                    record = fetched
                items.append(record)
        token = after_token(items[-1].instance_id) if more and items else None
        return RecordPage(items, token, unreadable)
