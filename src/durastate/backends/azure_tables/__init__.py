"""azure-tables:// — Azure Table Storage in the Durable Task layout, as a sans-I/O core
(keys, layout, requests, responses, queries, offload, plans) over the lean HTTP transport,
with a sync store (`AzureTablesBackend`) and an async one (`AsyncAzureTablesBackend`)
running the same plans. See docs/azure.md."""

# The ``azure`` extra: the SDK resolves credentials and creates the table. Imported first,
# so a missing extra fails here, whichever submodules an earlier import left behind.
import azure.data.tables  # noqa: F401

from durastate.backends.azure_tables.backend import MAX_ID_LENGTH, AzureTablesBackend
from durastate.backends.azure_tables.keys import (
    HASH_MARK,
    KEY_LIMIT,
    escape_key,
    partition_key,
    prefix_range,
    unescape_key,
    utf16_length,
)
from durastate.backends.azure_tables.layout import INLINE_LIMIT, PROPERTY_LIMIT
from durastate.backends.azure_tables.offload import DEFAULT_CONTAINER
from durastate.backends.azure_tables.options import ENV_CONNECTION_STRING, AzureTablesOptions

__all__ = [
    "DEFAULT_CONTAINER",
    "ENV_CONNECTION_STRING",
    "HASH_MARK",
    "INLINE_LIMIT",
    "KEY_LIMIT",
    "MAX_ID_LENGTH",
    "PROPERTY_LIMIT",
    "AzureTablesBackend",
    "AzureTablesOptions",
    "escape_key",
    "partition_key",
    "prefix_range",
    "unescape_key",
    "utf16_length",
]
