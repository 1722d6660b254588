/*
 * _tier.c — shmcache._tier: the Redis tier (include/shmcache_tier.h) for
 * Python, bytes in and bytes out.  shmcache.tier wraps it with a serializer;
 * shmcache.django.TieredCache is the Django backend on top.
 *
 * Every call releases the GIL while it talks to the cache or to Redis.  A
 * Tier opens its own handle on the host's cache (by name), so it does not
 * depend on the internals of shmcache._shmcache.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmcache_tier.h"

static PyObject *TierError;   /* status attribute: the shmc_status name */
static PyObject *RedisError;  /* SHMC_TIER_EREDIS / SHMC_TIER_EREPLY */

typedef struct {
    PyObject_HEAD
    shmc_t *c;
    shmc_tier_t *t;
} TierObject;

static PyObject *raise_status(shmc_status st)
{
    PyObject *cls = (st == SHMC_TIER_EREDIS || st == SHMC_TIER_EREPLY) ? RedisError : TierError;
    if (st == SHMC_EKEYLEN || st == SHMC_EINVAL || st == SHMC_EVALLEN)
        cls = PyExc_ValueError;
    if (st == SHMC_ENOTNUM)
        cls = PyExc_ValueError;
    PyObject *exc = PyObject_CallFunction(cls, "s", shmc_tier_strerror(st));
    if (exc) {
        if (cls == TierError || cls == RedisError) {
            PyObject *code = PyLong_FromLong((long)st);
            if (code) {
                PyObject_SetAttrString(exc, "status", code);
                Py_DECREF(code);
            }
        }
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int closed(TierObject *self)
{
    if (!self->t) {
        PyErr_SetString(PyExc_ValueError, "the tier is closed");
        return 1;
    }
    return 0;
}

/* True if st is SHMC_OK, False if it is `no` (the key was absent, or there
 * already), else st raised. */
static PyObject *bool_or_raise(shmc_status st, shmc_status no)
{
    if (st == no)
        Py_RETURN_FALSE;
    if (st != SHMC_OK)
        return raise_status(st);
    Py_RETURN_TRUE;
}

/* seconds (None/0 = no expiry) -> ms; a positive time rounds up to >= 1 ms */
static int ttl_arg(PyObject *o, uint64_t *ms)
{
    *ms = 0;
    if (!o || o == Py_None)
        return 0;
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    if (!(s >= 0) || s > 1e12) {
        PyErr_SetString(PyExc_ValueError, "ttl must be None or a number of seconds >= 0");
        return -1;
    }
    double m = ceil(s * 1000.0);
    *ms = (uint64_t)m;
    return 0;
}

static void Tier_dealloc(TierObject *self)
{
    if (self->t) {
        Py_BEGIN_ALLOW_THREADS
        shmc_tier_close(self->t);
        shmc_close(self->c);
        Py_END_ALLOW_THREADS
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int parse_redis(const char *url, shmc_tier_options *o, char *host, size_t hostlen)
{
    /* unix:///path, /path, redis://host[:port][/db] */
    if (url[0] == '/') {
        o->redis_unix = url;
        return 0;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        o->redis_unix = url + 7;
        return o->redis_unix[0] == '/' ? 0 : -1;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    if (at)
        p = at + 1; /* credentials: give the password as password= */
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, p, hl);
    host[hl] = 0;
    o->redis_host = host;
    p += hl;
    o->redis_port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535)
            return -1;
        o->redis_port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0 || db > 1000000)
            return -1;
        o->redis_db = (int)db;
    }
    return 0;
}

static int Tier_init(TierObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "redis", "prefix", "max_stale", "lease", "timeout",
                             "listener", "password", "size", NULL};
    const char *name, *redis, *password = NULL;
    Py_buffer prefix = {0};
    double max_stale = 60.0, lease = 2.0, timeout = 1.0;
    int listener = 1;
    unsigned long long size = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|y*dddpzK", kwlist, &name, &redis, &prefix,
                                     &max_stale, &lease, &timeout, &listener, &password,
                                     &size))
        return -1;
    if (self->t) {
        PyBuffer_Release(&prefix);
        PyErr_SetString(PyExc_ValueError, "already initialised");
        return -1;
    }
    shmc_tier_options o;
    memset(&o, 0, sizeof o);
    char host[256];
    if (parse_redis(redis, &o, host, sizeof host) != 0) {
        PyBuffer_Release(&prefix);
        PyErr_Format(PyExc_ValueError,
                     "bad Redis address %s (unix:///path, /path or redis://host:port/db)",
                     redis);
        return -1;
    }
    if (!(max_stale > 0) || !(lease >= 0.3) || !(timeout > 0) || max_stale > 1e9 ||
        lease > 1e6 || timeout > 1e6) {
        PyBuffer_Release(&prefix);
        PyErr_SetString(PyExc_ValueError,
                        "max_stale and timeout must be > 0 s, lease at least 0.3 s");
        return -1;
    }
    o.redis_password = password;
    o.prefix = prefix.buf;
    o.prefix_len = (size_t)prefix.len;
    o.max_stale_ms = (uint64_t)ceil(max_stale * 1000);
    o.lease_ms = (uint64_t)ceil(lease * 1000);
    o.timeout_ms = (uint64_t)ceil(timeout * 1000);
    o.flags = listener ? 0 : SHMC_TIER_NO_LISTENER;
    shmc_options so;
    memset(&so, 0, sizeof so);
    so.size = size;
    shmc_status st;
    shmc_t *c = NULL;
    shmc_tier_t *t = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_open(name, &so, &c);
    if (st == SHMC_OK) {
        st = shmc_tier_open(c, &o, &t);
        if (st != SHMC_OK)
            shmc_close(c);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&prefix);
    if (st != SHMC_OK) {
        raise_status(st);
        return -1;
    }
    self->c = c;
    self->t = t;
    return 0;
}

static PyObject *Tier_get(TierObject *self, PyObject *arg)
{
    if (closed(self))
        return NULL;
    Py_buffer k;
    if (PyObject_GetBuffer(arg, &k, PyBUF_SIMPLE) < 0)
        return NULL;
    void *v = NULL;
    size_t n = 0;
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_tier_get(self->t, k.buf, (size_t)k.len, &v, &n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&k);
    if (st == SHMC_NOT_FOUND)
        Py_RETURN_NONE;
    if (st != SHMC_OK)
        return raise_status(st);
    PyObject *r = PyBytes_FromStringAndSize(v, (Py_ssize_t)n);
    free(v);
    return r;
}

static PyObject *set_or_add(TierObject *self, PyObject *args, PyObject *kw, int add)
{
    static char *kwlist[] = {"key", "value", "ttl", NULL};
    Py_buffer k, v;
    PyObject *ttl = Py_None;
    if (closed(self))
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*|O", kwlist, &k, &v, &ttl))
        return NULL;
    uint64_t ms;
    if (ttl_arg(ttl, &ms) < 0) {
        PyBuffer_Release(&k);
        PyBuffer_Release(&v);
        return NULL;
    }
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = add ? shmc_tier_add(self->t, k.buf, (size_t)k.len, v.buf, (size_t)v.len, ms)
             : shmc_tier_set(self->t, k.buf, (size_t)k.len, v.buf, (size_t)v.len, ms);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&k);
    PyBuffer_Release(&v);
    return bool_or_raise(st, SHMC_EXISTS);
}

static PyObject *Tier_set(TierObject *self, PyObject *args, PyObject *kw)
{
    return set_or_add(self, args, kw, 0);
}

static PyObject *Tier_add(TierObject *self, PyObject *args, PyObject *kw)
{
    return set_or_add(self, args, kw, 1);
}

static PyObject *Tier_delete(TierObject *self, PyObject *arg)
{
    if (closed(self))
        return NULL;
    Py_buffer k;
    if (PyObject_GetBuffer(arg, &k, PyBUF_SIMPLE) < 0)
        return NULL;
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_tier_delete(self->t, k.buf, (size_t)k.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&k);
    return bool_or_raise(st, SHMC_NOT_FOUND);
}

static PyObject *Tier_incr(TierObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "delta", "create", NULL};
    Py_buffer k;
    long long delta = 1;
    int create = 0;
    if (closed(self))
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|Lp", kwlist, &k, &delta, &create))
        return NULL;
    int64_t r = 0;
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_tier_incr(self->t, k.buf, (size_t)k.len, (int64_t)delta,
                        create ? SHMC_TIER_INCR_CREATE : 0, &r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&k);
    if (st == SHMC_NOT_FOUND)
        Py_RETURN_NONE;
    if (st != SHMC_OK)
        return raise_status(st);
    return PyLong_FromLongLong((long long)r);
}

static PyObject *Tier_touch(TierObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "ttl", NULL};
    Py_buffer k;
    PyObject *ttl = Py_None;
    if (closed(self))
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|O", kwlist, &k, &ttl))
        return NULL;
    uint64_t ms;
    if (ttl_arg(ttl, &ms) < 0) {
        PyBuffer_Release(&k);
        return NULL;
    }
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_tier_touch(self->t, k.buf, (size_t)k.len, ms);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&k);
    return bool_or_raise(st, SHMC_NOT_FOUND);
}

/* get_or_fill: fn runs in the calling thread, with the GIL taken back. */
typedef struct fill_ctx {
    PyObject *fn;
    PyObject *exc_type, *exc_value, *exc_tb; /* fn's exception, re-raised */
} fill_ctx;

static int32_t call_fill(void *p, const void *key, size_t klen, shmc_fill_out *out)
{
    (void)key;
    (void)klen;
    fill_ctx *fc = p;
    PyGILState_STATE g = PyGILState_Ensure();
    int32_t rc = 0;
    PyObject *r = PyObject_CallNoArgs(fc->fn);
    if (r && !PyBytes_Check(r)) {
        Py_DECREF(r);
        r = NULL;
        PyErr_SetString(PyExc_TypeError, "the fill function must return bytes");
    }
    if (!r) {
        PyErr_Fetch(&fc->exc_type, &fc->exc_value, &fc->exc_tb);
        snprintf(out->message, sizeof out->message, "the fill function raised");
        rc = 1;
    } else {
        Py_ssize_t n = PyBytes_GET_SIZE(r);
        out->val = malloc(n ? (size_t)n : 1);
        if (!out->val) {
            rc = 2;
            snprintf(out->message, sizeof out->message, "out of memory");
        } else {
            memcpy(out->val, PyBytes_AS_STRING(r), (size_t)n);
            out->vlen = (size_t)n;
        }
        Py_DECREF(r);
    }
    PyGILState_Release(g);
    return rc;
}

static PyObject *Tier_get_or_fill(TierObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "fn", "ttl", "fill_timeout", "wait", NULL};
    Py_buffer k;
    PyObject *fn, *ttl = Py_None;
    double fill_timeout = 10.0, wait = 10.0;
    if (closed(self))
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*O|Odd", kwlist, &k, &fn, &ttl, &fill_timeout,
                                     &wait))
        return NULL;
    shmc_tier_fill_opts fo;
    memset(&fo, 0, sizeof fo);
    if (!PyCallable_Check(fn) || ttl_arg(ttl, &fo.ttl_ms) < 0 || !(fill_timeout > 0) ||
        !(wait > 0) || fill_timeout > 1e6 || wait > 1e6) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "fn must be callable, fill_timeout and wait > 0 seconds");
        PyBuffer_Release(&k);
        return NULL;
    }
    fo.fill_ms = (uint64_t)ceil(fill_timeout * 1000);
    fo.wait_ms = (uint64_t)ceil(wait * 1000);
    fill_ctx fc = {fn, NULL, NULL, NULL};
    void *v = NULL;
    size_t n = 0;
    shmc_fill f;
    memset(&f, 0, sizeof f);
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_tier_get_or_fill(self->t, k.buf, (size_t)k.len, call_fill, &fc, &fo, &v, &n, &f);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&k);
    if (fc.exc_type) {
        free(v);
        PyErr_Restore(fc.exc_type, fc.exc_value, fc.exc_tb);
        return NULL;
    }
    if (st != SHMC_OK) {
        if (st == SHMC_ETIMEDOUT) {
            PyErr_SetString(PyExc_TimeoutError, "no value after the wait (another caller fills)");
            return NULL;
        }
        return raise_status(st);
    }
    PyObject *r = PyBytes_FromStringAndSize(v, (Py_ssize_t)n);
    free(v);
    return r;
}

/* fn(t) without the GIL: None, or its status raised. */
static PyObject *tier_call(TierObject *self, shmc_status (*fn)(shmc_tier_t *))
{
    if (closed(self))
        return NULL;
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fn(self->t);
    Py_END_ALLOW_THREADS
    if (st != SHMC_OK)
        return raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *Tier_clear(TierObject *self, PyObject *unused)
{
    (void)unused;
    return tier_call(self, shmc_tier_clear);
}

static PyObject *Tier_flush_local(TierObject *self, PyObject *unused)
{
    (void)unused;
    return tier_call(self, shmc_tier_flush_local);
}

static PyObject *Tier_wait_listener(TierObject *self, PyObject *args)
{
    double timeout = 5.0;
    if (closed(self))
        return NULL;
    if (!PyArg_ParseTuple(args, "|d", &timeout))
        return NULL;
    if (!(timeout >= 0) || timeout > 1e6) {
        PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 s");
        return NULL;
    }
    shmc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_tier_wait_listener(self->t, (uint64_t)(timeout * 1000));
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(st == SHMC_OK);
}

static PyObject *Tier_stats(TierObject *self, PyObject *unused)
{
    (void)unused;
    if (closed(self))
        return NULL;
    shmc_tier_stats s;
    shmc_tier_stats_get(self->t, &s);
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:O,s:I,s:K}", "gets",
        (unsigned long long)s.gets, "l1_hits", (unsigned long long)s.l1_hits, "l1_waits",
        (unsigned long long)s.l1_waits, "fills", (unsigned long long)s.fills, "bypass",
        (unsigned long long)s.bypass, "redis_cmds", (unsigned long long)s.redis_cmds,
        "redis_errors", (unsigned long long)s.redis_errors, "invalidations",
        (unsigned long long)s.invalidations, "listener_epochs",
        (unsigned long long)s.listener_epochs, "listener_live",
        s.listener_live ? Py_True : Py_False, "listener_here",
        s.listener_here ? Py_True : Py_False, "listener_pid", (unsigned)s.listener_pid,
        "epoch", (unsigned long long)s.epoch);
}

static PyObject *Tier_close(TierObject *self, PyObject *unused)
{
    (void)unused;
    if (self->t) {
        shmc_tier_t *t = self->t;
        shmc_t *c = self->c;
        self->t = NULL;
        self->c = NULL;
        Py_BEGIN_ALLOW_THREADS
        shmc_tier_close(t);
        shmc_close(c);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyMethodDef Tier_methods[] = {
    {"get", (PyCFunction)Tier_get, METH_O, "get(key) -> bytes or None"},
    {"set", (PyCFunction)(void (*)(void))Tier_set, METH_VARARGS | METH_KEYWORDS,
     "set(key, value, ttl=None) -> True"},
    {"add", (PyCFunction)(void (*)(void))Tier_add, METH_VARARGS | METH_KEYWORDS,
     "add(key, value, ttl=None) -> bool (False: the key exists)"},
    {"delete", (PyCFunction)Tier_delete, METH_O, "delete(key) -> bool (it existed)"},
    {"incr", (PyCFunction)(void (*)(void))Tier_incr, METH_VARARGS | METH_KEYWORDS,
     "incr(key, delta=1, create=False) -> int, or None when missing (without create)"},
    {"touch", (PyCFunction)(void (*)(void))Tier_touch, METH_VARARGS | METH_KEYWORDS,
     "touch(key, ttl=None) -> bool (it existed)"},
    {"get_or_fill", (PyCFunction)(void (*)(void))Tier_get_or_fill, METH_VARARGS | METH_KEYWORDS,
     "get_or_fill(key, fn, ttl=None, fill_timeout=10.0, wait=10.0) -> bytes: on a miss in "
     "Redis one caller in the cluster calls fn() (bytes) while the others wait"},
    {"clear", (PyCFunction)Tier_clear, METH_NOARGS,
     "clear(): deletes the prefix's keys in Redis and on this host"},
    {"flush_local", (PyCFunction)Tier_flush_local, METH_NOARGS,
     "flush_local(): drops this host's copies (Redis unchanged)"},
    {"wait_listener", (PyCFunction)Tier_wait_listener, METH_VARARGS,
     "wait_listener(timeout=5.0) -> bool: a live listener on this host"},
    {"stats", (PyCFunction)Tier_stats, METH_NOARGS, "stats() -> dict"},
    {"close", (PyCFunction)Tier_close, METH_NOARGS, "close()"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TierType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmcache._tier.Tier",
    .tp_basicsize = sizeof(TierObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Tier(name, redis, prefix=b'', max_stale=60.0, lease=2.0, timeout=1.0, "
              "listener=True, password=None, size=0): the host's cache `name` as the L1 "
              "in front of Redis (see include/shmcache_tier.h)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tier_init,
    .tp_dealloc = (destructor)Tier_dealloc,
    .tp_methods = Tier_methods,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_tier", "shmcache as the per-host L1 in front of Redis", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tier(void)
{
    if (PyType_Ready(&TierType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    TierError = PyErr_NewException("shmcache._tier.TierError", NULL, NULL);
    RedisError = TierError ? PyErr_NewException("shmcache._tier.RedisError", TierError, NULL)
                           : NULL;
    if (!RedisError || PyModule_AddObject(m, "TierError", TierError) < 0) {
        Py_XDECREF(TierError);
        Py_XDECREF(RedisError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(TierError);
    if (PyModule_AddObject(m, "RedisError", RedisError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&TierType);
    if (PyModule_AddObject(m, "Tier", (PyObject *)&TierType) < 0) {
        Py_DECREF(&TierType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
