"""Serializers: values <-> bytes, each under a stable id (json, msgpack, pickle-safe)."""

from durastate.serializers.base import Serializer

__all__ = ["Serializer"]
