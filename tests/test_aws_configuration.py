"""Opening the AWS backends wrongly: clear ``ConfigurationError``s, and no secret anywhere.

Both backends (``dynamodb://`` on moto_server, ``s3://`` on moto_server) go through the
same checks: credentials typed into the URL, an endpoint URL with userinfo, a malformed
endpoint, and no credentials at all (library and CLI).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from durastate import open_store
from durastate.cli import app
from durastate.errors import ConfigurationError
from durastate.opening import open_backend
from durastate.testing.emulators import RunningEmulator

pytestmark = pytest.mark.emulator

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SCHEMES = ("dynamodb", "s3")
_ENV_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def _url(scheme: str) -> str:
    name = f"ds-cfg-{uuid.uuid4().hex[:12]}"
    return f"dynamodb://{name}" if scheme == "dynamodb" else f"s3://{name}/p"


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where botocore's credential chain finds nothing (and asks no IMDS)."""
    for name in _ENV_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_credentials_in_the_url_are_refused_without_echo(scheme: str) -> None:
    url = _url(scheme).replace("://", f"://{KEY_ID}:{SECRET}@")
    with pytest.raises(ConfigurationError) as raised:
        open_backend(url, region="us-east-1")
    assert "no credentials" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_secret_pasted_as_the_table_or_bucket_is_not_echoed(scheme: str) -> None:
    pasted = SECRET.replace("-", "+")  # AWS secret keys hold + and /, never valid names
    url = f"dynamodb://{pasted}" if scheme == "dynamodb" else f"s3://{pasted}/p"
    with pytest.raises(ConfigurationError) as raised:
        open_backend(
            url,
            region="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            endpoint_url="http://127.0.0.1:9",
        )
    assert pasted not in str(raised.value)
    assert "characters" in str(raised.value)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_endpoint_userinfo_never_shows_in_repr(scheme: str, moto_server: RunningEmulator) -> None:
    endpoint = moto_server.endpoint.replace("://", f"://user:{SECRET}@")
    backend = open_backend(
        _url(scheme),
        endpoint_url=endpoint,
        region="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
        **({"create_table": False} if scheme == "dynamodb" else {}),
    )
    with backend:
        shown = repr(backend)
        assert moto_server.endpoint.split("//")[1] in shown  # host and port are shown
        assert SECRET not in shown
        options = backend.aws if scheme == "dynamodb" else backend._options  # type: ignore[attr-defined]
        assert SECRET not in repr(options)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_malformed_endpoint_is_a_configuration_error_without_echo(scheme: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_backend(
            _url(scheme),
            endpoint_url=f"ftp:/{SECRET}",
            region="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.usefixtures("no_credentials")
def test_no_credentials_is_a_configuration_error_saying_how(
    scheme: str, moto_server: RunningEmulator
) -> None:
    def first_use() -> None:  # DynamoDB meets the service when opened, S3 on first use
        open_store(
            _url(scheme), region="us-east-1", endpoint_url=moto_server.endpoint
        ).get_instance("x")

    with pytest.raises(ConfigurationError) as raised:
        first_use()
    message = str(raised.value)
    assert "no AWS credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message
    assert "aws_access_key_id=" in message


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.usefixtures("no_credentials")
def test_cli_without_credentials_prints_one_clear_line(
    scheme: str, moto_server: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    url = f"{_url(scheme)}?endpoint_url={moto_server.endpoint}"
    result = CliRunner().invoke(app, ["get", "job-1", "--url", url])
    assert result.exit_code != 0
    assert "no AWS credentials" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 6, result.output  # one wrapped message


def test_the_connection_pool_holds_100_requests_in_flight_unless_told_otherwise() -> None:
    """``max_pool_connections`` bounds the async driver's open connections: the default lets
    100 requests be in flight at once, as Azure Tables' does; a user may set it."""
    from durastate.backends._aws import AwsOptions
    from durastate.backends.aws_common import transport_options

    assert transport_options(AwsOptions()).pool_size == 100
    assert transport_options(AwsOptions(max_pool_connections=7)).pool_size == 7
    with pytest.raises(ConfigurationError, match="max_pool_connections"):
        AwsOptions.pick({"max_pool_connections": 0})
