"""dynamodb:// — a sans-I/O core over the lean HTTP transport, with a sync and an async
backend.

``layout`` (attributes, times, etags, item -> record), ``requests`` (bodies, signing),
``responses`` (answers, typed errors), ``queries`` (index queries, tokens), ``offload``
(large payloads in S3), ``options`` (the typed options, endpoint and credentials),
``plans`` (the operations, written once), ``sync`` and ``aio`` (the two thin backends).
See docs/dynamodb.md.
"""

import boto3  # noqa: F401 - the "aws" extra (table administration, credentials chain)

from durastate.backends.dynamodb.layout import INLINE_LIMIT
from durastate.backends.dynamodb.options import DynamoDBOptions
from durastate.backends.dynamodb.sync import DynamoDBBackend

__all__ = ["INLINE_LIMIT", "DynamoDBBackend", "DynamoDBOptions"]
