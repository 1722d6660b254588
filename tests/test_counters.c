/*
 * test_counters.c — in-place counters (shmc_incr/shmc_decr on a counter cell)
 * against every other write of the same key, from forked processes, with
 * exact final values; gets value/token consistency; and options.max_items.
 *
 * Every worker counts what was acknowledged to it in shared memory right
 * after the call returns, so a final value that differs from the sum of the
 * acknowledgements is a lost (or invented) update.
 */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define CACHE_SIZE (16ull << 20)

typedef tu_fx fx;

static int setup(void **state)
{
    shmc_options o = {.size = CACHE_SIZE, .flags = SHMC_OPEN_CREATE_ONLY};
    return tu_fx_setup(state, "ctr", &o);
}
#define teardown tu_fx_teardown

static shmc_t *attach(const char *name, tu_report *r)
{
    shmc_t *c = NULL;
    shmc_options o = {.flags = SHMC_OPEN_ATTACH_ONLY};
    shmc_status s = shmc_open(name, &o, &c);
    if (s != SHMC_OK)
        tu_report_error(r, "attach: %s", shmc_strerror(s));
    return c;
}

static uint64_t get_u64(shmc_t *c, const char *key, uint64_t *tok)
{
    char buf[32];
    size_t n = 0;
    uint64_t t = 0;
    assert_int_equal(shmc_gets(c, key, strlen(key), buf, sizeof buf, &n, NULL, &t), SHMC_OK);
    if (tok)
        *tok = t;
    return tu_parse_u64(buf, n);
}

static void run_workers(int (*fn)(void *), void *args, size_t argsize, unsigned n, tu_report *r)
{
    pid_t pids[16];
    assert_true(n <= 16);
    for (unsigned i = 0; i < n; i++) {
        pids[i] = tu_fork(fn, (char *)args + i * argsize);
        assert_true(pids[i] > 0);
    }
    for (unsigned i = 0; i < n; i++) {
        char b[64];
        int st = tu_wait(pids[i], 120000);
        if (st != 0)
            fail_msg("worker %u: %s", i, tu_status_str(st, b, sizeof b));
    }
    if (atomic_load(&r->errors))
        fail_msg("%llu errors; first: %s", (unsigned long long)atomic_load(&r->errors),
                 tu_report_msg(r));
}

/* ---- incr, decr, gets+cas, cas_value and touch on one key ---- */

enum { MIX_OPS = 20000, MIX_CAS = 2000, MIX_TOUCH = 2000 };
#define MIX_START 1000000000000ull

typedef struct mix_shared {
    tu_report *r;
    _Atomic uint64_t incr, decr, cas_adds, value_adds;
} mix_shared;

typedef struct mix_arg {
    const char *name;
    mix_shared *sh;
    int role;
} mix_arg;

static int mix_worker(void *p)
{
    mix_arg *a = p;
    shmc_t *c = attach(a->name, a->sh->r);
    if (!c)
        return 1;
    const char *k = "mix";
    uint64_t v;
    for (unsigned i = 0; i < MIX_OPS; i++) {
        shmc_status s = SHMC_OK;
        switch (a->role) {
        case 0: /* +1 in place */
            if ((s = shmc_incr(c, k, 3, 1, 0, 0, 0, &v)) == SHMC_OK)
                atomic_fetch_add(&a->sh->incr, 1);
            break;
        case 1: /* -1 in place (never reaches 0) */
            if ((s = shmc_decr(c, k, 3, 1, 0, 0, 0, &v)) == SHMC_OK)
                atomic_fetch_add(&a->sh->decr, 1);
            break;
        case 2: /* +1000 by gets + cas (a plain item, until the next incr) */
            if (i >= MIX_CAS)
                break;
            for (;;) {
                char buf[32];
                size_t n;
                uint64_t tok;
                if ((s = shmc_gets(c, k, 3, buf, sizeof buf, &n, NULL, &tok)) != SHMC_OK)
                    break;
                int len = snprintf(buf, sizeof buf, "%llu",
                                   (unsigned long long)(tu_parse_u64(buf, n) + 1000));
                s = shmc_cas(c, k, 3, buf, (size_t)len, 0, 3600 * 1000, tok, NULL);
                if (s != SHMC_STALE)
                    break;
            }
            if (s == SHMC_OK)
                atomic_fetch_add(&a->sh->cas_adds, 1);
            break;
        case 3: /* +7 by compare-by-value, and touches (new TTL, same value) */
            if (i >= MIX_TOUCH)
                break;
            if ((s = shmc_touch(c, k, 3, 3600 * 1000)) != SHMC_OK)
                break;
            for (;;) {
                char cur[32], nv[32];
                size_t n;
                if ((s = shmc_get(c, k, 3, cur, sizeof cur, &n, NULL)) != SHMC_OK)
                    break;
                int len = snprintf(nv, sizeof nv, "%llu",
                                   (unsigned long long)(tu_parse_u64(cur, n) + 7));
                s = shmc_cas_value(c, k, 3, cur, n, nv, (size_t)len, 0, 3600 * 1000, NULL, 0,
                                   NULL);
                if (s != SHMC_STALE)
                    break;
            }
            if (s == SHMC_OK)
                atomic_fetch_add(&a->sh->value_adds, 1);
            break;
        }
        if (s != SHMC_OK) {
            tu_report_error(a->sh->r, "role %d op %u: %s", a->role, i, shmc_strerror(s));
            break;
        }
    }
    shmc_close(c);
    return 0;
}

static void test_concurrent_mix_exact(void **state)
{
    fx *f = *state;
    char start[32];
    int n = snprintf(start, sizeof start, "%llu", MIX_START);
    assert_int_equal(shmc_set(f->c, "mix", 3, start, (size_t)n, 0, 3600 * 1000), SHMC_OK);
    mix_shared *sh = tu_shared_alloc(sizeof *sh);
    sh->r = tu_report_new();
    mix_arg args[5] = {{f->name, sh, 0}, {f->name, sh, 0}, {f->name, sh, 1},
                       {f->name, sh, 2}, {f->name, sh, 3}};
    run_workers(mix_worker, args, sizeof args[0], 5, sh->r);
    uint64_t want = MIX_START + atomic_load(&sh->incr) - atomic_load(&sh->decr) +
                    1000 * atomic_load(&sh->cas_adds) + 7 * atomic_load(&sh->value_adds);
    uint64_t ttl;
    assert_int_equal(shmc_ttl(f->c, "mix", 3, &ttl), SHMC_OK);
    assert_true(ttl != SHMC_TTL_NONE); /* every write gave an expiry; increments kept it */
    assert_int_equal(get_u64(f->c, "mix", NULL), want);
    assert_int_equal(atomic_load(&sh->incr), 2 * MIX_OPS);
    assert_int_equal(atomic_load(&sh->decr), MIX_OPS);
    tu_report_free(sh->r);
    tu_shared_free(sh, sizeof *sh);
}

/* ---- set, delete + add against increments: generations ----
 * A writer replaces the counter with generation g's base g << 40 (g = 2..),
 * by set or
 * by delete + add.  Incrementers count, per generation, the increments
 * acknowledged with a result in it.  Each generation starts at its base, so
 * the final value must be the last base plus exactly the increments
 * acknowledged in the last generation: an increment acknowledged on an
 * item already replaced would be missing from it. */

enum { GENS = 300, GEN_INCR_PROCS = 3 };

typedef struct gen_shared {
    tu_report *r;
    _Atomic int writer_done;
    _Atomic uint64_t per_gen[GENS + 1];
} gen_shared;

typedef struct gen_arg {
    const char *name;
    gen_shared *sh;
    int writer;
} gen_arg;

static int gen_worker(void *p)
{
    gen_arg *a = p;
    shmc_t *c = attach(a->name, a->sh->r);
    if (!c)
        return 1;
    if (a->writer) {
        for (uint64_t g = 2; g <= GENS; g++) {
            char b[32];
            int n = snprintf(b, sizeof b, "%llu", (unsigned long long)(g << 40));
            shmc_status s;
            if (g % 2) {
                s = shmc_set(c, "gen", 3, b, (size_t)n, 0, 0);
            } else {
                s = shmc_delete(c, "gen", 3);
                if (s == SHMC_OK)
                    s = shmc_add(c, "gen", 3, b, (size_t)n, 0, 0);
            }
            if (s != SHMC_OK)
                tu_report_error(a->sh->r, "writer gen %llu: %s", (unsigned long long)g,
                                shmc_strerror(s));
            tu_sleep_ms(g % 7 == 0 ? 1 : 0);
        }
        atomic_store(&a->sh->writer_done, 1);
    } else {
        /* Go on for a while after the last generation, so it gets some. */
        uint64_t after = 0;
        while (after < 2000) {
            if (atomic_load(&a->sh->writer_done))
                after++;
            uint64_t v;
            shmc_status s = shmc_incr(c, "gen", 3, 1, 0, 0, 0, &v);
            if (s == SHMC_NOT_FOUND)
                continue; /* between a delete and its add */
            if (s != SHMC_OK) {
                tu_report_error(a->sh->r, "incr: %s", shmc_strerror(s));
                break;
            }
            uint64_t g = v >> 40;
            if (g < 1 || g > GENS) {
                tu_report_error(a->sh->r, "incr result %llu in no generation",
                                (unsigned long long)v);
                break;
            }
            atomic_fetch_add(&a->sh->per_gen[g], 1);
        }
    }
    shmc_close(c);
    return 0;
}

static void test_set_delete_never_lose_acked(void **state)
{
    fx *f = *state;
    uint64_t v;
    assert_int_equal(shmc_incr(f->c, "gen", 3, 0, 1ull << 40, 0, SHMC_INCR_CREATE, &v),
                     SHMC_OK); /* generation 1, a counter cell */
    gen_shared *sh = tu_shared_alloc(sizeof *sh);
    sh->r = tu_report_new();
    gen_arg args[GEN_INCR_PROCS + 1];
    for (unsigned i = 0; i <= GEN_INCR_PROCS; i++)
        args[i] = (gen_arg){f->name, sh, i == 0};
    run_workers(gen_worker, args, sizeof args[0], GEN_INCR_PROCS + 1, sh->r);
    uint64_t final = get_u64(f->c, "gen", NULL);
    assert_int_equal(final >> 40, GENS);
    assert_int_equal(final, ((uint64_t)GENS << 40) + atomic_load(&sh->per_gen[GENS]));
    assert_true(atomic_load(&sh->per_gen[GENS]) >= 2000);
    tu_report_free(sh->r);
    tu_shared_free(sh, sizeof *sh);
}

/* ---- gets returns a value and a token that belong together ----
 * Incrementers add 1 in place; a checker loops gets + cas of the very value
 * it read under the token it read.  That cas succeeds only if the token is
 * still current, and then writes the value back: harmless if value and token
 * belong together, a rollback of increments if gets paired an older value
 * with a newer token.  The final value must equal all the increments. */

enum { TOK_INCRS = 30000 };

typedef struct tok_shared {
    tu_report *r;
    _Atomic int stop;
    _Atomic uint64_t incr, rewrites;
} tok_shared;

typedef struct tok_arg {
    const char *name;
    tok_shared *sh;
    int checker;
} tok_arg;

static int tok_worker(void *p)
{
    tok_arg *a = p;
    shmc_t *c = attach(a->name, a->sh->r);
    if (!c)
        return 1;
    if (a->checker) {
        while (!atomic_load(&a->sh->stop)) {
            char buf[32];
            size_t n;
            uint64_t tok;
            shmc_status s = shmc_gets(c, "tok", 3, buf, sizeof buf, &n, NULL, &tok);
            if (s == SHMC_OK)
                s = shmc_cas(c, "tok", 3, buf, n, 0, 0, tok, NULL);
            if (s == SHMC_OK)
                atomic_fetch_add(&a->sh->rewrites, 1);
            else if (s != SHMC_STALE)
                tu_report_error(a->sh->r, "gets/cas: %s", shmc_strerror(s));
        }
    } else {
        for (unsigned i = 0; i < TOK_INCRS; i++) {
            uint64_t v;
            shmc_status s = shmc_incr(c, "tok", 3, 1, 0, 0, 0, &v);
            if (s != SHMC_OK) {
                tu_report_error(a->sh->r, "incr: %s", shmc_strerror(s));
                break;
            }
            atomic_fetch_add(&a->sh->incr, 1);
            if (i % 1000 == 999)
                tu_sleep_ms(1); /* let the checker's cas through at times */
        }
    }
    shmc_close(c);
    return 0;
}

static void test_gets_token_matches_value(void **state)
{
    fx *f = *state;
    assert_int_equal(shmc_set(f->c, "tok", 3, "0", 1, 0, 0), SHMC_OK);
    tok_shared *sh = tu_shared_alloc(sizeof *sh);
    sh->r = tu_report_new();
    tok_arg args[3] = {{f->name, sh, 0}, {f->name, sh, 0}, {f->name, sh, 1}};
    pid_t pids[3];
    for (int i = 0; i < 3; i++) {
        pids[i] = tu_fork(tok_worker, &args[i]);
        assert_true(pids[i] > 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(tu_wait(pids[i], 120000), 0);
    atomic_store(&sh->stop, 1);
    assert_int_equal(tu_wait(pids[2], 120000), 0);
    if (atomic_load(&sh->r->errors))
        fail_msg("%s", tu_report_msg(sh->r));
    fprintf(stderr, "  %llu increments, %llu gets+cas rewrites of the value read\n",
            (unsigned long long)atomic_load(&sh->incr),
            (unsigned long long)atomic_load(&sh->rewrites));
    assert_true(atomic_load(&sh->rewrites) > 0);
    assert_int_equal(get_u64(f->c, "tok", NULL), 2 * TOK_INCRS);
    tu_report_free(sh->r);
    tu_shared_free(sh, sizeof *sh);
}

/* ---- movers carry counters: second-chance copies while incrementing ----
 * Many counters, each read often (so eviction gives it a second chance: a
 * copy, which freezes the cell first) and incremented rarely (so it ages into
 * eviction between increments).  A counter the eviction drops anyway (no
 * room for a copy) is gone for good (incr without SHMC_INCR_CREATE); every
 * other one must hold exactly the increments acknowledged on it. */

enum { MV_CTRS = 256, MV_LOOPS = 40000 };

typedef struct mv_shared {
    tu_report *r;
    _Atomic uint64_t acked[MV_CTRS];
    _Atomic int dropped[MV_CTRS];
} mv_shared;

typedef struct mv_arg {
    const char *name;
    mv_shared *sh;
    uint32_t id;
} mv_arg;

static int mv_worker(void *p)
{
    mv_arg *a = p;
    shmc_t *c = attach(a->name, a->sh->r);
    if (!c)
        return 1;
    static uint8_t filler[3000];
    memset(filler, (int)a->id, sizeof filler);
    tu_rng r;
    tu_rng_seed(&r, 77 + a->id);
    for (uint64_t i = 0; i < MV_LOOPS; i++) {
        uint32_t n = tu_rng_below(&r, MV_CTRS);
        char k[32];
        size_t kl = tu_key(k, "mvc-", n);
        uint8_t b[16];
        size_t vl;
        shmc_status s = shmc_get(c, k, kl, b, sizeof b, &vl, NULL);
        if (s == SHMC_OK && i % 32 == 0) {
            uint64_t v;
            s = shmc_incr(c, k, kl, 1, 0, 0, n % 2 ? SHMC_INCR_BINARY : 0, &v);
            if (s == SHMC_OK)
                atomic_fetch_add(&a->sh->acked[n], 1);
        }
        if (s == SHMC_NOT_FOUND)
            atomic_store(&a->sh->dropped[n], 1);
        else if (s != SHMC_OK)
            tu_report_error(a->sh->r, "counter %u: %s", n, shmc_strerror(s));
        char fk[32];
        int fl = snprintf(fk, sizeof fk, "fill-%u-%llu", a->id, (unsigned long long)(i % 4000));
        if ((s = shmc_set(c, fk, (size_t)fl, filler, sizeof filler, 0, 0)) != SHMC_OK) {
            tu_report_error(a->sh->r, "set: %s", shmc_strerror(s));
            break;
        }
    }
    shmc_close(c);
    return 0;
}

static void test_counters_survive_eviction(void **state)
{
    fx *f = *state;
    for (uint32_t n = 0; n < MV_CTRS; n++) {
        char k[32];
        uint64_t v;
        assert_int_equal(shmc_incr(f->c, k, tu_key(k, "mvc-", n), 0, 0, 0,
                                   SHMC_INCR_CREATE | (n % 2 ? SHMC_INCR_BINARY : 0), &v),
                         SHMC_OK);
    }
    mv_shared *sh = tu_shared_alloc(sizeof *sh);
    sh->r = tu_report_new();
    mv_arg args[3] = {{f->name, sh, 0}, {f->name, sh, 1}, {f->name, sh, 2}};
    run_workers(mv_worker, args, sizeof args[0], 3, sh->r);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    uint32_t kept = 0;
    uint64_t acked = 0;
    for (uint32_t n = 0; n < MV_CTRS; n++) {
        char k[32];
        uint8_t b[32];
        size_t vl;
        size_t kl = tu_key(k, "mvc-", n);
        shmc_status s = shmc_get(f->c, k, kl, b, sizeof b, &vl, NULL);
        if (atomic_load(&sh->dropped[n])) {
            assert_int_equal(s, SHMC_NOT_FOUND);
            continue;
        }
        assert_int_equal(s, SHMC_OK);
        uint64_t v = 0;
        if (n % 2) {
            assert_int_equal(vl, 8);
            for (int i = 7; i >= 0; i--)
                v = v << 8 | b[i];
        } else {
            v = tu_parse_u64(b, vl);
        }
        assert_int_equal(v, atomic_load(&sh->acked[n]));
        kept++;
        acked += v;
    }
    fprintf(stderr, "  evictions %llu, rescued %llu; %u of %u counters kept, %llu increments\n",
            (unsigned long long)st.evictions, (unsigned long long)st.rescued, kept, MV_CTRS,
            (unsigned long long)acked);
    assert_true(st.rescued > 0); /* counters were moved while incremented */
    assert_true(kept > 0 && acked > 0);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_OK);
    tu_report_free(sh->r);
    tu_shared_free(sh, sizeof *sh);
}

/* ---- single-process semantics of cells ---- */

static void test_cell_semantics(void **state)
{
    fx *f = *state;
    uint64_t v, t1, t2;
    char b[32];
    size_t n;
    uint32_t fl;
    assert_int_equal(shmc_set(f->c, "s", 1, "18446744073709551614", 20, 42, 3600 * 1000),
                     SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "s", 1, 1, 0, 0, 0, &v), SHMC_OK);
    assert_true(v == UINT64_MAX);
    get_u64(f->c, "s", &t1);
    assert_int_equal(shmc_incr(f->c, "s", 1, 3, 0, 0, 0, &v), SHMC_OK); /* wraps */
    assert_int_equal(v, 2);
    assert_int_equal(get_u64(f->c, "s", &t2), 2);
    assert_true(t1 != t2);
    assert_int_equal(shmc_get(f->c, "s", 1, b, sizeof b, &n, &fl), SHMC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(fl, 42); /* flags kept */
    uint64_t ttl;
    assert_int_equal(shmc_ttl(f->c, "s", 1, &ttl), SHMC_OK);
    assert_true(ttl != SHMC_TTL_NONE && ttl > 3000 * 1000); /* expiry kept */
    assert_int_equal(shmc_decr(f->c, "s", 1, 5, 0, 0, 0, &v), SHMC_OK);
    assert_int_equal(v, 0); /* stops at 0 */
    assert_int_equal(shmc_decr(f->c, "s", 1, 5, 0, 0, 0, &v), SHMC_OK);
    assert_int_equal(v, 0);
    /* a stale token loses; the current one wins and makes it plain bytes */
    assert_int_equal(shmc_cas(f->c, "s", 1, "x", 1, 0, 0, t2, NULL), SHMC_STALE);
    get_u64(f->c, "s", &t1);
    assert_int_equal(shmc_cas(f->c, "s", 1, "x", 1, 0, 0, t1, NULL), SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "s", 1, 1, 0, 0, 0, &v), SHMC_ENOTNUM);
    /* delete_cas / delete_value see the cell's token and text */
    assert_int_equal(shmc_incr(f->c, "d", 1, 1, 10, 0, SHMC_INCR_CREATE, &v), SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "d", 1, 1, 10, 0, SHMC_INCR_CREATE, &v), SHMC_OK);
    assert_int_equal(v, 11);
    assert_int_equal(shmc_delete_value(f->c, "d", 1, "10", 2), SHMC_STALE);
    assert_int_equal(shmc_delete_value(f->c, "d", 1, "11", 2), SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "d", 1, 1, 0, 0, 0, &v), SHMC_NOT_FOUND);
    /* a counter expires as any item */
    assert_int_equal(shmc_incr(f->c, "e", 1, 1, 5, 30, SHMC_INCR_CREATE, &v), SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "e", 1, 1, 5, 30, SHMC_INCR_CREATE, &v), SHMC_OK);
    assert_int_equal(v, 6);
    tu_sleep_ms(60);
    assert_int_equal(shmc_get(f->c, "e", 1, b, sizeof b, &n, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_incr(f->c, "e", 1, 1, 0, 0, 0, &v), SHMC_NOT_FOUND);
    /* append turns a counter into plain bytes, keeping its digits */
    assert_int_equal(shmc_incr(f->c, "a", 1, 1, 7, 0, SHMC_INCR_CREATE, &v), SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "a", 1, 1, 7, 0, SHMC_INCR_CREATE, &v), SHMC_OK);
    assert_int_equal(shmc_append(f->c, "a", 1, "0", 1), SHMC_OK);
    assert_int_equal(get_u64(f->c, "a", NULL), 80);
    assert_int_equal(shmc_incr(f->c, "a", 1, 1, 0, 0, 0, &v), SHMC_OK);
    assert_int_equal(v, 81);
}

/* ---- options.max_items ---- */

static void test_max_items(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "maxit");
    tu_destroy(name);
    shmc_t *c;
    shmc_options o = {.size = 8u << 20, .max_items = 3000, .flags = SHMC_OPEN_CREATE_ONLY};
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    shmc_info in;
    assert_int_equal(shmc_info_get(c, &in), SHMC_OK);
    assert_int_equal(in.max_items, 3000);
    assert_true(in.index_slots >= 3000 * 3 / 2 && in.index_slots < 3000 * 3 / 2 + 16);
    /* as many items as asked for fit, without any eviction */
    char k[32];
    for (uint32_t i = 0; i < 3000; i++)
        assert_int_equal(shmc_set(c, k, tu_key(k, "mi-", i), "v", 1, 0, 0), SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_int_equal(st.items, 3000);
    assert_int_equal(st.evictions, 0);
    /* more than the index holds: evicted, never refused */
    for (uint32_t i = 3000; i < 12000; i++)
        assert_int_equal(shmc_set(c, k, tu_key(k, "mi-", i), "v", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_true(st.items <= in.index_slots);
    assert_true(st.items >= 3000);
    assert_true(st.evictions >= 12000 - in.index_slots);
    size_t n;
    char b[8];
    assert_int_equal(shmc_get(c, k, tu_key(k, "mi-", 11999), b, sizeof b, &n, NULL), SHMC_OK);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(c, &rep), SHMC_OK);
    /* attaching: the same or no max_items is fine, another one is not */
    shmc_t *c2;
    shmc_options a = {.max_items = 3000};
    assert_int_equal(shmc_open(name, &a, &c2), SHMC_OK);
    shmc_close(c2);
    a.max_items = 2999;
    assert_int_equal(shmc_open(name, &a, &c2), SHMC_EMISMATCH);
    shmc_close(c);
    tu_destroy(name);
    /* bounds: at most 2^40, and the index must fit in the size */
    o.max_items = (1ull << 40) + 1;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_EINVAL);
    o.max_items = 1ull << 20; /* a 12 MiB index in 8 MiB */
    assert_int_equal(shmc_open(name, &o, &c), SHMC_ETOOSMALL);
    assert_int_equal(shmc_open(name, &(shmc_options){.flags = SHMC_OPEN_ATTACH_ONLY}, &c),
                     SHMC_ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cell_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_mix_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_delete_never_lose_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gets_token_matches_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_survive_eviction, setup, teardown),
        cmocka_unit_test(test_max_items),
    };
    return cmocka_run_group_tests_name("shmcache in-place counters", tests, NULL, NULL);
}
