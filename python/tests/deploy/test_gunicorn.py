"""gunicorn (4 sync workers, python/examples/gunicorn.conf.py: the app and
its cache are loaded in the master) serving the example Django project
python/examples/djangoapp/ on a unix socket.  See deployutil.DeployCase for
the scenarios: singleflight across workers, an exact rate limit, a worker
SIGKILLed mid-request, kill -HUP."""

import unittest

import deployutil as d

d.require_gunicorn()
d.require_django()


class GunicornDjango(d.DeployCase):
    tag = "gunicorn-django"
    django = True
    opened_in_master = True

    @classmethod
    def make_server(cls, tmpdir, env):
        return d.gunicorn("djangoapp.wsgi:application", tmpdir, env)


if __name__ == "__main__":
    unittest.main(verbosity=2)
