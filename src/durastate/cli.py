"""The ``durastate`` command: inspect backends and the configured store, and run benchmarks.

Every command works against the store that configuration names (``--url`` > DURASTATE_URL >
TOML > the default SQLite file). Errors print one line naming what was wrong and exit 1;
they never print secrets (they come from durastate's own redacted messages).
"""

from __future__ import annotations

import importlib
import itertools
import shlex
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from durastate.config import parse_duration
from durastate.core.models import InstanceMetadata
from durastate.core.records import RuntimeStatus
from durastate.core.store import StateStore
from durastate.errors import DurastateError, InstanceNotFound
from durastate.opening import open_store
from durastate.registry import backends, serializers

app = typer.Typer(
    name="durastate",
    help="Workflow instance state and custom status, on pluggable backends.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="store URL (default: from configuration)")
]
SerializerOption = Annotated[
    str | None, typer.Option("--serializer", help="serializer id for writes")
]
StatusOption = Annotated[
    list[RuntimeStatus] | None, typer.Option("--status", help="runtime status (repeatable)")
]
PrefixOption = Annotated[str | None, typer.Option(help="instance-id prefix")]
CreatedFromOption = Annotated[datetime | None, typer.Option(help="created at or after")]
CreatedToOption = Annotated[datetime | None, typer.Option(help="created before")]
NameOption = Annotated[str | None, typer.Option("--name", help="workflow name (exact)")]
UpdatedFromOption = Annotated[datetime | None, typer.Option(help="last updated at or after")]
UpdatedToOption = Annotated[datetime | None, typer.Option(help="last updated before")]


def _store(url: str | None, serializer: str | None = None) -> StateStore:
    return open_store(url, serializer=serializer)


def _describe(exc: Exception) -> str:
    """One line for a failure; what to do next where there is an obvious next step."""
    if isinstance(exc, InstanceNotFound):
        return (
            f"no instance {exc.instance_id!r} in this store; create it first: "
            f"durastate create {shlex.quote(exc.instance_id)} --name NAME"
        )
    return f"{type(exc).__name__}: {exc}"


def _fail(exc: Exception) -> typer.Exit:
    """Print the error (as plain text: Rich must not read ``[azure]`` as markup); exit 1."""
    errors.print(Text.assemble(("error: ", "red"), _describe(exc)), soft_wrap=True)
    return typer.Exit(code=1)


def _say(text: str) -> None:
    """Print text that holds user data (ids, etags) without reading it as Rich markup."""
    console.print(Text(text), soft_wrap=True)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


@app.command("backends")
def list_backends() -> None:
    """Discovered backends: scheme, origin, whether importable, how the async store reaches
    them (native, its own connection threads, or the thread pool), and capabilities."""
    table = Table("scheme", "origin", "importable", "async", "capabilities")
    # why a backend cannot be imported, printed whole under the table: five columns leave a
    # narrow cell that would break an install hint ('durastate[azure]') mid-word
    reasons: list[Text] = []
    for scheme in backends.names():
        try:
            cls = backends.get(scheme)
            caps = cls.capabilities
            flags = [
                name
                for name in (
                    "offload",
                    "skips_unchanged",
                    "native_query",
                    "ttl",
                    "cross_process",
                    "push",
                )
                if getattr(caps, name)
            ]
            limit = caps.max_payload_bytes
            flags.append(f"max payload {limit} B" if limit else "no payload limit")
            origin = backends.origin(scheme)
            table.add_row(scheme, origin, "yes", cls.async_mode, ", ".join(flags))
        except DurastateError as exc:
            note = f"[{len(reasons) + 1}]"
            reasons.append(Text(f"{note} {scheme}: {exc}"))
            table.add_row(scheme, backends.origin(scheme), Text(f"no, see {note}"), "", "")
    console.print(table)
    for reason in reasons:
        console.print(reason, soft_wrap=True)


@app.command("serializers")
def list_serializers() -> None:
    """Discovered serializers and whether they can be imported."""
    table = Table("id", "origin", "importable")
    for serializer_id in serializers.names():
        try:
            serializers.get(serializer_id)
            table.add_row(serializer_id, serializers.origin(serializer_id), "yes")
        except DurastateError as exc:
            table.add_row(serializer_id, serializers.origin(serializer_id), Text(f"no: {exc}"))
    console.print(table)


@app.command("get")
def get(
    instance_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="instance ids")],
    url: UrlOption = None,
    payloads: Annotated[bool, typer.Option("--payloads", help="also show input/output")] = False,
) -> None:
    """Show instances and their custom status as JSON (several ids: one batched read,
    an object by id with null for each one that does not exist)."""
    exclude = set() if payloads else {"input", "output"}
    try:
        with _store(url) as store:
            if len(instance_ids) == 1:
                metadata = store.get_instance(instance_ids[0], fetch_payloads=payloads)
                if metadata is None:
                    raise InstanceNotFound(instance_ids[0])
                data: Any = metadata.model_dump(exclude=exclude)
            else:
                found = store.get_many(instance_ids, fetch_payloads=payloads)
                data = {
                    instance_id: None if item is None else item.model_dump(exclude=exclude)
                    for instance_id, item in found.items()
                }
    except DurastateError as exc:
        raise _fail(exc) from None
    console.print_json(_json(data))


@app.command("create")
def create(
    instance_id: str,
    name: Annotated[str, typer.Option(help="workflow name")],
    input_json: Annotated[str, typer.Option("--input", help="input as JSON")] = "null",
    ttl: Annotated[
        str | None,
        typer.Option(
            help="this instance's own retention period (seconds, or ISO 8601 like P7D), "
            "measured as the store's retention is"
        ),
    ] = None,
    url: UrlOption = None,
    serializer: SerializerOption = None,
) -> None:
    """Create an instance (insert-only)."""
    try:
        own_ttl = None if ttl is None else parse_duration(ttl, "--ttl")
        options: dict[str, Any] = {} if own_ttl is None else {"expiring": True}
        with open_store(url, serializer=serializer, **options) as store:
            etag = store.create_instance(
                instance_id, name=name, input=_parse(input_json), ttl=own_ttl
            )
    except DurastateError as exc:
        raise _fail(exc) from None
    _say(f"created {instance_id!r} etag={etag}")


@app.command("set-status")
def set_status(
    instance_id: str,
    value_json: Annotated[str, typer.Argument(metavar="JSON", help="the custom status as JSON")],
    etag: Annotated[str | None, typer.Option(help="only if the stored etag matches")] = None,
    url: UrlOption = None,
    serializer: SerializerOption = None,
) -> None:
    """Set the custom status of an instance (a client may set it, not only the workflow)."""
    try:
        with _store(url, serializer) as store:
            new_etag = store.set_custom_status(instance_id, _parse(value_json), etag=etag)
    except DurastateError as exc:
        raise _fail(exc) from None
    _say(f"etag={new_etag}")


@app.command("query")
def query(
    status: StatusOption = None,
    prefix: PrefixOption = None,
    created_from: CreatedFromOption = None,
    created_to: CreatedToOption = None,
    name: NameOption = None,
    updated_from: UpdatedFromOption = None,
    updated_to: UpdatedToOption = None,
    limit: Annotated[int, typer.Option(help="stop after this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
    url: UrlOption = None,
) -> None:
    """List instances matching the filters."""
    table = Table("instance id", "name", "status", "created", "custom status")
    try:
        with _store(url) as store:
            found = store.iter_instances(
                **_filters(
                    status, prefix, created_from, created_to, name, updated_from, updated_to
                ),
                page_size=min(limit, 100),
            )
            for item in itertools.islice(found, limit):
                if as_json:
                    print(_json_line(item))
                else:
                    table.add_row(
                        Text(item.instance_id),
                        Text(item.name),
                        item.runtime_status.value,
                        item.created_at.isoformat(),
                        Text(_status_text(item)[:60]),
                    )
    except DurastateError as exc:
        raise _fail(exc) from None
    if not as_json:
        console.print(table)


@app.command("count")
def count(
    status: StatusOption = None,
    prefix: PrefixOption = None,
    created_from: CreatedFromOption = None,
    created_to: CreatedToOption = None,
    name: NameOption = None,
    updated_from: UpdatedFromOption = None,
    updated_to: UpdatedToOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    url: UrlOption = None,
) -> None:
    """How many instances match the filters, per runtime status."""
    try:
        with _store(url) as store:
            counts = store.count(
                **_filters(status, prefix, created_from, created_to, name, updated_from, updated_to)
            )
    except DurastateError as exc:
        raise _fail(exc) from None
    if as_json:
        print(_json({status.value: number for status, number in counts.items()}))
        return
    table = Table("status", "instances")
    for runtime_status, number in counts.items():
        table.add_row(runtime_status.value, str(number))
    table.add_row("total", str(sum(counts.values())))
    console.print(table)


@app.command("purge")
def purge(
    instance_id: Annotated[str | None, typer.Argument(help="one instance to delete")] = None,
    status: StatusOption = None,
    created_from: CreatedFromOption = None,
    created_to: CreatedToOption = None,
    prefix: PrefixOption = None,
    expired: Annotated[
        bool, typer.Option("--expired", help="every instance past the configured retention")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Delete one instance by id, every instance matching the filters, or the expired ones."""
    no_filter = not (status or created_from or created_to or prefix or expired)
    if instance_id is None and no_filter:
        errors.print(
            Text.assemble(
                ("error: ", "red"),
                "purge needs an instance id or a filter: --status, --created-from, "
                "--created-to, --prefix or --expired (durastate purge --help)",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    try:
        with _store(url) as store:
            if instance_id is not None:
                deleted = int(store.purge(instance_id))
            elif expired:
                deleted = store.purge_expired()
            else:
                deleted = store.purge_by(
                    runtime_status=status or None,
                    created_from=_utc(created_from),
                    created_to=_utc(created_to),
                    prefix=prefix,
                )
    except DurastateError as exc:
        raise _fail(exc) from None
    console.print(f"purged {deleted} instance(s)")


def _parse(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _fail(ValueError(f"not valid JSON: {exc}")) from None


def _filters(
    status: list[RuntimeStatus] | None,
    prefix: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    name: str | None,
    updated_from: datetime | None,
    updated_to: datetime | None,
) -> dict[str, Any]:
    """The filters ``query`` and ``count`` share, as the store takes them (times in UTC)."""
    return {
        "runtime_status": status or None,
        "prefix": prefix,
        "created_from": _utc(created_from),
        "created_to": _utc(created_to),
        "name": name,
        "updated_from": _utc(updated_from),
        "updated_to": _utc(updated_to),
    }


def _utc(moment: datetime | None) -> datetime | None:
    """Naive datetimes on the command line are taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _status_text(item: InstanceMetadata) -> str:
    """The custom status as JSON, or the error that reading it raised (one bad record)."""
    try:
        return orjson.dumps(item.custom_status, default=str).decode()
    except DurastateError as exc:
        return f"<{type(exc).__name__}>"


def _json_line(item: InstanceMetadata) -> str:
    """One JSON object per instance; a status that cannot be read is ``null`` with an
    ``error`` next to it, so every line stays valid JSON."""
    data = item.model_dump(mode="json", exclude={"input", "output", "custom_status"})
    try:
        data["custom_status"] = orjson.Fragment(orjson.dumps(item.custom_status, default=str))
    except DurastateError as exc:
        data["custom_status"] = None
        data["error"] = f"{type(exc).__name__}: {exc}"
    return orjson.dumps(data).decode()


def _register_commands() -> None:
    """Add the commands that live beside their feature: `bench`, `emulators` and `serve`."""
    for module_name in (
        "durastate.bench.command",
        "durastate.testing.command",
        "durastate.web.command",
    ):
        try:
            command = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name not in {module_name, module_name.rpartition(".")[0]}:
                raise
            continue
        command.register(app)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    app()
