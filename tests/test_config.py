"""Settings: explicit arguments > DURASTATE_* environment > TOML > defaults; secrets stay secret."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from durastate import open_store
from durastate.backends.memory import MemoryBackend
from durastate.backends.sqlite import SQLiteBackend
from durastate.config import DEFAULT_URL, Settings, load_settings
from durastate.core.store import StateStore
from durastate.errors import ConfigurationError, CorruptRecord, PayloadTooLarge

SECRET = "correct-horse-battery-staple-0001"
OTHER_SECRET = "tr0ub4dor-and-three-0002-abcdef"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DURASTATE_* variables from the outside, and an empty working directory."""
    for name in list(os.environ):
        if name.upper().startswith("DURASTATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write_pyproject(directory: Path, body: str) -> None:
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\n\n' + body
    )


def _sqlite(store: StateStore) -> SQLiteBackend:
    assert isinstance(store.backend, SQLiteBackend)
    return store.backend


# -- defaults and precedence -------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.url == DEFAULT_URL
    assert DEFAULT_URL.startswith("sqlite:///")
    assert settings.serializer == "json"
    assert settings.max_custom_status_bytes == 16 * 1024
    assert settings.pickle_keys == {}
    assert settings.options == {}


def test_open_store_without_url_is_an_embedded_sqlite_file(tmp_path: Path) -> None:
    store = open_store()
    backend = _sqlite(store)
    store.create_instance("i", name="wf", custom_status={"percent": 1})
    assert Path(backend.path).resolve() == (tmp_path / "durastate.db").resolve()
    assert (tmp_path / "durastate.db").is_file()
    assert store.codec.writer.id == "json"
    assert store.max_custom_status_bytes == 16 * 1024
    backend.close()


def test_pyproject_tool_table(tmp_path: Path) -> None:
    _write_pyproject(
        tmp_path,
        '[tool.durastate]\nurl = "memory://from-pyproject"\nserializer = "msgpack"\n'
        "max_custom_status_bytes = 2048\n",
    )
    settings = load_settings()
    assert (settings.url, settings.serializer, settings.max_custom_status_bytes) == (
        "memory://from-pyproject",
        "msgpack",
        2048,
    )


def test_durastate_toml_wins_over_pyproject(tmp_path: Path) -> None:
    _write_pyproject(tmp_path, '[tool.durastate]\nurl = "memory://from-pyproject"\n')
    (tmp_path / "durastate.toml").write_text('url = "memory://from-durastate-toml"\n')
    assert load_settings().url == "memory://from-durastate-toml"


def test_pyproject_without_tool_table_means_defaults(tmp_path: Path) -> None:
    _write_pyproject(tmp_path, '[tool.other]\nurl = "memory://not-ours"\n')
    assert load_settings().url == DEFAULT_URL


def test_environment_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "durastate.toml").write_text(
        'url = "memory://toml"\nserializer = "msgpack"\nmax_custom_status_bytes = 2048\n'
        'pickle_keys = { tomlkey = "toml-secret-0123456789" }\n'
    )
    monkeypatch.setenv("DURASTATE_URL", "memory://env")
    monkeypatch.setenv("DURASTATE_SERIALIZER", "json")
    monkeypatch.setenv("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "4096")
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"envkey": "{SECRET}"}}')
    settings = load_settings()
    assert settings.url == "memory://env"
    assert settings.serializer == "json"
    assert settings.max_custom_status_bytes == 4096
    assert settings.pickle_keys["envkey"].get_secret_value() == SECRET


def test_environment_replaces_the_toml_key_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "durastate.toml").write_text(
        'pickle_keys = { revoked = "toml-secret-0123456789" }\n'
    )
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"envkey": "{SECRET}"}}')
    assert list(load_settings().pickle_keys) == ["envkey"]
    assert list(load_settings(pickle_keys={"explicit": SECRET}).pickle_keys) == ["explicit"]


def test_toml_fills_what_the_environment_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "durastate.toml").write_text('url = "memory://toml"\nserializer = "msgpack"\n')
    monkeypatch.setenv("DURASTATE_URL", "memory://env")
    settings = load_settings()
    assert (settings.url, settings.serializer) == ("memory://env", "msgpack")


def test_explicit_arguments_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "durastate.toml").write_text('url = "memory://toml"\n')
    monkeypatch.setenv("DURASTATE_URL", "memory://env")
    monkeypatch.setenv("DURASTATE_SERIALIZER", "msgpack")
    monkeypatch.setenv("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "4096")
    settings = load_settings(
        url="memory://explicit", serializer="json", max_custom_status_bytes=100
    )
    assert (settings.url, settings.serializer, settings.max_custom_status_bytes) == (
        "memory://explicit",
        "json",
        100,
    )
    # None means "not given": the next source decides
    assert load_settings(url=None).url == "memory://env"


def test_open_store_follows_the_same_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "durastate.toml").write_text('url = "memory://toml"\n')
    store = open_store()
    assert isinstance(store.backend, MemoryBackend)
    assert store.backend.namespace == "toml"

    monkeypatch.setenv("DURASTATE_URL", "memory://env")
    monkeypatch.setenv("DURASTATE_SERIALIZER", "msgpack")
    monkeypatch.setenv("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "64")
    store = open_store()
    assert isinstance(store.backend, MemoryBackend)
    assert store.backend.namespace == "env"
    assert store.codec.writer.id == "msgpack"
    assert store.max_custom_status_bytes == 64
    store.create_instance("i", name="wf")
    with pytest.raises(PayloadTooLarge):
        store.set_custom_status("i", "x" * 100)

    store = open_store("memory://explicit", serializer="json", max_custom_status_bytes=1000)
    assert isinstance(store.backend, MemoryBackend)
    assert store.backend.namespace == "explicit"
    assert store.codec.writer.id == "json"
    assert store.max_custom_status_bytes == 1000


def test_toml_options_reach_the_backend(tmp_path: Path) -> None:
    _write_pyproject(
        tmp_path,
        '[tool.durastate]\nurl = "sqlite:///state/app.db"\n\n'
        '[tool.durastate.options]\ntimeout = 7.5\nsynchronous = "full"\n',
    )
    store = open_store()
    backend = _sqlite(store)
    assert (backend.timeout, backend.synchronous) == (7.5, "FULL")
    assert (tmp_path / "state" / "app.db").is_file()
    backend.close()

    overridden = _sqlite(open_store(timeout=1.25))  # keyword options beat TOML options
    assert (overridden.timeout, overridden.synchronous) == (1.25, "FULL")
    overridden.close()


def test_environment_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_URL", "sqlite:///env.db")
    monkeypatch.setenv("DURASTATE_OPTIONS", '{"timeout": 3}')
    backend = _sqlite(open_store())
    assert backend.timeout == 3
    backend.close()


def test_unknown_backend_option_is_named(tmp_path: Path) -> None:
    (tmp_path / "durastate.toml").write_text(
        'url = "sqlite:///x.db"\n[options]\ntimeuot = 2\n'
    )
    with pytest.raises(ConfigurationError, match="timeuot"):
        open_store()


# -- invalid values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "lots", "max_custom_status_bytes"),
        ("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "0", "max_custom_status_bytes"),
        ("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "-5", "max_custom_status_bytes"),
        ("DURASTATE_MAX_PAYLOAD_BYTES", "0", "max_payload_bytes"),
        ("DURASTATE_COMPRESS_ABOVE", "-1", "compress_above"),
    ],
)
def test_invalid_environment_value_names_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=field):
        load_settings()
    with pytest.raises(ConfigurationError, match=field):
        open_store("memory://")


def test_invalid_explicit_and_toml_values_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_custom_status_bytes"):
        load_settings(max_custom_status_bytes=0)
    with pytest.raises(ConfigurationError, match="max_custom_status_bytes"):
        open_store("memory://", max_custom_status_bytes=-1)
    (tmp_path / "durastate.toml").write_text('max_custom_status_bytes = "huge"\n')
    with pytest.raises(ConfigurationError, match="max_custom_status_bytes"):
        load_settings()


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "durastate.toml").write_text('url = "unterminated\n')
    with pytest.raises(ConfigurationError, match=r"durastate\.toml"):
        load_settings()


def test_invalid_url_and_serializer_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="scheme://"):
        open_store("just-a-path.db")
    with pytest.raises(ConfigurationError, match="serializer 'yaml'"):
        open_store("memory://", serializer="yaml")


# -- secrets -----------------------------------------------------------------------------


def test_pickle_keys_from_explicit_pairs_and_json() -> None:
    settings = load_settings(pickle_keys=f"new:{SECRET}, old:{OTHER_SECRET}")
    assert list(settings.pickle_keys) == ["new", "old"]
    assert settings.pickle_keys["old"].get_secret_value() == OTHER_SECRET
    assert settings.accepted_serializers()[-1] == "pickle-safe"
    from_json = load_settings(pickle_keys={"k": SECRET})
    assert from_json.pickle_keys["k"].get_secret_value() == SECRET


def test_pickle_keys_pairs_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f"new:{SECRET},old:{OTHER_SECRET}")
    settings = load_settings()
    assert list(settings.pickle_keys) == ["new", "old"]


def test_secrets_never_appear_in_repr_str_or_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"k1": "{SECRET}"}}')
    settings = load_settings()
    assert settings.pickle_keys["k1"].get_secret_value() == SECRET
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(Settings())):
        assert SECRET not in text
    assert "k1" in repr(settings)  # the key id is not a secret


def test_malformed_pickle_keys_error_hides_the_secret() -> None:
    for malformed in (f"no-colon-{SECRET}", f"ok:{SECRET},broken{OTHER_SECRET}"):
        with pytest.raises(ConfigurationError, match="pickle_keys") as raised:
            load_settings(pickle_keys=malformed)
        assert SECRET not in str(raised.value)
        assert OTHER_SECRET not in str(raised.value)
        assert SECRET not in repr(raised.value.args)


def test_secrets_stay_out_of_errors_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"k1": "{SECRET}"}}')
    monkeypatch.setenv("DURASTATE_SERIALIZER", "pickle-safe")
    monkeypatch.setenv("DURASTATE_URL", "memory://secrets")
    writer = open_store()
    writer.create_instance("i", name="wf", custom_status={"stage": "signed"})
    assert writer.get_custom_status("i") == {"stage": "signed"}

    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"k2": "{OTHER_SECRET}"}}')
    reader = open_store()
    messages: list[str] = [repr(writer), repr(reader), repr(reader.codec.writer)]
    with pytest.raises(Exception) as raised:  # noqa: PT011 - any error; checked below
        _ = reader.get_custom_status("i")
    messages.append(str(raised.value))
    messages.append(repr(raised.value))

    with pytest.raises(ConfigurationError) as short_key:
        open_store("memory://", pickle_keys={"k3": "too-short"})
    messages.append(str(short_key.value))

    monkeypatch.delenv("DURASTATE_PICKLE_KEYS")
    keyless = open_store()
    with pytest.raises(ConfigurationError) as no_key:
        keyless.create_instance("j", name="wf", custom_status=1)
    messages.append(str(no_key.value))

    messages.append(caplog.text)
    for text in messages:
        assert SECRET not in text
        assert OTHER_SECRET not in text
        assert "too-short" not in text


def test_signed_records_need_a_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"k1": "{SECRET}"}}')
    store = open_store("memory://keys", serializer="pickle-safe")
    store.create_instance("i", name="wf", custom_status={1, 2})
    monkeypatch.setenv("DURASTATE_PICKLE_KEYS", f'{{"k2": "{OTHER_SECRET}"}}')
    rotated_away = open_store("memory://keys", serializer="pickle-safe")
    with pytest.raises(CorruptRecord, match="key id 'k1'") as raised:
        _ = rotated_away.get_custom_status("i")
    assert raised.value.instance_id == "i"
    rotated = open_store("memory://keys", serializer="pickle-safe", pickle_keys={
        "k2": OTHER_SECRET, "k1": SECRET,
    })
    assert rotated.get_custom_status("i") == {1, 2}


# -- secrets typed where they do not belong --------------------------------------------------

AKIA = "AKIAIOSFODNN7EXAMPLE"
SECRET_URLS = {
    "azure userinfo": f"azure-tables://acct:{SECRET}@Table",
    "azure upper-case scheme": f"AZURE-TABLES://acct:{SECRET}@Table",
    "connection string as the host": (
        "azure-tables://DefaultEndpointsProtocol=https;AccountName=acct;"
        f"AccountKey={SECRET};EndpointSuffix=core.windows.net"
    ),
    "connection string as the URL": (
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET};"
        "BlobEndpoint=https://acct.blob.core.windows.net"
    ),
    "sas token as the URL": f"https://acct.table.core.windows.net/T?sv=2024&sig={SECRET}",
    "dynamodb userinfo": f"dynamodb://{AKIA}:{SECRET}@table",
    "s3 userinfo": f"s3://{AKIA}:{SECRET}@bucket/prefix",
    "unknown scheme with userinfo": f"nosuch://user:{SECRET}@host",
    "sqlite with a key in the query": f"sqlite:///{SECRET[:5]}.db?key={SECRET}",
}


@pytest.mark.parametrize("url", list(SECRET_URLS.values()), ids=list(SECRET_URLS))
def test_secrets_typed_into_a_url_never_come_back_in_errors(url: str) -> None:
    import traceback

    with pytest.raises(ConfigurationError) as raised:
        open_store(url, region="us-east-1", endpoint_url="http://127.0.0.1:9", create_table=False)
    shown = "".join(traceback.format_exception(raised.value)) + repr(raised.value)
    assert SECRET not in shown
    assert AKIA not in shown


def test_secret_options_never_come_back_in_errors() -> None:
    for url in ("memory://", "sqlite:///x.db"):
        with pytest.raises(ConfigurationError) as raised:
            open_store(url, connection_string=SECRET, aws_secret_access_key=OTHER_SECRET)
        assert SECRET not in str(raised.value)
        assert OTHER_SECRET not in str(raised.value)


def test_settings_repr_and_dumps_mask_secret_options_and_url_userinfo() -> None:
    settings = load_settings(
        url=f"azure-tables://acct:{SECRET}@Table",
        options={
            "connection_string": f"AccountName=a;AccountKey={SECRET}",
            "aws_secret_access_key": SECRET,
            "aws_session_token": SECRET,
            "account_key": SECRET,
            "credential": SECRET,
            "sas_token": SECRET,
            "password": SECRET,
            "my_api_token": SECRET,
            "signing_secret": SECRET,
            "endpoint_url": f"https://user:{SECRET}@host?sig={SECRET}",
            "nested": {"password": SECRET},
            "timeout": 2,
        },
    )
    for shown in (
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        str(settings.model_dump(mode="json")),
        settings.model_dump_json(),
    ):
        assert SECRET not in shown
    assert settings.model_dump()["options"]["timeout"] == 2
    assert settings.options["aws_secret_access_key"] == SECRET  # the real value is kept


# -- unknown keys in TOML ------------------------------------------------------------------------


def test_a_typo_in_durastate_toml_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "durastate.toml").write_text('serialiser = "msgpack"\nurl = "memory://"\n')
    with pytest.raises(ConfigurationError, match="'serialiser' \\(did you mean 'serializer'\\?\\)"):
        load_settings()
    with pytest.raises(ConfigurationError, match=r"durastate\.toml"):
        open_store()


def test_a_typo_in_the_pyproject_tool_table_is_refused(tmp_path: Path) -> None:
    _write_pyproject(tmp_path, '[tool.durastate]\nurl = "memory://"\nmax_custom_status = 5\n')
    with pytest.raises(ConfigurationError, match="max_custom_status") as raised:
        load_settings()
    assert "tool.durastate" in str(raised.value)
    assert "max_custom_status_bytes" in str(raised.value)
