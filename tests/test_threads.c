/*
 * test_threads.c — many threads of one process on one handle, on a small
 * cache that evicts all the time.  Written to be run under ThreadSanitizer
 * as well (CI does): every hit is validated, and afterwards the index must
 * be consistent.  Threads share the handle, as a threaded server would.
 * Also the 16-byte CAS (lib/cas16.h) against 8-byte adds on its pair, which
 * a TSan build once turned into a lock of the process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include "cas16.h"
#include "shmcache.h"
#include "testutil.h"

enum { NTHREADS = 4, NKEYS = 1500, OPS = 30000, MAXLEN = 3000 };

typedef struct targ {
    shmc_t *c;
    uint32_t id;
    _Atomic uint64_t *bad, *hits;
    char why[200];
} targ;

static void *worker(void *p)
{
    targ *a = p;
    tu_rng r;
    tu_rng_seed(&r, 1000 + a->id);
    uint8_t *buf = malloc(MAXLEN);
    uint32_t seq = 0;
    for (uint32_t i = 0; i < OPS; i++) {
        uint32_t key = tu_rng_below(&r, NKEYS);
        uint32_t op = tu_rng_below(&r, 10);
        shmc_status s;
        if (op < 4) {
            size_t len = tu_rng_range(&r, 1, MAXLEN);
            s = tu_set_value(a->c, "t-", key, buf, len, a->id, seq++, 0);
            if (s != SHMC_OK) {
                snprintf(a->why, sizeof a->why, "set: %s", shmc_strerror(s));
                atomic_fetch_add(a->bad, 1);
            }
        } else if (op < 9) {
            s = tu_get_check(a->c, "t-", key, buf, MAXLEN, a->why, sizeof a->why);
            if (s == SHMC_OK)
                atomic_fetch_add(a->hits, 1);
            else if (s != SHMC_NOT_FOUND)
                atomic_fetch_add(a->bad, 1);
        } else {
            char k[TU_KEY_MAX];
            size_t kl = tu_key(k, "t-", key);
            s = shmc_delete(a->c, k, kl);
            if (s != SHMC_OK && s != SHMC_NOT_FOUND)
                atomic_fetch_add(a->bad, 1);
        }
    }
    free(buf);
    /* Half the threads leave their slot early, the rest at thread exit. */
    if (a->id % 2)
        shmc_thread_detach(a->c);
    return NULL;
}

static void test_threads_evicting_cache(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "thr");
    shmc_options o = {.size = 4u << 20, .max_value = 8u << 10};
    shmc_t *c;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    _Atomic uint64_t bad = 0, hits = 0;
    targ args[NTHREADS];
    pthread_t th[NTHREADS];
    for (uint32_t i = 0; i < NTHREADS; i++) {
        args[i] = (targ){.c = c, .id = i, .bad = &bad, .hits = &hits};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (uint32_t i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (uint32_t i = 0; i < NTHREADS; i++)
        if (args[i].why[0] && atomic_load(&bad))
            fail_msg("thread %u: %s", i, args[i].why);
    assert_int_equal(atomic_load(&bad), 0);
    assert_true(atomic_load(&hits) > 0);

    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    /* The cache really was under pressure: storage was reclaimed, by
     * compaction (the live data, about 2.3 MB, fits) or eviction. */
    assert_true(st.evictions + st.compactions > 0);
    assert_int_equal(st.slots_live, 0); /* every thread's slot came back */
    shmc_verify_report rep;
    shmc_status v = shmc_verify(c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
    uint8_t buf[MAXLEN];
    char why[200];
    uint64_t present = 0;
    for (uint32_t k = 0; k < NKEYS; k++) {
        shmc_status s = tu_get_check(c, "t-", k, buf, sizeof buf, why, sizeof why);
        if (s == SHMC_OK)
            present++;
        else if (s != SHMC_NOT_FOUND)
            fail_msg("key %u after the run: %s", k, why);
    }
    assert_int_equal(present, rep.items);
    shmc_close(c);
    tu_destroy(name);
}

/* Threads of one process contend on named locks and fill one key: a plain
 * counter under the lock ends exact (and TSan sees the lock order every
 * access), and exactly one thread computes the filled value. */
enum { LOCK_ITERS = 20000 };

typedef struct lock_arg {
    shmc_t *c;
    uint64_t *counter;
    _Atomic uint64_t *fills, *bad;
} lock_arg;

static int32_t count_fill(void *p, const void *key, size_t klen, shmc_fill_out *out)
{
    (void)key, (void)klen;
    lock_arg *a = p;
    atomic_fetch_add(a->fills, 1);
    tu_sleep_ms(20);
    out->val = malloc(4);
    memcpy(out->val, "done", 4);
    out->vlen = 4;
    return 0;
}

static void *lock_worker(void *p)
{
    lock_arg *a = p;
    for (int i = 0; i < LOCK_ITERS; i++) {
        uint64_t t;
        if (shmc_lock_acquire(a->c, "ctr", 3, 60000, 0, &t) != SHMC_OK) {
            atomic_fetch_add(a->bad, 1);
            break;
        }
        (*a->counter)++;
        if (shmc_lock_release(a->c, "ctr", 3, t) != SHMC_OK)
            atomic_fetch_add(a->bad, 1);
    }
    void *v;
    size_t n;
    shmc_fill_opts o = {.wait_ms = 60000};
    if (shmc_get_or_fill(a->c, "filled", 6, count_fill, a, &o, &v, &n, NULL, NULL) != SHMC_OK ||
        n != 4 || memcmp(v, "done", 4) != 0)
        atomic_fetch_add(a->bad, 1);
    else
        free(v);
    return NULL;
}

static void test_threads_locks_and_fill(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "thrlock");
    shmc_options o = {.size = 4u << 20, .max_value = 8u << 10};
    shmc_t *c;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    uint64_t counter = 0;
    _Atomic uint64_t fills = 0, bad = 0;
    lock_arg a = {c, &counter, &fills, &bad};
    pthread_t th[NTHREADS];
    for (uint32_t i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, lock_worker, &a), 0);
    for (uint32_t i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(atomic_load(&bad), 0);
    assert_int_equal(counter, (uint64_t)NTHREADS * LOCK_ITERS);
    assert_int_equal(atomic_load(&fills), 1);
    shmc_close(c);
    tu_destroy(name);
}

/* The 16-byte CAS against 8-byte adds on one word of its pair, the way
 * seg_dec_live_if and seg_inc_live share a segment's {live, life}: one side
 * adds 1 to the low word, the other lowers it by 1 and bumps the high word
 * with cas16.  Neither may lose the other's step, between threads or between
 * processes.  (Under gcc's TSan the compiler's 16-byte builtin is a lock of
 * the process, a read and a plain store: it lost adds here, and the threaded
 * eviction test above then failed to verify one run in ten.) */
enum { PAIR_STEPS = 300000 };

static void pair_adds(uint64_t *w)
{
    for (uint32_t i = 0; i < PAIR_STEPS; i++)
        __atomic_fetch_add(&w[0], 1, __ATOMIC_RELAXED);
}
static void *pair_adds_thread(void *p)
{
    pair_adds(p);
    return NULL;
}
static int pair_adds_child(void *p)
{
    pair_adds(p);
    return 0;
}
static void pair_cas_steps(uint64_t *w)
{
    u128 *pair = (u128 *)(void *)w;
    for (uint32_t i = 0; i < PAIR_STEPS; i++) {
        u128 x = ((u128)__atomic_load_n(&w[1], __ATOMIC_RELAXED) << 64) |
                 __atomic_load_n(&w[0], __ATOMIC_RELAXED);
        for (;;) {
            u128 want = (((x >> 64) + 1) << 64) | (uint64_t)((uint64_t)x - 1);
            u128 was = cas16(pair, x, want);
            if (was == x)
                break;
            x = was;
        }
    }
}

static void test_cas16_against_word_adds(void **state)
{
    (void)state;
    /* Shared, so that a forked child adds to the same pair. */
    uint64_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(w != MAP_FAILED);
    for (int proc = 0; proc < 2; proc++) {
        /* The low word starts high enough that the CAS side, which may run
         * ahead of the adds, never wraps it. */
        w[0] = PAIR_STEPS, w[1] = 0;
        pthread_t th;
        pid_t pid = -1;
        if (proc)
            assert_true((pid = tu_fork(pair_adds_child, w)) > 0);
        else
            assert_int_equal(pthread_create(&th, NULL, pair_adds_thread, w), 0);
        pair_cas_steps(w);
        if (proc)
            assert_int_equal(tu_wait(pid, 120000), 0);
        else
            assert_int_equal(pthread_join(th, NULL), 0);
        uint64_t lo = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE);
        uint64_t hi = __atomic_load_n(&w[1], __ATOMIC_ACQUIRE);
        if (lo != PAIR_STEPS || hi != PAIR_STEPS)
            fail_msg("%s: low word %llu (want %u: %lld steps lost), high word %llu (want %u)",
                     proc ? "processes" : "threads", (unsigned long long)lo, PAIR_STEPS,
                     (long long)PAIR_STEPS - (long long)lo, (unsigned long long)hi, PAIR_STEPS);
    }
    munmap(w, 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_evicting_cache),
        cmocka_unit_test(test_threads_locks_and_fill),
        cmocka_unit_test(test_cas16_against_word_adds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
