/*
 * coord.c — named locks and singleflight, on one table of entries.
 *
 * An entry (layout.h: shmc_centry) belongs to one name of one kind (a lock
 * name, or a key being filled) and packs its whole ownership into one word:
 * the holder's slot, which of the holder's hold records it uses, and the
 * low bits of the owner token.  Ownership changes by CAS on that word only,
 * so taking a free lock costs one CAS and no lock is held while waiting.
 *
 * Waiting.  A holder keeps one of its slot's robust hold mutexes locked for
 * exactly as long as it owns the entry, and the state word says which.  A
 * waiter sleeps on that mutex (pthread_mutex_clocklock), so the kernel wakes
 * it both when the holder releases (unlock) and when the holder dies (the
 * robust-futex list marks the mutex OWNER_DIED and wakes a waiter).  No
 * polling: the only timed wake-ups are the waiter's own deadline and the
 * holder's lease end.  A waiter that gets the mutex unlocks it at once and
 * re-reads the state; if the state still names that hold record, its owner
 * must be dead (a live owner keeps it locked), so the waiter takes over.
 * Each takeover is one CAS from the exact state the waiter saw, so of many
 * waiters exactly one wins.
 *
 * Fairness.  A lock waiter that wakes and loses the race posts itself as
 * the entry's `want`: while that is fresh, other acquirers of the free lock
 * leave it to the want-er (they sleep on the want-er's own hold mutex).
 *
 * Tokens.  The state carries the token's low 44 bits; the full 64-bit token
 * is published in `token` by the new owner right after its CAS (a waiter
 * that sees them disagree knows the lease is not published yet and does not
 * judge it).  When an idle entry is recycled for another name, its last
 * token raises hdr->token_hi, and every new name starts above token_hi: so
 * the tokens of one name strictly increase whatever entries it used.
 *
 * Claiming and recycling entries is the rare path and is serialised by the
 * robust hdr->coord_mtx; lookups stay lock-free.
 */
#include "coord.h"
#include "cache.h"
#include "slots.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WANT_MAX_MS 1000u        /* a want-er re-posts after this */
#define UNPUBLISHED_RETRY_MS 2u  /* re-check a state whose lease is being written */

#define PROBE 64u                /* entries a name may live in */
#define DEFAULT_WAIT_MS 10000u
#define DEFAULT_FILL_MS 10000u
#define DEADLINE_MAX (1ull << 44) /* ms; "forever" for every purpose here */

typedef struct ckey {
    uint32_t kind;
    const void *name;
    size_t nlen;
    uint64_t h1, h2;
} ckey;

static void ckey_init(struct shmc *c, ckey *k, uint32_t kind, const void *name, size_t nlen)
{
    k->kind = kind;
    k->name = name;
    k->nlen = nlen;
    k->h1 = hash_key(c->hash_seed ^ (0x9e3779b97f4a7c15ull * kind), name, nlen) | 1u;
    k->h2 = hash_key(~c->hash_seed ^ (0xc2b2ae3d27d4eb4full * kind), name, nlen);
}

static uint64_t full_token(uint64_t side, uint64_t tok44)
{
    return side + ((tok44 - side) & TOK_MASK);
}

static uint64_t deadline_after(uint64_t now, uint64_t ms)
{
    return ms >= DEADLINE_MAX ? now + DEADLINE_MAX : now + ms;
}

static struct timespec abs_ts(uint64_t ms)
{
    ms -= 1; /* now_ms() is CLOCK_MONOTONIC + 1 ms */
    return (struct timespec){.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
}

static void sleep_until(uint64_t deadline)
{
    struct timespec ts = abs_ts(deadline);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static bool ident_is(const shmc_centry *e, const ckey *k)
{
    return atomic_load_explicit(&e->h1, memory_order_relaxed) == k->h1 &&
           atomic_load_explicit(&e->h2, memory_order_relaxed) == k->h2;
}

static uint32_t probe_len(struct shmc *c) { return c->ncoord < PROBE ? c->ncoord : PROBE; }

static shmc_centry *entry_find(struct shmc *c, const ckey *k)
{
    uint32_t n = c->ncoord, start = (uint32_t)(k->h1 % n);
    for (uint32_t i = 0; i < probe_len(c); i++) {
        shmc_centry *e = &c->coord[(start + i) % n];
        if (ident_is(e, k))
            return e;
    }
    return NULL;
}

static void atomic_max(_Atomic uint64_t *p, uint64_t v)
{
    uint64_t cur = atomic_load(p);
    while (cur < v && !atomic_compare_exchange_weak(p, &cur, v))
        ;
}

/* An entry left mid-claim by a dead claimer: keep its tokens' high-water
 * mark and mark it unused (its identity may be half written). */
static void repair_claims(struct shmc *c)
{
    for (uint32_t i = 0; i < c->ncoord; i++) {
        shmc_centry *e = &c->coord[i];
        uint64_t s = atomic_load(&e->state);
        if (!(s & ST_BUSY) || slot1_of(s))
            continue;
        atomic_max(&c->hdr->token_hi, full_token(atomic_load(&e->token), st_tok(s)));
        atomic_store(&e->h1, 0);
        atomic_store(&e->h2, 0);
        atomic_store(&e->state, s & ~ST_BUSY);
    }
}

static void store_name(shmc_centry *e, const ckey *k)
{
    uint64_t words[8] = {0};
    size_t n = k->nlen < sizeof words ? k->nlen : sizeof words;
    memcpy(words, k->name, n);
    for (unsigned i = 0; i < 8; i++)
        atomic_store_explicit(&e->name[i], words[i], memory_order_relaxed);
    atomic_store_explicit(&e->kind_len, (uint64_t)k->kind << 32 | (uint32_t)k->nlen,
                          memory_order_relaxed);
}

/* An entry that stays busy without a holder: claims run under coord_mtx
 * for a few instructions, so this is a claimer that died (not yet seen by
 * the next locker of coord_mtx) or damage.  Under the mutex no claim can be
 * in progress, so every such entry there is left over: repair them all. */
static shmc_status settle_claims(struct shmc *c)
{
    shmc_status st = robust_lock(&c->hdr->coord_mtx, LOCK_WAIT_MS, NULL);
    if (st != SHMC_OK)
        return st;
    repair_claims(c);
    pthread_mutex_unlock(&c->hdr->coord_mtx);
    return SHMC_OK;
}

/* Finds the entry of k, or claims one for it (an unused entry, else the
 * idle one least recently used) within its probe window. */
static shmc_status entry_get(struct shmc *c, const ckey *k, shmc_centry **out)
{
    shmc_centry *e = entry_find(c, k);
    if (e) {
        *out = e;
        return SHMC_OK;
    }
    bool died;
    shmc_status st = robust_lock(&c->hdr->coord_mtx, LOCK_WAIT_MS, &died);
    if (st != SHMC_OK)
        return st;
    if (died)
        repair_claims(c);
    st = SHMC_ETABLEFULL;
    uint64_t now = now_ms();
    for (int attempt = 0; attempt < 4 && st == SHMC_ETABLEFULL; attempt++) {
        if ((e = entry_find(c, k))) {
            st = SHMC_OK;
            break;
        }
        uint32_t n = c->ncoord, start = (uint32_t)(k->h1 % n);
        shmc_centry *best = NULL;
        uint64_t best_s = 0, best_used = UINT64_MAX;
        for (uint32_t i = 0; i < probe_len(c); i++) {
            shmc_centry *x = &c->coord[(start + i) % n];
            uint64_t s = atomic_load(&x->state);
            if (slot1_of(s) || (s & ST_BUSY))
                continue; /* held, or being rewritten */
            uint64_t w = atomic_load(&x->want);
            if (w && want_exp(w) > now)
                continue; /* a waiter has a claim on it */
            bool unused = !atomic_load(&x->h1) && !atomic_load(&x->h2);
            uint64_t used = unused ? 0 : atomic_load(&x->used_ms);
            if (!unused && atomic_load(&x->err_token) && atomic_load(&x->err_until) > now)
                continue; /* still serving a fill error */
            if (used < best_used) {
                best = x;
                best_s = s;
                best_used = used;
                if (unused)
                    break;
            }
        }
        if (!best)
            break;
        /* Mark it busy: lock-free acquirers that found it under its old
         * name now fail their CAS and look again. */
        if (!atomic_compare_exchange_strong(&best->state, &best_s, best_s | ST_BUSY))
            continue;
        atomic_max(&c->hdr->token_hi, full_token(atomic_load(&best->token), st_tok(best_s)));
        uint64_t base = atomic_load(&c->hdr->token_hi);
        atomic_store(&best->h1, k->h1);
        atomic_store(&best->h2, k->h2);
        store_name(best, k);
        atomic_store(&best->want, 0);
        atomic_store(&best->until, 0);
        atomic_store(&best->err_token, 0);
        atomic_store(&best->used_ms, now);
        atomic_store(&best->token, base);
        atomic_store_explicit(&best->state, st_make(base, 0, 0), memory_order_release);
        e = best;
        st = SHMC_OK;
    }
    pthread_mutex_unlock(&c->hdr->coord_mtx);
    *out = e;
    return st;
}

/* ---- hold records ---- */

/* Takes a free hold record of ours for entry e: preferably the one that
 * last served e (waiters of e may still be asleep on it, and should stay
 * asleep only behind a holder of e), else the least recently used.  A
 * record is locked by its owner only while it owns an entry or is an
 * entry's want-er, never while merely waiting, so nobody waits in a cycle. */
static shmc_status hold_take(struct shmc *c, tslot *t, shmc_centry *e, uint32_t *kout)
{
    uint32_t all = (1u << SHMC_HOLDS) - 1;
    if ((t->hold_mask & all) == all)
        return SHMC_EHOLDS;
    uint32_t idx = (uint32_t)(e - c->coord);
    uint32_t order[SHMC_HOLDS], n = 0;
    for (uint32_t k = 0; k < SHMC_HOLDS; k++)
        if (!(t->hold_mask & (1u << k)) && t->hold_last[k] == idx + 1)
            order[n++] = k;
    uint32_t first_lru = n;
    for (uint32_t k = 0; k < SHMC_HOLDS; k++)
        if (!(t->hold_mask & (1u << k)) && t->hold_last[k] != idx + 1)
            order[n++] = k;
    for (uint32_t i = first_lru + 1; i < n; i++) /* oldest use first */
        for (uint32_t j = i; j > first_lru && t->hold_used[order[j]] < t->hold_used[order[j - 1]];
             j--) {
            uint32_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = order[i];
        pthread_mutex_t *m = &t->s->hold[k].m;
        int r = pthread_mutex_trylock(m);
        if (r == EOWNERDEAD) {
            pthread_mutex_consistent(m);
            r = 0;
        }
        if (r == 0) {
            t->hold_mask |= 1u << k;
            t->hold_last[k] = idx + 1;
            t->hold_used[k] = ++t->hold_clock;
            /* Name the entry before any CAS can make us its owner or want-er:
             * if we die, whoever reaps our slot frees it (coord_reap). */
            atomic_store_explicit(&t->s->hold[k].entry, idx + 1ull, memory_order_relaxed);
            *kout = k;
            return SHMC_OK;
        }
        if (r != EBUSY) /* EBUSY: a waiter passing through it */
            return lock_status(r);
    }
    return SHMC_EBUSY;
}

static void hold_note(struct shmc *c, tslot *t, uint32_t k, shmc_centry *e, uint64_t token)
{
    uint32_t idx = (uint32_t)(e - c->coord);
    t->hold_entry[k] = idx;
    t->hold_token[k] = token;
    atomic_store_explicit(&t->s->hold[k].entry, idx + 1ull, memory_order_relaxed);
    atomic_store_explicit(&t->s->hold[k].token, token, memory_order_relaxed);
}

static void hold_drop(tslot *t, uint32_t k)
{
    atomic_store_explicit(&t->s->hold[k].entry, 0, memory_order_relaxed);
    atomic_store_explicit(&t->s->hold[k].token, 0, memory_order_relaxed);
    t->hold_token[k] = 0;
    t->hold_mask &= ~(1u << k);
    pthread_mutex_unlock(&t->s->hold[k].m);
}

/* ---- acquisition ---- */

enum acq_result {
    ACQ_OWNED,      /* we own the entry (o->token, o->k) */
    ACQ_CHANGED,    /* fill: the leader we waited on is done (o->waited = its tok44) */
    ACQ_ERROR,      /* fill: a fresh cached error (o->waited = the failed fill's tok44) */
    ACQ_TIMEOUT,
};

typedef struct acq {
    shmc_centry *e;
    uint32_t k;
    uint64_t token;
    uint64_t waited;   /* tok44 of the holder we last slept on (fills) */
    bool did_wait, takeover;
    shmc_status err;   /* when the result is an error status */
} acq;

/* A fill error for tok44 is readable and (if fresh_only) still served. */
static bool fill_error(shmc_centry *e, uint64_t tok44, uint64_t now, bool fresh_only,
                       shmc_fill *f)
{
    uint64_t et = atomic_load_explicit(&e->err_token, memory_order_acquire);
    if (!et || (et & TOK_MASK) != tok44)
        return false;
    if (fresh_only && atomic_load_explicit(&e->err_until, memory_order_relaxed) <= now)
        return false;
    if (f) {
        uint64_t words[12];
        for (unsigned i = 0; i < 12; i++)
            words[i] = atomic_load_explicit(&e->err_msg[i], memory_order_relaxed);
        int32_t code = (int32_t)atomic_load_explicit(&e->err_code, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->err_token, memory_order_relaxed) != et)
            return false; /* rewritten while we copied: a newer fill's business */
        f->error = code;
        memcpy(f->message, words, sizeof f->message);
        f->message[sizeof f->message - 1] = '\0';
    }
    return true;
}

/* After our CAS made us owner with tok44: publish lease and full token. */
static void publish(struct shmc *c, tslot *t, acq *a, uint64_t tok44, uint64_t lease_ms,
                    uint64_t now)
{
    shmc_centry *e = a->e;
    uint64_t full = full_token(atomic_load_explicit(&e->token, memory_order_relaxed), tok44);
    atomic_store_explicit(&e->until, lease_ms ? deadline_after(now, lease_ms) : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&e->token, full, memory_order_release);
    atomic_store_explicit(&e->used_ms, now, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&e->want, memory_order_relaxed);
    if (w && slot1_of(w) == t->idx + 1 && st_k(w) == a->k)
        atomic_compare_exchange_strong(&e->want, &w, 0);
    a->token = full;
    hold_note(c, t, a->k, e, full);
}

#define NO_REC SHMC_HOLDS
#define RECHECK_MS 1000u  /* safety net: re-read the state at least this often */

/* Sleeps on another participant's hold record until it is released or its
 * owner dies (or `wake`).  Returns 0, EOWNERDEAD (the owner died; the
 * record is consistent again), ETIMEDOUT, or an error. */
static int sleep_on(pthread_mutex_t *m, uint64_t wake)
{
    int r = mutex_lock_until(m, wake);
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(m);
    if (r == 0 || r == EOWNERDEAD)
        pthread_mutex_unlock(m);
    return r;
}

static void drop_rec(tslot *t, acq *a)
{
    if (a->k != NO_REC) {
        hold_drop(t, a->k);
        a->k = NO_REC;
    }
}

static void drop_want(shmc_centry *e, tslot *t, uint32_t k)
{
    uint64_t w = atomic_load(&e->want);
    if (w && slot1_of(w) == t->idx + 1 && st_k(w) == k)
        atomic_compare_exchange_strong(&e->want, &w, 0);
}

/* ---- acquire: look, decide, act ----
 * Each round reads the entry once (look), decides from what it saw alone
 * (decide: no shared memory, no clock), and acts (take, or wait_turn). */

/* What one look at an entry shows. */
typedef struct view {
    uint64_t s;          /* state word, as loaded: the CAS of a take starts from it */
    uint64_t tok;        /* its token bits */
    uint32_t holder1;    /* holder slot + 1; 0 = free (bounds-checked by decide) */
    uint64_t until;      /* the holder's lease end (0 = none), if `known` */
    uint64_t want;       /* want word, as loaded */
    bool recycling;      /* not our name (yet), or being re-claimed */
    bool known;          /* the holder has published its lease and token */
    bool mine_stale;     /* held through our own slot, but not by a hold we have */
    bool want_other;     /* lock: someone else's fresh turn is posted */
    bool fill_failed;    /* fill: free, and the last fill's error is still served */
} view;

enum step {
    STEP_RECYCLING,      /* the entry is changing names: look again */
    STEP_CHANGED,        /* fill: the leader we waited on is done */
    STEP_FAILED,         /* fill: a fresh cached error */
    STEP_CORRUPT,        /* the holder is out of range */
    STEP_TAKE,           /* free and our turn */
    STEP_TAKEOVER,       /* held by a dead tenure of our slot, or past its lease */
    STEP_GIVE_UP,        /* not ours, and no time left */
    STEP_WAIT,           /* not ours: sleep on the holder (or want-er) */
};

static uint64_t look(struct shmc *c, tslot *t, const ckey *k, const acq *a, bool fill, view *v)
{
    shmc_centry *e = a->e;
    memset(v, 0, sizeof *v);
    v->s = atomic_load_explicit(&e->state, memory_order_acquire);
    v->recycling = !ident_is(e, k) || (st_busy(v->s) && !slot1_of(v->s));
    uint64_t now = now_ms();
    v->tok = st_tok(v->s);
    v->holder1 = slot1_of(v->s);
    uint64_t side = atomic_load_explicit(&e->token, memory_order_acquire);
    v->until = atomic_load_explicit(&e->until, memory_order_relaxed);
    v->known = v->holder1 && !st_busy(v->s) && (side & TOK_MASK) == v->tok;
    if (v->holder1 == t->idx + 1) {
        uint32_t hk = st_k(v->s);
        v->mine_stale = !(t->hold_mask & (1u << hk)) || hk == a->k ||
                        t->hold_entry[hk] != (uint32_t)(e - c->coord) ||
                        (t->hold_token[hk] & TOK_MASK) != v->tok;
    }
    uint64_t w = v->want = atomic_load_explicit(&e->want, memory_order_acquire);
    /* (The want word comes from shared memory: its slot must be 1..nslots,
     * since a wait sleeps on that slot's hold record.) */
    v->want_other = !fill && w && want_exp(w) > now && slot1_of(w) &&
                    slot1_of(w) <= c->nslots &&
                    !(slot1_of(w) == t->idx + 1 && st_k(w) == a->k);
    v->fill_failed = fill && !v->holder1 && fill_error(e, v->tok, now, true, NULL);
    return now;
}

/* The decision of one round, from what look saw: pure. */
static enum step decide(const view *v, const acq *a, bool fill, uint32_t nslots, uint64_t now,
                        uint64_t deadline)
{
    if (v->recycling)
        return STEP_RECYCLING;
    if (fill && a->did_wait && (!v->holder1 || v->tok != a->waited))
        return STEP_CHANGED; /* the fill we waited on ended or changed hands */
    if (v->holder1 > nslots)
        return STEP_CORRUPT;
    if (!v->holder1 && v->fill_failed)
        return STEP_FAILED;
    if (!v->holder1 && !v->want_other)
        return STEP_TAKE;
    if (v->holder1 && (v->mine_stale || (v->known && v->until && now >= v->until)))
        return STEP_TAKEOVER;
    if (!deadline || now >= deadline)
        return STEP_GIVE_UP;
    return STEP_WAIT;
}

/* One CAS from the state look saw.  1: owned; 0: look again; -1: give up
 * (a->err says why, SHMC_OK for no free hold record before the deadline). */
static int take(struct shmc *c, tslot *t, acq *a, const view *v, bool takeover,
                uint64_t deadline, uint64_t lease_ms, uint64_t now)
{
    if (a->k == NO_REC) {
        a->err = hold_take(c, t, a->e, &a->k);
        if (a->err == SHMC_EBUSY) {
            a->err = SHMC_OK;
            sched_yield();
            return deadline && now_ms() < deadline ? 0 : -1;
        }
        if (a->err != SHMC_OK)
            return -1;
    }
    uint64_t s = v->s;
    if (!atomic_compare_exchange_strong(&a->e->state, &s, st_make(v->tok + 1, t->idx + 1, a->k)))
        return 0;
    a->takeover = takeover;
    publish(c, t, a, v->tok + 1, lease_ms, now);
    return 1;
}

/* A lock waiter that lost after a wait claims the next turn, holding a
 * record for those who will wait on it meanwhile. */
static void post_want(struct shmc *c, tslot *t, acq *a, const view *v, uint64_t deadline,
                      uint64_t now)
{
    if (a->k == NO_REC && hold_take(c, t, a->e, &a->k) != SHMC_OK)
        a->k = NO_REC;
    uint64_t cur = v->want;
    if (a->k != NO_REC && (!cur || want_exp(cur) <= now)) {
        uint64_t exp = deadline < now + WANT_MAX_MS ? deadline : now + WANT_MAX_MS;
        atomic_compare_exchange_strong(&a->e->want, &cur, want_make(exp, t->idx + 1, a->k));
    }
}

/* Woken from the holder's record with it free (or its owner dead): if the
 * state still names that holder, it is gone.  One CAS decides who takes over. */
static int take_from_gone(struct shmc *c, tslot *t, acq *a, const view *v, uint64_t lease_ms)
{
    if (a->k == NO_REC && hold_take(c, t, a->e, &a->k) != SHMC_OK) {
        a->k = NO_REC;
        return 0;
    }
    uint64_t s = v->s;
    if (!atomic_compare_exchange_strong(&a->e->state, &s, st_make(v->tok + 1, t->idx + 1, a->k)))
        return 0;
    a->takeover = true;
    publish(c, t, a, v->tok + 1, lease_ms, now_ms());
    return 1;
}

/* Sleeps until the want-er's turn ends or the holder lets go (or dies, or
 * the lease ends, or RECHECK_MS).  1: owned (took over a gone holder);
 * 0: look again; -1: error (a->err). */
static int wait_turn(struct shmc *c, tslot *t, acq *a, const view *v, bool fill,
                     uint64_t deadline, uint64_t lease_ms, uint64_t now)
{
    const uint32_t me1 = t->idx + 1;
    uint64_t wake = deadline < now + RECHECK_MS ? deadline : now + RECHECK_MS;
    pthread_mutex_t *target;
    if (!v->holder1) {
        target = &c->slots[slot1_of(v->want) - 1].hold[st_k(v->want)].m;
        if (want_exp(v->want) < wake)
            wake = want_exp(v->want);
    } else {
        if (v->known && v->until && v->until < wake)
            wake = v->until;
        if (!v->known && now + UNPUBLISHED_RETRY_MS < wake)
            wake = now + UNPUBLISHED_RETRY_MS;
        if (fill)
            a->waited = v->tok;
        if (v->holder1 == me1) {
            /* Our own thread holds it (not re-entrant): wait for its end. */
            a->did_wait = true;
            sleep_until(wake);
            return 0;
        }
        target = &c->slots[v->holder1 - 1].hold[st_k(v->s)].m;
        if (!fill && a->did_wait && !v->want_other)
            post_want(c, t, a, v, deadline, now);
    }
    if (a->k != NO_REC) {
        uint64_t cw = atomic_load(&a->e->want);
        if (!(slot1_of(cw) == me1 && st_k(cw) == a->k))
            drop_rec(t, a); /* not the want-er: wait holding nothing */
    }
    a->did_wait = true;
    int r = sleep_on(target, wake);
    if (r != 0 && r != EOWNERDEAD && r != ETIMEDOUT) {
        a->err = lock_status(r);
        return -1;
    }
    if (!v->holder1) {
        /* A live want-er keeps its record locked until it gives up or takes
         * the lock (clearing the want either way): finding it free, or its
         * owner dead, or the want expired, the want is stale. */
        uint64_t w = v->want;
        if (r != ETIMEDOUT || now_ms() >= want_exp(w))
            atomic_compare_exchange_strong(&a->e->want, &w, 0);
        return 0;
    }
    if (r == ETIMEDOUT) {
        /* A holder thread that vanished without the kernel's owner-died
         * mark (damage, a segment restored with its locks held) would
         * never wake us: at each re-check, mark such a record as the
         * kernel would, so that the next sleep sees the owner dead. */
        mutex_mark_vanished(target);
        return 0;
    }
    return take_from_gone(c, t, a, v, lease_ms);
}

/* The entry for k, into a->e; false on error (a->err). */
static bool find_entry(struct shmc *c, tslot *t, const ckey *k, acq *a)
{
    shmc_centry *e;
    a->err = entry_get(c, k, &e);
    if (a->err != SHMC_OK)
        return false;
    if (a->e && e != a->e && a->k != NO_REC) {
        drop_want(a->e, t, a->k); /* our entry was recycled under us */
        drop_rec(t, a);
    }
    a->e = e;
    return true;
}

/* Tries to own the entry, waiting until `deadline` (0: do not wait).
 * Locks loop until owned; fills return ACQ_CHANGED once the leader they
 * waited on is done, for the caller to read the cache. */
static enum acq_result acquire(struct shmc *c, tslot *t, const ckey *k, uint64_t deadline,
                               uint64_t lease_ms, acq *a)
{
    const bool fill = k->kind == CE_KIND_FILL;
    memset(a, 0, sizeof *a);
    a->k = NO_REC;
    if ((t->hold_mask & ((1u << SHMC_HOLDS) - 1)) == (1u << SHMC_HOLDS) - 1) {
        a->err = SHMC_EHOLDS;
        return ACQ_TIMEOUT;
    }
    for (unsigned spins = 1;; spins++) {
        if (!find_entry(c, t, k, a))
            break;
        view v;
        uint64_t now = look(c, t, k, a, fill, &v);
        int done = 0;
        switch (decide(&v, a, fill, c->nslots, now, deadline)) {
        case STEP_RECYCLING:
            /* Not for ever: an entry left busy (a claimer killed mid-claim,
             * or damage) is repaired under the claim mutex (the fuzzer found
             * this spin endless). */
            if (spins % 64 == 0 && (a->err = settle_claims(c)) != SHMC_OK)
                done = -1;
            else
                sched_yield();
            break;
        case STEP_CHANGED:
            drop_rec(t, a);
            return ACQ_CHANGED;
        case STEP_FAILED:
            a->waited = v.tok;
            drop_rec(t, a);
            return ACQ_ERROR;
        case STEP_CORRUPT:
            a->err = SHMC_ECORRUPT; /* bounds-check the holder before using it */
            done = -1;
            break;
        case STEP_TAKE:
        case STEP_TAKEOVER:
            done = take(c, t, a, &v, v.holder1 != 0, deadline, lease_ms, now);
            break;
        case STEP_GIVE_UP:
            done = -1;
            break;
        case STEP_WAIT:
            done = wait_turn(c, t, a, &v, fill, deadline, lease_ms, now);
            break;
        }
        if (done > 0)
            return ACQ_OWNED;
        if (done < 0)
            break;
    }
    /* Gave up (or failed): drop our claim to the next turn and our record. */
    if (a->e && a->k != NO_REC)
        drop_want(a->e, t, a->k);
    drop_rec(t, a);
    return ACQ_TIMEOUT;
}

/* Is (e, k, token) still ours?  Returns the state word, or 0. */
static uint64_t owned_state(tslot *t, shmc_centry *e, uint32_t k, uint64_t token)
{
    uint64_t s = atomic_load_explicit(&e->state, memory_order_acquire);
    if (slot1_of(s) != t->idx + 1 || st_k(s) != k || st_tok(s) != (token & TOK_MASK) ||
        (s & ST_BUSY))
        return 0;
    return s;
}

/* Ends our ownership of hold record k: frees the entry if it is still ours. */
static bool release_hold(struct shmc *c, tslot *t, uint32_t k)
{
    shmc_centry *e = &c->coord[t->hold_entry[k]];
    uint64_t s = owned_state(t, e, k, t->hold_token[k]);
    bool ok = s && atomic_compare_exchange_strong(&e->state, &s, st_make(st_tok(s), 0, 0));
    hold_drop(t, k);
    return ok;
}

/* Frees the entries a dead slot's thread owned (c->on_reap: called when it
 * is reaped, before the slot can be reused). */
static void coord_reap(struct shmc *c, uint32_t slot)
{
    shmc_hold *h = c->slots[slot].hold;
    for (uint32_t k = 0; k < SHMC_HOLDS; k++) {
        uint64_t ent = atomic_load_explicit(&h[k].entry, memory_order_relaxed);
        if (!ent || ent > c->ncoord)
            continue;
        shmc_centry *e = &c->coord[ent - 1];
        uint64_t s = atomic_load_explicit(&e->state, memory_order_acquire);
        if (slot1_of(s) == slot + 1 && st_k(s) == k)
            atomic_compare_exchange_strong(&e->state, &s, st_make(st_tok(s), 0, 0));
        uint64_t w = atomic_load_explicit(&e->want, memory_order_relaxed);
        if (slot1_of(w) == slot + 1 && st_k(w) == k)
            atomic_compare_exchange_strong(&e->want, &w, 0);
        atomic_store_explicit(&h[k].entry, 0, memory_order_relaxed);
        atomic_store_explicit(&h[k].token, 0, memory_order_relaxed);
    }
}

/* Releases every lock and fill the thread holds (c->on_release: thread
 * detach, close). */
static void coord_release_all(struct shmc *c, tslot *t)
{
    for (uint32_t k = 0; k < SHMC_HOLDS; k++)
        if (t->hold_mask & (1u << k))
            release_hold(c, t, k);
}

void coord_bind(struct shmc *c)
{
    c->on_reap = coord_reap;
    c->on_release = coord_release_all;
}

/* ---- named locks ---- */

static shmc_status lock_begin(shmc_t *c, const void *name, size_t nlen, tslot **t, ckey *k)
{
    if (!c || !name)
        return SHMC_EINVAL;
    if (nlen == 0 || nlen > c->max_key)
        return SHMC_EKEYLEN;
    shmc_status st = slot_get(c, t);
    if (st == SHMC_OK)
        ckey_init(c, k, CE_KIND_LOCK, name, nlen);
    return st;
}

shmc_status shmc_lock_acquire(shmc_t *c, const void *name, size_t nlen, uint64_t timeout_ms,
                              uint64_t lease_ms, uint64_t *token)
{
    if (!token)
        return SHMC_EINVAL;
    *token = 0;
    tslot *t;
    ckey k;
    shmc_status st = lock_begin(c, name, nlen, &t, &k);
    if (st != SHMC_OK)
        return st;
    acq a;
    uint64_t deadline = timeout_ms ? deadline_after(now_ms(), timeout_ms) : 0;
    enum acq_result r = acquire(c, t, &k, deadline, lease_ms, &a);
    if (r == ACQ_OWNED) {
        STAT_ADD(t, lock_acquires, 1);
        if (a.did_wait)
            STAT_ADD(t, lock_waits, 1);
        if (a.takeover)
            STAT_ADD(t, lock_takeovers, 1);
        *token = a.token;
        return SHMC_OK;
    }
    if (a.err != SHMC_OK)
        return a.err;
    STAT_ADD(t, lock_timeouts, 1);
    return timeout_ms ? SHMC_ETIMEDOUT : SHMC_EBUSY;
}

shmc_status shmc_lock_try(shmc_t *c, const void *name, size_t nlen, uint64_t lease_ms,
                          uint64_t *token)
{
    return shmc_lock_acquire(c, name, nlen, 0, lease_ms, token);
}

/* The hold record through which this thread holds (name, token), if any. */
static bool find_hold(struct shmc *c, tslot *t, const ckey *k, uint64_t token, uint32_t *kout)
{
    for (uint32_t i = 0; i < SHMC_HOLDS; i++) {
        if ((t->hold_mask & (1u << i)) && t->hold_token[i] == token &&
            ident_is(&c->coord[t->hold_entry[i]], k)) {
            *kout = i;
            return true;
        }
    }
    return false;
}

/* The start of release and extend: the hold record through which this
 * thread holds (name, token), or SHMC_ENOTOWNER. */
static shmc_status lock_held(shmc_t *c, const void *name, size_t nlen, uint64_t token,
                             tslot **t, uint32_t *i)
{
    ckey k;
    shmc_status st = lock_begin(c, name, nlen, t, &k);
    if (st != SHMC_OK)
        return st;
    return token && find_hold(c, *t, &k, token, i) ? SHMC_OK : SHMC_ENOTOWNER;
}

shmc_status shmc_lock_release(shmc_t *c, const void *name, size_t nlen, uint64_t token)
{
    tslot *t;
    uint32_t i;
    shmc_status st = lock_held(c, name, nlen, token, &t, &i);
    if (st != SHMC_OK)
        return st;
    return release_hold(c, t, i) ? SHMC_OK : SHMC_ENOTOWNER;
}

shmc_status shmc_lock_extend(shmc_t *c, const void *name, size_t nlen, uint64_t token,
                             uint64_t lease_ms)
{
    tslot *t;
    uint32_t i;
    shmc_status st = lock_held(c, name, nlen, token, &t, &i);
    if (st != SHMC_OK)
        return st;
    shmc_centry *e = &c->coord[t->hold_entry[i]];
    uint64_t s = owned_state(t, e, i, token);
    /* Busy while we rewrite the lease, so nobody judges it half-written. */
    if (!s || !atomic_compare_exchange_strong(&e->state, &s, s | ST_BUSY)) {
        hold_drop(t, i); /* taken over: it is not ours any more */
        return SHMC_ENOTOWNER;
    }
    uint64_t old = atomic_load_explicit(&e->until, memory_order_relaxed);
    atomic_store_explicit(&e->until, lease_ms ? deadline_after(now_ms(), lease_ms) : 0,
                          memory_order_seq_cst);
    /* We restore the very state word a waiter may have judged, with the old
     * lease, expired: its takeover CAS would then succeed after an extend
     * that returned OK.  Such a waiter read its clock before our store, and
     * we read ours after it: so once the old lease is over (or in its last
     * millisecond, for clock skew), the lock is not ours, as if taken over.
     * We free it rather than leave it naming our slot after we drop our
     * hold (held by nobody, it would count as used until a takeover); a
     * waiter's takeover CAS from the old word then fails and it takes the
     * free entry, with the next token. */
    if (old && now_ms() + 1 >= old) {
        atomic_store_explicit(&e->until, old, memory_order_relaxed);
        atomic_store_explicit(&e->state, st_make(st_tok(s), 0, 0), memory_order_release);
        hold_drop(t, i);
        return SHMC_ENOTOWNER;
    }
    atomic_store_explicit(&e->state, s, memory_order_release);
    return SHMC_OK;
}

/* ---- singleflight ---- */

static void fill_clear(shmc_fill *f)
{
    free(f->key_);
    f->key_ = NULL;
    f->klen_ = 0;
    f->token_ = 0;
    f->cache_ = NULL;
}

/* We own the fill entry: fill in the leader's handle.  SHMC_LEADER, or
 * SHMC_ESYS (the entry released) when the key cannot be copied. */
static shmc_status fill_lead(shmc_t *c, tslot *t, const void *key, size_t klen, const acq *a,
                             bool waited, shmc_fill *f)
{
    f->key_ = malloc(klen);
    if (!f->key_) {
        release_hold(c, t, a->k);
        errno = ENOMEM;
        return SHMC_ESYS;
    }
    memcpy(f->key_, key, klen);
    f->klen_ = klen;
    f->token_ = a->token;
    f->entry_ = (uint32_t)(a->e - c->coord);
    f->hold_ = a->k;
    f->cache_ = c;
    STAT_ADD(t, fills, 1);
    if (a->takeover)
        STAT_ADD(t, fill_takeovers, 1);
    if (waited || a->did_wait)
        STAT_ADD(t, fill_waits, 1);
    return SHMC_LEADER;
}

shmc_status shmc_fill_begin(shmc_t *c, const void *key, size_t klen, const shmc_fill_opts *opts,
                            void **val, size_t *vlen, uint32_t *flags, shmc_fill *f)
{
    if (!c || !key || !val || !vlen || !f)
        return SHMC_EINVAL;
    memset(f, 0, sizeof *f);
    *val = NULL;
    *vlen = 0;
    if (klen == 0 || klen > c->max_key)
        return SHMC_EKEYLEN;
    shmc_fill_opts o = {0};
    if (opts)
        o = *opts;
    uint64_t wait_ms = o.wait_ms ? o.wait_ms : DEFAULT_WAIT_MS;
    uint64_t fill_ms = o.fill_ms ? o.fill_ms : DEFAULT_FILL_MS;
    tslot *t;
    shmc_status st = slot_get(c, &t);
    if (st != SHMC_OK)
        return st;
    ckey k;
    ckey_init(c, &k, CE_KIND_FILL, key, klen);
    uint64_t deadline = deadline_after(now_ms(), wait_ms);
    bool waited = false;
    for (;;) {
        uint64_t expire = 0;
        st = get_alloc_expire(c, key, klen, val, vlen, flags, &expire);
        bool refresh = false;
        if (st == SHMC_OK) {
            uint64_t now = now_ms();
            if (!o.refresh_ms || !expire || expire > now + o.refresh_ms)
                return SHMC_OK;
            refresh = true; /* due for an early refresh: lead it if nobody does */
        } else if (st != SHMC_NOT_FOUND) {
            return st;
        }
        acq a;
        enum acq_result r = acquire(c, t, &k, refresh ? 0 : deadline, fill_ms, &a);
        if (r == ACQ_OWNED && !refresh) {
            /* A leader may have stored it between our miss and our win. */
            st = get_alloc_expire(c, key, klen, val, vlen, flags, &expire);
            if (st == SHMC_OK) {
                release_hold(c, t, a.k);
                return SHMC_OK;
            }
        }
        if (r == ACQ_OWNED) {
            free(*val);
            *val = NULL;
            *vlen = 0;
            return fill_lead(c, t, key, klen, &a, waited, f);
        }
        if (refresh)
            return SHMC_OK; /* someone else refreshes: keep the current value */
        if (a.err != SHMC_OK)
            return a.err;
        if (a.did_wait && !waited) {
            waited = true;
            STAT_ADD(t, fill_waits, 1);
        }
        if (r == ACQ_ERROR) {
            fill_error(a.e, a.waited, 0, false, f);
            return SHMC_EFILL;
        }
        if (r == ACQ_CHANGED && fill_error(a.e, a.waited, 0, false, f))
            return SHMC_EFILL;
        if (r == ACQ_TIMEOUT)
            return SHMC_ETIMEDOUT;
        /* ACQ_CHANGED without an error: the value should be in the cache now. */
    }
}

/* Validates a leader's fill for this thread: its hold record, or NULL. */
static shmc_centry *fill_check(shmc_t *c, shmc_fill *f, tslot **t, shmc_status *st)
{
    *st = SHMC_EINVAL;
    if (!c || !f || f->cache_ != c || !f->token_ || f->hold_ >= SHMC_HOLDS ||
        f->entry_ >= c->ncoord || !f->key_)
        return NULL;
    *st = slot_get(c, t);
    if (*st != SHMC_OK)
        return NULL;
    uint32_t k = f->hold_;
    if (!((*t)->hold_mask & (1u << k)) || (*t)->hold_token[k] != f->token_ ||
        (*t)->hold_entry[k] != f->entry_) {
        *st = SHMC_ENOTOWNER;
        return NULL;
    }
    *st = SHMC_OK;
    return &c->coord[f->entry_];
}

/* Marks our fill busy so no waiter takes it over while we store its
 * outcome; returns the state to restore (as free), or 0 if not ours. */
static uint64_t fill_lock_state(tslot *t, shmc_centry *e, shmc_fill *f)
{
    uint64_t s = owned_state(t, e, f->hold_, f->token_);
    if (!s || !atomic_compare_exchange_strong(&e->state, &s, s | ST_BUSY))
        return 0;
    return s;
}

/* The common start of finish and abort: checks the fill is this thread's
 * and marks its entry busy.  On any refusal but SHMC_EINVAL the fill is
 * over for the caller (its hold and key copy are released). */
static shmc_status fill_take(shmc_t *c, shmc_fill *f, tslot **t, shmc_centry **e, uint64_t *s)
{
    shmc_status st;
    *e = fill_check(c, f, t, &st);
    if (!*e) {
        if (st == SHMC_ENOTOWNER)
            fill_clear(f);
        return st;
    }
    *s = fill_lock_state(*t, *e, f);
    if (!*s) {
        hold_drop(*t, f->hold_);
        fill_clear(f);
        return SHMC_ENOTOWNER;
    }
    return SHMC_OK;
}

static void write_error(shmc_centry *e, uint64_t token, int32_t error, const char *message,
                        uint64_t error_ttl_ms)
{
    uint64_t words[12] = {0};
    if (message) {
        size_t n = strnlen(message, sizeof words - 1);
        memcpy(words, message, n);
    }
    atomic_store_explicit(&e->err_token, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->err_code, (uint64_t)(uint32_t)error, memory_order_relaxed);
    for (unsigned i = 0; i < 12; i++)
        atomic_store_explicit(&e->err_msg[i], words[i], memory_order_relaxed);
    atomic_store_explicit(&e->err_until, deadline_after(now_ms(), error_ttl_ms),
                          memory_order_relaxed);
    atomic_store_explicit(&e->err_token, token, memory_order_release);
}

/* Ends a fill whose state we hold busy: frees the entry, wakes the waiters. */
static void fill_end(tslot *t, shmc_centry *e, uint64_t s, shmc_fill *f)
{
    atomic_store_explicit(&e->state, st_make(st_tok(s), 0, 0), memory_order_release);
    hold_drop(t, f->hold_);
    fill_clear(f);
}

shmc_status shmc_fill_abort(shmc_t *c, shmc_fill *f, int32_t error, const char *message,
                            uint64_t error_ttl_ms)
{
    tslot *t;
    shmc_centry *e;
    uint64_t s = 0;
    shmc_status st = fill_take(c, f, &t, &e, &s);
    if (st != SHMC_OK)
        return st;
    write_error(e, f->token_, error, message, error_ttl_ms);
    STAT_ADD(t, fill_errors, 1);
    fill_end(t, e, s, f);
    return SHMC_OK;
}

shmc_status shmc_fill_finish(shmc_t *c, shmc_fill *f, const void *val, size_t vlen,
                             uint32_t flags, uint64_t ttl_ms)
{
    if (!val && vlen)
        return SHMC_EINVAL;
    tslot *t;
    shmc_centry *e;
    uint64_t s = 0;
    shmc_status st = fill_take(c, f, &t, &e, &s);
    if (st != SHMC_OK)
        return st;
    st = shmc_set(c, f->key_, f->klen_, val ? val : "", vlen, flags, ttl_ms);
    if (st != SHMC_OK) {
        /* Waiters must not hang on a value that never comes. */
        write_error(e, f->token_, -1, shmc_strerror(st), 0);
        STAT_ADD(t, fill_errors, 1);
    }
    fill_end(t, e, s, f);
    return st;
}

shmc_status shmc_get_or_fill(shmc_t *c, const void *key, size_t klen, shmc_fill_fn fn,
                             void *ctx, const shmc_fill_opts *opts, void **val, size_t *vlen,
                             uint32_t *flags, shmc_fill *f)
{
    if (!fn)
        return SHMC_EINVAL;
    shmc_fill local;
    if (!f)
        f = &local;
    shmc_status st = shmc_fill_begin(c, key, klen, opts, val, vlen, flags, f);
    if (st != SHMC_LEADER)
        return st;
    shmc_fill_out out = {.ttl_ms = opts ? opts->ttl_ms : 0};
    int32_t rc = fn(ctx, key, klen, &out);
    if (rc == 0 && !out.val && out.vlen)
        rc = -1; /* a length without a buffer: a broken callback, not a value */
    if (rc != 0) {
        free(out.val);
        out.message[sizeof out.message - 1] = '\0';
        shmc_fill_abort(c, f, rc, out.message, opts ? opts->error_ttl_ms : 0);
        f->error = rc;
        memcpy(f->message, out.message, sizeof f->message);
        return SHMC_EFILL;
    }
    if (!out.val && !(out.val = malloc(1))) {
        shmc_fill_abort(c, f, -1, "out of memory", 0);
        errno = ENOMEM;
        return SHMC_ESYS;
    }
    st = shmc_fill_finish(c, f, out.val, out.vlen, out.flags, out.ttl_ms);
    if (st != SHMC_OK && st != SHMC_ENOTOWNER) {
        free(out.val);
        return st;
    }
    /* Ours even if a late finish lost the entry: the value is still right. */
    *val = out.val;
    *vlen = out.vlen;
    if (flags)
        *flags = out.flags;
    return SHMC_OK;
}

/* ---- introspection (shmcache-cli) ---- */

/* A consistent snapshot of entry i; false if it names nothing. */
static bool entry_snapshot(struct shmc *c, uint32_t i, uint64_t now, shmc_lock_info *li)
{
    shmc_centry *e = &c->coord[i];
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t s = atomic_load_explicit(&e->state, memory_order_acquire);
        if (s & ST_BUSY) {
            sched_yield(); /* lease or identity being rewritten: a few instructions */
            continue;
        }
        uint32_t h1 = slot1_of(s);
        if (h1 > c->nslots)
            return false; /* out of range: never follow it */
        if (h1 && !slot_check_live(c, h1 - 1))
            continue; /* the holder died: its entries were just freed; look again */
        uint64_t id1 = atomic_load_explicit(&e->h1, memory_order_relaxed);
        uint64_t id2 = atomic_load_explicit(&e->h2, memory_order_relaxed);
        uint64_t kl = atomic_load_explicit(&e->kind_len, memory_order_relaxed);
        uint64_t words[8];
        for (unsigned k = 0; k < 8; k++)
            words[k] = atomic_load_explicit(&e->name[k], memory_order_relaxed);
        uint64_t side = atomic_load_explicit(&e->token, memory_order_acquire);
        uint64_t until = atomic_load_explicit(&e->until, memory_order_relaxed);
        uint64_t used = atomic_load_explicit(&e->used_ms, memory_order_relaxed);
        uint64_t want = atomic_load_explicit(&e->want, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->state, memory_order_relaxed) != s)
            continue;
        if (!id1 && !id2)
            return false; /* unused */
        uint32_t kind = (uint32_t)(kl >> 32);
        if (kind != CE_KIND_LOCK && kind != CE_KIND_FILL)
            return false;
        memset(li, 0, sizeof *li);
        li->entry = i;
        li->kind = kind;
        li->name_len = (uint32_t)kl;
        memcpy(li->name, words, sizeof li->name);
        uint64_t tok = st_tok(s);
        li->token = (side & TOK_MASK) == tok ? side : full_token(side, tok);
        li->idle_ms = now > used ? now - used : 0;
        li->waiter_queued = want && want_exp(want) > now && slot1_of(want) &&
                            slot1_of(want) <= c->nslots;
        if (h1) {
            li->held = 1;
            li->holder_slot = h1 - 1;
            li->holder_pid = atomic_load_explicit(&c->slots[h1 - 1].pid, memory_order_relaxed);
            li->holder_tid = atomic_load_explicit(&c->slots[h1 - 1].tid, memory_order_relaxed);
            if ((side & TOK_MASK) != tok)
                li->lease_left_ms = SHMC_LEASE_NONE; /* being published right now */
            else if (!until)
                li->lease_left_ms = SHMC_LEASE_NONE;
            else
                li->lease_left_ms = until > now ? until - now : 0;
        }
        return true;
    }
    return false; /* changing too fast to catch: leave it out of this snapshot */
}

shmc_status shmc_locks_list(shmc_t *c, int held_only, shmc_lock_info *out, size_t max,
                            size_t *n)
{
    if (!c || !n || (!out && max))
        return SHMC_EINVAL;
    size_t cnt = 0;
    uint64_t now = now_ms();
    for (uint32_t i = 0; i < c->ncoord; i++) {
        shmc_lock_info li;
        if (!entry_snapshot(c, i, now, &li))
            continue;
        if (held_only && !li.held)
            continue;
        if (cnt < max)
            out[cnt] = li;
        cnt++;
    }
    *n = cnt;
    return SHMC_OK;
}

shmc_status shmc_lock_force_release(shmc_t *c, const void *name, size_t nlen,
                                    uint64_t *token_out)
{
    if (token_out)
        *token_out = 0;
    if (!c || !name)
        return SHMC_EINVAL;
    if (nlen == 0 || nlen > c->max_key)
        return SHMC_EKEYLEN;
    ckey k;
    ckey_init(c, &k, CE_KIND_LOCK, name, nlen);
    shmc_centry *e = entry_find(c, &k);
    if (!e)
        return SHMC_NOT_FOUND;
    for (int attempt = 0; attempt < 10000; attempt++) {
        uint64_t s = atomic_load_explicit(&e->state, memory_order_acquire);
        if (!ident_is(e, &k))
            return SHMC_NOT_FOUND; /* recycled for another name meanwhile */
        if (s & ST_BUSY) {
            sched_yield(); /* the holder is rewriting its lease */
            continue;
        }
        if (!slot1_of(s))
            return SHMC_NOT_FOUND; /* not held */
        uint64_t side = atomic_load_explicit(&e->token, memory_order_acquire);
        uint64_t tok = st_tok(s);
        /* As if the holder had released: the holder's later release or
         * extend finds the state changed and reports SHMC_ENOTOWNER. */
        if (atomic_compare_exchange_strong(&e->state, &s, st_make(tok, 0, 0))) {
            if (token_out)
                *token_out = (side & TOK_MASK) == tok ? side : full_token(side, tok);
            return SHMC_OK;
        }
    }
    return SHMC_EBUSY;
}

/* Hold records of slot i that own an entry now (shmc_procs). */
uint32_t coord_holds(struct shmc *c, uint32_t i)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < SHMC_HOLDS; k++) {
        uint64_t ent = atomic_load_explicit(&c->slots[i].hold[k].entry, memory_order_relaxed);
        if (!ent || ent > c->ncoord)
            continue;
        uint64_t s = atomic_load_explicit(&c->coord[ent - 1].state, memory_order_acquire);
        if (slot1_of(s) == i + 1 && st_k(s) == k)
            n++;
    }
    return n;
}
