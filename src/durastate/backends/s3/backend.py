"""`S3Backend`: the sync face. Each call drives its plan (`plans.S3Core`, through
`PlannedBackend`) over the keep-alive `HttpDriver`; nothing is decided here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from durastate.backends._aws import safe_endpoint
from durastate.backends.aws_common import credentials_of
from durastate.backends.s3.bucket import BucketAdmin
from durastate.backends.s3.keys import KeyLayout
from durastate.backends.s3.objects import S3Objects
from durastate.backends.s3.options import S3Options, check_bucket, parse_url
from durastate.backends.s3.plans import S3Core, known_etags
from durastate.core.backend import read_in_threads
from durastate.core.planned import PlannedBackend
from durastate.core.records import Capabilities, InstanceRecord
from durastate.core.steps import Plan
from durastate.transport import HttpDriver
from durastate.transport.aws_sigv4 import SigV4Signer
from durastate.transport.plans import Step, perform

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from durastate.core.async_backend import AsyncBackend

__all__ = ["CAPABILITIES", "S3Backend"]

T = TypeVar("T")

CAPABILITIES = Capabilities(
    max_payload_bytes=None,  # 5 GB per object; input and output share the record
    skips_unchanged=True,
    native_query=False,
    cross_process=True,
    max_instance_id_length=512,
    extra={
        "custom_status_update": "1 PutObject (0 when unchanged with a current etag)",
        "query": "1 ListObjectsV2 per 1000 instances + 1-2 GetObject per instance",
    },
)


class S3Backend(PlannedBackend):
    """Instances in an S3 bucket (or moto_server, MinIO...); see docs/s3.md."""

    scheme = "s3"
    plans: S3Core
    capabilities = CAPABILITIES
    async_mode: ClassVar[str] = "native"

    def __init__(self, bucket: str, prefix: str = "", *, options: S3Options | None = None) -> None:
        self.bucket = check_bucket(bucket)
        self._options = options or S3Options()
        layout = KeyLayout.under(prefix)
        self.prefix = layout.prefix
        signer = SigV4Signer(
            credentials_of(self._options), self._options.signing_region(), "s3", s3=True
        )
        objects = S3Objects.for_endpoint(signer, bucket, self._options.endpoint())
        # one operation of one instance ends within what one request may take
        transport = self._options.transport()
        self.core = self.plans = S3Core(objects, layout, known_etags(), budget=transport.deadline)
        self.admin = BucketAdmin(bucket, self._options, create=self._options.create_bucket)
        self.driver = HttpDriver(transport)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``s3://BUCKET/PREFIX?region=...&endpoint_url=...``; keyword options win (see
        `S3Options`)."""
        parsed = parse_url(url, options)
        return cls(parsed.bucket, parsed.prefix, options=parsed.options)

    @property
    def client(self) -> S3Client:
        """The boto3 client of bucket administration (and of tests, as an oracle)."""
        return self.admin.client

    def __repr__(self) -> str:
        endpoint = safe_endpoint(self._options.endpoint_url)
        return f"S3Backend(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    def close(self) -> None:
        self.driver.close()
        self.admin.close()

    def to_async(self) -> AsyncBackend:
        """The async face over the same plans, options and known etags (the async driver
        is asyncio alone: ``aws`` is all an async store over S3 needs)."""
        from durastate.backends.s3.aio import AsyncS3Backend

        return AsyncS3Backend(self.core, self.admin, self._options, repr(self))

    def _ready(self) -> None:
        """Create the bucket on first use (unless ``create_bucket=False``)."""
        if not self.admin.ready:
            self.admin.ensure()

    def _drive(self, plan: Plan[Any, T], instance_id: str | None = None) -> T:
        self._ready()
        return super()._drive(plan, instance_id)

    def _perform(self, step: Step) -> Any:
        return perform(step, self.driver)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """No batched read in this service: a few reads at once on threads."""
        return read_in_threads(self, instance_ids, fetch_payloads)
