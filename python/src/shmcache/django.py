"""A Django cache backend on shmcache: one cache in shared memory for every
worker process of the host.

    CACHES = {
        "default": {
            "BACKEND": "shmcache.django.ShmCache",
            "LOCATION": "myapp-cache",          # the cache's name (/dev/shm/myapp-cache)
            "TIMEOUT": 300,
            "OPTIONS": {"SIZE": 256 * 1024 * 1024},
        }
    }

It behaves like Django's memcached backends: keys are validated the same way
(at most 250 characters, no spaces or control characters: InvalidCacheKey),
a value that does not fit is silently not stored, clear() empties the whole
cache (every KEY_PREFIX and version), and decr() stops at 0.  Differences:
get_or_set() is singleflight (on a miss exactly one process calls the
default while the others wait for its value), incr()/decr() are atomic
across processes, and TTLs are exact to the millisecond with no 30-day
limit.

OPTIONS (all optional, case-insensitive):
    SIZE, MAX_KEY, MAX_VALUE, SLOTS, MODE, LOCKS, MAX_ITEMS
                      creation parameters of the cache
    CREATE            False: attach only (the cache must exist)
    PREFAULT          True: map the whole cache into each worker when it opens
                      it (or, inherited across fork, at its first call), not a
                      page at a time: for long-lived workers (SHMC_OPEN_PREFAULT)
    PICKLE_PROTOCOL   pickle protocol of the built-in serializer
    SERIALIZER        an object, class or dotted path with dumps()/loads()
    FILL_WAIT         get_or_set: longest wait for another process's fill (s)
    FILL_TIMEOUT      get_or_set: a filler's deadline before another takes over (s)
    FILL_ERROR_TTL    get_or_set: how long a failed fill's error is replayed (s)
    MAX_ENTRIES, CULL_FREQUENCY   accepted and ignored (the cache evicts by size)
"""

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    InvalidCacheKey,
    default_key_func,
    memcache_key_warnings,
)
from django.core.exceptions import ImproperlyConfigured

import shmcache
from shmcache import _shmcache

from ._djutil import Registry, lower_options, split_options

_shmcache._django_setup(default_key_func, DEFAULT_TIMEOUT)

_OPEN_OPTIONS = {k: k for k in ("size", "max_key", "max_value", "slots", "mode", "locks",
                                 "create", "pickle_protocol", "serializer", "max_items",
                                 "prefault")}
_FILL_OPTIONS = {"fill_wait": "wait", "fill_timeout": "fill_timeout",
                 "fill_error_ttl": "error_ttl"}
_IGNORED_OPTIONS = ("max_entries", "cull_frequency")

_MISSING = object()
_EXPIRED = object()      # a timeout <= 0: "expire at once", so do not store

# One handle per cache and open parameters in each process, shared by every
# backend instance (Django makes one per thread).  A handle opened before
# fork() is used by the children as it is.
_handles = Registry()


def _load_serializer(spec):
    if spec is None:
        return None
    if isinstance(spec, str):
        from django.utils.module_loading import import_string
        spec = import_string(spec)
    if isinstance(spec, type):
        spec = spec()
    return spec


def _open(name, kwargs):
    def make():
        kw = kwargs
        if "serializer" in kw:
            kw = dict(kw, serializer=_load_serializer(kw["serializer"]))
        return shmcache.Cache(name, **kw)

    return _handles.get(name, kwargs, make, stale=lambda cache: cache.closed)


class ShmCache(_shmcache.DjangoBackend, BaseCache):
    """Django cache backend storing in a shmcache shared-memory cache.

    get, set, add, incr, get_many, has_key and delete come from the C base
    class _shmcache.DjangoBackend: they make and validate the key (Django's
    default KEY_FUNCTION is done in C, any other is called), convert the
    timeout and call the cache without a Python frame in between.  The
    methods below are the reference for what they do, and what the C code
    falls back to for anything unusual; a subclass that overrides make_key,
    validate_key or get_backend_timeout has every key and timeout go through
    its methods.
    """

    def __init__(self, location, params):
        super().__init__(params)
        options = lower_options(params)
        name = location or options.pop("name", None)
        if not name or not isinstance(name, str):
            raise ImproperlyConfigured(
                "shmcache.django.ShmCache needs LOCATION: the cache's name, e.g. 'myapp-cache'")
        open_kwargs, self._fill_kwargs = split_options(
            options, [_OPEN_OPTIONS, _FILL_OPTIONS], _IGNORED_OPTIONS, "shmcache")
        self._name = name
        self._open_kwargs = open_kwargs
        cls = type(self)
        self._fast = (cls.make_key is BaseCache.make_key
                      and cls.validate_key is ShmCache.validate_key
                      and cls.get_backend_timeout is ShmCache.get_backend_timeout)

    # self._cache (a property of the C base): the handle, opened on first use
    # and again after it was closed.
    def _open_handle(self):
        return _open(self._name, self._open_kwargs)

    # --- keys and timeouts ---------------------------------------------------

    def validate_key(self, key):
        for warning in memcache_key_warnings(key):
            raise InvalidCacheKey(warning)
        if (len(key) if key.isascii() else len(key.encode("utf-8"))) > self._cache.max_key:
            raise InvalidCacheKey(
                "Cache key is longer than %d bytes in UTF-8: %r" % (self._cache.max_key, key))

    def _key_py(self, key, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return key

    # _key(key, version=None), in C: _key_py's result, made without a Python
    # frame when _fast.

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        """The relative timeout in seconds: None = never expires; <= 0 =
        expires at once (not stored)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return timeout

    def _ttl(self, timeout):
        """The shmcache TTL: None (forever), seconds, or _EXPIRED (do not store)."""
        timeout = self.get_backend_timeout(timeout)
        if timeout is None:
            return None
        if timeout <= 0:
            return _EXPIRED
        return timeout

    # --- the cache API ---------------------------------------------------------

    def _add_py(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            return not self._cache.exists(key)
        try:
            return self._cache.add(key, value, ttl)
        except (shmcache.ValueLengthError, shmcache.NoMemoryError):
            return False

    def _get_py(self, key, default=None, version=None):
        return self._cache.get(self._key(key, version), default)

    def _set_py(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            self._cache.delete(key)
            return
        try:
            self._cache.set(key, value, ttl)
        except (shmcache.ValueLengthError, shmcache.NoMemoryError):
            # Like memcached's 1 MB limit: not stored, and the old value must
            # not stay behind.
            self._cache.delete(key)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            return self._cache.delete(key)
        try:
            return self._cache.touch(key, ttl)
        except shmcache.NoMemoryError:
            return False

    def _delete_py(self, key, version=None):
        return self._cache.delete(self._key(key, version))

    def _has_key_py(self, key, version=None):
        return self._cache.exists(self._key(key, version))

    def _get_many_py(self, keys, version=None):
        key_map = {self._key(key, version): key for key in keys}
        found = self._cache.get_many(list(key_map))
        return {key_map[k]: v for k, v in found.items()}

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        safe = {}
        original = {}
        for key, value in data.items():
            k = self._key(key, version)
            safe[k] = value
            original[k] = key
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            self._cache.delete_many(list(safe))
            return []
        failed = self._cache.set_many(safe, ttl)
        if failed:
            self._cache.delete_many(failed)
        return [original[k] for k in failed]

    def delete_many(self, keys, version=None):
        self._cache.delete_many([self._key(key, version) for key in keys])

    def clear(self):
        self._cache.flush()

    def _get_or_set_py(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        """Returns the cached value; on a miss exactly one process (of all that
        miss the key at once) evaluates `default` and stores it, and the others
        get its value.  If the default raises in that process, the others get
        shmcache.FillError."""
        key = self._key(key, version)
        ttl = self._ttl(timeout)
        fn = default if callable(default) else (lambda: default)
        if ttl is _EXPIRED:
            value = self._cache.get(key, _MISSING)
            return fn() if value is _MISSING else value
        try:
            return self._cache.get_or_fill(key, fn, ttl, **self._fill_kwargs)
        except shmcache.FillError as err:
            if err.error == shmcache.FILL_ERROR_PYTHON:
                raise
            # The filler computed the value but could not store it (too large,
            # or no memory): compute it here too, as without a cache.
            return fn()
        except shmcache.TimeoutError:
            # Another process has been filling for longer than FILL_WAIT.
            value = fn()
            self._add_made(key, value, ttl)
            return value

    def _add_made(self, key, value, ttl):
        try:
            self._cache.add(key, value, ttl)
        except (shmcache.ValueLengthError, shmcache.NoMemoryError):
            pass

    def _incr_py(self, key, delta=1, version=None):
        """Adds delta atomically across processes; ValueError if the key is
        missing.  A stored int in [0, 2**64) is a native counter (decr stops
        at 0); other numbers are updated with a compare-and-swap loop."""
        made = self._key(key, version)
        if type(delta) is not int:
            return self._cas_add(made, delta, key)
        try:
            if delta >= 0:
                value = self._cache.incr(made, delta)
            else:
                value = self._cache.decr(made, -delta)
        except shmcache.NotANumberError:
            return self._cas_add(made, delta, key)
        if value is None:
            raise ValueError("Key '%s' not found" % made)
        return value

    # The methods above are the reference versions of the C ones of
    # _shmcache.DjangoBackend (get, set, add, delete, has_key, get_many,
    # get_or_set and incr).  The C get_or_set answers hits and calls
    # _get_or_set_py on a miss; the C incr calls _incr_py for a delta of
    # 2**63 or more.

    def decr(self, key, delta=1, version=None):
        return self.incr(key, -delta, version)

    def _cas_add(self, made, delta, key):
        cache = self._cache
        while True:
            value, token = cache.gets(made, _MISSING)
            if token is None:
                raise ValueError("Key '%s' not found" % made)
            new = value + delta
            left = cache.ttl(made)
            if left is None:
                continue   # expired or deleted just now: gets decides
            if left == float("inf"):
                left = None
            elif left <= 0:
                left = 0.001
            stored = cache.cas(made, new, token, left)
            if stored:
                return new
            if stored is None:
                raise ValueError("Key '%s' not found" % made)

    def close(self, **kwargs):
        # Called at the end of every request: keep the shared handle open.
        pass


try:  # the Redis tier is built only when hiredis was found
    from .django_tier import TieredCache  # noqa: E402,F401
except ImportError:
    pass
