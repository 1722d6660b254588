/*
 * test_coord.c — named locks and singleflight across real processes:
 * mutual exclusion, fencing tokens, leases, holders and leaders killed with
 * SIGKILL, error propagation, per-key independence, early refresh, table
 * limits and bad input.  Every wait is bounded; no assertion is on timing
 * (a waiter that is not woken by a death fails by timing out instead).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

typedef tu_fx fx;

static int open_cache(const char *name, uint32_t locks, shmc_t **c)
{
    shmc_options o = {.size = 16ull << 20, .max_value = 64u << 10, .locks = locks};
    return shmc_open(name, &o, c);
}

static int setup(void **state)
{
    shmc_options o = {.size = 16ull << 20, .max_value = 64u << 10};
    return tu_fx_setup(state, "coord", &o);
}
#define teardown tu_fx_teardown

#define L(s) (s), strlen(s)

/* Shared between the parent and its children. */
typedef struct shared {
    tu_report rep;
    tu_barrier start;
    _Atomic int ready;
    _Atomic uint64_t fills;          /* times a fill callback ran */
    _Atomic uint64_t done;
    _Atomic uint64_t counter_acks;   /* increments acknowledged after release */
    uint64_t counter;                /* protected by the lock under test */
    _Atomic uint64_t last_token;
    _Atomic int results[16];         /* per child: status */
    char values[16][32];             /* per child: the value it got */
    _Atomic uint64_t tokens[16];
    const char *name;
} shared;

static shared *shared_new(const char *name, unsigned parties)
{
    shared *sh = tu_shared_alloc(sizeof *sh);
    sh->name = name;
    if (parties)
        tu_barrier_init(&sh->start, parties);
    return sh;
}

static void shared_free(shared *sh, unsigned parties)
{
    if (parties)
        tu_barrier_destroy(&sh->start);
    tu_shared_free(sh, sizeof *sh);
}

static void wait_all(pid_t *pids, unsigned n, unsigned timeout_ms)
{
    for (unsigned i = 0; i < n; i++) {
        char b[64];
        int st = tu_wait(pids[i], timeout_ms);
        if (st != 0)
            fail_msg("child %u: %s", i, tu_status_str(st, b, sizeof b));
    }
}

static void wait_ready(shared *sh, int n)
{
    uint64_t end = tu_now_ms() + 20000;
    while (atomic_load(&sh->ready) < n && tu_now_ms() < end)
        tu_sleep_ms(1);
    assert_true(atomic_load(&sh->ready) >= n);
}

/* ------------------------------------------------------------------ locks */

static void test_lock_basics(void **state)
{
    fx *f = *state;
    uint64_t t1 = 0, t2 = 0, t3 = 0;
    assert_int_equal(shmc_lock_acquire(f->c, L("jobs"), 1000, 0, &t1), SHMC_OK);
    assert_true(t1 != 0);
    /* Another thread's try is refused; the same name in the key namespace
     * is unrelated. */
    assert_int_equal(shmc_set(f->c, L("jobs"), "v", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_lock_extend(f->c, L("jobs"), t1, 5000), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, L("jobs"), t1 + 1), SHMC_ENOTOWNER);
    assert_int_equal(shmc_lock_release(f->c, L("other"), t1), SHMC_ENOTOWNER);
    assert_int_equal(shmc_lock_release(f->c, L("jobs"), t1), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, L("jobs"), t1), SHMC_ENOTOWNER);
    assert_int_equal(shmc_lock_extend(f->c, L("jobs"), t1, 10), SHMC_ENOTOWNER);
    assert_int_equal(shmc_lock_try(f->c, L("jobs"), 0, &t2), SHMC_OK);
    assert_true(t2 > t1);
    assert_int_equal(shmc_lock_release(f->c, L("jobs"), t2), SHMC_OK);
    /* Binary names. */
    const char bin[] = {'a', 0, 'b'};
    assert_int_equal(shmc_lock_acquire(f->c, bin, sizeof bin, 100, 0, &t3), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, bin, sizeof bin, t3), SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_int_equal(st.lock_acquires, 3);
    assert_int_equal(st.locks_used, 0);
    assert_true(st.locks_capacity > 0);
}

static void test_lock_bad_input(void **state)
{
    fx *f = *state;
    uint64_t t;
    char big[300];
    memset(big, 'k', sizeof big);
    assert_int_equal(shmc_lock_acquire(NULL, L("x"), 0, 0, &t), SHMC_EINVAL);
    assert_int_equal(shmc_lock_acquire(f->c, NULL, 1, 0, 0, &t), SHMC_EINVAL);
    assert_int_equal(shmc_lock_acquire(f->c, L("x"), 0, 0, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_lock_acquire(f->c, "x", 0, 0, 0, &t), SHMC_EKEYLEN);
    assert_int_equal(shmc_lock_acquire(f->c, big, sizeof big, 0, 0, &t), SHMC_EKEYLEN);
    assert_int_equal(shmc_lock_release(f->c, big, sizeof big, 1), SHMC_EKEYLEN);
    assert_int_equal(shmc_lock_release(f->c, L("x"), 0), SHMC_ENOTOWNER);
    assert_int_equal(shmc_lock_extend(NULL, L("x"), 1, 1), SHMC_EINVAL);
    assert_string_equal(shmc_strerror(SHMC_ENOTOWNER),
                        "not the current owner (released already, or the lease or fill "
                        "deadline passed and another took over)");
}

static void *thread_try(void *p)
{
    shmc_t *c = p;
    uint64_t t;
    intptr_t r = shmc_lock_try(c, L("busy"), 0, &t);
    return (void *)r;
}

static void *thread_hold_and_exit(void *p)
{
    shmc_t *c = p;
    uint64_t t;
    intptr_t r = shmc_lock_acquire(c, L("exiting"), 1000, 0, &t);
    return (void *)r; /* exits holding it */
}

static void test_lock_threads(void **state)
{
    fx *f = *state;
    uint64_t t;
    assert_int_equal(shmc_lock_acquire(f->c, L("busy"), 1000, 0, &t), SHMC_OK);
    pthread_t th;
    void *res;
    assert_int_equal(pthread_create(&th, NULL, thread_try, f->c), 0);
    pthread_join(th, &res);
    assert_int_equal((intptr_t)res, SHMC_EBUSY);
    /* Released by its own thread only. */
    assert_int_equal(shmc_lock_release(f->c, L("busy"), t), SHMC_OK);
    assert_int_equal(pthread_create(&th, NULL, thread_try, f->c), 0);
    pthread_join(th, &res);
    assert_int_equal((intptr_t)res, SHMC_OK); /* and that thread exited holding it */
    /* A thread that exits holding a lock releases it. */
    assert_int_equal(pthread_create(&th, NULL, thread_hold_and_exit, f->c), 0);
    pthread_join(th, &res);
    assert_int_equal((intptr_t)res, SHMC_OK);
    assert_int_equal(shmc_lock_acquire(f->c, L("exiting"), 5000, 0, &t), SHMC_OK);
    assert_int_equal(shmc_lock_acquire(f->c, L("busy"), 5000, 0, &t), SHMC_OK);
    /* Detaching releases what the thread holds. */
    shmc_thread_detach(f->c);
    assert_int_equal(shmc_lock_try(f->c, L("exiting"), 0, &t), SHMC_OK);
}

static void test_lock_not_reentrant_and_holds_limit(void **state)
{
    fx *f = *state;
    uint64_t t[SHMC_MAX_HOLDS + 1], x;
    assert_int_equal(shmc_lock_acquire(f->c, L("self"), 1000, 0, &x), SHMC_OK);
    assert_int_equal(shmc_lock_try(f->c, L("self"), 0, &t[0]), SHMC_EBUSY);
    assert_int_equal(shmc_lock_acquire(f->c, L("self"), 30, 0, &t[0]), SHMC_ETIMEDOUT);
    assert_int_equal(shmc_lock_release(f->c, L("self"), x), SHMC_OK);
    char n[16];
    for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++) {
        snprintf(n, sizeof n, "h%u", i);
        assert_int_equal(shmc_lock_acquire(f->c, L(n), 1000, 0, &t[i]), SHMC_OK);
    }
    assert_int_equal(shmc_lock_try(f->c, L("one-more"), 0, &x), SHMC_EHOLDS);
    for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++) {
        snprintf(n, sizeof n, "h%u", i);
        assert_int_equal(shmc_lock_release(f->c, L(n), t[i]), SHMC_OK);
    }
    assert_int_equal(shmc_lock_try(f->c, L("one-more"), 0, &x), SHMC_OK);
}

/* A lease that ends lets the next caller in; the old owner is refused. */
static void test_lock_lease_expiry(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    uint64_t old;
    assert_int_equal(shmc_lock_acquire(f->c, L("lease"), 1000, 50, &old), SHMC_OK);
    /* A child waits and takes it over when the lease ends. */
    pid_t p = fork();
    if (p == 0) {
        shmc_t *c;
        uint64_t t = 0;
        int st = shmc_open(sh->name, NULL, &c);
        if (st == SHMC_OK)
            st = shmc_lock_acquire(c, L("lease"), 20000, 0, &t);
        atomic_store(&sh->tokens[0], t);
        atomic_store(&sh->results[0], st);
        _exit(0);
    }
    wait_all(&p, 1, 30000);
    assert_int_equal(atomic_load(&sh->results[0]), SHMC_OK);
    assert_true(atomic_load(&sh->tokens[0]) > old);
    assert_int_equal(shmc_lock_extend(f->c, L("lease"), old, 1000), SHMC_ENOTOWNER);
    assert_int_equal(shmc_lock_release(f->c, L("lease"), old), SHMC_ENOTOWNER);
    /* The child died holding it (no lease): released at once. */
    uint64_t t;
    assert_int_equal(shmc_lock_acquire(f->c, L("lease"), 20000, 0, &t), SHMC_OK);
    assert_true(t > atomic_load(&sh->tokens[0]));
    /* An expired lease is also taken by a try. */
    assert_int_equal(shmc_lock_extend(f->c, L("lease"), t, 1), SHMC_OK);
    tu_sleep_ms(5);
    p = fork();
    if (p == 0) {
        shmc_t *c;
        uint64_t t2 = 0;
        int st = shmc_open(sh->name, NULL, &c);
        if (st == SHMC_OK)
            st = shmc_lock_try(c, L("lease"), 0, &t2);
        atomic_store(&sh->results[1], st);
        _exit(0);
    }
    wait_all(&p, 1, 30000);
    assert_int_equal(atomic_load(&sh->results[1]), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, L("lease"), t), SHMC_ENOTOWNER);
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    assert_true(st.lock_takeovers >= 3); /* two leases, one death */
    shared_free(sh, 0);
}

/* An extend that comes after the lease ended, with nobody waiting, frees
 * the lock: it is not left naming the thread (counted as used, held by
 * nobody) when that thread drops it, and the next taker needs no takeover. */
static void test_lock_extend_too_late(void **state)
{
    fx *f = *state;
    uint64_t t = 0, t2 = 0;
    assert_int_equal(shmc_lock_acquire(f->c, L("late"), 1000, 5, &t), SHMC_OK);
    tu_sleep_ms(20);
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    uint64_t takeovers = st.lock_takeovers;
    assert_int_equal(shmc_lock_extend(f->c, L("late"), t, 1000), SHMC_ENOTOWNER);
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_int_equal(st.locks_used, 0);
    shmc_lock_info li[4];
    size_t n = 99;
    assert_int_equal(shmc_locks_list(f->c, 1, li, 4, &n), SHMC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(shmc_lock_release(f->c, L("late"), t), SHMC_ENOTOWNER);
    /* Another process takes it at once, as a plain acquire. */
    shared *sh = shared_new(f->name, 0);
    pid_t p = fork();
    if (p == 0) {
        shmc_t *c;
        int r = shmc_open(sh->name, NULL, &c);
        if (r == SHMC_OK)
            r = shmc_lock_try(c, L("late"), 0, &t2);
        atomic_store(&sh->tokens[0], t2);
        atomic_store(&sh->results[0], r);
        _exit(0);
    }
    wait_all(&p, 1, 30000);
    assert_int_equal(atomic_load(&sh->results[0]), SHMC_OK);
    assert_true(atomic_load(&sh->tokens[0]) > t);
    shmc_stats_get(f->c, &st);
    assert_int_equal(st.lock_takeovers, takeovers);
    shared_free(sh, 0);
}

/* In a forked child: takes lock `name` with no lease and publishes the
 * token in sh->last_token (_exit(1) on failure). */
static void child_hold(shared *sh, const char *name)
{
    shmc_t *c;
    uint64_t t;
    if (shmc_open(sh->name, NULL, &c) != SHMC_OK ||
        shmc_lock_acquire(c, L(name), 1000, 0, &t) != SHMC_OK)
        _exit(1);
    atomic_store(&sh->last_token, t);
}

/* A holder SIGKILLed with no lease: the waiter gets the lock, woken by the
 * death (its own timeout is far away and the lock has no lease). */
static void test_lock_holder_killed(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    pid_t holder = fork();
    if (holder == 0) {
        child_hold(sh, "victim");
        atomic_fetch_add(&sh->ready, 1);
        for (;;)
            pause();
    }
    wait_ready(sh, 1);
    pid_t waiters[3];
    for (int i = 0; i < 3; i++) {
        waiters[i] = fork();
        if (waiters[i] == 0) {
            shmc_t *c;
            uint64_t t = 0;
            int st = shmc_open(sh->name, NULL, &c);
            atomic_fetch_add(&sh->ready, 1);
            if (st == SHMC_OK)
                st = shmc_lock_acquire(c, L("victim"), 60000, 0, &t);
            atomic_store(&sh->results[i], st);
            atomic_store(&sh->tokens[i], t);
            if (st == SHMC_OK) {
                tu_sleep_ms(2);
                st = shmc_lock_release(c, L("victim"), t);
                if (st != SHMC_OK)
                    tu_report_error(&sh->rep, "release: %s", shmc_strerror(st));
            }
            _exit(0);
        }
    }
    wait_ready(sh, 4);
    tu_sleep_ms(50); /* let them fall asleep on the holder */
    uint64_t t0 = tu_now_ms();
    kill(holder, SIGKILL);
    assert_int_equal(tu_wait(holder, 10000), TU_SIGNALLED + SIGKILL);
    wait_all(waiters, 3, 30000);
    printf("# 3 waiters served %llu ms after the holder's death\n",
           (unsigned long long)(tu_now_ms() - t0));
    uint64_t seen[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&sh->results[i]), SHMC_OK);
        seen[i] = atomic_load(&sh->tokens[i]);
        assert_true(seen[i] > atomic_load(&sh->last_token));
    }
    assert_true(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
    assert_int_equal(atomic_load(&sh->rep.errors), 0);
    shared_free(sh, 0);
}

/* A holder that vanishes without the kernel's owner-died mark: its thread
 * had unregistered its robust list, as if the segment had been restored
 * with the lock held, so no waiter is ever woken by its death.  A waiter
 * looks at the holder at each safety re-check (1 s) and takes over; it does
 * not wait out its whole timeout. */
static void test_lock_holder_vanished(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    pid_t holder = fork();
    if (holder == 0) {
        child_hold(sh, "ghost");
        _exit(tu_forget_robust_list() == 0 ? 0 : 2);
    }
    assert_int_equal(tu_wait(holder, 10000), 0);
    uint64_t t;
    assert_int_equal(shmc_lock_try(f->c, L("ghost"), 0, &t), SHMC_EBUSY);
    assert_int_equal(shmc_lock_acquire(f->c, L("ghost"), 30000, 0, &t), SHMC_OK);
    assert_true(t > atomic_load(&sh->last_token));
    assert_int_equal(shmc_lock_release(f->c, L("ghost"), t), SHMC_OK);
    shared_free(sh, 0);
}

/* Mutual exclusion: a plain (non-atomic) counter incremented under the lock
 * by several processes ends exactly right; tokens strictly increase in the
 * order the critical sections ran; nobody starves (every worker finishes
 * its quota). */
enum { MX_PROCS = 5, MX_ITERS = 3000 };

static int mutex_worker(void *p)
{
    shared *sh = p;
    shmc_t *c;
    if (shmc_open(sh->name, NULL, &c) != SHMC_OK)
        return 1;
    tu_barrier_wait(&sh->start);
    for (int i = 0; i < MX_ITERS; i++) {
        uint64_t t;
        shmc_status st = shmc_lock_acquire(c, L("counter"), 60000, 0, &t);
        if (st != SHMC_OK) {
            tu_report_error(&sh->rep, "acquire: %s", shmc_strerror(st));
            return 2;
        }
        uint64_t last = atomic_load_explicit(&sh->last_token, memory_order_relaxed);
        if (t <= last)
            tu_report_error(&sh->rep, "token %llu after %llu", (unsigned long long)t,
                            (unsigned long long)last);
        atomic_store_explicit(&sh->last_token, t, memory_order_relaxed);
        uint64_t v = sh->counter;
        if (i % 64 == 0)
            sched_yield(); /* widen the window a broken lock would show */
        sh->counter = v + 1;
        st = shmc_lock_release(c, L("counter"), t);
        if (st != SHMC_OK)
            tu_report_error(&sh->rep, "release: %s", shmc_strerror(st));
        atomic_fetch_add(&sh->counter_acks, 1);
    }
    shmc_close(c);
    return 0;
}

static void test_lock_mutual_exclusion(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, MX_PROCS);
    pid_t p[MX_PROCS];
    for (int i = 0; i < MX_PROCS; i++)
        p[i] = tu_fork(mutex_worker, sh);
    wait_all(p, MX_PROCS, 110000);
    if (atomic_load(&sh->rep.errors))
        fail_msg("%s", tu_report_msg(&sh->rep));
    assert_int_equal(sh->counter, (uint64_t)MX_PROCS * MX_ITERS);
    assert_int_equal(atomic_load(&sh->counter_acks), (uint64_t)MX_PROCS * MX_ITERS);
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    printf("# %d procs x %d: %llu acquisitions, %llu waited\n", MX_PROCS, MX_ITERS,
           (unsigned long long)st.lock_acquires, (unsigned long long)st.lock_waits);
    shared_free(sh, MX_PROCS);
}

/* Holders and waiters SIGKILLed at random moments, over and over: the
 * survivors never deadlock, never share the lock (the counter loses no
 * acknowledged increment and gains at most one per kill), and the table is
 * left with nothing held. */
static int kill_worker(void *p)
{
    shared *sh = p;
    shmc_t *c;
    if (shmc_open(sh->name, NULL, &c) != SHMC_OK)
        return 1;
    while (!atomic_load(&sh->rep.stop)) {
        uint64_t t;
        shmc_status st = shmc_lock_acquire(c, L("kl"), 60000, 0, &t);
        if (st != SHMC_OK) {
            tu_report_error(&sh->rep, "acquire: %s", shmc_strerror(st));
            return 2;
        }
        uint64_t v = sh->counter;
        sh->counter = v + 1;
        if (shmc_lock_release(c, L("kl"), t) != SHMC_OK)
            tu_report_error(&sh->rep, "release refused");
        atomic_fetch_add(&sh->counter_acks, 1);
    }
    return 0;
}

static void test_lock_sigkill_storm(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    enum { W = 4 };
    pid_t p[W];
    for (int i = 0; i < W; i++)
        p[i] = tu_fork(kill_worker, sh);
    tu_rng r;
    tu_rng_seed(&r, 42);
    unsigned kills = 0;
    uint64_t end = tu_now_ms() + 1500;
    while (tu_now_ms() < end) {
        tu_sleep_ms(tu_rng_range(&r, 1, 8));
        int i = (int)tu_rng_below(&r, W);
        kill(p[i], SIGKILL);
        assert_int_equal(tu_wait(p[i], 10000), TU_SIGNALLED + SIGKILL);
        kills++;
        p[i] = tu_fork(kill_worker, sh);
    }
    uint64_t before = atomic_load(&sh->counter_acks);
    tu_sleep_ms(100);
    assert_true(atomic_load(&sh->counter_acks) > before); /* still making progress */
    atomic_store(&sh->rep.stop, 1);
    wait_all(p, W, 60000);
    if (atomic_load(&sh->rep.errors))
        fail_msg("%s", tu_report_msg(&sh->rep));
    uint64_t acks = atomic_load(&sh->counter_acks);
    printf("# %u kills, %llu acknowledged increments, counter %llu\n", kills,
           (unsigned long long)acks, (unsigned long long)sh->counter);
    assert_true(sh->counter >= acks);
    assert_true(sh->counter <= acks + kills);
    uint64_t t;
    assert_int_equal(shmc_lock_acquire(f->c, L("kl"), 10000, 0, &t), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, L("kl"), t), SHMC_OK);
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    assert_int_equal(st.locks_used, 0);
    shared_free(sh, 0);
}

/* Entries are recycled for other names, and a name's tokens still
 * increase across recycling; a full table is a clear error. */
static void test_lock_table_recycling_and_full(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "coordtab");
    shmc_t *c;
    assert_int_equal(open_cache(name, 4, &c), SHMC_OK);
    shmc_info in;
    shmc_info_get(c, &in);
    assert_int_equal(in.locks, 4);
    uint64_t prev = 0;
    char n[16];
    for (int round = 0; round < 20; round++) {
        uint64_t t;
        assert_int_equal(shmc_lock_acquire(c, L("keep"), 100, 0, &t), SHMC_OK);
        assert_true(t > prev);
        prev = t;
        assert_int_equal(shmc_lock_release(c, L("keep"), t), SHMC_OK);
        for (int j = 0; j < 6; j++) { /* push "keep" out of the table */
            snprintf(n, sizeof n, "n%d-%d", round, j);
            assert_int_equal(shmc_lock_acquire(c, L(n), 100, 0, &t), SHMC_OK);
            assert_int_equal(shmc_lock_release(c, L(n), t), SHMC_OK);
        }
    }
    uint64_t held[4];
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "held%d", i);
        assert_int_equal(shmc_lock_acquire(c, L(n), 100, 0, &held[i]), SHMC_OK);
    }
    uint64_t t;
    assert_int_equal(shmc_lock_try(c, L("fifth"), 0, &t), SHMC_ETABLEFULL);
    assert_int_equal(shmc_lock_release(c, L("held0"), held[0]), SHMC_OK);
    assert_int_equal(shmc_lock_try(c, L("fifth"), 0, &t), SHMC_OK);
    /* The option is checked on attach. */
    shmc_t *c2;
    shmc_options o = {.locks = 8};
    assert_int_equal(shmc_open(name, &o, &c2), SHMC_EMISMATCH);
    shmc_close(c);
    tu_destroy(name);
    o = (shmc_options){.locks = (1u << 20) + 1};
    assert_int_equal(shmc_open(name, &o, &c2), SHMC_EINVAL);
}

/* Locks are not inherited across fork: the child cannot release the
 * parent's lock, and the parent still holds it after the child exits. */
static void test_lock_fork(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    uint64_t t;
    assert_int_equal(shmc_lock_acquire(f->c, L("forked"), 1000, 0, &t), SHMC_OK);
    pid_t p = fork();
    if (p == 0) {
        uint64_t t2;
        atomic_store(&sh->results[0], shmc_lock_release(f->c, L("forked"), t));
        atomic_store(&sh->results[1], shmc_lock_try(f->c, L("forked"), 0, &t2));
        _exit(0);
    }
    wait_all(&p, 1, 30000);
    assert_int_equal(atomic_load(&sh->results[0]), SHMC_ENOTOWNER);
    assert_int_equal(atomic_load(&sh->results[1]), SHMC_EBUSY);
    assert_int_equal(shmc_lock_release(f->c, L("forked"), t), SHMC_OK);
    shared_free(sh, 0);
}

/* ---------------------------------------------------------- singleflight */

typedef struct fill_ctx {
    shared *sh;
    unsigned delay_ms;
    int32_t fail;          /* non-zero: fail with this code */
    int child;
} fill_ctx;

static int32_t slow_fill(void *p, const void *key, size_t klen, shmc_fill_out *out)
{
    fill_ctx *x = p;
    atomic_fetch_add(&x->sh->fills, 1);
    tu_sleep_ms(x->delay_ms);
    if (x->fail) {
        snprintf(out->message, sizeof out->message, "backend down (%d)", x->child);
        return x->fail;
    }
    char *v = malloc(64);
    int n = snprintf(v, 64, "value-of-%.*s-by-%d", (int)klen, (const char *)key, x->child);
    out->val = v;
    out->vlen = (size_t)n;
    out->flags = 7;
    return 0;
}

enum { SF_PROCS = 10 };

typedef struct sf_arg {
    shared *sh;
    int idx;
    int32_t fail;
    unsigned delay;
    uint64_t error_ttl;
    const char *key;
} sf_arg;

static int sf_child(void *p)
{
    sf_arg *a = p;
    shared *sh = a->sh;
    shmc_t *c;
    if (shmc_open(sh->name, NULL, &c) != SHMC_OK)
        return 1;
    tu_barrier_wait(&sh->start);
    fill_ctx x = {sh, a->delay, a->fail, a->idx};
    shmc_fill_opts o = {.ttl_ms = 0, .wait_ms = 30000, .error_ttl_ms = a->error_ttl};
    void *v = NULL;
    size_t n = 0;
    uint32_t fl = 0;
    shmc_fill fe;
    shmc_status st = shmc_get_or_fill(c, L(a->key), slow_fill, &x, &o, &v, &n, &fl, &fe);
    atomic_store(&sh->results[a->idx], st);
    if (st == SHMC_OK) {
        if (fl != 7)
            tu_report_error(&sh->rep, "flags %u", fl);
        snprintf(sh->values[a->idx], sizeof sh->values[0], "%.*s", (int)n, (char *)v);
        free(v);
    } else if (st == SHMC_EFILL) {
        snprintf(sh->values[a->idx], sizeof sh->values[0], "%d:%.20s", fe.error, fe.message);
    }
    shmc_close(c);
    return 0;
}

static void run_sf(shared *sh, const char *key, int32_t fail, unsigned delay, uint64_t error_ttl)
{
    pid_t p[SF_PROCS];
    sf_arg args[SF_PROCS];
    for (int i = 0; i < SF_PROCS; i++) {
        args[i] = (sf_arg){sh, i, fail, delay, error_ttl, key};
        p[i] = tu_fork(sf_child, &args[i]);
    }
    wait_all(p, SF_PROCS, 60000);
    if (atomic_load(&sh->rep.errors))
        fail_msg("%s", tu_report_msg(&sh->rep));
}

static void test_fill_one_computation(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, SF_PROCS);
    run_sf(sh, "hot", 0, 100, 0);
    assert_int_equal(atomic_load(&sh->fills), 1);
    for (int i = 0; i < SF_PROCS; i++) {
        assert_int_equal(atomic_load(&sh->results[i]), SHMC_OK);
        assert_string_equal(sh->values[i], sh->values[0]);
    }
    /* Now a plain hit: no fill, no wait. */
    char buf[64];
    size_t n;
    assert_int_equal(shmc_get(f->c, L("hot"), buf, sizeof buf, &n, NULL), SHMC_OK);
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    assert_int_equal(st.fills, 1);
    assert_true(st.fill_waits >= 1);
    assert_int_equal(st.locks_used, 0);
    shared_free(sh, SF_PROCS);
}

static void test_fill_error_propagation(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, SF_PROCS);
    /* Error cached for 60 s: the waiters and every later caller get it. */
    run_sf(sh, "broken", 503, 100, 60000);
    assert_int_equal(atomic_load(&sh->fills), 1);
    for (int i = 0; i < SF_PROCS; i++) {
        assert_int_equal(atomic_load(&sh->results[i]), SHMC_EFILL);
        assert_memory_equal(sh->values[i], "503:backend down (", 18);
        assert_string_equal(sh->values[i], sh->values[0]);
    }
    fill_ctx x = {sh, 0, 0, 99};
    void *v;
    size_t n;
    shmc_fill fe;
    assert_int_equal(shmc_get_or_fill(f->c, L("broken"), slow_fill, &x, NULL, &v, &n, NULL, &fe),
                     SHMC_EFILL);
    assert_int_equal(fe.error, 503);
    assert_int_equal(atomic_load(&sh->fills), 1);
    /* Not cached (error_ttl 0): the next caller fills again, and succeeds. */
    atomic_store(&sh->fills, 0);
    run_sf(sh, "flaky", 1, 100, 0);
    assert_int_equal(atomic_load(&sh->fills), 1);
    assert_int_equal(shmc_get_or_fill(f->c, L("flaky"), slow_fill, &x, NULL, &v, &n, NULL, &fe),
                     SHMC_OK);
    assert_int_equal(atomic_load(&sh->fills), 2);
    assert_memory_equal(v, "value-of-flaky-by-99", n);
    free(v);
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    assert_int_equal(st.fill_errors, 2);
    shared_free(sh, SF_PROCS);
}

/* The leader is SIGKILLed mid-fill with 8 waiters: exactly one of them takes
 * over (at once, well before the fill deadline), and all 8 return its value. */
static int sf_victim(void *p)
{
    shared *sh = p;
    shmc_t *c;
    void *v;
    size_t n;
    shmc_fill fl;
    if (shmc_open(sh->name, NULL, &c) != SHMC_OK)
        return 1;
    shmc_fill_opts o = {.fill_ms = 60000};
    if (shmc_fill_begin(c, L("doomed"), &o, &v, &n, NULL, &fl) != SHMC_LEADER)
        return 2;
    atomic_fetch_add(&sh->ready, 1);
    for (;;)
        pause();
}

static int sf_waiter(void *p)
{
    sf_arg *a = p;
    shared *sh = a->sh;
    shmc_t *c;
    if (shmc_open(sh->name, NULL, &c) != SHMC_OK)
        return 1;
    atomic_fetch_add(&sh->ready, 1);
    fill_ctx x = {sh, 20, 0, a->idx};
    shmc_fill_opts o = {.wait_ms = 30000, .fill_ms = 60000};
    void *v = NULL;
    size_t n = 0;
    uint32_t fl;
    shmc_status st = shmc_get_or_fill(c, L("doomed"), slow_fill, &x, &o, &v, &n, &fl, NULL);
    atomic_store(&sh->results[a->idx], st);
    if (st == SHMC_OK) {
        snprintf(sh->values[a->idx], sizeof sh->values[0], "%.*s", (int)n, (char *)v);
        free(v);
    }
    return 0;
}

static void test_fill_leader_killed(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    pid_t leader = tu_fork(sf_victim, sh);
    wait_ready(sh, 1);
    enum { N = 8 };
    pid_t w[N];
    sf_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (sf_arg){.sh = sh, .idx = i};
        w[i] = tu_fork(sf_waiter, &args[i]);
    }
    wait_ready(sh, 1 + N);
    tu_sleep_ms(50);
    kill(leader, SIGKILL);
    assert_int_equal(tu_wait(leader, 10000), TU_SIGNALLED + SIGKILL);
    wait_all(w, N, 40000);
    assert_int_equal(atomic_load(&sh->fills), 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&sh->results[i]), SHMC_OK);
        assert_string_equal(sh->values[i], sh->values[0]);
    }
    shmc_stats st;
    shmc_stats_get(f->c, &st);
    assert_int_equal(st.fill_takeovers, 1);
    assert_int_equal(st.fills, 2); /* the victim's and the takeover */
    shared_free(sh, 0);
}

/* A leader past its fill deadline is taken over; its late finish is
 * refused and stores nothing. */
static void test_fill_deadline_takeover(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    void *v;
    size_t n;
    shmc_fill late;
    shmc_fill_opts o = {.fill_ms = 50};
    assert_int_equal(shmc_fill_begin(f->c, L("slow"), &o, &v, &n, NULL, &late), SHMC_LEADER);
    assert_null(v);
    pid_t p = fork();
    if (p == 0) {
        shmc_t *c;
        shmc_fill fl;
        int st = shmc_open(sh->name, NULL, &c);
        shmc_fill_opts wo = {.wait_ms = 20000, .fill_ms = 20000};
        if (st == SHMC_OK)
            st = shmc_fill_begin(c, L("slow"), &wo, &v, &n, NULL, &fl);
        if (st == SHMC_LEADER)
            st = shmc_fill_finish(c, &fl, "fresh", 5, 0, 0);
        atomic_store(&sh->results[0], st);
        _exit(0);
    }
    wait_all(&p, 1, 30000);
    assert_int_equal(atomic_load(&sh->results[0]), SHMC_OK);
    assert_int_equal(shmc_fill_finish(f->c, &late, "stale", 5, 0, 0), SHMC_ENOTOWNER);
    char buf[16];
    assert_int_equal(shmc_get(f->c, L("slow"), buf, sizeof buf, &n, NULL), SHMC_OK);
    assert_memory_equal(buf, "fresh", 5);
    /* A finished fill cannot be finished twice. */
    assert_int_equal(shmc_fill_finish(f->c, &late, "x", 1, 0, 0), SHMC_EINVAL);
    shared_free(sh, 0);
}

/* A slow fill of one key does not delay another key. */
static void test_fill_keys_independent(void **state)
{
    fx *f = *state;
    shared *sh = shared_new(f->name, 0);
    pid_t p = fork();
    if (p == 0) {
        shmc_t *c;
        shmc_fill fl;
        void *v;
        size_t n;
        shmc_fill_opts o = {.fill_ms = 60000};
        if (shmc_open(sh->name, NULL, &c) != SHMC_OK ||
            shmc_fill_begin(c, L("A"), &o, &v, &n, NULL, &fl) != SHMC_LEADER)
            _exit(1);
        atomic_fetch_add(&sh->ready, 1);
        while (!atomic_load(&sh->rep.stop))
            tu_sleep_ms(1);
        shmc_fill_finish(c, &fl, "a", 1, 0, 0);
        _exit(0);
    }
    wait_ready(sh, 1);
    /* Key A is being filled: a short wait times out... */
    void *v;
    size_t n;
    shmc_fill fl;
    shmc_fill_opts o = {.wait_ms = 20};
    assert_int_equal(shmc_fill_begin(f->c, L("A"), &o, &v, &n, NULL, &fl), SHMC_ETIMEDOUT);
    /* ...while key B is led and finished by us at once. */
    o.wait_ms = 60000;
    assert_int_equal(shmc_fill_begin(f->c, L("B"), &o, &v, &n, NULL, &fl), SHMC_LEADER);
    assert_int_equal(shmc_fill_finish(f->c, &fl, "b", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_fill_begin(f->c, L("B"), &o, &v, &n, NULL, &fl), SHMC_OK);
    assert_memory_equal(v, "b", 1);
    free(v);
    atomic_store(&sh->rep.stop, 1);
    wait_all(&p, 1, 30000);
    assert_int_equal(shmc_fill_begin(f->c, L("A"), &o, &v, &n, NULL, &fl), SHMC_OK);
    assert_memory_equal(v, "a", 1);
    free(v);
    shared_free(sh, 0);
}

/* Early refresh: one caller refreshes a value close to its expiry while the
 * others keep getting the current one without waiting. */
static void test_fill_early_refresh(void **state)
{
    fx *f = *state;
    assert_int_equal(shmc_set(f->c, L("page"), "v1", 2, 0, 60000), SHMC_OK);
    shmc_fill_opts o = {.refresh_ms = 1000, .fill_ms = 60000};
    void *v;
    size_t n;
    shmc_fill fl;
    /* 60 s left: not due. */
    assert_int_equal(shmc_fill_begin(f->c, L("page"), &o, &v, &n, NULL, &fl), SHMC_OK);
    free(v);
    assert_int_equal(shmc_set(f->c, L("page"), "v1", 2, 0, 500), SHMC_OK);
    assert_int_equal(shmc_fill_begin(f->c, L("page"), &o, &v, &n, NULL, &fl), SHMC_LEADER);
    assert_null(v);
    shared *sh = shared_new(f->name, 0);
    pid_t p = fork();
    if (p == 0) {
        shmc_t *c;
        shmc_fill f2;
        void *v2;
        size_t n2;
        int st = shmc_open(sh->name, NULL, &c);
        if (st == SHMC_OK)
            st = shmc_fill_begin(c, L("page"), &o, &v2, &n2, NULL, &f2);
        atomic_store(&sh->results[0], st);
        if (st == SHMC_OK)
            memcpy(sh->values[0], v2, n2 < 8 ? n2 : 8);
        _exit(0);
    }
    wait_all(&p, 1, 30000);
    assert_int_equal(atomic_load(&sh->results[0]), SHMC_OK);
    assert_string_equal(sh->values[0], "v1");
    assert_int_equal(shmc_fill_finish(f->c, &fl, "v2", 2, 0, 60000), SHMC_OK);
    assert_int_equal(shmc_fill_begin(f->c, L("page"), &o, &v, &n, NULL, &fl), SHMC_OK);
    assert_memory_equal(v, "v2", 2);
    free(v);
    shared_free(sh, 0);
}

static void test_fill_split_api_errors(void **state)
{
    fx *f = *state;
    void *v;
    size_t n;
    shmc_fill fl;
    assert_int_equal(shmc_fill_begin(f->c, "", 0, NULL, &v, &n, NULL, &fl), SHMC_EKEYLEN);
    assert_int_equal(shmc_fill_begin(f->c, L("k"), NULL, NULL, &n, NULL, &fl), SHMC_EINVAL);
    assert_int_equal(shmc_fill_begin(f->c, L("k"), NULL, &v, &n, NULL, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get_or_fill(f->c, L("k"), NULL, NULL, NULL, &v, &n, NULL, NULL),
                     SHMC_EINVAL);
    memset(&fl, 0, sizeof fl);
    assert_int_equal(shmc_fill_finish(f->c, &fl, "x", 1, 0, 0), SHMC_EINVAL);
    assert_int_equal(shmc_fill_abort(f->c, &fl, 1, NULL, 0), SHMC_EINVAL);
    /* Abort with a long message: truncated, NUL-terminated. */
    assert_int_equal(shmc_fill_begin(f->c, L("k"), NULL, &v, &n, NULL, &fl), SHMC_LEADER);
    char msg[300];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    assert_int_equal(shmc_fill_abort(f->c, &fl, 9, msg, 60000), SHMC_OK);
    assert_int_equal(shmc_fill_begin(f->c, L("k"), NULL, &v, &n, NULL, &fl), SHMC_EFILL);
    assert_int_equal(fl.error, 9);
    assert_int_equal(strlen(fl.message), SHMC_FILL_MSG_MAX - 1);
    /* A value too large for the cache: the fill is aborted for the waiters. */
    shmc_fill_opts o = {.wait_ms = 100};
    assert_int_equal(shmc_fill_begin(f->c, L("big"), &o, &v, &n, NULL, &fl), SHMC_LEADER);
    size_t big = (64u << 10) + 1;
    char *b = calloc(1, big);
    assert_int_equal(shmc_fill_finish(f->c, &fl, b, big, 0, 0), SHMC_EVALLEN);
    free(b);
    assert_int_equal(shmc_fill_begin(f->c, L("big"), &o, &v, &n, NULL, &fl), SHMC_LEADER);
    assert_int_equal(shmc_fill_finish(f->c, &fl, "ok", 2, 0, 0), SHMC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lock_basics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_not_reentrant_and_holds_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_lease_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_extend_too_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_holder_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_holder_vanished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_mutual_exclusion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_sigkill_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_table_recycling_and_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_one_computation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_error_propagation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_leader_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_deadline_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_keys_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_early_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_split_api_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("shmcache locks and singleflight", tests, NULL, NULL);
}
