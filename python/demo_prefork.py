#!/usr/bin/env python3
"""A gunicorn-style prefork demo of shmcache's singleflight.

The master opens the cache, then forks N workers (os.fork, as gunicorn
does).  All workers start at once and request the same K keys, each in its
own order, through cache.get_or_fill(); computing a key takes --compute-ms.
Each computation is counted (with an atomic incr in the cache), so the demo
shows that K computations happened in total, not N * K.

    PYTHONPATH=build/python/src python3 python/demo_prefork.py --workers 4 --keys 20

Exit status: 0 if exactly K computations happened and every worker got the
right value for every key, 1 otherwise.
"""

import argparse
import os
import random
import select
import sys
import time

import shmcache


def worker(cache, wid, keys, compute_ms, start_fd):
    # Wait for the master's start signal so that all workers miss together.
    select.select([start_fd], [], [], 30)
    rng = random.Random(wid)
    order = list(keys)
    rng.shuffle(order)
    mine = 0
    bad = 0
    for key in order:
        def compute(key=key):
            nonlocal mine
            mine += 1
            cache.incr("demo:computations", initial=1)   # 1 if it creates the counter
            time.sleep(compute_ms / 1000.0)              # the expensive part
            return {"key": key, "computed_by": os.getpid()}

        value = cache.get_or_fill("demo:" + key, compute, ttl=300)
        if value["key"] != key:
            bad += 1
    return mine, bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=4, help="worker processes (N)")
    ap.add_argument("--keys", type=int, default=20, help="distinct keys (K)")
    ap.add_argument("--compute-ms", type=float, default=50.0,
                    help="time one computation takes, in ms")
    ap.add_argument("--name", default="shmcache-pydemo-%d" % os.getpid(),
                    help="cache name (destroyed at the end)")
    args = ap.parse_args(argv)

    # The master opens the cache before forking; every worker inherits it.
    cache = shmcache.Cache(args.name, size=16 << 20)
    cache.flush()
    keys = ["key-%03d" % i for i in range(args.keys)]
    start_r, start_w = os.pipe()
    result_pipes = []
    pids = []
    t0 = time.monotonic()
    for wid in range(args.workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:   # worker
            os.close(r)
            os.close(start_w)
            code = 0
            try:
                mine, bad = worker(cache, wid, keys, args.compute_ms, start_r)
                os.write(w, ("%d %d\n" % (mine, bad)).encode())
            except BaseException as e:   # noqa: B902
                print("worker %d failed: %r" % (wid, e), file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        pids.append(pid)
        result_pipes.append(r)
    os.close(start_w)   # all workers start now
    os.close(start_r)

    ok = True
    per_worker = []
    for wid, (pid, r) in enumerate(zip(pids, result_pipes)):
        data = b""
        while True:
            chunk = os.read(r, 100)
            if not chunk:
                break
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            print("worker %d (pid %d) failed (wait status %d)" % (wid, pid, status))
            ok = False
            per_worker.append((0, 0))
            continue
        mine, bad = map(int, data.split())
        per_worker.append((mine, bad))
        if bad:
            ok = False
    elapsed = time.monotonic() - t0

    computations = cache.get("demo:computations", 0)
    requests = args.workers * args.keys
    print("workers: %d, keys: %d, requests: %d, compute time per key: %.0f ms"
          % (args.workers, args.keys, requests, args.compute_ms))
    for wid, (mine, bad) in enumerate(per_worker):
        print("  worker %d computed %d key(s)%s" % (wid, mine, ", %d BAD values" % bad if bad
                                                    else ""))
    print("computations: %d (one per key: %d; without a shared cache: %d)"
          % (computations, args.keys, requests))
    print("elapsed: %.2f s (computing every key serially would take %.2f s per worker)"
          % (elapsed, args.keys * args.compute_ms / 1000.0))
    st = cache.stats()
    print("stats: fills=%d fill_waits=%d hits=%d misses=%d"
          % (st["fills"], st["fill_waits"], st["hits"], st["misses"]))
    if computations != args.keys or sum(m for m, _ in per_worker) != args.keys:
        ok = False
    print("OK: one computation per key across workers" if ok else "FAILED")
    cache.close()
    shmcache.destroy(args.name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
