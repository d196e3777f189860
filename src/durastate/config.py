"""Settings: explicit arguments > environment (DURASTATE_*) > TOML > defaults.

TOML comes from ``durastate.toml`` (top level) or ``[tool.durastate]`` in ``pyproject.toml``
in the current directory; an unknown key there is refused (a typo would otherwise be ignored
silently). Secrets never appear in a repr, a dump, an error or a log line: pickle keys are
``SecretStr``, and the URL's userinfo and secret-named options are masked.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from durastate.errors import ConfigurationError
from durastate.redaction import mask_options, redact_url


def seconds_or_iso(value: Any) -> Any:
    """A duration as users type it: ``"3600"`` (seconds) becomes a number; anything else
    (ISO 8601 like ``P7D``, a timedelta) is left for pydantic to read."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return value


def parse_duration(text: str, what: str) -> timedelta:
    """A duration typed on the command line (seconds, or ISO 8601); a clear error if not."""
    try:
        return TypeAdapter(timedelta).validate_python(seconds_or_iso(text))
    except ValidationError:
        raise ConfigurationError(
            f"{what} must be seconds or an ISO 8601 duration like PT1H or P7D, "
            f"not {text[:40]!r}"
        ) from None

DEFAULT_URL = "sqlite:///durastate.db"


class _TomlSource(PydanticBaseSettingsSource):
    """``durastate.toml`` first, else ``[tool.durastate]`` of ``pyproject.toml``."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path | None = None) -> None:
        super().__init__(settings_cls)
        self._data = self._load(directory or Path.cwd())

    @classmethod
    def _load(cls, directory: Path) -> dict[str, Any]:
        own = directory / "durastate.toml"
        pyproject = directory / "pyproject.toml"
        try:
            if own.is_file():
                return _known_keys(tomllib.loads(own.read_text()), str(own))
            if pyproject.is_file():
                table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("durastate", {})
                return _known_keys(dict(table), f"[tool.durastate] of {pyproject}")
        except tomllib.TOMLDecodeError as exc:
            source = own if own.is_file() else pyproject
            raise ConfigurationError(f"invalid TOML in {source}: {exc}") from None
        return {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {
            key: value for key, value in self._data.items() if key in self.settings_cls.model_fields
        }


def _known_keys(table: dict[str, Any], source: str) -> dict[str, Any]:
    """The table, if every key is a setting; a typo is refused, never silently ignored."""
    known = set(Settings.model_fields)
    unknown = sorted(key for key in table if key not in known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigurationError(
            f"unknown durastate setting(s) in {source}: {', '.join(hints)}; known settings: "
            f"{', '.join(sorted(known))} (backend options go in the [options] table)"
        )
    return table


class _FirstSourceWins(PydanticBaseSettingsSource):
    """Sources in priority order; a field set by a higher source replaces it whole.

    pydantic-settings deep-merges dict fields across sources, which would keep a pickle key
    from TOML configured after the environment (or an argument) set the key list.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._sources = sources

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for source in reversed(self._sources):
            merged.update(source())
        return merged


class Settings(BaseSettings):
    """Everything `open_store` reads; every field has an environment variable DURASTATE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="DURASTATE_", extra="ignore")

    url: str = DEFAULT_URL
    serializer: str = "json"
    accept: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="serializer ids allowed on read; default: json, msgpack, the configured "
        "one, and pickle-safe only when keys are configured",
    )
    max_custom_status_bytes: int = Field(default=16 * 1024, gt=0)
    max_payload_bytes: int | None = Field(default=None, gt=0)
    compress_above: int | None = Field(default=None, ge=0)
    pickle_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    pickle_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    retention: timedelta | None = Field(
        default=None,
        description="how long an instance stays after retention_from (seconds, or ISO 8601 "
        "like P7D); none: instances stay until purged",
    )
    retention_from: Literal["updated", "completed"] = "completed"
    expiring: bool | None = Field(
        default=None,
        description="honour each instance's own ttl without a store-wide retention "
        "(on whenever retention is set)",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        """``DURASTATE_RETENTION=3600``: a plain number of seconds, as well as ISO 8601."""
        return seconds_or_iso(value)

    @field_validator("pickle_keys", mode="before")
    @classmethod
    def _keys_from_pairs(cls, value: Any) -> Any:
        """Accept ``"id1:secret1,id2:secret2"`` as well as a mapping or JSON object."""
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("pickle keys are not a valid JSON object") from None
        if isinstance(value, str):
            pairs: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                key_id, sep, secret = item.partition(":")
                if not sep:
                    raise ValueError("pickle keys must be 'id:secret' pairs separated by commas")
                pairs[key_id] = secret
            return pairs
        return value

    @field_validator("accept", "pickle_allow", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("not a valid JSON list") from None
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_serializer("url")
    def _url_without_secrets(self, url: str) -> str:
        return redact_url(url)

    @field_serializer("options")
    def _options_without_secrets(self, options: dict[str, Any]) -> dict[str, Any]:
        return mask_options(options)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The repr shows the URL and options as `model_dump` does: secrets masked."""
        for name, value in super().__repr_args__():
            if name == "url":
                yield name, redact_url(value)
            elif name == "options":
                yield name, mask_options(value)
            else:
                yield name, value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            _FirstSourceWins(settings_cls, init_settings, env_settings, _TomlSource(settings_cls)),
        )

    def accepted_serializers(self) -> list[str]:
        if self.accept is not None:
            return list(dict.fromkeys([*self.accept, self.serializer]))
        ids = ["json", "msgpack", self.serializer]
        if self.pickle_keys:
            ids.append("pickle-safe")
        return list(dict.fromkeys(ids))


def load_settings(**overrides: Any) -> Settings:
    """Settings with explicit overrides on top; invalid values become `ConfigurationError`."""
    explicit = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise ConfigurationError(f"invalid durastate settings: {problems}") from None
    except SettingsError as exc:  # a DURASTATE_* value that is not valid JSON
        raise ConfigurationError(f"invalid durastate settings: {exc}") from None
