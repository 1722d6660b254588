/*
 * tier.c — shmcache as the per-host L1 in front of Redis (shmcache_tier.h).
 *
 * Built only on the public API of shmcache.h and on hiredis (0.14: RESP2).
 * See shmcache_tier.h for the model and docs/design.md ("The Redis tier")
 * for the protocol; the essentials:
 *
 *   heartbeat record  "\0shmc-tier\0<prefix>\0hb" -> struct hb (epoch, live,
 *                     deadline, listener token), changed only by CAS;
 *   key generation    "\0shmc-tier\0<prefix>\0g<16 hex>" -> 8-byte counter per
 *                     key (named by a 64-bit hash of it), incremented by every
 *                     invalidation of the key;
 *   copy of a key     "<prefix><key>" -> struct rec_hdr + value bytes; valid
 *                     only while its (epoch, generation) equal the current ones.
 */
#include "shmcache_tier.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/random.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TIER_NS "\0shmc-tier\0"
#define TIER_NS_LEN 11u
#define REC_MAGIC 0x53544931u /* "STI1" */
#define REC_FLAGS 0x7431u     /* shmcache flags of a tier copy */
#define HB_MAGIC 0x53544842454154ull
#define KIND_VALUE 1u
#define KIND_ABSENT 2u
#define TICK_MS 100

struct rec_hdr {
    uint64_t epoch, gen;
    uint32_t kind, magic;
};

struct hb {
    uint64_t magic;
    uint64_t epoch;
    uint64_t deadline_ms; /* CLOCK_MONOTONIC ms (shared by the host's processes) */
    uint64_t token;       /* the listener's lock token (fencing) */
    uint32_t pid;
    uint32_t live;
};

struct shmc_tier {
    shmc_t *c;
    char *unix_path, *host, *password;
    int port, db;
    uint8_t *prefix;
    size_t plen;
    uint64_t max_stale_ms, lease_ms, timeout_ms, fill_wait_ms;
    uint32_t flags;
    uint32_t max_key, max_value;
    /* internal keys */
    uint8_t *lockname, *hbkey, *genkey; /* genkey: last 16 bytes = key hash (hex) */
    size_t locklen, hbklen, genklen;
    /* this process's Redis connection */
    pthread_mutex_t mu;
    redisContext *rc;
    pid_t pid;             /* process that owns rc, mu and the thread */
    unsigned owner_gen;    /* g_fork_gen of that process */
    unsigned started_gen;  /* g_fork_gen of the process whose first call started the
                            * listener (0: none yet) */
    pthread_mutex_t start_mu;
    pthread_t th;
    int th_running;
    volatile int stop;
    /* listener state (this process) */
    uint32_t listening;
    /* counters */
    uint64_t n_gets, n_hits, n_waits, n_fills, n_bypass, n_cmds, n_errors, n_inval, n_epochs;
};

static void count(uint64_t *p, uint64_t n) { __atomic_fetch_add(p, n, __ATOMIC_RELAXED); }

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void) { return mono_ns() / 1000000ull; }

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static struct timeval tv_of(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

const char *shmc_tier_strerror(shmc_status st)
{
    if (st == SHMC_TIER_EREDIS)
        return "Redis unreachable, timed out, or the connection broke";
    if (st == SHMC_TIER_EREPLY)
        return "Redis answered with an error or an unexpected reply";
    return shmc_strerror(st);
}

/* ---- keys ---------------------------------------------------------------- */

/* 64-bit FNV-1a of the full key: names the key's generation counter (two
 * keys that collide only share invalidations, which is safe). */
static uint64_t bucket_of(const uint8_t *k, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

/* Internal key: TIER_NS + prefix + "\0" + suffix. */
static uint8_t *ikey(const struct shmc_tier *t, const char *suffix, size_t *len)
{
    size_t sl = strlen(suffix);
    size_t n = TIER_NS_LEN + t->plen + 1 + sl;
    uint8_t *k = malloc(n);
    if (!k)
        return NULL;
    memcpy(k, TIER_NS, TIER_NS_LEN);
    if (t->plen)
        memcpy(k + TIER_NS_LEN, t->prefix, t->plen);
    k[TIER_NS_LEN + t->plen] = 0;
    memcpy(k + TIER_NS_LEN + t->plen + 1, suffix, sl);
    *len = n;
    return k;
}

/* <prefix><key> into buf (SHMC_MAX_KEY_LIMIT bytes). */
static shmc_status full_key(const shmc_tier_t *t, const void *key, size_t klen, uint8_t *buf,
                            size_t *out)
{
    if (!key && klen)
        return SHMC_EINVAL;
    if (klen == 0 || t->plen + klen > t->max_key)
        return SHMC_EKEYLEN;
    if (t->plen)
        memcpy(buf, t->prefix, t->plen);
    memcpy(buf + t->plen, key, klen);
    *out = t->plen + klen;
    return SHMC_OK;
}

/* ---- host records: heartbeat and generations ----------------------------- */

static int hb_read(shmc_tier_t *t, struct hb *h)
{
    size_t n = 0;
    shmc_status st = shmc_get(t->c, t->hbkey, t->hbklen, h, sizeof *h, &n, NULL);
    if (st != SHMC_OK || n != sizeof *h || h->magic != HB_MAGIC)
        return -1;
    return 0;
}

static int hb_live(const struct hb *h) { return h->live && mono_ms() < h->deadline_ms; }

enum hb_op { OP_BUMP, OP_DOWN, OP_UP, OP_BEAT };

/* Read-modify-CAS of the heartbeat record.  token: the caller's listener
 * token (0: not a listener, OP_BUMP only).  Returns 0, -1 when fenced (a
 * newer listener owns the record), -2 when the cache refused the write. */
static int hb_update(shmc_tier_t *t, uint64_t token, enum hb_op op, struct hb *out)
{
    for (int i = 0; i < 1000; i++) {
        struct hb old, nw;
        int have = hb_read(t, &old) == 0;
        if (!have)
            memset(&old, 0, sizeof old);
        if (token && old.token > token)
            return -1;
        if (op == OP_BEAT && (!have || old.token != token || !old.live))
            return -1;
        nw = old;
        nw.magic = HB_MAGIC;
        if (op != OP_BEAT) {
            /* a new epoch never repeats an old one, even when the record was
             * evicted and is made anew */
            uint64_t e = mono_ns();
            nw.epoch = e > old.epoch ? e : old.epoch + 1;
        }
        if (op == OP_DOWN) {
            nw.live = 0;
            nw.deadline_ms = 0;
        }
        if (token && op != OP_BUMP) {
            nw.token = token;
            nw.pid = (uint32_t)getpid();
        }
        if (op == OP_UP || op == OP_BEAT) {
            nw.live = 1;
            nw.deadline_ms = mono_ms() + t->lease_ms;
        }
        shmc_status st = shmc_cas_value(t->c, t->hbkey, t->hbklen, have ? &old : NULL,
                                        have ? sizeof old : 0, &nw, sizeof nw, 0, 0, NULL, 0,
                                        NULL);
        if (st == SHMC_OK) {
            if (out)
                *out = nw;
            return 0;
        }
        if (st != SHMC_STALE && st != SHMC_EXISTS && st != SHMC_NOT_FOUND)
            return -2;
    }
    return -2;
}

static uint8_t *genkey_for(shmc_tier_t *t, uint64_t b, uint8_t *buf)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(buf, t->genkey, t->genklen);
    for (int i = 0; i < 16; i++)
        buf[t->genklen - 1 - i] = (uint8_t)hex[(b >> (4 * i)) & 15];
    return buf;
}

/* The generation of key hash b; a missing counter is made with the current
 * time in ns, greater than any value it had before (it counts by one). */
static int gen_read(shmc_tier_t *t, uint64_t b, uint64_t *g)
{
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    genkey_for(t, b, k);
    uint8_t v[8];
    size_t n = 0;
    shmc_status st = shmc_get(t->c, k, t->genklen, v, sizeof v, &n, NULL);
    if (st == SHMC_OK && n == 8) {
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = (x << 8) | v[i];
        *g = x;
        return 0;
    }
    st = shmc_incr(t->c, k, t->genklen, 0, mono_ns(), 0, SHMC_INCR_CREATE | SHMC_INCR_BINARY,
                   g);
    return st == SHMC_OK ? 0 : -1;
}

/* Invalidates the host's copy of full key k: generation first (no reader
 * uses a copy of the old generation from then on), then the copy itself. */
static void invalidate_local(shmc_tier_t *t, const uint8_t *k, size_t n)
{
    uint8_t gk[SHMC_MAX_KEY_LIMIT];
    uint64_t r;
    genkey_for(t, bucket_of(k, n), gk);
    shmc_status st = shmc_incr(t->c, gk, t->genklen, 1, mono_ns(), 0,
                               SHMC_INCR_CREATE | SHMC_INCR_BINARY, &r);
    if (st != SHMC_OK)
        (void)hb_update(t, 0, OP_BUMP, NULL); /* invalidates every copy */
    (void)shmc_delete(t->c, k, n);
}

struct flush_ctx {
    shmc_tier_t *t;
    uint8_t *keys;
    size_t len, cap;
    int err;
};

static int flush_cb(void *ctx, const shmc_key_info *ki)
{
    struct flush_ctx *f = ctx;
    const shmc_tier_t *t = f->t;
    if (ki->klen < t->plen || (t->plen && memcmp(ki->key, t->prefix, t->plen) != 0))
        return 0;
    if (ki->klen >= TIER_NS_LEN && memcmp(ki->key, TIER_NS, TIER_NS_LEN) == 0)
        return 0;
    size_t need = f->len + sizeof(uint32_t) + ki->klen;
    if (need > f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 65536;
        while (nc < need)
            nc *= 2;
        uint8_t *p = realloc(f->keys, nc);
        if (!p) {
            f->err = 1;
            return 1;
        }
        f->keys = p;
        f->cap = nc;
    }
    uint32_t kl = (uint32_t)ki->klen;
    memcpy(f->keys + f->len, &kl, sizeof kl);
    memcpy(f->keys + f->len + sizeof kl, ki->key, ki->klen);
    f->len = need;
    return 0;
}

/* Deletes the prefix's copies from the host's cache (not the internal
 * records).  The caller has bumped the epoch already: this frees memory. */
static shmc_status flush_prefix(shmc_tier_t *t)
{
    struct flush_ctx f = {t, NULL, 0, 0, 0};
    uint64_t cur = 0;
    shmc_status st = shmc_keys_iter(t->c, &cur, flush_cb, &f);
    if (st == SHMC_OK && f.err)
        st = SHMC_ESYS;
    for (size_t off = 0; off < f.len;) {
        uint32_t kl;
        memcpy(&kl, f.keys + off, sizeof kl);
        (void)shmc_delete(t->c, f.keys + off + sizeof kl, kl);
        off += sizeof kl + kl;
    }
    free(f.keys);
    return st;
}

/* ---- Redis connections ---------------------------------------------------- */

/* Sends one command whose only good answer is a status reply (+OK). */
static int command_ok(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    return ok;
}

static redisContext *redis_connect(shmc_tier_t *t)
{
    struct timeval tv = tv_of(t->timeout_ms);
    redisContext *rc = t->unix_path ? redisConnectUnixWithTimeout(t->unix_path, tv)
                                    : redisConnectWithTimeout(t->host, t->port, tv);
    if (!rc)
        return NULL;
    if (rc->err || redisSetTimeout(rc, tv) != REDIS_OK) {
        redisFree(rc);
        return NULL;
    }
    if ((t->password && !command_ok(rc, "AUTH %s", t->password)) ||
        (t->db && !command_ok(rc, "SELECT %d", t->db))) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}

static void tier_start_listener(shmc_tier_t *t);

/* Incremented in every child of a fork(): tells a handle that it was
 * inherited, without a getpid() system call on every operation. */
static unsigned g_fork_gen = 1;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

/* Listener threads hold g_busy (shared) while they work, and let it go
 * around their waits (lock, poll, sleep); fork() takes it exclusively, so a
 * child never inherits a listener's half-done malloc or hiredis call (some
 * allocators, e.g. ASan's, are not fork-safe with other threads inside). */
static pthread_rwlock_t g_busy;

static void busy_enter(void) { pthread_rwlock_rdlock(&g_busy); }
static void busy_leave(void) { pthread_rwlock_unlock(&g_busy); }

static void on_fork_prepare(void) { pthread_rwlock_wrlock(&g_busy); }
static void on_fork_parent(void) { pthread_rwlock_unlock(&g_busy); }

static void busy_init(void)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* a waiting fork() goes before new shared holders: never starved */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&g_busy, &a);
    pthread_rwlockattr_destroy(&a);
}

static void on_fork_child(void)
{
    /* the child's only thread has another TID than the parent's locker:
     * unlocking would be taken for a reader's unlock; start afresh */
    memset(&g_busy, 0, sizeof g_busy);
    busy_init();
    __atomic_fetch_add(&g_fork_gen, 1, __ATOMIC_RELAXED);
}

static void register_atfork(void)
{
    busy_init();
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

static unsigned fork_gen(void) { return __atomic_load_n(&g_fork_gen, __ATOMIC_RELAXED); }

/* Every call starts here: after fork() the child drops the parent's
 * connection (never sends on it) and takes part in the listener election. */
static void tier_enter(shmc_tier_t *t)
{
    unsigned gen = fork_gen();
    if (__atomic_load_n(&t->started_gen, __ATOMIC_ACQUIRE) == gen)
        return;
    pthread_mutex_lock(&t->start_mu);
    if (t->started_gen != gen) {
        if (t->owner_gen != gen) {
            /* a child: the parent's connection and thread are not ours */
            pthread_mutex_init(&t->mu, NULL);
            if (t->rc)
                redisFree(t->rc); /* closes this process's copy of the fd only */
            t->rc = NULL;
            t->th_running = 0;
            t->listening = 0;
            t->stop = 0;
            t->pid = getpid();
            t->owner_gen = gen;
        }
        tier_start_listener(t);
        __atomic_store_n(&t->started_gen, gen, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&t->start_mu);
}

/* Runs argc commands pipelined on this process's connection, one reply
 * each in r[].  Returns SHMC_OK (replies set; the caller frees them) or
 * SHMC_TIER_EREDIS (no replies).  Caller holds t->mu. */
static shmc_status redis_pipe(shmc_tier_t *t, int ncmd, const int *argc, const char ***argv,
                              const size_t **argvlen, redisReply **r, int idempotent)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = 0;
        if (t->rc && !t->rc->err) {
            /* an idle connection with something to read was closed by the
             * server (restart, idle timeout) or is out of step: never send
             * on it */
            struct pollfd p = {t->rc->fd, POLLIN, 0};
            if (poll(&p, 1, 0) != 0)
                t->rc->err = REDIS_ERR_EOF;
        }
        if (t->rc && t->rc->err) {
            redisFree(t->rc);
            t->rc = NULL;
        }
        if (!t->rc) {
            t->rc = redis_connect(t);
            fresh = 1;
            if (!t->rc) {
                count(&t->n_errors, 1);
                return SHMC_TIER_EREDIS;
            }
        }
        for (int i = 0; i < ncmd; i++)
            redisAppendCommandArgv(t->rc, argc[i], argv[i], argvlen[i]);
        count(&t->n_cmds, (uint64_t)ncmd);
        int got = 0;
        for (; got < ncmd; got++) {
            void *rep = NULL;
            if (redisGetReply(t->rc, &rep) != REDIS_OK || !rep)
                break;
            r[got] = rep;
        }
        if (got == ncmd)
            return SHMC_OK;
        for (int i = 0; i < got; i++)
            freeReplyObject(r[i]);
        count(&t->n_errors, 1);
        redisFree(t->rc);
        t->rc = NULL;
        /* reads are retried once on a new connection; a write may have been
         * applied before the connection broke: its caller gets the error */
        if (fresh || !idempotent)
            break;
    }
    return SHMC_TIER_EREDIS;
}

/* hiredis writes with write(2): a peer that closed would raise SIGPIPE.  The
 * library does not touch the process's signal dispositions; it blocks
 * SIGPIPE in the calling thread around its writes and consumes one that
 * was raised meanwhile. */
typedef struct pipe_guard {
    sigset_t old;
    int pending_before;
} pipe_guard;

static void pipe_block(pipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigpending(&pend);
    g->pending_before = sigismember(&pend, SIGPIPE) == 1;
}

static void pipe_unblock(pipe_guard *g)
{
    if (!g->pending_before) {
        sigset_t set, pend;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigpending(&pend);
        if (sigismember(&pend, SIGPIPE) == 1) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
            }
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static shmc_status redis_one(shmc_tier_t *t, int argc, const char **argv, const size_t *argvlen,
                             redisReply **r, int idempotent)
{
    pipe_guard g;
    pipe_block(&g);
    pthread_mutex_lock(&t->mu);
    shmc_status st = redis_pipe(t, 1, &argc, &argv, &argvlen, r, idempotent);
    pthread_mutex_unlock(&t->mu);
    pipe_unblock(&g);
    return st;
}

/* GET and PTTL in one round trip.  *val NULL: absent.  *pttl_ms: remaining
 * TTL, 0 = none. */
static shmc_status redis_get_pttl(shmc_tier_t *t, const uint8_t *k, size_t n, redisReply **val,
                                  uint64_t *pttl_ms)
{
    const char *a1[2] = {"GET", (const char *)k}, *a2[2] = {"PTTL", (const char *)k};
    size_t l1[2] = {3, n}, l2[2] = {4, n};
    int argc[2] = {2, 2};
    const char **argv[2] = {a1, a2};
    const size_t *argvlen[2] = {l1, l2};
    redisReply *r[2] = {NULL, NULL};
    pipe_guard g;
    pipe_block(&g);
    pthread_mutex_lock(&t->mu);
    shmc_status st = redis_pipe(t, 2, argc, argv, argvlen, r, 1);
    pthread_mutex_unlock(&t->mu);
    pipe_unblock(&g);
    if (st != SHMC_OK)
        return st;
    *val = NULL;
    if (r[0]->type == REDIS_REPLY_STRING) {
        *val = r[0];
        r[0] = NULL;
    } else if (r[0]->type != REDIS_REPLY_NIL) {
        st = SHMC_TIER_EREPLY;
    }
    *pttl_ms = 0;
    if (r[1]->type == REDIS_REPLY_INTEGER && r[1]->integer > 0)
        *pttl_ms = (uint64_t)r[1]->integer;
    else if (r[1]->type == REDIS_REPLY_INTEGER && r[1]->integer == -2 && *val)
        *pttl_ms = 1; /* expired between the two commands */
    if (r[0])
        freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    if (st != SHMC_OK && *val) {
        freeReplyObject(*val);
        *val = NULL;
    }
    return st;
}

/* ---- open / close ------------------------------------------------------------ */

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

shmc_status shmc_tier_open(shmc_t *c, const shmc_tier_options *o, shmc_tier_t **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return SHMC_EINVAL;
    shmc_tier_options def;
    memset(&def, 0, sizeof def);
    if (!o)
        o = &def;
    if (o->reserved_ || (o->flags & ~SHMC_TIER_NO_LISTENER) || (!o->prefix && o->prefix_len) ||
        (o->lease_ms && o->lease_ms < 300) || o->redis_port < 0 || o->redis_port > 65535 ||
        o->redis_db < 0)
        return SHMC_EINVAL;
    shmc_info info;
    shmc_status st = shmc_info_get(c, &info);
    if (st != SHMC_OK)
        return st;
    if (o->prefix_len + TIER_NS_LEN + 18 > info.max_key || o->prefix_len + 1 > info.max_key)
        return SHMC_EKEYLEN;
    shmc_tier_t *t = calloc(1, sizeof *t);
    if (!t)
        return SHMC_ESYS;
    t->c = c;
    t->unix_path = dupstr(o->redis_unix);
    t->host = dupstr(o->redis_host ? o->redis_host : "127.0.0.1");
    t->password = dupstr(o->redis_password);
    t->port = o->redis_port ? o->redis_port : 6379;
    t->db = o->redis_db;
    t->plen = o->prefix_len;
    t->prefix = malloc(t->plen + 1);
    t->max_stale_ms = o->max_stale_ms ? o->max_stale_ms : 60000;
    t->lease_ms = o->lease_ms ? o->lease_ms : 2000;
    t->timeout_ms = o->timeout_ms ? o->timeout_ms : 1000;
    t->fill_wait_ms = o->fill_wait_ms ? o->fill_wait_ms : t->timeout_ms + 1000;
    t->flags = o->flags;
    t->max_key = info.max_key;
    t->max_value = info.max_value;
    if (t->prefix && t->plen)
        memcpy(t->prefix, o->prefix, t->plen);
    t->hbkey = ikey(t, "hb", &t->hbklen);
    t->genkey = ikey(t, "g0123456789abcdef", &t->genklen);
    /* lock names are their own namespace: "shmc-tier:" + prefix */
    t->locklen = 10 + t->plen;
    t->lockname = malloc(t->locklen);
    if (t->lockname) {
        memcpy(t->lockname, "shmc-tier:", 10);
        if (t->plen)
            memcpy(t->lockname + 10, t->prefix, t->plen);
    }
    if (!t->host || (o->redis_unix && !t->unix_path) || (o->redis_password && !t->password) ||
        !t->prefix || !t->hbkey || !t->genkey || !t->lockname) {
        shmc_tier_close(t);
        return SHMC_ESYS;
    }
    if (t->locklen > info.max_key) {
        shmc_tier_close(t);
        return SHMC_EKEYLEN;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->start_mu, NULL);
    pthread_once(&g_atfork_once, register_atfork);
    t->pid = getpid();
    t->owner_gen = fork_gen();
    *out = t;
    return SHMC_OK;
}

static void *listener_main(void *arg)
{
    shmc_tier_t *t = arg;
    (void)shmc_tier_listen(t, &t->stop);
    shmc_thread_detach(t->c);
    return NULL;
}

static void tier_start_listener(shmc_tier_t *t)
{
    if (t->flags & SHMC_TIER_NO_LISTENER || t->th_running)
        return;
    t->stop = 0;
    if (pthread_create(&t->th, NULL, listener_main, t) == 0)
        t->th_running = 1;
}

shmc_status shmc_tier_close(shmc_tier_t *t)
{
    if (!t)
        return SHMC_OK;
    if (t->th_running && t->owner_gen == fork_gen()) {
        __atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
        pthread_join(t->th, NULL);
    }
    if (t->rc)
        redisFree(t->rc);
    free(t->unix_path);
    free(t->host);
    free(t->password);
    free(t->prefix);
    free(t->hbkey);
    free(t->genkey);
    free(t->lockname);
    free(t);
    return SHMC_OK;
}

/* ---- reads ---------------------------------------------------------------- */

/* Direct read from Redis: no copy stored. */
static shmc_status bypass_get(shmc_tier_t *t, const uint8_t *k, size_t n, void **val,
                              size_t *vlen)
{
    count(&t->n_bypass, 1);
    const char *argv[2] = {"GET", (const char *)k};
    size_t argvlen[2] = {3, n};
    redisReply *r = NULL;
    shmc_status st = redis_one(t, 2, argv, argvlen, &r, 1);
    if (st != SHMC_OK)
        return st;
    if (r->type == REDIS_REPLY_NIL) {
        st = SHMC_NOT_FOUND;
    } else if (r->type == REDIS_REPLY_STRING) {
        *val = malloc(r->len ? r->len : 1);
        if (!*val) {
            st = SHMC_ESYS;
        } else {
            memcpy(*val, r->str, r->len);
            *vlen = r->len;
        }
    } else {
        st = SHMC_TIER_EREPLY;
    }
    freeReplyObject(r);
    return st;
}

/* A copy (rec_hdr + value) read from the cache: if its tags are current,
 * turns buf into the value (moved to its start) and returns SHMC_OK or
 * SHMC_NOT_FOUND; -1 when it is not current. */
static int use_copy(void *buf, size_t len, uint64_t epoch, uint64_t gen, size_t *vlen)
{
    struct rec_hdr h;
    if (len < sizeof h)
        return -1;
    memcpy(&h, buf, sizeof h);
    if (h.magic != REC_MAGIC || h.epoch != epoch || h.gen != gen)
        return -1;
    if (h.kind == KIND_ABSENT)
        return SHMC_NOT_FOUND;
    if (h.kind != KIND_VALUE)
        return -1;
    memmove(buf, (uint8_t *)buf + sizeof h, len - sizeof h);
    *vlen = len - sizeof h;
    return SHMC_OK;
}

/* Current (epoch, generation) for full key k; -1: no live listener. */
static int snapshot(shmc_tier_t *t, const uint8_t *k, size_t n, uint64_t *epoch, uint64_t *gen)
{
    struct hb h;
    if (hb_read(t, &h) != 0 || !hb_live(&h))
        return -1;
    if (gen_read(t, bucket_of(k, n), gen) != 0)
        return -1;
    *epoch = h.epoch;
    return 0;
}

shmc_status shmc_tier_get(shmc_tier_t *t, const void *key, size_t klen, void **val,
                          size_t *vlen)
{
    if (!t || !val || !vlen)
        return SHMC_EINVAL;
    *val = NULL;
    *vlen = 0;
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    size_t n;
    shmc_status st = full_key(t, key, klen, k, &n);
    if (st != SHMC_OK)
        return st;
    tier_enter(t);
    count(&t->n_gets, 1);
    uint64_t epoch, gen;
    if (snapshot(t, k, n, &epoch, &gen) != 0)
        return bypass_get(t, k, n, val, vlen);
    void *buf = NULL;
    size_t len = 0;
    uint32_t fl = 0;
    if (shmc_get_alloc(t->c, k, n, &buf, &len, &fl) == SHMC_OK) {
        int u = fl == REC_FLAGS ? use_copy(buf, len, epoch, gen, vlen) : -1;
        if (u == SHMC_OK) {
            count(&t->n_hits, 1);
            *val = buf;
            return SHMC_OK;
        }
        free(buf);
        if (u == SHMC_NOT_FOUND) {
            count(&t->n_hits, 1);
            return SHMC_NOT_FOUND;
        }
        /* not current: drop it so that the fill below leads */
        (void)shmc_delete(t->c, k, n);
    }
    shmc_fill_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.wait_ms = t->fill_wait_ms;
    fo.fill_ms = t->timeout_ms * 2 + 100;
    shmc_fill f;
    memset(&f, 0, sizeof f);
    buf = NULL;
    st = shmc_fill_begin(t->c, k, n, &fo, &buf, &len, &fl, &f);
    if (st == SHMC_OK) {
        /* another worker's fill (or a copy stored meanwhile) */
        int u = -1;
        if (snapshot(t, k, n, &epoch, &gen) == 0 && fl == REC_FLAGS)
            u = use_copy(buf, len, epoch, gen, vlen);
        if (u == SHMC_OK || u == SHMC_NOT_FOUND) {
            count(&t->n_waits, 1);
            if (u == SHMC_OK) {
                *val = buf;
                return SHMC_OK;
            }
            free(buf);
            return SHMC_NOT_FOUND;
        }
        free(buf);
        return bypass_get(t, k, n, val, vlen);
    }
    if (st != SHMC_LEADER)
        return bypass_get(t, k, n, val, vlen);
    /* the leader: tags first, then Redis */
    if (snapshot(t, k, n, &epoch, &gen) != 0) {
        (void)shmc_fill_abort(t->c, &f, 1, "no live listener", 0);
        return bypass_get(t, k, n, val, vlen);
    }
    redisReply *r = NULL;
    uint64_t pttl = 0;
    st = redis_get_pttl(t, k, n, &r, &pttl);
    if (st != SHMC_OK) {
        (void)shmc_fill_abort(t->c, &f, (int32_t)st, shmc_tier_strerror(st), 0);
        return st;
    }
    count(&t->n_fills, 1);
    uint64_t ttl = t->max_stale_ms;
    if (pttl && pttl < ttl)
        ttl = pttl;
    size_t plen = r ? r->len : 0;
    struct rec_hdr h = {epoch, gen, r ? KIND_VALUE : KIND_ABSENT, REC_MAGIC};
    uint8_t *rec = NULL;
    if (sizeof h + plen <= t->max_value)
        rec = malloc(sizeof h + plen);
    if (rec) {
        memcpy(rec, &h, sizeof h);
        if (plen)
            memcpy(rec + sizeof h, r->str, plen);
        (void)shmc_fill_finish(t->c, &f, rec, sizeof h + plen, REC_FLAGS, ttl);
        free(rec);
    } else {
        (void)shmc_fill_abort(t->c, &f, 2, "value not cached", 0);
    }
    if (!r)
        return SHMC_NOT_FOUND;
    *val = malloc(plen ? plen : 1);
    if (!*val) {
        freeReplyObject(r);
        return SHMC_ESYS;
    }
    memcpy(*val, r->str, plen);
    *vlen = plen;
    freeReplyObject(r);
    return SHMC_OK;
}

/* ---- writes ---------------------------------------------------------------- */

static shmc_status map_error_reply(const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR && r->str &&
        (strstr(r->str, "not an integer") || strstr(r->str, "overflow")))
        return SHMC_ENOTNUM;
    return SHMC_TIER_EREPLY;
}

/* Runs one write command, then invalidates the host's copy (always). */
static shmc_status write_cmd(shmc_tier_t *t, const uint8_t *k, size_t n, int argc,
                             const char **argv, const size_t *argvlen, redisReply **r)
{
    tier_enter(t);
    shmc_status st = redis_one(t, argc, argv, argvlen, r, 0);
    invalidate_local(t, k, n);
    if (st == SHMC_OK && (*r)->type == REDIS_REPLY_ERROR) {
        st = map_error_reply(*r);
        freeReplyObject(*r);
        *r = NULL;
    }
    return st;
}

static shmc_status set_common(shmc_tier_t *t, const void *key, size_t klen, const void *val,
                              size_t vlen, uint64_t ttl_ms, int nx)
{
    if (!t || (!val && vlen))
        return SHMC_EINVAL;
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    size_t n;
    shmc_status st = full_key(t, key, klen, k, &n);
    if (st != SHMC_OK)
        return st;
    char ttl[24];
    int tl = snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *argv[6] = {"SET", (const char *)k, val ? (const char *)val : ""};
    size_t argvlen[6] = {3, n, vlen};
    int argc = 3;
    if (ttl_ms) {
        argv[argc] = "PX";
        argvlen[argc++] = 2;
        argv[argc] = ttl;
        argvlen[argc++] = (size_t)tl;
    }
    if (nx) {
        argv[argc] = "NX";
        argvlen[argc++] = 2;
    }
    redisReply *r = NULL;
    st = write_cmd(t, k, n, argc, argv, argvlen, &r);
    if (st != SHMC_OK)
        return st;
    if (r->type == REDIS_REPLY_STATUS)
        st = SHMC_OK;
    else if (r->type == REDIS_REPLY_NIL && nx)
        st = SHMC_EXISTS;
    else
        st = SHMC_TIER_EREPLY;
    freeReplyObject(r);
    return st;
}

shmc_status shmc_tier_set(shmc_tier_t *t, const void *key, size_t klen, const void *val,
                          size_t vlen, uint64_t ttl_ms)
{
    return set_common(t, key, klen, val, vlen, ttl_ms, 0);
}

shmc_status shmc_tier_add(shmc_tier_t *t, const void *key, size_t klen, const void *val,
                          size_t vlen, uint64_t ttl_ms)
{
    return set_common(t, key, klen, val, vlen, ttl_ms, 1);
}

static shmc_status int_reply(redisReply *r, long long *x)
{
    shmc_status st;
    if (r->type == REDIS_REPLY_INTEGER) {
        *x = r->integer;
        st = SHMC_OK;
    } else {
        st = SHMC_TIER_EREPLY;
    }
    freeReplyObject(r);
    return st;
}

/* Runs a write command that answers how many keys it changed: SHMC_OK, or
 * SHMC_NOT_FOUND when that is 0. */
static shmc_status write_count(shmc_tier_t *t, const uint8_t *k, size_t n, int argc,
                               const char **argv, const size_t *argvlen)
{
    redisReply *r = NULL;
    shmc_status st = write_cmd(t, k, n, argc, argv, argvlen, &r);
    long long x = 0;
    if (st == SHMC_OK)
        st = int_reply(r, &x);
    if (st == SHMC_OK && x == 0)
        st = SHMC_NOT_FOUND;
    return st;
}

shmc_status shmc_tier_delete(shmc_tier_t *t, const void *key, size_t klen)
{
    if (!t)
        return SHMC_EINVAL;
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    size_t n;
    shmc_status st = full_key(t, key, klen, k, &n);
    if (st != SHMC_OK)
        return st;
    const char *argv[2] = {"DEL", (const char *)k};
    size_t argvlen[2] = {3, n};
    return write_count(t, k, n, 2, argv, argvlen);
}

shmc_status shmc_tier_touch(shmc_tier_t *t, const void *key, size_t klen, uint64_t ttl_ms)
{
    if (!t)
        return SHMC_EINVAL;
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    size_t n;
    shmc_status st = full_key(t, key, klen, k, &n);
    if (st != SHMC_OK)
        return st;
    /* PERSIST answers 0 for a key without a TTL: EXISTS decides then */
    static const char script[] =
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
        "if ARGV[1] == '0' then redis.call('PERSIST', KEYS[1]) "
        "else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return 1";
    char ttl[24];
    int tl = snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *argv[5] = {"EVAL", script, "1", (const char *)k, ttl};
    size_t argvlen[5] = {4, sizeof script - 1, 1, n, (size_t)tl};
    return write_count(t, k, n, 5, argv, argvlen);
}

shmc_status shmc_tier_incr(shmc_tier_t *t, const void *key, size_t klen, int64_t delta,
                           unsigned opts, int64_t *result)
{
    if (!t || !result || (opts & ~SHMC_TIER_INCR_CREATE))
        return SHMC_EINVAL;
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    size_t n;
    shmc_status st = full_key(t, key, klen, k, &n);
    if (st != SHMC_OK)
        return st;
    char d[24];
    int dl = snprintf(d, sizeof d, "%lld", (long long)delta);
    redisReply *r = NULL;
    if (opts & SHMC_TIER_INCR_CREATE) {
        const char *argv[3] = {"INCRBY", (const char *)k, d};
        size_t argvlen[3] = {6, n, (size_t)dl};
        st = write_cmd(t, k, n, 3, argv, argvlen, &r);
    } else {
        static const char script[] =
            "if redis.call('EXISTS', KEYS[1]) == 0 then return false end "
            "return redis.call('INCRBY', KEYS[1], ARGV[1])";
        const char *argv[5] = {"EVAL", script, "1", (const char *)k, d};
        size_t argvlen[5] = {4, sizeof script - 1, 1, n, (size_t)dl};
        st = write_cmd(t, k, n, 5, argv, argvlen, &r);
    }
    if (st != SHMC_OK)
        return st;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return SHMC_NOT_FOUND;
    }
    long long x = 0;
    st = int_reply(r, &x);
    if (st == SHMC_OK)
        *result = x;
    return st;
}

shmc_status shmc_tier_flush_local(shmc_tier_t *t)
{
    if (!t)
        return SHMC_EINVAL;
    (void)hb_update(t, 0, OP_BUMP, NULL);
    return flush_prefix(t);
}

shmc_status shmc_tier_clear(shmc_tier_t *t)
{
    if (!t)
        return SHMC_EINVAL;
    tier_enter(t);
    /* MATCH pattern: the prefix with glob characters escaped, then '*' */
    char *pat = malloc(t->plen * 2 + 2);
    if (!pat)
        return SHMC_ESYS;
    size_t pl = 0;
    for (size_t i = 0; i < t->plen; i++) {
        char ch = (char)t->prefix[i];
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
            pat[pl++] = '\\';
        pat[pl++] = ch;
    }
    pat[pl++] = '*';
    char cursor[32] = "0";
    shmc_status st = SHMC_OK;
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT", "1000"};
        size_t argvlen[6] = {4, strlen(cursor), 5, pl, 5, 4};
        redisReply *r = NULL;
        st = redis_one(t, 6, argv, argvlen, &r, 1);
        if (st != SHMC_OK)
            break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[0]->len >= sizeof cursor || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            st = SHMC_TIER_EREPLY;
            break;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = 0;
        redisReply *keys = r->element[1];
        if (keys->elements) {
            size_t m = keys->elements + 1;
            const char **av = malloc(m * sizeof *av);
            size_t *al = malloc(m * sizeof *al);
            if (!av || !al) {
                free(av);
                free(al);
                freeReplyObject(r);
                st = SHMC_ESYS;
                break;
            }
            av[0] = "UNLINK";
            al[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                av[i + 1] = keys->element[i]->str;
                al[i + 1] = keys->element[i]->len;
            }
            redisReply *d = NULL;
            st = redis_one(t, (int)m, av, al, &d, 1);
            free(av);
            free(al);
            if (st == SHMC_OK) {
                if (d->type == REDIS_REPLY_ERROR)
                    st = SHMC_TIER_EREPLY;
                freeReplyObject(d);
            }
        }
        freeReplyObject(r);
    } while (st == SHMC_OK && strcmp(cursor, "0") != 0);
    free(pat);
    (void)hb_update(t, 0, OP_BUMP, NULL);
    shmc_status fs = flush_prefix(t);
    return st != SHMC_OK ? st : fs;
}

/* ---- cluster-wide singleflight ------------------------------------------------ */

static void fill_token(char *tok, size_t n)
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t x = mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)tok;
        for (size_t i = 0; i < sizeof r; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r[i] = (unsigned char)x;
        }
    }
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    for (; i < sizeof r && 2 * i + 2 < n; i++) {
        tok[2 * i] = hex[r[i] >> 4];
        tok[2 * i + 1] = hex[r[i] & 15];
    }
    tok[2 * i] = 0;
}

/* SET lock token NX PX ms: 1 taken, 0 held by another, <0 error (status) */
static int lock_try_redis(shmc_tier_t *t, const uint8_t *lk, size_t ln, const char *tok,
                          uint64_t ms, shmc_status *st)
{
    char px[24];
    int pl = snprintf(px, sizeof px, "%llu", (unsigned long long)ms);
    const char *argv[6] = {"SET", (const char *)lk, tok, "NX", "PX", px};
    size_t argvlen[6] = {3, ln, strlen(tok), 2, 2, (size_t)pl};
    redisReply *r = NULL;
    *st = redis_one(t, 6, argv, argvlen, &r, 0);
    if (*st != SHMC_OK)
        return -1;
    int taken = r->type == REDIS_REPLY_STATUS;
    if (r->type == REDIS_REPLY_ERROR) {
        *st = SHMC_TIER_EREPLY;
        taken = -1;
    }
    freeReplyObject(r);
    return taken;
}

static void lock_release_redis(shmc_tier_t *t, const uint8_t *lk, size_t ln, const char *tok)
{
    static const char script[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                 "return redis.call('DEL', KEYS[1]) else return 0 end";
    const char *argv[5] = {"EVAL", script, "1", (const char *)lk, tok};
    size_t argvlen[5] = {4, sizeof script - 1, 1, ln, strlen(tok)};
    redisReply *r = NULL;
    if (redis_one(t, 5, argv, argvlen, &r, 0) == SHMC_OK)
        freeReplyObject(r);
}

shmc_status shmc_tier_get_or_fill(shmc_tier_t *t, const void *key, size_t klen, shmc_fill_fn fn,
                                  void *ctx, const shmc_tier_fill_opts *opts, void **val,
                                  size_t *vlen, shmc_fill *f)
{
    if (!t || !fn || !val || !vlen)
        return SHMC_EINVAL;
    *val = NULL;
    *vlen = 0;
    uint8_t k[SHMC_MAX_KEY_LIMIT];
    size_t n;
    shmc_status st = full_key(t, key, klen, k, &n);
    if (st != SHMC_OK)
        return st;
    uint64_t ttl = opts ? opts->ttl_ms : 0;
    uint64_t fill_ms = opts && opts->fill_ms ? opts->fill_ms : 10000;
    uint64_t wait_ms = opts && opts->wait_ms ? opts->wait_ms : 10000;
    /* the lock's name: "shmc-fill:" + prefix + key (outside the tracked
     * prefix unless that is empty) */
    uint8_t *lk = malloc(10 + n);
    if (!lk)
        return SHMC_ESYS;
    memcpy(lk, "shmc-fill:", 10);
    memcpy(lk + 10, k, n);
    size_t ln = 10 + n;
    char tok[40];
    fill_token(tok, sizeof tok);
    uint64_t deadline = mono_ms() + wait_ms, next_try = 0;
    for (;;) {
        st = shmc_tier_get(t, key, klen, val, vlen);
        if (st != SHMC_NOT_FOUND)
            break; /* the value, or an error */
        uint64_t now = mono_ms();
        if (now >= next_try) {
            next_try = now + 50;
            int taken = lock_try_redis(t, lk, ln, tok, fill_ms, &st);
            if (taken < 0)
                break;
            if (taken) {
                /* ours: Redis may have got the value just before */
                st = bypass_get(t, k, n, val, vlen);
                if (st != SHMC_NOT_FOUND) {
                    lock_release_redis(t, lk, ln, tok);
                    break;
                }
                shmc_fill_out out;
                memset(&out, 0, sizeof out);
                out.ttl_ms = ttl;
                int32_t err = fn(ctx, key, klen, &out);
                if (err != 0) {
                    free(out.val);
                    lock_release_redis(t, lk, ln, tok);
                    if (f) {
                        f->error = err;
                        out.message[sizeof out.message - 1] = 0;
                        memcpy(f->message, out.message, sizeof f->message);
                    }
                    st = SHMC_EFILL;
                    break;
                }
                st = shmc_tier_set(t, key, klen, out.val, out.vlen, out.ttl_ms);
                lock_release_redis(t, lk, ln, tok);
                if (st != SHMC_OK) {
                    free(out.val);
                    break;
                }
                if (!out.val) {
                    out.val = malloc(1);
                    if (!out.val) {
                        st = SHMC_ESYS;
                        break;
                    }
                }
                *val = out.val;
                *vlen = out.vlen;
                st = SHMC_OK;
                break;
            }
        }
        if (mono_ms() >= deadline) {
            st = SHMC_ETIMEDOUT;
            break;
        }
        sleep_ms(5);
    }
    free(lk);
    return st;
}

/* ---- the listener ------------------------------------------------------------ */

struct lconn {
    redisContext *sub, *ctl;
    uint64_t last_rx_ms;
};

static void lconn_close(struct lconn *lc)
{
    if (lc->sub)
        redisFree(lc->sub);
    if (lc->ctl)
        redisFree(lc->ctl);
    lc->sub = lc->ctl = NULL;
}

/* Subscriber + tracking connections.  0 on success. */
static int lconn_open(shmc_tier_t *t, struct lconn *lc)
{
    lc->sub = redis_connect(t);
    lc->ctl = redis_connect(t);
    if (!lc->sub || !lc->ctl)
        goto fail;
    redisReply *r = redisCommand(lc->sub, "CLIENT ID");
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        goto fail;
    }
    long long id = r->integer;
    freeReplyObject(r);
    r = redisCommand(lc->sub, "SUBSCRIBE __redis__:invalidate");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3;
    if (r)
        freeReplyObject(r);
    if (!ok)
        goto fail;
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *argv[7] = {"CLIENT", "TRACKING", "on", "REDIRECT", ids, "BCAST", "PREFIX"};
    size_t argvlen[8] = {6, 8, 2, 8, strlen(ids), 5, 6};
    const char *av8[8];
    memcpy(av8, argv, sizeof argv);
    av8[7] = (const char *)t->prefix;
    argvlen[7] = t->plen;
    r = redisCommandArgv(lc->ctl, t->plen ? 8 : 6, av8, argvlen);
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (!ok)
        goto fail;
    lc->last_rx_ms = mono_ms();
    return 0;
fail:
    lconn_close(lc);
    return -1;
}

/* Applies one message of the subscriber connection.  Returns 0, or -1 when
 * fenced (another listener owns the host). */
static int apply_message(shmc_tier_t *t, uint64_t token, redisReply *m)
{
    if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
        m->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    if (m->elements != 3 || strcmp(m->element[0]->str, "message") != 0)
        return 0; /* "pong", subscribe confirmations */
    redisReply *keys = m->element[2];
    if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len == 0 || k->len > t->max_key)
                continue;
            invalidate_local(t, (const uint8_t *)k->str, k->len);
            count(&t->n_inval, 1);
        }
        return 0;
    }
    /* a null payload: FLUSHALL/FLUSHDB; everything is invalid */
    if (hb_update(t, token, OP_UP, NULL) == -1)
        return -1;
    (void)flush_prefix(t);
    return 0;
}

/* Listens while holding the lock with `token`.  Returns when stopped, or
 * when the lock was lost. */
static void listen_held(shmc_tier_t *t, uint64_t token, volatile int *stop)
{
    struct lconn lc = {NULL, NULL, 0};
    uint64_t beat_every = t->lease_ms / 4, dead_after = t->lease_ms / 2;
    uint64_t next_beat = 0;
    /* whatever the last listener left: invalidations may have been missed */
    if (hb_update(t, token, OP_DOWN, NULL) == -1)
        return;
    (void)flush_prefix(t);
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        uint64_t now = mono_ms();
        if (!lc.sub) {
            if (now >= next_beat) {
                if (shmc_lock_extend(t->c, t->lockname, t->locklen, token, t->lease_ms) !=
                    SHMC_OK)
                    break;
                next_beat = now + beat_every;
            }
            if (lconn_open(t, &lc) != 0) {
                busy_leave();
                sleep_ms(TICK_MS);
                busy_enter();
                continue;
            }
            /* a new epoch: no copy made before is used any more */
            if (hb_update(t, token, OP_UP, NULL) != 0)
                break;
            __atomic_store_n(&t->listening, 1, __ATOMIC_RELAXED);
            count(&t->n_epochs, 1);
            (void)flush_prefix(t);
            next_beat = mono_ms() + beat_every;
            continue;
        }
        int lost = 0, fenced = 0;
        if (now >= next_beat) {
            if (shmc_lock_extend(t->c, t->lockname, t->locklen, token, t->lease_ms) != SHMC_OK) {
                fenced = 1;
            } else {
                redisReply *r = redisCommand(lc.ctl, "PING");
                if (!r || r->type != REDIS_REPLY_STATUS)
                    lost = 1;
                if (r)
                    freeReplyObject(r);
                int done = 0;
                if (!lost && (redisAppendCommand(lc.sub, "PING") != REDIS_OK))
                    lost = 1;
                while (!lost && !done)
                    if (redisBufferWrite(lc.sub, &done) != REDIS_OK)
                        lost = 1;
                if (now - lc.last_rx_ms > dead_after + beat_every)
                    lost = 1;
                if (!lost && hb_update(t, token, OP_BEAT, NULL) != 0)
                    fenced = 1;
            }
            next_beat = now + beat_every;
        }
        /* drain what has arrived, waiting at most one tick */
        while (!lost && !fenced) {
            void *rep = NULL;
            if (redisGetReplyFromReader(lc.sub, &rep) != REDIS_OK) {
                lost = 1;
                break;
            }
            if (rep) {
                lc.last_rx_ms = mono_ms();
                if (apply_message(t, token, rep) != 0)
                    fenced = 1;
                freeReplyObject(rep);
                continue;
            }
            struct pollfd p = {lc.sub->fd, POLLIN, 0};
            int to = (int)(next_beat > mono_ms() ? next_beat - mono_ms() : 0);
            if (to > TICK_MS)
                to = TICK_MS;
            busy_leave();
            int pr = poll(&p, 1, to);
            busy_enter();
            if (pr < 0 && errno != EINTR)
                lost = 1;
            if (pr <= 0)
                break;
            if (redisBufferRead(lc.sub) != REDIS_OK)
                lost = 1;
        }
        if (fenced)
            break;
        if (lost) {
            /* invalidations may be missed from now on: reads go to Redis */
            lconn_close(&lc);
            __atomic_store_n(&t->listening, 0, __ATOMIC_RELAXED);
            if (hb_update(t, token, OP_DOWN, NULL) == -1)
                break;
            (void)flush_prefix(t);
        }
    }
    lconn_close(&lc);
    __atomic_store_n(&t->listening, 0, __ATOMIC_RELAXED);
    (void)hb_update(t, token, OP_DOWN, NULL);
}

shmc_status shmc_tier_listen(shmc_tier_t *t, volatile int *stop)
{
    if (!t || !stop)
        return SHMC_EINVAL;
    pthread_once(&g_atfork_once, register_atfork);
    pipe_guard g;
    pipe_block(&g);
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        uint64_t token = 0;
        shmc_status st =
            shmc_lock_acquire(t->c, t->lockname, t->locklen, TICK_MS, t->lease_ms, &token);
        if (st == SHMC_ETIMEDOUT || st == SHMC_EBUSY)
            continue;
        if (st != SHMC_OK) {
            sleep_ms(TICK_MS);
            continue;
        }
        busy_enter();
        listen_held(t, token, stop);
        (void)shmc_lock_release(t->c, t->lockname, t->locklen, token);
        busy_leave();
        /* lost the lock, or the host's cache refused the heartbeat: let
         * another candidate go first rather than spin */
        if (!__atomic_load_n(stop, __ATOMIC_ACQUIRE))
            sleep_ms(TICK_MS);
    }
    pipe_unblock(&g);
    return SHMC_OK;
}

/* ---- state ---------------------------------------------------------------- */

shmc_status shmc_tier_stats_get(shmc_tier_t *t, shmc_tier_stats *st)
{
    if (!t || !st)
        return SHMC_EINVAL;
    memset(st, 0, sizeof *st);
    st->gets = __atomic_load_n(&t->n_gets, __ATOMIC_RELAXED);
    st->l1_hits = __atomic_load_n(&t->n_hits, __ATOMIC_RELAXED);
    st->l1_waits = __atomic_load_n(&t->n_waits, __ATOMIC_RELAXED);
    st->fills = __atomic_load_n(&t->n_fills, __ATOMIC_RELAXED);
    st->bypass = __atomic_load_n(&t->n_bypass, __ATOMIC_RELAXED);
    st->redis_cmds = __atomic_load_n(&t->n_cmds, __ATOMIC_RELAXED);
    st->redis_errors = __atomic_load_n(&t->n_errors, __ATOMIC_RELAXED);
    st->invalidations = __atomic_load_n(&t->n_inval, __ATOMIC_RELAXED);
    st->listener_epochs = __atomic_load_n(&t->n_epochs, __ATOMIC_RELAXED);
    st->listener_here = __atomic_load_n(&t->listening, __ATOMIC_RELAXED) && t->owner_gen == fork_gen();
    struct hb h;
    if (hb_read(t, &h) == 0) {
        st->epoch = h.epoch;
        st->listener_live = (uint32_t)hb_live(&h);
        st->listener_pid = st->listener_live ? h.pid : 0;
    }
    return SHMC_OK;
}

shmc_status shmc_tier_wait_listener(shmc_tier_t *t, uint64_t timeout_ms)
{
    if (!t)
        return SHMC_EINVAL;
    tier_enter(t);
    uint64_t end = mono_ms() + timeout_ms;
    for (;;) {
        struct hb h;
        if (hb_read(t, &h) == 0 && hb_live(&h))
            return SHMC_OK;
        if (mono_ms() >= end)
            return SHMC_ETIMEDOUT;
        sleep_ms(10);
    }
}
