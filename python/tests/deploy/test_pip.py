"""The package as a pip user installs it: in a fresh venv
(python -m venv --system-site-packages) made with the interpreter the
extension was built for, `pip install --no-build-isolation ./python` builds
it with meson-python (python/pyproject.toml, python/meson.build) and
`import shmcache, shmcache.django` works from another directory; `pip wheel`
builds a wheel.  No network: --no-index.

    python3 python/tests/deploy/test_pip.py [EXPECTED_VERSION]

The sources are copied first (python/, lib/, include/ only, keeping their
relative places), so that the build writes nothing into the source tree and
the test shows that these three directories are all pip needs.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

import deployutil as d

ROOT = os.path.normpath(os.path.join(d.HERE, "..", "..", ".."))
EXPECTED_VERSION = sys.argv[1] if len(sys.argv) > 1 else None

d.require("meson-python", d.have_module("mesonpy"), "Debian: apt-get install python3-mesonpy")
d.require("pip", d.have_module("pip"), "Debian: apt-get install python3-pip")
d.require("venv with ensurepip", d.have_module("ensurepip"), "Debian: apt-get install python3-venv")

IGNORE = shutil.ignore_patterns("build*", ".mesonpy*", "__pycache__", "*.so", "*.o", "*.a")


def clean_env():
    env = dict(os.environ)
    for var in ("PYTHONPATH", "LD_PRELOAD", "ASAN_OPTIONS", "DJANGO_SETTINGS_MODULE",
                "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(var, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


CHECK = r"""
import importlib.metadata, os, sys
import shmcache, shmcache.django
venv = sys.argv[1]
assert shmcache.__file__.startswith(venv), shmcache.__file__
assert shmcache._shmcache.__file__.startswith(venv), shmcache._shmcache.__file__
name = "pyt-pip-%d" % os.getpid()
c = shmcache.Cache(name, size=4 << 20, max_value=64 << 10)
try:
    c.set("k", {"v": 1}, ttl=60)
    assert c.get("k") == {"v": 1}
    assert c.incr("n", 5, initial=5) == 5 and c.incr("n") == 6
    assert c.verify()["ok"]
    import django
    from django.conf import settings
    settings.configure(CACHES={"default": {"BACKEND": "shmcache.django.ShmCache",
                                           "LOCATION": name}})
    django.setup()
    from django.core.cache import cache
    cache.set("dj", "value")
    assert cache.get("dj") == "value"
    assert cache.get_or_set("dj2", lambda: 42) == 42
finally:
    c.close()
    shmcache.destroy(name)
print("VERSION", importlib.metadata.version("shmcache"))
"""


class PipTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="shmc-pip-")
        cls.src = os.path.join(cls.tmp, "src")
        for part in ("python", "lib", "include"):
            shutil.copytree(os.path.join(ROOT, part), os.path.join(cls.src, part), ignore=IGNORE)
        cls.venv = os.path.join(cls.tmp, "venv")
        cls.run_ok([sys.executable, "-m", "venv", "--system-site-packages", cls.venv], 120)
        cls.vpy = os.path.join(cls.venv, "bin", "python")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def run_ok(cls, argv, timeout, cwd=None):
        proc = subprocess.run(argv, cwd=cwd or cls.tmp, env=clean_env(), capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError("%s: exit status %d\n%s\n%s"
                                 % (" ".join(argv), proc.returncode, proc.stdout[-4000:],
                                    proc.stderr[-4000:]))
        return proc.stdout

    def test_install_and_import(self):
        self.run_ok([self.vpy, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                     "--no-cache-dir", os.path.join(self.src, "python")], 300)
        elsewhere = os.path.join(self.tmp, "elsewhere")
        os.mkdir(elsewhere)
        out = self.run_ok([self.vpy, "-c", CHECK, self.venv], 60, cwd=elsewhere)
        version = re.search(r"^VERSION (\S+)$", out, re.M).group(1)
        with open(os.path.join(ROOT, "python", "meson.build")) as f:
            standalone = re.search(r"version : '([^']+)'", f.read()).group(1)
        self.assertEqual(version, standalone)
        if EXPECTED_VERSION:                       # the top-level project's
            self.assertEqual(version, EXPECTED_VERSION)

    def test_wheel(self):
        wheels = os.path.join(self.tmp, "wheels")
        self.run_ok([self.vpy, "-m", "pip", "wheel", "--no-build-isolation", "--no-index",
                     "--no-cache-dir", "--no-deps", "-w", wheels,
                     os.path.join(self.src, "python")], 300)
        built = glob.glob(os.path.join(wheels, "shmcache-*.whl"))
        self.assertEqual(len(built), 1, os.listdir(wheels))
        with zipfile.ZipFile(built[0]) as z:
            names = z.namelist()
        self.assertTrue(any(re.search(r"(^|/)shmcache/_shmcache\..*\.so$", n) for n in names),
                        names)
        for module in ("__init__.py", "django.py"):
            self.assertTrue(any(n.endswith("shmcache/" + module) for n in names), names)
        # Only the package: no library, header or pkg-config file.
        self.assertEqual([n for n in names if not re.search(r"(^|/)shmcache(-[^/]*)?/", n)
                          and "dist-info" not in n], [], names)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
