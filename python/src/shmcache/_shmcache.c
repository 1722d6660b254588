/*
 * _shmcache.c — the CPython extension module behind the `shmcache` package.
 *
 * One type, _shmcache.Cache, wraps an shmc_t handle.  Values go through a
 * serializer: the built-in one (implemented here, for speed) stores
 *   bytes            raw,                 flags FLAG_BYTES  (0)
 *   int              as decimal ASCII,    flags FLAG_INT    (2)  -> shmc_incr works on it
 *   str              as UTF-8,            flags FLAG_TEXT   (16)
 *   anything else    pickled,             flags FLAG_PICKLE (1)
 * (the flag values are pymemcache's, so other clients can read them); a
 * user serializer is any object with dumps(value) -> (bytes, flags) and
 * loads(data, flags) -> value.
 *
 * Reads copy the value once, from shared memory straight into the bytes
 * object that is returned: a bytes object is allocated with a guessed
 * capacity large enough for most values (a malloc()ed block, so shrinking it
 * to the real length is an in-place realloc), and only a value larger than
 * the guess costs a second lookup at the exact size.
 *
 * The GIL is released around every call that can sleep (lock and fill
 * waits, shmc_open, flush, verify) and around copies of 64 KiB or more.
 *
 * A handle may be closed while another thread is inside a call that released
 * the GIL: `busy` counts the calls in flight (it is changed only with the GIL
 * held) and the last one out does the deferred shmc_close.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <shmcache.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAG_BYTES  0u
#define FLAG_PICKLE 1u
#define FLAG_INT    2u
#define FLAG_TEXT   16u

/* Copies at least this big run without the GIL. */
#define NOGIL_BYTES ((size_t)64 * 1024)
/* First capacity tried by get: values up to this size need one lookup. */
#define GET_GUESS ((size_t)16 * 1024)
/* The same for each key of get_many, which processes keys in chunks. */
#define MANY_GUESS ((size_t)2048)
#define MANY_CHUNK 256
/* "Wait forever" for lock timeouts (about 146 million years). */
#define FOREVER_MS ((uint64_t)1 << 62)

/* Error code a fill is aborted with when the Python fill function raised. */
#define FILL_ERR_PYTHON 1

/* ------------------------------------------------------------------------ */
/* Exceptions                                                                */

static PyObject *ShmcacheError;
static PyObject *FillError;
static PyObject *exc_by_status[SHMC_STATUS_COUNT_];
static PyObject *ABSENT;           /* sentinel: "no value" for cas_value */
static PyObject *pickle_dumps, *pickle_loads;
static int pickle_highest;

static const char *const status_names[SHMC_STATUS_COUNT_] = {
    [SHMC_OK] = "OK",
    [SHMC_NOT_FOUND] = "NOT_FOUND",
    [SHMC_EXISTS] = "EXISTS",
    [SHMC_EBUFSIZE] = "EBUFSIZE",
    [SHMC_EKEYLEN] = "EKEYLEN",
    [SHMC_EVALLEN] = "EVALLEN",
    [SHMC_EINVAL] = "EINVAL",
    [SHMC_ENAME] = "ENAME",
    [SHMC_ENOENT] = "ENOENT",
    [SHMC_EEXIST] = "EEXIST",
    [SHMC_EACCES] = "EACCES",
    [SHMC_EVERSION] = "EVERSION",
    [SHMC_EMISMATCH] = "EMISMATCH",
    [SHMC_ECORRUPT] = "ECORRUPT",
    [SHMC_ENOMEM] = "ENOMEM",
    [SHMC_ENOSLOTS] = "ENOSLOTS",
    [SHMC_ENAMESPACE] = "ENAMESPACE",
    [SHMC_ETIMEDOUT] = "ETIMEDOUT",
    [SHMC_ESYS] = "ESYS",
    [SHMC_ETOOSMALL] = "ETOOSMALL",
    [SHMC_STALE] = "STALE",
    [SHMC_ENOTNUM] = "ENOTNUM",
    [SHMC_EBUSY] = "EBUSY",
    [SHMC_ENOTOWNER] = "ENOTOWNER",
    [SHMC_ETABLEFULL] = "ETABLEFULL",
    [SHMC_EHOLDS] = "EHOLDS",
    [SHMC_LEADER] = "LEADER",
    [SHMC_EFILL] = "EFILL",
    [SHMC_ENOSPC] = "ENOSPC",
};

typedef struct exc_def {
    shmc_status status;
    const char *name;
    PyObject **extra_base;   /* a built-in exception it also derives from, or NULL */
    const char *doc;
} exc_def;

static const exc_def exc_defs[] = {
    {SHMC_EBUFSIZE, "BufferSizeError", NULL, "A buffer was too small (internal)."},
    {SHMC_EKEYLEN, "KeyLengthError", &PyExc_ValueError,
     "The key is empty or longer than the cache's max_key."},
    {SHMC_EVALLEN, "ValueLengthError", &PyExc_ValueError,
     "The value is longer than the cache's max_value."},
    {SHMC_EINVAL, "InvalidArgumentError", &PyExc_ValueError, "An argument is invalid."},
    {SHMC_ENAME, "InvalidNameError", &PyExc_ValueError, "The cache name is invalid."},
    {SHMC_ENOENT, "CacheNotFoundError", &PyExc_FileNotFoundError,
     "No cache has that name (attach-only open, destroy)."},
    {SHMC_EEXIST, "CacheExistsError", &PyExc_FileExistsError,
     "The cache already exists (exclusive open)."},
    {SHMC_EACCES, "PermissionDeniedError", &PyExc_PermissionError,
     "Permission to the segment is denied."},
    {SHMC_EVERSION, "VersionError", NULL,
     "The segment was made by an incompatible shmcache version or layout."},
    {SHMC_EMISMATCH, "MismatchError", NULL,
     "The segment exists with other creation parameters."},
    {SHMC_ECORRUPT, "CorruptError", NULL, "The segment failed validation."},
    {SHMC_ENOMEM, "NoMemoryError", NULL,
     "No storage segment could be freed (every one is pinned); the write was not made."},
    {SHMC_ENOSLOTS, "NoSlotsError", NULL, "Live threads hold every participant slot."},
    {SHMC_ENAMESPACE, "NamespaceError", NULL,
     "The segment belongs to another PID namespace."},
    {SHMC_ETIMEDOUT, "TimeoutError", &PyExc_TimeoutError, "The call waited too long."},
    {SHMC_ESYS, "SystemCallError", &PyExc_OSError, "A system call failed."},
    {SHMC_ETOOSMALL, "TooSmallError", &PyExc_ValueError,
     "The size is too small for max_value."},
    {SHMC_ENOTNUM, "NotANumberError", NULL, "incr/decr: the value is not a counter."},
    {SHMC_EBUSY, "BusyError", NULL, "The lock is held by another owner."},
    {SHMC_ENOTOWNER, "NotOwnerError", NULL,
     "The lock or fill is no longer ours (released, or its lease or deadline passed "
     "and another took over)."},
    {SHMC_ETABLEFULL, "TableFullError", NULL,
     "No free entry in the lock and singleflight table."},
    {SHMC_EHOLDS, "TooManyHoldsError", NULL,
     "This thread already holds the most locks and fills allowed at once."},
    {SHMC_EFILL, "FillError", NULL,
     "The leader's fill failed; .error and .message hold its error."},
    {SHMC_ENOSPC, "NoSpaceError", &PyExc_OSError,
     "/dev/shm has no room for a cache of this size."},
};

/* Raises the exception for status st.  err is the errno saved right after
 * the call (used for SHMC_ESYS).  Returns NULL. */
static PyObject *raise_status(shmc_status st, int err)
{
    PyObject *cls = ((unsigned)st < SHMC_STATUS_COUNT_ && exc_by_status[st])
                        ? exc_by_status[st] : ShmcacheError;
    PyObject *e;
    if (st == SHMC_ESYS) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: %s", shmc_strerror(st), strerror(err));
        e = PyObject_CallFunction(cls, "is", err, msg);
    } else {
        e = PyObject_CallFunction(cls, "s", shmc_strerror(st));
    }
    if (!e)
        return NULL;
    PyObject *code = PyLong_FromLong((long)st);
    PyObject *name = PyUnicode_FromString(
        (unsigned)st < SHMC_STATUS_COUNT_ && status_names[st] ? status_names[st] : "UNKNOWN");
    if (!code || !name || PyObject_SetAttrString(e, "status", code) < 0 ||
        PyObject_SetAttrString(e, "status_name", name) < 0) {
        Py_XDECREF(code);
        Py_XDECREF(name);
        Py_DECREF(e);
        return NULL;
    }
    Py_DECREF(code);
    Py_DECREF(name);
    PyErr_SetObject(cls, e);
    Py_DECREF(e);
    return NULL;
}

static PyObject *raise_fill_error(const shmc_fill *f)
{
    char msg[SHMC_FILL_MSG_MAX];
    memcpy(msg, f->message, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (!m)
        return NULL;
    PyObject *text = PyUnicode_GET_LENGTH(m)
                         ? PyUnicode_FromFormat("the leader's fill failed: %U", m)
                         : PyUnicode_FromFormat("the leader's fill failed (error %d)",
                                                (int)f->error);
    PyObject *e = text ? PyObject_CallOneArg(FillError, text) : NULL;
    Py_XDECREF(text);
    if (!e) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *code = PyLong_FromLong((long)SHMC_EFILL);
    PyObject *name = PyUnicode_FromString("EFILL");
    PyObject *error = PyLong_FromLong((long)f->error);
    int bad = !code || !name || !error || PyObject_SetAttrString(e, "status", code) < 0 ||
              PyObject_SetAttrString(e, "status_name", name) < 0 ||
              PyObject_SetAttrString(e, "error", error) < 0 ||
              PyObject_SetAttrString(e, "message", m) < 0;
    Py_XDECREF(code);
    Py_XDECREF(name);
    Py_XDECREF(error);
    Py_DECREF(m);
    if (!bad)
        PyErr_SetObject(FillError, e);
    Py_DECREF(e);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Argument conversion                                                       */

typedef struct keyarg {
    const char *p;
    size_t n;
} keyarg;

/* A key (or lock name): bytes as is, str as UTF-8.  The pointer stays valid
 * while the object lives. */
static int get_key(PyObject *o, keyarg *k)
{
    if (PyBytes_Check(o)) {
        k->p = PyBytes_AS_STRING(o);
        k->n = (size_t)PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        Py_ssize_t n;
        k->p = PyUnicode_AsUTF8AndSize(o, &n);
        if (!k->p)
            return -1;
        k->n = (size_t)n;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "key must be str or bytes, not %.100s",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* Seconds (int or float, >= 0) to milliseconds, rounding up so that a
 * positive time is never 0 ms.  inf gives UINT64_MAX.  Returns -1 with an
 * exception set on a bad value. */
static int seconds_to_ms(PyObject *o, const char *what, uint64_t *ms)
{
    if (PyBool_Check(o) || !(PyLong_Check(o) || PyFloat_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds or None, not %.100s",
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();   /* an int too large for a double: practically forever */
        d = PyObject_RichCompareBool(o, Py_False, Py_GT) == 1 ? INFINITY : -1.0;
    }
    if (isnan(d) || d < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0 seconds", what);
        return -1;
    }
    if (isinf(d) || d * 1000.0 >= 18446744073709549568.0) {
        *ms = UINT64_MAX;
        return 0;
    }
    double m = ceil(d * 1000.0);
    *ms = (uint64_t)m;
    if (*ms == 0 && d > 0)
        *ms = 1;
    return 0;
}

/* How a time argument in seconds becomes milliseconds: None gives none_ms;
 * otherwise seconds_to_ms, then inf (UINT64_MAX) becomes inf_ms and the result
 * is clamped to [min_ms, max_ms]. */
typedef struct secs_rule {
    const char *what;   /* the argument's name, for errors */
    uint64_t none_ms, inf_ms, min_ms, max_ms;
} secs_rule;

static int conv_secs(PyObject *o, uint64_t *ms, const secs_rule *r)
{
    if (o == Py_None) {
        *ms = r->none_ms;
        return 1;
    }
    if (seconds_to_ms(o, r->what, ms) < 0)
        return 0;
    if (*ms == UINT64_MAX)
        *ms = r->inf_ms;
    if (*ms < r->min_ms)
        *ms = r->min_ms;
    if (*ms > r->max_ms)
        *ms = r->max_ms;
    return 1;
}

/* ttl: None or 0 = never expires; inf = never; else seconds. */
static int conv_ttl(PyObject *o, void *out)
{
    static const secs_rule r = {"ttl", 0, 0, 0, UINT64_MAX};
    return conv_secs(o, out, &r);
}

/* Lock timeout: None = wait forever; 0 = do not wait. */
static int conv_timeout(PyObject *o, void *out)
{
    static const secs_rule r = {"timeout", FOREVER_MS, FOREVER_MS, 0, FOREVER_MS};
    return conv_secs(o, out, &r);
}

/* Lease, or a fill time: None or 0 = none / the library default. */
static int conv_opt_ms(PyObject *o, void *out)
{
    static const secs_rule r = {"time", 0, FOREVER_MS, 0, FOREVER_MS};
    return conv_secs(o, out, &r);
}

/* A fill wait: None = library default (10 s); 0 = as short as possible. */
static int conv_wait(PyObject *o, void *out)
{
    static const secs_rule r = {"wait", 0, FOREVER_MS, 1, FOREVER_MS};
    return conv_secs(o, out, &r);
}

static int conv_u64(PyObject *o, void *out)
{
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "expected an int, not %.100s", Py_TYPE(o)->tp_name);
        return 0;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "expected an int in [0, 2**64)");
        return 0;
    }
    *(uint64_t *)out = (uint64_t)v;
    return 1;
}

static int conv_u32(PyObject *o, void *out)
{
    uint64_t v;
    if (o == Py_None) {
        *(uint32_t *)out = 0;
        return 1;
    }
    if (!conv_u64(o, &v))
        return 0;
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "expected an int in [0, 2**32)");
        return 0;
    }
    *(uint32_t *)out = (uint32_t)v;
    return 1;
}

/* An int in [0, 2**64), or None for 0 (an option's default). */
static int conv_u64_opt(PyObject *o, void *out)
{
    if (o == Py_None) {
        *(uint64_t *)out = 0;
        return 1;
    }
    return conv_u64(o, out);
}

/* The arguments of a METH_FASTCALL | METH_KEYWORDS call, by position or by
 * name, into out[0..nnames) (NULL where not given): no argument tuple or
 * dict is built.  The first nrequired are required.  Returns 0, or -1 with
 * TypeError set. */
static int parse_fast(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, int nnames, int nrequired,
                      PyObject **out)
{
    if (nargs > nnames) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname,
                     nnames, nargs);
        return -1;
    }
    for (int i = 0; i < nnames; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *kn = PyTuple_GET_ITEM(kwnames, j);
        int i = 0;
        while (i < nnames && PyUnicode_CompareWithASCIIString(kn, names[i]) != 0)
            i++;
        if (i == nnames) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         fname, kn);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError,
                         "argument for %s() given by name ('%s') and position (%d)", fname,
                         names[i], i + 1);
            return -1;
        }
        out[i] = args[nargs + j];
    }
    for (int i = 0; i < nrequired; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)",
                         fname, names[i], i + 1);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The Cache object                                                          */

typedef struct CacheObject {
    PyObject_HEAD
    shmc_t *c;
    PyObject *name;         /* str */
    PyObject *serializer;   /* None: built-in */
    PyObject *protocol;     /* pickle protocol (int) */
    uint32_t max_key, max_value;
    int busy;               /* calls in flight (GIL held when changed) */
    int closed;             /* close() was called */
    PyObject *weakrefs;
} CacheObject;

static shmc_t *enter(CacheObject *s)
{
    if (!s->c || s->closed) {
        PyErr_SetString(PyExc_ValueError,
                        s->closed ? "I/O operation on a closed cache" : "cache is not open");
        return NULL;
    }
    s->busy++;
    return s->c;
}

static void leave(CacheObject *s)
{
    if (--s->busy == 0 && s->closed && s->c) {
        shmc_t *c = s->c;
        s->c = NULL;
        shmc_close(c);
    }
}

/* A serialized value: p[0..n) with flags, kept alive by obj/view. */
typedef struct sval {
    const char *p;
    size_t n;
    uint32_t flags;
    PyObject *obj;
    Py_buffer view;
    int has_view;
    char small[32];
} sval;

static void sval_release(sval *v)
{
    if (v->has_view)
        PyBuffer_Release(&v->view);
    v->has_view = 0;
    Py_CLEAR(v->obj);
}

static int sval_buffer(PyObject *o, sval *v)
{
    if (PyObject_GetBuffer(o, &v->view, PyBUF_SIMPLE) < 0)
        return -1;
    v->has_view = 1;
    v->p = v->view.buf ? v->view.buf : "";
    v->n = (size_t)v->view.len;
    return 0;
}

/* Raw bytes-like value (set_raw, append): flags are the caller's. */
static int sval_raw(PyObject *o, sval *v)
{
    memset(v, 0, sizeof *v);
    if (PyUnicode_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes-like, not str");
        return -1;
    }
    return sval_buffer(o, v);
}

static int sval_pickle(CacheObject *s, PyObject *o, sval *v)
{
    PyObject *argv[2] = {o, s->protocol};
    v->obj = PyObject_Vectorcall(pickle_dumps, argv, 2, NULL);
    if (!v->obj)
        return -1;
    if (!PyBytes_Check(v->obj)) {
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        Py_CLEAR(v->obj);
        return -1;
    }
    v->p = PyBytes_AS_STRING(v->obj);
    v->n = (size_t)PyBytes_GET_SIZE(v->obj);
    v->flags = FLAG_PICKLE;
    return 0;
}

/* Serializes o with the cache's serializer. */
static int sval_from(CacheObject *s, PyObject *o, sval *v)
{
    memset(v, 0, sizeof *v);
    if (s->serializer != Py_None) {
        PyObject *r = PyObject_CallMethod(s->serializer, "dumps", "O", o);
        if (!r)
            return -1;
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
            PyErr_SetString(PyExc_TypeError,
                            "serializer.dumps() must return a (bytes, flags) tuple");
            Py_DECREF(r);
            return -1;
        }
        uint32_t fl;
        if (!conv_u32(PyTuple_GET_ITEM(r, 1), &fl) ||
            sval_raw(PyTuple_GET_ITEM(r, 0), v) < 0) {
            Py_DECREF(r);
            return -1;
        }
        v->flags = fl;
        v->obj = r;   /* keeps the data alive along with the view */
        return 0;
    }
    if (PyBytes_CheckExact(o)) {
        Py_INCREF(o);
        v->obj = o;
        v->p = PyBytes_AS_STRING(o);
        v->n = (size_t)PyBytes_GET_SIZE(o);
        v->flags = FLAG_BYTES;
        return 0;
    }
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        v->flags = FLAG_INT;
        if (!overflow) {
            int n = snprintf(v->small, sizeof v->small, "%lld", x);
            v->p = v->small;
            v->n = (size_t)n;
            return 0;
        }
        PyObject *str = PyObject_Str(o);
        if (str) {
            Py_ssize_t n;
            const char *p = PyUnicode_AsUTF8AndSize(str, &n);
            if (!p) {
                Py_DECREF(str);
                return -1;
            }
            v->obj = str;
            v->p = p;
            v->n = (size_t)n;
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_ValueError))   /* too many digits for str() */
            return -1;
        PyErr_Clear();
        return sval_pickle(s, o, v);
    }
    if (PyUnicode_CheckExact(o)) {
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(o, &n);
        if (p) {
            Py_INCREF(o);
            v->obj = o;
            v->p = p;
            v->n = (size_t)n;
            v->flags = FLAG_TEXT;
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))   /* lone surrogates */
            return -1;
        PyErr_Clear();
    }
    return sval_pickle(s, o, v);
}

/* Deserializes b (a reference this takes over) stored with flags. */
static PyObject *load_value(CacheObject *s, PyObject *b, uint32_t flags)
{
    PyObject *r;
    if (s->serializer != Py_None) {
        r = PyObject_CallMethod(s->serializer, "loads", "OI", b, (unsigned)flags);
        Py_DECREF(b);
        return r;
    }
    switch (flags) {
    case FLAG_BYTES:
        return b;
    case FLAG_INT: {
        const char *p = PyBytes_AS_STRING(b);
        Py_ssize_t n = PyBytes_GET_SIZE(b), i = (n > 0 && p[0] == '-') ? 1 : 0;
        int ok = n > i && n < 5000;
        for (; ok && i < n; i++)
            ok = p[i] >= '0' && p[i] <= '9';
        if (!ok) {
            Py_DECREF(b);
            PyErr_SetString(PyExc_ValueError, "stored int value is not decimal digits");
            return NULL;
        }
        r = PyLong_FromString(p, NULL, 10);   /* b is NUL-terminated */
        Py_DECREF(b);
        return r;
    }
    case FLAG_TEXT:
        r = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), "strict");
        Py_DECREF(b);
        return r;
    case FLAG_PICKLE:
        r = PyObject_CallOneArg(pickle_loads, b);
        Py_DECREF(b);
        return r;
    default:   /* another client's flags: hand over the bytes */
        return b;
    }
}

static size_t guess_for(CacheObject *s, size_t guess)
{
    if (s->max_value && s->max_value < guess)
        guess = s->max_value;
    return guess ? guess : 1;
}

/* Reads key's value into a new bytes object of exactly its length, copying
 * once from shared memory.  With cas != NULL, uses shmc_gets.
 * Returns 1 (found: *out, *flags, *cas), 0 (absent) or -1 (exception set). */
static int fetch(shmc_t *c, const keyarg *k, size_t cap, PyObject **out, uint32_t *flags,
                 uint64_t *cas)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
        if (!b)
            return -1;
        char *buf = PyBytes_AS_STRING(b);
        size_t vlen = 0;
        uint32_t fl = 0;
        shmc_status st;
        int err = 0;
        if (cap >= NOGIL_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            st = cas ? shmc_gets(c, k->p, k->n, buf, cap, &vlen, &fl, cas)
                     : shmc_get(c, k->p, k->n, buf, cap, &vlen, &fl);
            err = errno;
            Py_END_ALLOW_THREADS
        } else {
            st = cas ? shmc_gets(c, k->p, k->n, buf, cap, &vlen, &fl, cas)
                     : shmc_get(c, k->p, k->n, buf, cap, &vlen, &fl);
            err = errno;
        }
        if (st == SHMC_OK) {
            if (vlen != cap && _PyBytes_Resize(&b, (Py_ssize_t)vlen) < 0)
                return -1;
            *out = b;
            *flags = fl;
            return 1;
        }
        Py_DECREF(b);
        if (st == SHMC_NOT_FOUND)
            return 0;
        if (st != SHMC_EBUFSIZE) {
            raise_status(st, err);
            return -1;
        }
        /* The value is larger than the guess (or grew since the last try). */
        cap = attempt < 2 ? vlen : vlen + vlen / 2;
    }
    raise_status(SHMC_EBUFSIZE, 0);
    return -1;
}

static PyObject *Cache_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args;
    (void)kw;
    CacheObject *s = (CacheObject *)type->tp_alloc(type, 0);
    if (!s)
        return NULL;
    Py_INCREF(Py_None);
    s->name = Py_None;
    Py_INCREF(Py_None);
    s->serializer = Py_None;
    s->protocol = PyLong_FromLong(pickle_highest);
    if (!s->protocol) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static int Cache_init(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "size", "max_key", "max_value", "slots", "mode",
                             "locks", "create", "exclusive", "serializer",
                             "pickle_protocol", "prefault", "max_items", NULL};
    PyObject *name, *serializer = Py_None, *protocol = Py_None;
    shmc_options o;
    memset(&o, 0, sizeof o);
    int create = 1, exclusive = 0, prefault = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|O&$O&O&O&O&O&ppOOpO&:Cache", kwlist, &name,
                                     conv_u64_opt, &o.size, conv_u32, &o.max_key, conv_u32,
                                     &o.max_value, conv_u32, &o.slots, conv_u32, &o.mode,
                                     conv_u32, &o.locks, &create, &exclusive, &serializer,
                                     &protocol, &prefault, conv_u64_opt, &o.max_items))
        return -1;
    if (s->c) {
        PyErr_SetString(PyExc_RuntimeError, "Cache.__init__ called on an open cache");
        return -1;
    }
    if (!create && exclusive) {
        PyErr_SetString(PyExc_ValueError, "create=False and exclusive=True exclude each other");
        return -1;
    }
    PyObject *ser_obj = NULL;   /* a class is instantiated */
    if (serializer != Py_None && PyType_Check(serializer)) {
        ser_obj = PyObject_CallNoArgs(serializer);
        if (!ser_obj)
            return -1;
        serializer = ser_obj;
    }
    if (serializer != Py_None && (!PyObject_HasAttrString(serializer, "dumps") ||
                                  !PyObject_HasAttrString(serializer, "loads"))) {
        PyErr_SetString(PyExc_TypeError, "serializer must have dumps() and loads() methods");
        Py_XDECREF(ser_obj);
        return -1;
    }
    if (protocol != Py_None && !PyLong_Check(protocol)) {
        PyErr_SetString(PyExc_TypeError, "pickle_protocol must be an int or None");
        Py_XDECREF(ser_obj);
        return -1;
    }
    o.flags = !create ? SHMC_OPEN_ATTACH_ONLY : exclusive ? SHMC_OPEN_CREATE_ONLY : 0;
    if (prefault)
        o.flags |= SHMC_OPEN_PREFAULT;
    const char *cname = PyUnicode_AsUTF8(name);
    if (!cname || strlen(cname) != (size_t)PyUnicode_GET_LENGTH(name)) {
        if (cname)   /* a NUL or a non-ASCII character */
            raise_status(SHMC_ENAME, 0);
        Py_XDECREF(ser_obj);
        return -1;
    }
    shmc_t *c = NULL;
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_open(cname, &o, &c);
    err = errno;
    Py_END_ALLOW_THREADS
    if (st != SHMC_OK) {
        raise_status(st, err);
        Py_XDECREF(ser_obj);
        return -1;
    }
    shmc_info info;
    if (shmc_info_get(c, &info) == SHMC_OK) {
        s->max_key = info.max_key;
        s->max_value = info.max_value;
    }
    s->c = c;
    s->closed = 0;
    Py_INCREF(name);
    Py_SETREF(s->name, name);
    Py_INCREF(serializer);
    Py_SETREF(s->serializer, serializer);
    Py_XDECREF(ser_obj);
    if (protocol != Py_None) {
        Py_INCREF(protocol);
        Py_SETREF(s->protocol, protocol);
    }
    return 0;
}

static int Cache_traverse(CacheObject *s, visitproc visit, void *arg)
{
    Py_VISIT(s->serializer);
    Py_VISIT(s->name);
    Py_VISIT(s->protocol);
    return 0;
}

static int Cache_clear(CacheObject *s)
{
    Py_CLEAR(s->serializer);
    Py_CLEAR(s->name);
    Py_CLEAR(s->protocol);
    return 0;
}

static void Cache_dealloc(CacheObject *s)
{
    PyObject_GC_UnTrack(s);
    if (s->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)s);
    if (s->c) {
        shmc_close(s->c);
        s->c = NULL;
    }
    Cache_clear(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *Cache_repr(CacheObject *s)
{
    PyObject *mod = PyObject_GetAttrString((PyObject *)Py_TYPE(s), "__module__");
    PyObject *qual = PyObject_GetAttrString((PyObject *)Py_TYPE(s), "__qualname__");
    PyObject *r = NULL;
    if (mod && qual)
        r = PyUnicode_FromFormat("<%S.%S %R %s>", mod, qual, s->name,
                                 s->c && !s->closed ? "open" : "closed");
    Py_XDECREF(mod);
    Py_XDECREF(qual);
    return r;
}

static PyObject *Cache_close(CacheObject *s, PyObject *unused)
{
    (void)unused;
    if (s->c && !s->closed) {
        s->closed = 1;
        if (s->busy == 0) {
            shmc_t *c = s->c;
            s->c = NULL;
            shmc_close(c);
        }
    }
    s->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *Cache_enter(CacheObject *s, PyObject *unused)
{
    (void)unused;
    if (!s->c || s->closed) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed cache");
        return NULL;
    }
    Py_INCREF(s);
    return (PyObject *)s;
}

static PyObject *Cache_exit(CacheObject *s, PyObject *args)
{
    (void)args;
    return Cache_close(s, NULL);
}

static PyObject *Cache_detach_thread(CacheObject *s, PyObject *unused)
{
    (void)unused;
    if (s->c && !s->closed)
        shmc_thread_detach(s->c);
    Py_RETURN_NONE;
}

/* --- get ------------------------------------------------------------------ */

/* The value of key k, or a new reference to dflt if absent. */
static PyObject *do_get(CacheObject *s, const keyarg *k, PyObject *dflt)
{
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    PyObject *b = NULL;
    uint32_t fl = 0;
    int r = fetch(c, k, guess_for(s, GET_GUESS), &b, &fl, NULL);
    leave(s);
    if (r < 0)
        return NULL;
    if (r == 0) {
        Py_INCREF(dflt);
        return dflt;
    }
    return load_value(s, b, fl);
}

static PyObject *Cache_get(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    keyarg k;
    if (parse_fast("get", args, nargs, kwnames, names, 2, 1, a) < 0 || get_key(a[0], &k) < 0)
        return NULL;
    return do_get(s, &k, a[1] ? a[1] : Py_None);
}

static PyObject *Cache_get_raw(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", NULL};
    PyObject *key;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:get_raw", kwlist, &key) ||
        get_key(key, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    PyObject *b = NULL;
    uint32_t fl = 0;
    int r = fetch(c, &k, guess_for(s, GET_GUESS), &b, &fl, NULL);
    leave(s);
    if (r < 0)
        return NULL;
    if (r == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(NI)", b, (unsigned)fl);
}

static PyObject *Cache_gets(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "default", NULL};
    PyObject *key, *dflt = Py_None;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:gets", kwlist, &key, &dflt) ||
        get_key(key, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    PyObject *b = NULL;
    uint32_t fl = 0;
    uint64_t cas = 0;
    int r = fetch(c, &k, guess_for(s, GET_GUESS), &b, &fl, &cas);
    leave(s);
    if (r < 0)
        return NULL;
    if (r == 0)
        return Py_BuildValue("(OO)", dflt, Py_None);
    PyObject *v = load_value(s, b, fl);
    if (!v)
        return NULL;
    return Py_BuildValue("(NK)", v, (unsigned long long)cas);
}

/* --- set family ------------------------------------------------------------ */

enum setop { OP_SET, OP_ADD, OP_REPLACE };

static PyObject *do_store(CacheObject *s, enum setop op, const keyarg *k, sval *v,
                          uint64_t ttl)
{
    shmc_t *c = enter(s);
    if (!c) {
        sval_release(v);
        return NULL;
    }
    shmc_status st;
    int err;
#define STORE_CALL                                                                      \
    st = op == OP_SET   ? shmc_set(c, k->p, k->n, v->p, v->n, v->flags, ttl)            \
         : op == OP_ADD ? shmc_add(c, k->p, k->n, v->p, v->n, v->flags, ttl)            \
                        : shmc_replace(c, k->p, k->n, v->p, v->n, v->flags, ttl);       \
    err = errno
    if (v->n >= NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        STORE_CALL;
        Py_END_ALLOW_THREADS
    } else {
        STORE_CALL;
    }
#undef STORE_CALL
    leave(s);
    sval_release(v);
    switch (st) {
    case SHMC_OK:
        if (op == OP_SET)
            Py_RETURN_NONE;
        Py_RETURN_TRUE;
    case SHMC_EXISTS:
    case SHMC_NOT_FOUND:
        Py_RETURN_FALSE;
    default:
        return raise_status(st, err);
    }
}

static PyObject *store_method(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, enum setop op, const char *fname)
{
    static const char *const names[] = {"key", "value", "ttl"};
    PyObject *a[3];
    uint64_t ttl = 0;
    keyarg k;
    sval v;
    if (parse_fast(fname, args, nargs, kwnames, names, 3, 2, a) < 0 ||
        (a[2] && !conv_ttl(a[2], &ttl)) || get_key(a[0], &k) < 0 ||
        sval_from(s, a[1], &v) < 0)
        return NULL;
    return do_store(s, op, &k, &v, ttl);
}

static PyObject *Cache_set(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    return store_method(s, args, nargs, kwnames, OP_SET, "set");
}

static PyObject *Cache_add(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    return store_method(s, args, nargs, kwnames, OP_ADD, "add");
}

static PyObject *Cache_replace(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return store_method(s, args, nargs, kwnames, OP_REPLACE, "replace");
}

static PyObject *Cache_set_raw(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"key", "data", "flags", "ttl"};
    PyObject *a[4];
    uint32_t flags = 0;
    uint64_t ttl = 0;
    keyarg k;
    sval v;
    if (parse_fast("set_raw", args, nargs, kwnames, names, 4, 2, a) < 0 ||
        (a[2] && !conv_u32(a[2], &flags)) || (a[3] && !conv_ttl(a[3], &ttl)) ||
        get_key(a[0], &k) < 0 || sval_raw(a[1], &v) < 0)
        return NULL;
    v.flags = flags;
    return do_store(s, OP_SET, &k, &v, ttl);
}

static PyObject *Cache_cas(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "value", "token", "ttl", NULL};
    PyObject *key, *value;
    uint64_t token = 0, ttl = 0, out = 0;
    keyarg k;
    sval v;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO&|O&:cas", kwlist, &key, &value, conv_u64,
                                     &token, conv_ttl, &ttl) ||
        get_key(key, &k) < 0)
        return NULL;
    if (token == 0) {
        PyErr_SetString(PyExc_ValueError, "a CAS token is never 0");
        return NULL;
    }
    if (sval_from(s, value, &v) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c) {
        sval_release(&v);
        return NULL;
    }
    shmc_status st;
    int err;
    if (v.n >= NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        st = shmc_cas(c, k.p, k.n, v.p, v.n, v.flags, ttl, token, &out);
        err = errno;
        Py_END_ALLOW_THREADS
    } else {
        st = shmc_cas(c, k.p, k.n, v.p, v.n, v.flags, ttl, token, &out);
        err = errno;
    }
    leave(s);
    sval_release(&v);
    switch (st) {
    case SHMC_OK:
        return PyLong_FromUnsignedLongLong(out);
    case SHMC_STALE:
        Py_RETURN_FALSE;
    case SHMC_NOT_FOUND:
        Py_RETURN_NONE;
    default:
        return raise_status(st, err);
    }
}

static PyObject *Cache_cas_value(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "expected", "value", "ttl", NULL};
    PyObject *key, *expected, *value;
    uint64_t ttl = 0;
    keyarg k;
    sval e, v;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|O&:cas_value", kwlist, &key, &expected,
                                     &value, conv_ttl, &ttl) ||
        get_key(key, &k) < 0)
        return NULL;
    int absent = expected == ABSENT;
    memset(&e, 0, sizeof e);
    if (!absent && sval_from(s, expected, &e) < 0)
        return NULL;
    if (sval_from(s, value, &v) < 0) {
        sval_release(&e);
        return NULL;
    }
    shmc_t *c = enter(s);
    if (!c) {
        sval_release(&e);
        sval_release(&v);
        return NULL;
    }
    size_t cur_vlen = 0;
    shmc_status st;
    int err;
    const void *ep = absent ? NULL : (e.p ? e.p : "");
    int nogil = v.n >= NOGIL_BYTES || e.n >= NOGIL_BYTES;
    if (nogil) {
        Py_BEGIN_ALLOW_THREADS
        st = shmc_cas_value(c, k.p, k.n, ep, e.n, v.p, v.n, v.flags, ttl, NULL, 0, &cur_vlen);
        err = errno;
        Py_END_ALLOW_THREADS
    } else {
        st = shmc_cas_value(c, k.p, k.n, ep, e.n, v.p, v.n, v.flags, ttl, NULL, 0, &cur_vlen);
        err = errno;
    }
    sval_release(&e);
    sval_release(&v);
    PyObject *result = NULL;
    if (st == SHMC_OK) {
        result = Py_BuildValue("(OO)", Py_True, Py_None);
    } else if (st == SHMC_STALE || st == SHMC_NOT_FOUND || st == SHMC_EXISTS) {
        /* Refused: report the current value (read now, with its flags). */
        PyObject *b = NULL;
        uint32_t fl = 0;
        int r = fetch(c, &k, guess_for(s, cur_vlen ? cur_vlen : GET_GUESS), &b, &fl, NULL);
        if (r == 0) {
            result = Py_BuildValue("(OO)", Py_False, ABSENT);
        } else if (r > 0) {
            PyObject *cur = load_value(s, b, fl);
            if (cur)
                result = Py_BuildValue("(ON)", Py_False, cur);
        }
    } else {
        raise_status(st, err);
    }
    leave(s);
    return result;
}

/* --- delete, exists, touch, ttl --------------------------------------------- */

/* The answer of a call on one key: True if done (SHMC_OK), False if the key
 * is absent (SHMC_NOT_FOUND), else the status raised. */
static PyObject *found_or_raise(shmc_status st, int err)
{
    if (st == SHMC_OK)
        Py_RETURN_TRUE;
    if (st == SHMC_NOT_FOUND)
        Py_RETURN_FALSE;
    return raise_status(st, err);
}

/* fn(c, key) on an open cache, with the GIL held: True, False if the key is
 * absent, or an exception. */
static PyObject *key_call(CacheObject *s, PyObject *key,
                          shmc_status (*fn)(shmc_t *, const void *, size_t))
{
    keyarg k;
    if (get_key(key, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st = fn(c, k.p, k.n);
    int err = errno;
    leave(s);
    return found_or_raise(st, err);
}

static PyObject *Cache_delete(CacheObject *s, PyObject *key)
{
    return key_call(s, key, shmc_delete);
}

static PyObject *Cache_delete_cas(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "token", NULL};
    PyObject *key;
    uint64_t token = 0;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO&:delete_cas", kwlist, &key, conv_u64,
                                     &token) ||
        get_key(key, &k) < 0)
        return NULL;
    if (token == 0) {
        PyErr_SetString(PyExc_ValueError, "a CAS token is never 0");
        return NULL;
    }
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st = shmc_delete_cas(c, k.p, k.n, token);
    int err = errno;
    leave(s);
    switch (st) {
    case SHMC_OK:
        Py_RETURN_TRUE;
    case SHMC_STALE:
        Py_RETURN_FALSE;
    case SHMC_NOT_FOUND:
        Py_RETURN_NONE;
    default:
        return raise_status(st, err);
    }
}

static PyObject *Cache_exists(CacheObject *s, PyObject *key)
{
    return key_call(s, key, shmc_exists);
}

static int Cache_contains(CacheObject *s, PyObject *key)
{
    PyObject *r = Cache_exists(s, key);
    if (!r)
        return -1;
    int b = r == Py_True;
    Py_DECREF(r);
    return b;
}

static PyObject *Cache_touch(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "ttl", NULL};
    PyObject *key;
    uint64_t ttl = 0;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O&:touch", kwlist, &key, conv_ttl, &ttl) ||
        get_key(key, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS   /* rewrites the value: may copy much */
    st = shmc_touch(c, k.p, k.n, ttl);
    err = errno;
    Py_END_ALLOW_THREADS
    leave(s);
    return found_or_raise(st, err);
}

static PyObject *Cache_ttl(CacheObject *s, PyObject *key)
{
    keyarg k;
    if (get_key(key, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    uint64_t ms = 0;
    shmc_status st = shmc_ttl(c, k.p, k.n, &ms);
    int err = errno;
    leave(s);
    if (st == SHMC_NOT_FOUND)
        Py_RETURN_NONE;
    if (st != SHMC_OK)
        return raise_status(st, err);
    if (ms == SHMC_TTL_NONE)
        return PyFloat_FromDouble(INFINITY);
    return PyFloat_FromDouble((double)ms / 1000.0);
}

/* --- counters ----------------------------------------------------------------- */

/* incr/decr of k by delta; with initial != NULL, an absent key is created
 * holding initial (with ttl).  Returns the new value, None (absent) or NULL. */
static PyObject *do_counter(CacheObject *s, const keyarg *kp, uint64_t delta,
                            const uint64_t *initial, uint64_t ttl, int decr)
{
    const keyarg k = *kp;
    uint64_t init = initial ? *initial : 0, result = 0;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st = SHMC_OK;
    int err = 0;
    char digits[24];
    for (int attempt = 0; attempt < 100; attempt++) {
        st = decr ? shmc_decr(c, k.p, k.n, delta, 0, 0, 0, &result)
                  : shmc_incr(c, k.p, k.n, delta, 0, 0, 0, &result);
        err = errno;
        if (st != SHMC_NOT_FOUND || !initial)
            break;
        /* Create it holding `initial` as a decimal with FLAG_INT (the
         * library's SHMC_INCR_CREATE would store flags 0, which reads back
         * as bytes); if another process created it first, count on it. */
        int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)init);
        st = shmc_add(c, k.p, k.n, digits, (size_t)n, FLAG_INT, ttl);
        err = errno;
        if (st == SHMC_OK) {
            result = init;
            break;
        }
        if (st != SHMC_EXISTS)
            break;
    }
    leave(s);
    if (st == SHMC_OK)
        return PyLong_FromUnsignedLongLong(result);
    if (st == SHMC_NOT_FOUND)
        Py_RETURN_NONE;
    if (st == SHMC_EXISTS)   /* created and deleted 100 times in a row */
        return raise_status(SHMC_ETIMEDOUT, 0);
    return raise_status(st, err);
}

static PyObject *counter(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames, int decr)
{
    static const char *const names[] = {"key", "delta", "initial", "ttl"};
    PyObject *a[4];
    uint64_t delta = 1, ttl = 0, init = 0;
    keyarg k;
    if (parse_fast(decr ? "decr" : "incr", args, nargs, kwnames, names, 4, 1, a) < 0 ||
        (a[1] && !conv_u64(a[1], &delta)) || (a[3] && !conv_ttl(a[3], &ttl)) ||
        get_key(a[0], &k) < 0)
        return NULL;
    int has_init = a[2] && a[2] != Py_None;
    if (has_init && !conv_u64(a[2], &init))
        return NULL;
    return do_counter(s, &k, delta, has_init ? &init : NULL, ttl, decr);
}

static PyObject *Cache_incr(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    return counter(s, args, nargs, kwnames, 0);
}

static PyObject *Cache_decr(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    return counter(s, args, nargs, kwnames, 1);
}

static PyObject *affix(CacheObject *s, PyObject *args, int prepend)
{
    PyObject *key, *data;
    keyarg k;
    sval v;
    if (!PyArg_ParseTuple(args, prepend ? "OO:prepend" : "OO:append", &key, &data) ||
        get_key(key, &k) < 0 || sval_raw(data, &v) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c) {
        sval_release(&v);
        return NULL;
    }
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS   /* copies the whole value */
    st = prepend ? shmc_prepend(c, k.p, k.n, v.p, v.n) : shmc_append(c, k.p, k.n, v.p, v.n);
    err = errno;
    Py_END_ALLOW_THREADS
    leave(s);
    sval_release(&v);
    return found_or_raise(st, err);
}

static PyObject *Cache_append(CacheObject *s, PyObject *args)
{
    return affix(s, args, 0);
}

static PyObject *Cache_prepend(CacheObject *s, PyObject *args)
{
    return affix(s, args, 1);
}

/* --- many keys ---------------------------------------------------------------- */

static PyObject *Cache_get_many(CacheObject *s, PyObject *keys)
{
    PyObject *seq = PySequence_Fast(keys, "get_many() expects an iterable of keys");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyDict_New();
    shmc_get_req *reqs = PyMem_Calloc(MANY_CHUNK, sizeof *reqs);
    PyObject **bufs = PyMem_Calloc(MANY_CHUNK, sizeof *bufs);
    shmc_t *c = NULL;
    if (!result || !reqs || !bufs) {
        if (result)
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {   /* check every key first */
        keyarg k;
        if (get_key(PySequence_Fast_GET_ITEM(seq, i), &k) < 0)
            goto fail;
    }
    if (!(c = enter(s)))
        goto fail;
    size_t cap = guess_for(s, MANY_GUESS);
    for (Py_ssize_t base = 0; base < n; base += MANY_CHUNK) {
        size_t m = (size_t)(n - base < MANY_CHUNK ? n - base : MANY_CHUNK);
        for (size_t i = 0; i < m; i++) {
            keyarg k;
            /* Validated in the first pass; checked again rather than assumed. */
            if (get_key(PySequence_Fast_GET_ITEM(seq, base + (Py_ssize_t)i), &k) < 0)
                goto fail_leave;
            bufs[i] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
            if (!bufs[i])
                goto fail_leave;
            memset(&reqs[i], 0, sizeof reqs[i]);
            reqs[i].key = k.p;
            reqs[i].klen = k.n;
            reqs[i].buf = PyBytes_AS_STRING(bufs[i]);
            reqs[i].buflen = cap;
        }
        shmc_status st;
        int err;
        Py_BEGIN_ALLOW_THREADS
        st = shmc_get_many(c, reqs, m);
        err = errno;
        Py_END_ALLOW_THREADS
        if (st != SHMC_OK) {
            raise_status(st, err);
            goto fail_leave;
        }
        for (size_t i = 0; i < m; i++) {
            PyObject *key = PySequence_Fast_GET_ITEM(seq, base + (Py_ssize_t)i);
            PyObject *b = bufs[i];
            uint32_t fl = reqs[i].flags;
            bufs[i] = NULL;
            if (reqs[i].status == SHMC_NOT_FOUND) {
                Py_DECREF(b);
                continue;
            }
            if (reqs[i].status == SHMC_OK) {
                if (reqs[i].vlen != cap && _PyBytes_Resize(&b, (Py_ssize_t)reqs[i].vlen) < 0)
                    goto fail_leave;
            } else if (reqs[i].status == SHMC_EBUFSIZE) {
                Py_DECREF(b);
                b = NULL;
                keyarg k;
                get_key(key, &k);
                int r = fetch(c, &k, reqs[i].vlen, &b, &fl, NULL);
                if (r < 0)
                    goto fail_leave;
                if (r == 0)
                    continue;
            } else {
                Py_DECREF(b);
                raise_status(reqs[i].status, 0);
                goto fail_leave;
            }
            PyObject *v = load_value(s, b, fl);
            if (!v || PyDict_SetItem(result, key, v) < 0) {
                Py_XDECREF(v);
                goto fail_leave;
            }
            Py_DECREF(v);
        }
    }
    leave(s);
    PyMem_Free(reqs);
    PyMem_Free(bufs);
    Py_DECREF(seq);
    return result;

fail_leave:
    leave(s);
fail:
    if (bufs)
        for (size_t i = 0; i < MANY_CHUNK; i++)
            Py_XDECREF(bufs[i]);
    PyMem_Free(reqs);
    PyMem_Free(bufs);
    Py_XDECREF(result);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *Cache_set_many(CacheObject *s, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "ttl"};
    PyObject *a[2];
    uint64_t ttl = 0;
    if (parse_fast("set_many", args, nargs, kwnames, names, 2, 1, a) < 0 ||
        (a[1] && !conv_ttl(a[1], &ttl)))
        return NULL;
    PyObject *mapping = a[0];
    if (!PyObject_HasAttrString(mapping, "items")) {
        PyErr_Format(PyExc_TypeError, "set_many() expects a mapping, not %.100s",
                     Py_TYPE(mapping)->tp_name);
        return NULL;
    }
    PyObject *items = PyMapping_Items(mapping);
    if (!items)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    shmc_set_req *reqs = PyMem_Calloc((size_t)n + 1, sizeof *reqs);
    sval *vals = PyMem_Calloc((size_t)n + 1, sizeof *vals);
    PyObject *failed = PyList_New(0);
    Py_ssize_t done = 0;
    size_t total = 0;
    if (!reqs || !vals || !failed) {
        if (failed)
            PyErr_NoMemory();
        goto out;
    }
    for (; done < n; done++) {
        PyObject *it = PyList_GET_ITEM(items, done);
        keyarg k;
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 2) {
            PyErr_SetString(PyExc_TypeError, "items() must yield (key, value) pairs");
            goto out;
        }
        if (get_key(PyTuple_GET_ITEM(it, 0), &k) < 0)
            goto out;
        if (k.n == 0 || (s->max_key && k.n > s->max_key)) {
            raise_status(SHMC_EKEYLEN, 0);
            goto out;
        }
        if (sval_from(s, PyTuple_GET_ITEM(it, 1), &vals[done]) < 0)
            goto out;
        reqs[done].key = k.p;
        reqs[done].klen = k.n;
        reqs[done].val = vals[done].p ? vals[done].p : "";
        reqs[done].vlen = vals[done].n;
        reqs[done].flags = vals[done].flags;
        reqs[done].ttl_ms = ttl;
        reqs[done].status = SHMC_STATUS_COUNT_;   /* "not reached" */
        total += vals[done].n;
    }
    shmc_t *c = enter(s);
    if (!c)
        goto out;
    int err = 0;
    shmc_status all = SHMC_OK;
    if (total >= NOGIL_BYTES || n >= MANY_CHUNK) {
        Py_BEGIN_ALLOW_THREADS
        all = shmc_set_many(c, reqs, (size_t)n);
        err = errno;
        Py_END_ALLOW_THREADS
    } else if (n > 0) {
        all = shmc_set_many(c, reqs, (size_t)n);
        err = errno;
    }
    leave(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (reqs[i].status == SHMC_STATUS_COUNT_)
            reqs[i].status = all != SHMC_OK ? all : SHMC_EINVAL;
        if (reqs[i].status == SHMC_OK)
            continue;
        if (reqs[i].status == SHMC_EKEYLEN || reqs[i].status == SHMC_EINVAL) {
            raise_status(reqs[i].status, err);
            goto out;
        }
        if (PyList_Append(failed, PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0)) < 0)
            goto out;
    }
    for (Py_ssize_t i = 0; i < done; i++)
        sval_release(&vals[i]);
    PyMem_Free(reqs);
    PyMem_Free(vals);
    Py_DECREF(items);
    return failed;

out:
    for (Py_ssize_t i = 0; vals && i <= done && i < n; i++)
        sval_release(&vals[i]);
    PyMem_Free(reqs);
    PyMem_Free(vals);
    Py_XDECREF(failed);
    Py_DECREF(items);
    return NULL;
}

static PyObject *Cache_delete_many(CacheObject *s, PyObject *keys)
{
    PyObject *seq = PySequence_Fast(keys, "delete_many() expects an iterable of keys");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    shmc_key_req *reqs = PyMem_Calloc((size_t)n + 1, sizeof *reqs);
    if (!reqs) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        keyarg k;
        if (get_key(PySequence_Fast_GET_ITEM(seq, i), &k) < 0)
            goto out;
        reqs[i].key = k.p;
        reqs[i].klen = k.n;
    }
    shmc_t *c = enter(s);
    if (!c)
        goto out;
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_delete_many(c, reqs, (size_t)n);
    err = errno;
    Py_END_ALLOW_THREADS
    leave(s);
    if (st != SHMC_OK) {
        raise_status(st, err);
        goto out;
    }
    long deleted = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (reqs[i].status == SHMC_OK) {
            deleted++;
        } else if (reqs[i].status != SHMC_NOT_FOUND) {
            raise_status(reqs[i].status, 0);
            goto out;
        }
    }
    result = PyLong_FromLong(deleted);
out:
    PyMem_Free(reqs);
    Py_DECREF(seq);
    return result;
}

static PyObject *Cache_flush(CacheObject *s, PyObject *unused)
{
    (void)unused;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_flush(c);
    err = errno;
    Py_END_ALLOW_THREADS
    leave(s);
    if (st != SHMC_OK)
        return raise_status(st, err);
    Py_RETURN_NONE;
}

/* --- stats, info, verify ------------------------------------------------------- */

#define DICT_U64(d, st, field)                                                         \
    do {                                                                               \
        PyObject *v_ = PyLong_FromUnsignedLongLong((unsigned long long)(st).field);    \
        if (!v_ || PyDict_SetItemString(d, #field, v_) < 0) {                          \
            Py_XDECREF(v_);                                                            \
            Py_DECREF(d);                                                              \
            return NULL;                                                               \
        }                                                                              \
        Py_DECREF(v_);                                                                 \
    } while (0)

static PyObject *Cache_stats(CacheObject *s, PyObject *unused)
{
    (void)unused;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_stats st;
    shmc_status r = shmc_stats_get(c, &st);
    int err = errno;
    leave(s);
    if (r != SHMC_OK)
        return raise_status(r, err);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
#define STAT_ITEM(name, kind, src, help) DICT_U64(d, st, name);
    SHMC_STATS_FIELDS(STAT_ITEM)
#undef STAT_ITEM
    return d;
}

static PyObject *Cache_info(CacheObject *s, PyObject *unused)
{
    (void)unused;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_info in;
    shmc_status r = shmc_info_get(c, &in);
    int err = errno;
    leave(s);
    if (r != SHMC_OK)
        return raise_status(r, err);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    DICT_U64(d, in, size);
    DICT_U64(d, in, max_key);
    DICT_U64(d, in, max_value);
    DICT_U64(d, in, slots);
    DICT_U64(d, in, layout_version);
    DICT_U64(d, in, data_bytes);
    DICT_U64(d, in, segment_bytes);
    DICT_U64(d, in, segments);
    DICT_U64(d, in, index_slots);
    DICT_U64(d, in, locks);
    DICT_U64(d, in, max_items);
    return d;
}

static PyObject *Cache_verify(CacheObject *s, PyObject *unused)
{
    (void)unused;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_verify_report rep;
    memset(&rep, 0, sizeof rep);
    shmc_status r;
    int err;
    Py_BEGIN_ALLOW_THREADS
    r = shmc_verify(c, &rep);
    err = errno;
    Py_END_ALLOW_THREADS
    leave(s);
    if (r != SHMC_OK && r != SHMC_ECORRUPT)
        return raise_status(r, err);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    DICT_U64(d, rep, items);
    DICT_U64(d, rep, bad_offsets);
    DICT_U64(d, rep, bad_items);
    DICT_U64(d, rep, misplaced);
    DICT_U64(d, rep, in_dead_segments);
    DICT_U64(d, rep, duplicates);
    DICT_U64(d, rep, segment_errors);
    DICT_U64(d, rep, orphan_segments);
    rep.first_error[sizeof rep.first_error - 1] = '\0';
    PyObject *fe = PyUnicode_DecodeUTF8(rep.first_error, (Py_ssize_t)strlen(rep.first_error),
                                        "replace");
    if (!fe || PyDict_SetItemString(d, "first_error", fe) < 0 ||
        PyDict_SetItemString(d, "ok", r == SHMC_OK ? Py_True : Py_False) < 0) {
        Py_XDECREF(fe);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(fe);
    return d;
}

/* --- named locks ---------------------------------------------------------------- */

static PyObject *Cache_lock_acquire(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "timeout", "lease", NULL};
    PyObject *name;
    uint64_t timeout = FOREVER_MS, lease = 0, token = 0;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O&O&:lock_acquire", kwlist, &name,
                                     conv_timeout, &timeout, conv_opt_ms, &lease) ||
        get_key(name, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_lock_acquire(c, k.p, k.n, timeout, lease, &token);
    err = errno;
    Py_END_ALLOW_THREADS
    leave(s);
    if (st != SHMC_OK)
        return raise_status(st, err);
    return PyLong_FromUnsignedLongLong(token);
}

static PyObject *Cache_lock_try(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "lease", NULL};
    PyObject *name;
    uint64_t lease = 0, token = 0;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O&:lock_try", kwlist, &name, conv_opt_ms,
                                     &lease) ||
        get_key(name, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st = shmc_lock_try(c, k.p, k.n, lease, &token);
    int err = errno;
    leave(s);
    if (st == SHMC_EBUSY)
        Py_RETURN_NONE;
    if (st != SHMC_OK)
        return raise_status(st, err);
    return PyLong_FromUnsignedLongLong(token);
}

static PyObject *Cache_lock_release(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "token", NULL};
    PyObject *name;
    uint64_t token = 0;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO&:lock_release", kwlist, &name, conv_u64,
                                     &token) ||
        get_key(name, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st = shmc_lock_release(c, k.p, k.n, token);
    int err = errno;
    leave(s);
    if (st != SHMC_OK)
        return raise_status(st, err);
    Py_RETURN_NONE;
}

static PyObject *Cache_lock_extend(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "token", "lease", NULL};
    PyObject *name;
    uint64_t token = 0, lease = 0;
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO&|O&:lock_extend", kwlist, &name, conv_u64,
                                     &token, conv_opt_ms, &lease) ||
        get_key(name, &k) < 0)
        return NULL;
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    shmc_status st = shmc_lock_extend(c, k.p, k.n, token, lease);
    int err = errno;
    leave(s);
    if (st != SHMC_OK)
        return raise_status(st, err);
    Py_RETURN_NONE;
}

/* --- singleflight ------------------------------------------------------------------ */

/* The leader's fn raised: abort the fill with the exception's text, and
 * leave the exception set. */
static void abort_fill(shmc_t *c, shmc_fill *f, uint64_t error_ttl)
{
    char msg[SHMC_FILL_MSG_MAX];
    msg[0] = '\0';
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *val = exc;
#else
    PyObject *typ, *val, *tb;
    PyErr_Fetch(&typ, &val, &tb);
    PyErr_NormalizeException(&typ, &val, &tb);
#endif
    if (val) {
        PyObject *str = PyObject_Str(val);
        const char *tn = Py_TYPE(val)->tp_name;
        const char *sp = str ? PyUnicode_AsUTF8(str) : NULL;
        if (sp && *sp)
            snprintf(msg, sizeof msg, "%s: %s", tn, sp);
        else
            snprintf(msg, sizeof msg, "%s", tn);
        Py_XDECREF(str);
        PyErr_Clear();
        /* Do not cut a UTF-8 sequence in two. */
        size_t n = strlen(msg);
        if (n == sizeof msg - 1) {
            while (n > 0 && ((unsigned char)msg[n - 1] & 0xC0) == 0x80)
                n--;
            if (n > 0 && ((unsigned char)msg[n - 1] & 0x80))
                n--;
            msg[n] = '\0';
        }
    }
    Py_BEGIN_ALLOW_THREADS
    shmc_fill_abort(c, f, FILL_ERR_PYTHON, msg, error_ttl);
    Py_END_ALLOW_THREADS
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(typ, val, tb);
#endif
}

static PyObject *Cache_get_or_fill(CacheObject *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "fn", "ttl", "wait", "fill_timeout", "error_ttl",
                             "refresh", NULL};
    PyObject *key, *fn;
    shmc_fill_opts o;
    memset(&o, 0, sizeof o);
    keyarg k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O&$O&O&O&O&:get_or_fill", kwlist, &key,
                                     &fn, conv_ttl, &o.ttl_ms, conv_wait, &o.wait_ms,
                                     conv_wait, &o.fill_ms, conv_opt_ms, &o.error_ttl_ms,
                                     conv_opt_ms, &o.refresh_ms) ||
        get_key(key, &k) < 0)
        return NULL;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "fn must be callable");
        return NULL;
    }
    shmc_t *c = enter(s);
    if (!c)
        return NULL;
    PyObject *result = NULL, *b = NULL;
    uint32_t fl = 0;
    if (!o.refresh_ms) {
        /* Hits first, with the one-copy read; only a miss goes through the
         * lock and singleflight table. */
        int r = fetch(c, &k, guess_for(s, GET_GUESS), &b, &fl, NULL);
        if (r != 0) {
            leave(s);
            return r < 0 ? NULL : load_value(s, b, fl);
        }
    }
    shmc_fill f;
    memset(&f, 0, sizeof f);
    void *val = NULL;
    size_t vlen = 0;
    shmc_status st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    st = shmc_fill_begin(c, k.p, k.n, &o, &val, &vlen, &fl, &f);
    err = errno;
    Py_END_ALLOW_THREADS
    if (st == SHMC_OK) {
        b = PyBytes_FromStringAndSize(val ? val : "", (Py_ssize_t)vlen);
        free(val);
        if (b)
            result = load_value(s, b, fl);
    } else if (st == SHMC_LEADER) {
        PyObject *v = PyObject_CallNoArgs(fn);
        sval sv;
        if (!v) {
            abort_fill(c, &f, o.error_ttl_ms);
        } else if (sval_from(s, v, &sv) < 0) {
            Py_DECREF(v);
            abort_fill(c, &f, o.error_ttl_ms);
        } else {
            if (sv.n >= NOGIL_BYTES) {
                Py_BEGIN_ALLOW_THREADS
                st = shmc_fill_finish(c, &f, sv.p ? sv.p : "", sv.n, sv.flags, o.ttl_ms);
                Py_END_ALLOW_THREADS
            } else {
                st = shmc_fill_finish(c, &f, sv.p ? sv.p : "", sv.n, sv.flags, o.ttl_ms);
            }
            err = errno;
            sval_release(&sv);
            /* SHMC_ENOTOWNER: another leader took over after our deadline;
             * any other error: the library aborted the fill for the waiters.
             * Either way the leader's own value is good. */
            if (st == SHMC_EINVAL) {
                Py_DECREF(v);
                raise_status(st, err);
            } else {
                result = v;
            }
        }
    } else if (st == SHMC_EFILL) {
        raise_fill_error(&f);
    } else {
        free(val);
        raise_status(st, err);
    }
    leave(s);
    return result;
}

/* --- properties --------------------------------------------------------------------- */

static PyObject *Cache_get_name(CacheObject *s, void *unused)
{
    (void)unused;
    Py_INCREF(s->name);
    return s->name;
}

static PyObject *Cache_get_closed(CacheObject *s, void *unused)
{
    (void)unused;
    return PyBool_FromLong(!s->c || s->closed);
}

static PyObject *Cache_get_serializer(CacheObject *s, void *unused)
{
    (void)unused;
    Py_INCREF(s->serializer);
    return s->serializer;
}

static PyObject *Cache_get_max_key(CacheObject *s, void *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLong(s->max_key);
}

static PyObject *Cache_get_max_value(CacheObject *s, void *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLong(s->max_value);
}

static PyGetSetDef Cache_getset[] = {
    {"name", (getter)Cache_get_name, NULL, "The cache's name.", NULL},
    {"closed", (getter)Cache_get_closed, NULL, "True once close() was called.", NULL},
    {"serializer", (getter)Cache_get_serializer, NULL,
     "The serializer object, or None for the built-in one.", NULL},
    {"max_key", (getter)Cache_get_max_key, NULL, "Longest key in bytes.", NULL},
    {"max_value", (getter)Cache_get_max_value, NULL, "Longest value in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define METH_KW(name, doc) \
    {#name, (PyCFunction)(void (*)(void))Cache_##name, METH_VARARGS | METH_KEYWORDS, doc}
#define METH_1(name, doc) {#name, (PyCFunction)(void (*)(void))Cache_##name, METH_O, doc}
#define METH_FAST(name, doc) \
    {#name, (PyCFunction)(void (*)(void))Cache_##name, METH_FASTCALL | METH_KEYWORDS, doc}
#define METH_0(name, doc) {#name, (PyCFunction)(void (*)(void))Cache_##name, METH_NOARGS, doc}

static PyMethodDef Cache_methods[] = {
    METH_FAST(get, "get(key, default=None) -> the value, or default if absent or expired."),
    METH_KW(get_raw, "get_raw(key) -> (bytes, flags), or None if absent."),
    METH_KW(gets, "gets(key, default=None) -> (value, cas_token), or (default, None)."),
    METH_FAST(set, "set(key, value, ttl=None): store (ttl in seconds; None or 0 = never "
                 "expires)."),
    METH_FAST(set_raw, "set_raw(key, data, flags=0, ttl=None): store bytes with your flags."),
    METH_FAST(add, "add(key, value, ttl=None) -> True if stored, False if the key exists."),
    METH_FAST(replace, "replace(key, value, ttl=None) -> True if stored, False if absent."),
    METH_KW(cas, "cas(key, value, token, ttl=None) -> new token (stored), False (the entry "
                 "changed) or None (absent)."),
    METH_KW(cas_value, "cas_value(key, expected, value, ttl=None) -> (True, None) if "
                       "stored, else (False, current value or ABSENT).  expected=ABSENT "
                       "stores only if the key is absent.  Compares serialized bytes."),
    METH_1(delete, "delete(key) -> True if the key was present."),
    METH_KW(delete_cas, "delete_cas(key, token) -> True (deleted), False (changed) or "
                        "None (absent)."),
    METH_1(exists, "exists(key) -> True if the key is present and not expired."),
    METH_KW(touch, "touch(key, ttl=None) -> True if the key was present (new TTL set)."),
    METH_1(ttl, "ttl(key) -> seconds left (inf: never expires), or None if absent."),
    METH_FAST(incr, "incr(key, delta=1, initial=None, ttl=None) -> new value, or None if "
                  "absent and initial is None.  Atomic across processes; wraps at 2**64."),
    METH_FAST(decr, "decr(key, delta=1, initial=None, ttl=None) -> new value (stops at 0)."),
    {"append", (PyCFunction)(void (*)(void))Cache_append, METH_VARARGS,
     "append(key, data) -> True if the key was present."},
    {"prepend", (PyCFunction)(void (*)(void))Cache_prepend, METH_VARARGS,
     "prepend(key, data) -> True if the key was present."},
    METH_1(get_many, "get_many(keys) -> {key: value} for the keys present."),
    METH_FAST(set_many, "set_many(mapping, ttl=None) -> list of the keys not stored."),
    METH_1(delete_many, "delete_many(keys) -> number of keys deleted."),
    METH_0(flush, "flush(): remove every item."),
    METH_0(stats, "stats() -> dict of counters summed over every process."),
    METH_0(info, "info() -> dict of the segment's parameters."),
    METH_0(verify, "verify() -> dict report of a consistency check ('ok': bool)."),
    METH_KW(lock_acquire, "lock_acquire(name, timeout=None, lease=None) -> fencing token."),
    METH_KW(lock_try, "lock_try(name, lease=None) -> token, or None if held."),
    METH_KW(lock_release, "lock_release(name, token): raises NotOwnerError if lost."),
    METH_KW(lock_extend, "lock_extend(name, token, lease=None): new lease from now."),
    METH_KW(get_or_fill, "get_or_fill(key, fn, ttl=None, *, wait=None, fill_timeout=None, "
                         "error_ttl=None, refresh=None) -> the value; on a miss exactly one "
                         "caller across processes runs fn() while the others wait."),
    METH_0(close, "close(): release this process's use of the cache (it lives on)."),
    METH_0(detach_thread, "detach_thread(): release the calling thread's slot now."),
    {"__enter__", (PyCFunction)(void (*)(void))Cache_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Cache_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Cache_as_sequence = {
    .sq_contains = (objobjproc)Cache_contains,
};

static PyTypeObject CacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmcache._shmcache.Cache",
    .tp_basicsize = sizeof(CacheObject),
    .tp_dealloc = (destructor)Cache_dealloc,
    .tp_repr = (reprfunc)Cache_repr,
    .tp_as_sequence = &Cache_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Cache(name, size=None, *, max_key=None, max_value=None, slots=None, "
              "mode=None, locks=None, create=True, exclusive=False, serializer=None, "
              "pickle_protocol=None, prefault=False, max_items=None)\n\n"
              "Opens (creating it unless create=False) the shared-memory cache `name`.",
    .tp_traverse = (traverseproc)Cache_traverse,
    .tp_clear = (inquiry)Cache_clear,
    .tp_weaklistoffset = offsetof(CacheObject, weakrefs),
    .tp_methods = Cache_methods,
    .tp_getset = Cache_getset,
    .tp_init = (initproc)Cache_init,
    .tp_new = Cache_new,
};

/* ------------------------------------------------------------------------ */
/* The Django backend's hot paths                                            */

/*
 * _shmcache.DjangoBackend is the C base of shmcache.django.ShmCache (which
 * also derives from Django's BaseCache): get, set, add, incr, get_many,
 * has_key, delete and get_or_set (its hits) make the key, validate it, convert the timeout and call
 * the library in C, with no Python frame in between.  The attributes
 * BaseCache.__init__ sets (key_prefix, version, key_func, default_timeout)
 * are kept here; with Django's default key function the key is
 * "<prefix>:<version>:<key>" built from a cached "<prefix>:<version>:".
 * Anything unusual goes to the Python methods of the subclass (_key_py,
 * validate_key, get_backend_timeout, _cas_add, _incr_py, _open_handle),
 * so that the behaviour is the one written there: a subclass that
 * overrides make_key, validate_key or get_backend_timeout has _fast false
 * and every key and timeout goes through its methods.
 */

#define MEMCACHE_MAX_KEY_LENGTH 250

static PyObject *dj_default_key_func;   /* django...base.default_key_func */
static PyObject *dj_default_timeout;    /* django...base.DEFAULT_TIMEOUT */
static PyObject *py_zero, *py_one;

typedef struct BackendObject {
    PyObject_HEAD
    CacheObject *handle;   /* the process's shared handle, or NULL until first use */
    PyObject *key_prefix, *version, *key_func, *default_timeout;
    PyObject *prefix;      /* "<key_prefix>:<version>:", or NULL until needed */
    int fast;              /* make_key, validate_key and get_backend_timeout are ShmCache's */
} BackendObject;

/* A new reference to the open handle (opened by self._open_handle()). */
static CacheObject *be_handle(BackendObject *b)
{
    CacheObject *h = b->handle;
    if (h && h->c && !h->closed) {
        Py_INCREF(h);
        return h;
    }
    PyObject *r = PyObject_CallMethod((PyObject *)b, "_open_handle", NULL);
    if (!r)
        return NULL;
    if (!PyObject_TypeCheck(r, &CacheType)) {
        PyErr_SetString(PyExc_TypeError, "_open_handle() must return a shmcache.Cache");
        Py_DECREF(r);
        return NULL;
    }
    Py_INCREF(r);
    Py_XSETREF(b->handle, (CacheObject *)r);
    return (CacheObject *)r;
}

/* 1 if Django's memcache_key_warnings() finds nothing in the str made and
 * it is at most max_key bytes in UTF-8; 0 otherwise (validate_key() then
 * says why). */
static int be_key_ok(const CacheObject *h, PyObject *made)
{
    if (!PyUnicode_CheckExact(made))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(made), bytes = n;
    if (n > MEMCACHE_MAX_KEY_LENGTH)
        return 0;
    if (PyUnicode_IS_ASCII(made)) {
        const unsigned char *p = PyUnicode_1BYTE_DATA(made);
        for (Py_ssize_t i = 0; i < n; i++)
            if (p[i] < 33 || p[i] == 127)
                return 0;
    } else {
        int kind = PyUnicode_KIND(made);
        const void *data = PyUnicode_DATA(made);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            if (ch < 33 || ch == 127)
                return 0;
        }
        if (!PyUnicode_AsUTF8AndSize(made, &bytes)) {   /* lone surrogates */
            PyErr_Clear();
            return 0;
        }
    }
    return !h->max_key || (size_t)bytes <= h->max_key;
}

/* The key made from (key, version) and validated: a new reference, or NULL
 * with the exception (InvalidCacheKey...) set. */
static PyObject *be_key(BackendObject *b, const CacheObject *h, PyObject *key,
                        PyObject *version)
{
    if (version == Py_None)
        version = NULL;
    if (!b->fast || !b->key_func || !b->key_prefix || !b->version)
        return PyObject_CallMethod((PyObject *)b, "_key_py", "OO", key,
                                   version ? version : Py_None);
    /* Strong references: str() of a key or a key function may run code that
     * sets these attributes. */
    PyObject *made, *kf = Py_NewRef(b->key_func), *kp = Py_NewRef(b->key_prefix);
    PyObject *ver = Py_NewRef(version ? version : b->version);
    if (kf == dj_default_key_func) {
        if (version) {
            made = PyUnicode_FromFormat("%S:%S:%S", kp, ver, key);
        } else {
            PyObject *prefix = b->prefix;
            if (prefix) {
                Py_INCREF(prefix);
            } else if ((prefix = PyUnicode_FromFormat("%S:%S:", kp, ver)) && !b->prefix &&
                       b->key_prefix == kp && b->version == ver) {
                b->prefix = Py_NewRef(prefix);
            }
            if (!prefix) {
                made = NULL;
            } else if (PyUnicode_CheckExact(key)) {
                made = PyUnicode_Concat(prefix, key);
            } else {
                PyObject *ks = PyObject_Str(key);   /* as '%s' % key does */
                made = ks ? PyUnicode_Concat(prefix, ks) : NULL;
                Py_XDECREF(ks);
            }
            Py_XDECREF(prefix);
        }
    } else {
        PyObject *argv[3] = {key, kp, ver};
        made = PyObject_Vectorcall(kf, argv, 3, NULL);
    }
    Py_DECREF(kf);
    Py_DECREF(kp);
    Py_DECREF(ver);
    if (!made || be_key_ok(h, made))
        return made;
    PyObject *r = PyObject_CallMethod((PyObject *)b, "validate_key", "O", made);
    if (!r) {
        Py_DECREF(made);
        return NULL;
    }
    Py_DECREF(r);
    return made;
}

/* The TTL of a Django timeout (DEFAULT_TIMEOUT if t is NULL): 1 with *ms
 * (0: never expires), 0 if it expires at once (<= 0: not stored), -1 on
 * error. */
static int be_ttl(BackendObject *b, PyObject *t, uint64_t *ms)
{
    PyObject *owned = NULL;
    if (!b->fast) {
        t = owned = PyObject_CallMethod((PyObject *)b, "get_backend_timeout", "O",
                                        t ? t : dj_default_timeout);
        if (!t)
            return -1;
    } else if (!t || t == dj_default_timeout) {
        t = b->default_timeout;
        if (!t) {
            PyErr_SetString(PyExc_AttributeError, "default_timeout");
            return -1;
        }
        if (t != Py_None && !PyLong_CheckExact(t))
            t = owned = Py_NewRef(t);   /* comparing it may run code */
    }
    int r;
    if (t == Py_None) {
        *ms = 0;
        r = 1;
    } else if (PyLong_CheckExact(t)) {
        int of = 0;
        long v = PyLong_AsLongAndOverflow(t, &of);
        if (v == -1 && PyErr_Occurred())
            r = -1;
        else if (of < 0 || (!of && v <= 0))
            r = 0;
        else if (!of && v <= 1000000000000L) {
            *ms = (uint64_t)v * 1000u;
            r = 1;
        } else {
            r = conv_ttl(t, ms) ? 1 : -1;
        }
    } else {
        int le = PyObject_RichCompareBool(t, py_zero, Py_LE);
        r = le < 0 ? -1 : le ? 0 : conv_ttl(t, ms) ? 1 : -1;
    }
    Py_XDECREF(owned);
    return r;
}

/* The value was too large or memory was pinned: like memcached, "not stored". */
static int be_not_stored(void)
{
    return PyErr_ExceptionMatches(exc_by_status[SHMC_EVALLEN]) ||
           PyErr_ExceptionMatches(exc_by_status[SHMC_ENOMEM]);
}

#define BE_PARSE(fname, nreq, ...)                                                      \
    static const char *const names[] = {__VA_ARGS__};                                   \
    enum { NA = sizeof names / sizeof names[0] };                                       \
    PyObject *a[NA];                                                                     \
    if (parse_fast(fname, args, nargs, kwnames, names, NA, nreq, a) < 0)                 \
        return NULL

/* Opens the handle and makes the key: on success h and made are new
 * references and k points into made. */
static int be_begin(BackendObject *b, PyObject *key, PyObject *version, CacheObject **h,
                    PyObject **made, keyarg *k)
{
    if (!(*h = be_handle(b)))
        return -1;
    if (!(*made = be_key(b, *h, key, version)) || get_key(*made, k) < 0) {
        Py_XDECREF(*made);
        Py_DECREF(*h);
        return -1;
    }
    return 0;
}

static PyObject *Backend_get(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    BE_PARSE("get", 1, "key", "default", "version");
    CacheObject *h;
    PyObject *made;
    keyarg k;
    if (be_begin(b, a[0], a[2], &h, &made, &k) < 0)
        return NULL;
    PyObject *r = do_get(h, &k, a[1] ? a[1] : Py_None);
    Py_DECREF(made);
    Py_DECREF(h);
    return r;
}

static PyObject *be_store(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, enum setop op)
{
    BE_PARSE(op == OP_SET ? "set" : "add", 2, "key", "value", "timeout", "version");
    CacheObject *h;
    PyObject *made, *r = NULL;
    keyarg k;
    uint64_t ms = 0;
    if (be_begin(b, a[0], a[3], &h, &made, &k) < 0)
        return NULL;
    int t = be_ttl(b, a[2], &ms);
    if (t == 0) {
        /* Expires at once: set removes the old value, add reports whether
         * it would have been stored. */
        r = op == OP_SET ? Cache_delete(h, made) : Cache_exists(h, made);
        if (r) {
            int present = r == Py_True;
            Py_SETREF(r, op == OP_SET ? Py_NewRef(Py_None) : PyBool_FromLong(!present));
        }
    } else if (t > 0) {
        sval v;
        if (sval_from(h, a[1], &v) == 0)
            r = do_store(h, op, &k, &v, ms);
        if (!r && be_not_stored()) {
            PyErr_Clear();
            if (op == OP_SET) {
                /* The old value must not stay behind. */
                r = Cache_delete(h, made);
                if (r)
                    Py_SETREF(r, Py_NewRef(Py_None));
            } else {
                r = Py_NewRef(Py_False);
            }
        }
    }
    Py_DECREF(made);
    Py_DECREF(h);
    return r;
}

static PyObject *Backend_set(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    return be_store(b, args, nargs, kwnames, OP_SET);
}

static PyObject *Backend_add(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    return be_store(b, args, nargs, kwnames, OP_ADD);
}

static PyObject *Backend_incr(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    BE_PARSE("incr", 1, "key", "delta", "version");
    PyObject *delta = a[1] ? a[1] : py_one;
    CacheObject *h;
    PyObject *made, *r = NULL;
    keyarg k;
    if (be_begin(b, a[0], a[2], &h, &made, &k) < 0)
        return NULL;
    int of = 0;
    long long d = 0;
    if (PyLong_CheckExact(delta)) {
        d = PyLong_AsLongLongAndOverflow(delta, &of);
        if (d == -1 && PyErr_Occurred())
            goto out;
    }
    if (!PyLong_CheckExact(delta)) {
        /* A float, Decimal...: compare-and-swap in Python. */
        r = PyObject_CallMethod((PyObject *)b, "_cas_add", "OOO", made, delta, a[0]);
    } else if (of) {
        r = PyObject_CallMethod((PyObject *)b, "_incr_py", "OOO", a[0], delta,
                                a[2] ? a[2] : Py_None);
    } else {
        uint64_t u = d >= 0 ? (uint64_t)d : (uint64_t)0 - (uint64_t)d;
        r = do_counter(h, &k, u, NULL, 0, d < 0);
        if (!r && PyErr_ExceptionMatches(exc_by_status[SHMC_ENOTNUM])) {
            PyErr_Clear();
            r = PyObject_CallMethod((PyObject *)b, "_cas_add", "OOO", made, delta, a[0]);
        } else if (r == Py_None) {
            Py_CLEAR(r);
            PyErr_Format(PyExc_ValueError, "Key '%S' not found", made);
        }
    }
out:
    Py_DECREF(made);
    Py_DECREF(h);
    return r;
}

/* get_or_set: a hit is answered here; a miss (and a timeout <= 0) goes to
 * _get_or_set_py, the singleflight fill. */
static PyObject *Backend_get_or_set(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    BE_PARSE("get_or_set", 2, "key", "default", "timeout", "version");
    CacheObject *h;
    PyObject *made, *r = NULL;
    keyarg k;
    uint64_t ms = 0;
    if (be_begin(b, a[0], a[3], &h, &made, &k) < 0)
        return NULL;
    int t = be_ttl(b, a[2], &ms);
    if (t > 0) {
        shmc_t *c = enter(h);
        if (c) {
            PyObject *v = NULL;
            uint32_t fl = 0;
            int found = fetch(c, &k, guess_for(h, GET_GUESS), &v, &fl, NULL);
            leave(h);
            if (found > 0)
                r = load_value(h, v, fl);
            else if (found == 0)
                t = 0;   /* a miss */
        }
    }
    Py_DECREF(made);
    Py_DECREF(h);
    if (t != 0)
        return r;
    return PyObject_CallMethod((PyObject *)b, "_get_or_set_py", "OOOO", a[0], a[1],
                               a[2] ? a[2] : dj_default_timeout, a[3] ? a[3] : Py_None);
}

static PyObject *Backend_get_many(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    BE_PARSE("get_many", 1, "keys", "version");
    CacheObject *h = be_handle(b);
    if (!h)
        return NULL;
    PyObject *key_map = PyDict_New(), *it = PyObject_GetIter(a[0]), *key;
    PyObject *made_list = NULL, *found = NULL, *result = NULL;
    if (!key_map || !it)
        goto out;
    while ((key = PyIter_Next(it))) {
        PyObject *made = be_key(b, h, key, a[1]);
        int bad = !made || PyDict_SetItem(key_map, made, key) < 0;
        Py_XDECREF(made);
        Py_DECREF(key);
        if (bad)
            goto out;
    }
    if (PyErr_Occurred() || !(made_list = PyDict_Keys(key_map)) ||
        !(found = Cache_get_many(h, made_list)) || !(result = PyDict_New()))
        goto out;
    Py_ssize_t pos = 0;
    PyObject *mk, *v;
    while (PyDict_Next(found, &pos, &mk, &v)) {
        PyObject *orig = PyDict_GetItemWithError(key_map, mk);
        if (!orig || PyDict_SetItem(result, orig, v) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, mk);
            Py_CLEAR(result);
            goto out;
        }
    }
out:
    Py_XDECREF(found);
    Py_XDECREF(made_list);
    Py_XDECREF(it);
    Py_XDECREF(key_map);
    Py_DECREF(h);
    return result;
}

static PyObject *be_key_op(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, const char *fname,
                           PyObject *(*op)(CacheObject *, PyObject *))
{
    BE_PARSE(fname, 1, "key", "version");
    CacheObject *h;
    PyObject *made;
    keyarg k;
    if (be_begin(b, a[0], a[1], &h, &made, &k) < 0)
        return NULL;
    PyObject *r = op ? op(h, made) : Py_NewRef(made);
    Py_DECREF(made);
    Py_DECREF(h);
    return r;
}

static PyObject *Backend_has_key(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    return be_key_op(b, args, nargs, kwnames, "has_key", Cache_exists);
}

static PyObject *Backend_delete(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    return be_key_op(b, args, nargs, kwnames, "delete", Cache_delete);
}

static PyObject *Backend__key(BackendObject *b, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return be_key_op(b, args, nargs, kwnames, "_key", NULL);
}

static int Backend_contains(BackendObject *b, PyObject *key)
{
    PyObject *argv[1] = {key};
    PyObject *r = Backend_has_key(b, argv, 1, NULL);
    if (!r)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* Attributes set by BaseCache.__init__; a new key_prefix or version drops
 * the cached key prefix. */
#define BE_ATTR(field)                                                                   \
    static PyObject *Backend_get_##field(BackendObject *b, void *unused)                 \
    {                                                                                    \
        (void)unused;                                                                    \
        if (!b->field) {                                                                 \
            PyErr_SetString(PyExc_AttributeError, #field);                               \
            return NULL;                                                                 \
        }                                                                                \
        return Py_NewRef(b->field);                                                      \
    }                                                                                    \
    static int Backend_set_##field(BackendObject *b, PyObject *v, void *unused)          \
    {                                                                                    \
        (void)unused;                                                                    \
        Py_XINCREF(v);                                                                   \
        Py_XSETREF(b->field, v);                                                         \
        Py_CLEAR(b->prefix);                                                             \
        return 0;                                                                        \
    }
BE_ATTR(key_prefix)
BE_ATTR(version)
BE_ATTR(key_func)
BE_ATTR(default_timeout)
#undef BE_ATTR

static PyObject *Backend_get_fast(BackendObject *b, void *unused)
{
    (void)unused;
    return PyBool_FromLong(b->fast);
}

static int Backend_set_fast(BackendObject *b, PyObject *v, void *unused)
{
    (void)unused;
    int t = v ? PyObject_IsTrue(v) : 0;
    if (t < 0)
        return -1;
    b->fast = t;
    return 0;
}

static PyObject *Backend_get_cache(BackendObject *b, void *unused)
{
    (void)unused;
    return (PyObject *)be_handle(b);
}

static PyGetSetDef Backend_getset[] = {
    {"key_prefix", (getter)Backend_get_key_prefix, (setter)Backend_set_key_prefix, NULL,
     NULL},
    {"version", (getter)Backend_get_version, (setter)Backend_set_version, NULL, NULL},
    {"key_func", (getter)Backend_get_key_func, (setter)Backend_set_key_func, NULL, NULL},
    {"default_timeout", (getter)Backend_get_default_timeout,
     (setter)Backend_set_default_timeout, NULL, NULL},
    {"_fast", (getter)Backend_get_fast, (setter)Backend_set_fast,
     "True: keys and timeouts are made in C (the methods are not overridden).", NULL},
    {"_cache", (getter)Backend_get_cache, NULL,
     "The shmcache.Cache handle (opened by _open_handle() when needed).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define BE_METH(name, doc) \
    {#name, (PyCFunction)(void (*)(void))Backend_##name, METH_FASTCALL | METH_KEYWORDS, doc}

static PyMethodDef Backend_methods[] = {
    BE_METH(get, "get(key, default=None, version=None)"),
    BE_METH(set, "set(key, value, timeout=DEFAULT_TIMEOUT, version=None)"),
    BE_METH(add, "add(key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool"),
    BE_METH(incr, "incr(key, delta=1, version=None) -> the new value"),
    BE_METH(get_many, "get_many(keys, version=None) -> {key: value}"),
    BE_METH(get_or_set, "get_or_set(key, default, timeout=DEFAULT_TIMEOUT, version=None)"),
    BE_METH(has_key, "has_key(key, version=None) -> bool"),
    BE_METH(delete, "delete(key, version=None) -> bool"),
    BE_METH(_key, "_key(key, version=None) -> the key made and validated"),
    {NULL, NULL, 0, NULL},
};

static int Backend_traverse(BackendObject *b, visitproc visit, void *arg)
{
    Py_VISIT(b->handle);
    Py_VISIT(b->key_prefix);
    Py_VISIT(b->version);
    Py_VISIT(b->key_func);
    Py_VISIT(b->default_timeout);
    Py_VISIT(b->prefix);
    return 0;
}

static int Backend_clear(BackendObject *b)
{
    Py_CLEAR(b->handle);
    Py_CLEAR(b->key_prefix);
    Py_CLEAR(b->version);
    Py_CLEAR(b->key_func);
    Py_CLEAR(b->default_timeout);
    Py_CLEAR(b->prefix);
    return 0;
}

static void Backend_dealloc(BackendObject *b)
{
    PyObject_GC_UnTrack(b);
    Backend_clear(b);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static PySequenceMethods Backend_as_sequence = {
    .sq_contains = (objobjproc)Backend_contains,
};

static PyTypeObject BackendType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmcache._shmcache.DjangoBackend",
    .tp_basicsize = sizeof(BackendObject),
    .tp_dealloc = (destructor)Backend_dealloc,
    .tp_as_sequence = &Backend_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C hot paths of shmcache.django.ShmCache (use that class).",
    .tp_traverse = (traverseproc)Backend_traverse,
    .tp_clear = (inquiry)Backend_clear,
    .tp_methods = Backend_methods,
    .tp_getset = Backend_getset,
    .tp_new = PyType_GenericNew,
};

static PyObject *mod_django_setup(PyObject *m, PyObject *args)
{
    (void)m;
    PyObject *kf, *dt;
    if (!PyArg_ParseTuple(args, "OO:_django_setup", &kf, &dt))
        return NULL;
    Py_INCREF(kf);
    Py_XSETREF(dj_default_key_func, kf);
    Py_INCREF(dt);
    Py_XSETREF(dj_default_timeout, dt);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                    */

static PyObject *mod_destroy(PyObject *m, PyObject *name)
{
    (void)m;
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "name must be str");
        return NULL;
    }
    const char *n = PyUnicode_AsUTF8(name);
    if (!n)
        return NULL;
    if (strlen(n) != (size_t)PyUnicode_GET_LENGTH(name))
        return raise_status(SHMC_ENAME, 0);
    shmc_status st = shmc_destroy(n);
    int err = errno;
    if (st == SHMC_OK)
        Py_RETURN_TRUE;
    if (st == SHMC_ENOENT)
        Py_RETURN_FALSE;
    return raise_status(st, err);
}

static PyObject *mod_strerror(PyObject *m, PyObject *arg)
{
    (void)m;
    long st = PyLong_AsLong(arg);
    if (st == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(shmc_strerror((shmc_status)st));
}

static PyMethodDef module_methods[] = {
    {"destroy", mod_destroy, METH_O,
     "destroy(name) -> True if the cache's name was removed, False if it did not exist."},
    {"strerror", mod_strerror, METH_O, "strerror(status) -> the library's sentence."},
    {"_django_setup", mod_django_setup, METH_VARARGS,
     "_django_setup(default_key_func, DEFAULT_TIMEOUT): Django's objects for DjangoBackend."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmcache._shmcache",
    .m_doc = "C binding of the shmcache library (use the `shmcache` package).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_int(PyObject *m, const char *name, long v)
{
    return PyModule_AddIntConstant(m, name, v);
}

PyMODINIT_FUNC PyInit__shmcache(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle)
        goto fail;
    pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
    pickle_loads = PyObject_GetAttrString(pickle, "loads");
    PyObject *hp = PyObject_GetAttrString(pickle, "HIGHEST_PROTOCOL");
    Py_DECREF(pickle);
    if (!pickle_dumps || !pickle_loads || !hp)
        goto fail;
    pickle_highest = (int)PyLong_AsLong(hp);
    Py_DECREF(hp);
    if (PyErr_Occurred())
        goto fail;

    ShmcacheError = PyErr_NewExceptionWithDoc(
        "shmcache.ShmcacheError",
        "Base class of shmcache errors: .status is the shmc_status code, .status_name "
        "its name, and str() the library's sentence.",
        NULL, NULL);
    if (!ShmcacheError || PyModule_AddObjectRef(m, "ShmcacheError", ShmcacheError) < 0)
        goto fail;
    for (size_t i = 0; i < sizeof exc_defs / sizeof exc_defs[0]; i++) {
        const exc_def *d = &exc_defs[i];
        PyObject *bases = d->extra_base ? PyTuple_Pack(2, ShmcacheError, *d->extra_base)
                                        : PyTuple_Pack(1, ShmcacheError);
        if (!bases)
            goto fail;
        char qual[96];
        snprintf(qual, sizeof qual, "shmcache.%s", d->name);
        PyObject *cls = PyErr_NewExceptionWithDoc(qual, d->doc, bases, NULL);
        Py_DECREF(bases);
        if (!cls)
            goto fail;
        exc_by_status[d->status] = cls;   /* the module keeps the reference */
        if (PyModule_AddObjectRef(m, d->name, cls) < 0) {
            Py_DECREF(cls);
            goto fail;
        }
        Py_DECREF(cls);
    }
    FillError = exc_by_status[SHMC_EFILL];

    ABSENT = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (!ABSENT || PyModule_AddObjectRef(m, "ABSENT", ABSENT) < 0)
        goto fail;

    if (PyType_Ready(&CacheType) < 0 ||
        PyModule_AddObjectRef(m, "Cache", (PyObject *)&CacheType) < 0 ||
        PyType_Ready(&BackendType) < 0 ||
        PyModule_AddObjectRef(m, "DjangoBackend", (PyObject *)&BackendType) < 0)
        goto fail;
    if (!py_zero && !(py_zero = PyLong_FromLong(0)))
        goto fail;
    if (!py_one && !(py_one = PyLong_FromLong(1)))
        goto fail;

    PyObject *names = PyDict_New();
    if (!names)
        goto fail;
    for (int i = 0; i < SHMC_STATUS_COUNT_; i++) {
        PyObject *k = PyLong_FromLong(i);
        PyObject *v = PyUnicode_FromString(status_names[i] ? status_names[i] : "UNKNOWN");
        if (!k || !v || PyDict_SetItem(names, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(names);
            goto fail;
        }
        Py_DECREF(k);
        Py_DECREF(v);
        char cname[48];
        snprintf(cname, sizeof cname, "STATUS_%s", status_names[i] ? status_names[i] : "X");
        if (add_int(m, cname, i) < 0) {
            Py_DECREF(names);
            goto fail;
        }
    }
    if (PyModule_AddObject(m, "STATUS_NAMES", names) < 0) {
        Py_DECREF(names);
        goto fail;
    }
    if (add_int(m, "FLAG_BYTES", FLAG_BYTES) < 0 || add_int(m, "FLAG_PICKLE", FLAG_PICKLE) < 0 ||
        add_int(m, "FLAG_INT", FLAG_INT) < 0 || add_int(m, "FLAG_TEXT", FLAG_TEXT) < 0 ||
        add_int(m, "FILL_ERROR_PYTHON", FILL_ERR_PYTHON) < 0 ||
        add_int(m, "MAX_HOLDS", SHMC_MAX_HOLDS) < 0 ||
        add_int(m, "DEFAULT_MAX_KEY", SHMC_DEFAULT_MAX_KEY) < 0 ||
        add_int(m, "DEFAULT_MAX_VALUE", SHMC_DEFAULT_MAX_VALUE) < 0 ||
        PyModule_AddStringConstant(m, "LIBRARY_VERSION",
                                   Py_STRINGIFY(SHMC_VERSION_MAJOR) "." Py_STRINGIFY(
                                       SHMC_VERSION_MINOR) "." Py_STRINGIFY(SHMC_VERSION_PATCH)) < 0)
        goto fail;
    return m;

fail:
    Py_DECREF(m);
    return NULL;
}
