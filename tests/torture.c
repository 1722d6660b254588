/*
 * torture.c — crash torture: every operation of shmcache, run by forked
 * workers that are SIGKILLed at random moments, with the reliability
 * promises checked all along.  A bounded run is the 'torture' test of
 * `meson test`; tests/soak.sh runs it for minutes.
 *
 * The parent forks --workers processes.  Each runs a random mix of every
 * operation (get, get_alloc, gets, exists, ttl, get_many; set, add, replace,
 * gets + cas, cas_value, set_many; delete, delete_cas, delete_value,
 * delete_many; touch, get_and_touch; append, prepend; incr, decr; flush;
 * named locks with acquire, try, release and extend; singleflight through
 * get_or_fill and through fill_begin/finish/abort) on a small cache that
 * evicts all the time.  The parent is the killer: every 1..--kill-ms ms it
 * SIGKILLs a random worker and forks a new one in its place.  Between these
 * storms it stops, for 3 s, a reader inside a read section, two readers at
 * whatever point of a get they are, and one worker at whatever point of
 * whatever call (SIGSTOP), while the other workers go on; then it resumes
 * them (SIGCONT) or, the next time, kills the readers (the worker is
 * always resumed).
 * Now and then the parent itself holds a lock and leads a fill for seconds,
 * so that waits really run into their deadlines; one extra process that is
 * never killed (the prober) waits on those, so that a wait that overruns its
 * deadline is always measured to its end.
 *
 * Checked, all along and at the end (a failure is a "violation": it is
 * printed at once and counted, and the exit status is 1):
 *  - values: every value any call returns is complete and belongs to its
 *    key (a header with key, writer, sequence number, length and checksum:
 *    testutil's self-validating values), and its writer really issued that
 *    sequence number; appended records validate one by one;
 *  - outcomes: every call returns a status its documentation allows there:
 *    never SHMC_ENOMEM (stopped readers are ejected; a stopped worker pins
 *    only what it holds), cas tokens change, timeouts do not come early;
 *  - counters (incr and decr only): every acknowledged call is in the final
 *    value, and at most those that killed workers were inside are too;
 *  - named locks: mutual exclusion (an owner word exchanged on entry to and
 *    exit from the critical section, and a counter incremented in it
 *    non-atomically, which ends within [acks, acks + kills inside]); tokens
 *    strictly increase in the order acquisitions are observed, across
 *    takeovers and recycling of table entries; a lease is never lost before
 *    it ends; a release or extend succeeds only if no later token was
 *    handed out meanwhile;
 *  - singleflight: callers get a valid value or the leader's error; a late
 *    leader is refused only after its deadline;
 *  - time: each call returns within its bound plus --slack-ms (a lock or
 *    fill wait within its timeout, a write within the 10 s that shmcache.h
 *    allows it to wait for readers, anything else at once); a worker stuck
 *    longer is reported as hung and killed; the overshoots are reported;
 *  - consistency: shmc_verify passes every second and after the run; no
 *    segment is retired while an index word names it (checked by the
 *    library's test build at every retirement); at rest, no segment's live
 *    count is below the index words that name it;
 *  - stalls: the workers keep writing while participants are stopped; the
 *    resumed readers' values are checked like any other;
 *  - recovery: after a stall ends, writes succeed again; after the run, the
 *    slots of dead processes are reaped, no lock or fill is left held, no
 *    storage segment is left reserved or retired, and a fresh process
 *    writes twice the storage without SHMC_ENOMEM;
 *  - termination: bounded waits everywhere, and a watchdog alarm.
 *
 * A run is deterministic for a given --seed except for the moments of the
 * kills, and for everything that depends on them.
 *
 * White-box only for the stall phase: it links the SHMC_TESTING build for
 * shmc__test_read_enter().
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SHMC_TESTING
#define SHMC_TESTING 1 /* declares the test hooks in epoch.h */
#endif
#include "alloc.h"
#include "epoch.h"
#include "index.h"
#include "testutil.h"

#define LL(x) ((unsigned long long)(x))

/* ---- parameters ---- */

#define MAX_WORKERS 64u
#define NFILL 12u           /* singleflight keys f-<n>; f-<NFILL> is the parent's slow one */
#define NAPP 64u            /* append/prepend keys a-<n> */
#define NLEASE 2u           /* locks lease-<n>, taken with short leases */
#define NCHURN 512u         /* locks ch-<n>: more names than table entries */
#define NCTR_INC 3u         /* c-0..2: decimal counters, incremented only */
#define NCTR_BIN 2u         /* c-3..4: binary counters, incremented only */
#define NCTR_MIX 2u         /* c-5..6: decimal counters, incremented and decremented */
#define NCTR (NCTR_INC + NCTR_BIN + NCTR_MIX)
#define MANY 8u             /* keys per get_many / set_many / delete_many */

/* A counter holds life * LIFE_UNIT + base + count.  Eviction and flush
 * remove counters; whoever then finds one missing creates it with a life
 * number nobody used before, so each increment's result says in which life
 * it landed, and the final value is checked against the acks of its life. */
#define MAX_LIFE 4096u
#define LIFE_UNIT 1000000000000ull
#define MIX_BASE 500000000000ull

#define WRITE_BUDGET_MS 10000u  /* a write may wait this long for readers (shmcache.h) */
#define CS_BUDGET_MS 10000u     /* a critical section (incl. waiting for the killer's word) */
#define HANG_EXTRA_MS 5000u     /* beyond bound + slack, a call is hung */
#define ENOMEM_GRACE_MS 2000u   /* after a stall ends, until writes must succeed */
#define VERIFY_EVERY_MS 1000u
#define PROGRESS_EVERY_MS 10000u
#define STALL_RESERVE_MS 8000u  /* about what one stall phase takes */
#define MAX_TTL_MS 20000u
#define FILL_ERR_BASE 1000
#define PARENT_WRITER 0xffffu
#define ID_APP 0x20000000u      /* key ids in values: a-<n> records */
#define ID_FILL 0x40000000u     /* f-<n> */
#define ID_PROBE 0x60000000u    /* p-<n>, r-<n>: written by the parent and the refill */
#define APP_REC 16u
#define APP_TRIM 1024u

typedef struct config {
    unsigned seconds, workers, kill_ms, slack_ms, storm_s;
    uint64_t seed, size;
    uint32_t max_value, keys, locks, flush_every;
    bool stall, verbose;
    char name[SHMC_MAX_NAME + 1];
} config;

static config cfg = {
    .seconds = 30, .workers = 4, .kill_ms = 50, .slack_ms = 2000, .seed = 1,
    .size = 8ull << 20, .max_value = 32u << 10, .keys = 4000, .locks = 256,
    .flush_every = 300000, .stall = true,
};

/* ---- operations: id, name, weight in the workers' mix ---- */

#define OP_LIST(X)                                                                         \
    X(IDLE, "idle", 0) X(GET, "get", 180) X(GET_ALLOC, "get_alloc", 15)                    \
    X(GETS, "gets", 20) X(EXISTS, "exists", 15) X(TTL, "ttl", 10)                          \
    X(GET_MANY, "get_many", 15) X(SET, "set", 150) X(ADD, "add", 30)                       \
    X(REPLACE, "replace", 30) X(CAS, "gets+cas", 45) X(CAS_VALUE, "cas_value", 30)         \
    X(CAS_ABSENT, "cas_value(NULL)", 10) X(DELETE, "delete", 30)                           \
    X(DELETE_CAS, "delete_cas", 10) X(DELETE_VALUE, "delete_value", 10)                    \
    X(DELETE_MANY, "delete_many", 5) X(SET_MANY, "set_many", 10) X(TOUCH, "touch", 20)     \
    X(GET_AND_TOUCH, "get_and_touch", 10) X(APPEND, "append", 25) X(PREPEND, "prepend", 15) \
    X(INCR, "incr", 80) X(DECR, "decr", 25) X(CTR_READ, "counter get", 20)                 \
    X(LOCK, "mutex lock", 40) X(CS, "mx critical section", 0) X(LEASE, "lease lock", 4)       \
    X(CHURN, "lock churn", 20) X(FILL, "get_or_fill", 25) X(FILL_SPLIT, "fill_begin..", 20) \
    X(SLOW_WAIT, "wait on slow holder", 1) X(FLUSH, "flush", 0) X(PROBE, "parent probe set", 0)

#define X_ENUM(id, name, w) OP_##id,
enum { OP_LIST(X_ENUM) OP_COUNT };
#define X_NAME(id, name, w) name,
static const char *const op_name[] = {OP_LIST(X_NAME)};
#define X_WEIGHT(id, name, w) w,
static const unsigned op_weight[] = {OP_LIST(X_WEIGHT)};
static unsigned op_cumul[OP_COUNT], op_total;

/* ---- state shared by the parent and every child ---- */

typedef struct wstate {
    _Alignas(64) _Atomic uint32_t op; /* (OP_* << 16) | argument inside a call, 0 between */
    _Atomic uint32_t inc;             /* incarnation: the parent bumps it once it reaped one */
    _Atomic uint64_t op_start;        /* ms */
    _Atomic uint64_t op_budget;       /* ms the call may take */
    _Atomic uint64_t seq;             /* value sequence numbers issued, all incarnations */
    _Atomic uint64_t checked;         /* values and outcomes checked */
    _Atomic uint64_t bytes;           /* bytes written */
    _Atomic uint64_t paused_ms;       /* ms the parent kept it stopped (SIGSTOP), in all */
    _Atomic uint64_t ops[OP_COUNT];
} wstate;

typedef struct shared {
    _Atomic int stop;
    _Atomic uint64_t violations;
    wstate w[MAX_WORKERS + 1]; /* the workers, then the prober */
    /* counters */
    _Atomic uint64_t next_life[NCTR];
    _Atomic uint64_t acked_incr[NCTR][MAX_LIFE], acked_decr[NCTR][MAX_LIFE];
    _Atomic uint64_t lives_created;
    /* lock mx and its critical section */
    _Atomic uint64_t cs_owner, cs_acked, cs_inherited, mx_token_max;
    volatile uint64_t cs_counter, cs_last_token; /* changed only inside the section */
    /* lease-<n>: what the "storage" behind the lock last accepted */
    _Atomic uint64_t lease_token_max[NLEASE], lease_resource[NLEASE];
    _Atomic uint64_t churn_token_max[NCHURN];
    /* the current (or last) stall: SHMC_ENOMEM is allowed for a write that
     * started after the first stall began and before stall_until */
    _Atomic uint64_t stall_from, stall_until;
    _Atomic int reader_state; /* 1: inside its read section, 2: left it */
    _Atomic int readers_quit; /* the looping readers of a stall return */
    _Atomic uint64_t reader_gets; /* gets the looping readers checked */
    /* odd while the parent holds lock "slow" and leads fill f-<NFILL> */
    _Atomic uint64_t slow_gen, slow_timeouts;
    /* tallies for the summary */
    _Atomic uint64_t enomem, mx_cycles, mx_timeouts, lease_cycles, lease_lost, fenced;
    _Atomic uint64_t churn_cycles, fills_computed, fill_errors, fill_timeouts, late_refused;
    _Atomic uint64_t parent_checked;
    _Atomic uint64_t max_ms[OP_COUNT], max_over_ms[OP_COUNT];
} shared;

static shared *S;
static pid_t g_parent;
static char g_shm_path[SHMC_MAX_NAME + 16];
#define WHO_PARENT (-1)
#define WHO_READER (-2)
#define WHO_REFILL (-3)
static int g_who = WHO_PARENT; /* a worker index, or WHO_* */
static uint32_t g_inc;
static _Atomic uint64_t *g_checked;

/* ---- small helpers ---- */

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    uint64_t n = atomic_fetch_add(&S->violations, 1);
    if (n > 20)
        return;
    if (n == 20) {
        fprintf(stderr, "VIOLATION: (more: counted, not printed)\n");
        return;
    }
    char who[64], msg[700];
    if (g_who >= 0)
        snprintf(who, sizeof who, "%s %d.%u pid %ld",
                 (unsigned)g_who == cfg.workers ? "prober" : "worker", g_who, g_inc,
                 (long)getpid());
    else
        snprintf(who, sizeof who, "%s pid %ld",
                 g_who == WHO_PARENT ? "parent" : g_who == WHO_READER ? "stalled reader" : "refill",
                 (long)getpid());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "VIOLATION [%s]: %s\n", who, msg);
}

static void atomic_max_u64(_Atomic uint64_t *p, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(p, memory_order_relaxed);
    while (cur < v && !atomic_compare_exchange_weak_explicit(p, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

static void count_checked(void)
{
    atomic_fetch_add_explicit(g_checked, 1, memory_order_relaxed);
}

/* Records how long a call took against its bound. */
static void note_time(unsigned op, uint64_t el, uint64_t bound, const char *what)
{
    atomic_max_u64(&S->max_ms[op], el);
    if (el > bound)
        atomic_max_u64(&S->max_over_ms[op], el - bound);
    if (el > bound + cfg.slack_ms)
        violation("%s (%s) took %llu ms; its bound is %llu ms (+ %u ms slack)", op_name[op], what,
                  LL(el), LL(bound), cfg.slack_ms);
}

/* A write that failed with SHMC_ENOMEM: a stopped participant (reader or
 * writer) is ejected or pins at most the few segments it holds, so this is
 * always a violation here.  Counted too. */
static void enomem_seen(const char *what, const char *key, uint64_t t0)
{
    atomic_fetch_add(&S->enomem, 1);
    uint64_t from = atomic_load(&S->stall_from), until = atomic_load(&S->stall_until);
    violation("%s %s: SHMC_ENOMEM (%s)", what, key,
              from && t0 <= until ? "during a stall" : "no participant was stopped");
}

/* A value read for key_id: complete, its own, and written by a real writer. */
static bool check_value(const char *what, const char *key, uint32_t key_id, const void *v,
                        size_t len, uint32_t flags)
{
    char why[200];
    if (tu_value_check(v, len, flags, key_id, why, sizeof why) != 0) {
        violation("%s %s: torn or foreign value: %s", what, key, why);
        return false;
    }
    uint32_t writer, seq;
    if (tu_value_origin(v, len, &writer, &seq)) {
        if (writer == PARENT_WRITER ? key_id < ID_PROBE : writer > cfg.workers) {
            violation("%s %s: value claims writer %u", what, key, writer);
            return false;
        }
        if (writer != PARENT_WRITER && seq >= atomic_load(&S->w[writer].seq)) {
            violation("%s %s: value has seq %u, which worker %u never issued", what, key, seq,
                      writer);
            return false;
        }
    }
    count_checked();
    return true;
}

/* Counter values: 8 little-endian bytes (binary) or 1..20 digits. */
static bool ctr_is_bin(uint32_t ci)
{
    return ci >= NCTR_INC && ci < NCTR_INC + NCTR_BIN;
}

static uint64_t ctr_base(uint32_t ci)
{
    return ci >= NCTR_INC + NCTR_BIN ? MIX_BASE : 0;
}

static bool ctr_parse(uint32_t ci, const uint8_t *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    if (ctr_is_bin(ci)) {
        if (n != 8)
            return false;
        for (int i = 7; i >= 0; i--)
            x = x << 8 | v[i];
    } else {
        if (n == 0 || n > 19)
            return false;
        for (size_t i = 0; i < n; i++) {
            if (v[i] < '0' || v[i] > '9')
                return false;
            x = x * 10 + (uint64_t)(v[i] - '0');
        }
    }
    *out = x;
    return true;
}

/* Append records: 16 bytes that validate on their own. */
static uint32_t rec_check(uint32_t key_id, uint32_t writer, uint32_t seq)
{
    uint64_t h = ((uint64_t)key_id << 32 | writer) * 0x9e3779b97f4a7c15ull ^ seq;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(h >> 32);
}

static uint32_t app_flags(uint32_t id)
{
    return 0xa9900000u | id;
}

static bool check_records(const char *what, const char *key, uint32_t id, const uint8_t *v,
                          size_t len, uint32_t flags)
{
    if (flags != app_flags(id) || len == 0 || len % APP_REC) {
        violation("%s %s: appended value of %zu bytes with flags 0x%x", what, key, len, flags);
        return false;
    }
    for (size_t i = 0; i < len; i += APP_REC) {
        uint32_t r[4];
        memcpy(r, v + i, sizeof r);
        if (r[0] != ID_APP + id || r[1] >= cfg.workers || r[3] != rec_check(r[0], r[1], r[2]) ||
            r[2] >= atomic_load(&S->w[r[1]].seq)) {
            violation("%s %s: record at byte %zu of %zu is torn or foreign: %08x %08x %08x "
                      "%08x (want key %08x, writer < %u, check %08x)",
                      what, key, i, len, r[0], r[1], r[2], r[3], ID_APP + id, cfg.workers,
                      rec_check(r[0], r[1], r[2]));
            return false;
        }
    }
    count_checked();
    return true;
}

/* ---- workers ---- */

typedef struct wctx {
    shmc_t *c;
    uint32_t w;
    wstate *ws;
    tu_rng r;
    uint8_t *val, *old, *cur, *many; /* max_value bytes each; many: MANY of them */
    char key[TU_KEY_MAX];            /* the key (or lock name) of the current op */
    size_t klen;
    uint64_t paused0;                /* ws->paused_ms when the current call began */
    uint64_t wall_ms;                /* the last call's duration, pauses included */
} wctx;

static void set_key(wctx *x, const char *prefix, uint32_t id)
{
    x->klen = tu_key(x->key, prefix, id);
}

static uint64_t begin_op(wctx *x, unsigned op, uint32_t arg, uint64_t bound)
{
    uint64_t t = tu_now_ms();
    x->paused0 = atomic_load(&x->ws->paused_ms);
    atomic_store(&x->ws->op_budget, bound);
    atomic_store(&x->ws->op_start, t);
    atomic_store(&x->ws->op, (uint32_t)op << 16 | arg);
    return t;
}

/* The call begun at t0 returned: accounts it; returns its duration. */
static uint64_t end_op(wctx *x, unsigned op, uint64_t t0, uint64_t bound)
{
    /* Time the parent kept us stopped is not the call's. */
    uint64_t el = tu_now_ms() - t0, paused = atomic_load(&x->ws->paused_ms) - x->paused0;
    x->wall_ms = el;
    el = el > paused ? el - paused : 0;
    atomic_store(&x->ws->op, 0);
    atomic_fetch_add_explicit(&x->ws->ops[op], 1, memory_order_relaxed);
    note_time(op, el, bound, x->key);
    return el;
}

#define B(s) (1ull << (s))

/* Checks a status against the allowed set; SHMC_ENOMEM is judged against
 * the stall windows when write_t0 is not 0.  True when allowed. */
static bool expect(wctx *x, unsigned op, shmc_status st, uint64_t allowed, uint64_t write_t0)
{
    if ((unsigned)st < 64 && (allowed & B(st))) {
        count_checked();
        return true;
    }
    if (st == SHMC_ENOMEM && write_t0)
        enomem_seen(op_name[op], x->key, write_t0);
    else
        violation("%s %s: unexpected status: %s", op_name[op], x->key, shmc_strerror(st));
    return false;
}

/* Timeouts must not come early (now_ms granularity aside).  A timeout is a
 * deadline on the clock: one that passed while the parent kept the caller
 * stopped was not early, so this counts the pauses that end_op leaves out
 * of the call's duration. */
static void check_not_early(wctx *x, unsigned op, uint64_t timeout)
{
    if (x->wall_ms + 2 < timeout)
        violation("%s %s: gave up after %llu ms of a %llu ms timeout", op_name[op], x->key,
                  LL(x->wall_ms), LL(timeout));
}

static size_t pick_len(wctx *x)
{
    uint32_t p = tu_rng_below(&x->r, 100);
    if (p < 5)
        return tu_rng_below(&x->r, TU_VHDR); /* short: derived from key and length only */
    if (p < 85)
        return tu_rng_range(&x->r, TU_VHDR, 2000);
    return tu_rng_range(&x->r, 2000, cfg.max_value);
}

static uint64_t pick_ttl(wctx *x)
{
    uint32_t p = tu_rng_below(&x->r, 100);
    if (p < 70)
        return 0;
    if (p < 90)
        return tu_rng_range(&x->r, 1000, MAX_TTL_MS);
    return tu_rng_range(&x->r, 1, 300);
}

/* A new value of key_id in buf[0..len); returns its flags. */
static uint32_t make_value(wctx *x, uint8_t *buf, size_t len, uint32_t key_id)
{
    uint32_t seq = (uint32_t)atomic_fetch_add(&x->ws->seq, 1);
    tu_value_fill(buf, len, key_id, x->w, seq);
    return tu_value_flags(key_id, len);
}

static void wrote(wctx *x, size_t n)
{
    atomic_fetch_add_explicit(&x->ws->bytes, n, memory_order_relaxed);
}

/* The key/value operations on k-<id>. */
static void op_kv(wctx *x, unsigned op)
{
    shmc_t *c = x->c;
    const uint32_t id = tu_rng_below(&x->r, cfg.keys), mv = cfg.max_value;
    set_key(x, "k-", id);
    const char *k = x->key, *on = op_name[op];
    const size_t kl = x->klen;
    size_t len = pick_len(x), vlen = 0, cur_vlen = 0;
    uint64_t ttl = pick_ttl(x), tok = 0, out = 0, t0;
    uint32_t fl = 0, vf = 0;
    void *p = NULL;
    shmc_status st;
    const uint64_t W = WRITE_BUDGET_MS;
    const uint64_t found = B(SHMC_OK) | B(SHMC_NOT_FOUND);

    switch (op) {
    case OP_GET:
        t0 = begin_op(x, op, 0, 0);
        st = shmc_get(c, k, kl, x->old, mv, &vlen, &fl);
        end_op(x, op, t0, 0);
        if (expect(x, op, st, found, 0) && st == SHMC_OK)
            check_value(on, k, id, x->old, vlen, fl);
        break;
    case OP_GET_ALLOC:
        t0 = begin_op(x, op, 0, 0);
        st = shmc_get_alloc(c, k, kl, &p, &vlen, &fl);
        end_op(x, op, t0, 0);
        if (expect(x, op, st, found, 0) && st == SHMC_OK)
            check_value(on, k, id, p, vlen, fl);
        free(p);
        break;
    case OP_GETS:
        t0 = begin_op(x, op, 0, 0);
        st = shmc_gets(c, k, kl, x->old, mv, &vlen, &fl, &tok);
        end_op(x, op, t0, 0);
        if (expect(x, op, st, found, 0) && st == SHMC_OK) {
            check_value(on, k, id, x->old, vlen, fl);
            if (!tok)
                violation("gets %s: CAS token 0", k);
        }
        break;
    case OP_EXISTS:
        t0 = begin_op(x, op, 0, 0);
        st = shmc_exists(c, k, kl);
        end_op(x, op, t0, 0);
        expect(x, op, st, found, 0);
        break;
    case OP_TTL:
        t0 = begin_op(x, op, 0, 0);
        st = shmc_ttl(c, k, kl, &out);
        end_op(x, op, t0, 0);
        if (expect(x, op, st, found, 0) && st == SHMC_OK && out != SHMC_TTL_NONE &&
            out > MAX_TTL_MS)
            violation("ttl %s: %llu ms left, but no TTL above %u ms was ever set", k, LL(out),
                      MAX_TTL_MS);
        break;
    case OP_SET:
    case OP_ADD:
    case OP_REPLACE:
        vf = make_value(x, x->val, len, id);
        t0 = begin_op(x, op, 0, W);
        st = op == OP_SET ? shmc_set(c, k, kl, x->val, len, vf, ttl)
             : op == OP_ADD ? shmc_add(c, k, kl, x->val, len, vf, ttl)
                            : shmc_replace(c, k, kl, x->val, len, vf, ttl);
        end_op(x, op, t0, W);
        if (expect(x, op, st,
                   B(SHMC_OK) | (op == OP_ADD ? B(SHMC_EXISTS) : 0) |
                       (op == OP_REPLACE ? B(SHMC_NOT_FOUND) : 0),
                   t0) &&
            st == SHMC_OK)
            wrote(x, len);
        break;
    case OP_CAS:
        vf = make_value(x, x->val, len, id);
        t0 = begin_op(x, op, 0, W);
        st = shmc_gets(c, k, kl, x->old, mv, &vlen, &fl, &tok);
        if (st == SHMC_OK) {
            uint64_t first = tok;
            st = shmc_cas(c, k, kl, x->val, len, vf, ttl, tok, &out);
            if (st == SHMC_STALE) {
                /* The current token comes back: a retry needs no lookup. */
                if (!out || out == first)
                    violation("cas %s: SHMC_STALE with current token %llu (ours %llu)", k,
                              LL(out), LL(first));
                tok = out;
                st = shmc_cas(c, k, kl, x->val, len, vf, ttl, tok, &out);
            }
            end_op(x, op, t0, W);
            if (expect(x, op, st, B(SHMC_OK) | B(SHMC_STALE) | B(SHMC_NOT_FOUND), t0)) {
                if (st == SHMC_OK && (!out || out == tok))
                    violation("cas %s: stored, new token %llu (old %llu)", k, LL(out), LL(tok));
                if (st == SHMC_NOT_FOUND && out)
                    violation("cas %s: SHMC_NOT_FOUND with token %llu", k, LL(out));
                if (st == SHMC_OK)
                    wrote(x, len);
            }
            check_value(on, k, id, x->old, vlen, fl);
        } else {
            end_op(x, op, t0, W);
            expect(x, op, st, found, 0);
        }
        break;
    case OP_CAS_VALUE:
    case OP_CAS_ABSENT:
        vf = make_value(x, x->val, len, id);
        t0 = begin_op(x, op, 0, W);
        st = op == OP_CAS_ABSENT ? SHMC_NOT_FOUND : shmc_get(c, k, kl, x->old, mv, &vlen, &fl);
        if (st == SHMC_OK) {
            st = shmc_cas_value(c, k, kl, x->old, vlen, x->val, len, vf, ttl, x->cur, mv,
                                &cur_vlen);
            end_op(x, op, t0, W);
            check_value(on, k, id, x->old, vlen, fl);
            if (expect(x, op, st, B(SHMC_OK) | B(SHMC_STALE) | B(SHMC_NOT_FOUND), t0)) {
                if (st == SHMC_STALE && cur_vlen <= mv)
                    check_value("cas_value (current)", k, id, x->cur, cur_vlen,
                                tu_value_flags(id, cur_vlen));
                if (st == SHMC_NOT_FOUND && cur_vlen)
                    violation("cas_value %s: absent, but the current length is %zu", k, cur_vlen);
                if (st == SHMC_OK)
                    wrote(x, len);
            }
        } else if (st == SHMC_NOT_FOUND) {
            st = shmc_cas_value(c, k, kl, NULL, 0, x->val, len, vf, ttl, x->cur, mv, &cur_vlen);
            end_op(x, op, t0, W);
            if (expect(x, op, st, B(SHMC_OK) | B(SHMC_EXISTS), t0)) {
                if (st == SHMC_EXISTS && cur_vlen <= mv)
                    check_value("cas_value(NULL) (current)", k, id, x->cur, cur_vlen,
                                tu_value_flags(id, cur_vlen));
                if (st == SHMC_OK)
                    wrote(x, len);
            }
        } else {
            end_op(x, op, t0, W);
            expect(x, op, st, found, 0);
        }
        break;
    case OP_DELETE:
        t0 = begin_op(x, op, 0, 0);
        st = shmc_delete(c, k, kl);
        end_op(x, op, t0, 0);
        expect(x, op, st, found, 0); /* never SHMC_ENOMEM */
        break;
    case OP_DELETE_CAS:
    case OP_DELETE_VALUE:
        t0 = begin_op(x, op, 0, 0);
        st = op == OP_DELETE_CAS ? shmc_gets(c, k, kl, x->old, mv, &vlen, &fl, &tok)
                                 : shmc_get(c, k, kl, x->old, mv, &vlen, &fl);
        if (st == SHMC_OK) {
            st = op == OP_DELETE_CAS ? shmc_delete_cas(c, k, kl, tok)
                                     : shmc_delete_value(c, k, kl, x->old, vlen);
            end_op(x, op, t0, 0);
            check_value(on, k, id, x->old, vlen, fl);
            expect(x, op, st, found | B(SHMC_STALE), 0);
        } else {
            end_op(x, op, t0, 0);
            expect(x, op, st, found, 0);
        }
        break;
    case OP_TOUCH:
        t0 = begin_op(x, op, 0, W);
        st = shmc_touch(c, k, kl, ttl);
        end_op(x, op, t0, W);
        expect(x, op, st, found, t0);
        break;
    case OP_GET_AND_TOUCH:
        t0 = begin_op(x, op, 0, W);
        st = shmc_get_and_touch(c, k, kl, ttl, &p, &vlen, &fl);
        end_op(x, op, t0, W);
        if (expect(x, op, st, found, t0) && st == SHMC_OK)
            check_value(on, k, id, p, vlen, fl);
        free(p);
        break;
    default:
        break;
    }
}

/* get_many, set_many, delete_many on a few random k- keys. */
static void op_many(wctx *x, unsigned op)
{
    char keys[MANY][TU_KEY_MAX];
    uint32_t ids[MANY];
    unsigned n = tu_rng_range(&x->r, 2, op == OP_SET_MANY ? 4 : MANY);
    for (unsigned i = 0; i < n; i++) {
        ids[i] = tu_rng_below(&x->r, cfg.keys);
        tu_key(keys[i], "k-", ids[i]);
    }
    snprintf(x->key, sizeof x->key, "%.40s..(%u keys)", keys[0], n);
    x->klen = strlen(x->key);
    const size_t mv = cfg.max_value;
    uint64_t t0;
    shmc_status st;
    if (op == OP_GET_MANY) {
        shmc_get_req q[MANY];
        for (unsigned i = 0; i < n; i++)
            q[i] = (shmc_get_req){.key = keys[i], .klen = strlen(keys[i]),
                                  .buf = x->many + i * mv, .buflen = mv};
        t0 = begin_op(x, op, 0, 0);
        st = shmc_get_many(x->c, q, n);
        end_op(x, op, t0, 0);
        if (!expect(x, op, st, B(SHMC_OK), 0))
            return;
        for (unsigned i = 0; i < n; i++) {
            if (q[i].status == SHMC_OK)
                check_value("get_many", keys[i], ids[i], q[i].buf, q[i].vlen, q[i].flags);
            else if (q[i].status != SHMC_NOT_FOUND)
                violation("get_many %s: status %s", keys[i], shmc_strerror(q[i].status));
        }
    } else if (op == OP_SET_MANY) {
        shmc_set_req q[MANY];
        for (unsigned i = 0; i < n; i++) {
            size_t len = pick_len(x);
            uint8_t *v = x->many + i * mv;
            uint32_t f = make_value(x, v, len, ids[i]);
            q[i] = (shmc_set_req){.key = keys[i], .klen = strlen(keys[i]), .val = v,
                                  .vlen = len, .flags = f, .ttl_ms = pick_ttl(x)};
        }
        t0 = begin_op(x, op, 0, (uint64_t)n * WRITE_BUDGET_MS);
        st = shmc_set_many(x->c, q, n);
        end_op(x, op, t0, (uint64_t)n * WRITE_BUDGET_MS);
        for (unsigned i = 0; i < n; i++) {
            if (q[i].status == SHMC_OK)
                wrote(x, q[i].vlen);
            else if (q[i].status == SHMC_ENOMEM)
                enomem_seen("set_many", keys[i], t0);
            else
                violation("set_many %s: status %s", keys[i], shmc_strerror(q[i].status));
        }
        if (st != SHMC_OK && st != SHMC_ENOMEM)
            violation("set_many: status %s", shmc_strerror(st));
    } else {
        shmc_key_req q[MANY];
        for (unsigned i = 0; i < n; i++)
            q[i] = (shmc_key_req){.key = keys[i], .klen = strlen(keys[i])};
        t0 = begin_op(x, op, 0, 0);
        st = shmc_delete_many(x->c, q, n);
        end_op(x, op, t0, 0);
        if (!expect(x, op, st, B(SHMC_OK), 0))
            return;
        for (unsigned i = 0; i < n; i++)
            if (q[i].status != SHMC_OK && q[i].status != SHMC_NOT_FOUND)
                violation("delete_many %s: status %s", keys[i], shmc_strerror(q[i].status));
    }
}

/* append / prepend of one record to a-<id>; now and then a read, and a
 * trim (delete_value) of a value grown long. */
static void op_append(wctx *x, unsigned op)
{
    uint32_t id = tu_rng_below(&x->r, NAPP);
    set_key(x, "a-", id);
    size_t vlen;
    uint32_t fl;
    uint64_t t0;
    shmc_status st;
    if (tu_rng_below(&x->r, 8) == 0) {
        t0 = begin_op(x, OP_GET, 0, 0);
        st = shmc_get(x->c, x->key, x->klen, x->old, cfg.max_value, &vlen, &fl);
        end_op(x, OP_GET, t0, 0);
        if (expect(x, OP_GET, st, B(SHMC_OK) | B(SHMC_NOT_FOUND), 0) && st == SHMC_OK &&
            check_records("get", x->key, id, x->old, vlen, fl) && vlen >= APP_TRIM) {
            t0 = begin_op(x, OP_DELETE_VALUE, 0, 0);
            st = shmc_delete_value(x->c, x->key, x->klen, x->old, vlen);
            end_op(x, OP_DELETE_VALUE, t0, 0);
            expect(x, OP_DELETE_VALUE, st, B(SHMC_OK) | B(SHMC_NOT_FOUND) | B(SHMC_STALE), 0);
        }
    }
    uint32_t rec[4] = {ID_APP + id, x->w, (uint32_t)atomic_fetch_add(&x->ws->seq, 1), 0};
    rec[3] = rec_check(rec[0], rec[1], rec[2]);
    t0 = begin_op(x, op, 0, 2 * WRITE_BUDGET_MS);
    st = op == OP_APPEND ? shmc_append(x->c, x->key, x->klen, rec, sizeof rec)
                         : shmc_prepend(x->c, x->key, x->klen, rec, sizeof rec);
    bool added = false;
    if (st == SHMC_NOT_FOUND) {
        added = true;
        st = shmc_add(x->c, x->key, x->klen, rec, sizeof rec, app_flags(id), 0);
    }
    end_op(x, op, t0, 2 * WRITE_BUDGET_MS);
    if (expect(x, op, st, B(SHMC_OK) | B(SHMC_EVALLEN) | (added ? B(SHMC_EXISTS) : 0), t0) &&
        st == SHMC_OK)
        wrote(x, sizeof rec);
}

/* incr (incr-only and mixed counters) or decr (mixed counters). */
static void op_counter(wctx *x, bool down)
{
    uint32_t ci = down ? NCTR_INC + NCTR_BIN + tu_rng_below(&x->r, NCTR_MIX)
                       : tu_rng_below(&x->r, NCTR);
    set_key(x, "c-", ci);
    unsigned op = down ? OP_DECR : OP_INCR;
    shmc_status (*fn)(shmc_t *, const void *, size_t, uint64_t, uint64_t, uint64_t, unsigned,
                      uint64_t *) = down ? shmc_decr : shmc_incr;
    const uint64_t bound = 2 * WRITE_BUDGET_MS;
    uint64_t r = 0, init = 0;
    uint64_t t0 = begin_op(x, op, ci, bound);
    shmc_status st = fn(x->c, x->key, x->klen, 1, 0, 0, 0, &r);
    if (st == SHMC_NOT_FOUND) {
        /* Gone (evicted, flushed) or never made: a new life, numbered
         * uniquely, so a result equal to it means we created it. */
        uint64_t life = atomic_fetch_add(&S->next_life[ci], 1);
        init = life * LIFE_UNIT + ctr_base(ci);
        st = fn(x->c, x->key, x->klen, 1, init, 0,
                SHMC_INCR_CREATE | (ctr_is_bin(ci) ? SHMC_INCR_BINARY : 0), &r);
    }
    bool created = init && st == SHMC_OK && r == init;
    if (st == SHMC_OK && !created) {
        uint64_t life = r / LIFE_UNIT;
        if (life == 0 || life >= atomic_load(&S->next_life[ci]))
            violation("%s %s: result %llu lies in no life ever created", op_name[op], x->key,
                      LL(r));
        else if (life < MAX_LIFE)
            atomic_fetch_add(down ? &S->acked_decr[ci][life] : &S->acked_incr[ci][life], 1);
    }
    end_op(x, op, t0, bound); /* only now: a kill before this may have been counted or not */
    if (created)
        atomic_fetch_add(&S->lives_created, 1);
    if (expect(x, op, st, B(SHMC_OK), t0) && st == SHMC_OK)
        wrote(x, 8);
}

static void op_counter_read(wctx *x)
{
    uint32_t ci = tu_rng_below(&x->r, NCTR);
    set_key(x, "c-", ci);
    size_t n;
    uint32_t fl;
    uint64_t v;
    uint64_t t0 = begin_op(x, OP_CTR_READ, 0, 0);
    shmc_status st = shmc_get(x->c, x->key, x->klen, x->old, cfg.max_value, &n, &fl);
    end_op(x, OP_CTR_READ, t0, 0);
    if (!expect(x, OP_CTR_READ, st, B(SHMC_OK) | B(SHMC_NOT_FOUND), 0) || st != SHMC_OK)
        return;
    if (!ctr_parse(ci, x->old, n, &v) || fl != 0 || v / LIFE_UNIT == 0 ||
        v / LIFE_UNIT >= atomic_load(&S->next_life[ci]))
        violation("get %s: not a counter of ours (%zu bytes, flags 0x%x)", x->key, n, fl);
}

/* Waits (bounded) until the killer has reaped worker incarnation `prev`,
 * found in the critical section's owner word when we entered it. */
static void inherited_from(uint64_t prev)
{
    uint32_t pw = (uint32_t)(prev >> 32) - 1, pinc = (uint32_t)prev;
    if (pw >= cfg.workers) {
        violation("lock mx: the critical section's owner word holds 0x%llx", LL(prev));
        return;
    }
    uint64_t end = tu_now_ms() + CS_BUDGET_MS - 2000;
    while (atomic_load(&S->w[pw].inc) <= pinc) {
        if (tu_now_ms() >= end) {
            violation("lock mx: mutual exclusion broken: we hold the lock, and worker %u.%u, "
                      "alive, is in the critical section",
                      pw, pinc);
            return;
        }
        tu_sleep_ms(1);
    }
    atomic_fetch_add(&S->cs_inherited, 1);
}

static void critical_section(wctx *x, uint64_t tok)
{
    const uint64_t me = (uint64_t)(x->w + 1) << 32 | g_inc;
    uint64_t t0 = begin_op(x, OP_CS, 0, CS_BUDGET_MS);
    uint64_t prev = atomic_exchange(&S->cs_owner, me);
    if (prev)
        inherited_from(prev); /* its holder was killed inside */
    if (tok <= S->cs_last_token)
        violation("lock mx: critical section with token %llu ran after token %llu's", LL(tok),
                  LL(S->cs_last_token));
    S->cs_last_token = tok;
    uint64_t v = S->cs_counter; /* non-atomic on purpose */
    if (tu_rng_below(&x->r, 16) == 0)
        sched_yield();
    S->cs_counter = v + 1;
    atomic_fetch_add(&S->cs_acked, 1);
    if (tu_rng_below(&x->r, 4) == 0) {
        shmc_status st = shmc_lock_extend(x->c, "mx", 2, tok, tu_rng_below(&x->r, 2) ? 60000 : 0);
        expect(x, OP_LOCK, st, B(SHMC_OK), 0);
    }
    uint64_t cur = atomic_exchange(&S->cs_owner, 0);
    if (cur != me)
        violation("lock mx: mutual exclusion broken: owner word 0x%llx in our critical section",
                  LL(cur));
    end_op(x, OP_CS, t0, CS_BUDGET_MS);
}

/* The lock "mx": no lease, or one far longer than any critical section, so
 * mutual exclusion must hold strictly. */
static void op_lock(wctx *x)
{
    snprintf(x->key, sizeof x->key, "mx");
    x->klen = 2;
    bool try = tu_rng_below(&x->r, 5) == 0;
    uint64_t timeout = try ? 0 : tu_rng_range(&x->r, 1, 2000);
    uint64_t lease = tu_rng_below(&x->r, 2) ? 0 : 60000, tok = 0;
    uint64_t hi = atomic_load(&S->mx_token_max);
    uint64_t t0 = begin_op(x, OP_LOCK, 0, timeout);
    shmc_status st = try ? shmc_lock_try(x->c, "mx", 2, lease, &tok)
                         : shmc_lock_acquire(x->c, "mx", 2, timeout, lease, &tok);
    end_op(x, OP_LOCK, t0, timeout);
    if ((try && st == SHMC_EBUSY) || (!try && st == SHMC_ETIMEDOUT)) {
        if (!try)
            check_not_early(x, OP_LOCK, timeout);
        atomic_fetch_add(&S->mx_timeouts, 1);
        return;
    }
    if (!expect(x, OP_LOCK, st, B(SHMC_OK), 0))
        return;
    if (tok <= hi)
        violation("lock mx: token %llu, after token %llu was handed out", LL(tok), LL(hi));
    atomic_max_u64(&S->mx_token_max, tok);
    critical_section(x, tok);
    t0 = begin_op(x, OP_LOCK, 1, 0);
    st = shmc_lock_release(x->c, "mx", 2, tok);
    end_op(x, OP_LOCK, t0, 0);
    if (expect(x, OP_LOCK, st, B(SHMC_OK), 0))
        atomic_fetch_add(&S->mx_cycles, 1);
}

/* `call` said SHMC_ENOTOWNER: only right if the lease (set by `by`, which
 * began at lease_from or later) had run out. */
static void check_lease_kept(wctx *x, const char *call, const char *by, uint64_t lease_from,
                             uint64_t lease)
{
    uint64_t now = tu_now_ms();
    if (now + 2 < lease_from + lease)
        violation("%s: %s refused (SHMC_ENOTOWNER) %llu ms into the %llu ms lease set by %s",
                  x->key, call, LL(now - lease_from), LL(lease), by);
    atomic_fetch_add(&S->lease_lost, 1);
}

/* lease-<j>: short leases, often outlived, so takeovers happen; the
 * "storage" behind the lock keeps the highest token it accepted. */
static void op_lease(wctx *x)
{
    uint32_t j = tu_rng_below(&x->r, NLEASE);
    set_key(x, "lease-", j);
    uint64_t lease = tu_rng_range(&x->r, 2, 40), timeout = tu_rng_range(&x->r, 0, 100);
    uint64_t hi = atomic_load(&S->lease_token_max[j]), tok = 0;
    uint64_t t0 = begin_op(x, OP_LEASE, j, timeout);
    shmc_status st = timeout ? shmc_lock_acquire(x->c, x->key, x->klen, timeout, lease, &tok)
                             : shmc_lock_try(x->c, x->key, x->klen, lease, &tok);
    end_op(x, OP_LEASE, t0, timeout);
    if (st == (timeout ? SHMC_ETIMEDOUT : SHMC_EBUSY)) {
        check_not_early(x, OP_LEASE, timeout);
        return;
    }
    if (!expect(x, OP_LEASE, st, B(SHMC_OK), 0))
        return;
    if (tok <= hi)
        violation("%s: token %llu, after token %llu was handed out", x->key, LL(tok), LL(hi));
    atomic_max_u64(&S->lease_token_max[j], tok);
    uint64_t lease_from = t0; /* the lease began no earlier */
    const char *by = "acquire";
    /* Now and then hold it past the lease, so that it is taken over. */
    if (tu_rng_below(&x->r, 32) == 0)
        tu_sleep_ms(tu_rng_range(&x->r, 0, (uint32_t)lease * 2));
    /* Write to the storage the lock protects: it refuses a token older than
     * one it accepted (a holder whose lease ended and was taken over). */
    uint64_t r = atomic_load(&S->lease_resource[j]);
    for (;;) {
        if (tok < r) {
            atomic_fetch_add(&S->fenced, 1);
            break;
        }
        if (tok == r) {
            violation("%s: token %llu handed out twice", x->key, LL(tok));
            break;
        }
        if (atomic_compare_exchange_weak(&S->lease_resource[j], &r, tok))
            break;
    }
    if (tu_rng_below(&x->r, 2) == 0) {
        uint64_t lease2 = tu_rng_range(&x->r, 2, 40), hi2 = atomic_load(&S->lease_token_max[j]);
        uint64_t t1 = begin_op(x, OP_LEASE, j, 0);
        st = shmc_lock_extend(x->c, x->key, x->klen, tok, lease2);
        end_op(x, OP_LEASE, t1, 0);
        if (st == SHMC_ENOTOWNER) {
            check_lease_kept(x, "extend", "acquire", lease_from, lease);
            return;
        }
        if (!expect(x, OP_LEASE, st, B(SHMC_OK), 0))
            return;
        if (hi2 > tok)
            violation("%s: extend with token %llu succeeded after token %llu was handed out",
                      x->key, LL(tok), LL(hi2));
        lease_from = t1;
        lease = lease2;
        by = "extend";
        if (tu_rng_below(&x->r, 32) == 0)
            tu_sleep_ms(tu_rng_range(&x->r, 0, (uint32_t)lease * 2));
    }
    uint64_t hi3 = atomic_load(&S->lease_token_max[j]);
    uint64_t t2 = begin_op(x, OP_LEASE, j, 0);
    st = shmc_lock_release(x->c, x->key, x->klen, tok);
    end_op(x, OP_LEASE, t2, 0);
    if (st == SHMC_ENOTOWNER) {
        check_lease_kept(x, "release", by, lease_from, lease);
    } else if (expect(x, OP_LEASE, st, B(SHMC_OK), 0)) {
        if (hi3 > tok)
            violation("%s: release with token %llu succeeded after token %llu was handed out",
                      x->key, LL(tok), LL(hi3));
        atomic_fetch_add(&S->lease_cycles, 1);
    }
}

/* ch-<n>: more lock names than the table has entries, so entries are
 * recycled all the time; the tokens of each name must still increase. */
static void op_churn(wctx *x)
{
    uint32_t n = tu_rng_below(&x->r, NCHURN);
    set_key(x, "ch-", n);
    uint64_t timeout = tu_rng_below(&x->r, 3) ? 0 : tu_rng_range(&x->r, 1, 50), tok = 0;
    uint64_t hi = atomic_load(&S->churn_token_max[n]);
    uint64_t t0 = begin_op(x, OP_CHURN, 0, timeout);
    shmc_status st = timeout ? shmc_lock_acquire(x->c, x->key, x->klen, timeout, 0, &tok)
                             : shmc_lock_try(x->c, x->key, x->klen, 0, &tok);
    end_op(x, OP_CHURN, t0, timeout);
    if (st == (timeout ? SHMC_ETIMEDOUT : SHMC_EBUSY)) {
        check_not_early(x, OP_CHURN, timeout);
        return;
    }
    if (!expect(x, OP_CHURN, st, B(SHMC_OK), 0))
        return;
    if (tok <= hi)
        violation("%s: token %llu, after token %llu was handed out", x->key, LL(tok), LL(hi));
    atomic_max_u64(&S->churn_token_max[n], tok);
    t0 = begin_op(x, OP_CHURN, 1, 0);
    st = shmc_lock_release(x->c, x->key, x->klen, tok);
    end_op(x, OP_CHURN, t0, 0);
    if (expect(x, OP_CHURN, st, B(SHMC_OK), 0))
        atomic_fetch_add(&S->churn_cycles, 1);
}

/* The error a failed fill hands to its callers: ours, or the one a leader
 * whose store failed (SHMC_ENOMEM in a stall) reports. */
static void check_fill_error(wctx *x, const shmc_fill *f)
{
    char want[SHMC_FILL_MSG_MAX];
    snprintf(want, sizeof want, "torture fill error %d", (int)f->error);
    bool ours = f->error >= FILL_ERR_BASE - 1 && /* - 1: the parent's */
                f->error < FILL_ERR_BASE + (int32_t)cfg.workers && strcmp(f->message, want) == 0;
    bool store_failed = f->error == -1 && strcmp(f->message, shmc_strerror(SHMC_ENOMEM)) == 0;
    if (!ours && !store_failed)
        violation("fill %s: SHMC_EFILL with error %d \"%s\"", x->key, (int)f->error, f->message);
    else
        count_checked();
    atomic_fetch_add(&S->fill_errors, 1);
}

typedef struct fill_ctx {
    wctx *x;
    uint32_t id;
    bool ran;
    uint64_t ms; /* time spent in the callback */
} fill_ctx;

static int32_t fill_cb(void *p, const void *key, size_t klen, shmc_fill_out *out)
{
    (void)key, (void)klen;
    fill_ctx *f = p;
    wctx *x = f->x;
    uint64_t t = tu_now_ms();
    f->ran = true;
    atomic_fetch_add(&S->fills_computed, 1);
    uint32_t d = tu_rng_below(&x->r, 100);
    if (d >= 80) /* now and then slow, so that others wait for us */
        tu_sleep_ms(d < 97 ? tu_rng_range(&x->r, 1, 2) : tu_rng_range(&x->r, 5, 20));
    if (tu_rng_below(&x->r, 10) == 0) {
        int32_t code = FILL_ERR_BASE + (int32_t)x->w;
        snprintf(out->message, sizeof out->message, "torture fill error %d", (int)code);
        f->ms = tu_now_ms() - t;
        return code;
    }
    size_t len = tu_rng_range(&x->r, TU_VHDR, 3000);
    uint8_t *v = malloc(len);
    if (!v)
        return -2;
    out->flags = make_value(x, v, len, ID_FILL + f->id);
    out->val = v;
    out->vlen = len;
    f->ms = tu_now_ms() - t;
    return 0;
}

static shmc_fill_opts pick_fill_opts(wctx *x, bool short_deadline)
{
    return (shmc_fill_opts){
        .ttl_ms = tu_rng_below(&x->r, 4) ? tu_rng_range(&x->r, 50, 3000) : 0,
        .wait_ms = tu_rng_range(&x->r, 100, 3000),
        .fill_ms = short_deadline ? tu_rng_range(&x->r, 30, 60) : tu_rng_range(&x->r, 500, 3000),
        .error_ttl_ms = tu_rng_below(&x->r, 2) ? tu_rng_range(&x->r, 10, 200) : 0,
        .refresh_ms = tu_rng_below(&x->r, 5) ? 0 : tu_rng_range(&x->r, 20, 500),
    };
}

/* Outcomes every fill caller may see besides SHMC_OK and SHMC_LEADER. */
static void fill_other(wctx *x, unsigned op, shmc_status st, const shmc_fill *f,
                       uint64_t wait_ms, uint64_t t0)
{
    if (st == SHMC_EFILL) {
        check_fill_error(x, f);
    } else if (st == SHMC_ETIMEDOUT) {
        check_not_early(x, op, wait_ms);
        atomic_fetch_add(&S->fill_timeouts, 1);
    } else {
        expect(x, op, st, B(SHMC_OK), t0);
    }
}

static void op_fill(wctx *x)
{
    uint32_t id = tu_rng_below(&x->r, NFILL);
    set_key(x, "f-", id);
    if (tu_rng_below(&x->r, 10) == 0) { /* make the next callers miss */
        uint64_t t = begin_op(x, OP_DELETE, 0, 0);
        shmc_status st = shmc_delete(x->c, x->key, x->klen);
        end_op(x, OP_DELETE, t, 0);
        expect(x, OP_DELETE, st, B(SHMC_OK) | B(SHMC_NOT_FOUND), 0);
    }
    shmc_fill_opts o = pick_fill_opts(x, false);
    fill_ctx fc = {.x = x, .id = id};
    shmc_fill f;
    void *v = NULL;
    size_t vlen = 0;
    uint32_t fl = 0;
    uint64_t t0 = begin_op(x, OP_FILL, 0, o.wait_ms + WRITE_BUDGET_MS);
    shmc_status st = shmc_get_or_fill(x->c, x->key, x->klen, fill_cb, &fc, &o, &v, &vlen, &fl, &f);
    /* Bound: the wait, plus (as the leader) our callback and the store. */
    end_op(x, OP_FILL, t0 + fc.ms, o.wait_ms + (fc.ran ? WRITE_BUDGET_MS : 0));
    x->wall_ms += fc.ms; /* a timeout is judged on the whole call */
    if (st == SHMC_OK)
        check_value("get_or_fill", x->key, ID_FILL + id, v, vlen, fl);
    else
        fill_other(x, OP_FILL, st, &f, o.wait_ms, t0);
    free(v);
}

/* fill_begin, then as the leader finish or abort: at once, just before a
 * short deadline (nobody may take over yet), or past it (someone may). */
static void op_fill_split(wctx *x)
{
    uint32_t id = tu_rng_below(&x->r, NFILL);
    set_key(x, "f-", id);
    uint32_t how = tu_rng_below(&x->r, 100); /* <72 finish, <76 tight, <96 abort, else late */
    bool tight = how >= 72 && how < 76, late = how >= 96;
    shmc_fill_opts o = pick_fill_opts(x, tight || late);
    shmc_fill f;
    void *v = NULL;
    size_t vlen = 0;
    uint32_t fl = 0;
    uint64_t t0 = begin_op(x, OP_FILL_SPLIT, 0, o.wait_ms);
    shmc_status st = shmc_fill_begin(x->c, x->key, x->klen, &o, &v, &vlen, &fl, &f);
    end_op(x, OP_FILL_SPLIT, t0, o.wait_ms);
    if (st == SHMC_OK) {
        check_value("fill_begin", x->key, ID_FILL + id, v, vlen, fl);
        free(v);
        return;
    }
    if (st != SHMC_LEADER) {
        fill_other(x, OP_FILL_SPLIT, st, &f, o.wait_ms, 0);
        return;
    }
    if (v)
        violation("fill_begin %s: SHMC_LEADER with a value", x->key);
    atomic_fetch_add(&S->fills_computed, 1);
    if (late)
        tu_sleep_ms((uint32_t)o.fill_ms + tu_rng_range(&x->r, 5, 20));
    else if (tight)
        tu_sleep_ms((uint32_t)o.fill_ms - 20);
    else if (tu_rng_below(&x->r, 8) == 0)
        tu_sleep_ms(tu_rng_range(&x->r, 1, 3));
    uint64_t t1;
    if (how < 76 || late) {
        size_t len = tu_rng_range(&x->r, TU_VHDR, 3000);
        uint32_t vf = make_value(x, x->val, len, ID_FILL + id);
        t1 = begin_op(x, OP_FILL_SPLIT, 1, WRITE_BUDGET_MS);
        st = shmc_fill_finish(x->c, &f, x->val, len, vf, o.ttl_ms);
        end_op(x, OP_FILL_SPLIT, t1, WRITE_BUDGET_MS);
    } else {
        int32_t code = FILL_ERR_BASE + (int32_t)x->w;
        char msg[SHMC_FILL_MSG_MAX];
        snprintf(msg, sizeof msg, "torture fill error %d", (int)code);
        t1 = begin_op(x, OP_FILL_SPLIT, 2, 0);
        st = shmc_fill_abort(x->c, &f, code, msg, o.error_ttl_ms);
        end_op(x, OP_FILL_SPLIT, t1, 0);
    }
    if (st == SHMC_ENOTOWNER) {
        /* Only a leader past its deadline may be replaced (we are alive). */
        if (tu_now_ms() + 2 < t0 + o.fill_ms)
            violation("fill %s: leader refused %llu ms into a %llu ms fill deadline", x->key,
                      LL(tu_now_ms() - t0), LL(o.fill_ms));
        atomic_fetch_add(&S->late_refused, 1);
        return;
    }
    expect(x, OP_FILL_SPLIT, st, B(SHMC_OK), t1);
}

/* While the parent holds lock "slow" and leads fill f-<NFILL> (for 2.5..5 s),
 * waiters must time out at their deadlines: not earlier, not much later;
 * and none may get the lock or lead the fill meanwhile. */
static void op_slow_wait(wctx *x, uint32_t max_timeout)
{
    uint64_t g = atomic_load(&S->slow_gen), timeout = tu_rng_range(&x->r, 1, max_timeout), tok;
    if (timeout < max_timeout / 20)
        timeout = max_timeout / 20;
    if (!(g & 1))
        return; /* not held now: nothing to wait for */
    bool fill = tu_rng_below(&x->r, 2);
    if (fill)
        set_key(x, "f-", NFILL);
    else
        x->klen = (size_t)snprintf(x->key, sizeof x->key, "slow");
    uint64_t t0 = begin_op(x, OP_SLOW_WAIT, 0, timeout);
    shmc_fill f;
    shmc_fill_opts o = {.wait_ms = timeout, .fill_ms = 5000};
    void *v = NULL;
    size_t vlen = 0;
    uint32_t fl = 0;
    shmc_status st = fill ? shmc_fill_begin(x->c, x->key, x->klen, &o, &v, &vlen, &fl, &f)
                          : shmc_lock_acquire(x->c, x->key, x->klen, timeout, 0, &tok);
    end_op(x, OP_SLOW_WAIT, t0, timeout);
    bool held = atomic_load(&S->slow_gen) == g;
    if (st == SHMC_ETIMEDOUT) {
        check_not_early(x, OP_SLOW_WAIT, timeout);
        atomic_fetch_add(&S->slow_timeouts, 1);
    } else if (st == SHMC_OK && !fill) {
        if (held)
            violation("lock slow: acquired (token %llu) while the parent holds it", LL(tok));
        st = shmc_lock_release(x->c, x->key, x->klen, tok);
        expect(x, OP_SLOW_WAIT, st, B(SHMC_OK), 0);
    } else if (st == SHMC_OK) {
        check_value("fill_begin", x->key, ID_FILL + NFILL, v, vlen, fl);
    } else if (st == SHMC_LEADER) {
        if (held)
            violation("fill %s: led by us while the parent leads it", x->key);
        size_t len = tu_rng_range(&x->r, TU_VHDR, 3000);
        uint32_t vf = make_value(x, x->val, len, ID_FILL + NFILL);
        uint64_t t1 = begin_op(x, OP_SLOW_WAIT, 1, WRITE_BUDGET_MS);
        st = shmc_fill_finish(x->c, &f, x->val, len, vf, 1000);
        end_op(x, OP_SLOW_WAIT, t1, WRITE_BUDGET_MS);
        expect(x, OP_SLOW_WAIT, st, B(SHMC_OK), t1);
    } else if (st == SHMC_EFILL) {
        check_fill_error(x, &f);
    } else {
        expect(x, OP_SLOW_WAIT, st, 0, 0);
    }
    free(v);
}

static void op_flush(wctx *x)
{
    snprintf(x->key, sizeof x->key, "(all)");
    uint64_t t0 = begin_op(x, OP_FLUSH, 0, 0);
    shmc_status st = shmc_flush(x->c);
    end_op(x, OP_FLUSH, t0, 0);
    expect(x, OP_FLUSH, st, B(SHMC_OK), 0);
}

static void one_op(wctx *x)
{
    if (cfg.flush_every && tu_rng_below(&x->r, cfg.flush_every) == 0) {
        op_flush(x);
        return;
    }
    uint32_t p = tu_rng_below(&x->r, op_total);
    unsigned op = 0;
    while (op_cumul[op] <= p)
        op++;
    switch (op) {
    case OP_GET_MANY:
    case OP_SET_MANY:
    case OP_DELETE_MANY:
        op_many(x, op);
        break;
    case OP_APPEND:
    case OP_PREPEND:
        op_append(x, op);
        break;
    case OP_INCR:
    case OP_DECR:
        op_counter(x, op == OP_DECR);
        break;
    case OP_CTR_READ:
        op_counter_read(x);
        break;
    case OP_LOCK:
        op_lock(x);
        break;
    case OP_LEASE:
        op_lease(x);
        break;
    case OP_CHURN:
        op_churn(x);
        break;
    case OP_FILL:
        op_fill(x);
        break;
    case OP_FILL_SPLIT:
        op_fill_split(x);
        break;
    case OP_SLOW_WAIT:
        op_slow_wait(x, 50);
        break;
    default:
        op_kv(x, op);
        break;
    }
}

/* Every child: messages name it; it dies with the parent; a watchdog. */
static void child_setup(int who)
{
    g_who = who;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != g_parent)
        _exit(0);
    alarm(cfg.seconds + 300); /* tu_fork's 120 s would end a long soak */
}

static int worker_main(void *arg)
{
    uint32_t w = *(const uint32_t *)arg;
    child_setup((int)w);
    wctx x = {.w = w, .ws = &S->w[w]};
    g_inc = atomic_load(&x.ws->inc);
    g_checked = &x.ws->checked;
    tu_rng_seed(&x.r, cfg.seed * 0x9e3779b97f4a7c15ull + ((uint64_t)w << 32) + g_inc);
    shmc_status st = shmc_open(cfg.name, NULL, &x.c);
    if (st != SHMC_OK) {
        violation("shmc_open: %s", shmc_strerror(st));
        return 1;
    }
    size_t mv = cfg.max_value;
    x.val = malloc(mv);
    x.old = malloc(mv);
    x.cur = malloc(mv);
    x.many = malloc(MANY * mv);
    if (!x.val || !x.old || !x.cur || !x.many) {
        violation("out of memory");
        return 1;
    }
    /* The prober (never killed) only waits on the parent's slow holds, long
     * enough that a wait overrunning its deadline shows in full. */
    bool prober = w == cfg.workers;
    while (!atomic_load_explicit(&S->stop, memory_order_relaxed)) {
        if (!prober)
            one_op(&x);
        else if (atomic_load(&S->slow_gen) & 1)
            op_slow_wait(&x, 400);
        else
            tu_sleep_ms(2);
    }
    free(x.val);
    free(x.old);
    free(x.cur);
    free(x.many);
    shmc_close(x.c);
    return 0;
}

/* Reads key <prefix><n> (k-, f- or a-) into buf and checks what comes
 * back; absent is fine. */
static void read_and_check(shmc_t *c, const char *prefix, uint32_t n, uint8_t *buf)
{
    char key[TU_KEY_MAX];
    size_t kl = tu_key(key, prefix, n), vlen;
    uint32_t fl;
    shmc_status st = shmc_get(c, key, kl, buf, cfg.max_value, &vlen, &fl);
    if (st == SHMC_NOT_FOUND)
        return;
    if (st != SHMC_OK)
        violation("get %s: %s", key, shmc_strerror(st));
    else if (prefix[0] == 'a')
        check_records("get", key, n, buf, vlen, fl);
    else
        check_value("get", key, prefix[0] == 'f' ? ID_FILL + n : n, buf, vlen, fl);
}

static void read_some(shmc_t *c, uint8_t *buf, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        read_and_check(c, "k-", (i * 7919u) % cfg.keys, buf);
}

/* The start of a stall's reader: the cache opened and a value buffer;
 * false (a violation) when either fails. */
static bool reader_open(shmc_t **c, uint8_t **buf)
{
    child_setup(WHO_READER);
    g_checked = &S->parent_checked;
    shmc_status st = shmc_open(cfg.name, NULL, c);
    *buf = malloc(cfg.max_value);
    if (st != SHMC_OK || !*buf) {
        violation("shmc_open: %s", shmc_strerror(st));
        return false;
    }
    return true;
}

/* A looping reader of a stall: checks values until told to quit, and is
 * stopped (SIGSTOP) by the parent at whatever point of a get it is. */
static int loop_reader_main(void *arg)
{
    (void)arg;
    shmc_t *c;
    uint8_t *buf;
    if (!reader_open(&c, &buf))
        return 1;
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)getpid());
    while (!atomic_load(&S->readers_quit)) {
        read_and_check(c, "k-", tu_rng_below(&r, cfg.keys), buf);
        atomic_fetch_add(&S->reader_gets, 1);
    }
    free(buf);
    shmc_close(c);
    return 0;
}

/* The stalled reader: stops itself inside a read section. */
static int reader_main(void *arg)
{
    (void)arg;
    shmc_t *c;
    uint8_t *buf;
    if (!reader_open(&c, &buf))
        return 1;
    read_some(c, buf, 200);
    shmc_status st;
    if ((st = shmc__test_read_enter(c)) != SHMC_OK) {
        violation("read_enter: %s", shmc_strerror(st));
        return 2;
    }
    atomic_store(&S->reader_state, 1);
    raise(SIGSTOP);
    shmc__test_read_exit(c);
    atomic_store(&S->reader_state, 2);
    read_some(c, buf, 200); /* the handle still works */
    free(buf);
    shmc_close(c);
    return 0;
}

/* Writes `bytes` of new keys (prefix, numbered from *n) in values of 3000
 * bytes: every write must succeed. */
static bool write_fresh(shmc_t *c, const char *prefix, uint32_t *n, uint64_t bytes,
                        const char *when)
{
    uint8_t buf[3000];
    uint64_t done = 0;
    while (done < bytes) {
        char key[TU_KEY_MAX];
        uint32_t i = (*n)++;
        size_t kl = tu_key(key, prefix, i);
        tu_value_fill(buf, sizeof buf, ID_PROBE + i, PARENT_WRITER, i);
        uint64_t t0 = tu_now_ms();
        shmc_status st =
            shmc_set(c, key, kl, buf, sizeof buf, tu_value_flags(ID_PROBE + i, sizeof buf), 0);
        note_time(OP_PROBE, tu_now_ms() - t0, WRITE_BUDGET_MS, key);
        if (st != SHMC_OK) {
            violation("%s: write %s (after %llu of %llu bytes): %s", when, key, LL(done),
                      LL(bytes), shmc_strerror(st));
            return false;
        }
        done += tu_item_bytes(kl, sizeof buf);
    }
    return true;
}

static int refill_main(void *arg)
{
    (void)arg;
    child_setup(WHO_REFILL);
    shmc_t *c;
    shmc_status st = shmc_open(cfg.name, NULL, &c);
    if (st != SHMC_OK) {
        violation("shmc_open: %s", shmc_strerror(st));
        return 1;
    }
    shmc_info in;
    shmc_info_get(c, &in);
    uint32_t n = 0;
    bool ok = write_fresh(c, "r-", &n, 2 * in.data_bytes, "refill from a fresh process");
    shmc_close(c);
    return ok ? 0 : 2;
}

/* ---- the parent: killer, checker, conductor ---- */

#define NLOOPERS 2         /* readers stopped mid-get in each stall */
#define STOP_MS 3000u      /* how long a stall keeps its participants stopped */

static struct parent {
    shmc_t *c;
    shmc_info info;
    tu_rng r;
    pid_t pid[MAX_WORKERS + 1]; /* the workers, then the prober */
    uint32_t idx[MAX_WORKERS + 1];
    volatile pid_t reader, helper;
    volatile pid_t loopers[NLOOPERS];
    bool killing, stopping;
    unsigned kill_slow; /* kill intervals are stretched by this (a stall: 10) */
    uint64_t t_start, next_kill, next_verify, next_progress;
    uint64_t kills, kills_by_op[OP_COUNT], kills_incr[NCTR], kills_decr[NCTR], kills_cs;
    uint64_t deaths, hangs, verify_runs, verify_retries, stalls, stall_enomem, inconclusive;
    uint64_t stall_bytes, stall_ejections;
    uint64_t probe_bytes, lives_checked, lives_unchecked;
    uint32_t probe_n;
    /* the slow holder */
    bool slow_on, slow_holding;
    uint64_t next_slow, slow_until, slow_tok, slow_holds;
    shmc_fill slow_fill;
} P;

static void on_signal(int sig)
{
    if (getpid() != g_parent)
        _exit(128 + sig);
    const char *m = sig == SIGALRM
                        ? "torture: WATCHDOG: the run did not end in time; killing everything\n"
                        : "torture: interrupted; killing everything\n";
    ssize_t r = write(2, m, strlen(m));
    (void)r;
    for (unsigned w = 0; w <= MAX_WORKERS; w++)
        if (P.pid[w] > 0)
            kill(P.pid[w], SIGKILL);
    if (P.reader > 0)
        kill(P.reader, SIGKILL);
    for (unsigned i = 0; i < NLOOPERS; i++)
        if (P.loopers[i] > 0)
            kill(P.loopers[i], SIGKILL);
    if (P.helper > 0)
        kill(P.helper, SIGKILL);
    shm_unlink(g_shm_path);
    _exit(sig == SIGALRM ? 3 : 130);
}

static void spawn(uint32_t w)
{
    P.idx[w] = w;
    pid_t pid = tu_fork(worker_main, &P.idx[w]);
    if (pid < 0) {
        fprintf(stderr, "torture: fork: %s\n", strerror(errno));
        on_signal(SIGTERM);
    }
    P.pid[w] = pid;
}

static int reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

static const char *status_str(int st, char *buf, size_t n)
{
    if (WIFEXITED(st))
        snprintf(buf, n, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, n, "status 0x%x", st);
    return buf;
}

/* SIGKILLs worker w, reaps it, notes what it was doing, respawns it. */
static void kill_worker(uint32_t w, bool hung)
{
    pid_t pid = P.pid[w];
    kill(pid, SIGKILL);
    int st = reap(pid);
    P.pid[w] = 0;
    wstate *ws = &S->w[w];
    uint32_t op = atomic_load(&ws->op), kind = op >> 16, arg = op & 0xffff;
    if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        char b[80];
        violation("worker %u (pid %ld) ended on its own before it was killed: %s", w, (long)pid,
                  st == -1 ? "not reaped" : status_str(st, b, sizeof b));
        P.deaths++;
    } else if (!hung) {
        P.kills++;
        if (kind < OP_COUNT)
            P.kills_by_op[kind]++;
        if (kind == OP_INCR && arg < NCTR)
            P.kills_incr[arg]++;
        if (kind == OP_DECR && arg < NCTR)
            P.kills_decr[arg]++;
        if (kind == OP_CS)
            P.kills_cs++;
    }
    atomic_store(&ws->op, 0);
    atomic_fetch_add(&ws->inc, 1); /* after this, its critical section may be inherited */
    if (!P.stopping)
        spawn(w);
}

/* Notices workers that died on their own, and workers stuck in a call. */
static void watch_workers(void)
{
    uint64_t now = tu_now_ms();
    for (uint32_t w = 0; w <= cfg.workers; w++) {
        if (!P.pid[w])
            continue;
        wstate *ws = &S->w[w];
        int st;
        pid_t r = waitpid(P.pid[w], &st, WNOHANG);
        if (r == P.pid[w]) {
            P.pid[w] = 0;
            if (!P.stopping || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                char b[80];
                violation("worker %u ended on its own: %s", w, status_str(st, b, sizeof b));
                P.deaths++;
            }
            atomic_store(&ws->op, 0);
            atomic_fetch_add(&ws->inc, 1);
            if (!P.stopping)
                spawn(w);
            continue;
        }
        uint32_t op = atomic_load(&ws->op);
        uint64_t t = atomic_load(&ws->op_start), bound = atomic_load(&ws->op_budget);
        if (!op || op != atomic_load(&ws->op) || t != atomic_load(&ws->op_start) || t > now)
            continue;
        if (now - t > bound + cfg.slack_ms + HANG_EXTRA_MS) {
            violation("worker %u.%u hung: in %s for %llu ms (bound %llu ms); killing it", w,
                      atomic_load(&ws->inc), op_name[(op >> 16) % OP_COUNT], LL(now - t),
                      LL(bound));
            P.hangs++;
            kill_worker(w, true);
        }
    }
}

static bool verify_ok(const char *when, bool quiet, shmc_verify_report *rep)
{
    for (unsigned attempt = 0;; attempt++) {
        shmc_status st = shmc_verify(P.c, rep);
        P.verify_runs++;
        if (st == SHMC_OK)
            return true;
        bool only_orphans = st == SHMC_ECORRUPT && rep->orphan_segments && !rep->bad_offsets &&
                            !rep->bad_items && !rep->misplaced && !rep->in_dead_segments &&
                            !rep->duplicates && !rep->segment_errors;
        /* A worker killed between verify's own recovery and its scan leaves
         * an orphan that the next pass recovers: only a lasting one counts. */
        if (!quiet && only_orphans && attempt < 5) {
            P.verify_retries++;
            tu_sleep_ms(5);
            continue;
        }
        violation("%s: shmc_verify: %s: %s (items %llu, bad offsets %llu, bad items %llu, "
                  "misplaced %llu, in dead segments %llu, duplicates %llu, segment errors %llu, "
                  "orphan segments %llu)",
                  when, shmc_strerror(st), rep->first_error, LL(rep->items), LL(rep->bad_offsets),
                  LL(rep->bad_items), LL(rep->misplaced), LL(rep->in_dead_segments),
                  LL(rep->duplicates), LL(rep->segment_errors), LL(rep->orphan_segments));
        return false;
    }
}

static uint64_t sum_ops(void)
{
    uint64_t n = 0;
    for (unsigned w = 0; w <= cfg.workers; w++)
        for (unsigned k = 0; k < OP_COUNT; k++)
            n += atomic_load_explicit(&S->w[w].ops[k], memory_order_relaxed);
    return n;
}

static uint64_t sum_checked(void)
{
    uint64_t n = atomic_load(&S->parent_checked);
    for (unsigned w = 0; w <= cfg.workers; w++)
        n += atomic_load_explicit(&S->w[w].checked, memory_order_relaxed);
    return n;
}

static uint64_t sum_bytes(void)
{
    uint64_t n = 0;
    for (unsigned w = 0; w <= cfg.workers; w++)
        n += atomic_load_explicit(&S->w[w].bytes, memory_order_relaxed);
    return n;
}

static double since_start(void)
{
    return (double)(tu_now_ms() - P.t_start) / 1000.0;
}

/* Starts or ends a slow hold by the parent when due (or, with `end`, ends
 * one now): lock "slow" and the fill of f-<NFILL> for 2.5..5 s. */
static void slow_step(bool end)
{
    uint64_t now = tu_now_ms();
    char key[TU_KEY_MAX];
    size_t kl = tu_key(key, "f-", NFILL);
    shmc_status st;
    if (P.slow_holding && (end || now >= P.slow_until)) {
        atomic_fetch_add(&S->slow_gen, 1); /* even: not held (waiters judge by it) */
        if ((st = shmc_lock_release(P.c, "slow", 4, P.slow_tok)) != SHMC_OK)
            violation("lock slow: release after %llu ms: %s", LL(now - P.slow_until),
                      shmc_strerror(st));
        char msg[SHMC_FILL_MSG_MAX];
        snprintf(msg, sizeof msg, "torture fill error %d", FILL_ERR_BASE - 1);
        if ((st = shmc_fill_abort(P.c, &P.slow_fill, FILL_ERR_BASE - 1, msg, 0)) != SHMC_OK)
            violation("fill %s: the parent's abort: %s", key, shmc_strerror(st));
        P.slow_holding = false;
        P.slow_holds++;
        P.next_slow = now + tu_rng_range(&P.r, 5000, 12000);
        return;
    }
    if (P.slow_holding || !P.slow_on || end || now < P.next_slow)
        return;
    P.next_slow = now + 1000; /* if this fails, try again soon */
    st = shmc_lock_acquire(P.c, "slow", 4, 1000, 0, &P.slow_tok);
    if (st == SHMC_ETIMEDOUT)
        return; /* a worker that got it after the last hold was just killed, or slow */
    if (st != SHMC_OK) {
        violation("lock slow: the parent's acquire: %s", shmc_strerror(st));
        return;
    }
    void *v = NULL;
    size_t vlen;
    shmc_fill_opts o = {.wait_ms = 1000, .fill_ms = 60000};
    shmc_delete(P.c, key, kl);
    st = shmc_fill_begin(P.c, key, kl, &o, &v, &vlen, NULL, &P.slow_fill);
    free(v);
    if (st != SHMC_LEADER) { /* a worker leads it (or just did): later */
        shmc_lock_release(P.c, "slow", 4, P.slow_tok);
        return;
    }
    atomic_fetch_add(&S->slow_gen, 1); /* odd: held */
    P.slow_holding = true;
    P.slow_until = now + tu_rng_range(&P.r, 2500, 5000);
}

/* One step of the parent's loop: kill when due, verify when due, watch. */
static void tick(void)
{
    uint64_t now = tu_now_ms();
    slow_step(false);
    if (P.killing && now >= P.next_kill) {
        kill_worker(tu_rng_below(&P.r, cfg.workers), false);
        P.next_kill = tu_now_ms() + tu_rng_range(&P.r, 1, cfg.kill_ms * P.kill_slow);
    }
    if (now >= P.next_verify) {
        shmc_verify_report rep;
        verify_ok("periodic check", false, &rep);
        uint8_t *buf = malloc(cfg.max_value);
        for (unsigned i = 0; buf && i < 64; i++)
            read_and_check(P.c, "k-", tu_rng_below(&P.r, cfg.keys), buf);
        free(buf);
        P.next_verify = tu_now_ms() + VERIFY_EVERY_MS;
    }
    if (now >= P.next_progress) {
        printf("[%6.1f s] kills %llu, ops %llu, checked %llu, violations %llu\n", since_start(),
               LL(P.kills), LL(sum_ops()), LL(sum_checked()), LL(atomic_load(&S->violations)));
        P.next_progress = now + PROGRESS_EVERY_MS;
    }
    watch_workers();
    tu_sleep_ms(1);
}

static void run_for(uint64_t ms)
{
    uint64_t end = tu_now_ms() + ms;
    while (tu_now_ms() < end)
        tick();
}

/* Stops a process and waits until it is stopped: true when it is. */
static bool stop_and_wait(pid_t pid)
{
    if (pid <= 0 || kill(pid, SIGSTOP) != 0)
        return false;
    uint64_t end = tu_now_ms() + 10000;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG | WUNTRACED);
        if (r == pid && WIFSTOPPED(st))
            return true;
        if (r == pid || tu_now_ms() > end)
            return false;
        tu_sleep_ms(1);
    }
}

/* Stops, all at once and for STOP_MS: a reader inside a read section (it
 * stops itself there), NLOOPERS readers at whatever point of a get they are,
 * and one worker at whatever point of whatever call (it may hold a key's
 * stripe lock, a storage segment it is writing into, a named lock).  The
 * other workers go on: no write may fail with SHMC_ENOMEM (the stopped
 * readers are ejected, and the stopped writer pins only the segments it
 * holds), and they must keep writing.  Then the readers are resumed (with
 * !resume, killed) and the worker resumed: every value the resumed readers
 * return is checked as always, and writes succeed. */
static bool start_stopped_reader(void)
{
    P.reader = tu_fork(reader_main, NULL);
    uint64_t end = tu_now_ms() + 30000;
    while (P.reader > 0 && tu_now_ms() < end) {
        int st;
        pid_t r = waitpid(P.reader, &st, WNOHANG | WUNTRACED);
        if (r == P.reader && WIFSTOPPED(st))
            return true;
        if (r == P.reader) {
            char b[80];
            violation("stalled reader ended before it stopped: %s", status_str(st, b, sizeof b));
            P.reader = 0;
            return false;
        }
        tick();
    }
    violation("stalled reader did not stop within 30 s");
    if (P.reader > 0) {
        kill(P.reader, SIGKILL);
        reap(P.reader);
        P.reader = 0;
    }
    return false;
}

static void end_loopers(bool resume)
{
    atomic_store(&S->readers_quit, 1);
    for (unsigned i = 0; i < NLOOPERS; i++) {
        pid_t pid = P.loopers[i];
        if (pid <= 0)
            continue;
        kill(pid, resume ? SIGCONT : SIGKILL);
        uint64_t end = tu_now_ms() + 15000;
        int st = 0;
        pid_t r;
        while ((r = waitpid(pid, &st, WNOHANG)) == 0 && tu_now_ms() < end)
            tick();
        if (r != pid) {
            violation("resumed looping reader did not exit within 15 s");
            kill(pid, SIGKILL);
            reap(pid);
        } else if (resume ? (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                          : (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)) {
            char b[80];
            violation("looping reader: %s", status_str(st, b, sizeof b));
        }
        P.loopers[i] = 0;
    }
}

static void stall_phase(bool resume)
{
    const char *how = resume ? "SIGCONT" : "SIGKILL";
    P.stalls++;
    atomic_store(&S->reader_state, 0);
    atomic_store(&S->readers_quit, 0);
    atomic_store(&S->stall_until, UINT64_MAX);
    atomic_store(&S->stall_from, tu_now_ms());
    P.slow_on = false;
    slow_step(true);
    uint64_t enomem0 = atomic_load(&S->enomem);
    shmc_stats st0;
    shmc_stats_get(P.c, &st0);
    P.kill_slow = 10;
    if (!start_stopped_reader()) {
        atomic_store(&S->stall_until, tu_now_ms());
        P.kill_slow = 1;
        P.slow_on = true;
        return;
    }
    unsigned nloop = 0;
    for (unsigned i = 0; i < NLOOPERS; i++) {
        P.loopers[i] = tu_fork(loop_reader_main, NULL);
        run_for(tu_rng_range(&P.r, 20, 200));
        nloop += stop_and_wait(P.loopers[i]);
    }
    uint32_t sw = tu_rng_below(&P.r, cfg.workers);
    pid_t spid = P.pid[sw];
    bool wstopped = stop_and_wait(spid);
    uint64_t t_stop = tu_now_ms(), bytes0 = sum_bytes();
    run_for(STOP_MS);
    uint64_t wrote = sum_bytes() - bytes0, enomem = atomic_load(&S->enomem) - enomem0;
    if (enomem)
        violation("%llu writes failed with SHMC_ENOMEM while participants were stopped",
                  LL(enomem));
    if (!wrote)
        violation("the workers wrote nothing in the %u ms participants were stopped", STOP_MS);
    P.stall_enomem += enomem;
    P.stall_bytes += wrote;
    /* Resume the worker (unless the killer took it meanwhile). */
    if (wstopped && P.pid[sw] == spid) {
        atomic_fetch_add(&S->w[sw].paused_ms, tu_now_ms() - t_stop);
        kill(spid, SIGCONT);
    }
    if (resume) {
        kill(P.reader, SIGCONT);
        uint64_t end = tu_now_ms() + 15000;
        while (atomic_load(&S->reader_state) != 2 && tu_now_ms() < end)
            tick();
        if (atomic_load(&S->reader_state) != 2)
            violation("stalled reader did not leave its read section within 15 s of SIGCONT");
    } else {
        kill(P.reader, SIGKILL);
        int st = reap(P.reader);
        P.reader = 0;
        if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            violation("stalled reader was not killed by our SIGKILL");
    }
    uint64_t gets0 = atomic_load(&S->reader_gets);
    if (resume) {
        /* The resumed looping readers finish the get they were stopped in,
         * then go on checking values for a while. */
        for (unsigned i = 0; i < NLOOPERS; i++)
            if (P.loopers[i] > 0)
                kill(P.loopers[i], SIGCONT);
        run_for(500);
    }
    end_loopers(resume);
    uint64_t looped = atomic_load(&S->reader_gets) - gets0;
    uint64_t t_rec = tu_now_ms();
    atomic_store(&S->stall_until, t_rec);
    P.kill_slow = 1;
    bool wrote_ok = write_fresh(P.c, "p-", &P.probe_n, P.info.data_bytes,
                                resume ? "after stopped participants were resumed"
                                       : "after stopped readers were killed");
    if (wrote_ok)
        P.probe_bytes += P.info.data_bytes;
    if (resume) {
        uint64_t end = tu_now_ms() + 15000;
        int st = 0;
        pid_t r = 0;
        while ((r = waitpid(P.reader, &st, WNOHANG)) == 0 && tu_now_ms() < end)
            tick();
        if (r != P.reader) {
            violation("resumed reader did not exit within 15 s");
            kill(P.reader, SIGKILL);
            reap(P.reader);
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char b[80];
            violation("resumed reader: %s", status_str(st, b, sizeof b));
        }
        P.reader = 0;
    }
    P.slow_on = true;
    shmc_stats st1;
    shmc_stats_get(P.c, &st1);
    P.stall_ejections += st1.ejections - st0.ejections;
    printf("[%6.1f s] stall %llu (%s): %u+%u readers and %s worker stopped %u ms; workers wrote "
           "%.1fx the storage meanwhile, %llu SHMC_ENOMEM; %llu ejections; resumed readers "
           "checked %llu gets; writes succeed %s\n",
           since_start(), LL(P.stalls), how, 1u, nloop, wstopped ? "a" : "no", STOP_MS,
           (double)wrote / (double)P.info.data_bytes, LL(enomem),
           LL(st1.ejections - st0.ejections), LL(looped), wrote_ok ? "again" : "NOT again");
}

/* ---- after the run ---- */

/* Every key of every kind: absent, or valid. */
static void check_all_keys(void)
{
    uint8_t *buf = malloc(cfg.max_value);
    if (!buf)
        return;
    for (uint32_t n = 0; n < cfg.keys; n++)
        read_and_check(P.c, "k-", n, buf);
    for (uint32_t n = 0; n <= NFILL; n++)
        read_and_check(P.c, "f-", n, buf);
    for (uint32_t n = 0; n < NAPP; n++)
        read_and_check(P.c, "a-", n, buf);
    free(buf);
}

/* Each counter's final value against the acks of its life. */
static void check_counters(void)
{
    for (uint32_t ci = 0; ci < NCTR; ci++) {
        char key[TU_KEY_MAX];
        uint8_t buf[32];
        size_t kl = tu_key(key, "c-", ci), n;
        uint32_t fl;
        uint64_t v;
        shmc_status st = shmc_get(P.c, key, kl, buf, sizeof buf, &n, &fl);
        if (st == SHMC_NOT_FOUND) {
            P.lives_unchecked++;
            continue;
        }
        if (st != SHMC_OK || !ctr_parse(ci, buf, n, &v)) {
            violation("counter %s: %s, %zu bytes", key, shmc_strerror(st), n);
            continue;
        }
        uint64_t life = v / LIFE_UNIT;
        if (life == 0 || life >= atomic_load(&S->next_life[ci])) {
            violation("counter %s: value %llu lies in no life ever created", key, LL(v));
            continue;
        }
        if (life >= MAX_LIFE) {
            P.lives_unchecked++;
            continue;
        }
        int64_t count = (int64_t)(v % LIFE_UNIT) - (int64_t)ctr_base(ci);
        int64_t in = (int64_t)atomic_load(&S->acked_incr[ci][life]);
        int64_t de = (int64_t)atomic_load(&S->acked_decr[ci][life]);
        int64_t lo = in - de - (int64_t)P.kills_decr[ci], hi = in - de + (int64_t)P.kills_incr[ci];
        if (count < lo || count > hi)
            violation("counter %s (life %llu): count %lld, but %lld increments and %lld "
                      "decrements were acknowledged and %llu/%llu were cut short by kills",
                      key, LL(life), (long long)count, (long long)in, (long long)de,
                      LL(P.kills_incr[ci]), LL(P.kills_decr[ci]));
        else
            count_checked();
        P.lives_checked++;
        if (cfg.verbose)
            printf("  counter %s: life %llu, count %lld, acked +%lld -%lld, kills inside +%llu "
                   "-%llu\n",
                   key, LL(life), (long long)count, (long long)in, (long long)de,
                   LL(P.kills_incr[ci]), LL(P.kills_decr[ci]));
    }
}

/* At rest, every segment's live count is at least the index words naming
 * it (a crash can leave a count high, never low: a low one lets an eviction
 * stop its walk early and retire a segment that is still indexed). */
static void check_segment_counts(const char *when)
{
    struct shmc *c = P.c;
    uint64_t *words = calloc(c->nsegs, sizeof *words);
    if (!words)
        return;
    for (uint64_t i = 0; i < c->nbuckets * SHMC_BUCKET_WAYS; i++) {
        uint64_t w = atomic_load(&c->index[i]);
        if (w && iw_off(w) < c->data_bytes)
            words[iw_off(w) >> c->seg_shift]++;
    }
    for (uint32_t sg = 0; sg < c->nsegs; sg++) {
        uint64_t live = live_items(atomic_load(&c->segs[sg].live));
        if (live < words[sg])
            violation("%s: segment %u counts %llu entries, the index names it %llu times", when,
                      sg, LL(live), LL(words[sg]));
    }
    free(words);
}

/* Nothing held, nothing pinned, nothing leaked: the cache at rest. */
static void check_at_rest(const char *when, shmc_stats *st)
{
    shmc_verify_report rep;
    verify_ok(when, true, &rep);
    shmc_stats_get(P.c, st);
    if (st->slots_live != 1) {
        shmc_proc_info pi[8];
        size_t n = 0;
        shmc_procs(P.c, 0, pi, 8, &n);
        char list[200] = "";
        for (size_t i = 0; i < n && i < 8; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), " %u", pi[i].pid);
        violation("%s: %llu participant slots live (want 1: this process); pids:%s", when,
                  LL(st->slots_live), list);
    }
    if (st->locks_used) {
        violation("%s: %llu locks or fills still held", when, LL(st->locks_used));
        shmc_lock_info li[8];
        size_t n = 0;
        shmc_locks_list(P.c, 1, li, 8, &n);
        for (size_t i = 0; i < n && i < 8; i++)
            fprintf(stderr, "  held: %s %.*s slot %u pid %u (parent %d) token %llu, lease "
                            "left %llu ms, idle %llu ms\n",
                    li[i].kind == SHMC_LOCK_KIND_FILL ? "fill" : "lock",
                    (int)(li[i].name_len < sizeof li[i].name ? li[i].name_len : sizeof li[i].name),
                    (const char *)li[i].name, li[i].holder_slot, li[i].holder_pid, (int)getpid(),
                    LL(li[i].token), LL(li[i].lease_left_ms), LL(li[i].idle_ms));
    }
    if (st->segments_retired)
        violation("%s: %llu storage segments still retired with no reader left", when,
                  LL(st->segments_retired));
    uint64_t accounted = st->segments_free + st->segments_open + st->segments_sealed;
    if (accounted != P.info.segments)
        violation("%s: %llu of %u storage segments are free, open or sealed (the rest are "
                  "held by nobody)",
                  when, LL(accounted), P.info.segments);
    check_segment_counts(when);
    if (st->items < rep.items || st->items - rep.items > P.kills + P.hangs)
        violation("%s: stats count %llu items, verify %llu (at most %llu kills apart)", when,
                  LL(st->items), LL(rep.items), LL(P.kills + P.hangs));
}

static void final_checks(shmc_stats *end_st)
{
    check_all_keys();
    check_counters();

    /* lock mx: the counter lost no acknowledged increment, gained at most
     * one per holder killed inside; an owner left inside is a dead one. */
    uint64_t acked = atomic_load(&S->cs_acked), counter = S->cs_counter;
    if (counter < acked || counter > acked + P.kills_cs)
        violation("lock mx: counter %llu after %llu acknowledged critical sections (%llu holders "
                  "killed inside)",
                  LL(counter), LL(acked), LL(P.kills_cs));
    uint64_t owner = atomic_load(&S->cs_owner);
    if (owner)
        inherited_from(owner);

    shmc_stats st;
    check_at_rest("after the run", &st);

    /* Locks and fills pass on: nobody dead still holds one. */
    uint64_t tok = 0, hi = atomic_load(&S->mx_token_max);
    shmc_status s = shmc_lock_acquire(P.c, "mx", 2, 1000, 0, &tok);
    if (s != SHMC_OK || tok <= hi)
        violation("after the run: lock mx: %s, token %llu (last handed out %llu)",
                  shmc_strerror(s), LL(tok), LL(hi));
    else
        shmc_lock_release(P.c, "mx", 2, tok);
    for (uint32_t j = 0; j <= NLEASE; j++) {
        char name[16];
        size_t nl = j < NLEASE ? tu_key(name, "lease-", j)
                               : (size_t)snprintf(name, sizeof name, "slow");
        s = shmc_lock_acquire(P.c, name, nl, 1000, 0, &tok);
        if (s != SHMC_OK)
            violation("after the run: lock %s: %s", name, shmc_strerror(s));
        else
            shmc_lock_release(P.c, name, nl, tok);
    }
    for (uint32_t id = 0; id <= NFILL; id++) {
        char key[TU_KEY_MAX];
        size_t kl = tu_key(key, "f-", id), vlen;
        shmc_fill f;
        void *v = NULL;
        shmc_fill_opts o = {.wait_ms = 1000};
        s = shmc_fill_begin(P.c, key, kl, &o, &v, &vlen, NULL, &f);
        if (s == SHMC_LEADER)
            s = shmc_fill_abort(P.c, &f, 1, "final check", 0);
        else if (s == SHMC_EFILL)
            s = SHMC_OK; /* an error served for error_ttl_ms: fine */
        if (s != SHMC_OK)
            violation("after the run: fill %s: %s", key, shmc_strerror(s));
        free(v);
    }

    /* All memory comes back: a fresh process writes twice the storage. */
    P.helper = tu_fork(refill_main, NULL);
    int ws = tu_wait(P.helper, 120000);
    P.helper = 0;
    if (ws != 0) {
        char b[80];
        violation("refill from a fresh process: %s", tu_status_str(ws, b, sizeof b));
    }
    check_at_rest("after the refill", end_st);
    if (end_st->enomem != st.enomem)
        violation("the refill got SHMC_ENOMEM %llu times", LL(end_st->enomem - st.enomem));
}

static void summary(const shmc_stats *st, double secs)
{
    uint64_t ops[OP_COUNT] = {0}, total = 0;
    for (unsigned w = 0; w <= cfg.workers; w++)
        for (unsigned k = 0; k < OP_COUNT; k++)
            ops[k] += atomic_load(&S->w[w].ops[k]);
    for (unsigned k = 0; k < OP_COUNT; k++)
        total += ops[k];
    uint64_t timed_over = 0;
    const unsigned timed[] = {OP_LOCK, OP_LEASE, OP_CHURN, OP_FILL, OP_FILL_SPLIT, OP_SLOW_WAIT};
    for (unsigned i = 0; i < sizeof timed / sizeof timed[0]; i++)
        if (S->max_over_ms[timed[i]] > timed_over)
            timed_over = S->max_over_ms[timed[i]];
    uint64_t write_max = 0;
    const unsigned writes[] = {OP_SET, OP_ADD, OP_REPLACE, OP_CAS, OP_CAS_VALUE, OP_CAS_ABSENT,
                               OP_SET_MANY, OP_TOUCH, OP_GET_AND_TOUCH, OP_APPEND, OP_PREPEND,
                               OP_INCR, OP_DECR, OP_PROBE};
    for (unsigned i = 0; i < sizeof writes / sizeof writes[0]; i++)
        if (S->max_ms[writes[i]] > write_max)
            write_max = S->max_ms[writes[i]];

    printf("\n==== torture summary (seed %llu) ====\n", LL(cfg.seed));
    printf("run          %.1f s, %u workers; cache %llu KiB: %u storage segments of %llu KiB, "
           "max value %u B, %u keys, %u lock-table entries\n",
           secs, cfg.workers, LL(P.info.size >> 10), P.info.segments,
           LL(P.info.segment_bytes >> 10), P.info.max_value, cfg.keys, P.info.locks);
    printf("kills        %llu SIGKILLs (%.0f/s); %llu hung workers killed, %llu died on their "
           "own\n",
           LL(P.kills), (double)P.kills / secs, LL(P.hangs), LL(P.deaths));
    printf("killed in   ");
    for (unsigned k = 0; k < OP_COUNT; k++)
        if (P.kills_by_op[k])
            printf(" %s %llu,", op_name[k], LL(P.kills_by_op[k]));
    printf("\n");
    printf("ops          %llu (%.0f/s); values and outcomes checked: %llu\n", LL(total),
           (double)total / secs, LL(sum_checked()));
    printf("  %-22s %11s %9s %14s\n", "op", "calls", "max ms", "max over bound");
    for (unsigned k = 1; k < OP_COUNT; k++)
        if (ops[k] || S->max_ms[k])
            printf("  %-22s %11llu %9llu %14llu\n", op_name[k], LL(ops[k]), LL(S->max_ms[k]),
                   LL(S->max_over_ms[k]));
    printf("locks        mx: %llu cycles, %llu timeouts, %llu critical sections inherited from "
           "killed holders; leases: %llu cycles, %llu taken over at lease end, %llu stale "
           "writes fenced; churn: %llu cycles\n",
           LL(S->mx_cycles), LL(S->mx_timeouts), LL(S->cs_inherited), LL(S->lease_cycles),
           LL(S->lease_lost), LL(S->fenced), LL(S->churn_cycles));
    printf("slow holder  %llu holds of 2.5..5 s by the parent; %llu waits timed out on them\n",
           LL(P.slow_holds), LL(S->slow_timeouts));
    printf("singleflight %llu computations, %llu errors seen, %llu timeouts, %llu late leaders "
           "refused; cache: %llu fills led, %llu waits, %llu takeovers\n",
           LL(S->fills_computed), LL(S->fill_errors), LL(S->fill_timeouts), LL(S->late_refused),
           LL(st->fills), LL(st->fill_waits), LL(st->fill_takeovers));
    printf("counters     %llu final values checked against their acks (%llu unchecked: "
           "evicted at the end); %llu lives created\n",
           LL(P.lives_checked), LL(P.lives_unchecked), LL(S->lives_created));
    printf("stalls       %llu (each: %u readers and a worker stopped %u ms); %llu writes failed "
           "with SHMC_ENOMEM meanwhile; %.1fx the storage written meanwhile; %llu ejections; "
           "%llu MiB probed afterwards\n",
           LL(P.stalls), 1u + NLOOPERS, STOP_MS, LL(P.stall_enomem),
           (double)P.stall_bytes / (double)P.info.data_bytes, LL(P.stall_ejections),
           LL(P.probe_bytes >> 20));
    printf("verify       %llu runs (%llu retried after a kill mid-check)\n", LL(P.verify_runs),
           LL(P.verify_retries));
    printf("timing       max overshoot of a lock or fill wait past its timeout: %llu ms; longest "
           "write: %llu ms (slack %u ms)\n",
           LL(timed_over), LL(write_max), cfg.slack_ms);
    printf("cache        evictions %llu, rescued %llu, compacted %llu (%llu segments), "
           "expirations %llu, slots reaped %llu, lock takeovers %llu, SHMC_ENOMEM %llu\n",
           LL(st->evictions), LL(st->rescued), LL(st->compacted), LL(st->compactions),
           LL(st->expirations), LL(st->slots_reaped), LL(st->lock_takeovers), LL(st->enomem));
    printf("at rest      slots live %llu, locks held %llu, segments free %llu open %llu sealed "
           "%llu retired %llu\n",
           LL(st->slots_live), LL(st->locks_used), LL(st->segments_free), LL(st->segments_open),
           LL(st->segments_sealed), LL(st->segments_retired));
}

/* ---- options ---- */

static uint64_t parse_size(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        goto bad;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end)
        goto bad;
    return v;
bad:
    fprintf(stderr, "torture: bad value for %s: %s\n", opt, s);
    exit(2);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: torture [options]\n"
            "  --seconds N     length of the storms and stalls (default %u)\n"
            "  --workers N     worker processes (default %u, at most %u)\n"
            "  --seed N        seed of every random choice but the kill moments (default %llu)\n"
            "  --size BYTES    cache size, K/M/G suffixes (default %llu MiB)\n"
            "  --max-value N   largest value (default %u)\n"
            "  --keys N        key/value keys (default %u)\n"
            "  --locks N       lock and singleflight table entries (default %u)\n"
            "  --kill-ms N     a kill every 1..N ms (default %u)\n"
            "  --storm N       seconds of killing between stalls (default: fit two stalls in)\n"
            "  --slack-ms N    allowed lateness of any call past its bound (default %u)\n"
            "  --flush-every N one flush per N ops per worker, 0 = never (default %u)\n"
            "  --no-stall      skip the stalled-reader phases\n"
            "  --name NAME     cache name (default shmct-torture-<pid>)\n"
            "  --verbose       print each counter's accounting\n",
            cfg.seconds, cfg.workers, MAX_WORKERS, LL(cfg.seed), LL(cfg.size >> 20),
            cfg.max_value, cfg.keys, cfg.locks, cfg.kill_ms, cfg.slack_ms, cfg.flush_every);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"seconds", 1, NULL, 's'}, {"workers", 1, NULL, 'w'}, {"seed", 1, NULL, 'S'},
        {"size", 1, NULL, 'z'}, {"max-value", 1, NULL, 'V'}, {"keys", 1, NULL, 'k'},
        {"locks", 1, NULL, 'L'}, {"kill-ms", 1, NULL, 'K'}, {"storm", 1, NULL, 'T'},
        {"slack-ms", 1, NULL, 'l'}, {"flush-every", 1, NULL, 'F'}, {"no-stall", 0, NULL, 'n'},
        {"name", 1, NULL, 'N'}, {"verbose", 0, NULL, 'v'}, {"help", 0, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 's': cfg.seconds = (unsigned)parse_size(optarg, "--seconds"); break;
        case 'w': cfg.workers = (unsigned)parse_size(optarg, "--workers"); break;
        case 'S': cfg.seed = parse_size(optarg, "--seed"); break;
        case 'z': cfg.size = parse_size(optarg, "--size"); break;
        case 'V': cfg.max_value = (uint32_t)parse_size(optarg, "--max-value"); break;
        case 'k': cfg.keys = (uint32_t)parse_size(optarg, "--keys"); break;
        case 'L': cfg.locks = (uint32_t)parse_size(optarg, "--locks"); break;
        case 'K': cfg.kill_ms = (unsigned)parse_size(optarg, "--kill-ms"); break;
        case 'T': cfg.storm_s = (unsigned)parse_size(optarg, "--storm"); break;
        case 'l': cfg.slack_ms = (unsigned)parse_size(optarg, "--slack-ms"); break;
        case 'F': cfg.flush_every = (uint32_t)parse_size(optarg, "--flush-every"); break;
        case 'n': cfg.stall = false; break;
        case 'v': cfg.verbose = true; break;
        case 'N': snprintf(cfg.name, sizeof cfg.name, "%s", optarg); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc || !cfg.seconds || !cfg.workers || cfg.workers > MAX_WORKERS ||
        !cfg.keys || !cfg.kill_ms || cfg.max_value < 3000) {
        usage(stderr);
        exit(2);
    }
    if (!cfg.name[0])
        snprintf(cfg.name, sizeof cfg.name, "shmct-torture-%ld", (long)getpid());
}

/* alloc.c's check, on every retirement: the segment must be out of the
 * index, or readers could follow a word into reused memory. */
static void retired_indexed(uint32_t seg, uint64_t word, uint64_t live)
{
    violation("segment %u retired while index word %#llx names it (live %llu items, %llu B)",
              seg, LL(word), LL(live_items(live)), LL(live_bytes(live)));
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_parent = getpid();
    snprintf(g_shm_path, sizeof g_shm_path, "/%s", cfg.name);
    for (unsigned k = 0; k < OP_COUNT; k++) {
        op_total += op_weight[k];
        op_cumul[k] = op_total;
    }
    S = tu_shared_alloc(sizeof *S);
    if (!S) {
        fprintf(stderr, "torture: mmap: %s\n", strerror(errno));
        return 2;
    }
    g_checked = &S->parent_checked;
    shmc__test_retire_hook = retired_indexed;
    for (uint32_t ci = 0; ci < NCTR; ci++)
        S->next_life[ci] = 1;

    tu_destroy(cfg.name);
    shmc_options o = {.size = cfg.size, .max_value = cfg.max_value, .locks = cfg.locks};
    shmc_status st = shmc_open(cfg.name, &o, &P.c);
    if (st != SHMC_OK) {
        fprintf(stderr, "torture: shmc_open %s: %s\n", cfg.name, shmc_strerror(st));
        return 2;
    }
    shmc_info_get(P.c, &P.info);
    signal(SIGALRM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    alarm(cfg.seconds + 360);
    printf("torture: seed %llu, %u workers, %u s, cache %s (%llu KiB, %u storage segments), a "
           "kill every 1..%u ms\n",
           LL(cfg.seed), cfg.workers, cfg.seconds, cfg.name, LL(P.info.size >> 10),
           P.info.segments, cfg.kill_ms);

    tu_rng_seed(&P.r, cfg.seed ^ 0x4b494c4c4552ull);
    P.t_start = tu_now_ms();
    P.next_verify = P.t_start + VERIFY_EVERY_MS;
    P.next_progress = P.t_start + PROGRESS_EVERY_MS;
    for (uint32_t w = 0; w <= cfg.workers; w++) /* and the prober */
        spawn(w);
    P.killing = true;
    P.kill_slow = 1;
    P.slow_on = true;
    P.next_slow = P.t_start + tu_rng_range(&P.r, 1000, 5000);
    P.next_kill = P.t_start + tu_rng_range(&P.r, 1, cfg.kill_ms);

    /* Storms of kills, each followed by a stall (alternately resumed and
     * killed); with the defaults a run has at least one of each. */
    uint64_t total = (uint64_t)cfg.seconds * 1000, end = P.t_start + total;
    unsigned nstalls = cfg.stall ? (unsigned)(total / 68000 > 2 ? total / 68000 : 2) : 0;
    uint64_t storm = cfg.storm_s ? cfg.storm_s * 1000ull
                     : nstalls ? (total > nstalls * STALL_RESERVE_MS
                                      ? (total - nstalls * STALL_RESERVE_MS) / nstalls : 0)
                               : total;
    if (!cfg.storm_s && storm < 3000)
        storm = 3000;
    if (!cfg.storm_s && storm > 60000)
        storm = 60000;
    for (unsigned round = 0; tu_now_ms() < end; round++) {
        uint64_t now = tu_now_ms();
        run_for(end - now < storm ? end - now : storm);
        now = tu_now_ms();
        if (cfg.stall && (round < 2 || (now < end && end - now >= STALL_RESERVE_MS)))
            stall_phase(round % 2 == 0);
    }

    /* Stop: the last kills settle, then the workers leave on their own. */
    P.killing = false;
    P.slow_on = false;
    slow_step(true);
    run_for(300);
    atomic_store(&S->stop, 1);
    P.stopping = true;
    uint64_t deadline = tu_now_ms() + 60000;
    for (;;) {
        watch_workers();
        bool any = false;
        for (uint32_t w = 0; w <= cfg.workers; w++)
            any |= P.pid[w] != 0;
        if (!any)
            break;
        if (tu_now_ms() >= deadline) {
            for (uint32_t w = 0; w <= cfg.workers; w++)
                if (P.pid[w]) {
                    violation("worker %u did not stop within 60 s", w);
                    kill_worker(w, true);
                }
            break;
        }
        tu_sleep_ms(1);
    }
    double secs = since_start();
    printf("[%6.1f s] workers stopped; checking the cache at rest\n", secs);

    shmc_stats end_st;
    final_checks(&end_st);
    summary(&end_st, secs);

    shmc_close(P.c);
    tu_destroy(cfg.name);
    uint64_t v = atomic_load(&S->violations);
    tu_shared_free(S, sizeof *S);
    if (v) {
        printf("RESULT: FAILED, %llu violations (seed %llu; see VIOLATION lines above)\n", LL(v),
               LL(cfg.seed));
        return 1;
    }
    printf("RESULT: OK, no violation\n");
    return 0;
}
