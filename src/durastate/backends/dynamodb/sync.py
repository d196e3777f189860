"""The sync DynamoDB backend: each call drives one of the core's plans over `HttpDriver`.

Requests are built, signed and read by the sans-I/O core (`plans.DynamoCore`); the
official SDK is used only to administer the table (create it with its index, wait for it,
enable TTL) when the backend opens, and is built only then.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar, Self

import botocore.exceptions

from durastate.backends._aws import AwsOptions, aws_client, error_code, guard, safe_endpoint
from durastate.backends.dynamodb.layout import (
    CREATED,
    ID,
    INLINE_LIMIT,
    MAX_INSTANCE_ID_LENGTH,
    STATUS,
)
from durastate.backends.dynamodb.offload import Offload
from durastate.backends.dynamodb.options import (
    Connection,
    DynamoDBOptions,
    check_table_name,
    parse_url,
)
from durastate.backends.dynamodb.plans import DynamoCore
from durastate.backends.dynamodb.requests import DynamoRequests, TableLayout
from durastate.core.planned import PlannedBackend
from durastate.core.records import Capabilities
from durastate.errors import BackendUnavailable, ConfigurationError
from durastate.transport.plans import Step, perform
from durastate.transport.sync import HttpDriver

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from durastate.core.async_backend import AsyncBackend

__all__ = ["DynamoDBBackend", "open_core"]

log = logging.getLogger(__name__)

_AUTH_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}
)


def open_core(options: DynamoDBOptions, aws: AwsOptions) -> tuple[DynamoCore, Connection]:
    """The core of a table and the connection settings it was resolved with."""
    check_table_name(options.table)
    connection = Connection(options, aws)
    layout = TableLayout(
        table=options.table,
        index_name=options.index_name,
        ttl_attribute=options.ttl_attribute,
        ttl_seconds=options.ttl_seconds,
        offload=options.offload_bucket is not None,
    )
    requests = DynamoRequests(
        layout, connection.endpoint, connection.region, connection.credentials
    )
    offload = None
    if options.offload_bucket:
        offload = Offload(
            connection.offload_endpoint,
            connection.region,
            connection.credentials,
            options.offload_bucket,
            f"{options.offload_prefix}{options.table}/",
        )
    return DynamoCore(requests, offload, options.offload_threshold), connection


def capabilities_of(core: DynamoCore) -> Capabilities:
    return Capabilities(
        max_payload_bytes=None if core.offload else INLINE_LIMIT,
        offload=core.offload is not None,
        skips_unchanged=True,
        native_query=True,
        ttl=core.layout.ttl_attribute is not None,
        max_instance_id_length=MAX_INSTANCE_ID_LENGTH,
    )


class DynamoDBBackend(PlannedBackend):
    """Instances in one DynamoDB table (layout: `durastate.backends.dynamodb.layout`)."""

    scheme = "dynamodb"
    plans: DynamoCore
    async_mode: ClassVar[str] = "native"
    capabilities = Capabilities(
        max_payload_bytes=INLINE_LIMIT,
        offload=True,
        skips_unchanged=True,
        native_query=True,
        ttl=True,
        max_instance_id_length=MAX_INSTANCE_ID_LENGTH,
    )

    def __init__(self, options: DynamoDBOptions, aws: AwsOptions | None = None) -> None:
        self.options = options
        self.aws = aws or AwsOptions()
        self.table = options.table
        self.core, self.connection = open_core(options, self.aws)
        self.plans = self.core
        self.capabilities = capabilities_of(self.core)
        self.driver = HttpDriver(self.connection.transport)
        self._client: DynamoDBClient | None = None
        if options.create_table:
            self._create_table()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``dynamodb://TABLE?region=...&endpoint_url=...``; keyword options win over the URL."""
        return cls(*parse_url(cls.scheme, url, options))

    def __repr__(self) -> str:
        endpoint = safe_endpoint(self.aws.endpoint_url)
        return f"DynamoDBBackend(table={self.table!r}, endpoint={endpoint!r})"

    def to_async(self) -> AsyncBackend:
        """The same core over the async driver (asyncio alone: no extra to install)."""
        from durastate.backends.dynamodb.aio import AsyncDynamoDBBackend

        return AsyncDynamoDBBackend(self.core, self.connection, self.capabilities, repr(self))

    def close(self) -> None:
        self.driver.close()
        if self._client is not None:
            self._client.close()

    def _perform(self, step: Step) -> Any:
        """The contract's calls are the core's plans (`PlannedBackend`); this does a step."""
        return perform(step, self.driver)

    # -- administration (the SDK, at open only) ----------------------------------------------

    @property
    def client(self) -> DynamoDBClient:
        """A boto3 client for administration (and for tests that look at the raw table)."""
        if self._client is None:
            self._client = aws_client("dynamodb", self.aws)
        return self._client

    def _admin_refused(self, operation: str, exc: botocore.exceptions.ClientError) -> Exception:
        code = error_code(exc)
        if code in _AUTH_CODES:
            return ConfigurationError(
                f"not allowed to {operation} on DynamoDB table {self.table!r}: {code}"
            )
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return ConfigurationError(
            f"{operation} of DynamoDB table {self.table!r} was refused: {code or 'error'} "
            f"(HTTP {status})"
        )

    def _create_table(self) -> None:
        """On-demand table with the status/created GSI; TTL enabled when configured."""
        with guard("create table", None):
            try:
                self.client.create_table(
                    TableName=self.table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": ID, "AttributeType": "S"},
                        {"AttributeName": STATUS, "AttributeType": "S"},
                        {"AttributeName": CREATED, "AttributeType": "S"},
                    ],
                    KeySchema=[{"AttributeName": ID, "KeyType": "HASH"}],
                    GlobalSecondaryIndexes=[
                        {
                            "IndexName": self.options.index_name,
                            "KeySchema": [
                                {"AttributeName": STATUS, "KeyType": "HASH"},
                                {"AttributeName": CREATED, "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "KEYS_ONLY"},
                        }
                    ],
                )
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) == "ResourceInUseException":
                    return
                raise self._admin_refused("create table", exc) from None
        self._wait_active()
        self._enable_ttl()

    def _wait_active(self) -> None:
        deadline = time.monotonic() + self.options.table_wait_seconds
        while True:
            with guard("describe table", None):
                try:
                    table = self.client.describe_table(TableName=self.table)["Table"]
                except botocore.exceptions.ClientError as exc:
                    raise self._admin_refused("describe table", exc) from None
            if table["TableStatus"] == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"DynamoDB table {self.table!r} did not become ACTIVE")
            time.sleep(0.2)

    def _enable_ttl(self) -> None:
        if self.options.ttl_attribute is None:
            return
        try:
            with guard("enable TTL", None):
                self.client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={
                        "Enabled": True,
                        "AttributeName": self.options.ttl_attribute,
                    },
                )
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in _AUTH_CODES:
                raise ConfigurationError(
                    f"not allowed to enable TTL on DynamoDB table {self.table!r}"
                ) from None
            # dynalite has no UpdateTimeToLive; expired items still read as absent here.
            log.warning("could not enable TTL on %r: %s", self.table, error_code(exc))
