/*
 * test_cli.c — shmcache-cli and the introspection API against real segments.
 *
 * The CLI binary is run by path (env SHMC_CLI, set by meson) with fork/exec;
 * its stdout/stderr are captured and its exit status checked.  Forked writer
 * processes keep writing into the cache while the commands run.  JSON output
 * is checked by a small strict parser and field lookups.  Corruption is made
 * by poking the segment file of a quiet cache.
 */
#include "testutil.h"
#include "layout.h" /* white-box: where damage is aimed */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *cli_path;

/* ---- running the CLI ---- */

typedef struct run {
    int status;      /* exit status, or 1000 + signal */
    char *out;       /* NUL-terminated stdout */
    size_t outlen;
    char *err;       /* NUL-terminated stderr */
} run;

static void run_free(run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static void drain(int fd, char **buf, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    for (;;) {
        if (cap - n < 1024) {
            cap *= 2;
            b = realloc(b, cap);
            assert_non_null(b);
        }
        ssize_t r = read(fd, b + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
}

/* Runs the CLI with argv (NULL-terminated), feeding `in` to stdin. */
static void run_cli_v(run *r, const void *in, size_t inlen, const char *const *args)
{
    int pin[2], pout[2], perr[2];
    assert_int_equal(pipe(pin), 0);
    assert_int_equal(pipe(pout), 0);
    assert_int_equal(pipe(perr), 0);
    const char *argv[32];
    int n = 0;
    argv[n++] = cli_path;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[0]); close(pin[1]); close(pout[0]); close(pout[1]);
        close(perr[0]); close(perr[1]);
        execv(cli_path, (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    /* Write all input, then read: the CLI reads all of its stdin before it
     * writes much, so this cannot deadlock. */
    if (inlen)
        assert_int_equal(write(pin[1], in, inlen), (ssize_t)inlen);
    close(pin[1]);
    size_t errlen;
    drain(pout[0], &r->out, &r->outlen);
    drain(perr[0], &r->err, &errlen);
    close(pout[0]);
    close(perr[0]);
    r->status = tu_wait(pid, 60000);
    if (r->status >= TU_SIGNALLED)
        fail_msg("CLI %s %s: died: status %d; stderr: %s", args[0], args[1] ? args[1] : "",
                 r->status, r->err);
}

#define RUN(r, ...) run_cli_v((r), NULL, 0, (const char *const[]){__VA_ARGS__, NULL})
#define RUN_IN(r, in, inlen, ...) run_cli_v((r), (in), (inlen), (const char *const[]){__VA_ARGS__, NULL})

/* ---- a minimal strict JSON parser (validation) and field lookups ---- */

static const char *js_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *js_value(const char *p, int depth);

static const char *js_string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p != '"'; p++) {
        if (!*p || (unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *js_value(const char *p, int depth)
{
    if (depth > 32)
        return NULL;
    p = js_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = js_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = js_string(js_ws(p));
                if (!p)
                    return NULL;
                p = js_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            p = js_value(p, depth + 1);
            if (!p)
                return NULL;
            p = js_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p == close)
                return p + 1;
            return NULL;
        }
    }
    if (*p == '"')
        return js_string(p);
    if (!strncmp(p, "true", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    if (!strncmp(p, "null", 4))
        return p + 4;
    char *end;
    strtod(p, &end);
    return end == p ? NULL : end;
}

static void assert_json(const char *s)
{
    const char *e = js_value(s, 0);
    if (!e || *js_ws(e))
        fail_msg("invalid JSON: %s", s);
}

/* The number after the first "field": at or after `from`. */
static bool js_u64(const char *from, const char *field, uint64_t *v)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", field);
    const char *p = strstr(from, pat);
    if (!p)
        return false;
    p += strlen(pat);
    char *end;
    *v = strtoull(p, &end, 10);
    return end != p;
}

static size_t js_count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* ---- writers ---- */

typedef struct wctx {
    const char *name;
    uint32_t id;
    tu_report *rep;
} wctx;

static int writer(void *arg)
{
    wctx *w = arg;
    shmc_t *c;
    if (shmc_open(w->name, NULL, &c) != SHMC_OK)
        return 3;
    char key[64], val[200];
    uint64_t i = 0;
    while (!atomic_load(&w->rep->stop)) {
        int kl = snprintf(key, sizeof key, "w%u:%" PRIu64, w->id, i % 500);
        memset(val, 'a' + (int)(i % 26), sizeof val);
        shmc_status st = shmc_set(c, key, (size_t)kl, val, 16 + i % 150, w->id, (i % 3) ? 60000 : 0);
        if (st != SHMC_OK && st != SHMC_ENOMEM)
            tu_report_error(w->rep, "set: %s", shmc_strerror(st));
        uint64_t r;
        shmc_incr(c, "counter", 7, 1, 0, 0, SHMC_INCR_CREATE, &r);
        char buf[256];
        size_t vl;
        shmc_get(c, key, (size_t)kl, buf, sizeof buf, &vl, NULL);
        atomic_fetch_add(&w->rep->ops, 1);
        i++;
        /* ~2000 ops/s each: the cache (64 MiB) does not cycle through its
         * storage during the test, so keys the test sets stay put. */
        if (i % 4 == 0)
            tu_sleep_ms(2);
    }
    shmc_close(c);
    return 0;
}

#define NWRITERS 3

typedef struct writers {
    tu_report *rep;
    wctx w[NWRITERS];
    pid_t pid[NWRITERS];
} writers;

static writers *active_ws; /* stopped by the teardown if a test fails */

static void writers_start(writers *ws, const char *name)
{
    active_ws = ws;
    ws->rep = tu_report_new();
    for (uint32_t i = 0; i < NWRITERS; i++) {
        ws->w[i] = (wctx){.name = name, .id = i + 1, .rep = ws->rep};
        ws->pid[i] = tu_fork(writer, &ws->w[i]);
        assert_true(ws->pid[i] > 0);
    }
    uint64_t t0 = tu_now_ms();
    while (atomic_load(&ws->rep->ops) < 3000 && tu_now_ms() - t0 < 20000)
        tu_sleep_ms(5);
    assert_true(atomic_load(&ws->rep->ops) >= 3000);
}

static void writers_stop(writers *ws)
{
    active_ws = NULL;
    atomic_store(&ws->rep->stop, 1);
    for (int i = 0; i < NWRITERS; i++)
        assert_int_equal(tu_wait(ws->pid[i], 30000), 0);
    assert_int_equal(atomic_load(&ws->rep->errors), 0);
    tu_report_free(ws->rep);
}

static int teardown(void **state)
{
    (void)state;
    writers *ws = active_ws;
    if (ws) { /* a failed test left its writers running */
        active_ws = NULL;
        atomic_store(&ws->rep->stop, 1);
        for (int i = 0; i < NWRITERS; i++)
            tu_wait(ws->pid[i], 10000);
    }
    return 0;
}

/* ---- tests ---- */

static void test_usage_and_errors(void **state)
{
    (void)state;
    run r;
    RUN(&r, "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "Exit status"));
    run_free(&r);
    const char *cmds[] = {"create", "destroy", "list", "stats", "get", "set", "del", "incr",
                          "touch", "flush", "keys", "procs", "locks", "flights",
                          "lock-release", "verify", "dump", "load"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        RUN(&r, cmds[i], "--help");
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "usage:"));
        run_free(&r);
    }
    RUN(&r, "no-such-command");
    assert_int_equal(r.status, 2);
    run_free(&r);
    RUN(&r, "get", "onlyname");
    assert_int_equal(r.status, 2);
    run_free(&r);
    RUN(&r, "stats", "x", "--bogus");
    assert_int_equal(r.status, 2);
    run_free(&r);
    RUN(&r, "create", "x", "--size", "lots");
    assert_int_equal(r.status, 2);
    run_free(&r);

    /* bad name: exit 1, names the cache and the cause */
    RUN(&r, "stats", "bad/name");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "'bad/name'"));
    assert_non_null(strstr(r.err, shmc_strerror(SHMC_ENAME)));
    run_free(&r);

    char name[64];
    tu_name(name, sizeof name, "climiss");
    RUN(&r, "get", name, "k");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, name));
    assert_non_null(strstr(r.err, shmc_strerror(SHMC_ENOENT)));
    run_free(&r);
    RUN(&r, "destroy", name);
    assert_int_equal(r.status, 1);
    run_free(&r);
}

static void test_commands_with_writers(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "cli");
    run r;
    RUN(&r, "create", name, "--size", "64M", "--max-value", "64K", "--locks", "128",
        "--max-items", "50000");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "max_items 50000"));
    run_free(&r);
    RUN(&r, "stats", name, "--json");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"max_items\":50000"));
    assert_non_null(strstr(r.out, "\"index_capacity\":75000"));
    run_free(&r);
    RUN(&r, "create", name, "--max-items", "0");
    assert_int_equal(r.status, 2);
    run_free(&r);
    RUN(&r, "create", name);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, shmc_strerror(SHMC_EEXIST)));
    run_free(&r);

    writers ws;
    writers_start(&ws, name);

    /* binary-safe set from stdin, get --raw */
    const char bin[] = {'x', 0, 'y', (char)0xff, '\n', 'z'};
    RUN_IN(&r, bin, sizeof bin, "set", name, "bin:key", "-", "--ttl", "1h", "--flags", "77");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "get", name, "bin:key", "--raw");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.outlen, sizeof bin);
    assert_memory_equal(r.out, bin, sizeof bin);
    run_free(&r);
    RUN(&r, "get", name, "bin:key");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"x\\x00y\\xff\\nz\""));
    assert_non_null(strstr(r.out, "flags 77"));
    run_free(&r);

    /* --file */
    char path[128];
    snprintf(path, sizeof path, "/tmp/%s.val", name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fputc(i & 0xff, f);
    fclose(f);
    RUN(&r, "set", name, "file:key", "--file", path);
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "get", name, "file:key", "--raw");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.outlen, 5000);
    for (int i = 0; i < 5000; i++)
        assert_int_equal((unsigned char)r.out[i], i & 0xff);
    run_free(&r);
    unlink(path);

    RUN(&r, "set", name, "plain", "v1");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "incr", name, "ctr", "5", "--create", "100");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "100\n");
    run_free(&r);
    RUN(&r, "incr", name, "ctr", "5");
    assert_string_equal(r.out, "105\n");
    run_free(&r);
    RUN(&r, "incr", name, "ctr", "--decr");
    assert_string_equal(r.out, "104\n");
    run_free(&r);
    RUN(&r, "incr", name, "plain");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, shmc_strerror(SHMC_ENOTNUM)));
    run_free(&r);
    RUN(&r, "incr", name, "missing");
    assert_int_equal(r.status, 1);
    run_free(&r);
    RUN(&r, "touch", name, "plain", "--ttl", "90s");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "touch", name, "nope", "--ttl", "90s");
    assert_int_equal(r.status, 1);
    run_free(&r);
    RUN(&r, "del", name, "plain");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "del", name, "plain");
    assert_int_equal(r.status, 1);
    run_free(&r);
    RUN(&r, "get", name, "plain");
    assert_int_equal(r.status, 1);
    run_free(&r);

    /* keys: JSON, prefix, limit */
    RUN(&r, "keys", name, "--json", "--prefix", "bin:");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    assert_int_equal(js_count(r.out, "\"key\":"), 1);
    uint64_t v = 0;
    assert_true(js_u64(r.out, "size", &v));
    assert_int_equal(v, sizeof bin);
    assert_true(js_u64(r.out, "flags", &v));
    assert_int_equal(v, 77);
    assert_true(js_u64(r.out, "ttl_ms", &v));
    assert_true(v > 3500000 && v <= 3600000);
    run_free(&r);
    RUN(&r, "keys", name, "--json", "--prefix", "w1:", "--limit", "7");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    assert_int_equal(js_count(r.out, "\"key\":\"w1:"), 7);
    run_free(&r);
    RUN(&r, "keys", name);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"ctr\""));
    run_free(&r);

    /* --escaped: a key with NUL and other bytes, named as `keys` prints it
     * (text or JSON form) by every key command */
    RUN(&r, "set", name, "nul:\\x00\\xfe\\\\\\\"k", "v", "--escaped");
    assert_int_equal(r.status, 0);
    run_free(&r);
    const char nkey[] = {'n', 'u', 'l', ':', 0, (char)0xfe, '\\', '"', 'k'};
    size_t gl;
    char gv[8];
    shmc_t *ch;
    assert_int_equal(shmc_open(name, &(shmc_options){.flags = SHMC_OPEN_ATTACH_ONLY}, &ch),
                     SHMC_OK);
    assert_int_equal(shmc_get(ch, nkey, sizeof nkey, gv, sizeof gv, &gl, NULL), SHMC_OK);
    assert_int_equal(gl, 1);
    shmc_close(ch);
    RUN(&r, "keys", name, "--prefix", "nul:\\x00", "--escaped");
    assert_int_equal(r.status, 0);
    const char *printed = strstr(r.out, "\"nul:");
    assert_non_null(printed);
    char tok[64];
    size_t tl = strcspn(printed, "\n");
    assert_true(tl < sizeof tok);
    memcpy(tok, printed, tl);
    tok[tl] = '\0';
    assert_string_equal(tok, "\"nul:\\x00\\xfe\\\\\\\"k\"");
    run_free(&r);
    RUN(&r, "touch", name, tok, "--ttl", "1h", "--escaped");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "get", name, "nul:\\u0000\\u00fe\\\\\\\"k", "--escaped", "--raw");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.outlen, 1);
    run_free(&r);
    RUN(&r, "del", name, tok, "--escaped");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "del", name, tok, "--escaped");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "\\x00")); /* the message escapes the key */
    run_free(&r);
    RUN(&r, "get", name, "nul:\\x0", "--escaped");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "bad escape"));
    run_free(&r);

    /* stats: text, JSON, Prometheus, watch */
    RUN(&r, "stats", name);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "hit ratio"));
    run_free(&r);
    RUN(&r, "stats", name, "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    assert_true(js_u64(r.out, "items", &v) && v > 10);
    assert_true(js_u64(r.out, "sets", &v) && v > 1000);
    assert_true(js_u64(r.out, "slots_live", &v) && v >= NWRITERS);
    assert_true(js_u64(r.out, "bytes_total", &v) && v > 0);
    assert_true(js_u64(r.out, "locks_capacity", &v) && v == 128);
    assert_non_null(strstr(r.out, "\"hit_ratio\":"));
    run_free(&r);
    RUN(&r, "stats", name, "--prometheus");
    assert_int_equal(r.status, 0);
    char want[160];
    snprintf(want, sizeof want, "shmcache_sets_total{cache=\"%s\"} ", name);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "# TYPE shmcache_items gauge"));
    run_free(&r);
    RUN(&r, "stats", name, "--json", "--watch", "1", "--count", "2");
    assert_int_equal(r.status, 0);
    assert_int_equal(js_count(r.out, "\"cache\":"), 2);
    run_free(&r);

    /* procs: the writers are listed, alive */
    RUN(&r, "procs", name, "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    for (int i = 0; i < NWRITERS; i++) {
        char pp[64];
        snprintf(pp, sizeof pp, "\"pid\":%d,", (int)ws.pid[i]);
        const char *p = strstr(r.out, pp);
        assert_non_null(p);
        assert_non_null(strstr(p, "\"alive\":true"));
    }
    run_free(&r);

    /* list: our cache is there with its items */
    RUN(&r, "list", "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    char nm[96];
    snprintf(nm, sizeof nm, "\"name\":\"%s\",\"ok\":true", name);
    assert_non_null(strstr(r.out, nm));
    run_free(&r);

    /* verify while writers run */
    RUN(&r, "verify", name, "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    assert_non_null(strstr(r.out, "\"ok\":true"));
    run_free(&r);

    writers_stop(&ws);

    /* a quiet cache: keys sees exactly the keys present */
    RUN(&r, "flush", name);
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "keys", name, "--json");
    assert_json(r.out);
    assert_int_equal(js_count(r.out, "\"key\":"), 0);
    run_free(&r);
    RUN(&r, "destroy", name);
    assert_int_equal(r.status, 0);
    run_free(&r);
}

/* ---- locks and flights ---- */

typedef struct holder {
    const char *name;
    int cmd[2], res[2];   /* parent -> child: go on; child -> parent: status */
    int fill;
} holder;

static int lock_holder(void *arg)
{
    holder *h = arg;
    shmc_t *c;
    if (shmc_open(h->name, NULL, &c) != SHMC_OK)
        return 3;
    uint64_t tok = 0;
    shmc_fill f;
    memset(&f, 0, sizeof f);
    if (h->fill) {
        void *val;
        size_t vl;
        shmc_fill_opts o = {.fill_ms = 60000};
        if (shmc_fill_begin(c, "fill:key", 8, &o, &val, &vl, NULL, &f) != SHMC_LEADER)
            return 4;
    } else if (shmc_lock_acquire(c, "jobs:lock", 9, 1000, 60000, &tok) != SHMC_OK) {
        return 4;
    }
    char b = 1;
    if (write(h->res[1], &b, 1) != 1)
        return 5;
    if (read(h->cmd[0], &b, 1) != 1)
        return 6;
    int rc = 0;
    if (h->fill)
        rc = shmc_fill_finish(c, &f, "v", 1, 0, 0) == SHMC_OK ? 0 : 7;
    else
        rc = shmc_lock_release(c, "jobs:lock", 9, tok) == SHMC_ENOTOWNER ? 0 : 8;
    shmc_close(c);
    return rc;
}

static pid_t holder_start(holder *h)
{
    assert_int_equal(pipe(h->cmd), 0);
    assert_int_equal(pipe(h->res), 0);
    pid_t p = tu_fork(lock_holder, h);
    assert_true(p > 0);
    char b;
    assert_int_equal(read(h->res[0], &b, 1), 1);
    return p;
}

static int holder_finish(holder *h, pid_t p)
{
    char b = 1;
    assert_int_equal(write(h->cmd[1], &b, 1), 1);
    int st = tu_wait(p, 30000);
    close(h->cmd[0]); close(h->cmd[1]); close(h->res[0]); close(h->res[1]);
    return st;
}

static void test_locks_flights(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "clilock");
    shmc_options o = {.size = 8u << 20, .max_value = 64u << 10};
    shmc_t *c;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    writers ws;
    writers_start(&ws, name);

    holder h = {.name = name};
    pid_t hp = holder_start(&h);
    run r;
    RUN(&r, "locks", name, "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    const char *p = strstr(r.out, "\"name\":\"jobs:lock\"");
    assert_non_null(p);
    char pp[64];
    snprintf(pp, sizeof pp, "\"holder_pid\":%d,", (int)hp);
    assert_non_null(strstr(p, "\"held\":true"));
    assert_non_null(strstr(p, pp));
    uint64_t lease = 0;
    assert_true(js_u64(p, "lease_left_ms", &lease));
    assert_true(lease > 50000 && lease <= 60000);
    uint64_t tok_listed = 0;
    assert_true(js_u64(p, "token", &tok_listed));
    run_free(&r);

    /* API view of the same */
    shmc_lock_info li[16];
    size_t n;
    assert_int_equal(shmc_locks_list(c, 1, li, 16, &n), SHMC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(li[0].kind, SHMC_LOCK_KIND_LOCK);
    assert_int_equal(li[0].name_len, 9);
    assert_memory_equal(li[0].name, "jobs:lock", 9);
    assert_int_equal(li[0].holder_pid, (uint32_t)hp);
    assert_int_equal(li[0].token, tok_listed);

    uint64_t t2;
    assert_int_equal(shmc_lock_try(c, "jobs:lock", 9, 0, &t2), SHMC_EBUSY);
    RUN(&r, "lock-release", name, "jobs:lock");
    assert_int_equal(r.status, 2); /* --force required */
    run_free(&r);
    RUN(&r, "lock-release", name, "jobs:lock", "--force");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "lock-release", name, "jobs:lock", "--force");
    assert_int_equal(r.status, 1); /* not held any more */
    run_free(&r);
    assert_int_equal(shmc_lock_try(c, "jobs:lock", 9, 0, &t2), SHMC_OK);
    assert_true(t2 > tok_listed);
    /* the old holder's release is refused */
    assert_int_equal(holder_finish(&h, hp), 0);
    assert_int_equal(shmc_lock_release(c, "jobs:lock", 9, t2), SHMC_OK);
    assert_int_equal(shmc_lock_force_release(c, "never:used", 10, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_lock_force_release(c, "", 0, NULL), SHMC_EKEYLEN);
    /* a lock name with a NUL, named as `locks` prints it */
    const char nlock[] = {'q', 0, (char)0x80};
    assert_int_equal(shmc_lock_acquire(c, nlock, sizeof nlock, 0, 60000, &t2), SHMC_OK);
    RUN(&r, "locks", name);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"q\\x00\\x80\""));
    run_free(&r);
    RUN(&r, "lock-release", name, "q\\x00", "--force", "--escaped");
    assert_int_equal(r.status, 1); /* another name: not held */
    assert_non_null(strstr(r.err, "\"q\\x00\" is not held"));
    run_free(&r);
    RUN(&r, "lock-release", name, "\"q\\x00\\x80\"", "--escaped", "--force");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "released lock \"q\\x00\\x80\""));
    run_free(&r);
    assert_int_equal(shmc_lock_release(c, nlock, sizeof nlock, t2), SHMC_ENOTOWNER);

    /* flights */
    holder hf = {.name = name, .fill = 1};
    pid_t fp = holder_start(&hf);
    RUN(&r, "flights", name, "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    p = strstr(r.out, "\"name\":\"fill:key\"");
    assert_non_null(p);
    snprintf(pp, sizeof pp, "\"holder_pid\":%d,", (int)fp);
    assert_non_null(strstr(p, pp));
    run_free(&r);
    RUN(&r, "locks", name, "--json");
    assert_null(strstr(r.out, "fill:key")); /* locks shows only locks */
    run_free(&r);
    RUN(&r, "procs", name, "--json");
    snprintf(pp, sizeof pp, "\"pid\":%d,", (int)fp);
    p = strstr(r.out, pp);
    assert_non_null(p);
    assert_non_null(strstr(p, "\"holds\":1"));
    run_free(&r);
    assert_int_equal(holder_finish(&hf, fp), 0);
    RUN(&r, "flights", name, "--json");
    assert_null(strstr(r.out, "fill:key"));
    run_free(&r);

    writers_stop(&ws);
    shmc_close(c);
    tu_destroy(name);
}

/* ---- the introspection API directly ---- */

typedef struct seen {
    uint8_t *bits;
    uint64_t n, stop_after;
} seen;

static int seen_cb(void *ctx, const shmc_key_info *k)
{
    seen *s = ctx;
    unsigned id;
    char buf[32];
    assert_true(k->klen < sizeof buf);
    memcpy(buf, k->key, k->klen);
    buf[k->klen] = 0;
    assert_int_equal(sscanf(buf, "k%u", &id), 1);
    assert_true(id < 3000);
    assert_int_equal(k->vlen, id % 100);
    assert_int_equal(k->flags, id);
    if (id % 2)
        assert_int_equal(k->ttl_left_ms, SHMC_TTL_NONE);
    else
        assert_true(k->ttl_left_ms <= 600000 && k->ttl_left_ms > 500000);
    assert_int_equal(s->bits[id], 0); /* exactly once on a quiet cache */
    s->bits[id] = 1;
    s->n++;
    return s->stop_after && s->n % s->stop_after == 0;
}

static void test_keys_iter_api(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "clikeys");
    shmc_options o = {.size = 8u << 20, .max_value = 64u << 10};
    shmc_t *c;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    char key[32], val[100] = {0};
    for (unsigned i = 0; i < 3000; i++) {
        int kl = snprintf(key, sizeof key, "k%u", i);
        assert_int_equal(shmc_set(c, key, (size_t)kl, val, i % 100, i, i % 2 ? 0 : 600000),
                         SHMC_OK);
    }
    /* an expired key is not listed */
    assert_int_equal(shmc_set(c, "gone", 4, "x", 1, 0, 1), SHMC_OK);
    tu_sleep_ms(5);
    uint8_t bits[3000] = {0};
    seen s = {.bits = bits};
    assert_int_equal(shmc_keys_iter(c, NULL, seen_cb, &s), SHMC_OK);
    assert_int_equal(s.n, 3000);
    /* resumable in pieces */
    memset(bits, 0, sizeof bits);
    s = (seen){.bits = bits, .stop_after = 77};
    uint64_t cur = 0;
    int calls = 0;
    do {
        assert_int_equal(shmc_keys_iter(c, &cur, seen_cb, &s), SHMC_OK);
        calls++;
    } while (cur != 0 && calls < 1000);
    assert_int_equal(s.n, 3000);
    assert_true(calls >= 3000 / 77);
    assert_int_equal(shmc_keys_iter(NULL, NULL, seen_cb, &s), SHMC_EINVAL);
    assert_int_equal(shmc_keys_iter(c, NULL, NULL, NULL), SHMC_EINVAL);

    shmc_proc_info pi[4];
    size_t n;
    assert_int_equal(shmc_procs(c, 0, pi, 4, &n), SHMC_OK);
    assert_int_equal(n, 1); /* this thread */
    assert_int_equal(pi[0].pid, (uint32_t)getpid());
    assert_int_equal(pi[0].alive, 1);
    assert_int_equal(pi[0].reading, 0);
    assert_int_equal(shmc_procs(c, 0, NULL, 0, &n), SHMC_OK);
    assert_int_equal(shmc_procs(c, 0, NULL, 1, &n), SHMC_EINVAL);
    shmc_close(c);
    tu_destroy(name);
}

/* ---- version mismatch and corruption ---- */

static void *map_file(const char *name, size_t *size)
{
    void *p = tu_map_segment(name, size);
    assert_non_null(p);
    return p;
}

static void copy_segment(const char *from, const char *to)
{
    size_t n;
    void *src = map_file(from, &n);
    char path[256];
    tu_shm_path(path, sizeof path, to);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, src, n), (ssize_t)n);
    close(fd);
    munmap(src, n);
}

static void make_quiet_cache(const char *name, unsigned nkeys)
{
    shmc_options o = {.size = 8u << 20, .max_value = 64u << 10};
    shmc_t *c;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    char key[32];
    for (unsigned i = 0; i < nkeys; i++) {
        int kl = snprintf(key, sizeof key, "key%u", i);
        assert_int_equal(shmc_set(c, key, (size_t)kl, "value", 5, 0, 0), SHMC_OK);
    }
    shmc_close(c);
}

static void test_version_mismatch(void **state)
{
    (void)state;
    char name[64], copy[64];
    tu_name(name, sizeof name, "cliver");
    tu_name(copy, sizeof copy, "cliverc");
    make_quiet_cache(name, 10);
    copy_segment(name, copy);
    size_t n;
    uint8_t *p = map_file(copy, &n);
    uint32_t v;
    memcpy(&v, p + offsetof(shmc_hdr, layout_version), 4);
    v += 100;
    memcpy(p + offsetof(shmc_hdr, layout_version), &v, 4);
    munmap(p, n);
    run r;
    const char *cmds[] = {"stats", "keys", "verify", "procs", "locks"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        RUN(&r, cmds[i], copy);
        assert_int_equal(r.status, 1);
        assert_non_null(strstr(r.err, copy));
        assert_non_null(strstr(r.err, shmc_strerror(SHMC_EVERSION)));
        run_free(&r);
    }
    /* list shows it with the reason, and the good one as ok */
    RUN(&r, "list");
    assert_int_equal(r.status, 0);
    const char *line = strstr(r.out, copy);
    assert_non_null(line);
    assert_non_null(strstr(line, "layout version"));
    run_free(&r);
    RUN(&r, "stats", name);
    assert_int_equal(r.status, 0);
    run_free(&r);
    tu_destroy(copy);
    tu_destroy(name);
}

static void test_verify_corrupt(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "clicorr");
    make_quiet_cache(name, 200);
    run r;
    RUN(&r, "verify", name);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "OK"));
    run_free(&r);

    /* 1. index words pointing outside item storage */
    size_t n;
    uint8_t *p = map_file(name, &n);
    uint64_t off_index = tu_load64(p, offsetof(shmc_hdr, off_index));
    uint64_t off_data = tu_load64(p, offsetof(shmc_hdr, off_data));
    assert_true(off_index < off_data && off_data <= n);
    unsigned poked = 0;
    for (uint64_t o = off_index; o + 8 <= off_data && poked < 5; o += 8) {
        uint64_t w = tu_load64(p, o);
        if (!w)
            continue;
        w |= (1ull << 48) - 1; /* loc far beyond data */
        memcpy(p + o, &w, 8);
        poked++;
    }
    assert_int_equal(poked, 5);
    RUN(&r, "verify", name);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "CORRUPT"));
    assert_non_null(strstr(r.out, "bad_offsets"));
    assert_non_null(strstr(r.err, name));
    run_free(&r);
    RUN(&r, "verify", name, "--json");
    assert_int_equal(r.status, 1);
    assert_json(r.out);
    uint64_t v = 0;
    assert_true(js_u64(r.out, "bad_offsets", &v));
    assert_int_equal(v, 5);
    run_free(&r);
    /* the other commands survive it */
    RUN(&r, "keys", name, "--json");
    assert_int_equal(r.status, 0);
    assert_json(r.out);
    assert_int_equal(js_count(r.out, "\"key\":"), 195);
    run_free(&r);
    RUN(&r, "stats", name);
    assert_int_equal(r.status, 0);
    run_free(&r);

    /* 2. garbage over item headers and keys */
    for (uint64_t o = off_data; o < off_data + 4096 && o + 8 <= n; o += 64)
        memset(p + o, 0x5a, 8);
    RUN(&r, "verify", name, "--json");
    assert_int_equal(r.status, 1);
    assert_json(r.out);
    assert_true(js_u64(r.out, "bad_items", &v) && v > 0);
    run_free(&r);
    RUN(&r, "keys", name);
    assert_int_equal(r.status, 0);
    run_free(&r);

    /* 3. random garbage over the whole index: still no crash */
    tu_rng rng;
    tu_rng_seed(&rng, 42);
    for (uint64_t o = off_index; o + 8 <= off_data; o += 8) {
        if (tu_rng_below(&rng, 4) == 0) {
            uint64_t w = tu_rng_next(&rng);
            memcpy(p + o, &w, 8);
        }
    }
    /* and over the lock table and slot holds of the header area */
    RUN(&r, "verify", name);
    assert_int_equal(r.status, 1);
    run_free(&r);
    RUN(&r, "keys", name, "--limit", "10");
    assert_int_equal(r.status, 0);
    run_free(&r);
    RUN(&r, "locks", name);
    assert_int_equal(r.status, 0);
    run_free(&r);
    munmap(p, n);

    /* 4. a corrupt header: open refuses it, with the cause */
    p = map_file(name, &n);
    memset(p + offsetof(shmc_hdr, size), 0xee, 8);
    munmap(p, n);
    RUN(&r, "verify", name);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, name));
    run_free(&r);
    tu_destroy(name);
}

/* ---- dump / load ---- */

typedef struct kv_snapshot {
    shmc_t *c;
    size_t n;
    tu_report *rep;
    shmc_t *other;      /* compare each key with this cache */
    uint64_t ttl_slack; /* ms */
} kv_snapshot;

/* For each key of one cache: the other has the same value, flags, kind
 * and (within slack) TTL. */
static int compare_cb(void *ctx, const shmc_key_info *k)
{
    kv_snapshot *x = ctx;
    x->n++;
    void *a = NULL, *b = NULL;
    size_t al, bl;
    uint32_t af, bf;
    if (shmc_get_alloc(x->c, k->key, k->klen, &a, &al, &af) != SHMC_OK ||
        shmc_get_alloc(x->other, k->key, k->klen, &b, &bl, &bf) != SHMC_OK) {
        tu_report_error(x->rep, "key %.*s missing", (int)k->klen, (const char *)k->key);
    } else if (al != bl || memcmp(a, b, al) || af != bf) {
        tu_report_error(x->rep, "key %.*s differs", (int)k->klen, (const char *)k->key);
    } else {
        uint64_t ta, tb;
        assert_int_equal(shmc_ttl(x->c, k->key, k->klen, &ta), SHMC_OK);
        assert_int_equal(shmc_ttl(x->other, k->key, k->klen, &tb), SHMC_OK);
        if ((ta == SHMC_TTL_NONE) != (tb == SHMC_TTL_NONE) ||
            (ta != SHMC_TTL_NONE && (ta > tb + x->ttl_slack || tb > ta + x->ttl_slack)))
            tu_report_error(x->rep, "key %.*s: ttl %" PRIu64 " vs %" PRIu64, (int)k->klen,
                            (const char *)k->key, ta, tb);
    }
    free(a);
    free(b);
    return 0;
}

static size_t count_keys(shmc_t *c)
{
    shmc_stats s;
    assert_int_equal(shmc_stats_get(c, &s), SHMC_OK);
    return (size_t)s.items;
}

static void assert_same_items(shmc_t *a, shmc_t *b)
{
    tu_report *rep = tu_report_new();
    kv_snapshot x = {.c = a, .other = b, .rep = rep, .ttl_slack = 5000};
    assert_int_equal(shmc_keys_iter(a, NULL, compare_cb, &x), SHMC_OK);
    kv_snapshot y = {.c = b, .other = a, .rep = rep, .ttl_slack = 5000};
    assert_int_equal(shmc_keys_iter(b, NULL, compare_cb, &y), SHMC_OK);
    if (atomic_load(&rep->errors))
        fail_msg("dump/load mismatch: %s", tu_report_msg(rep));
    assert_int_equal(x.n, y.n);
    assert_true(x.n > 0);
    tu_report_free(rep);
}

static void test_dump_load(void **state)
{
    (void)state;
    char name[64], dst[64], path[128], bad[160];
    tu_name(name, sizeof name, "clidump");
    tu_name(dst, sizeof dst, "cliload");
    snprintf(path, sizeof path, "/tmp/%s.dump", name);
    snprintf(bad, sizeof bad, "/tmp/%s.bad", name);
    shmc_options o = {.size = 64u << 20, .max_value = 64u << 10};
    shmc_t *c;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    /* every kind of item: binary key and value, empty value, flags, TTLs,
     * decimal and binary counters, a value at max_value */
    const char bkey[] = {'b', 0, (char)0xfe, 'k'};
    const char bval[] = {0, 1, 2, (char)0xff, 0};
    assert_int_equal(shmc_set(c, bkey, sizeof bkey, bval, sizeof bval, 9, 0), SHMC_OK);
    assert_int_equal(shmc_set(c, "empty", 5, "", 0, 1, 0), SHMC_OK);
    assert_int_equal(shmc_set(c, "ttl", 3, "soon", 4, 0, 3600000), SHMC_OK);
    uint64_t r;
    assert_int_equal(shmc_incr(c, "dec", 3, 0, 41, 0, SHMC_INCR_CREATE, &r), SHMC_OK);
    assert_int_equal(shmc_incr(c, "bin", 3, 0, 1ull << 40, 7200000,
                               SHMC_INCR_CREATE | SHMC_INCR_BINARY, &r), SHMC_OK);
    char *big = malloc(64u << 10);
    assert_non_null(big);
    for (size_t i = 0; i < (64u << 10); i++)
        big[i] = (char)(i * 7);
    assert_int_equal(shmc_set(c, "big", 3, big, 64u << 10, 0, 0), SHMC_OK);

    /* 1. a dump while writers run: complete and valid */
    writers ws;
    writers_start(&ws, name);
    run rr;
    RUN(&rr, "dump", name, path);
    assert_int_equal(rr.status, 0);
    assert_non_null(strstr(rr.out, "dumped "));
    run_free(&rr);
    RUN(&rr, "load", name, path, "--check");
    assert_int_equal(rr.status, 0);
    assert_non_null(strstr(rr.out, "a valid dump"));
    run_free(&rr);
    writers_stop(&ws);

    /* 2. a quiet cache: dump, load into a new cache of another size; equal,
     * except "short", which expires on disk and is skipped */
    /* "short" must be live when dumped: on a slow host, a dump that took
     * longer than its TTL is made again with a longer one */
    uint64_t t_short = 0, ttl_short = 0;
    for (ttl_short = 2000; ttl_short <= 32000; ttl_short *= 4) {
        t_short = tu_now_ms();
        assert_int_equal(shmc_set(c, "short", 5, "gone", 4, 0, ttl_short), SHMC_OK);
        RUN(&rr, "dump", name, path);
        assert_int_equal(rr.status, 0);
        run_free(&rr);
        if (tu_now_ms() - t_short < ttl_short - 100)
            break;
    }
    assert_true(ttl_short <= 32000);
    uint64_t t_gone = t_short + ttl_short + 100, t_now = tu_now_ms();
    if (t_now < t_gone)
        tu_sleep_ms(t_gone - t_now);
    assert_int_equal(shmc_delete(c, "short", 5), SHMC_NOT_FOUND);
    RUN(&rr, "create", dst, "--size", "32M", "--max-value", "64K");
    assert_int_equal(rr.status, 0);
    run_free(&rr);
    RUN(&rr, "load", dst, path);
    assert_int_equal(rr.status, 0);
    assert_non_null(strstr(rr.out, "skipped 1 "));
    run_free(&rr);
    shmc_t *d;
    assert_int_equal(shmc_open(dst, &(shmc_options){.flags = SHMC_OPEN_ATTACH_ONLY}, &d),
                     SHMC_OK);
    assert_same_items(c, d);
    /* the counters still count, the binary one as binary */
    assert_int_equal(shmc_incr(d, "bin", 3, 1, 0, 0, 0, &r), SHMC_OK);
    assert_int_equal(r, (1ull << 40) + 1);
    size_t vl;
    char vb[16];
    assert_int_equal(shmc_get(d, "bin", 3, vb, sizeof vb, &vl, NULL), SHMC_OK);
    assert_int_equal(vl, 8);
    assert_int_equal(shmc_incr(d, "dec", 3, 1, 0, 0, 0, &r), SHMC_OK);
    assert_int_equal(r, 42);
    size_t loaded = count_keys(d);

    /* 3. damaged files load nothing and say why */
    size_t n;
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1u << 20);
    assert_non_null(buf);
    n = fread(buf, 1, 1u << 20, f);
    fclose(f);
    assert_true(n > 64u << 10);
    assert_int_equal(shmc_flush(d), SHMC_OK);
    /* a byte inside the value of "big": the records before it (keys the
     * writers left) vary from run to run, so find it rather than guess */
    const char *in_big = memmem(buf, n, big + 1000, 256);
    assert_non_null(in_big);
    size_t big_at = (size_t)(in_big - buf) + 128;
    struct {
        size_t off, len; /* flip a byte at off, or truncate to len */
        const char *why;
    } cases[] = {
        {big_at, 0, "damaged"},         /* a byte inside a value */
        {40, 0, "record 1"},            /* the first record's header */
        {0, n - 1, "truncated"},
        {0, n - 41, "truncated"},       /* the end record cut off exactly */
        {0, 10, "shorter than its header"},
        {3, 0, "not a shmcache dump"},
        {n - 20, 0, "end record"},      /* the item count */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : n;
        if (!cases[i].len)
            buf[cases[i].off] ^= 0x10;
        f = fopen(bad, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, len, f), len);
        fclose(f);
        if (!cases[i].len)
            buf[cases[i].off] ^= 0x10;
        RUN(&rr, "load", dst, bad);
        assert_int_equal(rr.status, 1);
        if (!strstr(rr.err, cases[i].why) || !strstr(rr.err, "nothing loaded"))
            fail_msg("case %zu: %s", i, rr.err);
        run_free(&rr);
        shmc_stats s;
        assert_int_equal(shmc_stats_get(d, &s), SHMC_OK);
        assert_int_equal(s.items, 0);
    }
    /* trailing garbage */
    f = fopen(bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fputs("junk", f);
    fclose(f);
    RUN(&rr, "load", dst, bad);
    assert_int_equal(rr.status, 1);
    assert_non_null(strstr(rr.err, "trailing"));
    run_free(&rr);

    /* 4. via stdin, into a cache whose max_value is smaller: the rest loads,
     * exit 1 names the count */
    char small[64];
    tu_name(small, sizeof small, "clismall");
    RUN(&rr, "create", small, "--size", "4M", "--max-value", "16K");
    assert_int_equal(rr.status, 0);
    run_free(&rr);
    /* (the CLI reads all of stdin before it writes a line: no pipe deadlock) */
    RUN_IN(&rr, buf, n, "load", small, "-");
    assert_int_equal(rr.status, 1);
    assert_non_null(strstr(rr.err, "1 items not loaded"));
    run_free(&rr);
    shmc_t *sm;
    assert_int_equal(shmc_open(small, &(shmc_options){.flags = SHMC_OPEN_ATTACH_ONLY}, &sm),
                     SHMC_OK);
    shmc_stats ss;
    assert_int_equal(shmc_stats_get(sm, &ss), SHMC_OK);
    assert_int_equal(ss.items, loaded - 1);
    shmc_close(sm);
    tu_destroy(small);

    free(buf);
    free(big);
    shmc_close(d);
    shmc_close(c);
    unlink(path);
    unlink(bad);
    tu_destroy(dst);
    tu_destroy(name);
}

/* ---- shmc_peek, and attach-only never creating ---- */

static void test_peek_attach_only(void **state)
{
    (void)state;
    char name[64], path[256];
    tu_name(name, sizeof name, "clipeek");
    tu_shm_path(path, sizeof path, name);
    shmc_peek_info pk;
    assert_int_equal(shmc_peek(name, &pk), SHMC_ENOENT);
    assert_int_equal(shmc_peek("bad/name", &pk), SHMC_ENAME);
    assert_int_equal(shmc_peek(name, NULL), SHMC_EINVAL);

    /* a file that is not a cache */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hello, world", 12), 12);
    assert_int_equal(shmc_peek(name, &pk), SHMC_ECORRUPT);
    /* empty: a creator between open and truncate */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(shmc_peek(name, &pk), SHMC_OK);
    assert_int_equal(pk.ready, 0);
    /* half-created: magic and size, state not READY.  Attach-only must not
     * initialise it; a plain open does. */
    assert_int_equal(ftruncate(fd, 8u << 20), 0);
    uint64_t magic = SHMC_MAGIC;
    uint32_t ver = SHMC_LAYOUT_VERSION;
    assert_int_equal(pwrite(fd, &magic, 8, offsetof(shmc_hdr, magic)), 8);
    assert_int_equal(pwrite(fd, &ver, 4, offsetof(shmc_hdr, layout_version)), 4);
    close(fd);
    shmc_t *c = NULL;
    shmc_options ao = {.flags = SHMC_OPEN_ATTACH_ONLY};
    assert_int_equal(shmc_open(name, &ao, &c), SHMC_ENOENT);
    assert_null(c);
    run r;
    RUN(&r, "stats", name);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, shmc_strerror(SHMC_ENOENT)));
    run_free(&r);
    RUN(&r, "list");
    assert_int_equal(r.status, 0);
    const char *line = strstr(r.out, name);
    assert_non_null(line);
    assert_true(strstr(line, "not initialised") != NULL);
    run_free(&r);
    assert_int_equal(shmc_open(name, &(shmc_options){.size = 8u << 20}, &c), SHMC_OK);
    assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), SHMC_OK);
    /* now a ready cache of this layout */
    assert_int_equal(shmc_peek(name, &pk), SHMC_OK);
    assert_int_equal(pk.ready, 1);
    assert_int_equal(pk.size, 8u << 20);
    assert_int_equal(pk.layout_version, SHMC_LAYOUT_VERSION);
    shmc_info in;
    assert_int_equal(shmc_info_get(c, &in), SHMC_OK);
    assert_int_equal(pk.max_key, in.max_key);
    assert_int_equal(pk.max_value, in.max_value);
    assert_int_equal(pk.slots, in.slots);
    assert_int_equal(pk.locks, in.locks);
    shmc_close(c);
    /* another layout version */
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    ver += 7;
    assert_int_equal(pwrite(fd, &ver, 4, offsetof(shmc_hdr, layout_version)), 4);
    close(fd);
    assert_int_equal(shmc_peek(name, &pk), SHMC_EVERSION);
    assert_int_equal(pk.layout_version, SHMC_LAYOUT_VERSION + 7);
    tu_destroy(name);
}

int main(void)
{
    cli_path = getenv("SHMC_CLI");
    if (!cli_path || access(cli_path, X_OK) != 0) {
        fprintf(stderr, "SHMC_CLI must name the shmcache-cli binary\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_usage_and_errors, teardown),
        cmocka_unit_test_teardown(test_keys_iter_api, teardown),
        cmocka_unit_test_teardown(test_commands_with_writers, teardown),
        cmocka_unit_test_teardown(test_locks_flights, teardown),
        cmocka_unit_test_teardown(test_version_mismatch, teardown),
        cmocka_unit_test_teardown(test_verify_corrupt, teardown),
        cmocka_unit_test_teardown(test_dump_load, teardown),
        cmocka_unit_test_teardown(test_peek_attach_only, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
