"""WSGI entry point: djangoapp.wsgi:application.

Under gunicorn with preload_app (gunicorn.conf.py) or uWSGI without
lazy-apps (uwsgi.ini), this module is imported once, in the master, before
it forks the workers: the cache opened below is then opened in the master and
every worker inherits the handle (each takes its own participant slot on its
first call).  Under uWSGI with lazy-apps (uwsgi-lazy.ini) or gunicorn
without preload, each worker imports it, and opens the cache, after the
fork.  Both work; opening in the master maps the cache once.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")

from django.core.cache import cache  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

cache.get("-")            # any call opens this process's handle (creating the cache if need be)
OPENED_IN = os.getpid()   # reported by /info/
