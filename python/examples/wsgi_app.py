"""A plain WSGI application on the shmcache module, without Django.

    gunicorn -c python/examples/gunicorn.conf.py wsgi_app:application
    uwsgi --ini python/examples/uwsgi.ini --module wsgi_app:application --http-socket 127.0.0.1:8000

GET /expensive/<key>/?ms=300  computed once for all workers (get_or_fill)
GET /hits/                    a counter shared by all workers (incr)
GET /info/?ms=0                this worker's pid and where the cache was opened
"""

import json
import os
import time

import shmcache

# Opened at import: in the master when the server preloads the app (gunicorn
# preload_app, uWSGI without lazy-apps), else in each worker.
cache = shmcache.Cache(os.environ.get("SHMCACHE_NAME", "wsgi-example"),
                       size=int(os.environ.get("SHMCACHE_SIZE", 64 << 20)))
OPENED_IN = os.getpid()
COMPUTE_LOG = os.environ.get("COMPUTE_LOG")


def _log_computation(key):
    if COMPUTE_LOG:
        fd = os.open(COMPUTE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, ("%s %d\n" % (key, os.getpid())).encode())
        finally:
            os.close(fd)


def expensive(key, ms):
    def compute():
        _log_computation(key)
        time.sleep(ms / 1000)
        return json.dumps({"key": key, "computed_by": os.getpid()}).encode()

    return cache.get_or_fill(b"expensive:" + key.encode(), compute, ttl=300, wait=30,
                             fill_timeout=30)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    status, body = "200 OK", b""
    if path == "/ping/":
        body = b"pong"
    elif path == "/info/":
        time.sleep(int(query.get("ms", "0")) / 1000)
        body = json.dumps({"pid": os.getpid(), "ppid": os.getppid(),
                           "opened_in": OPENED_IN}).encode()
    elif path.startswith("/expensive/") and path.endswith("/") and len(path) > 12:
        body = expensive(path[len("/expensive/"):-1], int(query.get("ms", "300")))
    elif path == "/hits/":
        body = b"%d" % cache.incr("hits", 1, initial=1)
    else:
        status, body = "404 Not Found", b"not found\n"
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]
