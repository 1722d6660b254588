"""shmcache.django.TieredCache: a Django cache backend with Redis as the
source of truth and each host's shmcache cache as the L1 shared by all the
workers of the host, kept coherent by Redis's invalidations.

    CACHES = {
        "default": {
            "BACKEND": "shmcache.django.TieredCache",
            "LOCATION": "myapp-l1",               # the host's shmcache cache
            "TIMEOUT": 300,
            "OPTIONS": {
                "REDIS": "unix:///run/redis/redis.sock",  # or redis://host:6379/0
                "PREFIX": "myapp:",               # tracked prefix in Redis
                "MAX_STALE": 60,                  # longest life of a host copy (s)
            },
        }
    }

Keys in Redis are PREFIX + Django's key (KEY_PREFIX:VERSION:key).  Values:
int as decimal digits (so incr()/decr() are Redis's atomic INCRBY, and decr
may go below 0, as with Django's Redis backend), anything else pickled.
Reads are served from the host's copy while it is current (read-through,
one Redis read per host on a miss); writes go to Redis first (write-through)
and drop the host's copy; another host sees a write once its listener has
applied Redis's invalidation (see python/README.md, "Tiered cache").  When
Redis cannot be reached, reads and writes raise shmcache.tier.RedisError.

OPTIONS (case-insensitive): REDIS (required), PREFIX (default ""), MAX_STALE,
LEASE, REDIS_TIMEOUT, FILL_WAIT, FILL_TIMEOUT (seconds), PASSWORD, SIZE (bytes
of the host's cache when it is created), LISTENER (False: a sidecar
shmc-tier-listen listens);
MAX_ENTRIES and CULL_FREQUENCY are accepted and ignored.
"""

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    InvalidCacheKey,
    memcache_key_warnings,
)
from django.core.exceptions import ImproperlyConfigured

import shmcache

from ._djutil import Registry, lower_options, split_options
from .tier import Tier, dumps, loads

_OPTIONS = {"redis": "redis", "prefix": "prefix", "max_stale": "max_stale",
            "lease": "lease", "redis_timeout": "timeout", "password": "password",
            "size": "size", "listener": "listener"}
_FILL_OPTIONS = {"fill_wait": "fill_wait", "fill_timeout": "fill_timeout"}
_IGNORED = ("max_entries", "cull_frequency")
_MISSING = object()
_EXPIRED = object()

# One Tier per (cache, options) in each process, shared by Django's
# per-thread backend instances.  A Tier made before fork() is used by the
# children as it is (each child opens its own Redis connection).
_tiers = Registry()


class TieredCache(BaseCache):
    """Redis behind each host's shmcache cache (see the module docstring)."""

    def __init__(self, location, params):
        super().__init__(params)
        options = lower_options(params)
        if not location or not isinstance(location, str):
            raise ImproperlyConfigured(
                "shmcache.django.TieredCache needs LOCATION: the host cache's name")
        kwargs, fill = split_options(options, [_OPTIONS, _FILL_OPTIONS], _IGNORED,
                                     "TieredCache")
        self._fill_wait = float(fill.get("fill_wait", 10.0))
        self._fill_timeout = float(fill.get("fill_timeout", 10.0))
        if "redis" not in kwargs:
            raise ImproperlyConfigured(
                "shmcache.django.TieredCache needs OPTIONS['REDIS'], e.g. "
                "'unix:///run/redis/redis.sock' or 'redis://127.0.0.1:6379/0'")
        self._name = location
        self._kwargs = kwargs
        self._tier_obj = None

    @property
    def _tier(self):
        tier = self._tier_obj
        if tier is None:
            def make():
                kw = dict(self._kwargs)
                return Tier(self._name, kw.pop("redis"), **kw)

            tier = self._tier_obj = _tiers.get(self._name, self._kwargs, make)
        return tier

    def validate_key(self, key):
        for warning in memcache_key_warnings(key):
            raise InvalidCacheKey(warning)

    def _key(self, key, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return key

    def _ttl(self, timeout):
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        if timeout <= 0:
            return _EXPIRED
        return timeout

    def get(self, key, default=None, version=None):
        data = self._tier._t.get(self._tier_key(key, version))
        return default if data is None else loads(data)

    def _tier_key(self, key, version):
        k = self._key(key, version).encode("utf-8")
        if len(k) + len(self._tier.prefix) > shmcache.DEFAULT_MAX_KEY:
            raise InvalidCacheKey(
                "Cache key is longer than %d bytes in UTF-8 with the prefix: %r"
                % (shmcache.DEFAULT_MAX_KEY, k))
        return k

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._tier_key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            self._tier._t.delete(k)
            return
        self._tier._t.set(k, dumps(value, self.pickle_protocol), ttl)

    pickle_protocol = 5

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._tier_key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            return self._tier._t.get(k) is None
        return self._tier._t.add(k, dumps(value, self.pickle_protocol), ttl)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._tier_key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            return self._tier._t.delete(k)
        return self._tier._t.touch(k, ttl)

    def delete(self, key, version=None):
        return self._tier._t.delete(self._tier_key(key, version))

    def has_key(self, key, version=None):
        return self._tier._t.get(self._tier_key(key, version)) is not None

    def incr(self, key, delta=1, version=None):
        """An int stored as digits is incremented atomically in Redis
        (INCRBY, keeping its expiry); any other value as Django's BaseCache
        does (get, add, set: not atomic).  ValueError if the key is missing."""
        k = self._tier_key(key, version)
        if type(delta) is int:
            try:
                value = self._tier._t.incr(k, delta, False)
            except ValueError:
                value = _MISSING     # not an integer in Redis
            if value is None:
                raise ValueError("Key '%s' not found" % k.decode())
            if value is not _MISSING:
                return value
        value = self.get(key, _MISSING, version)
        if value is _MISSING:
            raise ValueError("Key '%s' not found" % k.decode())
        new = value + delta
        self.set(key, new, version=version)
        return new

    def decr(self, key, delta=1, version=None):
        return self.incr(key, -delta, version)

    def get_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        """Cluster-wide singleflight: on a miss exactly one caller among all
        the hosts evaluates `default` (if callable) and stores it; the others
        wait for its value (FILL_WAIT, default 10 s).  A timeout <= 0 computes
        without storing."""
        k = self._tier_key(key, version)
        ttl = self._ttl(timeout)
        fn = default if callable(default) else (lambda: default)
        if ttl is _EXPIRED:
            data = self._tier._t.get(k)
            return fn() if data is None else loads(data)
        data = self._tier._t.get_or_fill(
            k, lambda: dumps(fn(), self.pickle_protocol), ttl, self._fill_timeout,
            self._fill_wait)
        return loads(data)

    def clear(self):
        self._tier.clear()

    def close(self, **kwargs):
        # Called at the end of every request: keep the shared tier open.
        pass
