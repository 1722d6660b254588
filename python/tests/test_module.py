"""Unit tests of the shmcache Python module, with real forked processes.

Run by `meson test` (PYTHONPATH points at the build directory), or by hand:
    PYTHONPATH=build/python/src:python/tests python3 python/tests/test_module.py -v
"""

import os
import pickle
import threading
import time
import unittest

import shmcache
from forkutil import (mapped_bytes, read_all, run_children, run_together, start_child,
                      unique_name, wait_child)

SIZE = 8 << 20   # small caches: 8 MiB (max_value 512 KiB)


class CacheTestCase(unittest.TestCase):
    def setUp(self):
        self.name = unique_name(self.id().rsplit(".", 1)[-1][:40])
        self.cache = shmcache.Cache(self.name, size=SIZE)

    def tearDown(self):
        self.cache.close()
        shmcache.destroy(self.name)


class TestValues(CacheTestCase):
    def test_types_round_trip(self):
        c = self.cache
        values = [b"bytes", b"", 0, 42, -7, 2**64 - 1, 2**64, 2**200, -(2**70), "text",
                  "", "h\u00e9llo \u2603", [1, "two", b"3"], {"a": (1, 2)}, None, True, False,
                  1.5, float("inf"), {1, 2, 3}, "\udcff lone surrogate", bytearray(b"ba")]
        for v in values:
            c.set("k", v)
            got = c.get("k")
            self.assertEqual(got, v)
            self.assertIs(type(got), type(v))

    def test_native_encodings(self):
        c = self.cache
        c.set("b", b"\x00\xffraw")
        self.assertEqual(c.get_raw("b"), (b"\x00\xffraw", shmcache.FLAG_BYTES))
        c.set("i", 1234)
        self.assertEqual(c.get_raw("i"), (b"1234", shmcache.FLAG_INT))
        c.set("n", -5)
        self.assertEqual(c.get_raw("n"), (b"-5", shmcache.FLAG_INT))
        c.set("s", "\u00e9")
        self.assertEqual(c.get_raw("s"), ("\u00e9".encode(), shmcache.FLAG_TEXT))
        c.set("p", [1])
        data, flags = c.get_raw("p")
        self.assertEqual(flags, shmcache.FLAG_PICKLE)
        self.assertEqual(pickle.loads(data), [1])
        c.set("t", True)   # bool is not stored as an int
        self.assertEqual(c.get_raw("t")[1], shmcache.FLAG_PICKLE)
        self.assertIsNone(c.get_raw("missing"))

    def test_set_raw(self):
        c = self.cache
        c.set_raw("r", b"77", shmcache.FLAG_INT)
        self.assertEqual(c.get("r"), 77)
        c.set_raw("r", bytearray(b"abc"))
        self.assertEqual(c.get("r"), b"abc")
        c.set_raw("r", memoryview(b"xyz"), 12345)   # another client's flags
        self.assertEqual(c.get("r"), b"xyz")
        self.assertEqual(c.get_raw("r"), (b"xyz", 12345))
        c.set_raw("r", b"1x", shmcache.FLAG_INT)
        with self.assertRaises(ValueError):
            c.get("r")

    def test_default_and_keys(self):
        c = self.cache
        self.assertIsNone(c.get("nope"))
        self.assertEqual(c.get("nope", 5), 5)
        c.set(b"\x00bin\xff", 1)
        self.assertEqual(c.get(b"\x00bin\xff"), 1)
        c.set("\u00e9", 2)   # str keys are UTF-8
        self.assertEqual(c.get("\u00e9".encode()), 2)
        c.set("x" * 250, 3)
        self.assertEqual(c.get("x" * 250), 3)

    def test_sizes_around_guesses(self):
        c = self.cache
        for n in (0, 1, 511, 512, 2047, 2048, 2049, 16383, 16384, 16385, 65535, 65536,
                  100_000, c.max_value):
            v = os.urandom(n)
            c.set("v", v)
            self.assertEqual(c.get("v"), v, n)
            self.assertEqual(c.get_raw("v"), (v, 0))
            self.assertEqual(c.gets("v")[0], v)
        with self.assertRaises(shmcache.ValueLengthError):
            c.set("v", b"x" * (c.max_value + 1))

    def test_add_replace_delete_exists(self):
        c = self.cache
        self.assertFalse(c.replace("k", 1))
        self.assertTrue(c.add("k", 1))
        self.assertFalse(c.add("k", 2))
        self.assertEqual(c.get("k"), 1)
        self.assertTrue(c.replace("k", 3))
        self.assertEqual(c.get("k"), 3)
        self.assertTrue(c.exists("k"))
        self.assertIn("k", c)
        self.assertTrue(c.delete("k"))
        self.assertFalse(c.delete("k"))
        self.assertNotIn("k", c)
        self.assertIsNone(c.set("k", 1))

    def test_gets_cas(self):
        c = self.cache
        self.assertEqual(c.gets("k"), (None, None))
        self.assertEqual(c.gets("k", 0), (0, None))
        self.assertIsNone(c.cas("k", 1, 12345))
        c.set("k", "a")
        v, tok = c.gets("k")
        self.assertEqual(v, "a")
        self.assertIsInstance(tok, int)
        self.assertGreater(tok, 0)
        tok2 = c.cas("k", "b", tok)
        self.assertTrue(tok2)
        self.assertNotEqual(tok2, tok)
        self.assertIs(c.cas("k", "c", tok), False)   # stale
        self.assertEqual(c.get("k"), "b")
        tok3 = c.cas("k", "c", tok2)                # chained with the returned token
        self.assertTrue(tok3)
        self.assertEqual(c.gets("k"), ("c", tok3))
        self.assertIs(c.delete_cas("k", tok2), False)
        self.assertIs(c.delete_cas("k", tok3), True)
        self.assertIsNone(c.delete_cas("k", tok3))

    def test_cas_value(self):
        c = self.cache
        self.assertEqual(c.cas_value("k", shmcache.ABSENT, 1), (True, None))
        self.assertEqual(c.cas_value("k", shmcache.ABSENT, 2), (False, 1))
        self.assertEqual(c.cas_value("k", 5, 2), (False, 1))
        self.assertEqual(c.cas_value("k", 1, 2), (True, None))
        self.assertEqual(c.get("k"), 2)
        self.assertEqual(c.cas_value("other", 1, 2), (False, shmcache.ABSENT))
        big = b"z" * 100_000
        c.set("big", big)
        self.assertEqual(c.cas_value("big", b"nope", b"x"), (False, big))
        self.assertEqual(c.cas_value("big", big, b"x"), (True, None))

    def test_incr_decr(self):
        c = self.cache
        self.assertIsNone(c.incr("n"))
        self.assertIsNone(c.decr("n"))
        self.assertEqual(c.incr("n", 5, initial=10), 10)   # created holding initial
        self.assertEqual(c.get("n"), 10)
        self.assertEqual(c.get_raw("n"), (b"10", shmcache.FLAG_INT))
        self.assertEqual(c.incr("n"), 11)
        self.assertEqual(c.incr("n", 9), 20)
        self.assertEqual(c.decr("n", 5), 15)
        self.assertEqual(c.decr("n", 100), 0)   # stops at 0
        c.set("n", 2**64 - 1)
        self.assertEqual(c.incr("n"), 0)        # wraps like memcached
        c.set("s", "abc")
        with self.assertRaises(shmcache.NotANumberError):
            c.incr("s")
        c.set("neg", -3)
        with self.assertRaises(shmcache.NotANumberError):
            c.incr("neg")
        with self.assertRaises(ValueError):
            c.incr("n", -1)
        with self.assertRaises(TypeError):
            c.incr("n", 1.5)

    def test_append_prepend(self):
        c = self.cache
        self.assertFalse(c.append("a", b"x"))
        c.set("a", b"mid")
        self.assertTrue(c.append("a", b">"))
        self.assertTrue(c.prepend("a", b"<"))
        self.assertEqual(c.get("a"), b"<mid>")
        with self.assertRaises(TypeError):
            c.append("a", "str")

    def test_ttl_touch(self):
        c = self.cache
        c.set("t", 1, ttl=0.15)
        left = c.ttl("t")
        self.assertGreater(left, 0)
        self.assertLessEqual(left, 0.15)
        c.set("forever", 1)
        self.assertEqual(c.ttl("forever"), float("inf"))
        c.set("forever2", 1, ttl=0)
        self.assertEqual(c.ttl("forever2"), float("inf"))
        self.assertIsNone(c.ttl("missing"))
        c.set("tiny", 1, ttl=1e-9)        # a positive TTL is at least 1 ms, never "forever"
        self.assertLessEqual(c.ttl("tiny") or 0, 0.001)
        c.set("touched", 1, ttl=5)
        self.assertTrue(c.touch("touched", 60))
        self.assertGreater(c.ttl("touched"), 30)
        self.assertTrue(c.touch("touched"))   # None: never expires
        self.assertEqual(c.ttl("touched"), float("inf"))
        self.assertFalse(c.touch("missing", 1))
        time.sleep(0.2)
        self.assertIsNone(c.get("t"))
        self.assertNotIn("t", c)
        self.assertIsNone(c.get("tiny"))
        self.assertEqual(c.get("touched"), 1)

    def test_many(self):
        c = self.cache
        data = {}
        for i in range(700):   # more than one chunk of get_many
            size = (0, 10, 3000, 20000)[i % 4]
            data["k%d" % i] = os.urandom(size) if i % 3 else i
        data[b"bytes-key"] = "v"
        self.assertEqual(c.set_many(data, ttl=60), [])
        keys = list(data) + ["absent1", "absent2"]
        got = c.get_many(keys)
        self.assertEqual(got, data)
        self.assertEqual(c.get_many(iter(["k1", "absent1"])), {"k1": data["k1"]})
        self.assertEqual(c.get_many([]), {})
        failed = c.set_many({"ok": 1, "big": b"x" * (c.max_value + 1)})
        self.assertEqual(failed, ["big"])
        self.assertEqual(c.get("ok"), 1)
        self.assertEqual(c.delete_many(["k1", "k2", "absent1"]), 2)
        self.assertEqual(c.delete_many([]), 0)
        self.assertNotIn("k1", c)

    def test_flush_stats_info_verify(self):
        c = self.cache
        for i in range(50):
            c.set("k%d" % i, i)
        c.get("k1")
        c.get("nope")
        st = c.stats()
        self.assertGreaterEqual(st["sets"], 50)
        self.assertGreaterEqual(st["hits"], 1)
        self.assertGreaterEqual(st["misses"], 1)
        self.assertIn("fills", st)
        info = c.info()
        self.assertEqual(info["size"], SIZE)
        self.assertEqual(info["max_key"], c.max_key)
        c.flush()
        self.assertEqual(c.get_many(["k%d" % i for i in range(50)]), {})
        rep = c.verify()
        self.assertTrue(rep["ok"], rep)
        self.assertEqual(rep["first_error"], "")

    def test_max_items(self):
        name = "%s-mi" % self.name
        c = shmcache.Cache(name, 4 << 20, max_items=1000, exclusive=True)
        try:
            self.assertEqual(c.info()["max_items"], 1000)
            self.assertGreaterEqual(c.info()["index_slots"], 1000)
            for i in range(3000):
                c.set("k%d" % i, i)   # more than the index holds: evicted, never refused
            self.assertLessEqual(c.stats()["items"], c.info()["index_slots"])
            self.assertEqual(c.get("k2999"), 2999)
            with self.assertRaises(shmcache.MismatchError):
                shmcache.Cache(name, max_items=999)
            with self.assertRaises(ValueError):
                shmcache.Cache(name, max_items=-1)
        finally:
            c.close()
            shmcache.destroy(name)

    def test_custom_serializers(self):
        py = shmcache.Cache(self.name, serializer=shmcache.PickleSerializer())
        try:
            for v in (b"b", 5, "s", [1], None):
                py.set("k", v)   # the Python serializer writes what the C one reads
                self.assertEqual(self.cache.get("k"), v)
                self.cache.set("k", v)
                self.assertEqual(py.get("k"), v)
            py.set("n", 1)
            self.assertEqual(py.incr("n"), 2)
        finally:
            py.close()
        raw = shmcache.Cache(self.name, serializer=shmcache.RawSerializer)
        try:
            raw.set("k", b"x")
            self.assertEqual(raw.get("k"), b"x")
            with self.assertRaises(TypeError):
                raw.set("k", "str")
            self.cache.set("k", 5)
            self.assertEqual(raw.get("k"), b"5")
        finally:
            raw.close()

        class Bad:
            def dumps(self, v):
                return "not a tuple"

            def loads(self, d, f):
                raise RuntimeError("no")

        bad = shmcache.Cache(self.name, serializer=Bad())
        try:
            with self.assertRaises(TypeError):
                bad.set("k", 1)
            with self.assertRaises(RuntimeError):
                bad.get("k")
        finally:
            bad.close()
        with self.assertRaises(TypeError):
            shmcache.Cache(self.name, serializer=object())

    def test_pickle_protocol(self):
        c = shmcache.Cache(self.name, pickle_protocol=2)
        try:
            c.set("p", [1])
            self.assertEqual(c.get_raw("p")[0][:2], b"\x80\x02")
        finally:
            c.close()


class TestErrors(CacheTestCase):
    def test_bad_keys(self):
        c = self.cache
        for key in (1, None, 1.5, ["k"], bytearray(b"k")):
            with self.assertRaises(TypeError):
                c.get(key)
            with self.assertRaises(TypeError):
                c.set(key, 1)
        for op in (lambda k: c.get(k), lambda k: c.set(k, 1), lambda k: c.delete(k),
                   lambda k: c.exists(k), lambda k: c.incr(k), lambda k: c.touch(k),
                   lambda k: c.gets(k), lambda k: c.add(k, 1), lambda k: c.ttl(k)):
            with self.assertRaises(shmcache.KeyLengthError):
                op("")
            with self.assertRaises(shmcache.KeyLengthError):
                op("x" * 251)
            with self.assertRaises(ValueError):   # KeyLengthError is a ValueError too
                op(b"y" * 1000)
        with self.assertRaises(UnicodeEncodeError):
            c.set("\udcff", 1)
        with self.assertRaises(TypeError):
            c.get_many(5)
        with self.assertRaises(TypeError):
            c.get_many(["ok", 5])
        with self.assertRaises(shmcache.KeyLengthError):
            c.get_many(["ok", ""])
        with self.assertRaises(shmcache.KeyLengthError):
            c.set_many({"": 1})
        with self.assertRaises(TypeError):
            c.set_many({1: 1})
        with self.assertRaises(TypeError):
            c.set_many(5)
        with self.assertRaises(TypeError):
            c.delete_many([None])

    def test_bad_arguments(self):
        c = self.cache
        with self.assertRaises(ValueError):
            c.set("k", 1, ttl=-1)
        with self.assertRaises(ValueError):
            c.set("k", 1, ttl=float("nan"))
        with self.assertRaises(TypeError):
            c.set("k", 1, ttl="10")
        with self.assertRaises(TypeError):
            c.set("k", 1, ttl=True)
        with self.assertRaises(TypeError):
            c.set("k")
        with self.assertRaises(ValueError):
            c.cas("k", 1, 0)
        with self.assertRaises(ValueError):
            c.cas("k", 1, -1)
        with self.assertRaises(ValueError):
            c.cas("k", 1, 2**64)
        with self.assertRaises(TypeError):
            c.set_raw("k", "str")
        with self.assertRaises(ValueError):
            c.set_raw("k", b"", 2**32)
        with self.assertRaises(TypeError):
            c.get_or_fill("k", "not callable")
        huge = 10**100000          # more digits than int -> str allows: pickled
        c.set("huge", huge)
        self.assertEqual(c.get("huge"), huge)
        c.set("k", 1, ttl=10**400)   # practically forever
        self.assertGreater(c.ttl("k"), 10**6)

        class Unpicklable:
            def __reduce__(self):
                raise RuntimeError("cannot pickle me")

        with self.assertRaises(RuntimeError):
            c.set("k", Unpicklable())
        with self.assertRaises(Exception):
            c.set("k", lambda: 1)

    def test_open_errors(self):
        with self.assertRaises(shmcache.InvalidNameError):
            shmcache.Cache("bad/name")
        with self.assertRaises(shmcache.InvalidNameError):
            shmcache.Cache("")
        with self.assertRaises(shmcache.InvalidNameError):
            shmcache.Cache("nul\x00name")
        with self.assertRaises(TypeError):
            shmcache.Cache(b"bytes-name")
        missing = unique_name("missing")
        with self.assertRaises(shmcache.CacheNotFoundError) as cm:
            shmcache.Cache(missing, create=False)
        self.assertIsInstance(cm.exception, FileNotFoundError)
        with self.assertRaises(shmcache.CacheExistsError):
            shmcache.Cache(self.name, exclusive=True)
        with self.assertRaises(shmcache.MismatchError):
            shmcache.Cache(self.name, size=SIZE * 2)
        with self.assertRaises(ValueError):
            shmcache.Cache(self.name, create=False, exclusive=True)
        with self.assertRaises((shmcache.TooSmallError, shmcache.InvalidArgumentError)):
            shmcache.Cache(unique_name("small"), size=1024)
        with self.assertRaises(ValueError):
            shmcache.Cache(self.name, size=-1)
        attached = shmcache.Cache(self.name, create=False)
        attached.set("a", 1)
        self.assertEqual(self.cache.get("a"), 1)
        attached.close()
        self.assertFalse(shmcache.destroy(missing))

    def test_prefault(self):
        # The whole cache is mapped into this process at open (smaps Rss of
        # its mappings), and the data is the data.
        self.cache.set("p", b"before")
        pre = shmcache.Cache(self.name, create=False, prefault=True)
        self.assertGreaterEqual(mapped_bytes(self.name), SIZE)
        self.assertEqual(pre.get("p"), b"before")
        pre.close()

    def test_exception_attributes(self):
        try:
            self.cache.get("")
        except shmcache.ShmcacheError as e:
            self.assertEqual(e.status, shmcache._shmcache.STATUS_EKEYLEN)
            self.assertEqual(e.status_name, "EKEYLEN")
            self.assertEqual(str(e), shmcache.strerror(e.status))
        self.assertTrue(issubclass(shmcache.TimeoutError, TimeoutError))
        self.assertTrue(issubclass(shmcache.LockTimeoutError, shmcache.ShmcacheError))
        self.assertTrue(issubclass(shmcache.LockLostError, shmcache.NotOwnerError))
        self.assertEqual(shmcache.STATUS_NAMES[0], "OK")

    def test_closed(self):
        c = shmcache.Cache(self.name)
        with c as same:
            self.assertIs(same, c)
            c.set("k", 1)
        self.assertTrue(c.closed)
        for op in (lambda: c.get("k"), lambda: c.set("k", 1), lambda: c.stats(),
                   lambda: c.get_many(["k"]), lambda: c.lock_try("l")):
            with self.assertRaises(ValueError):
                op()
        c.close()   # twice is fine
        with self.assertRaises(ValueError):
            with c:
                pass
        self.assertEqual(self.cache.get("k"), 1)
        with self.assertRaises(TypeError):
            pickle.dumps(self.cache)

    def test_close_while_other_thread_inside(self):
        # A thread waits inside lock_acquire (GIL released) while the handle
        # is closed: the close is deferred until it leaves, nothing crashes.
        c = shmcache.Cache(self.name)
        holder = self.cache.lock("busy")
        holder.acquire()
        outcome = []
        started = threading.Event()

        def waiter():
            try:
                started.set()
                c.lock_acquire("busy", timeout=1.0)
                outcome.append("acquired")
            except shmcache.TimeoutError:
                outcome.append("timeout")
            except Exception as e:   # noqa: BLE001
                outcome.append(repr(e))

        t = threading.Thread(target=waiter)
        t.start()
        started.wait(5)
        time.sleep(0.2)
        c.close()
        self.assertTrue(c.closed)
        t.join(5)
        self.assertFalse(t.is_alive())
        holder.release()
        self.assertEqual(outcome, ["timeout"])
        with self.assertRaises(ValueError):
            c.get("k")


class TestThreads(CacheTestCase):
    def test_threads_share_a_handle(self):
        c = self.cache
        errors = []

        def work(tid):
            try:
                for i in range(300):
                    c.set("t%d-%d" % (tid, i), i)
                    if c.get("t%d-%d" % (tid, i)) != i:
                        errors.append((tid, i))
                    c.incr("shared", initial=0)
                    c.get("big")
            except Exception as e:   # noqa: BLE001
                errors.append(repr(e))

        c.set("big", b"b" * 200_000)   # copies without the GIL
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        # incr with initial=0 creates holding 0, so one of the 1200 increments
        # is the creation.
        self.assertEqual(c.get("shared"), 4 * 300 - 1)


class TestFork(CacheTestCase):
    def test_handle_opened_before_fork(self):
        c = self.cache
        c.set("from-master", "hello")

        def child(i):
            assert c.get("from-master") == "hello"
            c.set("from-child-%d" % i, i)
            return os.getpid()

        pids = run_children(4, child)
        self.assertEqual(len(set(pids)), 4)
        for i in range(4):
            self.assertEqual(c.get("from-child-%d" % i), i)

    def test_incr_across_processes(self):
        c = self.cache
        c.set("counter", 0)

        def child(i):
            for _ in range(500):
                c.incr("counter")
            return True

        pid = start_child(lambda: None)   # a finished process must not matter
        self.assertEqual(wait_child(pid), 0)
        results = run_together(4, child)
        self.assertEqual(results, [True] * 4)
        self.assertEqual(c.get("counter"), 2000)

    def test_add_race_has_one_winner(self):
        c = self.cache
        for round_ in range(5):
            results = run_children(4, lambda i: c.add("race-%d" % round_, i))
            self.assertEqual(sum(results), 1, results)

    def test_cas_loop_across_processes(self):
        c = self.cache
        c.set("doc", [])

        def child(i):
            for j in range(50):
                while True:
                    v, tok = c.gets("doc")
                    if c.cas("doc", v + [(i, j)], tok):
                        break
            return True

        run_children(3, child)
        self.assertEqual(len(c.get("doc")), 150)

    def test_child_opens_its_own_handle(self):
        name = self.name

        def child(i):
            with shmcache.Cache(name, create=False) as own:
                own.set("own-%d" % i, i)
            return True

        run_children(3, child)
        self.assertEqual(self.cache.get_many(["own-0", "own-1", "own-2"]),
                         {"own-0": 0, "own-1": 1, "own-2": 2})


class TestSingleflight(CacheTestCase):
    def test_get_or_fill_basic(self):
        c = self.cache
        calls = []

        def fill():
            calls.append(1)
            return {"value": 1}

        self.assertEqual(c.get_or_fill("k", fill, ttl=60), {"value": 1})
        self.assertEqual(c.get_or_fill("k", fill, ttl=60), {"value": 1})
        self.assertEqual(len(calls), 1)
        self.assertEqual(c.get("k"), {"value": 1})
        self.assertGreater(c.ttl("k"), 30)
        self.assertEqual(c.get_or_fill("n", lambda: 41), 41)
        self.assertEqual(c.incr("n"), 42)       # stored natively
        self.assertEqual(c.get_or_fill("none", lambda: None), None)
        self.assertIn("none", c)

    def test_one_computation_across_processes(self):
        c = self.cache
        r, w = os.pipe()

        def child(i):
            os.close(r)

            def compute():
                os.write(w, b"x")      # one byte per computation
                time.sleep(0.2)
                return "value-of-k"

            return c.get_or_fill("k", compute, ttl=60)

        try:
            results = run_together(6, child)
            os.close(w)
            w = -1
            computed = read_all(r)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        self.assertEqual(results, ["value-of-k"] * 6)
        self.assertEqual(computed, b"x")
        self.assertGreaterEqual(c.stats()["fill_waits"], 1)

    def test_fill_error_reaches_waiters(self):
        c = self.cache

        def child(i):
            def compute():
                time.sleep(0.2)
                raise ValueError("boom \u2603 " + "x" * 200)

            try:
                # error_ttl: a worker that arrives after the abort gets the
                # error too instead of leading again, whatever the timing.
                c.get_or_fill("bad", compute, error_ttl=30)
            except shmcache.FillError as e:
                return ("waiter", e.error, e.message)
            except ValueError as e:
                return ("leader", str(e)[:6])

        results = run_together(4, child)
        leaders = [r for r in results if r[0] == "leader"]
        waiters = [r for r in results if r[0] == "waiter"]
        self.assertEqual(len(leaders), 1, results)
        self.assertEqual(leaders[0][1], "boom \u2603")
        for _, error, message in waiters:
            self.assertEqual(error, shmcache.FILL_ERROR_PYTHON)
            self.assertTrue(message.startswith("ValueError: boom \u2603 xxx"), message)
            self.assertLess(len(message.encode()), 96)
        self.assertNotIn("bad", c)
        with self.assertRaises(shmcache.FillError):
            c.get_or_fill("bad", lambda: 1)   # replayed for error_ttl

    def test_fill_error_ttl(self):
        c = self.cache

        def fail():
            raise KeyError("nope")

        with self.assertRaises(KeyError):
            c.get_or_fill("e", fail, error_ttl=5)
        with self.assertRaises(shmcache.FillError) as cm:
            c.get_or_fill("e", lambda: 1)     # the error is replayed
        self.assertIn("KeyError", cm.exception.message)
        with self.assertRaises(KeyError):
            c.get_or_fill("e2", fail)         # error_ttl 0: not replayed
        self.assertEqual(c.get_or_fill("e2", lambda: 2), 2)

    def test_leader_value_too_large(self):
        c = self.cache
        big = b"x" * (c.max_value + 1)
        self.assertEqual(c.get_or_fill("big", lambda: big), big)
        self.assertNotIn("big", c)

    def test_fill_result_not_serializable(self):
        c = self.cache
        with self.assertRaises(Exception):
            c.get_or_fill("u", lambda: (lambda: 1))   # a lambda does not pickle
        self.assertNotIn("u", c)
        self.assertEqual(c.get_or_fill("u", lambda: "fine"), "fine")

    def test_early_refresh(self):
        c = self.cache
        c.set("r", 1, ttl=1)
        # Less than `refresh` seconds of TTL left: this caller refreshes it.
        self.assertEqual(c.get_or_fill("r", lambda: 2, ttl=60, refresh=5), 2)
        self.assertEqual(c.get("r"), 2)
        self.assertEqual(c.get_or_fill("r", lambda: 3, ttl=60, refresh=5), 2)

    def test_nested_fills(self):
        c = self.cache

        def outer():
            return c.get_or_fill("inner", lambda: 1) + 1

        self.assertEqual(c.get_or_fill("outer", outer), 2)
        self.assertEqual(c.get("inner"), 1)

    def test_threads_one_computation(self):
        c = self.cache
        calls = []
        results = []
        start = threading.Event()

        def compute():
            calls.append(1)
            time.sleep(0.2)
            return "v"

        def work():
            start.wait(5)
            results.append(c.get_or_fill("tk", compute))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        start.set()
        for t in threads:
            t.join(30)
        self.assertEqual(results, ["v"] * 4)
        self.assertEqual(len(calls), 1)


class TestLocks(CacheTestCase):
    def test_lock_context_manager(self):
        c = self.cache
        with c.lock("job", timeout=1) as token:
            self.assertIsInstance(token, int)
            self.assertGreater(token, 0)
            self.assertEqual(run_children(1, lambda i: c.lock_try("job")), [None])
        with c.lock("job") as token2:
            self.assertGreater(token2, token)
        self.assertIsNotNone(c.lock_try("job"))

    def test_lock_timeout_in_other_process(self):
        c = self.cache

        def child(i):
            try:
                with c.lock("job", timeout=0.1):
                    return "acquired"
            except shmcache.LockTimeoutError as e:
                return ("timeout", e.status_name, isinstance(e, TimeoutError))

        def child_nowait(i):
            try:
                c.lock("job", timeout=0).acquire()
                return "acquired"
            except shmcache.LockTimeoutError as e:
                return ("timeout", e.status_name)

        with c.lock("job"):
            self.assertEqual(run_children(1, child), [("timeout", "ETIMEDOUT", True)])
            self.assertEqual(run_children(1, child_nowait), [("timeout", "EBUSY")])
            self.assertEqual(run_children(1, lambda i: c.lock_try("job")), [None])
        self.assertEqual(run_children(1, child), ["acquired"])

    def test_mutual_exclusion_across_processes(self):
        c = self.cache
        c.set("unsafe", 0)

        def child(i):
            for _ in range(100):
                with c.lock("counter-lock", timeout=20):
                    v = c.get("unsafe")   # read-modify-write, safe only under the lock
                    c.set("unsafe", v + 1)
            return True

        results = run_together(4, child, 60)
        self.assertEqual(results, [True] * 4)
        self.assertEqual(c.get("unsafe"), 400)

    def test_lease_lost(self):
        c = self.cache
        lock = c.lock("leased", lease=0.1)
        lock.acquire()
        # Another process takes it over once the lease ends.
        self.assertTrue(run_children(1, lambda i: c.lock_acquire("leased", timeout=5) > 0)[0])
        with self.assertRaises(shmcache.LockLostError) as cm:
            lock.release()
        self.assertEqual(cm.exception.status_name, "ENOTOWNER")
        self.assertFalse(lock.locked)
        with self.assertRaises(shmcache.LockLostError):
            with c.lock("leased2", lease=0.05):
                time.sleep(0.1)
                run_children(1, lambda i: c.lock_acquire("leased2", timeout=5))

    def test_extend(self):
        c = self.cache
        lock = c.lock("ext", lease=0.5)
        with lock:
            lock.extend(30)
            time.sleep(0.6)
            self.assertEqual(run_children(1, lambda i: c.lock_try("ext")), [None])
        self.assertIsNotNone(c.lock_try("ext"))

    def test_dead_holder_releases(self):
        c = self.cache

        def die_holding():
            c.lock_acquire("dead")
            os._exit(0)

        self.assertEqual(wait_child(start_child(die_holding)), 0)
        t0 = time.monotonic()
        with c.lock("dead", timeout=5):
            pass
        self.assertLess(time.monotonic() - t0, 4)

    def test_threads_wait_without_the_gil(self):
        c = self.cache
        order = []
        lock = c.lock("gil")
        lock.acquire()

        def other():
            with c.lock("gil", timeout=10):
                order.append("other")

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.1)          # `other` sleeps in the library; we still run
        order.append("main")
        lock.release()
        t.join(10)
        self.assertEqual(order, ["main", "other"])

    def test_lock_misuse(self):
        c = self.cache
        lock = c.lock("m")
        with self.assertRaises(RuntimeError):
            lock.release()
        lock.acquire()
        with self.assertRaises(RuntimeError):
            lock.acquire()
        lock.release()
        with self.assertRaises(TypeError):
            c.lock(5).acquire()
        with self.assertRaises(shmcache.KeyLengthError):
            c.lock("").acquire()
        with self.assertRaises(ValueError):
            c.lock("m", timeout=-1).acquire()
        with self.assertRaises(shmcache.NotOwnerError):
            c.lock_release("m", 12345)


if __name__ == "__main__":
    unittest.main()
