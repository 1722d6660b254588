"""Helpers for the Python tests: real forked children with bounded waits."""

import itertools
import os
import pickle
import select
import signal
import sys
import time
import traceback

_counter = itertools.count()


def unique_name(tag):
    """A cache name unique to this process and call."""
    return "pyt-%s-%d-%d" % (tag, os.getpid(), next(_counter))


def mapped_bytes(name):
    """Bytes of the cache `name` mapped into this process's page tables
    (the Rss of its mappings in /proc/self/smaps)."""
    total, ours = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:
                ours = line.rstrip("\n").endswith("/dev/shm/" + name)
            elif ours and line.startswith("Rss:"):
                total += int(head[1]) * 1024
    return total


def run_children(n, target, timeout=30.0, after_fork=None):
    """Forks n children; child i runs target(i) and its return value (which
    must pickle) comes back to the parent.  after_fork(), if given, runs in
    the parent once all are forked (e.g. Barrier.release).  Returns the list
    of results in child order.  Raises AssertionError if a child raised,
    exited abnormally or did not finish within `timeout` seconds (it is then
    killed)."""
    children = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                payload = pickle.dumps(("ok", target(i)))
            except BaseException:   # noqa: B902 - report everything to the parent
                payload = pickle.dumps(("error", traceback.format_exc()))
                code = 1
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(w, view):]
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(w)
        children.append({"pid": pid, "fd": r, "data": bytearray(), "status": None})

    deadline = time.monotonic() + timeout
    open_fds = {c["fd"]: c for c in children}
    if after_fork is not None:
        after_fork()
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("children did not finish within %.1f s" % timeout)
            ready, _, _ = select.select(list(open_fds), [], [], min(left, 0.5))
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    open_fds[fd]["data"] += chunk
                else:
                    os.close(fd)
                    del open_fds[fd]
        for c in children:
            while True:
                pid, status = os.waitpid(c["pid"], os.WNOHANG)
                if pid:
                    c["status"] = status
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("child %d did not exit" % c["pid"])
                time.sleep(0.002)
    finally:
        for fd in open_fds:
            os.close(fd)
        for c in children:
            if c["status"] is None:
                try:
                    os.kill(c["pid"], signal.SIGKILL)
                    os.waitpid(c["pid"], 0)
                except OSError:
                    pass

    results = []
    for i, c in enumerate(children):
        if not c["data"]:
            raise AssertionError("child %d died (wait status %r)" % (i, c["status"]))
        kind, value = pickle.loads(bytes(c["data"]))
        if kind != "ok":
            raise AssertionError("child %d raised:\n%s" % (i, value))
        results.append(value)
    return results


def run_together(n, target, timeout=30.0):
    """run_children(n, target, timeout), with the children held at a start
    line (a Barrier) until all n are forked, so that they run at once."""
    barrier = Barrier()

    def start(i):
        barrier.wait()
        return target(i)

    try:
        return run_children(n, start, timeout, after_fork=barrier.release)
    finally:
        barrier.close()


def read_all(fd):
    """Reads fd until end of file (every writer has closed it); returns the
    bytes.  Does not close fd."""
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def start_child(target):
    """Forks one child running target() (its exit code: 0 if it returns,
    1 if it raises) without waiting.  Returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target()
        except BaseException:   # noqa: B902
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait_child(pid, timeout=30.0):
    """Waits for a child from start_child; returns its exit code (or -signal)."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            if os.WIFSIGNALED(status):
                return -os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("child %d did not exit within %.1f s" % (pid, timeout))
        time.sleep(0.002)


class Barrier:
    """A one-shot start line for forked children: children call wait(), the
    parent calls release() once they are all forked."""

    def __init__(self):
        self.r, self.w = os.pipe()

    def wait(self, timeout=10.0):
        if self.w >= 0:
            os.close(self.w)   # the child's copy of the write end
            self.w = -1
        ready, _, _ = select.select([self.r], [], [], timeout)
        if not ready:
            raise AssertionError("barrier not released within %.1f s" % timeout)

    def release(self):
        if self.w >= 0:
            os.close(self.w)   # every reader sees EOF at once
            self.w = -1

    def close(self):
        self.release()
        if self.r >= 0:
            os.close(self.r)
            self.r = -1
