"""Settings of the test project: several cache aliases on one shmcache cache
(distinguished by KEY_PREFIX and VERSION), no database."""

import os

# One cache per test run; test_django.py destroys it at the end.
SHMCACHE_NAME = os.environ.setdefault("SHMCACHE_DJANGO_TEST_NAME",
                                      "pyt-django-%d" % os.getpid())

SECRET_KEY = "shmcache-test-project"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "djproject.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True

CACHES = {
    "default": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME,
        "TIMEOUT": 60,
        "OPTIONS": {"SIZE": 8 * 1024 * 1024, "FILL_WAIT": 20},
    },
    # The same cache seen through other key prefixes and versions.
    "prefixed": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME,
        "KEY_PREFIX": "p1",
        "VERSION": 2,
        "TIMEOUT": None,
    },
    "other_prefix": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME,
        "KEY_PREFIX": "p2",
    },
    "fill_errors": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME,
        "OPTIONS": {"FILL_ERROR_TTL": 30, "FILL_WAIT": 20},
    },
    "custom_key_func": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME,
        "KEY_FUNCTION": "djproject.views.custom_key_func",
    },
    "python_serializer": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME,
        "OPTIONS": {"serializer": "shmcache.PickleSerializer", "MAX_ENTRIES": 10},
    },
    # A cache of its own with a small max_key (validate_key's byte limit).
    "small_keys": {
        "BACKEND": "shmcache.django.ShmCache",
        "LOCATION": SHMCACHE_NAME + "-small-keys",
        "OPTIONS": {"SIZE": 4 * 1024 * 1024, "MAX_KEY": 64, "MAX_VALUE": 64 * 1024},
    },
}
