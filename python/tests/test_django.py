"""The Django backend shmcache.django.ShmCache, exercised through Django's own
cache API in the small project djproject/ (settings, urls, views), with real
forked processes.  Skipped (exit status 77) when Django is not installed, a
failure instead when CI=true.

    PYTHONPATH=build/python/src:python/tests python3 python/tests/test_django.py -v
"""

import datetime
import os
import time
import unittest

from djtestutil import CacheAPITests, Point, import_django

django = import_django()

os.environ["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import InvalidCacheKey, cache, caches  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import Client  # noqa: E402

import shmcache  # noqa: E402
import shmcache.django  # noqa: E402
from djproject import views  # noqa: E402
from forkutil import mapped_bytes, read_all, run_children, run_together  # noqa: E402


def tearDownModule():
    shmcache.destroy(settings.SHMCACHE_NAME)
    try:
        shmcache.destroy(settings.CACHES["small_keys"]["LOCATION"])
    except shmcache.CacheNotFoundError:
        pass


def count_pipe():
    """A pipe whose write end children write one byte to per computation."""
    return os.pipe()


def drain(r, w):
    os.close(w)
    data = read_all(r)
    os.close(r)
    return data


class BackendTests(CacheAPITests, unittest.TestCase):
    def setUp(self):
        cache.clear()

    def test_backend(self):
        self.assertIsInstance(caches["default"], shmcache.django.ShmCache)
        self.assertIsInstance(caches["prefixed"], shmcache.django.ShmCache)

    def test_data_types(self):
        values = {
            "str": "h\u00e9llo", "bytes": b"\x00\xff", "int": 42, "negative": -1,
            "big": 2**100, "float": 1.25, "bool": True, "list": [1, [2]],
            "dict": {"a": {"b": 1}}, "object": Point(1, 2),
            "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
        }
        for key, value in values.items():
            cache.set(key, value)
            got = cache.get(key)
            self.assertEqual(got, value, key)
            self.assertIs(type(got), type(value), key)

    def test_timeouts(self):
        cache.set("default", 1)
        self.assertTrue(55 < cache._cache.ttl(cache.make_key("default")) <= 60)
        cache.set("forever", 1, timeout=None)
        self.assertEqual(cache._cache.ttl(cache.make_key("forever")), float("inf"))
        cache.set("short", 1, timeout=0.1)
        cache.set("gone", "old")
        cache.set("gone", "new", timeout=0)       # 0: expire at once
        self.assertIsNone(cache.get("gone"))
        cache.set("gone2", "old")
        cache.set("gone2", "new", timeout=-5)
        self.assertNotIn("gone2", cache)
        self.assertTrue(cache.add("added0", 1, timeout=0))   # reported stored, expired at once
        self.assertNotIn("added0", cache)
        cache.set("t", 1, timeout=5)
        self.assertTrue(cache.touch("t", 60))
        self.assertFalse(cache.touch("missing", 60))
        cache.set("t0", 1)
        self.assertTrue(cache.touch("t0", 0))
        self.assertNotIn("t0", cache)
        cache.set("tn", 1, timeout=5)
        self.assertTrue(cache.touch("tn", None))
        time.sleep(0.25)
        self.assertIsNone(cache.get("short"))
        self.assertEqual(cache.get("t"), 1)
        self.assertEqual(cache.get("tn"), 1)
        self.assertEqual(cache.get("forever"), 1)
        prefixed = caches["prefixed"]     # TIMEOUT None in the settings
        prefixed.set("p", 1)
        self.assertEqual(prefixed._cache.ttl(prefixed.make_key("p")), float("inf"))

    def test_many(self):
        super().test_many()
        big = b"x" * (cache._cache.max_value + 1)
        cache.set("toobig", "old")
        self.assertEqual(cache.set_many({"small": 1, "toobig": big}), ["toobig"])
        self.assertNotIn("toobig", cache)        # the old value did not stay
        self.assertEqual(cache.get("small"), 1)
        cache.set_many({"x": 1, "y": 2}, timeout=0)
        self.assertEqual(cache.get_many(["x", "y"]), {})
        self.assertEqual(cache.set_many({"v": 1}, version=3), [])
        self.assertEqual(cache.get_many(["v"], version=3), {"v": 1})
        self.assertEqual(cache.get_many(["v"]), {})

    def test_too_large_value(self):
        big = b"x" * (cache._cache.max_value + 1)
        cache.set("k", "old")
        cache.set("k", big)                      # silently not stored, like memcached
        self.assertIsNone(cache.get("k"))
        self.assertFalse(cache.add("k2", big))

    def test_incr_decr(self):
        cache.set("n", 1)
        self.assertEqual(cache.incr("n"), 2)
        self.assertEqual(cache.incr("n", 10), 12)
        self.assertEqual(cache.decr("n"), 11)
        self.assertEqual(cache.decr("n", 5), 6)
        self.assertEqual(cache.incr("n", -1), 5)
        self.assertEqual(cache.decr("n", -5), 10)
        self.assertEqual(cache.get("n"), 10)
        self.assertEqual(cache.decr("n", 100), 0)     # native counters stop at 0
        with self.assertRaises(ValueError):
            cache.incr("missing")
        with self.assertRaises(ValueError):
            cache.decr("missing")
        cache.set("neg", -5)                          # not a native counter: CAS loop
        self.assertEqual(cache.incr("neg", 2), -3)
        self.assertEqual(cache.decr("neg", 2), -5)
        cache.set("f", 1.5)
        self.assertEqual(cache.incr("f"), 2.5)
        self.assertEqual(cache.incr("n", 0.5), 0.5)
        cache.set("s", "abc")
        with self.assertRaises(TypeError):
            cache.incr("s")
        cache.set("ttl", 1, timeout=30)
        cache.incr("ttl")
        cache.set("ttlneg", -1, timeout=30)
        cache.incr("ttlneg")
        for key in ("ttl", "ttlneg"):   # incr keeps the expiry
            left = cache._cache.ttl(cache.make_key(key))
            self.assertTrue(20 < left <= 30, (key, left))

    def test_versions(self):
        super().test_versions()
        self.assertTrue(cache.delete("x") in (True, False))

    def test_key_prefixes(self):
        a, b = caches["prefixed"], caches["other_prefix"]
        cache.set("shared-name", "default")
        a.set("shared-name", "p1")
        b.set("shared-name", "p2")
        self.assertEqual(cache.get("shared-name"), "default")
        self.assertEqual(a.get("shared-name"), "p1")
        self.assertEqual(b.get("shared-name"), "p2")
        self.assertEqual(a.make_key("k"), "p1:2:k")
        a.delete("shared-name")
        self.assertEqual(b.get("shared-name"), "p2")
        custom = caches["custom_key_func"]
        custom.set("k", 1)
        self.assertEqual(cache._cache.get("custom-k"), 1)
        cache.clear()                    # clears the whole cache, like memcached
        self.assertIsNone(b.get("shared-name"))

    def test_key_validation(self):
        for bad in ("has space", "ctrl\x01char", "tab\tkey", "del\x7f", "x" * 251):
            for op in (lambda k: cache.get(k), lambda k: cache.set(k, 1),
                       lambda k: cache.add(k, 1), lambda k: cache.delete(k),
                       lambda k: cache.incr(k), lambda k: cache.touch(k),
                       lambda k: cache.has_key(k), lambda k: cache.get_many([k]),
                       lambda k: cache.set_many({k: 1}), lambda k: cache.delete_many([k]),
                       lambda k: cache.get_or_set(k, 1)):
                with self.assertRaises(InvalidCacheKey):
                    op(bad)
        # 250 characters after the prefix ":1:" is still too long; 240 is fine.
        cache.set("y" * 240, 1)
        self.assertEqual(cache.get("y" * 240), 1)
        with self.assertRaises(InvalidCacheKey):          # 240 characters, 480 bytes
            cache.set("\u00e9" * 240, 1)
        cache.set("\u00e9" * 100, 2)
        self.assertEqual(cache.get("\u00e9" * 100), 2)

    def test_key_longer_than_max_key(self):
        # OPTIONS MAX_KEY 64: a longer key is InvalidCacheKey from every call,
        # ASCII or not (never the module's KeyLengthError).
        small = caches["small_keys"]
        self.assertEqual(small._cache.max_key, 64)
        fits = "a" * (64 - len(small.make_key("")))
        for bad in ("x" * 100, fits + "b", "\u00e9" * 40):
            for op in (lambda k: small.get(k), lambda k: small.set(k, 1),
                       lambda k: small.add(k, 1), lambda k: small.delete(k),
                       lambda k: small.incr(k), lambda k: small.decr(k),
                       lambda k: small.touch(k), lambda k: small.has_key(k),
                       lambda k: small.get_many([k]), lambda k: small.set_many({k: 1}),
                       lambda k: small.delete_many([k]), lambda k: small.get_or_set(k, 1)):
                with self.assertRaises(InvalidCacheKey, msg=(bad, op)):
                    op(bad)
        small.set(fits, "fits")                           # exactly 64 bytes
        self.assertEqual(small.get(fits), "fits")
        small.clear()

    def test_get_or_set(self):
        calls = []

        def compute():
            calls.append(1)
            return {"computed": True}

        self.assertEqual(cache.get_or_set("g", compute), {"computed": True})
        self.assertEqual(cache.get_or_set("g", compute), {"computed": True})
        self.assertEqual(len(calls), 1)
        self.assertEqual(cache.get_or_set("plain", "value"), "value")
        self.assertEqual(cache.get("plain"), "value")
        self.assertIsNone(cache.get_or_set("none", None))
        self.assertTrue(cache.has_key("none"))
        self.assertEqual(cache.get_or_set("zero", compute, timeout=0), {"computed": True})
        self.assertNotIn("zero", cache)
        self.assertEqual(len(calls), 2)
        self.assertEqual(cache.get_or_set("ver", 1, version=5), 1)
        self.assertEqual(cache.get("ver", version=5), 1)
        self.assertIsNone(cache.get("ver"))
        cache.get_or_set("timed", 1, timeout=30)
        self.assertTrue(20 < cache._cache.ttl(cache.make_key("timed")) <= 30)
        self.assertEqual(cache.get_or_set("n", 5), 5)
        self.assertEqual(cache.incr("n"), 6)

        def boom():
            raise RuntimeError("default failed")

        with self.assertRaises(RuntimeError):
            cache.get_or_set("boom", boom)
        self.assertNotIn("boom", cache)
        big = b"x" * (cache._cache.max_value + 1)
        self.assertEqual(cache.get_or_set("big", lambda: big), big)

    def test_threads_share_one_handle(self):
        import threading
        handles, errors = [], []

        def work():
            try:
                backend = caches["default"]      # one backend instance per thread
                handles.append(backend._cache)
                for _ in range(200):
                    backend.incr("tcount")
            except Exception as e:   # noqa: BLE001
                errors.append(repr(e))

        cache.set("tcount", 0)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(cache.get("tcount"), 800)
        self.assertTrue(all(h is cache._cache for h in handles))

    def test_close_keeps_working(self):
        cache.set("k", 1)
        cache.close()
        self.assertEqual(cache.get("k"), 1)

    def test_python_serializer_option(self):
        py = caches["python_serializer"]
        self.assertIsInstance(py._cache.serializer, shmcache.PickleSerializer)
        py.set("k", [1, 2])
        self.assertEqual(py.get("k"), [1, 2])
        py.set("n", 1)
        self.assertEqual(cache.incr("n", version=1), 2)   # same bytes, same prefix

    def test_configuration_errors(self):
        from shmcache.django import ShmCache
        with self.assertRaises(ImproperlyConfigured):
            ShmCache("", {})
        with self.assertRaises(ImproperlyConfigured):
            ShmCache(settings.SHMCACHE_NAME, {"OPTIONS": {"NOT_AN_OPTION": 1}})
        backend = ShmCache(settings.SHMCACHE_NAME, {"OPTIONS": {"create": False}})
        backend.set("k", 1)
        self.assertEqual(cache.get("k"), 1)
        sized = ShmCache("pyt-max-items-%d" % os.getpid(),
                         {"OPTIONS": {"SIZE": 4 << 20, "MAX_ITEMS": 5000}})
        try:
            sized.set("k", 1)
            self.assertEqual(sized._cache.info()["max_items"], 5000)
        finally:
            shmcache.destroy("pyt-max-items-%d" % os.getpid())
        # PREFAULT maps the whole cache into the process when it opens.
        pre_name = "pyt-prefault-%d" % os.getpid()
        plain = ShmCache(pre_name, {"OPTIONS": {"SIZE": 8 << 20}})
        pre = ShmCache(pre_name, {"OPTIONS": {"PREFAULT": True}})
        try:
            plain.set("k", 1)
            self.assertLess(mapped_bytes(pre_name), 4 << 20)
            self.assertEqual(pre.get("k"), 1)
            self.assertGreaterEqual(mapped_bytes(pre_name), 8 << 20)
        finally:
            shmcache.destroy(pre_name)
        missing = ShmCache("pyt-no-such-cache-%d" % os.getpid(), {"OPTIONS": {"CREATE": False}})
        with self.assertRaises(shmcache.CacheNotFoundError):
            missing.get("k")


class ForkTests(unittest.TestCase):
    """The cache was opened in this (master) process; forked workers use it."""

    def setUp(self):
        cache.clear()

    def test_workers_share_values(self):
        cache.set("from-master", [1, 2, 3])

        def worker(i):
            assert cache.get("from-master") == [1, 2, 3]
            caches["prefixed"].set("from-worker-%d" % i, i)
            return cache.get("from-master")

        self.assertEqual(run_children(3, worker), [[1, 2, 3]] * 3)
        self.assertEqual(caches["prefixed"].get_many(["from-worker-0", "from-worker-2"]),
                         {"from-worker-0": 0, "from-worker-2": 2})

    def test_incr_is_atomic(self):
        cache.set("hits", 0)

        def worker(i):
            for _ in range(300):
                cache.incr("hits")
            cache.decr("hits", 0)
            return True

        run_together(4, worker)
        self.assertEqual(cache.get("hits"), 1200)

    def test_cas_incr_is_atomic(self):
        cache.set("neg", -1000)

        def worker(i):
            for _ in range(100):
                cache.incr("neg", 1)
            return True

        run_together(3, worker)
        self.assertEqual(cache.get("neg"), -700)

    def test_get_or_set_computes_once(self):
        r, w = count_pipe()

        def worker(i):
            def expensive():
                os.write(w, b"x")
                time.sleep(0.3)
                return "expensive value"

            return cache.get_or_set("once", expensive, 60)

        results = run_together(5, worker)
        self.assertEqual(results, ["expensive value"] * 5)
        self.assertEqual(drain(r, w), b"x")

    def test_get_or_set_error_in_default(self):
        def worker(i):
            def failing():
                time.sleep(0.3)
                raise RuntimeError("database is down")

            try:
                # This alias replays a fill error for FILL_ERROR_TTL, so a
                # worker arriving after the abort gets it too, whatever the timing.
                caches["fill_errors"].get_or_set("failing", failing)
            except RuntimeError:
                return "leader"
            except shmcache.FillError as e:
                return e.message
            return "no error"

        results = run_together(4, worker)
        self.assertEqual(results.count("leader"), 1, results)
        for r in results:
            self.assertIn(r, ("leader", "RuntimeError: database is down"))


class ProjectTests(unittest.TestCase):
    """The project's views, through Django's test client."""

    def setUp(self):
        cache.clear()
        views.CALLS.update(page=0, computed=0)

    def test_cache_page(self):
        client = Client()
        first = client.get("/page/")
        self.assertEqual(first.status_code, 200)
        self.assertEqual(client.get("/page/").content, first.content)
        self.assertEqual(views.CALLS["page"], 1)

        def worker(i):
            return Client().get("/page/").content, views.CALLS["page"]

        # Workers get the page rendered by the master from the shared cache.
        self.assertEqual(run_children(3, worker), [(first.content, 1)] * 3)

    def test_get_or_set_view(self):
        def worker(i):
            content = Client().get("/computed/abc/").content.decode()
            return content, views.CALLS["computed"]

        results = run_together(4, worker)
        contents = {c for c, _ in results}
        self.assertEqual(len(contents), 1, results)
        self.assertEqual(sum(n for _, n in results), 1)
        self.assertEqual(Client().get("/computed/abc/").content.decode(), contents.pop())
        self.assertEqual(views.CALLS["computed"], 0)

    def test_hits_view(self):
        cache.set("hits", 0)
        run_children(3, lambda i: [Client().get("/hits/").status_code for _ in range(20)])
        self.assertEqual(cache.get("hits"), 60)


if __name__ == "__main__":
    unittest.main()
