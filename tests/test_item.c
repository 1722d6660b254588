/*
 * test_item.c — the variable-length item encoding (lib/item.h, layout 7):
 * every combination of narrow/wide lengths, flags and expiry encodes and
 * decodes exactly and takes the size it says; through the public API,
 * items with and without flags and TTL, at the largest key and value, and
 * counters updated in place read back exactly; damaged headers are refused
 * by the parser, never followed; an index much smaller than storage still
 * takes every set (an index bucket pair that is full evicts its oldest
 * entry, it never fails the set); the walk of a segment being compacted
 * steps over an item whose writer died before writing its header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "epoch.h"
#include "index.h"
#include "slots.h"
#include "testutil.h"

/* ---- the encoding alone (no cache) ---- */

static void roundtrip(uint8_t kind, uint32_t klen, uint32_t vlen, uint32_t flags, uint64_t expire)
{
    size_t size = (size_t)item_size(klen, vlen, flags, expire);
    uint8_t *buf = aligned_alloc(64, (size + 64 + 63) & ~(size_t)63);
    assert_non_null(buf);
    memset(buf, 0x5a, size + 64);
    uint64_t cas = 0x0123456789abcdefull ^ klen ^ ((uint64_t)vlen << 20);
    uint8_t *k = item_encode(buf, kind, klen, vlen, flags, expire, cas);
    for (uint32_t i = 0; i < klen; i++)
        k[i] = (uint8_t)(i * 7 + 1);
    memset(k + klen, 0xc3, vlen);
    const shmc_item *it = (const shmc_item *)buf;
    bool wide = klen > 255 || vlen > 65535;
    uint32_t hlen = (wide ? 16u : 12u) + (flags ? 4u : 0u) + (expire ? 8u : 0u);
    assert_ptr_equal(k, buf + hlen);
    assert_int_equal(size, (hlen + klen + vlen + 7u) & ~7u);
    assert_int_equal(item_kind(it), kind);
    assert_int_equal(item_klen(it), klen);
    assert_int_equal(item_vlen(it), vlen);
    assert_int_equal(item_cas(it), cas);
    assert_int_equal(item_flags(it), flags);
    assert_int_equal(item_expire(it), expire);
    assert_ptr_equal(item_key(it), k);
    assert_int_equal(item_bytes(it), size);
    uint32_t kl = 0, vl = 0;
    /* Parses with exactly its own size of room, not with a byte less. */
    assert_int_equal(item_check(it, size, klen, vlen, &kl, &vl), size);
    assert_int_equal(kl, klen);
    assert_int_equal(vl, vlen);
    assert_int_equal(item_check(it, size - 1, klen, vlen, &kl, &vl), 0);
    /* Lengths over the limits are refused. */
    assert_int_equal(item_check(it, size, klen - 1, vlen, &kl, &vl), 0);
    if (vlen)
        assert_int_equal(item_check(it, size, klen, vlen - 1, &kl, &vl), 0);
    free(buf);
}

static void test_encoding_roundtrip(void **state)
{
    (void)state;
    const uint32_t klens[] = {1, 16, 255, 256, 4096};
    const uint32_t vlens[] = {0, 100, 65535, 65536, 1u << 20};
    const uint32_t flagss[] = {0, 1, 0xffffffffu};
    const uint64_t expires[] = {0, 1, 0x7fffffffffffull, UINT64_MAX};
    for (uint8_t kind = 0; kind < 4; kind++)
        for (size_t a = 0; a < 5; a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 3; c++)
                    for (size_t d = 0; d < 4; d++)
                        roundtrip(kind, klens[a], vlens[b], flagss[c], expires[d]);
    /* The headline item: 16 B key, 100 B value, no flags, no TTL. */
    assert_int_equal(item_size(16, 100, 0, 0), 128);
    assert_int_equal(item_size(16, 100, 7, 0), 136);
    assert_int_equal(item_size(16, 100, 7, 5), 144);
    assert_int_equal(item_size(256, 100, 0, 0), 376);
    assert_int_equal(item_size_max(16, 100), 144);
}

/* Damaged headers parse as no item: a wrong mark, zero or oversize
 * lengths, a wide header with its zero byte set, option bits that make the
 * header run past the room, and zeroed memory. */
static void test_damaged_headers_refused(void **state)
{
    (void)state;
    _Alignas(8) uint8_t buf[256];
    uint32_t kl, vl;
    const shmc_item *it = (const shmc_item *)buf;
    memset(buf, 0, sizeof buf);
    assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 0); /* zeroed */
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 0); /* all ones */

    item_encode(buf, ITEM_KIND_PLAIN, 16, 100, 0, 0, 42);
    assert_int_equal(item_check(it, 128, 250, 1000, &kl, &vl), 128);
    for (unsigned bit = 5; bit < 8; bit++) { /* each mark bit */
        buf[0] ^= (uint8_t)(1u << bit);
        assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 0);
        buf[0] ^= (uint8_t)(1u << bit);
    }
    buf[offsetof(shmc_item_n, klen)] = 0;
    assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 0);
    buf[offsetof(shmc_item_n, klen)] = 251;
    assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 0);
    buf[offsetof(shmc_item_n, klen)] = 16;
    uint16_t v16 = 1001;
    memcpy(buf + offsetof(shmc_item_n, vlen), &v16, 2);
    assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 0);
    v16 = 100;
    memcpy(buf + offsetof(shmc_item_n, vlen), &v16, 2);
    /* Flags and expiry bits set: the header grows by 12 bytes, past the room. */
    buf[0] |= ITEM_FMT_FLAGS | ITEM_FMT_EXPIRE;
    assert_int_equal(item_check(it, 128, 250, 1000, &kl, &vl), 0);
    assert_int_equal(item_check(it, sizeof buf, 250, 1000, &kl, &vl), 144);
    buf[0] &= (uint8_t)~(ITEM_FMT_FLAGS | ITEM_FMT_EXPIRE);
    /* A header that does not fit at all. */
    assert_int_equal(item_check(it, ITEM_HDR_MIN - 1, 250, 1000, &kl, &vl), 0);

    item_encode(buf, ITEM_KIND_PLAIN, 300, 10, 0, 0, 42);
    assert_int_equal(item_check(it, 320, 4096, 1000, &kl, &vl), 0); /* 328 bytes > room */
    assert_int_equal(item_check(it, 328, 4096, 1000, &kl, &vl), 328);
    item_encode(buf, ITEM_KIND_PLAIN, 100, 70000, 0, 0, 42); /* wide by its value */
    assert_int_equal(item_check(it, 1u << 20, 250, 1u << 20, &kl, &vl), 70120);
    buf[offsetof(shmc_item_w, zero)] = 1;
    assert_int_equal(item_check(it, 1u << 20, 250, 1u << 20, &kl, &vl), 0);
}

/* ---- through a cache ---- */

typedef tu_fx fx;

static int open_fx(void **state, const shmc_options *o) { return tu_fx_setup(state, "item", o); }

static int setup(void **state)
{
    shmc_options o = {.size = 32u << 20, .max_key = SHMC_MAX_KEY_LIMIT, .max_value = 1u << 20};
    return open_fx(state, &o);
}
#define teardown tu_fx_teardown

static uint64_t bytes_used(shmc_t *c)
{
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    return st.bytes_used;
}

/* One item of every shape: key and value at the narrow/wide boundaries and
 * at the cache's limits, with and without flags and TTL.  Each reads back
 * exactly, and takes item_size bytes. */
static void test_shapes_through_the_api(void **state)
{
    fx *f = *state;
    const uint32_t klens[] = {1, 16, 255, 256, SHMC_MAX_KEY_LIMIT};
    const uint32_t vlens[] = {0, 100, 65535, 65536, 1u << 20};
    uint8_t *key = malloc(SHMC_MAX_KEY_LIMIT), *val = malloc(1u << 20), *out = malloc(1u << 20);
    assert_true(key && val && out);
    uint32_t n = 0;
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 5; b++)
            for (unsigned opt = 0; opt < 4; opt++, n++) {
                uint32_t kl = klens[a], vl = vlens[b];
                uint32_t flags = opt & 1 ? 0x80000000u | n : 0;
                uint64_t ttl = opt & 2 ? 3600000 : 0;
                memset(key, 'a' + (int)(n % 26), kl);
                memcpy(key, &n, kl < sizeof n ? kl : sizeof n);
                for (uint32_t i = 0; i < vl; i++)
                    val[i] = (uint8_t)(i * 31 + n);
                uint64_t before = bytes_used(f->c);
                assert_int_equal(shmc_set(f->c, key, kl, val, vl, flags, ttl), SHMC_OK);
                /* The size the encoding says, whatever the expiry's value. */
                assert_int_equal(bytes_used(f->c) - before, item_size(kl, vl, flags, ttl));
                size_t got = 0;
                uint32_t gf = 1;
                uint64_t cas = 0, left = 0;
                assert_int_equal(shmc_gets(f->c, key, kl, out, 1u << 20, &got, &gf, &cas),
                                 SHMC_OK);
                assert_int_equal(got, vl);
                if (vl)
                    assert_memory_equal(out, val, vl);
                assert_int_equal(gf, flags);
                assert_true(cas != 0);
                assert_int_equal(shmc_ttl(f->c, key, kl, &left), SHMC_OK);
                if (ttl)
                    assert_true(left > 0 && left <= ttl);
                else
                    assert_int_equal(left, SHMC_TTL_NONE);
                /* The token written into the header is what a cas needs. */
                assert_int_equal(shmc_cas(f->c, key, kl, val, vl, flags, ttl, cas, NULL),
                                 SHMC_OK);
                assert_int_equal(shmc_delete(f->c, key, kl), SHMC_OK);
            }
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_OK);
    free(key);
    free(val);
    free(out);
}

/* A counter's cell sits after a narrow or a wide header, with flags and a
 * TTL or without: forked incrementers (the in-place path) lose nothing. */
static void test_counters_in_place(void **state)
{
    fx *f = *state;
    const uint32_t klens[] = {8, 255, 256, 3000};
    const int procs = 3, per = 2000;
    char key[3000];
    for (size_t a = 0; a < 4; a++) {
        for (unsigned opt = 0; opt < 2; opt++) {
            size_t kl = klens[a];
            memset(key, 'k', kl);
            key[0] = (char)('0' + a);
            key[1] = (char)('0' + opt);
            uint64_t r = 0;
            if (opt)
                assert_int_equal(shmc_set(f->c, key, kl, "0", 1, 77, 3600000), SHMC_OK);
            else
                assert_int_equal(shmc_incr(f->c, key, kl, 0, 0, 0, SHMC_INCR_CREATE, &r),
                                 SHMC_OK);
            pid_t pids[3];
            for (int p = 0; p < procs; p++) {
                pids[p] = fork();
                assert_true(pids[p] >= 0);
                if (pids[p] == 0) {
                    for (int i = 0; i < per; i++)
                        if (shmc_incr(f->c, key, kl, 1, 0, 0, 0, &r) != SHMC_OK)
                            _exit(1);
                    _exit(0);
                }
            }
            for (int p = 0; p < procs; p++) {
                int ws;
                assert_int_equal(waitpid(pids[p], &ws, 0), pids[p]);
                assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
            }
            char buf[32];
            size_t n;
            uint32_t fl = 0;
            assert_int_equal(shmc_get(f->c, key, kl, buf, sizeof buf, &n, &fl), SHMC_OK);
            buf[n] = 0;
            assert_string_equal(buf, "6000");
            assert_int_equal(fl, opt ? 77u : 0u);
            uint64_t left;
            assert_int_equal(shmc_ttl(f->c, key, kl, &left), SHMC_OK);
            assert_true(opt ? left <= 3600000 : left == SHMC_TTL_NONE);
        }
    }
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_OK);
}

/* A 16 B / 100 B item with no flags and no TTL takes 128 bytes. */
static void test_small_item_size(void **state)
{
    fx *f = *state;
    char key[17];
    uint8_t val[100] = {0};
    uint64_t before = bytes_used(f->c);
    for (uint32_t i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "%016u", i);
        assert_int_equal(shmc_set(f->c, key, 16, val, 100, 0, 0), SHMC_OK);
    }
    assert_int_equal(bytes_used(f->c) - before, 1000u * 128u);
}

/* An index far smaller than storage (max_items) and one overfilled by tiny
 * items: every set succeeds, evicting from a full bucket pair, and the
 * last key written reads back. */
static void test_full_index_still_takes_sets(void **state)
{
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        void *st = NULL;
        shmc_options o = {.size = 8u << 20, .max_items = variant ? 0 : 1000};
        assert_int_equal(open_fx(&st, &o), 0);
        fx *f = st;
        shmc_info in;
        assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
        /* Two or three times what the index can hold, of 24-byte items
         * (1-byte values, 2- to 5-byte keys): for the default index (one
         * way per 80 bytes of storage), more than it has ways for, in less
         * than the storage. */
        uint32_t n = (variant ? 2 : 3) * in.index_slots;
        char key[16];
        for (uint32_t i = 0; i < n; i++) {
            size_t kl = (size_t)snprintf(key, sizeof key, "%x", i + 16);
            assert_int_equal(shmc_set(f->c, key, kl, "v", 1, 0, 0), SHMC_OK);
        }
        shmc_stats s;
        assert_int_equal(shmc_stats_get(f->c, &s), SHMC_OK);
        assert_true(s.evictions > 0);
        assert_true(s.items <= in.index_slots);
        /* Over 90 % of the ways are in use (two-choice buckets, 8 ways). */
        assert_true(s.items * 10 > (uint64_t)in.index_slots * 9);
        /* The last key written reads back.  With max_items, the whole index
         * holds fewer items than one storage segment, so every entry is in
         * an open segment (all equally young) and a full pair may evict any
         * of them: only the default index promises the last 10. */
        for (uint32_t i = n - (variant ? 10 : 1); i < n; i++) {
            char buf[4];
            size_t vl;
            size_t kl = (size_t)snprintf(key, sizeof key, "%x", i + 16);
            assert_int_equal(shmc_get(f->c, key, kl, buf, sizeof buf, &vl, NULL), SHMC_OK);
        }
        shmc_verify_report rep;
        assert_int_equal(shmc_verify(f->c, &rep), SHMC_OK);
        assert_int_equal(rep.items, s.items);
        teardown(&st);
    }
}

/* A writer that died between taking its room and writing the header
 * leaves bytes the walk cannot parse (zeros here, or the segment's earlier
 * contents).  The live items after them in that segment are still found by
 * the compaction's walk and moved, not dropped: after a churn that
 * compacts every segment, all of them are there and nothing was evicted. */
static void test_torn_item_does_not_hide_the_rest(void **state)
{
    (void)state;
    for (int pattern = 0; pattern < 2; pattern++) {
        void *st = NULL;
        shmc_options o = {.size = 8u << 20, .max_value = 4096};
        assert_int_equal(open_fx(&st, &o), 0);
        fx *f = st;
        struct shmc *c = f->c;
        char key[32];
        uint8_t val[100];
        memset(val, 'v', sizeof val);
        for (uint32_t i = 0; i < 20; i++) {
            size_t kl = (size_t)snprintf(key, sizeof key, "before-%u", i);
            assert_int_equal(shmc_set(c, key, kl, val, sizeof val, 0, 0), SHMC_OK);
        }
        /* The "dead" writer: room for a 200-byte item, never written. */
        tslot *t;
        uint64_t off;
        assert_int_equal(slot_get(c, &t), SHMC_OK);
        read_enter(c, t);
        assert_int_equal(alloc_item(c, t, 200, &off), SHMC_OK);
        memset(c->data + off, pattern ? 0xa5 : 0, 200);
        wseg_clear(t);
        read_exit(c, t);
        for (uint32_t i = 0; i < 100; i++) {
            size_t kl = (size_t)snprintf(key, sizeof key, "after-%u", i);
            assert_int_equal(shmc_set(c, key, kl, val, sizeof val, 0, 0), SHMC_OK);
        }
        /* Fillers, deleted: that segment is now mostly dead bytes, and the
         * next ones wholly.  Then distinct keys until storage is reclaimed
         * by compaction (the wholly dead segments go first, then the
         * deadest one with live items: ours). */
        for (uint32_t i = 0; i < 1000; i++) {
            size_t kl = (size_t)snprintf(key, sizeof key, "fill-%u", i);
            assert_int_equal(shmc_set(c, key, kl, val, sizeof val, 0, 0), SHMC_OK);
        }
        for (uint32_t i = 0; i < 1000; i++) {
            size_t kl = (size_t)snprintf(key, sizeof key, "fill-%u", i);
            assert_int_equal(shmc_delete(c, key, kl), SHMC_OK);
        }
        shmc_stats s;
        shmc_info in;
        assert_int_equal(shmc_info_get(c, &in), SHMC_OK);
        uint64_t limit = 2 * in.data_bytes / 128;
        for (uint64_t i = 0;; i++) {
            assert_true(i < limit);
            assert_int_equal(shmc_stats_get(c, &s), SHMC_OK);
            if (s.compacted > 0 || s.evictions > 0)
                break;
            size_t kl = (size_t)snprintf(key, sizeof key, "u-%llu", (unsigned long long)i);
            assert_int_equal(shmc_set(c, key, kl, val, sizeof val, 0, 0), SHMC_OK);
        }
        /* Before, the walk stopped at the torn bytes and the index scan
         * after it dropped every live item that followed (evictions). */
        assert_int_equal(s.evictions, 0);
        assert_true(s.compacted >= 100);
        for (uint32_t i = 0; i < 100; i++) {
            char buf[128];
            size_t vl;
            size_t kl = (size_t)snprintf(key, sizeof key, "%s-%u", i < 20 ? "before" : "after",
                                         i < 20 ? i : i - 20);
            assert_int_equal(shmc_get(c, key, kl, buf, sizeof buf, &vl, NULL), SHMC_OK);
            kl = (size_t)snprintf(key, sizeof key, "after-%u", i);
            assert_int_equal(shmc_get(c, key, kl, buf, sizeof buf, &vl, NULL), SHMC_OK);
            assert_int_equal(vl, sizeof val);
        }
        shmc_verify_report rep;
        assert_int_equal(shmc_verify(c, &rep), SHMC_OK);
        teardown(&st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoding_roundtrip),
        cmocka_unit_test(test_damaged_headers_refused),
        cmocka_unit_test_setup_teardown(test_shapes_through_the_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_item_size, setup, teardown),
        cmocka_unit_test(test_full_index_still_takes_sets),
        cmocka_unit_test(test_torn_item_does_not_hide_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
