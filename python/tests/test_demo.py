"""Runs python/demo_prefork.py (forked workers, one computation per key)."""

import os
import re
import subprocess
import sys
import unittest

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo_prefork.py")


class DemoTest(unittest.TestCase):
    def run_demo(self, workers, keys, compute_ms):
        name = "pyt-demo-%d-%d" % (os.getpid(), workers)
        proc = subprocess.run(
            [sys.executable, DEMO, "--workers", str(workers), "--keys", str(keys),
             "--compute-ms", str(compute_ms), "--name", name],
            capture_output=True, text=True, timeout=90)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        m = re.search(r"^computations: (\d+) ", proc.stdout, re.M)
        self.assertIsNotNone(m, proc.stdout)
        self.assertEqual(int(m.group(1)), keys, proc.stdout)
        self.assertIn("OK: one computation per key across workers", proc.stdout)
        self.assertFalse(os.path.exists("/dev/shm/" + name))
        return proc.stdout

    def test_demo(self):
        print(self.run_demo(workers=4, keys=20, compute_ms=30))

    def test_demo_many_workers_few_keys(self):
        self.run_demo(workers=8, keys=3, compute_ms=100)


if __name__ == "__main__":
    unittest.main()
