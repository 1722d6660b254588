/*
 * test_multiproc.c — real forked writer and reader processes on one cache
 * with overlapping keys.  Values are self-validating (testutil.h), so every
 * hit a reader gets is checked to be a whole value of exactly the key it
 * asked for: a torn, foreign, truncated or stale read fails the test.
 * Afterwards the parent checks the index with shmc_verify and re-validates
 * every key.  Runs once on a roomy cache and once on a small one that is
 * evicting all the time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmcache.h"
#include "testutil.h"

enum { NWRITERS = 4, NREADERS = 4, NFINAL = 100 };

typedef struct mp_cfg {
    char name[96];
    uint64_t size;
    uint32_t max_value;
    uint32_t nkeys;
    uint32_t minlen, maxlen;  /* usual value lengths */
    uint32_t biglen;          /* 0, or the largest of occasional big values */
    uint32_t ttl_pct;         /* % of sets with a short TTL */
    uint32_t ops;             /* per child */
    bool final_phase;         /* writers end with a disjoint set of keys */
} mp_cfg;

/* Shared between the parent and all children. */
typedef struct mp_shared {
    tu_barrier start;
    tu_report rep;
    _Atomic uint64_t sets_ok, deletes_ok, gets, hits;
} mp_shared;

typedef struct mp_child {
    const mp_cfg *cfg;
    mp_shared *sh;
    uint32_t id;
} mp_child;

static const char *status_or_invalid(shmc_status s)
{
    return s == TU_INVALID ? "invalid value" : shmc_strerror(s);
}

static uint32_t pick_len(const mp_cfg *cfg, tu_rng *r)
{
    if (cfg->biglen && tu_rng_below(r, 100) < 3)
        return tu_rng_range(r, cfg->maxlen, cfg->biglen);
    return tu_rng_range(r, cfg->minlen, cfg->maxlen);
}

static int writer_main(void *p)
{
    mp_child *a = p;
    const mp_cfg *cfg = a->cfg;
    mp_shared *sh = a->sh;
    shmc_t *c = NULL;
    shmc_status s = shmc_open(cfg->name, NULL, &c);
    tu_barrier_wait(&sh->start);
    if (s != SHMC_OK) {
        tu_report_error(&sh->rep, "writer %u: open: %s", a->id, shmc_strerror(s));
        return 1;
    }
    uint8_t *buf = malloc(cfg->max_value + 1);
    char why[200];
    tu_rng r;
    tu_rng_seed(&r, 0x57000000u + a->id);
    uint64_t sets = 0, dels = 0;
    for (uint32_t i = 0; i < cfg->ops; i++) {
        uint32_t k = tu_rng_below(&r, cfg->nkeys);
        uint32_t op = tu_rng_below(&r, 100);
        if (op < 75) {
            uint32_t len = pick_len(cfg, &r);
            uint64_t ttl = 0;
            if (cfg->ttl_pct && tu_rng_below(&r, 100) < cfg->ttl_pct)
                ttl = tu_rng_range(&r, 1, 20);
            s = tu_set_value(c, "mp-", k, buf, len, a->id, i, ttl);
            if (s == SHMC_OK)
                sets++;
            else if (s == SHMC_ENOMEM)
                atomic_fetch_add(&sh->rep.enomem, 1);
            else
                tu_report_error(&sh->rep, "writer %u op %u: set key %u len %u: %s", a->id, i, k,
                                len, shmc_strerror(s));
        } else if (op < 95) {
            char key[TU_KEY_MAX];
            s = shmc_delete(c, key, tu_key(key, "mp-", k));
            if (s == SHMC_OK)
                dels++;
            else if (s != SHMC_NOT_FOUND)
                tu_report_error(&sh->rep, "writer %u op %u: delete key %u: %s", a->id, i, k,
                                shmc_strerror(s));
        } else {
            s = tu_get_check(c, "mp-", k, buf, cfg->max_value, why, sizeof why);
            if (s != SHMC_OK && s != SHMC_NOT_FOUND)
                tu_report_error(&sh->rep, "writer %u op %u: get key %u: %s %s", a->id, i, k,
                                status_or_invalid(s), why);
        }
    }
    if (cfg->final_phase) {
        for (uint32_t j = 0; j < NFINAL; j++) {
            uint32_t k = a->id * 1000 + j;
            s = tu_set_value(c, "final-", k, buf, tu_rng_range(&r, 1, 2000), a->id, j, 0);
            if (s != SHMC_OK)
                tu_report_error(&sh->rep, "writer %u: final set %u: %s", a->id, k,
                                shmc_strerror(s));
            else
                sets++;
        }
    }
    atomic_fetch_add(&sh->sets_ok, sets);
    atomic_fetch_add(&sh->deletes_ok, dels);
    free(buf);
    shmc_close(c);
    return 0;
}

static void reader_check_hit(mp_child *a, uint32_t k, const void *v, size_t vlen, uint32_t fl,
                             const char *how)
{
    char why[200];
    if (tu_value_check(v, vlen, fl, k, why, sizeof why) != 0)
        tu_report_error(&a->sh->rep, "reader %u (%s): %s", a->id, how, why);
}

static int reader_main(void *p)
{
    mp_child *a = p;
    const mp_cfg *cfg = a->cfg;
    mp_shared *sh = a->sh;
    shmc_t *c = NULL;
    shmc_status s = shmc_open(cfg->name, NULL, &c);
    tu_barrier_wait(&sh->start);
    if (s != SHMC_OK) {
        tu_report_error(&sh->rep, "reader %u: open: %s", a->id, shmc_strerror(s));
        return 1;
    }
    size_t bufsz = cfg->max_value;
    uint8_t *buf = malloc(bufsz + 1);
    tu_rng r;
    tu_rng_seed(&r, 0x52000000u + a->id);
    uint64_t gets = 0, hits = 0;
    for (uint32_t i = 0; i < cfg->ops; i++) {
        uint32_t k = tu_rng_below(&r, cfg->nkeys);
        char key[TU_KEY_MAX];
        size_t kl = tu_key(key, "mp-", k);
        uint32_t how = tu_rng_below(&r, 100);
        size_t vlen = 0;
        uint32_t fl = 0;
        gets++;
        if (how < 80) {
            s = shmc_get(c, key, kl, buf, bufsz, &vlen, &fl);
            if (s == SHMC_OK) {
                hits++;
                if (vlen > bufsz)
                    tu_report_error(&sh->rep, "reader %u: vlen %zu > buflen", a->id, vlen);
                else
                    reader_check_hit(a, k, buf, vlen, fl, "get");
            } else if (s != SHMC_NOT_FOUND) {
                tu_report_error(&sh->rep, "reader %u: get key %u: %s", a->id, k,
                                shmc_strerror(s));
            }
        } else if (how < 90) {
            void *v = NULL;
            s = shmc_get_alloc(c, key, kl, &v, &vlen, &fl);
            if (s == SHMC_OK) {
                hits++;
                reader_check_hit(a, k, v, vlen, fl, "get_alloc");
                free(v);
            } else if (s != SHMC_NOT_FOUND) {
                tu_report_error(&sh->rep, "reader %u: get_alloc key %u: %s", a->id, k,
                                shmc_strerror(s));
            }
        } else if (how < 97) {
            /* Size query, then a read with exactly the reported size. */
            s = shmc_get(c, key, kl, buf, 16, &vlen, &fl);
            if (s == SHMC_OK) {
                hits++;
                if (vlen > 16)
                    tu_report_error(&sh->rep, "reader %u: vlen %zu > 16", a->id, vlen);
                else
                    reader_check_hit(a, k, buf, vlen, fl, "get16");
            } else if (s == SHMC_EBUFSIZE) {
                if (vlen <= 16 || vlen > cfg->max_value) {
                    tu_report_error(&sh->rep, "reader %u: EBUFSIZE with needed %zu", a->id,
                                    vlen);
                    continue;
                }
                size_t need = vlen;
                s = shmc_get(c, key, kl, buf, need, &vlen, &fl);
                if (s == SHMC_OK) {
                    hits++;
                    reader_check_hit(a, k, buf, vlen, fl, "get-exact");
                } else if (s != SHMC_NOT_FOUND && s != SHMC_EBUFSIZE) {
                    tu_report_error(&sh->rep, "reader %u: get-exact key %u: %s", a->id, k,
                                    shmc_strerror(s));
                }
            } else if (s != SHMC_NOT_FOUND) {
                tu_report_error(&sh->rep, "reader %u: get16 key %u: %s", a->id, k,
                                shmc_strerror(s));
            }
        } else {
            s = shmc_exists(c, key, kl);
            if (s != SHMC_OK && s != SHMC_NOT_FOUND)
                tu_report_error(&sh->rep, "reader %u: exists key %u: %s", a->id, k,
                                shmc_strerror(s));
        }
    }
    atomic_fetch_add(&sh->gets, gets);
    atomic_fetch_add(&sh->hits, hits);
    free(buf);
    shmc_close(c);
    return 0;
}

/* The current test's segment, removed by teardown even when a test fails. */
static char cur_name[96];

static int teardown(void **state)
{
    (void)state;
    if (cur_name[0])
        tu_destroy(cur_name);
    cur_name[0] = 0;
    return 0;
}

static void run_mixed(mp_cfg *cfg)
{
    tu_name(cfg->name, sizeof cfg->name, "mp");
    tu_destroy(cfg->name);
    memcpy(cur_name, cfg->name, sizeof cur_name);
    shmc_options o = {.size = cfg->size, .max_value = cfg->max_value};
    shmc_t *c = NULL;
    assert_int_equal(shmc_open(cfg->name, &o, &c), SHMC_OK);
    shmc_info in;
    assert_int_equal(shmc_info_get(c, &in), SHMC_OK);

    mp_shared *sh = tu_shared_alloc(sizeof *sh);
    assert_non_null(sh);
    tu_barrier_init(&sh->start, NWRITERS + NREADERS);

    mp_child args[NWRITERS + NREADERS];
    pid_t pids[NWRITERS + NREADERS];
    for (uint32_t i = 0; i < NWRITERS + NREADERS; i++) {
        args[i] = (mp_child){.cfg = cfg, .sh = sh, .id = i};
        pids[i] = tu_fork(i < NWRITERS ? writer_main : reader_main, &args[i]);
        assert_true(pids[i] > 0);
    }
    int bad = 0;
    char sbuf[96];
    for (uint32_t i = 0; i < NWRITERS + NREADERS; i++) {
        int st = tu_wait(pids[i], 150000);
        if (st != 0) {
            fprintf(stderr, "%s %u: %s\n", i < NWRITERS ? "writer" : "reader", i,
                    tu_status_str(st, sbuf, sizeof sbuf));
            bad++;
        }
    }
    tu_barrier_destroy(&sh->start);

    uint64_t errors = atomic_load(&sh->rep.errors), enomem = atomic_load(&sh->rep.enomem);
    uint64_t sets_ok = atomic_load(&sh->sets_ok), hits = atomic_load(&sh->hits);
    fprintf(stderr, "  cache %llu MiB: %llu sets ok, %llu deletes ok, %llu/%llu reader hits\n",
            (unsigned long long)(cfg->size >> 20), (unsigned long long)sets_ok,
            (unsigned long long)atomic_load(&sh->deletes_ok), (unsigned long long)hits,
            (unsigned long long)atomic_load(&sh->gets));
    if (errors)
        fail_msg("%llu errors in children; first: %s", (unsigned long long)errors,
                 tu_report_msg(&sh->rep));
    if (bad)
        fail_msg("%d children did not exit cleanly", bad);
    assert_true(hits > 0); /* the test exercised hits at all */

    /* Quiet cache now: the index must be consistent... */
    shmc_verify_report rep;
    shmc_status v = shmc_verify(c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
    assert_int_equal(rep.duplicates, 0);
    assert_int_equal(rep.orphan_segments, 0);

    /* ...and every key holds a valid value of its own. */
    uint8_t *buf = malloc(cfg->max_value);
    char why[200];
    uint64_t present = 0;
    for (uint32_t k = 0; k < cfg->nkeys; k++) {
        shmc_status s = tu_get_check(c, "mp-", k, buf, cfg->max_value, why, sizeof why);
        if (s == SHMC_OK)
            present++;
        else if (s != SHMC_NOT_FOUND)
            fail_msg("after the run, key %u: %s %s", k, status_or_invalid(s), why);
        /* exists agrees with get on a quiet cache (no TTL sets in runs that
         * check this). */
        if (!cfg->ttl_pct) {
            char key[TU_KEY_MAX];
            shmc_status e = shmc_exists(c, key, tu_key(key, "mp-", k));
            assert_int_equal(e, s == SHMC_OK ? SHMC_OK : SHMC_NOT_FOUND);
        }
    }
    if (cfg->final_phase) {
        /* The last writes of every writer were acknowledged and are kept. */
        for (uint32_t w = 0; w < NWRITERS; w++)
            for (uint32_t j = 0; j < NFINAL; j++) {
                shmc_status s =
                    tu_get_check(c, "final-", w * 1000 + j, buf, cfg->max_value, why, sizeof why);
                if (s != SHMC_OK)
                    fail_msg("final key of writer %u #%u: %s %s", w, j, status_or_invalid(s),
                             why);
            }
        present += NWRITERS * NFINAL;
    }
    if (!cfg->ttl_pct)
        assert_int_equal(rep.items, present);

    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    /* Counters are summed over the slots of exited processes too. */
    assert_true(st.sets >= sets_ok);
    assert_true(st.hits >= hits);
    assert_true(st.gets >= atomic_load(&sh->gets));
    if (!cfg->ttl_pct)
        assert_int_equal(st.items, rep.items);
    assert_true(st.items <= in.index_slots);
    assert_true(st.bytes_used <= st.bytes_total);
    fprintf(stderr, "  evictions %llu, expirations %llu, items %llu, retired segments %llu\n",
            (unsigned long long)st.evictions, (unsigned long long)st.expirations,
            (unsigned long long)st.items, (unsigned long long)st.segments_retired);

    free(buf);
    tu_shared_free(sh, sizeof *sh);
    shmc_close(c);
    tu_destroy(cfg->name);
    /* Last, so that the checks above report even when this fails. */
    if (enomem)
        fail_msg("%llu sets returned SHMC_ENOMEM with no stalled reader",
                 (unsigned long long)enomem);
}

static void test_mixed_roomy_cache(void **state)
{
    (void)state;
    mp_cfg cfg = {.size = 64ull << 20, .max_value = 64u << 10, .nkeys = 500, .minlen = 1,
                  .maxlen = 2000, .ops = 20000, .final_phase = true};
    run_mixed(&cfg);
}

static void test_mixed_small_cache_evicting(void **state)
{
    (void)state;
    mp_cfg cfg = {.size = TU_SMALL_SIZE, .max_value = 16u << 10, .nkeys = 500, .minlen = 1,
                  .maxlen = 2000, .biglen = 16u << 10, .ops = 20000};
    run_mixed(&cfg);
}

static void test_mixed_small_cache_ttl(void **state)
{
    (void)state;
    mp_cfg cfg = {.size = TU_SMALL_SIZE, .max_value = 16u << 10, .nkeys = 300, .minlen = 1,
                  .maxlen = 3000, .ttl_pct = 30, .ops = 10000};
    run_mixed(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mixed_roomy_cache, teardown),
        cmocka_unit_test_teardown(test_mixed_small_cache_evicting, teardown),
        cmocka_unit_test_teardown(test_mixed_small_cache_ttl, teardown),
    };
    return cmocka_run_group_tests_name("shmcache multi-process", tests, NULL, NULL);
}
