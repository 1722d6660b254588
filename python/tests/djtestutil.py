"""What the Django tests (test_django.py, test_django_fast.py, test_tier.py)
share: importing Django (a missing Django is named, and is a failure under
CI=true where the test asks for it), and the cache API tests that hold for
every backend.  Found through PYTHONPATH, which `meson test` points at
python/tests (see python/src/meson.build)."""

import os
import sys


def import_django():
    """Returns the django module.  If it is not importable, prints why and
    exits: with status 1 when CI=true, else 77 (a skip)."""
    try:
        import django
    except ImportError:
        # Never a silent skip: name the interpreter, and fail in CI.
        print("Django is not importable by %s (the interpreter meson built the binding for; "
              "Debian: apt-get install python3-django, or configure with "
              "-Dpython=/usr/bin/python3)" % sys.executable)
        if os.environ.get("CI") == "true":
            print("CI=true: a missing Django is a failure, not a skip")
            sys.exit(1)
        print("skipped")
        sys.exit(77)
    return django


class Point:
    """A user-defined class, stored by pickling."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class CacheAPITests:
    """Django's cache API on the default cache, as every backend must answer
    it; mixed into a unittest.TestCase whose setUp clears the cache.  The
    settings have a cache "prefixed" with VERSION 2.  A test module extends
    a test with what holds for its backend (super(), then more).  The tests
import django.core.cache themselves: this module is imported before the
settings are made."""

    def test_basic_api(self):
        from django.core.cache import cache
        self.assertIsNone(cache.get("k"))
        self.assertEqual(cache.get("k", "dflt"), "dflt")
        cache.set("k", "v")
        self.assertEqual(cache.get("k"), "v")
        self.assertTrue(cache.has_key("k"))
        self.assertIn("k", cache)
        self.assertFalse(cache.add("k", "other"))
        self.assertTrue(cache.add("new", "n"))
        self.assertEqual(cache.get("k"), "v")
        self.assertTrue(cache.delete("k"))
        self.assertFalse(cache.delete("k"))
        self.assertNotIn("k", cache)
        cache.set("none", None)
        self.assertIsNone(cache.get("none", "dflt"))   # a stored None is a value
        self.assertTrue(cache.has_key("none"))

    def test_many(self):
        from django.core.cache import cache
        data = {"a": 1, "b": "two", "c": [3]}
        self.assertEqual(cache.set_many(data), [])
        self.assertEqual(cache.get_many(["a", "b", "c", "missing"]), data)
        self.assertEqual(cache.get_many([]), {})
        cache.delete_many(["a", "b"])
        self.assertEqual(cache.get_many(["a", "b", "c"]), {"c": [3]})

    def test_versions(self):
        from django.core.cache import cache, caches
        cache.set("v", "one")
        cache.set("v", "two", version=2)
        self.assertEqual(cache.get("v"), "one")
        self.assertEqual(cache.get("v", version=2), "two")
        self.assertIsNone(cache.get("v", version=3))
        self.assertEqual(cache.incr_version("v"), 2)
        self.assertEqual(cache.get("v", version=2), "one")
        self.assertIsNone(cache.get("v"))
        self.assertEqual(cache.decr_version("v", version=2), 1)
        self.assertEqual(cache.get("v"), "one")
        with self.assertRaises(ValueError):
            cache.incr_version("missing")
        prefixed = caches["prefixed"]              # VERSION 2 in the settings
        prefixed.set("pv", 1)
        self.assertEqual(prefixed.get("pv", version=2), 1)
        self.assertIsNone(prefixed.get("pv", version=1))
