"""Opt-in Docker variants of the launchers, for ``pytest --durastate-containers``.

The local-process launchers in `durastate.testing.emulators` are the default and the tested
path (these machines have no Docker engine). Where an engine answers, Azurite runs from its
official image and moto from its image with durastate's one-request-at-a-time server
(`durastate.testing.moto_serial`, mounted read-only), so conditional writes stay atomic.
dynalite has no official image and stays a local process. Each container is a foreground
``docker run --rm`` process, so the handle, the readiness probe and the stop by PID are the
ones the process launchers use (``docker run`` passes SIGTERM on to the container).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from durastate.testing.emulators import (
    AZURITE_ACCOUNT,
    AzuriteEmulator,
    MotoEmulator,
    free_port,
    spawn,
)

AZURITE_IMAGE = "mcr.microsoft.com/azure-storage/azurite:3.35.0"
MOTO_IMAGE = "motoserver/moto:5.2.3"
#: Inside a container the server listens on every interface; the host publishes it on
#: 127.0.0.1 only.
_ALL_INSIDE = "0.0.0.0"  # noqa: S104
_PULL_TIMEOUT = 600.0  # the first start may pull the image


def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used (None when one answers ``/_ping``)."""
    if shutil.which("docker") is None:
        return "the docker command is not on PATH"
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2.0)
            sock.connect(parts.path)
        elif parts.scheme == "tcp" and parts.hostname:
            sock = socket.create_connection((parts.hostname, parts.port or 2375), timeout=2.0)
        else:
            return f"DOCKER_HOST scheme {parts.scheme!r} is not supported (unix:// or tcp://)"
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as exc:
        return f"no Docker engine answers at {parts.scheme}://{parts.netloc}{parts.path} ({exc})"
    if " 200 " not in f"{status_line} ":
        return f"the Docker engine answered {status_line!r} to /_ping"
    return None


def _docker_run(
    ports: dict[int, int], image: str, *args: str, extra: tuple[str, ...] = ()
) -> list[str]:
    published = [f"-p127.0.0.1:{host}:{inside}" for host, inside in ports.items()]
    return ["docker", "run", "--rm", *published, *extra, image, *args]


def start_azurite_container() -> AzuriteEmulator:
    """Azurite (Table + Blob) from its official image, in memory."""
    table_port, blob_port = free_port(), free_port()
    argv = _docker_run(
        {table_port: 10002, blob_port: 10000},
        AZURITE_IMAGE,
        "azurite", "--inMemoryPersistence", "--loose", "--skipApiVersionCheck",
        "--disableTelemetry", "--tableHost", _ALL_INSIDE, "--blobHost", _ALL_INSIDE,
    )  # fmt: skip
    endpoints = {
        "table": f"http://127.0.0.1:{table_port}/{AZURITE_ACCOUNT}",
        "blob": f"http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT}",
    }
    probe = f"http://127.0.0.1:{table_port}/"
    return spawn(AzuriteEmulator, "azurite", argv, endpoints, probe, timeout=_PULL_TIMEOUT)


def start_moto_container() -> MotoEmulator:
    """moto from its image, serving one request at a time as `start_moto` does."""
    port = free_port()
    mount = f"{Path(__file__).with_name('moto_serial.py')}:/durastate_moto_serial.py:ro"
    argv = _docker_run(
        {port: 5000}, MOTO_IMAGE, "/durastate_moto_serial.py", _ALL_INSIDE, "5000",
        extra=("-v", mount, "--entrypoint", "python"),
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    return spawn(
        MotoEmulator, "moto_server", argv, {"aws": endpoint}, f"{endpoint}/moto-api/",
        timeout=_PULL_TIMEOUT,
    )  # fmt: skip

