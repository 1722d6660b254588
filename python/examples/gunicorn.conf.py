"""gunicorn configuration for a WSGI app on shmcache (Django or not).

    cd python/examples && gunicorn -c gunicorn.conf.py djangoapp.wsgi:application
    cd python/examples && gunicorn -c gunicorn.conf.py wsgi_app:application

Options given on the command line (-b unix:/run/app.sock, -w 8) win over
these.  python/tests/deploy/ runs exactly this file.
"""

import os

bind = ["127.0.0.1:8000"]
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"
timeout = 60                      # a worker silent this long is killed and respawned
graceful_timeout = 30

# Import the application in the master, before it forks the workers: the
# app's module opens the cache there (djangoapp/wsgi.py, wsgi_app.py), so it
# is mapped once and every worker inherits the handle.  kill -HUP replaces
# the workers and keeps the cache and its contents (the master keeps its
# handle; the cache itself lives in /dev/shm until shmcache.destroy()).
preload_app = True

pythonpath = os.path.dirname(os.path.abspath(__file__))
