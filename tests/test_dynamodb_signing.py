"""SigV4 on the lean path, on real requests: the backend's own request, signed by durastate
and by botocore at the same instant, carries the same Authorization, and both servers
(moto_server, dynalite) accept it. Credentials come from botocore's chain when no keys are
given (environment, a profile in a shared credentials file).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from durastate.backends.dynamodb import DynamoDBBackend
from durastate.core.records import Payload
from durastate.testing.emulators import RunningEmulator
from durastate.transport.aws_sigv4 import FrozenCredentials
from tests.test_transport_signing import botocore_headers

from .test_dynamodb import (
    CREDS,
    T0,
    make_backend,
    new,
    server,  # noqa: F401  (the moto and dynalite fixture)
)

pytestmark = pytest.mark.emulator

KEYS = FrozenCredentials(CREDS["aws_access_key_id"], CREDS["aws_secret_access_key"])


def test_the_backends_request_is_signed_as_botocore_signs_it_and_accepted(
    server: RunningEmulator,  # noqa: F811
) -> None:
    # botocore_headers pins botocore's clock to tests.test_transport_signing.NOW; sign ours
    # at the same instant (the emulators do not check the clock's skew)
    from tests.test_transport_signing import NOW

    with make_backend(server.endpoint) as backend:
        etag = backend.create(new("signed"))
        requests = backend.core.requests
        body = requests.custom_status_update(
            "signed", Payload(b'"lean"', "json"), ("B", b'"lean"'), etag, T0, "e-lean"
        )
        ours = requests.sign("UpdateItem", body, now=NOW)
        unsigned = ours.with_all_headers(
            {k: v for k, v in ours.headers.items() if k in ("content-type", "x-amz-target")}
        )
        theirs = botocore_headers(unsigned, KEYS, "us-east-1", "dynamodb", s3=False)
        assert theirs["authorization"] == ours.headers["authorization"]
        assert theirs == dict(ours.headers)
        answer = backend.driver.send(ours)
        assert answer.status == 200, answer.body[:200]
        record = backend.read("signed")
        assert record is not None
        assert (record.etag, record.custom_status) == ("e-lean", Payload(b'"lean"', "json"))


def test_keys_from_the_environment(
    server: RunningEmulator,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    with DynamoDBBackend.from_url(
        f"dynamodb://ds-{uuid.uuid4().hex[:12]}", endpoint_url=server.endpoint, region="us-east-1"
    ) as backend:
        backend.create(new("env"))
        assert backend.read("env") is not None
        assert "from-env" in backend.core.requests.sign("GetItem", {}).headers["authorization"]


def test_keys_from_a_profile(
    server: RunningEmulator,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[ops]\naws_access_key_id = from-profile\naws_secret_access_key = profile-secret\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with DynamoDBBackend.from_url(
        f"dynamodb://ds-{uuid.uuid4().hex[:12]}",
        endpoint_url=server.endpoint,
        region="us-east-1",
        profile_name="ops",
    ) as backend:
        backend.create(new("profiled"))
        assert backend.read("profiled") is not None
        signed = backend.core.requests.sign("GetItem", {}, now=datetime.now(UTC))
        assert "Credential=from-profile/" in signed.headers["authorization"]
