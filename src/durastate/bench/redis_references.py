"""The Redis anchors and peer: what a user writes by hand with redis-py, and Celery.

- ``HSET`` of the orjson bytes (last write wins: the floor of one write);
- the same compare-and-swap as durastate's, hand-written: a small Lua script loaded once and
  called with ``evalsha`` (etag check, then ``HSET`` of value and new etag);
- Celery's redis result backend ``store_result`` (``Task.update_state``) on the same server.

Anchors come with redis-py's default client and with durastate's client settings (RESP2,
socket timeouts), on the same server and database as the durastate backend, under keys of
their own.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from durastate.bench.matrix import BackendSpec
from durastate.bench.peers import CeleryPeer
from durastate.bench.references import Reference
from durastate.bench.timing import Op

SCHEMES = ("redis", "rediss", "unix")
RAW_PREFIX = "durastate-bench-raw:"

#: The hand-written compare-and-swap (what durastate's script does, minus its extras:
#: unchanged-bytes check, timestamps, write ids, publish).
LUA_CAS = """
local e = redis.call('HGET', KEYS[1], 'e')
if e and e ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'e', ARGV[3])
return 1
"""


class RedisAnchor:
    """redis-py on the durastate backend's server: ``HSET`` or the hand-written Lua CAS."""

    def __init__(self, spec: BackendSpec, *, cas: bool, tuned: bool) -> None:
        import redis

        from durastate.backends.redis.options import RedisTarget

        target = RedisTarget(spec.url, dict(spec.options))
        kwargs = target.pool_kwargs() if tuned else _credentials(target.pool_kwargs())
        self.client = redis.Redis.from_url(target.address, **kwargs)
        self.cas = cas
        self.sha = str(self.client.script_load(LUA_CAS)) if cas else ""

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        client, dumps, raw_key = self.client, orjson.dumps, f"{RAW_PREFIX}{key}"
        if not self.cas:

            def hset(i: int) -> None:
                client.hset(raw_key, "v", dumps(values[i & 1]))

            return hset

        evalsha, sha = client.evalsha, self.sha
        client.delete(raw_key)
        state = [""]

        def lua_cas(i: int) -> None:
            new = uuid.uuid4().hex
            if evalsha(sha, 1, raw_key, state[0], dumps(values[i & 1]), new) != 1:
                raise RuntimeError("the hand-written compare-and-swap lost its etag")
            state[0] = new

        return lua_cas

    def close(self) -> None:
        self.client.close()


def _credentials(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a default client still needs: who and which database, nothing tuned."""
    return {name: kwargs[name] for name in ("username", "password", "db") if name in kwargs}


def redis_anchors(spec: BackendSpec) -> list[Reference]:
    def anchor(cas: bool, tuned: bool) -> Reference:
        what = "evalsha hand-written Lua CAS" if cas else "HSET"
        client = "durastate's client settings" if tuned else "default client"
        return Reference(
            "anchor",
            f"redis-py {what} ({client})",
            "orjson",
            "update_cas" if cas else "update_lww",
            lambda: RedisAnchor(spec, cas=cas, tuned=tuned),
        )

    return [anchor(False, False), anchor(True, False), anchor(True, True)]


def redis_peers(spec: BackendSpec) -> list[Reference]:
    from durastate.backends.redis.options import RedisTarget

    target = RedisTarget(spec.url, dict(spec.options))
    url = target.address
    password = target.options.password
    conf: dict[str, Any] = {}
    if password is not None:
        conf["redis_password"] = password.get_secret_value()
    if target.options.username:
        conf["redis_username"] = target.options.username
    if target.options.db is not None:
        conf["redis_db"] = target.options.db
    return [
        Reference(
            "peer",
            "celery store_result (redis)",
            "celery-json",
            "update_lww",
            lambda: CeleryPeer(url, conf),
        )
    ]
