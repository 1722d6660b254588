"""Views of the example project: an expensive page computed once for all
workers (get_or_set is singleflight), and a per-client rate limit whose
counter every worker shares (add + incr are atomic across processes)."""

import json
import os
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, JsonResponse


def ping(request):
    return HttpResponse("pong")


def info(request):
    """This worker's pid, its master's, and the pid that opened the cache.
    ?ms=N answers after N ms (to reach every worker with parallel requests)."""
    from djangoapp import wsgi
    time.sleep(int(request.GET.get("ms", "0")) / 1000)
    return JsonResponse({"pid": os.getpid(), "ppid": os.getppid(),
                         "opened_in": wsgi.OPENED_IN})


def _log_computation(key):
    if settings.COMPUTE_LOG:
        fd = os.open(settings.COMPUTE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, ("%s %d\n" % (key, os.getpid())).encode())
        finally:
            os.close(fd)


def expensive(request, key):
    """GET /expensive/<key>/?ms=300: a value that takes `ms` to compute.
    When many requests for one key arrive at once, in any workers, one
    computes it and the others wait for its value."""
    ms = int(request.GET.get("ms", "300"))

    def compute():
        _log_computation(key)
        time.sleep(ms / 1000)
        return json.dumps({"key": key, "computed_by": os.getpid()})

    return HttpResponse(cache.get_or_set("expensive:" + key, compute),
                        content_type="application/json")


def limited(request):
    """At most RATE_LIMIT requests per client (header X-Client, else the
    address) per RATE_WINDOW seconds, counted exactly across workers."""
    client = request.headers.get("X-Client") or request.META.get("REMOTE_ADDR") or "-"
    key = "ratelimit:" + "".join(c if c.isalnum() or c in ".:-" else "_" for c in client)
    while True:
        cache.add(key, 0, settings.RATE_WINDOW)     # starts the window; no-op if it runs
        try:
            count = cache.incr(key)
            break
        except ValueError:                           # the window ended in between
            continue
    if count > settings.RATE_LIMIT:
        return HttpResponse("rate limited\n", status=429)
    return HttpResponse("%d\n" % count)
