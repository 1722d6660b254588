import os

from django.core.cache import cache
from django.http import HttpResponse
from django.views.decorators.cache import cache_page

# Per process: how often each view body really ran.
CALLS = {"page": 0, "computed": 0}


def custom_key_func(key, key_prefix, version):
    return "custom-" + key


@cache_page(60)
def page(request):
    CALLS["page"] += 1
    return HttpResponse("page rendered by pid %d" % os.getpid())


def computed(request, key):
    def expensive():
        CALLS["computed"] += 1
        return "computed %s by pid %d" % (key, os.getpid())

    return HttpResponse(cache.get_or_set("computed:" + key, expensive, 60))


def hits(request):
    return HttpResponse(str(cache.incr("hits")))
