"""Settings of the example Django project served by gunicorn.conf.py and
uwsgi.ini (and run by python/tests/deploy/ under real servers).  Only the
cache matters here: no database, no apps."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "shmcache-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djangoapp.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True

CACHES = {
    "default": {
        "BACKEND": "shmcache.django.ShmCache",
        # The cache's name: /dev/shm/<name>.  Every worker of the host that
        # uses this name shares the cache; it outlives restarts and reloads.
        "LOCATION": os.environ.get("SHMCACHE_NAME", "djangoapp-cache"),
        "TIMEOUT": 300,
        "OPTIONS": {
            # Reserved in /dev/shm when the cache is created.
            "SIZE": int(os.environ.get("SHMCACHE_SIZE", 64 * 1024 * 1024)),
            # get_or_set(): how long the other workers wait for the one that
            # computes a missing value, and that one's deadline before another
            # takes over.  Keep them above the slowest computation.
            "FILL_WAIT": 30,
            "FILL_TIMEOUT": 30,
        },
    }
}

# views.limited(): requests per client per window.
RATE_LIMIT = int(os.environ.get("RATE_LIMIT", "100"))
RATE_WINDOW = int(os.environ.get("RATE_WINDOW", "60"))

# views.expensive() appends "<key> <pid>" here for each computation, if set,
# so that you can see that a value is computed once for all workers.
COMPUTE_LOG = os.environ.get("COMPUTE_LOG")
