"""Helpers for the deploy suite: run a real gunicorn or uWSGI (the
configurations of python/examples/) on a unix socket in a temporary
directory, talk HTTP to it from many threads, find and kill its workers,
and stop it by PID.

A server, or Django, that is missing for the interpreter running the tests
(the one meson built the extension for) is a skip (exit status 77) with a
message saying what is missing, and a failure when CI=true.
"""

import concurrent.futures
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "..", "examples"))
CI = os.environ.get("CI") == "true"
WORKERS = 4


def require(what, ok, hint):
    """Exits 77 (skip) with a message when `ok` is false; exits 1 in CI."""
    if ok:
        return
    print("%s is not available to %s (the interpreter the extension was built for): %s"
          % (what, sys.executable, hint))
    if CI:
        print("CI=true: failing instead of skipping")
        sys.exit(1)
    print("skipped")
    sys.exit(77)


def have_module(name):
    return importlib.util.find_spec(name) is not None


def require_django():
    require("Django", have_module("django"),
            "apt-get install python3-django, or configure meson with -Dpython=/usr/bin/python3")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def children_of(pid):
    """PIDs of the live (not zombie) children of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def _stat(pid):
    """(state, start time) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def alive(pid):
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %s s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def parallel(fn, args, threads):
    """fn(*a) for each a in args on `threads` threads; results in order."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda a: fn(*a), args))


class Server:
    """A server process started with `argv` (its master), serving HTTP on the
    unix socket `sock`.  Stopped by PID."""

    def __init__(self, name, argv, sock, tmpdir, env):
        self.name, self.argv, self.sock, self.tmpdir = name, argv, sock, tmpdir
        self.env = env
        self.log_path = os.path.join(tmpdir, name + ".log")
        self.proc = None
        self.seen_workers = {}          # pid: start time, to kill no other process

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.tmpdir)
        self.wait_ready()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def workers(self):
        pids = children_of(self.pid)
        for pid in pids:
            st = _stat(pid)
            if st is not None:
                self.seen_workers.setdefault(pid, st[1])
        return pids

    def wait_ready(self, exclude=(), timeout=60):
        """Waits until the master has WORKERS workers, none in `exclude`,
        and /ping/ answers."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with status %s:\n%s"
                                     % (self.name, self.proc.returncode, self.log_text()))
            pids = self.workers()
            if len(pids) != WORKERS or set(pids) & set(exclude):
                return None
            try:
                status, _ = self.request("/ping/", timeout=5)
            except OSError:
                return None
            return pids if status == 200 else None
        served = set()

        def all_served():
            # Every worker has loaded the app and answered (a worker that is
            # still loading it, as with uWSGI lazy-apps, may miss a SIGHUP).
            pids = ready()
            if pids is None:
                return None
            infos = parallel(lambda i: self.info(ms=150), [(i,) for i in range(2 * WORKERS)],
                             2 * WORKERS)
            served.update(info["pid"] for info in infos)
            return pids if set(pids) <= served and set(self.workers()) == set(pids) else None
        try:
            return wait_until(all_served, timeout,
                              "%s to serve with %d workers" % (self.name, WORKERS))
        except AssertionError as e:
            raise AssertionError("%s\nlog:\n%s" % (e, self.log_text())) from None

    def request(self, path, headers=None, timeout=60):
        conn = UnixHTTPConnection(self.sock, timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get_ok(self, path, headers=None):
        status, body = self.request(path, headers)
        if status != 200:
            raise AssertionError("GET %s: status %d: %r\nlog:\n%s"
                                 % (path, status, body[:500], self.log_text()))
        return body

    def info(self, ms=0):
        return json.loads(self.get_ok("/info/?ms=%d" % ms))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.workers()
            self.proc.send_signal(signal.SIGTERM)      # both: a graceful stop
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # A worker that outlived its master: by PID, if it is still the
        # process we saw (same start time).
        for pid, started in self.seen_workers.items():
            st = _stat(pid)
            if st is not None and st[0] != "Z" and st[1] == started:
                os.kill(pid, signal.SIGKILL)
        self.log.close()
        self.proc = None


def gunicorn(app, tmpdir, env, extra=()):
    """gunicorn -c examples/gunicorn.conf.py APP, run with this interpreter."""
    sock = os.path.join(tmpdir, "gunicorn.sock")
    argv = [sys.executable, "-m", "gunicorn", "-c", os.path.join(EXAMPLES, "gunicorn.conf.py"),
            "-b", "unix:" + sock, "-w", str(WORKERS), *extra, app]
    return Server("gunicorn", argv, sock, tmpdir, env)


def uwsgi(ini, tmpdir, env, extra=()):
    """uwsgi --ini examples/INI, serving HTTP on a unix socket."""
    sock = os.path.join(tmpdir, "uwsgi.sock")
    argv = ["uwsgi", "--ini", os.path.join(EXAMPLES, ini), "--http-socket", sock,
            "--processes", str(WORKERS), *extra]
    return Server("uwsgi", argv, sock, tmpdir, env)


def require_gunicorn():
    require("gunicorn", have_module("gunicorn"), "Debian: apt-get install gunicorn")


def require_uwsgi():
    ok = shutil.which("uwsgi") is not None and subprocess.run(
        ["uwsgi", "--need-plugin", "python3", "--version"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL).returncode == 0
    require("uwsgi with its python3 plugin", ok,
            "Debian: apt-get install uwsgi uwsgi-plugin-python3")


class DeployCase(unittest.TestCase):
    """One server for the whole class (started in setUpClass).  Subclasses
    set make_server(tmpdir, env), django (bool) and opened_in_master."""

    django = True
    opened_in_master = True
    worker_user = None        # workers switch to this user (the master runs as root)
    tag = "x"

    @classmethod
    def setUpClass(cls):
        import shmcache
        cls.shmcache = shmcache
        cls.tmpdir = tempfile.mkdtemp(prefix="shmc-deploy-")
        cls.cache_name = "pyt-deploy-%s-%d" % (cls.tag, os.getpid())
        cls.compute_log = os.path.join(cls.tmpdir, "computations.log")
        if cls.worker_user:
            # Workers that drop privileges still write the computation log.
            os.chmod(cls.tmpdir, 0o755)
            fd = os.open(cls.compute_log, os.O_CREAT | os.O_WRONLY, 0o666)
            os.fchmod(fd, 0o666)
            os.close(fd)
        env = dict(os.environ)
        env.update(SHMCACHE_NAME=cls.cache_name, COMPUTE_LOG=cls.compute_log,
                   SHMCACHE_SIZE=str(16 << 20), RATE_LIMIT="25", PYTHONDONTWRITEBYTECODE="1")
        env.pop("DJANGO_SETTINGS_MODULE", None)
        # The servers run in tmpdir: make the import path absolute.
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)
        cls.server = cls.make_server(cls.tmpdir, env)
        try:
            cls.server.start()
            cls.cache = shmcache.Cache(cls.cache_name, create=False)
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        try:
            cls.cache.close()
        except AttributeError:
            pass
        try:
            cls.shmcache.destroy(cls.cache_name)
        except cls.shmcache.CacheNotFoundError:
            pass
        shutil.rmtree(cls.tmpdir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------

    def computations(self):
        """{key: [pids that computed it]} from the compute log."""
        out = {}
        try:
            with open(self.compute_log) as f:
                for line in f:
                    key, pid = line.split()
                    out.setdefault(key, []).append(int(pid))
        except FileNotFoundError:
            pass
        return out

    def cache_key(self, key):
        return (":1:" + key) if self.django else key

    def assert_verify_clean(self):
        rep = self.cache.verify()
        self.assertTrue(rep["ok"], rep)
        for field in ("bad_offsets", "bad_items", "misplaced", "duplicates",
                      "segment_errors", "orphan_segments"):
            self.assertEqual(rep[field], 0, rep)

    # --- scenarios -------------------------------------------------------------

    def test_opened_in(self):
        """The cache is opened in the master (inherited by every worker) or
        in each worker, as configured."""
        self.assertEqual(self.cache.info()["size"], 16 << 20)     # SHMCACHE_SIZE
        infos = parallel(lambda i: self.server.info(), [(i,) for i in range(16)], 8)
        workers = set(self.server.workers())
        for info in infos:
            self.assertIn(info["pid"], workers, info)
            self.assertEqual(info["ppid"], self.server.pid, info)
            if self.opened_in_master:
                self.assertEqual(info["opened_in"], self.server.pid, info)
            else:
                self.assertEqual(info["opened_in"], info["pid"], info)

    def test_singleflight(self):
        """Concurrent requests for an expensive page, from many threads to
        every worker: each key is computed exactly once."""
        keys = ["sf%d" % i for i in range(6)]
        requests = [(k,) for k in keys for _ in range(6)]
        bodies = parallel(lambda k: (k, self.server.get_ok("/expensive/%s/?ms=300" % k)),
                          requests, 12)
        log = self.computations()
        workers = set(self.server.workers())
        for k in keys:
            self.assertEqual(len(log.get(k, [])), 1, (k, log))
            self.assertIn(log[k][0], workers)
            values = {body for key, body in bodies if key == k}
            self.assertEqual(len(values), 1, values)
            self.assertEqual(json.loads(values.pop()),
                             {"key": k, "computed_by": log[k][0]})
        self.assert_verify_clean()

    def test_rate_limit(self):
        """A per-client limit on add + incr counts exactly across workers."""
        if not self.django:
            # The plain app's shared counter: every incr returns a distinct value.
            before = int(self.cache.get("hits", 0))
            bodies = parallel(lambda i: int(self.server.get_ok("/hits/")),
                              [(i,) for i in range(60)], 12)
            self.assertEqual(sorted(bodies), list(range(before + 1, before + 61)))
            self.assertEqual(int(self.cache.get("hits")), before + 60)
            return
        clients = ["%s-c%d" % (self.tag, i) for i in range(3)]
        requests = [(c,) for _ in range(40) for c in clients]

        def hit(client):
            return client, self.server.request("/limited/", {"X-Client": client})
        results = parallel(hit, requests, 12)
        for c in clients:
            ok = sorted(int(body) for cl, (status, body) in results
                        if cl == c and status == 200)
            limited = [status for cl, (status, body) in results if cl == c and status == 429]
            other = [status for cl, (status, body) in results if cl == c
                     and status not in (200, 429)]
            self.assertEqual(other, [])
            self.assertEqual(ok, list(range(1, 26)), c)
            self.assertEqual(len(limited), 15, c)
            self.assertEqual(self.cache.get(self.cache_key("ratelimit:" + c)), 40)

    def test_worker_killed_mid_request(self):
        """SIGKILL the worker that is computing a value while two others wait
        for it: one waiter takes over, both get its value, the master
        respawns the worker, the other workers live on, verify is clean."""
        before = set(self.server.wait_ready())
        key = "crash"
        results = {}

        def leader():
            try:
                results["leader"] = self.server.request("/expensive/%s/?ms=20000" % key)
            except (OSError, http.client.HTTPException) as e:
                results["leader"] = e

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            lead = pool.submit(leader)
            victim = wait_until(lambda: self.computations().get(key), 30,
                                "the leader to start computing")[0]
            self.assertIn(victim, before)
            waiters = [pool.submit(self.server.get_ok, "/expensive/%s/?ms=50" % key)
                       for _ in range(2)]
            time.sleep(1)            # lets the waiters reach the wait (not required)
            os.kill(victim, signal.SIGKILL)
            bodies = [w.result(60) for w in waiters]
            lead.result(60)
        # The killed request got no answer (or the server's error page).
        self.assertTrue(isinstance(results["leader"], Exception)
                        or results["leader"][0] != 200, results["leader"])
        log = self.computations()[key]
        self.assertEqual(len(log), 2, log)
        self.assertEqual(log[0], victim)
        self.assertNotEqual(log[1], victim)
        self.assertEqual(bodies[0], bodies[1])
        self.assertEqual(json.loads(bodies[0])["computed_by"], log[1])
        now = set(self.server.wait_ready(exclude=[victim]))
        self.assertNotIn(victim, now)
        self.assertTrue(before - {victim} <= now, (before, now))   # the others live on
        self.assertFalse(alive(victim))
        # The cache is consistent and still served by every worker.
        self.assert_verify_clean()
        for body in parallel(lambda i: self.server.get_ok("/expensive/%s/" % key),
                             [(i,) for i in range(12)], 6):
            self.assertEqual(body, bodies[0])
        self.assertEqual(len(self.computations()[key]), 2)

    def test_zz_hup_reload_keeps_cache(self):
        """kill -HUP (graceful reload) replaces every worker and keeps the
        cache and its contents (runs last: it replaces the workers)."""
        key = "persist"
        first = self.server.get_ok("/expensive/%s/" % key)
        before = set(self.server.wait_ready())
        os.kill(self.server.pid, signal.SIGHUP)
        after = set(self.server.wait_ready(exclude=before))
        self.assertFalse(before & after)
        self.assertEqual(self.server.proc.poll(), None)
        for body in parallel(lambda i: self.server.get_ok("/expensive/%s/" % key),
                             [(i,) for i in range(12)], 6):
            self.assertEqual(body, first)
        self.assertEqual(len(self.computations()[key]), 1)
        self.assert_verify_clean()
        self.test_opened_in()
