"""moto's own server application, served one request at a time.

``moto_server`` runs its WSGI app on many threads, and moto's DynamoDB and S3 models take no
locks: two conditional writes racing on one item can both pass their check (seen in our
thread tests: two HTTP-200 UpdateItem calls carrying the same old etag). AWS evaluates a
condition atomically. Served by a single-threaded werkzeug server (HTTP/1.0, one request
per connection), the same moto app is atomic per request, as the real service is — still
a real HTTP server, nothing patched in the client.

Run: ``python -m durastate.testing.moto_serial HOST PORT``.
"""

from __future__ import annotations

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False)


if __name__ == "__main__":
    main(sys.argv[1:])
