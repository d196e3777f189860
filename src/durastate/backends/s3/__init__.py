"""s3://BUCKET/PREFIX — instances as two objects each, conditional writes for the etag.

A sans-I/O core over the lean HTTP transport (docs/s3.md): `keys` (ids as keys), `objects`
(S3 object requests and answers), `layout` (the two objects' bodies and the etag),
`options`, `plans` (the operations, written once), `backend` (sync) and `aio` (async).
"""

from __future__ import annotations

try:
    import boto3  # noqa: F401 - credentials chain and bucket administration
    import botocore  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the registry test
    from durastate.errors import MissingDependency

    raise MissingDependency("backend 's3'", "aws", exc.name or "boto3") from None

from durastate.backends.s3.keys import MAX_KEY_BYTES, escape_id, instance_key, unescape_id
from durastate.backends.s3.legacy import S3Backend, _Etag

__all__ = ["MAX_KEY_BYTES", "S3Backend", "_Etag", "escape_id", "instance_key", "unescape_id"]
