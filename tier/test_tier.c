/*
 * test_tier.c — the Redis tier (shmcache_tier.h) against a real redis-server
 * that the suite starts itself (unix socket in a temporary directory, --port
 * 0, no persistence, stopped by PID).  Several hosts are simulated by
 * several caches on this machine, each with its own listener.
 *
 * When redis-server is missing the suite is skipped (exit 77) with a
 * message, except under CI=true, where that is a failure.  Waits are
 * bounded; the bounds asserted are the documented staleness bounds (lease,
 * plus a generous margin for a loaded machine), never speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmcache_tier.h"
#include "testutil.h"

#define LEASE_MS 600u
#define SLACK_MS 3000u /* a loaded CI machine: scheduling, not the protocol */
#define NHOSTS 3

static char g_dir[256], g_sock[300];
static pid_t g_redis = -1;
static const char *g_server;

/* ---- redis-server ---- */

static int redis_start(void)
{
    char log[320];
    snprintf(log, sizeof log, "%s/redis.log", g_dir);
    unlink(g_sock);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl(g_server, g_server, "--port", "0", "--unixsocket", g_sock, "--unixsocketperm",
              "700", "--save", "", "--appendonly", "no", "--dir", g_dir, "--daemonize", "no",
              "--logfile", log, (char *)NULL);
        _exit(127);
    }
    g_redis = pid;
    for (int i = 0; i < 500; i++) {
        struct timeval tv = {1, 0};
        redisContext *rc = redisConnectUnixWithTimeout(g_sock, tv);
        if (rc && !rc->err) {
            redisReply *r = redisCommand(rc, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(rc);
            if (ok)
                return 0;
        } else if (rc) {
            redisFree(rc);
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            g_redis = -1;
            return -1;
        }
        tu_sleep_ms(20);
    }
    return -1;
}

static void redis_stop(void)
{
    if (g_redis > 0) {
        kill(g_redis, SIGKILL);
        while (waitpid(g_redis, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    g_redis = -1;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/shmc-tier-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_sock, sizeof g_sock, "%s/redis.sock", g_dir);
    return redis_start();
}

static int group_teardown(void **state)
{
    (void)state;
    redis_stop();
    char p[320];
    snprintf(p, sizeof p, "%s/redis.sock", g_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/redis.log", g_dir);
    unlink(p);
    rmdir(g_dir);
    return 0;
}

/* A plain Redis client (another application, or another host's writer). */
static redisContext *raw(void)
{
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectUnixWithTimeout(g_sock, tv);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    return rc;
}

static void raw_cmd(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* ---- hosts ---- */

typedef struct host {
    char name[256];
    shmc_t *c;
    shmc_tier_t *t;
} host;

static const char *g_prefix = "tt:";

static shmc_tier_options topts(uint32_t flags)
{
    shmc_tier_options o;
    memset(&o, 0, sizeof o);
    o.redis_unix = g_sock;
    o.prefix = g_prefix;
    o.prefix_len = strlen(g_prefix);
    o.lease_ms = LEASE_MS;
    o.timeout_ms = 500;
    o.max_stale_ms = 30000;
    o.flags = flags;
    return o;
}

static void host_open(host *h, const char *tag, uint32_t flags)
{
    tu_name(h->name, sizeof h->name, tag);
    shmc_options so = {.size = 16ull << 20, .max_value = 64u << 10};
    assert_int_equal(shmc_open(h->name, &so, &h->c), SHMC_OK);
    shmc_tier_options o = topts(flags);
    assert_int_equal(shmc_tier_open(h->c, &o, &h->t), SHMC_OK);
}

/* Opens n hosts (host_open, no flags) and waits for each one's listener. */
static void hosts_open(host *h, int n, const char *tag)
{
    for (int i = 0; i < n; i++) {
        host_open(&h[i], tag, 0);
        assert_int_equal(shmc_tier_wait_listener(h[i].t, 5000), SHMC_OK);
    }
}

/* In a forked worker: opens the cache `name` and a tier on it, and waits for
 * its listener.  Returns 0, or the worker's exit code for what failed: 1 (the
 * cache), 2 (the tier) or 3 (no listener). */
static int worker_attach(const char *name, shmc_t **c, shmc_tier_t **t)
{
    *c = NULL;
    *t = NULL;
    if (shmc_open(name, NULL, c) != SHMC_OK)
        return 1;
    shmc_tier_options o = topts(0);
    if (shmc_tier_open(*c, &o, t) != SHMC_OK)
        return 2;
    if (shmc_tier_wait_listener(*t, 5000) != SHMC_OK)
        return 3;
    return 0;
}

static void host_close(host *h)
{
    shmc_tier_close(h->t);
    shmc_close(h->c);
    tu_destroy(h->name);
}

static void flushall(void)
{
    redisContext *rc = raw();
    raw_cmd(rc, "FLUSHALL");
    redisFree(rc);
}

/* get as a NUL-terminated string ("" for absent), status in *st */
static char *tget(shmc_tier_t *t, const char *k, shmc_status *st)
{
    void *v = NULL;
    size_t n = 0;
    *st = shmc_tier_get(t, k, strlen(k), &v, &n);
    char *s = malloc(n + 1);
    if (*st == SHMC_OK)
        memcpy(s, v, n);
    s[*st == SHMC_OK ? n : 0] = 0;
    free(v);
    return s;
}

static int tget_is(shmc_tier_t *t, const char *k, const char *want)
{
    shmc_status st;
    char *s = tget(t, k, &st);
    int ok = want ? (st == SHMC_OK && strcmp(s, want) == 0) : st == SHMC_NOT_FOUND;
    free(s);
    return ok;
}

#define TSET(t, k, v) shmc_tier_set((t), (k), strlen(k), (v), strlen(v), 0)

/* Waits until a read of k on t returns want; returns the ms it took, or -1. */
static long wait_value(shmc_tier_t *t, const char *k, const char *want, unsigned bound_ms)
{
    uint64_t t0 = tu_now_ms();
    for (;;) {
        if (tget_is(t, k, want))
            return (long)(tu_now_ms() - t0);
        if (tu_now_ms() - t0 > bound_ms)
            return -1;
        tu_sleep_ms(2);
    }
}

/* Waits until every listener of hosts h[0..n) has applied the invalidations
 * of the writes made so far: it writes a sentinel key and waits for each
 * listener's count to move (one connection delivers them in order). */
static void settle(host *h, int n)
{
    uint64_t before[8];
    for (int i = 0; i < n; i++) {
        shmc_tier_stats s;
        shmc_tier_stats_get(h[i].t, &s);
        before[i] = s.invalidations;
    }
    redisContext *rc = raw();
    raw_cmd(rc, "SET tt:__sync x");
    redisFree(rc);
    for (int i = 0; i < n; i++) {
        uint64_t t0 = tu_now_ms();
        shmc_tier_stats s;
        do {
            tu_sleep_ms(1);
            shmc_tier_stats_get(h[i].t, &s);
        } while (s.invalidations == before[i] && tu_now_ms() - t0 < 10000);
        assert_true(s.invalidations > before[i]);
    }
}

/* ---- tests ---- */

static void test_basic(void **state)
{
    (void)state;
    flushall();
    host h;
    host_open(&h, "tier-basic", 0);
    assert_int_equal(shmc_tier_wait_listener(h.t, 5000), SHMC_OK);
    shmc_status st;
    assert_true(tget_is(h.t, "a", NULL));
    assert_int_equal(TSET(h.t, "a", "1"), SHMC_OK);
    assert_true(tget_is(h.t, "a", "1"));   /* read-your-writes */
    settle(&h, 1);                         /* its own invalidation has come back */
    assert_true(tget_is(h.t, "a", "1"));
    shmc_tier_stats s0, s1;
    shmc_tier_stats_get(h.t, &s0);
    assert_true(tget_is(h.t, "a", "1"));
    shmc_tier_stats_get(h.t, &s1);
    assert_int_equal(s1.l1_hits, s0.l1_hits + 1);          /* from the host's cache */
    assert_int_equal(s1.redis_cmds, s0.redis_cmds);        /* no Redis command */
    assert_true(s1.listener_live && s1.listener_here && s1.listener_pid == (uint32_t)getpid());
    /* the stored copy is under the prefixed key, in Redis too */
    redisContext *rc = raw();
    redisReply *r = redisCommand(rc, "GET tt:a");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1");
    freeReplyObject(r);
    /* absent keys are cached too */
    settle(&h, 1);
    shmc_tier_stats_get(h.t, &s0);
    assert_true(tget_is(h.t, "none", NULL));
    assert_true(tget_is(h.t, "none", NULL));
    shmc_tier_stats_get(h.t, &s1);
    assert_int_equal(s1.l1_hits, s0.l1_hits + 1);
    /* add / delete / incr / touch */
    assert_int_equal(shmc_tier_add(h.t, "a", 1, "x", 1, 0), SHMC_EXISTS);
    assert_int_equal(shmc_tier_add(h.t, "b", 1, "x", 1, 0), SHMC_OK);
    assert_true(tget_is(h.t, "b", "x"));
    assert_int_equal(shmc_tier_delete(h.t, "b", 1), SHMC_OK);
    assert_int_equal(shmc_tier_delete(h.t, "b", 1), SHMC_NOT_FOUND);
    assert_true(tget_is(h.t, "b", NULL));
    int64_t x = 0;
    assert_int_equal(shmc_tier_incr(h.t, "n", 1, 5, 0, &x), SHMC_NOT_FOUND);
    assert_int_equal(shmc_tier_incr(h.t, "n", 1, 5, SHMC_TIER_INCR_CREATE, &x), SHMC_OK);
    assert_int_equal(x, 5);
    assert_true(tget_is(h.t, "n", "5"));
    assert_int_equal(shmc_tier_incr(h.t, "n", 1, -7, 0, &x), SHMC_OK);
    assert_int_equal(x, -2);
    assert_true(tget_is(h.t, "n", "-2"));
    assert_int_equal(shmc_tier_incr(h.t, "a", 1, 1, 0, &x), SHMC_OK); /* "1" is an integer */
    assert_int_equal(TSET(h.t, "s", "text"), SHMC_OK);
    assert_int_equal(shmc_tier_incr(h.t, "s", 1, 1, 0, &x), SHMC_ENOTNUM);
    assert_int_equal(shmc_tier_touch(h.t, "s", 1, 100000), SHMC_OK);
    r = redisCommand(rc, "PTTL tt:s");
    assert_true(r->integer > 90000 && r->integer <= 100000);
    freeReplyObject(r);
    assert_int_equal(shmc_tier_touch(h.t, "s", 1, 0), SHMC_OK);
    r = redisCommand(rc, "PTTL tt:s");
    assert_int_equal(r->integer, -1);
    freeReplyObject(r);
    assert_int_equal(shmc_tier_touch(h.t, "zz", 2, 10), SHMC_NOT_FOUND);
    /* TTL: the copy never outlives the Redis key */
    assert_int_equal(shmc_tier_set(h.t, "short", 5, "v", 1, 150), SHMC_OK);
    assert_true(tget_is(h.t, "short", "v"));
    tu_sleep_ms(300);
    assert_true(tget_is(h.t, "short", NULL));
    /* binary keys and values, an empty value */
    assert_int_equal(shmc_tier_set(h.t, "b\0in", 4, "\0\1\2", 3, 0), SHMC_OK);
    void *v = NULL;
    size_t n = 9;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(shmc_tier_get(h.t, "b\0in", 4, &v, &n), SHMC_OK);
        assert_int_equal(n, 3);
        assert_memory_equal(v, "\0\1\2", 3);
        free(v);
    }
    assert_int_equal(shmc_tier_set(h.t, "e", 1, "", 0, 0), SHMC_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(shmc_tier_get(h.t, "e", 1, &v, &n), SHMC_OK);
        assert_non_null(v);
        assert_int_equal(n, 0);
        free(v);
    }
    /* a Redis type error is an error, not a value */
    raw_cmd(rc, "LPUSH tt:list x");
    char *s = tget(h.t, "list", &st);
    free(s);
    assert_int_equal(st, SHMC_TIER_EREPLY);
    /* bad input */
    assert_int_equal(shmc_tier_get(h.t, "", 0, &v, &n), SHMC_EKEYLEN);
    char big[300];
    memset(big, 'k', sizeof big);
    assert_int_equal(shmc_tier_set(h.t, big, sizeof big, "v", 1, 0), SHMC_EKEYLEN);
    assert_int_equal(shmc_tier_get(NULL, "a", 1, &v, &n), SHMC_EINVAL);
    assert_int_equal(shmc_tier_incr(h.t, "n", 1, 1, 0x80, &x), SHMC_EINVAL);
    shmc_tier_options bad = topts(0);
    bad.lease_ms = 10;
    shmc_tier_t *bt = NULL;
    assert_int_equal(shmc_tier_open(h.c, &bad, &bt), SHMC_EINVAL);
    assert_null(bt);
    assert_string_equal(shmc_tier_strerror(SHMC_TIER_EREDIS),
                        "Redis unreachable, timed out, or the connection broke");
    /* clear: Redis and the host, only under the prefix */
    raw_cmd(rc, "SET other:x keep");
    assert_int_equal(shmc_tier_clear(h.t), SHMC_OK);
    assert_true(tget_is(h.t, "a", NULL));
    r = redisCommand(rc, "GET other:x");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    r = redisCommand(rc, "EXISTS tt:n");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(rc);
    host_close(&h);
}

static void test_invalidation_reaches_every_host(void **state)
{
    (void)state;
    flushall();
    host h[NHOSTS];
    hosts_open(h, NHOSTS, "tier-inv");
    assert_int_equal(TSET(h[0].t, "k", "v1"), SHMC_OK);
    settle(h, NHOSTS);
    for (int i = 0; i < NHOSTS; i++) {
        assert_true(tget_is(h[i].t, "k", "v1"));
        shmc_tier_stats s0, s1;
        shmc_tier_stats_get(h[i].t, &s0);
        assert_true(tget_is(h[i].t, "k", "v1"));
        shmc_tier_stats_get(h[i].t, &s1);
        assert_int_equal(s1.l1_hits, s0.l1_hits + 1); /* every host has its copy */
    }
    /* a write on host 0 reaches every host's copy */
    for (int round = 0; round < 20; round++) {
        char val[32];
        snprintf(val, sizeof val, "v-%d", round);
        int w = round % NHOSTS;
        assert_int_equal(TSET(h[w].t, "k", val), SHMC_OK);
        assert_true(tget_is(h[w].t, "k", val)); /* at once on the writer's host */
        for (int i = 0; i < NHOSTS; i++)
            assert_true(wait_value(h[i].t, "k", val, SLACK_MS) >= 0);
        /* once seen, never the old value again (re-read from the copy) */
        for (int i = 0; i < NHOSTS; i++)
            assert_true(tget_is(h[i].t, "k", val));
    }
    /* another Redis client's writes and deletes too */
    redisContext *rc = raw();
    raw_cmd(rc, "SET tt:k from-elsewhere");
    for (int i = 0; i < NHOSTS; i++)
        assert_true(wait_value(h[i].t, "k", "from-elsewhere", SLACK_MS) >= 0);
    raw_cmd(rc, "DEL tt:k");
    for (int i = 0; i < NHOSTS; i++)
        assert_true(wait_value(h[i].t, "k", NULL, SLACK_MS) >= 0);
    /* FLUSHALL: a null invalidation, every copy goes */
    assert_int_equal(TSET(h[0].t, "k", "again"), SHMC_OK);
    for (int i = 0; i < NHOSTS; i++)
        assert_true(wait_value(h[i].t, "k", "again", SLACK_MS) >= 0);
    raw_cmd(rc, "FLUSHALL");
    for (int i = 0; i < NHOSTS; i++)
        assert_true(wait_value(h[i].t, "k", NULL, SLACK_MS) >= 0);
    shmc_tier_stats s;
    shmc_tier_stats_get(h[1].t, &s);
    assert_true(s.invalidations > 0);
    redisFree(rc);
    for (int i = 0; i < NHOSTS; i++)
        host_close(&h[i]);
}

/* ---- workers in child processes ---- */

typedef struct shared {
    tu_report rep;
    volatile int stop;
    char cache[256];
    volatile int ready;
} shared;

static shared *g_sh;

/* A worker of host g_sh->cache: opens its tier (a listener candidate) and
 * serves reads until told to stop. */
static int idle_worker(void *arg)
{
    (void)arg;
    shmc_t *c;
    shmc_tier_t *t;
    int err = worker_attach(g_sh->cache, &c, &t);
    if (err)
        return err;
    __atomic_fetch_add(&g_sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!g_sh->stop) {
        void *v = NULL;
        size_t n;
        if (shmc_tier_get(t, "k", 1, &v, &n) == SHMC_OK)
            free(v);
        tu_sleep_ms(5);
    }
    shmc_tier_close(t);
    shmc_close(c);
    return 0;
}

static pid_t live_listener(host *h)
{
    shmc_tier_stats s;
    shmc_tier_stats_get(h->t, &s);
    return s.listener_live ? (pid_t)s.listener_pid : 0;
}

static void test_listener_killed_and_stopped(void **state)
{
    (void)state;
    flushall();
    g_sh = tu_shared_alloc(sizeof *g_sh);
    host h; /* the parent reads through a handle that never listens */
    host_open(&h, "tier-kill", SHMC_TIER_NO_LISTENER);
    memcpy(g_sh->cache, h.name, sizeof g_sh->cache);
    pid_t kids[3];
    for (int i = 0; i < 3; i++)
        assert_true((kids[i] = tu_fork(idle_worker, NULL)) > 0);
    assert_int_equal(shmc_tier_wait_listener(h.t, 5000), SHMC_OK);
    for (int i = 0; i < 200 && g_sh->ready < 3; i++)
        tu_sleep_ms(20);
    assert_int_equal(g_sh->ready, 3);
    redisContext *rc = raw();

    /* SIGKILL the listener: another worker takes over at once */
    for (int round = 0; round < 2; round++) {
        char v1[16], v2[16];
        snprintf(v1, sizeof v1, "old%d", round);
        snprintf(v2, sizeof v2, "new%d", round);
        raw_cmd(rc, "SET tt:k %s", v1);
        assert_true(wait_value(h.t, "k", v1, SLACK_MS) >= 0);
        pid_t l = live_listener(&h);
        int idx = -1;
        for (int i = 0; i < 3; i++)
            if (kids[i] == l)
                idx = i;
        assert_true(idx >= 0);
        kill(l, SIGKILL);
        assert_int_equal(tu_wait(l, 5000), TU_SIGNALLED + SIGKILL);
        raw_cmd(rc, "SET tt:k %s", v2); /* while the host may have no listener */
        uint64_t t0 = tu_now_ms();
        assert_true(wait_value(h.t, "k", v2, LEASE_MS + SLACK_MS) >= 0);
        /* and never the old value again */
        for (int i = 0; i < 50; i++) {
            assert_true(tget_is(h.t, "k", v2));
            tu_sleep_ms(2);
        }
        /* a new listener, another worker, within the lease (+ slack) */
        assert_int_equal(shmc_tier_wait_listener(h.t, LEASE_MS + SLACK_MS), SHMC_OK);
        pid_t nl = live_listener(&h);
        assert_true(nl > 0 && nl != l);
        assert_true(tu_now_ms() - t0 < LEASE_MS + SLACK_MS);
        /* its invalidations work */
        raw_cmd(rc, "SET tt:k %s-b", v2);
        char want[24];
        snprintf(want, sizeof want, "%s-b", v2);
        assert_true(wait_value(h.t, "k", want, SLACK_MS) >= 0);
        kids[idx] = tu_fork(idle_worker, NULL); /* replace the dead worker */
        assert_true(kids[idx] > 0);
    }

    /* SIGSTOP the listener: its heartbeat ends within the lease, reads go
     * to Redis, and another worker takes over; resumed, it stands down. */
    raw_cmd(rc, "SET tt:k s1");
    assert_true(wait_value(h.t, "k", "s1", SLACK_MS) >= 0);
    pid_t l = live_listener(&h);
    assert_true(l > 0);
    kill(l, SIGSTOP);
    assert_true(tu_wait_stopped(l, 5000));
    raw_cmd(rc, "SET tt:k s2");
    assert_true(wait_value(h.t, "k", "s2", LEASE_MS + SLACK_MS) >= 0);
    assert_int_equal(shmc_tier_wait_listener(h.t, LEASE_MS + SLACK_MS), SHMC_OK);
    pid_t nl = live_listener(&h);
    assert_true(nl > 0 && nl != l);
    kill(l, SIGCONT);
    tu_sleep_ms(LEASE_MS);
    /* the resumed one finds its lock taken and its heartbeat fenced: it
     * stands down (it may be elected again later like any worker, so on a
     * loaded machine the listener may have moved on: only one is live) */
    assert_true(live_listener(&h) > 0);
    raw_cmd(rc, "SET tt:k s3");
    assert_true(wait_value(h.t, "k", "s3", SLACK_MS) >= 0);

    g_sh->stop = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_wait(kids[i], 10000), 0);
    redisFree(rc);
    host_close(&h);
    tu_shared_free(g_sh, sizeof *g_sh);
}

static void test_redis_restart(void **state)
{
    (void)state;
    flushall();
    host h[2];
    hosts_open(h, 2, "tier-restart");
    assert_int_equal(TSET(h[0].t, "k", "before"), SHMC_OK);
    for (int i = 0; i < 2; i++) {
        assert_true(tget_is(h[i].t, "k", "before"));
        assert_true(tget_is(h[i].t, "k", "before")); /* cached */
    }
    /* a third host whose connection stays idle across the restart */
    host idle;
    host_open(&idle, "tier-restart-idle", SHMC_TIER_NO_LISTENER);
    assert_int_equal(TSET(idle.t, "j", "1"), SHMC_OK);
    redis_stop(); /* no persistence: the data is lost */
    /* the listeners notice; reads fail rather than serve the old copy */
    for (int i = 0; i < 2; i++) {
        uint64_t t0 = tu_now_ms();
        shmc_tier_stats s;
        do {
            shmc_tier_stats_get(h[i].t, &s);
            tu_sleep_ms(5);
        } while (s.listener_live && tu_now_ms() - t0 < LEASE_MS + SLACK_MS);
        assert_false(s.listener_live);
        shmc_status st;
        char *v = tget(h[i].t, "k", &st);
        free(v);
        assert_int_equal(st, SHMC_TIER_EREDIS);
        assert_int_equal(TSET(h[i].t, "k", "x"), SHMC_TIER_EREDIS);
    }
    assert_int_equal(redis_start(), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(shmc_tier_wait_listener(h[i].t, 5000 + SLACK_MS), SHMC_OK);
        assert_true(tget_is(h[i].t, "k", NULL)); /* what Redis has now */
    }
    assert_int_equal(TSET(h[1].t, "k", "after"), SHMC_OK);
    for (int i = 0; i < 2; i++)
        assert_true(wait_value(h[i].t, "k", "after", SLACK_MS) >= 0);
    /* its first write after the restart is not sent on the dead connection */
    assert_int_equal(TSET(idle.t, "j", "2"), SHMC_OK);
    assert_true(tget_is(idle.t, "j", "2"));
    host_close(&idle);
    for (int i = 0; i < 2; i++)
        host_close(&h[i]);
}

/* Concurrent writers on every host: each host ends with Redis's value. */
#define NKEYS 8
#define OPS 400

typedef struct cw_arg {
    int host, worker;
} cw_arg;

static char g_cnames[NHOSTS][256];

static int cw_worker(void *p)
{
    cw_arg *a = p;
    shmc_t *c;
    shmc_tier_t *t;
    int err = worker_attach(g_cnames[a->host], &c, &t);
    if (err)
        return err;
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)(a->host * 10 + a->worker + 1));
    int rc = 0;
    for (int i = 0; i < OPS; i++) {
        char k[16], v[32];
        snprintf(k, sizeof k, "c%u", tu_rng_below(&r, NKEYS));
        if (tu_rng_below(&r, 100) < 30) {
            snprintf(v, sizeof v, "h%dw%d-%d", a->host, a->worker, i);
            if (shmc_tier_set(t, k, strlen(k), v, strlen(v), 0) != SHMC_OK)
                rc = 4;
            /* read-your-writes on the host: this value or a later one of
             * another writer, never the one before */
            void *got = NULL;
            size_t n;
            if (shmc_tier_get(t, k, strlen(k), &got, &n) != SHMC_OK)
                rc = 5;
            free(got);
        } else {
            void *got = NULL;
            size_t n;
            shmc_status st = shmc_tier_get(t, k, strlen(k), &got, &n);
            if (st != SHMC_OK && st != SHMC_NOT_FOUND)
                rc = 6;
            free(got);
        }
    }
    shmc_tier_close(t);
    shmc_close(c);
    return rc;
}

static void test_concurrent_writers_converge(void **state)
{
    (void)state;
    flushall();
    host h[NHOSTS]; /* each host's cache and one listening handle */
    hosts_open(h, NHOSTS, "tier-conv");
    for (int i = 0; i < NHOSTS; i++)
        memcpy(g_cnames[i], h[i].name, sizeof g_cnames[i]);
    pid_t kids[NHOSTS * 2];
    cw_arg args[NHOSTS * 2];
    for (int i = 0; i < NHOSTS * 2; i++) {
        args[i].host = i / 2;
        args[i].worker = i % 2;
        kids[i] = tu_fork(cw_worker, &args[i]);
        assert_true(kids[i] > 0);
    }
    for (int i = 0; i < NHOSTS * 2; i++)
        assert_int_equal(tu_wait(kids[i], 120000), 0);
    /* every host converges to Redis's value of every key */
    redisContext *rc = raw();
    for (int k = 0; k < NKEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "c%d", k);
        redisReply *r = redisCommand(rc, "GET tt:%s", key);
        assert_non_null(r);
        const char *want = r->type == REDIS_REPLY_STRING ? r->str : NULL;
        for (int i = 0; i < NHOSTS; i++) {
            assert_true(wait_value(h[i].t, key, want, SLACK_MS) >= 0);
            assert_true(tget_is(h[i].t, key, want)); /* and stays */
        }
        freeReplyObject(r);
    }
    redisFree(rc);
    for (int i = 0; i < NHOSTS; i++)
        host_close(&h[i]);
}

/* The sidecar listener (shmc-tier-listen) is covered by the same election;
 * here: a handle that never listens sees no listener and reads Redis. */
static void test_no_listener_reads_redis(void **state)
{
    (void)state;
    flushall();
    host h;
    host_open(&h, "tier-nol", SHMC_TIER_NO_LISTENER);
    assert_int_equal(shmc_tier_wait_listener(h.t, 300), SHMC_ETIMEDOUT);
    assert_int_equal(TSET(h.t, "k", "v"), SHMC_OK);
    shmc_tier_stats s0, s1;
    shmc_tier_stats_get(h.t, &s0);
    assert_true(tget_is(h.t, "k", "v"));
    assert_true(tget_is(h.t, "k", "v"));
    shmc_tier_stats_get(h.t, &s1);
    assert_int_equal(s1.bypass, s0.bypass + 2); /* no copy without a listener */
    assert_int_equal(s1.l1_hits, s0.l1_hits);
    redisContext *rc = raw();
    raw_cmd(rc, "SET tt:k w");
    assert_true(tget_is(h.t, "k", "w"));
    redisFree(rc);
    host_close(&h);
}

/* Cluster-wide singleflight: one computation in the whole cluster. */
typedef struct sf_shared {
    volatile int calls;
    volatile int stuck_pid;
    volatile int start;
    char cache[NHOSTS][256];
} sf_shared;

static sf_shared *g_sf;

static int32_t sf_compute(void *ctx, const void *key, size_t klen, shmc_fill_out *out)
{
    (void)key;
    (void)klen;
    int mode = *(int *)ctx;
    int n = __atomic_fetch_add(&g_sf->calls, 1, __ATOMIC_SEQ_CST);
    if (mode == 1 && n == 0) { /* the first one hangs and is SIGKILLed */
        g_sf->stuck_pid = getpid();
        for (;;)
            pause();
    }
    if (mode == 2) {
        snprintf(out->message, sizeof out->message, "no value");
        return 42;
    }
    tu_sleep_ms(200); /* long enough for every other caller to be waiting */
    out->val = strdup("computed");
    out->vlen = 8;
    return 0;
}

static int sf_worker(void *arg)
{
    int idx = *(int *)arg;
    int mode = idx >> 8;
    int hostn = (idx & 0xff) / 2;
    shmc_t *c;
    shmc_tier_t *t;
    int err = worker_attach(g_sf->cache[hostn], &c, &t);
    if (err)
        return err;
    while (!g_sf->start)
        tu_sleep_ms(1);
    shmc_tier_fill_opts fo = {.ttl_ms = 0, .fill_ms = 500, .wait_ms = 20000};
    void *v = NULL;
    size_t n = 0;
    shmc_status st = shmc_tier_get_or_fill(t, mode ? "sf2" : "sf", mode ? 3 : 2, sf_compute,
                                           &mode, &fo, &v, &n, NULL);
    int rc = 0;
    if (st != SHMC_OK || n != 8 || memcmp(v, "computed", 8) != 0)
        rc = 3;
    free(v);
    shmc_tier_close(t);
    shmc_close(c);
    return rc;
}

static void test_cluster_singleflight(void **state)
{
    (void)state;
    flushall();
    g_sf = tu_shared_alloc(sizeof *g_sf);
    host h[NHOSTS];
    hosts_open(h, NHOSTS, "tier-sf");
    for (int i = 0; i < NHOSTS; i++)
        memcpy(g_sf->cache[i], h[i].name, sizeof g_sf->cache[i]);
    for (int mode = 0; mode < 2; mode++) {
        g_sf->calls = 0;
        g_sf->stuck_pid = 0;
        g_sf->start = 0;
        pid_t kids[NHOSTS * 2];
        int args[NHOSTS * 2];
        for (int i = 0; i < NHOSTS * 2; i++) {
            args[i] = (mode << 8) | i;
            assert_true((kids[i] = tu_fork(sf_worker, &args[i])) > 0);
        }
        g_sf->start = 1;
        if (mode == 1) {
            /* the first computer hangs: SIGKILL it; another, on any host,
             * computes once its lock's lease (500 ms) ends */
            for (int i = 0; i < 5000 && !g_sf->stuck_pid; i++)
                tu_sleep_ms(2);
            pid_t stuck = g_sf->stuck_pid;
            assert_true(stuck > 0);
            kill(stuck, SIGKILL);
            for (int i = 0; i < NHOSTS * 2; i++) {
                int want = kids[i] == stuck ? TU_SIGNALLED + SIGKILL : 0;
                assert_int_equal(tu_wait(kids[i], 60000), want);
            }
            assert_int_equal(g_sf->calls, 2);
        } else {
            for (int i = 0; i < NHOSTS * 2; i++)
                assert_int_equal(tu_wait(kids[i], 60000), 0);
            assert_int_equal(g_sf->calls, 1); /* one computation for 3 hosts x 2 workers */
        }
    }
    /* an error of fn: returned to its caller, nothing stored, lock released */
    int mode = 2;
    void *v = NULL;
    size_t n;
    shmc_fill f;
    memset(&f, 0, sizeof f);
    shmc_tier_fill_opts fo = {.fill_ms = 60000};
    assert_int_equal(shmc_tier_get_or_fill(h[0].t, "sf3", 3, sf_compute, &mode, &fo, &v, &n, &f),
                     SHMC_EFILL);
    assert_int_equal(f.error, 42);
    assert_string_equal(f.message, "no value");
    mode = 0;
    assert_int_equal(shmc_tier_get_or_fill(h[1].t, "sf3", 3, sf_compute, &mode, &fo, &v, &n, &f),
                     SHMC_OK); /* at once: the lock was released */
    free(v);
    assert_true(tget_is(h[2].t, "sf3", "computed"));
    assert_int_equal(shmc_tier_get_or_fill(h[0].t, "sf3", 3, NULL, NULL, &fo, &v, &n, &f),
                     SHMC_EINVAL);
    for (int i = 0; i < NHOSTS; i++)
        host_close(&h[i]);
    tu_shared_free(g_sf, sizeof *g_sf);
}

/* The sidecar: shmc-tier-listen takes part in the same election. */
static void test_sidecar(void **state)
{
    (void)state;
    const char *bin = getenv("SHMC_TIER_LISTEN");
    assert_non_null(bin);
    flushall();
    host h;
    host_open(&h, "tier-side", SHMC_TIER_NO_LISTENER);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(bin, bin, h.name, g_sock, g_prefix, "600", (char *)NULL);
        _exit(127);
    }
    assert_int_equal(shmc_tier_wait_listener(h.t, 5000), SHMC_OK);
    assert_int_equal(live_listener(&h), pid);
    assert_int_equal(TSET(h.t, "k", "v1"), SHMC_OK);
    assert_true(tget_is(h.t, "k", "v1"));
    redisContext *rc = raw();
    raw_cmd(rc, "SET tt:k v2");
    assert_true(wait_value(h.t, "k", "v2", SLACK_MS) >= 0);
    redisFree(rc);
    kill(pid, SIGTERM);
    assert_int_equal(tu_wait(pid, 10000), 0);
    shmc_tier_stats s;
    shmc_tier_stats_get(h.t, &s);
    assert_false(s.listener_live); /* it stood down on its way out */
    /* bad arguments */
    pid = fork();
    if (pid == 0) {
        execl(bin, bin, h.name, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(tu_wait(pid, 10000), 2);
    host_close(&h);
}

int main(void)
{
    g_server = getenv("SHMC_REDIS_SERVER");
    const char *ci = getenv("CI");
    if (!g_server || !*g_server || access(g_server, X_OK) != 0) {
        if (ci && strcmp(ci, "true") == 0) {
            fprintf(stderr, "tier: redis-server not found, and CI=true: failing\n");
            return 1;
        }
        printf("tier: redis-server not found (Debian: apt-get install redis-server): skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_no_listener_reads_redis),
        cmocka_unit_test(test_invalidation_reaches_every_host),
        cmocka_unit_test(test_listener_killed_and_stopped),
        cmocka_unit_test(test_redis_restart),
        cmocka_unit_test(test_concurrent_writers_converge),
        cmocka_unit_test(test_cluster_singleflight),
        cmocka_unit_test(test_sidecar),
    };
    return cmocka_run_group_tests_name("shmcache tier (Redis)", tests, group_setup,
                                       group_teardown);
}
