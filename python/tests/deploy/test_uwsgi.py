"""uWSGI (--master, 4 processes) serving the example Django project
python/examples/djangoapp/ on a unix socket, with the cache opened in the
master before the fork (uwsgi.ini, lazy-apps off) and in each worker after
it (uwsgi-lazy.ini).  See deployutil.DeployCase for the scenarios."""

import unittest

import deployutil as d

d.require_uwsgi()
d.require_django()


class UwsgiDjangoMaster(d.DeployCase):
    tag = "uwsgi-django-master"
    django = True
    opened_in_master = True

    @classmethod
    def make_server(cls, tmpdir, env):
        return d.uwsgi("uwsgi.ini", tmpdir, env)


class UwsgiDjangoLazy(d.DeployCase):
    tag = "uwsgi-django-lazy"
    django = True
    opened_in_master = False

    @classmethod
    def make_server(cls, tmpdir, env):
        return d.uwsgi("uwsgi-lazy.ini", tmpdir, env)


if __name__ == "__main__":
    unittest.main(verbosity=2)
