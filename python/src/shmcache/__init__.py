"""shmcache: a shared-memory cache for the preforked workers of one host.

    import shmcache

    cache = shmcache.Cache("myapp", size=64 << 20)   # create or attach
    cache.set("user:42", {"name": "Ada"}, ttl=60)
    cache.get("user:42")                               # {'name': 'Ada'}

    # One computation per key across all processes (singleflight):
    page = cache.get_or_fill("page:/", render_home, ttl=30)

    # A named lock across processes, with a lease and a fencing token:
    with cache.lock("nightly-job", timeout=5, lease=60) as token:
        ...

Open the cache in the master before forking (gunicorn --preload) or in each
worker: a handle opened before fork() works in the children.

Values go through the cache's serializer.  The built-in one stores bytes
raw (flags FLAG_BYTES), int as decimal ASCII (FLAG_INT, so incr/decr work
on it and other languages can read it), str as UTF-8 (FLAG_TEXT) and
anything else pickled (FLAG_PICKLE).  Times (ttl, timeout, lease) are in
seconds, int or float; a ttl of None or 0 means "never expires".
"""

from . import _shmcache
from ._shmcache import (  # noqa: F401  (re-exported)
    ABSENT,
    DEFAULT_MAX_KEY,
    DEFAULT_MAX_VALUE,
    FILL_ERROR_PYTHON,
    FLAG_BYTES,
    FLAG_INT,
    FLAG_PICKLE,
    FLAG_TEXT,
    LIBRARY_VERSION,
    MAX_HOLDS,
    STATUS_NAMES,
    BufferSizeError,
    BusyError,
    CacheExistsError,
    CacheNotFoundError,
    CorruptError,
    FillError,
    InvalidArgumentError,
    InvalidNameError,
    KeyLengthError,
    MismatchError,
    NamespaceError,
    NoMemoryError,
    NoSlotsError,
    NoSpaceError,
    NotANumberError,
    NotOwnerError,
    PermissionDeniedError,
    ShmcacheError,
    SystemCallError,
    TableFullError,
    TimeoutError,
    TooManyHoldsError,
    TooSmallError,
    ValueLengthError,
    VersionError,
    destroy,
    strerror,
)

import pickle as _pickle

__all__ = [
    "Cache", "Lock", "PickleSerializer", "RawSerializer", "destroy", "strerror",
    "ABSENT", "FLAG_BYTES", "FLAG_INT", "FLAG_PICKLE", "FLAG_TEXT",
    "ShmcacheError", "KeyLengthError", "ValueLengthError", "InvalidArgumentError",
    "InvalidNameError", "CacheNotFoundError", "CacheExistsError",
    "PermissionDeniedError", "VersionError", "MismatchError", "CorruptError",
    "NoMemoryError", "NoSlotsError", "NamespaceError", "TimeoutError",
    "SystemCallError", "TooSmallError", "NotANumberError", "BusyError",
    "NotOwnerError", "TableFullError", "TooManyHoldsError", "FillError", "NoSpaceError",
    "LockTimeoutError", "LockLostError", "BufferSizeError",
    "DEFAULT_MAX_KEY", "DEFAULT_MAX_VALUE", "FILL_ERROR_PYTHON", "LIBRARY_VERSION",
    "MAX_HOLDS", "STATUS_NAMES",
]

__version__ = "0.1.0"


class LockTimeoutError(TimeoutError):
    """A named lock was not acquired within its timeout."""


class LockLostError(NotOwnerError):
    """A named lock was no longer ours at release: its lease ended and
    another holder took it over (or it was released already)."""


def _reraise_as(cls, err, message):
    new = cls(message)
    new.status = err.status
    new.status_name = err.status_name
    raise new from err


class Lock:
    """A named lock shared by every process of the cache.

    Use it as a context manager; the value bound by ``as`` is the lock's
    fencing token (an int that strictly increases per name):

        with cache.lock("report", timeout=5, lease=30) as token:
            ...

    timeout: seconds to wait (None: forever; 0: do not wait).  On timeout
    LockTimeoutError is raised.  lease: seconds the lock stays ours without
    extend() (None: until released, or until this thread or process dies).
    If the lease ended and another holder took the lock over, the release at
    the end of the block raises LockLostError.  A lock is owned by the
    thread that acquired it and is not re-entrant.
    """

    __slots__ = ("cache", "name", "timeout", "lease", "token")

    def __init__(self, cache, name, timeout=None, lease=None):
        self.cache = cache
        self.name = name
        self.timeout = timeout
        self.lease = lease
        self.token = None

    def acquire(self, timeout=..., lease=...):
        """Acquires the lock and returns its token."""
        if self.token is not None:
            raise RuntimeError("lock %r is already held by this Lock object" % (self.name,))
        timeout = self.timeout if timeout is ... else timeout
        lease = self.lease if lease is ... else lease
        try:
            self.token = self.cache.lock_acquire(self.name, timeout, lease)
        except (_shmcache.TimeoutError, BusyError) as err:
            _reraise_as(LockTimeoutError, err,
                        "lock %r not acquired within %s s" % (self.name, timeout or 0))
        return self.token

    def try_acquire(self, lease=...):
        """Acquires the lock if it is free now; returns the token or None."""
        if self.token is not None:
            raise RuntimeError("lock %r is already held by this Lock object" % (self.name,))
        lease = self.lease if lease is ... else lease
        self.token = self.cache.lock_try(self.name, lease)
        return self.token

    def release(self):
        """Releases the lock; raises LockLostError if it was not ours any more."""
        if self.token is None:
            raise RuntimeError("lock %r is not held" % (self.name,))
        token, self.token = self.token, None
        try:
            self.cache.lock_release(self.name, token)
        except NotOwnerError as err:
            _reraise_as(LockLostError, err,
                        "lock %r was lost before release (its lease of %s s ended and "
                        "another holder took it over)" % (self.name, self.lease))

    def extend(self, lease=None):
        """Sets the lease to end `lease` seconds from now (None: no lease)."""
        if self.token is None:
            raise RuntimeError("lock %r is not held" % (self.name,))
        try:
            self.cache.lock_extend(self.name, self.token, lease)
        except NotOwnerError as err:
            self.token = None
            _reraise_as(LockLostError, err, "lock %r was lost before extend" % (self.name,))
        if lease is not None:
            self.lease = lease

    @property
    def locked(self):
        """True while this object holds the lock (as far as it knows)."""
        return self.token is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    def __repr__(self):
        return "<shmcache.Lock %r %s>" % (self.name, "held" if self.token else "free")


class Cache(_shmcache.Cache):
    """Cache(name, size=None, *, max_key=None, max_value=None, slots=None,
    mode=None, locks=None, create=True, exclusive=False, serializer=None,
    pickle_protocol=None)

    Opens the shared-memory cache `name` (1..200 bytes of [A-Za-z0-9._-]),
    creating it with these parameters if it does not exist.  None means the
    library's default when creating and "whatever the segment has" when
    attaching.  create=False only attaches; exclusive=True only creates.
    max_items sizes the key index to hold that many items (default: by size).
    serializer: None for the built-in one, or an object with
    dumps(value) -> (bytes, flags) and loads(data, flags) -> value.

    Keys are str (encoded as UTF-8) or bytes.  Every method may be called
    from any thread; a cache opened before fork() works in the children.
    """

    def lock(self, name, timeout=None, lease=None):
        """A Lock on `name` (str or bytes), for use with ``with``."""
        return Lock(self, name, timeout, lease)

    def __reduce__(self):
        raise TypeError("a shmcache.Cache cannot be pickled; open it by name instead")


class PickleSerializer:
    """The built-in serializer written in Python: bytes raw, int as decimal
    ASCII, str as UTF-8, the rest pickled with `protocol`.  Subclass it to
    change one case; pass None as serializer for the (faster) C version."""

    def __init__(self, protocol=_pickle.HIGHEST_PROTOCOL):
        self.protocol = protocol

    def dumps(self, value):
        t = type(value)
        if t is bytes:
            return value, FLAG_BYTES
        if t is int:
            try:
                return str(value).encode("ascii"), FLAG_INT
            except ValueError:   # more digits than int->str allows
                pass
        elif t is str:
            try:
                return value.encode("utf-8"), FLAG_TEXT
            except UnicodeEncodeError:
                pass
        return _pickle.dumps(value, self.protocol), FLAG_PICKLE

    def loads(self, data, flags):
        if flags == FLAG_BYTES:
            return data
        if flags == FLAG_INT:
            return int(data)
        if flags == FLAG_TEXT:
            return data.decode("utf-8")
        if flags == FLAG_PICKLE:
            return _pickle.loads(data)
        return data


class RawSerializer:
    """Values are bytes-like only, stored with flags 0 and read back as bytes."""

    def dumps(self, value):
        if isinstance(value, str) or not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("RawSerializer stores bytes-like values only, not %s"
                            % type(value).__name__)
        return bytes(value), FLAG_BYTES

    def loads(self, data, flags):
        return data
