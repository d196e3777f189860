"""durastate-dirstore: a durastate backend keeping one record file per instance in a directory.

Installed, it registers the URL scheme ``dirstore`` through the entry point group
``durastate.backends``; nothing needs importing::

    from durastate import open_store

    store = open_store("dirstore:///var/lib/myapp/state")
"""

from durastate_dirstore.backend import DirStoreBackend, id_from_key, instance_key

__all__ = ["DirStoreBackend", "id_from_key", "instance_key"]
__version__ = "0.1.0"
