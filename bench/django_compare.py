#!/usr/bin/env python3
"""Django-level benchmark: shmcache.django.ShmCache against the caches Django
users pick, through django.core.cache, in one run.

    bench/run.sh --only django [--quick]
    PYTHONPATH=build/python/src /usr/bin/python3 bench/django_compare.py [--quick]

Backends: ShmCache, LocMemCache (per process, not shared), diskcache's
DjangoCache (a directory in the temporary directory), django-redis and
PyMemcacheCache.  The script starts its own redis-server and memcached on
unix sockets in a temporary directory and stops them by PID at the end.

Parts (all in one run, so that the ratios are same-run ratios):
  single   one process: get, set, add, incr, get_many (10 keys a call) and
           get_or_set (hits) on --keys keys holding a small dict (pickled);
           best of --rounds rounds, the backends interleaved in each round.
  workers  --workers forked processes, each running --requests get_or_set
           calls on its own Zipf(--zipf-s) stream over --zipf-keys keys; a
           miss is filled by a slow function (--fill-ms sleep) returning
           about 1 KB.  Reports the hit ratio (1 - fills / requests), fills
           per key, throughput, and the value bytes held (LocMem: the sum
           over its per-process copies).  A single shared cache fills each
           key once: its hit ratio is 1 - distinct keys / requests.
  micro    shmcache.Cache.set(key, bytes) against Cache.set_raw(key, bytes).

Exit status: 1 if a correctness check fails (ShmCache's fills are not one
per key, or its hit ratio is not the single shared cache's, or a backend's
values read back wrong), 2 on a usage or set-up error; speed targets are
reported (met / NOT met) but do not change the status.  With CI=true in the
environment a backend that cannot run (package or server missing) is an
error instead of an "n/a" row.
"""

import argparse
import itertools
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SHARED = ("ShmCache", "diskcache", "django-redis", "PyMemcache")
ORDER = ("ShmCache", "LocMem") + SHARED[1:]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small runs (seconds; CI smoke test, figures not meaningful)")
    p.add_argument("--only", default="single,workers,micro",
                   help="comma-separated parts: single, workers, micro")
    p.add_argument("--backends", default=",".join(ORDER),
                   help="comma-separated subset of " + ",".join(ORDER))
    p.add_argument("--ops", type=int, help="operations per row (single; default 20000)")
    p.add_argument("--keys", type=int, help="keys (single; default 1000)")
    p.add_argument("--rounds", type=int, help="rounds, best taken (default 2)")
    p.add_argument("--workers", type=int, default=4, help="processes (workers; default 4)")
    p.add_argument("--requests", type=int,
                   help="get_or_set calls per worker (default 100000)")
    p.add_argument("--zipf-keys", type=int, help="key space of the Zipf stream (default 1000)")
    p.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent (default 1.0)")
    p.add_argument("--fill-ms", type=float, default=1.0,
                   help="duration of the slow fill function (default 1 ms)")
    p.add_argument("--micro-calls", type=int, help="calls per micro round (default 200000)")
    p.add_argument("--json", help="also write the results to this file")
    a = p.parse_args(argv)
    q = a.quick
    defaults = {"ops": (20000, 1000), "keys": (1000, 100), "rounds": (2, 1),
                "requests": (100000, 1000), "zipf_keys": (1000, 200),
                "micro_calls": (200000, 20000)}
    for name, (full, quick) in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, quick if q else full)
    a.only = set(a.only.split(","))
    a.backends = [b for b in a.backends.split(",") if b]
    bad = (a.only - {"single", "workers", "micro"}) | (set(a.backends) - set(ORDER))
    if bad:
        p.error("unknown part or backend: %s" % ", ".join(sorted(bad)))
    if min(a.ops, a.keys, a.rounds, a.workers, a.requests, a.zipf_keys, a.micro_calls) < 1:
        p.error("counts must be >= 1")
    return a


def say(*args):
    print(*args, flush=True)


# --- servers -------------------------------------------------------------------

class Servers:
    """redis-server and memcached on unix sockets in tmp, stopped by PID."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.redis = self.memcached = None

    def start(self, want_redis, want_memcached):
        if want_redis and shutil.which("redis-server"):
            sock = os.path.join(self.tmp, "redis.sock")
            self._spawn(["redis-server", "--port", "0", "--unixsocket", sock,
                         "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                         "--dir", self.tmp, "--daemonize", "no",
                         "--logfile", os.path.join(self.tmp, "redis.log")], sock)
            self.redis = sock
        if want_memcached and shutil.which("memcached"):
            sock = os.path.join(self.tmp, "mc.sock")
            cmd = ["memcached", "-s", sock, "-a", "0700", "-m", "256", "-c", "1024"]
            if os.geteuid() == 0:
                cmd += ["-u", "root"]   # memcached refuses root without -u
            self._spawn(cmd, sock)
            self.memcached = sock

    def _spawn(self, cmd, sock):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        for _ in range(200):
            if os.path.exists(sock):
                return
            if proc.poll() is not None:
                raise RuntimeError("%s exited at start (status %s)" % (cmd[0], proc.returncode))
            time.sleep(0.025)
        raise RuntimeError("%s did not create %s" % (cmd[0], sock))

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []


# --- Django set-up --------------------------------------------------------------

def cache_settings(args, tmp, servers, shm_name):
    """{backend name: CACHES entry} for the backends that can run, and
    {backend name: why not} for the others."""
    caches, missing = {}, {}
    want = set(args.backends)

    def have(module):
        try:
            __import__(module)
            return True
        except ImportError:
            return False

    if "ShmCache" in want:
        if have("shmcache.django"):
            caches["ShmCache"] = {"BACKEND": "shmcache.django.ShmCache", "LOCATION": shm_name,
                                  "TIMEOUT": 3600, "OPTIONS": {"SIZE": 64 << 20}}
        else:
            missing["ShmCache"] = "shmcache not importable (PYTHONPATH=build/python/src)"
    if "LocMem" in want:
        caches["LocMem"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                            "LOCATION": "bench", "TIMEOUT": 3600,
                            # No culling in the runs (LocMem's best case).
                            "OPTIONS": {"MAX_ENTRIES": 10 ** 7}}
    if "diskcache" in want:
        if have("diskcache"):
            caches["diskcache"] = {"BACKEND": "diskcache.DjangoCache",
                                   "LOCATION": os.path.join(tmp, "diskcache"),
                                   "TIMEOUT": 3600}
        else:
            missing["diskcache"] = "python3-diskcache not installed"
    if "django-redis" in want:
        if not have("django_redis"):
            missing["django-redis"] = "python3-django-redis not installed"
        elif not servers.redis:
            missing["django-redis"] = "redis-server not installed"
        else:
            caches["django-redis"] = {"BACKEND": "django_redis.cache.RedisCache",
                                      "LOCATION": "unix://" + servers.redis,
                                      "TIMEOUT": 3600}
    if "PyMemcache" in want:
        if not have("pymemcache"):
            missing["PyMemcache"] = "python3-pymemcache not installed"
        elif not servers.memcached:
            missing["PyMemcache"] = "memcached not installed"
        else:
            caches["PyMemcache"] = {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": "unix:" + servers.memcached, "TIMEOUT": 3600}
    return caches, missing


def new_cache(alias):
    """A new backend instance (its own connections: made after fork)."""
    from django.core.cache import caches
    return caches.create_connection(alias)


VALUE = {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com",
         "roles": ["admin", "editor"], "score": 3.5, "active": True}


# --- part 1: one process ------------------------------------------------------------

def run_single(args, aliases):
    n, nk = args.ops, args.keys
    keys = ["user:%d" % i for i in range(nk)]
    seq = [keys[i % nk] for i in range(n)]
    counters = ["count:%d" % i for i in range(nk)]
    cseq = [counters[i % nk] for i in range(n)]
    batches = [[keys[(i * 10 + j) % nk] for j in range(10)] for i in range(max(1, n // 10))]

    def op_get(c, r):
        g = c.get
        t = time.perf_counter()
        for k in seq:
            g(k)
        return len(seq), time.perf_counter() - t

    def op_set(c, r):
        s = c.set
        t = time.perf_counter()
        for k in seq:
            s(k, VALUE)
        return len(seq), time.perf_counter() - t

    def op_add(c, r):
        fresh = ["add:%d:%d" % (r, i) for i in range(n)]
        a = c.add
        t = time.perf_counter()
        for k in fresh:
            a(k, VALUE)
        return len(fresh), time.perf_counter() - t

    def op_incr(c, r):
        f = c.incr
        t = time.perf_counter()
        for k in cseq:
            f(k)
        return len(cseq), time.perf_counter() - t

    def op_get_many(c, r):
        gm = c.get_many
        t = time.perf_counter()
        for b in batches:
            gm(b)
        return len(batches), time.perf_counter() - t

    def op_get_or_set(c, r):
        f = c.get_or_set
        t = time.perf_counter()
        for k in seq:
            f(k, VALUE)
        return len(seq), time.perf_counter() - t

    ops = [("get", op_get), ("set", op_set), ("add", op_add), ("incr", op_incr),
           ("get_many", op_get_many), ("get_or_set", op_get_or_set)]
    best = {a: {} for a in aliases}
    errors = []
    instances = {a: new_cache(a) for a in aliases}
    for a, c in instances.items():
        c.clear()
        for k in keys:
            c.set(k, VALUE)
        for k in counters:
            c.set(k, 0)
    for r in range(args.rounds):
        for name, fn in ops:
            for a in aliases:
                done, secs = fn(instances[a], r)
                rate = done / secs if secs > 0 else float("inf")
                best[a][name] = max(best[a].get(name, 0.0), rate)
    # Correctness: what was written reads back.
    for a, c in instances.items():
        got = c.get_many(keys[:10])
        if got != {k: VALUE for k in keys[:10]}:
            errors.append("%s: get_many read back wrong values" % a)
        want_count = args.rounds * (n // nk + (1 if n % nk else 0))
        if c.get(counters[0]) != want_count:
            errors.append("%s: counter %s is %r, not %d" % (a, counters[0],
                                                            c.get(counters[0]), want_count))
        c.clear()
    return [name for name, _ in ops], best, errors


def print_single(names, best, aliases, args):
    say("\n== one process: %d operations per row on %d keys holding a small dict "
        "(best of %d; get_many: calls of 10 keys) ==" % (args.ops, args.keys, args.rounds))
    head = "%-14s" % "backend" + "".join("%13s" % ("%s/s" % n) for n in names)
    say(head)
    for a in aliases:
        say("%-14s" % a + "".join("%13s" % fmt_rate(best[a].get(n)) for n in names))
    if "ShmCache" in best:
        for peer in aliases:
            if peer == "ShmCache":
                continue
            say("%-14s" % ("Shm/" + peer) +
                "".join("%13s" % ratio(best["ShmCache"].get(n), best[peer].get(n))
                        for n in names))


def fmt_rate(r):
    if r is None:
        return "n/a"
    if r >= 1e6:
        return "%.2f M" % (r / 1e6)
    return "%.1f k" % (r / 1e3)


def ratio(a, b):
    if not a or not b:
        return "n/a"
    return "%.2fx" % (a / b)


# --- part 2: forked workers on a Zipf stream ---------------------------------------------

def zipf_streams(args):
    weights = [1.0 / (i + 1) ** args.zipf_s for i in range(args.zipf_keys)]
    cum = list(itertools.accumulate(weights))
    names = ["page:%d" % i for i in range(args.zipf_keys)]
    streams = []
    for w in range(args.workers):
        rng = random.Random(1000 + w)
        streams.append([names[i] for i in rng.choices(range(args.zipf_keys), cum_weights=cum,
                                                       k=args.requests)])
    return streams


def payload(key):
    return {"key": key, "html": "<div>%s</div>" % ("x" * 900), "n": len(key)}


def worker(alias, stream, fill_s, ready_w, start_r, out_path, is_locmem):
    """Runs in a forked child; writes a JSON report to out_path."""
    cache = new_cache(alias)
    if is_locmem:
        cache.clear()   # the parent's copy is not this process's cache
    fills = []
    current = [None]

    def fill():
        fills.append(current[0])
        time.sleep(fill_s)
        return payload(current[0])

    gos = cache.get_or_set
    bad = 0
    os.write(ready_w, b"r")
    os.close(ready_w)
    os.read(start_r, 1)   # EOF when the parent starts the run
    t0 = time.monotonic()
    for key in stream:
        current[0] = key
        v = gos(key, fill)
        if v["key"] != key:
            bad += 1
    t1 = time.monotonic()
    report = {"start": t0, "end": t1, "requests": len(stream), "fills": fills, "bad": bad}
    if is_locmem:
        report["entries"] = len(cache._cache)
        report["bytes"] = sum(len(v) for v in cache._cache.values())
    with open(out_path, "w") as f:
        json.dump(report, f)


def run_workers(args, aliases, tmp):
    streams = zipf_streams(args)
    total = sum(len(s) for s in streams)
    distinct = len(set(itertools.chain.from_iterable(streams)))
    value_bytes = len(pickle.dumps(payload("page:0"), pickle.HIGHEST_PROTOCOL))
    results, errors = {}, []
    for alias in aliases:
        is_locmem = alias == "LocMem"
        if not is_locmem:
            new_cache(alias).clear()
        ready_r, ready_w = os.pipe()
        start_r, start_w = os.pipe()
        pids, outs = [], []
        for w in range(args.workers):
            out = os.path.join(tmp, "w-%s-%d.json" % (alias, w))
            outs.append(out)
            pid = os.fork()
            if pid == 0:
                status = 0
                try:
                    os.close(ready_r)
                    os.close(start_w)
                    worker(alias, streams[w], args.fill_ms / 1000.0, ready_w, start_r, out,
                           is_locmem)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    status = 1
                finally:
                    os._exit(status)
            pids.append(pid)
        os.close(ready_w)
        os.close(start_r)
        got = 0
        while got < args.workers:
            chunk = os.read(ready_r, 64)
            if not chunk:
                break
            got += len(chunk)
        os.close(ready_r)
        t0 = time.monotonic()
        os.close(start_w)   # every worker's read returns: go
        failed = False
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            failed |= status != 0
        if failed or got < args.workers:
            errors.append("%s: a worker failed" % alias)
            continue
        reps = []
        for out in outs:
            with open(out) as f:
                reps.append(json.load(f))
        end = max(r["end"] for r in reps)
        fills = [k for r in reps for k in r["fills"]]
        per_key = {}
        for k in fills:
            per_key[k] = per_key.get(k, 0) + 1
        res = {
            "seconds": end - t0,
            "throughput": total / (end - t0),
            "hit_ratio": 1.0 - len(fills) / total,
            "fills": len(fills),
            "keys_filled": len(per_key),
            "max_fills_per_key": max(per_key.values()) if per_key else 0,
            "bad": sum(r["bad"] for r in reps),
        }
        if is_locmem:
            res["bytes"] = sum(r["bytes"] for r in reps)
            res["entries"] = [r["entries"] for r in reps]
        elif alias == "ShmCache":
            st = new_cache(alias)._cache.stats()
            res["bytes"] = st["bytes_used"]
        results[alias] = res
        if res["bad"]:
            errors.append("%s: %d get_or_set calls returned another key's value"
                          % (alias, res["bad"]))
    shared_hit = 1.0 - distinct / total
    if "ShmCache" in results:
        r = results["ShmCache"]
        if r["fills"] != distinct or r["max_fills_per_key"] != 1:
            errors.append("ShmCache: %d fills for %d keys (at most %d per key): not one "
                          "fill per key" % (r["fills"], distinct, r["max_fills_per_key"]))
        if abs(r["hit_ratio"] - shared_hit) > 1e-12:
            errors.append("ShmCache: hit ratio %.6f is not the shared cache's %.6f"
                          % (r["hit_ratio"], shared_hit))
    return {"total": total, "distinct": distinct, "shared_hit_ratio": shared_hit,
            "value_bytes": value_bytes, "backends": results}, errors


def print_workers(w, aliases, args):
    say("\n== %d forked workers x %d get_or_set on a Zipf(%.2g) stream over %d keys; "
        "a miss is filled by a %.3g ms function (~%d B pickled) ==" % (
            args.workers, args.requests, args.zipf_s, args.zipf_keys, args.fill_ms,
            w["value_bytes"]))
    say("a single shared cache: %d distinct keys in %d requests, hit ratio %.4f"
        % (w["distinct"], w["total"], w["shared_hit_ratio"]))
    say("%-14s %10s %8s %10s %12s %8s %14s" % ("backend", "hit ratio", "fills", "fills/key",
                                                "requests/s", "seconds", "value bytes"))
    res = w["backends"]
    for a in aliases:
        r = res.get(a)
        if not r:
            say("%-14s %10s" % (a, "n/a"))
            continue
        mem = r.get("bytes")
        say("%-14s %10.4f %8d %10.2f %12s %8.2f %14s" % (
            a, r["hit_ratio"], r["fills"], r["fills"] / max(1, r["keys_filled"]),
            fmt_rate(r["throughput"]), r["seconds"],
            "%d" % mem if mem is not None else "-"))
    if "LocMem" in res:
        r = res["LocMem"]
        say("LocMem: %d processes hold %s entries (%d bytes in all): every process fills "
            "and stores its own copy" % (args.workers, "+".join(map(str, r["entries"])),
                                         r["bytes"]))
    if "ShmCache" in res:
        for peer in aliases:
            if peer != "ShmCache" and peer in res:
                say("Shm/%-10s throughput %s" % (peer, ratio(res["ShmCache"]["throughput"],
                                                             res[peer]["throughput"])))


# --- part 3: Cache.set vs Cache.set_raw --------------------------------------------------

def run_micro(args):
    import shmcache
    name = "django-compare-micro-%d" % os.getpid()
    c = shmcache.Cache(name, size=16 << 20)
    try:
        data = b"x" * 100
        n = args.micro_calls
        keys = ["k:%d" % (i % 1000) for i in range(n)]
        d = dict(VALUE)

        def t_set():
            s = c.set
            t = time.perf_counter()
            for k in keys:
                s(k, data)
            return time.perf_counter() - t

        def t_set_raw():
            s = c.set_raw
            t = time.perf_counter()
            for k in keys:
                s(k, data)
            return time.perf_counter() - t

        def t_set_dict():
            s = c.set
            t = time.perf_counter()
            for k in keys:
                s(k, d)
            return time.perf_counter() - t

        def t_dumps():
            dumps, proto = pickle.dumps, pickle.HIGHEST_PROTOCOL
            t = time.perf_counter()
            for _ in keys:
                dumps(d, proto)
            return time.perf_counter() - t

        best = {}
        for _ in range(3):
            for name_, fn in (("set(key, bytes)", t_set), ("set_raw(key, bytes)", t_set_raw),
                              ("set(key, dict)", t_set_dict), ("pickle.dumps(dict)", t_dumps)):
                ns = fn() / n * 1e9
                best[name_] = min(best.get(name_, ns), ns)
        return best
    finally:
        c.close()
        shmcache.destroy(name)


def print_micro(m, args):
    say("\n== shmcache.Cache, %d calls (best of 3), 100-byte value ==" % args.micro_calls)
    for k, v in m.items():
        say("%-22s %8.0f ns" % (k, v))
    say("set(key, bytes) / set_raw: %.2fx" % (m["set(key, bytes)"] / m["set_raw(key, bytes)"]))


# --- main -------------------------------------------------------------------------------

def main(argv):
    args = parse_args(argv)
    ci = os.environ.get("CI") == "true"
    try:
        import django
        from django.conf import settings
    except ImportError:
        say("django_compare: Django is not installed (Debian: python3-django)")
        return 2
    # SIGTERM (timeout, kill) runs the clean-up below too: servers stopped,
    # temporary directory and shmcache segment removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tmp = tempfile.mkdtemp(prefix="shmcache-django-bench.")
    servers = Servers(tmp)
    shm_name = "django-compare-%d" % os.getpid()
    status = 0
    try:
        servers.start("django-redis" in args.backends, "PyMemcache" in args.backends)
        caches, missing = cache_settings(args, tmp, servers, shm_name)
        settings.configure(CACHES=caches or {"default": {
            "BACKEND": "django.core.cache.backends.dummy.DummyCache"}})
        django.setup()
        aliases = [a for a in ORDER if a in caches]
        say("django_compare: Python %s, Django %s, %d CPUs; backends: %s" % (
            sys.version.split()[0], django.get_version(), os.cpu_count(), ", ".join(aliases)))
        for a, why in missing.items():
            say("django_compare: %s: n/a (%s)" % (a, why))
        if missing and ci:
            say("django_compare: CI=true: every backend must run")
            status = 1
        results = {"args": {k: (sorted(v) if isinstance(v, set) else v)
                            for k, v in vars(args).items()}}
        errors = []
        if "single" in args.only and aliases:
            names, best, errs = run_single(args, aliases)
            print_single(names, best, aliases, args)
            results["single"] = best
            errors += errs
        if "workers" in args.only and aliases:
            w, errs = run_workers(args, aliases, tmp)
            print_workers(w, aliases, args)
            results["workers"] = w
            errors += errs
        if "micro" in args.only and "ShmCache" in caches:
            m = run_micro(args)
            print_micro(m, args)
            results["micro"] = m
        targets = check_targets(results)
        if targets:
            say("\n== targets (speed: reported, not enforced) ==")
            for line in targets:
                say(line)
        results["errors"] = errors
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        for e in errors:
            say("django_compare: FAILED: " + e)
        if errors:
            status = 1
    finally:
        servers.stop()
        try:
            import shmcache
            shmcache.destroy(shm_name)
        except Exception:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def check_targets(results):
    lines = []

    def line(ok, text):
        lines.append("%-8s %s" % ("met" if ok else "NOT met", text))

    single = results.get("single", {})
    if "ShmCache" in single and "LocMem" in single:
        for op in ("get", "set", "add", "incr", "get_many"):
            a, b = single["ShmCache"].get(op), single["LocMem"].get(op)
            line(a >= b, "one process, %-9s ShmCache >= LocMem: %.2fx" % (op + ":", a / b))
    m = results.get("micro")
    if m:
        r = m["set(key, bytes)"] / m["set_raw(key, bytes)"]
        line(r <= 1.3, "Cache.set(key, bytes) within 1.3x of set_raw: %.2fx" % r)
    w = results.get("workers")
    if w and "ShmCache" in w["backends"]:
        shm = w["backends"]["ShmCache"]
        line(abs(shm["hit_ratio"] - w["shared_hit_ratio"]) < 1e-12,
             "workers: ShmCache hit ratio %.4f = a single shared cache's %.4f"
             % (shm["hit_ratio"], w["shared_hit_ratio"]))
        line(shm["max_fills_per_key"] == 1 and shm["fills"] == w["distinct"],
             "workers: ShmCache fills one per key (%d fills, %d keys)"
             % (shm["fills"], w["distinct"]))
        for peer in SHARED[1:]:
            if peer in w["backends"]:
                r = shm["throughput"] / w["backends"][peer]["throughput"]
                line(r >= 10, "workers: ShmCache throughput >= 10x %s: %.1fx" % (peer, r))
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
