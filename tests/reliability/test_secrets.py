"""Secrets never leak: not in errors, reprs, log lines (DEBUG, SDK loggers included) or CLI output.

Known secrets are configured (an Azure account key inside a connection string, an AWS secret
access key, a pickle-safe HMAC key), then the tests provoke successes and failures (a wrong
key, an unreachable endpoint, a forged payload) and search every text a user could see.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from typer.testing import CliRunner

from durastate import open_store
from durastate.cli import app
from durastate.config import load_settings
from durastate.core.records import Payload
from durastate.core.store import StateStore
from durastate.errors import DurastateError
from durastate.telemetry import instrument
from durastate.testing.emulators import (
    AZURITE_ACCOUNT,
    RunningEmulator,
    free_port,
    running,
    start_redis,
)
from tests.reliability.backends import (
    AWS_FAST,
    AZURE_FAST,
    REDIS_FAST,
    BackendSpec,
    store_object,
    unique,
)
from tests.reliability.test_hostile_input import NOW

ACCOUNT_KEY = base64.b64encode(b"durastate-test-account-key-Qx7Zp9Lm3Vt8-padding!!").decode()
AWS_SECRET = "awsSecretDoNotLeak/Kf93hDq0Zr8+Yt2Wn5Bv7Mx"
HMAC_KEY = "hmacSecretDoNotLeak-7Gq2Lp9Rt4Wx"
REDIS_PASSWORD = "redisPassDoNotLeak-Jv4Nc8Tq1"
SECRETS = [
    ACCOUNT_KEY,
    AWS_SECRET,
    HMAC_KEY,
    REDIS_PASSWORD,
    ACCOUNT_KEY[:24],
    AWS_SECRET[:20],
    HMAC_KEY[:20],
    REDIS_PASSWORD[:20],
]


def _connection_string(table_endpoint: str, blob_endpoint: str | None = None) -> str:
    parts = [
        "DefaultEndpointsProtocol=http",
        f"AccountName={AZURITE_ACCOUNT}",
        f"AccountKey={ACCOUNT_KEY}",
        f"TableEndpoint={table_endpoint}",
    ]
    if blob_endpoint:
        parts.append(f"BlobEndpoint={blob_endpoint}")
    return ";".join(parts) + ";"


Opener = Callable[..., StateStore]


@pytest.fixture
def opener(face: str) -> Opener:
    """``open_store``, or for the async face ``open_async_store`` behind the blocking front."""
    return lambda url, **options: BackendSpec("secrets", url, options, face).open()


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into: {text[:300]!r}..."


def _describe(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # root: durastate, azure.*, botocore, urllib3 ...
    for name in (
        "azure",
        "azure.core.pipeline.policies.http_logging_policy",
        "botocore",
        "boto3",
        "urllib3",
        "redis",
        "durastate",
    ):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    _assert_clean(caplog.text, *(repr(record.args) for record in caplog.records))


def _exercise(store: StateStore) -> list[str]:
    """Successes and failures on one store, traced; every text a user could see."""
    instrument(
        store_object(store), tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    )
    seen = [repr(store), repr(store.backend), repr(store.codec.writer), str(store.capabilities)]
    calls: list[Callable[[], object]] = [
        lambda: store.create_instance("s1", name="wf", input={"a": 1}, custom_status="x"),
        lambda: store.set_custom_status("s1", {"p": 1}),
        lambda: store.get_instance("s1", fetch_payloads=True),
        lambda: store.update("s1", lambda v: {"p": 2}),
        lambda: store.query(page_size=2),
        lambda: store.query(name="wf", updated_from=datetime(2000, 1, 1, tzinfo=UTC)),
        lambda: store.count(name="wf"),
        lambda: store.get_many(["s1", "missing"], fetch_payloads=True),
        lambda: store.purge_expired(),  # no retention: a ConfigurationError
        lambda: store.set_custom_status("missing", 1),
        lambda: store.set_custom_status("s1", object()),
        lambda: store.purge("s1"),
    ]
    for call in calls:
        try:
            seen.append(repr(call()))
        except DurastateError as exc:
            seen.append(_describe(exc))
    return seen


def test_azure_wrong_key_and_dead_endpoint(
    azurite: RunningEmulator, debug_logs: pytest.LogCaptureFixture, opener: Opener
) -> None:
    wrong_key = _connection_string(azurite.endpoints["table"], azurite.endpoints["blob"])
    with opener(
        f"azure-tables://{unique('T')}", connection_string=wrong_key, **AZURE_FAST
    ) as store:
        _assert_clean(*_exercise(store))  # Azurite refuses the key: 403 on every call
    assert any(record.name.startswith("azure") for record in debug_logs.records)
    dead = _connection_string(f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}")
    with opener(f"azure-tables://{unique('T')}", connection_string=dead, **AZURE_FAST) as store:
        _assert_clean(*_exercise(store))


def test_azure_connection_string_from_environment(
    azurite: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
    opener: Opener,
) -> None:
    monkeypatch.setenv(
        "DURASTATE_AZURE_CONNECTION_STRING",
        _connection_string(azurite.endpoints["table"], azurite.endpoints["blob"]),
    )
    with opener(f"azure-tables://{unique('T')}", **AZURE_FAST) as store:
        _assert_clean(*_exercise(store))


def test_azure_secrets_typed_in_the_wrong_place(
    azurite: RunningEmulator, monkeypatch: pytest.MonkeyPatch, debug_logs: pytest.LogCaptureFixture
) -> None:
    """A key in the URL's userinfo, a connection string pasted as the table name or as the
    account URL, a malformed key or connection string, a SAS URL to a dead endpoint: each
    gives a typed error, and none shows the secret."""
    monkeypatch.delenv("DURASTATE_AZURE_CONNECTION_STRING", raising=False)
    table_endpoint = azurite.endpoints["table"]
    connection_string = _connection_string(table_endpoint)
    dead = f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"
    attempts: list[Callable[[], object]] = [
        lambda: open_store(f"azure-tables://{AZURITE_ACCOUNT}:{ACCOUNT_KEY}@Table"),
        lambda: open_store(f"azure-tables://:{ACCOUNT_KEY}@Table"),
        lambda: open_store("azure-tables://" + connection_string),
        lambda: open_store("azure-tables:///?table=" + connection_string),
        lambda: open_store(f"azure-tables://Table?account_key={ACCOUNT_KEY}"),
        lambda: open_store(f"azure-tables://Table?sig={ACCOUNT_KEY}"),
        lambda: open_store("azure-tables://Table", account_url=connection_string),
        lambda: open_store("azure-tables://Table", connection_string=f"x;AccountKey={ACCOUNT_KEY}"),
        lambda: open_store("azure-tables://Table", connection_string=ACCOUNT_KEY),
        lambda: open_store(
            "azure-tables://Table",
            account_url=table_endpoint,
            account_key="!" + ACCOUNT_KEY,
            account_name=AZURITE_ACCOUNT,
            **AZURE_FAST,
        ).get_instance("x"),
        lambda: open_store(
            "azure-tables://Table",
            account_url=f"{dead}?sv=2020-08-04&sig={ACCOUNT_KEY}",
            **AZURE_FAST,
        ).get_instance("x"),
        lambda: open_store(
            "azure-tables://Table",
            account_url=dead,
            sas_token=f"sv=2020&sig={ACCOUNT_KEY}",
            **AZURE_FAST,
        ).get_instance("x"),
    ]
    for attempt in attempts:
        with pytest.raises(DurastateError) as raised:
            attempt()
        _assert_clean(_describe(raised.value))


@pytest.mark.parametrize("scheme", ["dynamodb", "s3"])
def test_aws_secret_key(
    moto_server_stock: RunningEmulator,
    debug_logs: pytest.LogCaptureFixture,
    scheme: str,
    opener: Opener,
) -> None:
    url = f"{scheme}://{unique('ds-sec-')}"
    options: dict[str, Any] = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": AWS_SECRET,
        "region": "us-east-1",
        **AWS_FAST,
    }
    with opener(url, endpoint_url=moto_server_stock.endpoint, **options) as store:
        _assert_clean(*_exercise(store))
    assert any(record.name.startswith("botocore") for record in debug_logs.records)
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        with opener(url, endpoint_url=dead, **options) as store:
            _assert_clean(*_exercise(store))
    except DurastateError as exc:  # DynamoDB creates its table when opened
        _assert_clean(_describe(exc))
    with pytest.raises(DurastateError) as raised:
        opener(
            f"{scheme}://{unique('ds-sec-')}?aws_secret_access_key={AWS_SECRET}&x=1",
            endpoint_url=dead,
            **{k: v for k, v in options.items() if k != "aws_secret_access_key"},
        )
    _assert_clean(_describe(raised.value))


def test_redis_password_in_the_url(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password-protected server: right password, wrong password, dead port, the URL in
    the environment for the CLI; the password (in the URL or as an option) never shows."""
    with running(start_redis(password=REDIS_PASSWORD)) as server:
        host = server.endpoints["redis"].removeprefix("redis://").split("/")[0]
        good = f"redis://:{REDIS_PASSWORD}@{host}/0"
        with open_store(good, prefix=unique("sec-") + ":", **REDIS_FAST) as store:
            seen = _exercise(store)
            assert store.get_instance("s1") is None  # the exercise purged it: calls worked
            _assert_clean(*seen)
        wrong = f"redis://user:{REDIS_PASSWORD}x@{host}/0"
        with open_store(wrong, **REDIS_FAST) as store:
            _assert_clean(*_exercise(store))
        as_option = f"redis://{host}/0"
        with open_store(as_option, password=REDIS_PASSWORD[::-1], **REDIS_FAST) as store:
            _assert_clean(*_exercise(store))
        dead = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
        with open_store(dead, **REDIS_FAST) as store:
            _assert_clean(*_exercise(store))
        with pytest.raises(DurastateError) as raised:
            open_store(f"redis://:{REDIS_PASSWORD}@{host}/0?colour=blue")
        _assert_clean(_describe(raised.value))

        monkeypatch.setenv("DURASTATE_URL", good)
        runner = CliRunner()
        for command in (["create", "job", "--name", "wf"], ["get", "job"], ["get", "nope"]):
            result = runner.invoke(app, command)
            _assert_clean(result.output)
        monkeypatch.setenv("DURASTATE_URL", dead)
        result = runner.invoke(app, ["get", "job"])
        assert result.exit_code != 0
        _assert_clean(result.output)


def test_pickle_hmac_key(tmp_path: Any, debug_logs: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = load_settings(url=url, serializer="pickle-safe", pickle_keys={"k1": HMAC_KEY})
    _assert_clean(repr(settings), str(settings), settings.model_dump_json())
    with open_store(url, serializer="pickle-safe", pickle_keys={"k1": HMAC_KEY}) as store:
        _assert_clean(*_exercise(store))
        store.create_instance("forged", name="wf", custom_status=1)
        store.backend.write_custom_status(
            "forged", Payload(b"DSP1\x02k1" + b"\x00" * 40, "pickle-safe"), etag=None, now=NOW
        )
        with pytest.raises(DurastateError) as raised:
            store.get_custom_status("forged")
        _assert_clean(_describe(raised.value))
    with pytest.raises(DurastateError) as short:
        open_store(url, serializer="pickle-safe", pickle_keys={"k1": "short-" + HMAC_KEY[:5]})
    _assert_clean(_describe(short.value))


def test_cli_output_with_secrets_in_the_environment(
    azurite: RunningEmulator,
    moto_server_stock: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    runner = CliRunner()
    table = unique("T")
    environments: list[dict[str, str]] = [
        {  # Azure with a wrong key: every command fails with 403
            "DURASTATE_URL": f"azure-tables://{table}",
            "DURASTATE_AZURE_CONNECTION_STRING": _connection_string(
                azurite.endpoints["table"], azurite.endpoints["blob"]
            ),
            "DURASTATE_PICKLE_KEYS": f"k1:{HMAC_KEY}",
        },
        {  # Azure, the key in the options (JSON), the endpoint dead
            "DURASTATE_URL": f"azure-tables://{table}",
            "DURASTATE_OPTIONS": (
                '{"connection_string": "'
                + _connection_string(f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}")
                + '", "retry_total": 0, "connection_timeout": 0.5}'
            ),
        },
        {  # AWS secret from the environment, working endpoint, pickle-safe writes
            "DURASTATE_URL": f"dynamodb://{unique('ds-cli-')}?endpoint_url={moto_server_stock.endpoint}"
            "&region=us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "DURASTATE_SERIALIZER": "pickle-safe",
            "DURASTATE_PICKLE_KEYS": f"k1:{HMAC_KEY}",
        },
    ]
    commands = [
        ["create", "job", "--name", "wf", "--input", '{"a": 1}'],
        ["set-status", "job", '{"percent": 5}'],
        ["get", "job", "--payloads"],
        ["query", "--json"],
        ["set-status", "job", "{bad json"],
        ["get", "nope"],
        ["purge", "--status", "pending"],
        ["backends"],
        ["serializers"],
    ]
    for env in environments:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for command in commands:
            result = runner.invoke(app, command)
            texts = [result.output]
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                texts.append(_describe(result.exception))
            _assert_clean(*texts)
        for key in env:
            monkeypatch.delenv(key)
