"""The C hot paths of shmcache.django.ShmCache (_shmcache.DjangoBackend)
against the Python methods they replace (_get_py, _set_py, ...): the same
results, the same exceptions and messages, the same entries stored with the
same TTLs, for awkward keys, values, timeouts, versions and key functions.
Skipped (exit status 77) when Django is not installed.

    PYTHONPATH=build/python/src:python/tests python3 python/tests/test_django_fast.py -v
"""

import os
import unittest
from decimal import Decimal

from djtestutil import import_django

django = import_django()

from django.conf import settings  # noqa: E402

NAME = "pyt-djfast-%d" % os.getpid()
OPTS = {"SIZE": 8 << 20, "MAX_VALUE": 4096, "MAX_KEY": 200}


def custom_key(key, prefix, version):
    return "cf|%s|%s|%s" % (prefix, version, key)


settings.configure(CACHES={
    "default": {"BACKEND": "shmcache.django.ShmCache", "LOCATION": NAME, "OPTIONS": OPTS},
    "prefixed": {"BACKEND": "shmcache.django.ShmCache", "LOCATION": NAME,
                 "KEY_PREFIX": "pré", "VERSION": 3, "TIMEOUT": None, "OPTIONS": OPTS},
    "custom": {"BACKEND": "shmcache.django.ShmCache", "LOCATION": NAME,
               "KEY_FUNCTION": custom_key, "TIMEOUT": 30, "OPTIONS": OPTS},
    "pyser": {"BACKEND": "shmcache.django.ShmCache", "LOCATION": NAME,
              "OPTIONS": dict(OPTS, SERIALIZER="shmcache.PickleSerializer")},
})
django.setup()

from django.core.cache import InvalidCacheKey, caches  # noqa: E402

import shmcache  # noqa: E402
import shmcache.django  # noqa: E402


class StrSub(str):
    def __str__(self):
        return "S!" + str.__str__(self)


KEYS = ["k", "ünï", 5, ("t", 1), StrSub("x"), "a b", "a\x7f", "x" * 190, "x" * 197,
        "x" * 251, "é" * 95, "é" * 99, "\ud800", "", None]
VALUES = [1, "s", b"b", {"d": [1, 2]}, 2 ** 70, -5, 1.5, None, b"x" * 5000]
TIMEOUTS = [..., None, 0, -1, 1, 2.5, 10 ** 20, True, "x", float("inf")]
VERSIONS = [None, 2, "v"]
PROBE = ["k", "ünï", 5, "x" * 190]


def run(f, *a, **kw):
    try:
        return ("ok", f(*a, **kw))
    except Exception as e:   # compared, not hidden
        return ("exc", type(e).__name__, str(e))


def tearDownModule():
    shmcache.destroy(NAME)


class SameAsPython(unittest.TestCase):
    """Each C method against its Python reference, on a cleared cache."""

    def state(self, c):
        out = []
        for k in PROBE:
            for v in (None, 2):
                made = c._key_py(k, v)
                ttl = c._cache.ttl(made)
                if ttl is not None and ttl != float("inf"):
                    ttl = round(ttl)
                out.append((made, c._cache.get(made, "<absent>"), ttl))
        return out

    def same(self, c, meth, *args, pre=None, **kw):
        res = []
        for m in (meth, "_%s_py" % meth):
            c.clear()
            if pre:
                pre(c)
            r = run(getattr(c, m), *args, **kw)
            res.append((r, self.state(c)))
        self.assertEqual(res[0], res[1], "%s%r %r" % (meth, args, kw))

    def each_cache(self):
        for alias in ("default", "prefixed", "custom", "pyser"):
            c = caches[alias]
            self.assertTrue(c._fast)
            yield c

    def test_get_has_key_delete_get_many(self):
        for c in self.each_cache():
            for k in KEYS:
                for v in VERSIONS:
                    vk = {} if v is None else {"version": v}
                    pre = lambda c, k=k, vk=vk: run(c._set_py, k, {"v": 1}, **vk)
                    for p in (None, pre):
                        self.same(c, "get", k, "dflt", pre=p, **vk)
                        self.same(c, "has_key", k, pre=p, **vk)
                        self.same(c, "delete", k, pre=p, **vk)
                        self.same(c, "get_many", [k, "k", k], pre=p, **vk)

    def test_set_add(self):
        for c in self.each_cache():
            for k in KEYS[:9] + KEYS[12:]:
                for t in TIMEOUTS:
                    tk = {} if t is ... else {"timeout": t}
                    for val in VALUES:
                        self.same(c, "set", k, val, **tk)
                    for v in VERSIONS:
                        vk = {} if v is None else {"version": v}
                        pre = lambda c, k=k, vk=vk: run(c._set_py, k, "old", **vk)
                        self.same(c, "set", k, VALUES[3], **tk, **vk)
                        self.same(c, "add", k, VALUES[3], **tk, **vk)
                        self.same(c, "add", k, VALUES[3], pre=pre, **tk, **vk)
                        self.same(c, "set", k, VALUES[-1], pre=pre, **tk, **vk)
                        self.same(c, "add", k, VALUES[-1], **tk, **vk)

    def test_get_or_set(self):
        for c in self.each_cache():
            for k in KEYS:
                for t in TIMEOUTS:
                    tk = {} if t is ... else {"timeout": t}
                    pre = lambda c, k=k: run(c._set_py, k, "pre")
                    for p in (None, pre):
                        self.same(c, "get_or_set", k, lambda: 7, pre=p, **tk)
                        self.same(c, "get_or_set", k, [1], pre=p, version=2, **tk)

    def test_incr(self):
        for c in self.each_cache():
            for stored in (None, 5, 2 ** 64 + 3, 2 ** 63, -3, 1.5, "abc", b"z", Decimal("1.1")):
                pre = None if stored is None else (lambda c, s=stored: c._set_py("k", s))
                for d in (1, 0, -1, -10, 2 ** 63, 2 ** 64, -(2 ** 63), -(2 ** 64), 1.5, True,
                          Decimal("2.5"), "x"):
                    self.same(c, "incr", "k", d, pre=pre)
                    self.same(c, "incr", "k", delta=d, version=2, pre=pre)


class FastPathDetails(unittest.TestCase):
    def setUp(self):
        self.c = caches["default"]
        self.c.clear()

    def tearDown(self):
        self.c.key_prefix, self.c.version = "", 1

    def test_prefix_and_version_changes_take_effect(self):
        c = self.c
        c.set("a", 1)
        self.assertEqual(c._cache.get(":1:a"), 1)
        c.key_prefix = "np"
        c.set("a", 2)
        self.assertEqual(c._cache.get("np:1:a"), 2)
        c.version = 7
        self.assertEqual(c.get("a"), None)
        c.set("a", 3)
        self.assertEqual(c._cache.get("np:7:a"), 3)
        self.assertEqual(c._key("a", version=8), "np:8:a")

    def test_overriding_subclass_is_used(self):
        calls = []

        class Sub(shmcache.django.ShmCache):
            def make_key(self, key, version=None):
                calls.append(("make_key", key))
                return "sub-" + super().make_key(key, version)

            def get_backend_timeout(self, timeout=shmcache.django.DEFAULT_TIMEOUT):
                calls.append(("timeout", timeout))
                return 5

        sub = Sub(NAME, {"OPTIONS": OPTS})
        self.assertFalse(sub._fast)
        sub.set("a", 1, timeout=None)
        self.assertEqual(calls, [("make_key", "a"), ("timeout", None)])
        self.assertEqual(sub._cache.get("sub-:1:a"), 1)
        self.assertTrue(4 < sub._cache.ttl("sub-:1:a") <= 5)
        self.assertEqual(sub.get("a"), 1)
        with self.assertRaises(InvalidCacheKey):
            sub.get("bad key")

    def test_closed_handle_is_reopened(self):
        c = self.c
        c.set("a", 1)
        c._cache.close()
        self.assertEqual(c.get("a"), 1)
        self.assertFalse(c._cache.closed)

    def test_long_ascii_key_is_invalid(self):
        with self.assertRaises(InvalidCacheKey):
            self.c.set("x" * 198, 1)   # 201 bytes with ":1:", max_key is 200
        self.c.set("x" * 197, 1)
        self.assertEqual(self.c.get("x" * 197), 1)

    def test_contains(self):
        self.c.set("in", 0)
        self.assertIn("in", self.c)
        self.assertNotIn("out", self.c)


if __name__ == "__main__":
    unittest.main()
