"""The plain WSGI app python/examples/wsgi_app.py (the shmcache module
directly, no Django) under gunicorn (cache opened in the master) and under
uWSGI with lazy-apps (opened in each worker).  See deployutil.DeployCase."""

import unittest

import deployutil as d

d.require_gunicorn()
d.require_uwsgi()


class GunicornPlain(d.DeployCase):
    tag = "gunicorn-plain"
    django = False
    opened_in_master = True

    @classmethod
    def make_server(cls, tmpdir, env):
        return d.gunicorn("wsgi_app:application", tmpdir, env)


class UwsgiPlainLazy(d.DeployCase):
    tag = "uwsgi-plain-lazy"
    django = False
    opened_in_master = False

    @classmethod
    def make_server(cls, tmpdir, env):
        return d.uwsgi("uwsgi-lazy.ini", tmpdir, env, ["--module", "wsgi_app:application"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
