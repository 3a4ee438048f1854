"""``lua/apply.lua`` takes its arguments either as one MessagePack array (what ``EventApplier``
sends) or one by one (what a caller building its own calls sends): both write the same."""

from __future__ import annotations

import redis

from engine.ingest.apply import _SCRIPT, _pack


def _call(client: redis.Redis, packed: bool) -> list[int]:
    keys_ = ["t:v:{p}", "t:d:{p}:2", "t:d:{p}:1", "t:trend", "t:watch"]
    args: list[object] = [4_000_000_000, 1,  # dedup expire-at, one plan
                          1, b"", b"profile", 3600,  # one compare-and-set: was absent, now b"profile"
                          b"12345678", 2,  # one fingerprint, two counters
                          "item", repr(1.5), 4_000_000_000, "member", repr(2.0), 0]
    script = client.register_script(_SCRIPT)
    return script(keys=keys_, args=[_pack(args)] if packed else args)


def _state(client: redis.Redis) -> tuple:
    return (client.get("t:v:{p}"), 0 < client.ttl("t:v:{p}") <= 3600, client.hgetall("t:d:{p}:2"),
            client.ttl("t:d:{p}:2") > 0, client.zscore("t:trend", "item"), client.ttl("t:trend") > 0,
            client.zscore("t:watch", "member"), client.ttl("t:watch"))


def test_packed_and_positional_arguments_write_the_same(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        states = []
        for packed in (True, False):
            client.delete("t:v:{p}", "t:d:{p}:2", "t:d:{p}:1", "t:trend", "t:watch")
            assert _call(client, packed) == [1]
            states.append(_state(client))
            assert _call(client, packed) == [0]  # the same event again: a conflict, nothing written
        assert states[0] == (b"profile", True, {b"12345678": b""}, True, 1.5, True, 2.0, -1)  # -1: no TTL
        assert states[1] == states[0]
    finally:
        client.close()
