"""What the Django backends shmcache.django.ShmCache and TieredCache share:
reading their OPTIONS, and one handle per (name, options) in each process.
(A module of its own: django.py imports django_tier.py at its end, so that
one cannot import from it.)"""

import os
import threading

from django.core.exceptions import ImproperlyConfigured


def lower_options(params):
    """The OPTIONS of a cache's params, with lower-case keys."""
    return {str(k).lower(): v for k, v in (params.get("OPTIONS") or {}).items()}


def split_options(options, tables, ignored, what):
    """options (from lower_options) sorted by tables, a list of
    {option: name} dicts: returns one {name: value} dict per table.  A key in
    ignored is accepted and dropped; any other raises ImproperlyConfigured
    naming `what`."""
    out = [{} for _ in tables]
    for key, value in options.items():
        for table, got in zip(tables, out):
            if key in table:
                got[table[key]] = value
                break
        else:
            if key not in ignored:
                raise ImproperlyConfigured("unknown %s OPTIONS key %r" % (what, key))
    return out


class Registry:
    """One object per (name, keyword arguments) in each process, shared by
    Django's per-thread backend instances.  An object made before fork() is
    used by the children as it is; the lock is made anew in each child."""

    def __init__(self):
        self._objects = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._reset_lock)

    def _reset_lock(self):
        self._lock = threading.Lock()

    def get(self, name, kwargs, make, stale=None):
        """The object for (name, kwargs): make() on first use, and again when
        stale(obj) is true."""
        ident = (name,) + tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        with self._lock:
            obj = self._objects.get(ident)
            if obj is None or (stale is not None and stale(obj)):
                obj = self._objects[ident] = make()
            return obj
