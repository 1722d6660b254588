"""What the Django tests (test_django.py, test_django_fast.py, test_tier.py)
share: importing Django (a missing Django is named, and is a failure under
CI=true where the test asks for it), and the cache API tests that hold for
every backend.  Found through PYTHONPATH, which `meson test` points at
python/tests (see python/src/meson.build)."""

import os
import sys


def import_django(ci_fails=True):
    """Returns the django module.  If it is not importable, prints why and
    exits: with status 1 when CI=true and ci_fails, else 77 (a skip)."""
    try:
        import django
    except ImportError:
        # Never a silent skip: name the interpreter, and fail in CI.
        print("Django is not importable by %s (the interpreter meson built the binding for; "
              "Debian: apt-get install python3-django, or configure with "
              "-Dpython=/usr/bin/python3)" % sys.executable)
        if ci_fails and os.environ.get("CI") == "true":
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
    it; mixed into a unittest.TestCase whose setUp clears the cache."""

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
