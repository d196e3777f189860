"""s3://BUCKET/PREFIX — instances as two objects each, conditional writes for the etag.

A sans-I/O core over the lean HTTP transport (docs/s3.md): `keys` (ids as keys), `objects`
(S3 object requests and answers), `layout` (the two objects' bodies and the etag),
`options`, `plans` (the operations, written once), `backend` (sync), `aio` (async, made by
``S3Backend.to_async()``) and `bucket` (bucket creation through boto3).
"""

from __future__ import annotations

try:
    import boto3  # noqa: F401 - credentials chain and bucket administration
    import botocore  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the registry test
    from durastate.errors import MissingDependency

    raise MissingDependency("backend 's3'", "aws", exc.name or "boto3") from None

from durastate.backends.s3.backend import S3Backend
from durastate.backends.s3.keys import MAX_KEY_BYTES, escape_id, instance_key, unescape_id
from durastate.backends.s3.options import S3Options

__all__ = ["MAX_KEY_BYTES", "S3Backend", "S3Options", "escape_id", "instance_key", "unescape_id"]
