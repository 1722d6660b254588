"""The plain WSGI app python/examples/wsgi_app.py (the shmcache module
directly, no Django) under gunicorn (cache opened in the master) and under
uWSGI with lazy-apps (opened in each worker), and under gunicorn with its
workers running as nobody (when run as root).  See deployutil.DeployCase."""

import grp
import os
import pwd
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


@unittest.skipUnless(os.geteuid() == 0, "needs root: the master runs as root, its workers as nobody")
class GunicornPlainWorkersAsNobody(d.DeployCase):
    """The master (root) opens the cache, created with mode 0600 and owned
    by root, and the workers switch to nobody after the fork: they keep
    using the handle they inherited."""
    tag = "gunicorn-plain-nobody"
    django = False
    opened_in_master = True
    worker_user = "nobody"
    test_worker_killed_mid_request = None       # covered by GunicornPlain
    test_zz_hup_reload_keeps_cache = None

    @classmethod
    def make_server(cls, tmpdir, env):
        return d.gunicorn("wsgi_app:application", tmpdir, env,
                          ["--user", "nobody", "--group", grp.getgrgid(
                              pwd.getpwnam("nobody").pw_gid).gr_name])

    def test_workers_are_nobody(self):
        nobody = pwd.getpwnam("nobody").pw_uid
        for pid in self.server.workers():
            self.assertEqual(os.stat("/proc/%d" % pid).st_uid, nobody)
        st = os.stat("/dev/shm/" + self.cache_name)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, 0o600))


if __name__ == "__main__":
    unittest.main(verbosity=2)
