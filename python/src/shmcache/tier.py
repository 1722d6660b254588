"""shmcache as the per-host L1 in front of Redis (the C library's
include/shmcache_tier.h), for Python.

    from shmcache.tier import Tier

    tier = Tier("myapp", "unix:///run/redis/redis.sock", prefix="myapp:",
                max_stale=60)
    tier.set("user:42", {"name": "Ada"}, ttl=300)   # Redis first, then this host
    tier.get("user:42")                              # this host's copy, or Redis

Every host runs the same workers; each host keeps one shmcache cache (the
name) that all its workers share, in front of one Redis (the source of
truth).  Reads are served from the host's copy while it is current; on a
miss one worker of the host reads Redis and the others wait for it.  Writes
go to Redis, then drop the host's copy.  One listener per host (a library
thread in one of the workers, elected with a shmcache lock with a lease)
receives Redis's invalidations (CLIENT TRACKING BCAST, for the keys that
start with `prefix`) and drops the copies on its host.  See python/README.md
for the consistency model.

Values: int (not bool) is stored as its decimal digits, so that incr()
works and other Redis clients read numbers; everything else is pickled.
Keys are str (UTF-8) or bytes; the prefix is prepended to them.  Times are
seconds; ttl None (or 0) means no expiry.

Errors: RedisError (Redis unreachable, timed out, or an error reply) is a
TierError; a bad key is ValueError.
"""

import pickle

from ._tier import RedisError, Tier as _Tier, TierError  # noqa: F401

__all__ = ["Tier", "TierError", "RedisError", "dumps", "loads"]


def dumps(value, protocol=pickle.HIGHEST_PROTOCOL):
    """The Redis representation of a value: int as digits, the rest pickled."""
    if type(value) is int:
        return str(value).encode("ascii")
    return pickle.dumps(value, protocol)


def loads(data):
    """Inverse of dumps().  Digits (with an optional '-') are an int."""
    if data[:1] in (b"-", b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"):
        try:
            return int(data)
        except ValueError:
            pass
    return pickle.loads(data)


def _key(key):
    if isinstance(key, str):
        return key.encode("utf-8")
    return bytes(key)


_MISSING = object()


class Tier:
    """The host's shmcache cache `name` as the L1 in front of Redis.

    redis      "unix:///path", "/path" or "redis://host:port/db"
    prefix     the tracked prefix (str or bytes), prepended to every key
    max_stale  longest life of a host copy, in seconds
    lease      listener lease (s): bounds staleness while a listener is stopped
    timeout    Redis connect/command timeout (s)
    listener   False: this process never runs the listener (a sidecar does)
    password   Redis AUTH password
    size       size of the host's cache when this call creates it (bytes)
    """

    def __init__(self, name, redis, prefix="", max_stale=60.0, lease=2.0, timeout=1.0,
                 listener=True, password=None, size=0):
        self._t = _Tier(name, redis, _key(prefix), float(max_stale), float(lease),
                        float(timeout), bool(listener), password, int(size))
        self.name = name
        self.prefix = _key(prefix)

    def get(self, key, default=None):
        data = self._t.get(_key(key))
        if data is None:
            return default
        return loads(data)

    def set(self, key, value, ttl=None):
        self._t.set(_key(key), dumps(value), ttl)

    def add(self, key, value, ttl=None):
        """Stores only if the key is absent in Redis; True if stored."""
        return self._t.add(_key(key), dumps(value), ttl)

    def delete(self, key):
        """True if the key existed."""
        return self._t.delete(_key(key))

    def incr(self, key, delta=1, create=False):
        """Atomic in Redis.  Returns the new value, or None when the key is
        missing and create is False.  ValueError: not an integer."""
        return self._t.incr(_key(key), int(delta), bool(create))

    def decr(self, key, delta=1, create=False):
        return self._t.incr(_key(key), -int(delta), bool(create))

    def touch(self, key, ttl=None):
        """New TTL in Redis (None: no expiry).  True if the key existed."""
        return self._t.touch(_key(key), ttl)

    def get_or_fill(self, key, fn, ttl=None, fill_timeout=10.0, wait=10.0):
        """The value of key; when Redis has none, exactly one caller in the
        whole cluster (every host) calls fn() and writes its result through,
        while the others wait for it (at most `wait` s: TimeoutError).  If
        the computing caller dies, another takes over after fill_timeout s.
        fn's exception is raised in its own caller only."""
        return loads(self._t.get_or_fill(_key(key), lambda: dumps(fn()), ttl,
                                         float(fill_timeout), float(wait)))

    def clear(self):
        """Deletes every key of the prefix in Redis, and the host's copies."""
        self._t.clear()

    def flush_local(self):
        """Drops this host's copies only."""
        self._t.flush_local()

    def wait_listener(self, timeout=5.0):
        """True once this host has a live listener (False after timeout s)."""
        return self._t.wait_listener(float(timeout))

    def stats(self):
        return self._t.stats()

    def close(self):
        self._t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
