"""shmcache.tier.Tier and the Django backend shmcache.django.TieredCache,
against a redis-server this test starts itself (unix socket in a temporary
directory, --port 0, no persistence, stopped by PID).  Several hosts are
simulated by several shmcache caches on this machine.

    PYTHONPATH=build/python/src:python/tests python3 python/tests/test_tier.py [redis-server]

Skipped (exit status 77) when redis-server or Django is missing, except
under CI=true, where a missing redis-server is a failure.
"""

import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

REDIS_SERVER = (sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-")
                else shutil.which("redis-server") or "")
if not REDIS_SERVER or not os.access(REDIS_SERVER, os.X_OK):
    if os.environ.get("CI") == "true":
        print("redis-server not found, and CI=true: failing")
        sys.exit(1)
    print("redis-server not found (Debian: apt-get install redis-server): skipped")
    sys.exit(77)

from djtestutil import CacheAPITests, Point, import_django  # noqa: E402

django = import_django()

from django.conf import settings  # noqa: E402

import shmcache  # noqa: E402
from forkutil import read_all, run_children, unique_name  # noqa: E402
from shmcache.tier import RedisError, Tier  # noqa: E402

TMP = tempfile.mkdtemp(prefix="shmc-pytier-")
SOCK = os.path.join(TMP, "redis.sock")
REDIS_URL = "unix://" + SOCK
HOSTS = [unique_name("tier-host%d" % i) for i in range(3)]
_redis = None


def start_redis():
    global _redis
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    _redis = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--unixsocket", SOCK, "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", TMP, "--daemonize", "no",
         "--logfile", os.path.join(TMP, "redis.log")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(SOCK) and raw("PING") == b"+PONG\r\n":
            return
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def stop_redis():
    if _redis is not None and _redis.poll() is None:
        os.kill(_redis.pid, signal.SIGKILL)
        _redis.wait(10)


def raw(*args):
    """One command on a new connection (RESP by hand: no Redis client needed);
    returns the raw reply bytes."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(5)
        s.connect(SOCK)
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        s.sendall(b"".join(parts))
        data = s.recv(65536)
        return data
    except OSError:
        return b""
    finally:
        s.close()


start_redis()
settings.configure(
    SECRET_KEY="shmcache-tier-test",
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    CACHES={
        "default": {
            "BACKEND": "shmcache.django.TieredCache",
            "LOCATION": HOSTS[0],
            "TIMEOUT": 60,
            "OPTIONS": {"REDIS": REDIS_URL, "PREFIX": "dj:", "LEASE": 0.6,
                        "SIZE": 8 << 20},
        },
        # the same Redis seen from other hosts
        "host1": {
            "BACKEND": "shmcache.django.TieredCache",
            "LOCATION": HOSTS[1],
            "OPTIONS": {"REDIS": REDIS_URL, "PREFIX": "dj:", "LEASE": 0.6,
                        "SIZE": 8 << 20},
        },
        "host2": {
            "BACKEND": "shmcache.django.TieredCache",
            "LOCATION": HOSTS[2],
            "OPTIONS": {"REDIS": REDIS_URL, "PREFIX": "dj:", "LEASE": 0.6,
                        "SIZE": 8 << 20},
        },
        "prefixed": {
            "BACKEND": "shmcache.django.TieredCache",
            "LOCATION": HOSTS[0],
            "KEY_PREFIX": "p1",
            "VERSION": 2,
            "TIMEOUT": None,
            "OPTIONS": {"REDIS": REDIS_URL, "PREFIX": "dj:", "LEASE": 0.6},
        },
        "other_prefix": {
            "BACKEND": "shmcache.django.TieredCache",
            "LOCATION": HOSTS[0],
            "KEY_PREFIX": "p2",
            "OPTIONS": {"REDIS": REDIS_URL, "PREFIX": "dj:", "LEASE": 0.6},
        },
    },
)
django.setup()

from django.core.cache import InvalidCacheKey, cache, caches  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

import shmcache.django  # noqa: E402


def tearDownModule():
    for name in HOSTS:
        try:
            shmcache.destroy(name)
        except shmcache.ShmcacheError:
            pass
    stop_redis()
    shutil.rmtree(TMP, ignore_errors=True)


def pttl(key):
    reply = raw("PTTL", key)
    return int(reply[1:].split(b"\r\n")[0])


def wait_for(fn, want, bound=5.0):
    deadline = time.monotonic() + bound
    while True:
        got = fn()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.002)


class TierTests(unittest.TestCase):
    """The Python API (bytes and objects), on two hosts."""

    def setUp(self):
        raw("FLUSHALL")
        self.a = Tier(HOSTS[0], REDIS_URL, prefix="t:", lease=0.6)
        self.b = Tier(HOSTS[1], REDIS_URL, prefix="t:", lease=0.6)
        self.assertTrue(self.a.wait_listener(5))
        self.assertTrue(self.b.wait_listener(5))

    def tearDown(self):
        self.a.close()
        self.b.close()

    def test_read_write_through(self):
        self.assertIsNone(self.a.get("k"))
        self.a.set("k", {"v": 1})
        self.assertEqual(self.a.get("k"), {"v": 1})
        self.assertEqual(self.b.get("k"), {"v": 1})
        self.a.set("k", {"v": 2})
        self.assertEqual(self.a.get("k"), {"v": 2})            # at once on the writer's host
        self.assertEqual(wait_for(lambda: self.b.get("k"), {"v": 2}), {"v": 2})
        self.a.set("n", 5)
        self.assertEqual(raw("GET", "t:n"), b"$1\r\n5\r\n")     # ints are digits in Redis
        self.assertEqual(self.b.incr("n", 3), 8)
        self.assertEqual(self.a.decr("n"), 7)
        self.assertEqual(wait_for(lambda: self.a.get("n"), 7), 7)
        self.assertIsNone(self.a.incr("missing"))
        self.assertEqual(self.a.incr("created", 2, create=True), 2)
        self.assertTrue(self.a.add("new", b"x"))
        self.assertFalse(self.b.add("new", b"y"))
        self.assertEqual(self.b.get("new"), b"x")
        self.assertTrue(self.b.delete("new"))
        self.assertFalse(self.b.delete("new"))
        self.assertIsNone(wait_for(lambda: self.a.get("new"), None))
        self.assertTrue(self.a.touch("k", 50))
        self.assertTrue(40000 < pttl("t:k") <= 50000)
        self.assertFalse(self.a.touch("missing", 5))
        st = self.a.stats()
        self.assertTrue(st["listener_live"])
        self.assertGreater(st["gets"], 0)
        with self.assertRaises(ValueError):
            self.a.get("")
        with self.assertRaises(ValueError):
            self.a.set("k", 1, ttl=-1)
        with self.assertRaises(ValueError):
            Tier(HOSTS[0], "http://nope")

    def test_hits_come_from_the_host(self):
        self.a.set("h", "v")
        # let the write's invalidation reach b's listener (a later write's
        # invalidation comes after it on the same connection)
        seen = self.b.stats()["invalidations"]
        raw("SET", "t:sync", "1")
        deadline = time.monotonic() + 10
        while self.b.stats()["invalidations"] <= seen and time.monotonic() < deadline:
            time.sleep(0.002)
        self.assertGreater(self.b.stats()["invalidations"], seen)
        self.assertEqual(self.b.get("h"), "v")
        before = self.b.stats()
        for _ in range(10):
            self.assertEqual(self.b.get("h"), "v")
        after = self.b.stats()
        self.assertEqual(after["l1_hits"] - before["l1_hits"], 10)
        self.assertEqual(after["redis_cmds"], before["redis_cmds"])

    def test_workers_of_hosts_converge(self):
        """Forked workers of every host write and read the same keys; each
        host then reads Redis's value of each key."""
        tiers = {}

        def worker(i):
            t = Tier(HOSTS[i % 3], REDIS_URL, prefix="t:", lease=0.6)
            t.wait_listener(5)
            for j in range(150):
                key = "c%d" % (j % 5)
                if j % 3 == 0:
                    t.set(key, "w%d-%d" % (i, j))
                    t.get(key)
                else:
                    t.get(key)
            t.close()
            return True

        self.assertEqual(run_children(6, worker, timeout=120), [True] * 6)
        for name in HOSTS:
            tiers[name] = Tier(name, REDIS_URL, prefix="t:", lease=0.6)
            self.assertTrue(tiers[name].wait_listener(5))
        for j in range(5):
            key = "c%d" % j
            reply = raw("GET", "t:" + key)
            want = shmcache.tier.loads(reply.split(b"\r\n", 1)[1][:-2])
            for name in HOSTS:
                self.assertEqual(wait_for(lambda: tiers[name].get(key), want), want)
        for t in tiers.values():
            t.close()

    def test_cluster_singleflight(self):
        """Workers of three hosts miss one key at once: one computation."""
        r, w = os.pipe()

        def worker(i):
            t = Tier(HOSTS[i % 3], REDIS_URL, prefix="t:", lease=0.6)
            t.wait_listener(5)

            def compute():
                os.write(w, b"x")
                time.sleep(0.3)
                return {"by": i}

            value = t.get_or_fill("sf", compute, ttl=30)
            t.close()
            return value

        results = run_children(6, worker, timeout=60)
        os.close(w)
        calls = read_all(r)
        os.close(r)
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(set(v["by"] for v in results)), 1)
        self.assertEqual(self.a.get("sf"), results[0])
        with self.assertRaises(ZeroDivisionError):
            self.a.get_or_fill("boom", lambda: 1 / 0)
        self.assertIsNone(self.b.get("boom"))
        self.assertEqual(self.b.get_or_fill("boom", lambda: 7), 7)

    def test_redis_down_is_an_error(self):
        self.a.set("k", "v")
        self.assertEqual(self.a.get("k"), "v")
        stop_redis()
        try:
            deadline = time.monotonic() + 5
            while self.a.stats()["listener_live"] and time.monotonic() < deadline:
                time.sleep(0.01)
            with self.assertRaises(RedisError):
                self.a.get("k")                    # never the old copy
            with self.assertRaises(RedisError):
                self.a.set("k", "w")
        finally:
            start_redis()
        self.assertTrue(self.a.wait_listener(10))
        self.assertIsNone(self.a.get("k"))        # what Redis has after its restart


class BackendTests(CacheAPITests, unittest.TestCase):
    """The tests of shmcache.django.ShmCache (python/tests/test_django.py) that
    apply to a Redis-backed cache, run on TieredCache."""

    def setUp(self):
        cache.clear()

    def test_backend(self):
        self.assertIsInstance(caches["default"], shmcache.django.TieredCache)

    def test_data_types(self):
        values = {
            "str": "h\u00e9llo", "bytes": b"\x00\xff", "int": 42, "negative": -1,
            "big": 2**100, "float": 1.25, "bool": True, "list": [1, [2]],
            "dict": {"a": {"b": 1}}, "object": Point(1, 2),
            "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "digits_str": "123",
        }
        for key, value in values.items():
            cache.set(key, value)
            for backend in (cache, caches["host1"]):
                got = backend.get(key)
                self.assertEqual(got, value, key)
                self.assertIs(type(got), type(value), key)

    def test_timeouts(self):
        cache.set("default", 1)
        self.assertTrue(55000 < pttl("dj::1:default") <= 60000)
        cache.set("forever", 1, timeout=None)
        self.assertEqual(pttl("dj::1:forever"), -1)
        cache.set("short", 1, timeout=0.1)
        cache.set("gone", "old")
        cache.set("gone", "new", timeout=0)
        self.assertIsNone(cache.get("gone"))
        cache.set("gone2", "old")
        cache.set("gone2", "new", timeout=-5)
        self.assertNotIn("gone2", cache)
        self.assertTrue(cache.add("added0", 1, timeout=0))
        self.assertNotIn("added0", cache)
        cache.set("t", 1, timeout=5)
        self.assertTrue(cache.touch("t", 60))
        self.assertFalse(cache.touch("missing", 60))
        cache.set("t0", 1)
        self.assertTrue(cache.touch("t0", 0))
        self.assertNotIn("t0", cache)
        cache.set("tn", 1, timeout=5)
        self.assertTrue(cache.touch("tn", None))
        self.assertEqual(pttl("dj::1:tn"), -1)
        time.sleep(0.25)
        self.assertIsNone(cache.get("short"))
        self.assertEqual(cache.get("t"), 1)
        self.assertEqual(cache.get("forever"), 1)
        prefixed = caches["prefixed"]
        prefixed.set("p", 1)
        self.assertEqual(pttl("dj:p1:2:p"), -1)

    def test_large_value(self):
        big = b"x" * (2 << 20)          # larger than the host cache's max_value
        cache.set("big", big)
        self.assertEqual(cache.get("big"), big)
        self.assertEqual(caches["host1"].get("big"), big)

    def test_incr_decr(self):
        cache.set("n", 1)
        self.assertEqual(cache.incr("n"), 2)
        self.assertEqual(cache.incr("n", 10), 12)
        self.assertEqual(cache.decr("n"), 11)
        self.assertEqual(cache.decr("n", 5), 6)
        self.assertEqual(cache.incr("n", -1), 5)
        self.assertEqual(cache.decr("n", -5), 10)
        self.assertEqual(cache.get("n"), 10)
        self.assertEqual(caches["host1"].get("n"), 10)
        self.assertEqual(cache.decr("n", 100), -90)    # Redis counters go below 0
        with self.assertRaises(ValueError):
            cache.incr("missing")
        with self.assertRaises(ValueError):
            cache.decr("missing")
        cache.set("f", 1.5)
        self.assertEqual(cache.incr("f"), 2.5)
        self.assertEqual(cache.incr("n", 0.5), -89.5)
        cache.set("s", "abc")
        with self.assertRaises(TypeError):
            cache.incr("s")
        cache.set("ttl", 1, timeout=30)
        cache.incr("ttl")
        self.assertTrue(20000 < pttl("dj::1:ttl") <= 30000)   # incr keeps the expiry

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
        raw("SET", "outside", "1")
        cache.clear()                 # every key of the tracked prefix "dj:"
        self.assertIsNone(b.get("shared-name"))
        self.assertEqual(raw("GET", "outside"), b"$1\r\n1\r\n")

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
        cache.set("y" * 240, 1)
        self.assertEqual(cache.get("y" * 240), 1)
        with self.assertRaises(InvalidCacheKey):    # 244 characters + "dj:" > 250 bytes
            cache.set("y" * 245, 1)
        with self.assertRaises(InvalidCacheKey):    # 240 characters, 480 bytes
            cache.set("\u00e9" * 240, 1)

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
        self.assertEqual(cache.get_or_set("n", 5), 5)
        self.assertEqual(cache.incr("n"), 6)

        def boom():
            raise RuntimeError("default failed")

        with self.assertRaises(RuntimeError):
            cache.get_or_set("boom", boom)
        self.assertNotIn("boom", cache)

    def test_threads_share_one_tier(self):
        import threading
        tiers, errors = [], []

        def work():
            try:
                backend = caches["default"]
                tiers.append(backend._tier)
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
        self.assertTrue(all(t is cache._tier for t in tiers))

    def test_invalidation_across_hosts(self):
        h1, h2 = caches["host1"], caches["host2"]
        cache.set("shared", "v1")
        self.assertEqual(h1.get("shared"), "v1")
        self.assertEqual(h2.get("shared"), "v1")
        h1.set("shared", "v2")
        self.assertEqual(h1.get("shared"), "v2")
        for backend in (cache, h2):
            self.assertEqual(wait_for(lambda: backend.get("shared"), "v2"), "v2")
        h2.delete("shared")
        for backend in (cache, h1):
            self.assertIsNone(wait_for(lambda: backend.get("shared"), None))

    def test_get_or_set_computes_once_across_hosts(self):
        r, w = os.pipe()

        def worker(i):
            backend = caches[("default", "host1", "host2")[i % 3]]

            def expensive():
                os.write(w, b"x")
                time.sleep(0.3)
                return "page-%d" % i

            return backend.get_or_set("page", expensive, 30)

        results = run_children(6, worker, timeout=60)
        os.close(w)
        calls = os.read(r, 100)
        os.close(r)
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(set(results)), 1)
        self.assertEqual(cache.get("page"), results[0])

    def test_configuration_errors(self):
        from shmcache.django import TieredCache
        with self.assertRaises(ImproperlyConfigured):
            TieredCache("", {"OPTIONS": {"REDIS": REDIS_URL}})
        with self.assertRaises(ImproperlyConfigured):
            TieredCache(HOSTS[0], {})
        with self.assertRaises(ImproperlyConfigured):
            TieredCache(HOSTS[0], {"OPTIONS": {"REDIS": REDIS_URL, "NOT_AN_OPTION": 1}})

    def test_fork_workers(self):
        """Forked workers (the tier made in this master process) share
        values and increment atomically."""
        cache.set("fcount", 0)

        def worker(i):
            backend = caches["default"]
            for _ in range(100):
                backend.incr("fcount")
            backend.set("from-%d" % i, i)
            return backend.get("from-%d" % ((i + 1) % 4), "?")

        run_children(4, worker, timeout=60)
        self.assertEqual(cache.get("fcount"), 400)
        for i in range(4):
            self.assertEqual(cache.get("from-%d" % i), i)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        stop_redis()
        shutil.rmtree(TMP, ignore_errors=True)
