"""Start real service emulators as local processes: Azurite, moto_server, dynalite, PostgreSQL.

The same shape as a testcontainers container, without Docker: a free loopback port, a
readiness probe over HTTP, and cleanup of the whole process group by PID. The test
fixtures and the benchmark scripts both use these, so a user can benchmark a network
backend with the same one command the tests use.

Node tools (Azurite, dynalite) are looked up in ``$DURASTATE_NODE_TOOLS/node_modules/.bin``,
then in ``tools/node_modules/.bin`` of this checkout (or of the current directory and its
parents), then on ``PATH``; ``scripts/setup`` installs them there from ``tools/package.json``.
"""

from __future__ import annotations

import contextlib
import glob
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

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published, well-known development key (not a secret; documented by Microsoft).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class EmulatorError(RuntimeError):
    """An emulator could not be found or did not become ready."""


@dataclass
class RunningEmulator:
    """A started emulator process and where to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    endpoints: dict[str, str]
    log_path: Path
    workdir: Path | None = None
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


def find_node_tool(name: str) -> str:
    """The path of an npm-installed executable, or an `EmulatorError` naming the fix."""
    candidates: list[Path] = []
    env_dir = os.environ.get("DURASTATE_NODE_TOOLS")
    if env_dir:
        candidates.append(Path(env_dir) / "node_modules" / ".bin" / name)
    here = Path.cwd().resolve()
    checkout = Path(__file__).resolve().parents[3]
    for directory in (checkout, here, *here.parents):
        candidates.append(directory / "tools" / "node_modules" / ".bin" / name)
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise EmulatorError(f"{name} is not installed: run scripts/setup (npm ci in tools/, Node 20)")


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5):  # noqa: S310 - our own http URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is listening
    except (OSError, ValueError):
        return False


def _spawn(
    name: str,
    argv: Sequence[str],
    endpoints: dict[str, str],
    probe_url: str,
    *,
    timeout: float = 30.0,
    workdir: Path | None = None,
    ready: Callable[[], bool] | None = None,
    user: str | None = None,
) -> RunningEmulator:
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
    emulator = RunningEmulator(name, process, endpoints, Path(log_file.name), workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"{name} exited with code {process.returncode}:\n{emulator.log_tail()}"
            )
        if (ready or (lambda: _http_ready(probe_url)))():
            return emulator
        time.sleep(0.05)
    emulator.stop()
    raise EmulatorError(f"{name} did not answer on {probe_url} within {timeout} s")


def start_azurite(
    *, table_port: int | None = None, blob_port: int | None = None
) -> RunningEmulator:
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
    emulator = _spawn(
        "azurite", argv, endpoints, f"http://127.0.0.1:{table_port}/", workdir=workdir
    )
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


def start_moto(*, port: int | None = None, serialized: bool = True) -> RunningEmulator:
    """moto's server (DynamoDB, S3, ...) over real HTTP.

    ``serialized`` (the default, for tests) serves one request at a time so conditional
    writes are atomic as on AWS (see `durastate.testing.moto_serial`); ``False`` runs the
    stock multi-threaded ``moto_server`` (benchmarks, single writer).
    """
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    if serialized:
        argv = [sys.executable, "-m", "durastate.testing.moto_serial", "127.0.0.1", str(port)]
    else:
        moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        if not Path(moto).exists():
            raise EmulatorError("moto_server is not installed: pip install 'moto[server]'")
        argv = [moto, "-H", "127.0.0.1", "-p", str(port)]
    return _spawn("moto_server", argv, {"aws": endpoint}, f"{endpoint}/moto-api/")


def start_dynalite(*, port: int | None = None) -> RunningEmulator:
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
    return _spawn("dynalite", argv, {"dynamodb": endpoint}, endpoint)


def restart(emulator: RunningEmulator) -> RunningEmulator:
    """Start the same emulator again on the same ports (state is lost: all run in memory)."""
    if emulator.name == "postgresql":
        return restart_postgres(emulator)
    emulator.stop()
    ports = {name: int(url.split(":")[2].split("/")[0]) for name, url in emulator.endpoints.items()}
    if emulator.name == "azurite":
        return start_azurite(table_port=ports["table"], blob_port=ports["blob"])
    if emulator.name == "moto_server":
        serialized = any("moto_serial" in str(arg) for arg in emulator.process.args)  # type: ignore[union-attr]
        return start_moto(port=ports["aws"], serialized=serialized)
    if emulator.name == "dynalite":
        return start_dynalite(port=ports["dynamodb"])
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
def running(emulator: RunningEmulator) -> Iterator[RunningEmulator]:
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


def start_postgres(*, port: int | None = None, data_dir: Path | None = None) -> RunningEmulator:
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
    emulator = _spawn(
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


def restart_postgres(emulator: RunningEmulator) -> RunningEmulator:
    """Stop the server and start it again on the same port and data (PostgreSQL keeps it)."""
    assert emulator.workdir is not None
    emulator.stop(keep_workdir=True)
    return start_postgres(port=postgres_port(emulator), data_dir=emulator.workdir / "data")
