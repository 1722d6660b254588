/*
 * test_semantics.c — conditional writes: add, replace, gets/cas tokens,
 * touch and ttl; and their atomicity across forked processes (no lost update
 * in gets+cas loops, exactly one winner among racing adds).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmcache.h"
#include "testutil.h"

typedef tu_fx fx;

static int setup(void **state)
{
    shmc_options o = {.size = 8u << 20, .max_value = 16u << 10};
    return tu_fx_setup(state, "sem", &o);
}
#define teardown tu_fx_teardown

static void value_is(shmc_t *c, const char *k, const char *want)
{
    char buf[64];
    size_t n;
    assert_int_equal(shmc_get(c, k, strlen(k), buf, sizeof buf, &n, NULL), SHMC_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
}

static void test_add(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    assert_int_equal(shmc_add(c, "a", 1, "1", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_add(c, "a", 1, "2", 1, 0, 0), SHMC_EXISTS);
    value_is(c, "a", "1");
    /* an expired key counts as absent */
    assert_int_equal(shmc_set(c, "e", 1, "old", 3, 0, 30), SHMC_OK);
    assert_int_equal(shmc_add(c, "e", 1, "x", 1, 0, 0), SHMC_EXISTS);
    tu_sleep_ms(120);
    assert_int_equal(shmc_add(c, "e", 1, "new", 3, 0, 0), SHMC_OK);
    value_is(c, "e", "new");
    /* limits are checked like set */
    assert_int_equal(shmc_add(c, "", 0, "1", 1, 0, 0), SHMC_EKEYLEN);
    assert_int_equal(shmc_add(c, "big", 3, "1", (16u << 10) + 1, 0, 0), SHMC_EVALLEN);
}

static void test_replace(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    assert_int_equal(shmc_replace(c, "r", 1, "1", 1, 0, 0), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "r", 1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_set(c, "r", 1, "1", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_replace(c, "r", 1, "22", 2, 7, 0), SHMC_OK);
    value_is(c, "r", "22");
    assert_int_equal(shmc_delete(c, "r", 1), SHMC_OK);
    assert_int_equal(shmc_replace(c, "r", 1, "3", 1, 0, 0), SHMC_NOT_FOUND);
}

static void test_gets_cas_results(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    char buf[64];
    size_t n;
    uint64_t t1, t2, cur;
    assert_int_equal(shmc_gets(c, "k", 1, buf, sizeof buf, &n, NULL, &t1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_cas(c, "k", 1, "x", 1, 0, 0, 12345, &cur), SHMC_NOT_FOUND);
    assert_int_equal(cur, 0);
    assert_int_equal(shmc_set(c, "k", 1, "v1", 2, 0, 0), SHMC_OK);
    assert_int_equal(shmc_gets(c, "k", 1, buf, sizeof buf, &n, NULL, &t1), SHMC_OK);
    assert_int_not_equal(t1, 0);
    assert_int_equal(shmc_cas(c, "k", 1, "v2", 2, 0, 0, t1, &t2), SHMC_OK);
    assert_int_not_equal(t2, t1);
    value_is(c, "k", "v2");
    /* the old token is stale; the current token comes back */
    assert_int_equal(shmc_cas(c, "k", 1, "v3", 2, 0, 0, t1, &cur), SHMC_STALE);
    assert_int_equal(cur, t2);
    value_is(c, "k", "v2");
    /* with the current token it works, and cas_out may be NULL */
    assert_int_equal(shmc_cas(c, "k", 1, "v3", 2, 0, 0, cur, NULL), SHMC_OK);
    value_is(c, "k", "v3");
    assert_int_equal(shmc_cas(c, "k", 1, "v4", 2, 0, 0, 0, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_gets(c, "k", 1, buf, sizeof buf, &n, NULL, NULL), SHMC_EINVAL);
    /* a token is gone once the key is deleted */
    assert_int_equal(shmc_gets(c, "k", 1, buf, sizeof buf, &n, NULL, &t1), SHMC_OK);
    assert_int_equal(shmc_delete(c, "k", 1), SHMC_OK);
    assert_int_equal(shmc_cas(c, "k", 1, "v5", 2, 0, 0, t1, &cur), SHMC_NOT_FOUND);
}

static void test_tokens_never_repeat(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    enum { N = 2000 };
    uint64_t *seen = calloc(N, sizeof *seen);
    char buf[16];
    size_t n;
    for (uint32_t i = 0; i < N; i++) {
        /* alternate the ways a key changes */
        shmc_status s = i % 3 == 0   ? shmc_set(c, "t", 1, "a", 1, 0, 0)
                        : i % 3 == 1 ? shmc_replace(c, "t", 1, "b", 1, 0, 0)
                                     : shmc_touch(c, "t", 1, 0);
        assert_int_equal(s, SHMC_OK);
        assert_int_equal(shmc_gets(c, "t", 1, buf, sizeof buf, &n, NULL, &seen[i]), SHMC_OK);
        assert_int_not_equal(seen[i], 0);
        for (uint32_t j = 0; j < i; j++)
            if (seen[j] == seen[i])
                fail_msg("token %" PRIu64 " of change %u reused from change %u", seen[i], i, j);
    }
    free(seen);
}

static void test_touch_and_ttl(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    uint64_t ttl, t1, t2;
    char buf[16];
    size_t n;
    uint32_t fl;
    assert_int_equal(shmc_touch(c, "x", 1, 1000), SHMC_NOT_FOUND);
    assert_int_equal(shmc_ttl(c, "x", 1, &ttl), SHMC_NOT_FOUND);
    assert_int_equal(shmc_set(c, "x", 1, "val", 3, 42, 0), SHMC_OK);
    assert_int_equal(shmc_ttl(c, "x", 1, &ttl), SHMC_OK);
    assert_true(ttl == SHMC_TTL_NONE);
    assert_int_equal(shmc_set(c, "x", 1, "val", 3, 42, 10000), SHMC_OK);
    assert_int_equal(shmc_ttl(c, "x", 1, &ttl), SHMC_OK);
    assert_true(ttl <= 10000 && ttl > 9000);
    /* a short TTL made permanent survives past it, value and flags intact */
    assert_int_equal(shmc_set(c, "y", 1, "keep", 4, 9, 60), SHMC_OK);
    assert_int_equal(shmc_gets(c, "y", 1, buf, sizeof buf, &n, &fl, &t1), SHMC_OK);
    assert_int_equal(shmc_touch(c, "y", 1, 0), SHMC_OK);
    assert_int_equal(shmc_gets(c, "y", 1, buf, sizeof buf, &n, &fl, &t2), SHMC_OK);
    assert_int_not_equal(t1, t2);
    tu_sleep_ms(150);
    value_is(c, "y", "keep");
    assert_int_equal(shmc_get(c, "y", 1, buf, sizeof buf, &n, &fl), SHMC_OK);
    assert_int_equal(fl, 9);
    /* and a permanent one given a short TTL expires */
    assert_int_equal(shmc_touch(c, "y", 1, 40), SHMC_OK);
    tu_sleep_ms(150);
    assert_int_equal(shmc_exists(c, "y", 1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_touch(c, "y", 1, 1000), SHMC_NOT_FOUND);
}

/* A cas that loses writes nothing: a small cache survives 50 000 losing
 * cas calls of 8 KiB values without a single eviction. */
static void test_losing_cas_allocates_nothing(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    static char big[8u << 10];
    uint64_t tok, cur;
    char buf[16];
    size_t n;
    assert_int_equal(shmc_set(c, "hot", 3, "v", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_gets(c, "hot", 3, buf, sizeof buf, &n, NULL, &tok), SHMC_OK);
    assert_int_equal(shmc_set(c, "hot", 3, "w", 1, 0, 0), SHMC_OK); /* tok is stale now */
    shmc_stats before, after;
    assert_int_equal(shmc_stats_get(c, &before), SHMC_OK);
    for (int i = 0; i < 50000; i++)
        assert_int_equal(shmc_cas(c, "hot", 3, big, sizeof big, 0, 0, tok, &cur), SHMC_STALE);
    assert_int_equal(shmc_stats_get(c, &after), SHMC_OK);
    assert_int_equal(after.evictions, before.evictions);
    assert_int_equal(after.bytes_free, before.bytes_free);
    for (int i = 0; i < 50000; i++)
        assert_int_equal(shmc_add(c, "hot", 3, big, sizeof big, 0, 0), SHMC_EXISTS);
    assert_int_equal(shmc_stats_get(c, &after), SHMC_OK);
    assert_int_equal(after.evictions, before.evictions);
}

static void test_cas_value_results(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    char cur[8];
    size_t cl = 99;
    /* expected absent: works once, then reports the value that is there */
    assert_int_equal(shmc_cas_value(c, "v", 1, NULL, 0, "one", 3, 0, 0, cur, sizeof cur, &cl),
                     SHMC_OK);
    cl = 99;
    assert_int_equal(shmc_cas_value(c, "v", 1, NULL, 0, "two", 3, 0, 0, cur, sizeof cur, &cl),
                     SHMC_EXISTS);
    assert_int_equal(cl, 3);
    assert_memory_equal(cur, "one", 3);
    /* expected value matches: stored */
    assert_int_equal(shmc_cas_value(c, "v", 1, "one", 3, "three", 5, 0, 0, cur, sizeof cur, &cl),
                     SHMC_OK);
    value_is(c, "v", "three");
    /* a stale expectation gets the current value back, and nothing changes */
    assert_int_equal(shmc_cas_value(c, "v", 1, "one", 3, "four", 4, 0, 0, cur, sizeof cur, &cl),
                     SHMC_STALE);
    assert_int_equal(cl, 5);
    assert_memory_equal(cur, "three", 5);
    value_is(c, "v", "three");
    /* same prefix, other length: differs */
    assert_int_equal(shmc_cas_value(c, "v", 1, "thre", 4, "x", 1, 0, 0, NULL, 0, NULL), SHMC_STALE);
    /* a current value too big for the buffer: its length, nothing copied */
    char small[2] = {'?', '?'};
    assert_int_equal(shmc_cas_value(c, "v", 1, "zz", 2, "x", 1, 0, 0, small, sizeof small, &cl),
                     SHMC_STALE);
    assert_int_equal(cl, 5);
    assert_int_equal(small[0], '?');
    /* absent key with an expected value */
    cl = 99;
    assert_int_equal(shmc_cas_value(c, "none", 4, "a", 1, "b", 1, 0, 0, cur, sizeof cur, &cl),
                     SHMC_NOT_FOUND);
    assert_int_equal(cl, 0);
    /* empty values compare too */
    assert_int_equal(shmc_set(c, "e", 1, "", 0, 0, 0), SHMC_OK);
    assert_int_equal(shmc_cas_value(c, "e", 1, "", 0, "full", 4, 0, 0, NULL, 0, NULL), SHMC_OK);
    value_is(c, "e", "full");
    assert_int_equal(shmc_cas_value(c, "e", 1, NULL, 3, "x", 1, 0, 0, NULL, 0, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_cas_value(c, "e", 1, "a", 1, "x", 1, 0, 0, cur, 4, NULL), SHMC_EINVAL);
}

static void test_conditional_delete(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    char buf[16];
    size_t n;
    uint64_t tok;
    assert_int_equal(shmc_set(c, "d", 1, "abc", 3, 0, 0), SHMC_OK);
    assert_int_equal(shmc_gets(c, "d", 1, buf, sizeof buf, &n, NULL, &tok), SHMC_OK);
    assert_int_equal(shmc_delete_value(c, "d", 1, "abd", 3), SHMC_STALE);
    assert_int_equal(shmc_delete_cas(c, "d", 1, tok + 1), SHMC_STALE);
    assert_int_equal(shmc_exists(c, "d", 1), SHMC_OK);
    assert_int_equal(shmc_delete_cas(c, "d", 1, tok), SHMC_OK);
    assert_int_equal(shmc_exists(c, "d", 1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_delete_cas(c, "d", 1, tok), SHMC_NOT_FOUND);
    assert_int_equal(shmc_delete_cas(c, "d", 1, 0), SHMC_EINVAL);
    assert_int_equal(shmc_set(c, "d", 1, "abc", 3, 0, 0), SHMC_OK);
    assert_int_equal(shmc_delete_value(c, "d", 1, "abc", 3), SHMC_OK);
    assert_int_equal(shmc_delete_value(c, "d", 1, "abc", 3), SHMC_NOT_FOUND);
}

static int flush_writer(void *p)
{
    const char *name = p;
    shmc_t *c;
    if (shmc_open(name, NULL, &c) != SHMC_OK)
        return 10;
    uint8_t buf[600];
    char why[200];
    for (uint32_t i = 0; i < 4000; i++) {
        if (tu_set_value(c, "fw-", i % 700, buf, 500, 1, i, 0) != SHMC_OK)
            return 11;
        shmc_status s = tu_get_check(c, "fw-", (i * 7) % 700, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK && s != SHMC_NOT_FOUND)
            return 12;
    }
    shmc_close(c);
    return 0;
}

static void test_flush(void **state)
{
    fx *f = *state;
    uint8_t buf[600];
    for (uint32_t i = 0; i < 2000; i++)
        assert_int_equal(tu_set_value(f->c, "f-", i, buf, 300, 0, i, 0), SHMC_OK);
    /* flush while another process writes and reads */
    pid_t w = tu_fork(flush_writer, f->name);
    assert_true(w > 0);
    for (int r = 0; r < 5; r++)
        assert_int_equal(shmc_flush(f->c), SHMC_OK);
    char why[64];
    int st = tu_wait(w, 60000);
    if (st != 0)
        fail_msg("writer: %s", tu_status_str(st, why, sizeof why));
    for (uint32_t i = 0; i < 2000; i++) {
        char k[TU_KEY_MAX];
        assert_int_equal(shmc_exists(f->c, k, tu_key(k, "f-", i)), SHMC_NOT_FOUND);
    }
    assert_int_equal(shmc_flush(f->c), SHMC_OK);
    shmc_stats s;
    assert_int_equal(shmc_stats_get(f->c, &s), SHMC_OK);
    assert_int_equal(s.items, 0);
    assert_int_equal(s.bytes_used, 0);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_OK);
    assert_int_equal(rep.items, 0);
    /* the cache works as before */
    assert_int_equal(tu_set_value(f->c, "f-", 1, buf, 300, 0, 1, 0), SHMC_OK);
    assert_int_equal(tu_get_check(f->c, "f-", 1, buf, sizeof buf, NULL, 0), SHMC_OK);
}

static void test_counters(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    uint64_t r = 77;
    char buf[32];
    size_t n;
    uint32_t fl;
    assert_int_equal(shmc_incr(c, "n", 1, 1, 0, 0, 0, &r), SHMC_NOT_FOUND);
    assert_int_equal(shmc_incr(c, "n", 1, 1, 10, 0, SHMC_INCR_CREATE, &r), SHMC_OK);
    assert_int_equal(r, 10);
    value_is(c, "n", "10");
    assert_int_equal(shmc_incr(c, "n", 1, 5, 0, 0, SHMC_INCR_CREATE, &r), SHMC_OK);
    assert_int_equal(r, 15);
    value_is(c, "n", "15");
    assert_int_equal(shmc_decr(c, "n", 1, 20, 0, 0, 0, &r), SHMC_OK); /* stops at 0 */
    assert_int_equal(r, 0);
    value_is(c, "n", "0");
    /* incr wraps modulo 2^64 */
    assert_int_equal(shmc_set(c, "w", 1, "18446744073709551615", 20, 0, 0), SHMC_OK);
    assert_int_equal(shmc_incr(c, "w", 1, 2, 0, 0, 0, &r), SHMC_OK);
    assert_int_equal(r, 1);
    /* not counters */
    const char *bad[] = {"abc", "12a", "", "-1", "18446744073709551616", "123456789012345678901"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(shmc_set(c, "b", 1, bad[i], strlen(bad[i]), 0, 0), SHMC_OK);
        assert_int_equal(shmc_incr(c, "b", 1, 1, 0, 0, 0, &r), SHMC_ENOTNUM);
        value_is(c, "b", bad[i]); /* untouched */
    }
    assert_int_equal(shmc_incr(c, "n", 1, 1, 0, 0, 0x80, &r), SHMC_EINVAL);
    assert_int_equal(shmc_incr(c, "n", 1, 1, 0, 0, 0, NULL), SHMC_EINVAL);
    /* binary counters: 8 little-endian bytes */
    assert_int_equal(shmc_incr(c, "bin", 3, 1, 0x0102030405060708ull, 0,
                               SHMC_INCR_CREATE | SHMC_INCR_BINARY, &r), SHMC_OK);
    assert_int_equal(shmc_incr(c, "bin", 3, 0x10, 0, 0, 0, &r), SHMC_OK);
    assert_int_equal(r, 0x0102030405060718ull);
    assert_int_equal(shmc_get(c, "bin", 3, buf, sizeof buf, &n, NULL), SHMC_OK);
    assert_int_equal(n, 8);
    assert_int_equal((uint8_t)buf[0], 0x18);
    assert_int_equal((uint8_t)buf[7], 0x01);
    /* flags and expiry are kept */
    assert_int_equal(shmc_set(c, "t", 1, "5", 1, 33, 80), SHMC_OK);
    assert_int_equal(shmc_incr(c, "t", 1, 1, 0, 0, 0, &r), SHMC_OK);
    assert_int_equal(shmc_get(c, "t", 1, buf, sizeof buf, &n, &fl), SHMC_OK);
    assert_int_equal(fl, 33);
    tu_sleep_ms(150);
    assert_int_equal(shmc_exists(c, "t", 1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_incr(c, "t", 1, 1, 0, 0, 0, &r), SHMC_NOT_FOUND);
}

static void test_get_and_touch(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    void *v;
    size_t n;
    uint32_t fl;
    uint64_t ttl;
    assert_int_equal(shmc_get_and_touch(c, "g", 1, 1000, &v, &n, &fl), SHMC_NOT_FOUND);
    assert_null(v);
    assert_int_equal(shmc_set(c, "g", 1, "hello", 5, 4, 50), SHMC_OK);
    assert_int_equal(shmc_get_and_touch(c, "g", 1, 0, &v, &n, &fl), SHMC_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "hello", 5);
    assert_int_equal(fl, 4);
    free(v);
    assert_int_equal(shmc_ttl(c, "g", 1, &ttl), SHMC_OK);
    assert_true(ttl == SHMC_TTL_NONE);
    assert_int_equal(shmc_get_and_touch(c, "g", 1, 0, NULL, &n, NULL), SHMC_EINVAL);
}

static void test_append_prepend(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    assert_int_equal(shmc_append(c, "s", 1, "x", 1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_set(c, "s", 1, "mid", 3, 5, 0), SHMC_OK);
    assert_int_equal(shmc_append(c, "s", 1, "-end", 4), SHMC_OK);
    assert_int_equal(shmc_prepend(c, "s", 1, "start-", 6), SHMC_OK);
    value_is(c, "s", "start-mid-end");
    char buf[32];
    size_t n;
    uint32_t fl;
    assert_int_equal(shmc_get(c, "s", 1, buf, sizeof buf, &n, &fl), SHMC_OK);
    assert_int_equal(fl, 5);
    assert_int_equal(shmc_append(c, "s", 1, "", 0), SHMC_OK);
    value_is(c, "s", "start-mid-end");
    static char big[16u << 10];
    assert_int_equal(shmc_append(c, "s", 1, big, sizeof big), SHMC_EVALLEN);
    value_is(c, "s", "start-mid-end");
    assert_int_equal(shmc_append(c, "s", 1, NULL, 3), SHMC_EINVAL);
}

static void test_many_keys(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    enum { N = 100 };
    char keys[N][16], vals[N][16];
    shmc_set_req sets[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "m%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i);
        sets[i] = (shmc_set_req){keys[i], strlen(keys[i]), vals[i], strlen(vals[i]),
                                 (uint32_t)i, 0, SHMC_EINVAL};
    }
    sets[7].klen = 0; /* one bad request */
    assert_int_equal(shmc_set_many(c, sets, N), SHMC_EKEYLEN);
    for (int i = 0; i < N; i++)
        assert_int_equal(sets[i].status, i == 7 ? SHMC_EKEYLEN : SHMC_OK);

    shmc_get_req gets[N + 2];
    char bufs[N + 2][16];
    for (int i = 0; i < N; i++)
        gets[i] = (shmc_get_req){keys[i], strlen(keys[i]), bufs[i], sizeof bufs[i], 0, 0, 0};
    gets[3].buflen = 2; /* too small */
    gets[N] = (shmc_get_req){"absent", 6, bufs[N], sizeof bufs[N], 0, 0, 0};
    gets[N + 1] = (shmc_get_req){"x", 1, NULL, 5, 0, 0, 0}; /* bad buffer */
    assert_int_equal(shmc_get_many(c, gets, N + 2), SHMC_OK);
    for (int i = 0; i < N; i++) {
        if (i == 7) {
            assert_int_equal(gets[i].status, SHMC_NOT_FOUND);
        } else if (i == 3) {
            assert_int_equal(gets[i].status, SHMC_EBUFSIZE);
            assert_int_equal(gets[i].vlen, strlen(vals[i]));
        } else {
            assert_int_equal(gets[i].status, SHMC_OK);
            assert_int_equal(gets[i].vlen, strlen(vals[i]));
            assert_memory_equal(bufs[i], vals[i], gets[i].vlen);
            assert_int_equal(gets[i].flags, (uint32_t)i);
        }
    }
    assert_int_equal(gets[N].status, SHMC_NOT_FOUND);
    assert_int_equal(gets[N + 1].status, SHMC_EINVAL);

    shmc_key_req dels[N];
    for (int i = 0; i < N; i++)
        dels[i] = (shmc_key_req){keys[i], strlen(keys[i]), SHMC_EINVAL};
    assert_int_equal(shmc_delete_many(c, dels, N), SHMC_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(dels[i].status, i == 7 ? SHMC_NOT_FOUND : SHMC_OK);
        assert_int_equal(shmc_exists(c, keys[i], strlen(keys[i])), SHMC_NOT_FOUND);
    }
    assert_int_equal(shmc_get_many(c, NULL, 1), SHMC_EINVAL);
    assert_int_equal(shmc_get_many(c, NULL, 0), SHMC_OK);
}

/* ---- across processes ---- */

enum { NPROCS = 4, INCS = 1500 };

typedef struct shared {
    tu_barrier bar;
    _Atomic uint64_t stale, wins, errors;
    _Atomic uint32_t add_wins;
} shared;

typedef struct carg {
    const char *name;
    shared *sh;
    uint32_t id;
} carg;

static int incrementer(void *p)
{
    carg *a = p;
    shmc_t *c;
    if (shmc_open(a->name, NULL, &c) != SHMC_OK)
        return 10;
    tu_barrier_wait(&a->sh->bar);
    for (int i = 0; i < INCS; i++) {
        uint64_t stale = 0;
        if (tu_cas_incr(c, "ctr", &stale) != SHMC_OK)
            return 11;
        atomic_fetch_add(&a->sh->wins, 1);
        atomic_fetch_add(&a->sh->stale, stale);
    }
    /* the same with compare-by-value: the loser gets the current value */
    char cur[32];
    size_t cl;
    if (shmc_get(c, "vctr", 4, cur, sizeof cur, &cl, NULL) != SHMC_OK)
        return 14;
    for (int i = 0; i < INCS; i++) {
        for (;;) {
            char next[32];
            int len = snprintf(next, sizeof next, "%" PRIu64, tu_parse_u64(cur, cl) + 1);
            char seen[32];
            size_t sl;
            shmc_status s = shmc_cas_value(c, "vctr", 4, cur, cl, next, (size_t)len, 0, 0, seen,
                                           sizeof seen, &sl);
            if (s == SHMC_OK) {
                memcpy(cur, next, (size_t)len);
                cl = (size_t)len;
                break;
            }
            if (s != SHMC_STALE || sl > sizeof seen)
                return 15;
            memcpy(cur, seen, sl); /* recompute from what is there, no extra get */
            cl = sl;
        }
    }
    /* counters: every increment counts once (created by the first, with
     * initial = delta, so that it counts too) */
    for (int i = 0; i < INCS; i++) {
        uint64_t r;
        if (shmc_incr(c, "hits", 4, 1, 1, 0, SHMC_INCR_CREATE, &r) != SHMC_OK)
            return 16;
    }
    /* appends from every process all land */
    for (int i = 0; i < 300; i++) {
        char ch = (char)('a' + a->id);
        if (shmc_append(c, "log", 3, &ch, 1) != SHMC_OK)
            return 17;
    }
    /* racing adds of one fresh key: exactly one may win */
    tu_barrier_wait(&a->sh->bar);
    char v = (char)('0' + a->id);
    shmc_status s = shmc_add(c, "once", 4, &v, 1, 0, 0);
    if (s == SHMC_OK)
        atomic_fetch_add(&a->sh->add_wins, 1);
    else if (s != SHMC_EXISTS)
        return 13;
    shmc_close(c);
    return 0;
}

static void test_cas_loops_lose_no_update(void **state)
{
    fx *f = *state;
    shared *sh = tu_shared_alloc(sizeof *sh);
    tu_barrier_init(&sh->bar, NPROCS);
    assert_int_equal(shmc_set(f->c, "ctr", 3, "0", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "vctr", 4, "0", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "log", 3, "", 0, 0, 0), SHMC_OK);
    carg args[NPROCS];
    pid_t pids[NPROCS];
    for (uint32_t i = 0; i < NPROCS; i++) {
        args[i] = (carg){f->name, sh, i};
        pids[i] = tu_fork(incrementer, &args[i]);
        assert_true(pids[i] > 0);
    }
    for (uint32_t i = 0; i < NPROCS; i++) {
        int st = tu_wait(pids[i], 120000);
        char why[64];
        if (st != 0)
            fail_msg("incrementer %u: %s", i, tu_status_str(st, why, sizeof why));
    }
    char buf[32];
    size_t n;
    assert_int_equal(shmc_get(f->c, "ctr", 3, buf, sizeof buf, &n, NULL), SHMC_OK);
    assert_int_equal(tu_parse_u64(buf, n), (uint64_t)NPROCS * INCS);
    assert_int_equal(atomic_load(&sh->wins), (uint64_t)NPROCS * INCS);
    assert_int_equal(shmc_get(f->c, "vctr", 4, buf, sizeof buf, &n, NULL), SHMC_OK);
    assert_int_equal(tu_parse_u64(buf, n), (uint64_t)NPROCS * INCS);
    assert_int_equal(shmc_get(f->c, "hits", 4, buf, sizeof buf, &n, NULL), SHMC_OK);
    assert_int_equal(tu_parse_u64(buf, n), (uint64_t)NPROCS * INCS);
    fprintf(stderr, "  %d successful cas, %" PRIu64 " stale retries\n", NPROCS * INCS,
            (uint64_t)atomic_load(&sh->stale));
    char logbuf[NPROCS * 300 + 1];
    assert_int_equal(shmc_get(f->c, "log", 3, logbuf, sizeof logbuf, &n, NULL), SHMC_OK);
    assert_int_equal(n, NPROCS * 300);
    for (uint32_t p = 0; p < NPROCS; p++) {
        size_t cnt = 0;
        for (size_t j = 0; j < n; j++)
            cnt += logbuf[j] == (char)('a' + p);
        assert_int_equal(cnt, 300);
    }
    assert_int_equal(atomic_load(&sh->add_wins), 1);
    assert_int_equal(shmc_exists(f->c, "once", 4), SHMC_OK);
    tu_shared_free(sh, sizeof *sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gets_cas_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_never_repeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_touch_and_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_losing_cas_allocates_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_value_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_and_touch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_prepend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_loops_lose_no_update, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
