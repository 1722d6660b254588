/*
 * test_api.c — the public key/value API in one process: open/close/destroy,
 * reported parameters, round trips (binary keys, empty values, flags),
 * buffer-size protocol, length limits, argument checks, TTLs, overwrite,
 * statistics, eviction under a full cache, status strings, and concurrent
 * use from threads of one process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmcache.h"
#include "testutil.h"

typedef tu_fx fx;

static int setup_default(void **state)
{
    shmc_options o = {0}; /* all defaults */
    return tu_fx_setup(state, "api", &o);
}

/* For tests that open their own cache (f->c is NULL until they do). */
static int setup_name_only(void **state) { return tu_fx_setup(state, "api", NULL); }
#define teardown tu_fx_teardown

static shmc_status open_with(fx *f, uint64_t size, uint32_t max_key, uint32_t max_value)
{
    shmc_options o = {0};
    o.size = size;
    o.max_key = max_key;
    o.max_value = max_value;
    return shmc_open(f->name, &o, &f->c);
}

static bool shm_file_exists(const char *name)
{
    char path[256];
    struct stat st;
    tu_shm_path(path, sizeof path, name);
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------------------ */

static void test_open_close_destroy(void **state)
{
    fx *f = *state;
    shmc_t *c = (shmc_t *)0x1;
    assert_int_equal(shmc_open(f->name, NULL, &c), SHMC_OK);
    assert_non_null(c);
    assert_true(shm_file_exists(f->name));
    assert_int_equal(shmc_set(c, "persist", 7, "yes", 3, 0, 0), SHMC_OK);
    assert_int_equal(shmc_close(c), SHMC_OK);

    /* The cache outlives the handle. */
    shmc_options o = {.flags = SHMC_OPEN_ATTACH_ONLY};
    c = NULL;
    assert_int_equal(shmc_open(f->name, &o, &c), SHMC_OK);
    assert_non_null(c);
    char buf[16];
    size_t vlen = 0;
    assert_int_equal(shmc_get(c, "persist", 7, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 3);
    assert_memory_equal(buf, "yes", 3);

    /* Destroy removes the name; the open handle keeps working. */
    assert_int_equal(shmc_destroy(f->name), SHMC_OK);
    assert_false(shm_file_exists(f->name));
    assert_int_equal(shmc_set(c, "after", 5, "x", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_get(c, "after", 5, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 1);
    assert_int_equal(shmc_close(c), SHMC_OK);

    c = (shmc_t *)0x1;
    assert_int_equal(shmc_open(f->name, &o, &c), SHMC_ENOENT);
    assert_null(c);
    assert_int_equal(shmc_destroy(f->name), SHMC_ENOENT);
    assert_int_equal(shmc_close(NULL), SHMC_OK);

    /* Re-creating after destroy gives an empty cache. */
    assert_int_equal(shmc_open(f->name, NULL, &f->c), SHMC_OK);
    assert_int_equal(shmc_exists(f->c, "persist", 7), SHMC_NOT_FOUND);
}

static void test_two_handles_one_process(void **state)
{
    fx *f = *state;
    shmc_t *c2 = NULL;
    assert_int_equal(shmc_open(f->name, NULL, &c2), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "k", 1, "one", 3, 0, 0), SHMC_OK);
    char buf[8];
    size_t vlen;
    assert_int_equal(shmc_get(c2, "k", 1, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 3);
    assert_memory_equal(buf, "one", 3);
    assert_int_equal(shmc_close(c2), SHMC_OK);
    /* Closing one handle leaves the other usable. */
    assert_int_equal(shmc_get(f->c, "k", 1, buf, sizeof buf, &vlen, NULL), SHMC_OK);
}

static void test_info_defaults(void **state)
{
    fx *f = *state;
    shmc_info in;
    memset(&in, 0xee, sizeof in);
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    assert_int_equal(in.size, 64ull << 20);
    assert_int_equal(in.max_key, SHMC_DEFAULT_MAX_KEY);
    assert_int_equal(in.max_value, SHMC_DEFAULT_MAX_VALUE);
    assert_int_equal(in.slots, SHMC_DEFAULT_SLOTS);
    assert_true(in.layout_version >= 1);
    assert_true(in.data_bytes > 0);
    assert_true(in.data_bytes < in.size);
    assert_true(in.segment_bytes > 0);
    assert_int_equal(in.segment_bytes & (in.segment_bytes - 1), 0); /* power of two */
    /* The largest item must fit in one storage segment. */
    assert_true(in.segment_bytes >= (uint64_t)in.max_value + in.max_key);
    assert_int_equal((uint64_t)in.segments * in.segment_bytes, in.data_bytes);
    assert_true(in.segments >= 8);
    assert_true(in.index_slots > 0);
}

static void test_info_custom(void **state)
{
    fx *f = *state;
    shmc_options o = {.size = 16ull << 20, .max_key = 100, .max_value = 64u << 10, .slots = 64};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    assert_int_equal(in.size, 16ull << 20);
    assert_int_equal(in.max_key, 100);
    assert_int_equal(in.max_value, 64u << 10);
    assert_int_equal(in.slots, 64);
    assert_true(in.data_bytes > 0 && in.data_bytes < in.size);
    assert_int_equal((uint64_t)in.segments * in.segment_bytes, in.data_bytes);
    assert_true(in.segments >= 7);
}

/* A cache too small for an explicit max_value is refused; with max_value
 * left 0 the default shrinks to fit. */
static void test_small_cache_max_value(void **state)
{
    fx *f = *state;
    shmc_t *c = (shmc_t *)0x1;
    assert_int_equal(open_with(f, 8ull << 20, 0, 4u << 20), SHMC_ETOOSMALL);
    assert_false(shm_file_exists(f->name));
    assert_int_equal(shmc_open(f->name, &(shmc_options){.size = 512u << 10}, &c), SHMC_ETOOSMALL);
    assert_null(c);
    assert_false(shm_file_exists(f->name));
    /* 1 MiB: the default 1024 slots' table (768 KiB) leaves no room for
     * 5 segments of the smallest default max_value; with 64 slots it fits
     * (shmcache.h, shmc_options.size). */
    assert_int_equal(shmc_open(f->name, &(shmc_options){.size = 1u << 20}, &c), SHMC_ETOOSMALL);
    assert_false(shm_file_exists(f->name));
    assert_int_equal(shmc_open(f->name, &(shmc_options){.size = 1u << 20, .slots = 64}, &c),
                     SHMC_OK);
    assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), SHMC_OK);
    shmc_close(c);
    assert_int_equal(shmc_destroy(f->name), SHMC_OK);
    c = NULL;

    assert_int_equal(open_with(f, 4ull << 20, 0, 0), SHMC_OK);
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    assert_int_equal(in.size, 4ull << 20);
    assert_true(in.max_value >= (64u << 10));
    assert_true(in.max_value < SHMC_DEFAULT_MAX_VALUE);
    assert_int_equal(in.max_value & (in.max_value - 1), 0);
    assert_true(in.segments >= 5);
    /* The reported max_value is usable, one more byte is not. */
    uint8_t *v = malloc(in.max_value + 1);
    tu_value_fill(v, in.max_value, 3, 0, 0);
    assert_int_equal(shmc_set(f->c, "mv", 2, v, in.max_value + 1, 0, 0), SHMC_EVALLEN);
    assert_int_equal(shmc_set(f->c, "mv", 2, v, in.max_value, tu_value_flags(3, in.max_value), 0),
                     SHMC_OK);
    void *p = NULL;
    size_t vlen;
    uint32_t fl;
    assert_int_equal(shmc_get_alloc(f->c, "mv", 2, &p, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, in.max_value);
    assert_int_equal(tu_value_check(p, vlen, fl, 3, NULL, 0), 0);
    free(p);
    free(v);
}

static void test_set_get_delete_exists(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    char buf[64];
    size_t vlen = 12345;
    uint32_t fl = 7;

    assert_int_equal(shmc_get(c, "alpha", 5, buf, sizeof buf, &vlen, &fl), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "alpha", 5), SHMC_NOT_FOUND);
    assert_int_equal(shmc_delete(c, "alpha", 5), SHMC_NOT_FOUND);

    assert_int_equal(shmc_set(c, "alpha", 5, "value-a", 7, 0, 0), SHMC_OK);
    assert_int_equal(shmc_set(c, "beta", 4, "value-bb", 8, 0, 0), SHMC_OK);
    assert_int_equal(shmc_exists(c, "alpha", 5), SHMC_OK);
    assert_int_equal(shmc_get(c, "alpha", 5, buf, sizeof buf, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, 7);
    assert_memory_equal(buf, "value-a", 7);
    assert_int_equal(shmc_get(c, "beta", 4, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 8);
    assert_memory_equal(buf, "value-bb", 8);
    /* Prefixes / extensions of a key are other keys. */
    assert_int_equal(shmc_exists(c, "alph", 4), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "alphaa", 6), SHMC_NOT_FOUND);

    assert_int_equal(shmc_delete(c, "alpha", 5), SHMC_OK);
    assert_int_equal(shmc_get(c, "alpha", 5, buf, sizeof buf, &vlen, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "alpha", 5), SHMC_NOT_FOUND);
    assert_int_equal(shmc_delete(c, "alpha", 5), SHMC_NOT_FOUND);
    /* The other key is untouched. */
    assert_int_equal(shmc_get(c, "beta", 4, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_memory_equal(buf, "value-bb", 8);
    /* Set after delete works again. */
    assert_int_equal(shmc_set(c, "alpha", 5, "again", 5, 0, 0), SHMC_OK);
    assert_int_equal(shmc_get(c, "alpha", 5, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 5);
    assert_memory_equal(buf, "again", 5);
}

static void test_binary_keys(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    static const struct {
        const char *k;
        size_t klen;
    } keys[] = {
        {"a\0b", 3}, {"a\0c", 3}, {"a", 1}, {"a\0", 2}, {"\0", 1},
        {"\0\0", 2}, {"\0\0\0\0\0\0\0\0\0", 9}, {"\xff\xfe\0\x01", 4},
    };
    const size_t n = sizeof keys / sizeof keys[0];
    char val[32], buf[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(val, sizeof val, "value-%zu", i);
        assert_int_equal(shmc_set(c, keys[i].k, keys[i].klen, val, strlen(val), (uint32_t)i, 0),
                         SHMC_OK);
    }
    /* A 256-byte-alphabet key (within the default max_key of 250). */
    uint8_t big[250];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    assert_int_equal(shmc_set(c, big, sizeof big, "big", 3, 99, 0), SHMC_OK);

    for (size_t i = 0; i < n; i++) {
        snprintf(val, sizeof val, "value-%zu", i);
        size_t vlen = 0;
        uint32_t fl = 12345;
        assert_int_equal(shmc_get(c, keys[i].k, keys[i].klen, buf, sizeof buf, &vlen, &fl),
                         SHMC_OK);
        assert_int_equal(vlen, strlen(val));
        assert_memory_equal(buf, val, vlen);
        assert_int_equal(fl, i);
    }
    size_t vlen;
    uint32_t fl;
    assert_int_equal(shmc_get(c, big, sizeof big, buf, sizeof buf, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, 3);
    assert_int_equal(fl, 99);
    big[249] ^= 1;
    assert_int_equal(shmc_exists(c, big, sizeof big), SHMC_NOT_FOUND);

    /* Deleting one NUL-containing key leaves its neighbours. */
    assert_int_equal(shmc_delete(c, "a\0b", 3), SHMC_OK);
    assert_int_equal(shmc_exists(c, "a\0b", 3), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "a\0c", 3), SHMC_OK);
    assert_int_equal(shmc_exists(c, "a", 1), SHMC_OK);
    assert_int_equal(shmc_exists(c, "a\0", 2), SHMC_OK);
}

static void test_zero_length_value(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    const char dummy = 'z';
    assert_int_equal(shmc_set(c, "empty", 5, &dummy, 0, 42, 0), SHMC_OK);
    assert_int_equal(shmc_exists(c, "empty", 5), SHMC_OK);

    size_t vlen = 999;
    uint32_t fl = 0;
    /* Size query with a NULL buffer: an empty value fits. */
    assert_int_equal(shmc_get(c, "empty", 5, NULL, 0, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, 0);
    assert_int_equal(fl, 42);

    char buf[8] = "XXXXXXX";
    vlen = 999;
    assert_int_equal(shmc_get(c, "empty", 5, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 0);

    void *p = NULL;
    vlen = 999;
    fl = 0;
    assert_int_equal(shmc_get_alloc(c, "empty", 5, &p, &vlen, &fl), SHMC_OK);
    assert_non_null(p);
    assert_int_equal(vlen, 0);
    assert_int_equal(fl, 42);
    free(p);

    /* An empty value overwritten by a non-empty one, and back. */
    assert_int_equal(shmc_set(c, "empty", 5, "abc", 3, 1, 0), SHMC_OK);
    assert_int_equal(shmc_get(c, "empty", 5, buf, sizeof buf, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, 3);
    assert_int_equal(shmc_set(c, "empty", 5, &dummy, 0, 2, 0), SHMC_OK);
    assert_int_equal(shmc_get(c, "empty", 5, buf, sizeof buf, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, 0);
    assert_int_equal(fl, 2);
    assert_int_equal(shmc_delete(c, "empty", 5), SHMC_OK);
}

/* A key of kl bytes whose bytes depend on kl (for test_every_short_length). */
static const uint8_t *length_key(uint8_t *key, size_t kl)
{
    for (size_t i = 0; i < kl; i++)
        key[i] = (uint8_t)(kl * 13 + i * 3);
    return key;
}

/* Every value length from 0 to 300 and every key length up to the default
 * max_key round-trips byte for byte, and a get writes nothing outside the
 * value's bytes (copies of up to 128 bytes are moves from both ends). */
static void test_every_short_length(void **state)
{
    shmc_t *c = ((fx *)*state)->c;
    uint8_t val[300], key[SHMC_DEFAULT_MAX_KEY], out[300 + 64];
    for (size_t n = 0; n <= sizeof val; n++) {
        for (size_t i = 0; i < n; i++)
            val[i] = (uint8_t)(n * 31 + i * 7 + 1);
        char k[16];
        int kl = snprintf(k, sizeof k, "len%zu", n);
        assert_int_equal(shmc_set(c, k, (size_t)kl, val, n, (uint32_t)n, 0), SHMC_OK);
        memset(out, 0xa5, sizeof out);
        size_t vlen = 999;
        uint32_t fl = 0;
        assert_int_equal(shmc_get(c, k, (size_t)kl, out + 32, n, &vlen, &fl), SHMC_OK);
        assert_int_equal(vlen, n);
        assert_int_equal(fl, n);
        if (n)
            assert_memory_equal(out + 32, val, n);
        for (size_t i = 0; i < 32; i++) {
            assert_int_equal(out[i], 0xa5);
            assert_int_equal(out[32 + n + i], 0xa5);
        }
    }
    for (size_t kl = 1; kl <= sizeof key; kl++)
        assert_int_equal(shmc_set(c, length_key(key, kl), kl, &kl, sizeof kl, 0, 0), SHMC_OK);
    for (size_t kl = 1; kl <= sizeof key; kl++) {
        length_key(key, kl);
        size_t got = 0, vlen = 0;
        assert_int_equal(shmc_get(c, key, kl, &got, sizeof got, &vlen, NULL), SHMC_OK);
        assert_int_equal(vlen, sizeof got);
        assert_int_equal(got, kl);
    }
}

static void test_flags_roundtrip(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    static const uint32_t flags[] = {0, 1, 0x80000000u, 0xdeadbeefu, UINT32_MAX, 0x00ff00ffu};
    char key[16], buf[16];
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int kl = snprintf(key, sizeof key, "fl%zu", i);
        assert_int_equal(shmc_set(c, key, (size_t)kl, "v", 1, flags[i], 0), SHMC_OK);
    }
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int kl = snprintf(key, sizeof key, "fl%zu", i);
        uint32_t got = ~flags[i];
        size_t vlen;
        assert_int_equal(shmc_get(c, key, (size_t)kl, buf, sizeof buf, &vlen, &got), SHMC_OK);
        assert_int_equal(got, flags[i]);
        void *p = NULL;
        got = ~flags[i];
        assert_int_equal(shmc_get_alloc(c, key, (size_t)kl, &p, &vlen, &got), SHMC_OK);
        assert_int_equal(got, flags[i]);
        free(p);
    }
    /* Overwriting changes the flags too. */
    assert_int_equal(shmc_set(c, "fl0", 3, "v", 1, 0x1234u, 0), SHMC_OK);
    uint32_t got = 0;
    size_t vlen;
    assert_int_equal(shmc_get(c, "fl0", 3, buf, sizeof buf, &vlen, &got), SHMC_OK);
    assert_int_equal(got, 0x1234u);
}

static void test_ebufsize_then_success(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    enum { N = 1000 };
    uint8_t val[N], buf[2 * N];
    for (size_t i = 0; i < N; i++)
        val[i] = (uint8_t)(i * 31 + 5);
    assert_int_equal(shmc_set(c, "big", 3, val, N, 77, 0), SHMC_OK);

    size_t vlen = 0;
    memset(buf, 0xAB, sizeof buf);
    assert_int_equal(shmc_get(c, "big", 3, buf, N - 1, &vlen, NULL), SHMC_EBUFSIZE);
    assert_int_equal(vlen, N);
    /* "nothing copied" */
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xAB);

    vlen = 0;
    assert_int_equal(shmc_get(c, "big", 3, buf, 1, &vlen, NULL), SHMC_EBUFSIZE);
    assert_int_equal(vlen, N);

    /* Size query: NULL buffer, zero length. */
    vlen = 0;
    assert_int_equal(shmc_get(c, "big", 3, NULL, 0, &vlen, NULL), SHMC_EBUFSIZE);
    assert_int_equal(vlen, N);

    /* Exactly the needed size, then a larger one. */
    uint32_t fl = 0;
    assert_int_equal(shmc_get(c, "big", 3, buf, vlen, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, N);
    assert_int_equal(fl, 77);
    assert_memory_equal(buf, val, N);
    memset(buf, 0, sizeof buf);
    assert_int_equal(shmc_get(c, "big", 3, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, N);
    assert_memory_equal(buf, val, N);

    /* A miss stays a miss whatever the buffer. */
    assert_int_equal(shmc_get(c, "nope", 4, NULL, 0, &vlen, NULL), SHMC_NOT_FOUND);
}

static void test_get_alloc(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    enum { N = 5000 };
    uint8_t *val = malloc(N);
    tu_value_fill(val, N, 4, 1, 2);
    assert_int_equal(shmc_set(c, "ga", 2, val, N, tu_value_flags(4, N), 0), SHMC_OK);
    void *p = NULL;
    size_t vlen = 0;
    uint32_t fl = 0;
    assert_int_equal(shmc_get_alloc(c, "ga", 2, &p, &vlen, &fl), SHMC_OK);
    assert_non_null(p);
    assert_int_equal(vlen, N);
    assert_int_equal(tu_value_check(p, vlen, fl, 4, NULL, 0), 0);
    assert_memory_equal(p, val, N);
    free(p);

    /* flags may be NULL */
    p = NULL;
    assert_int_equal(shmc_get_alloc(c, "ga", 2, &p, &vlen, NULL), SHMC_OK);
    assert_non_null(p);
    free(p);

    p = NULL;
    assert_int_equal(shmc_get_alloc(c, "missing", 7, &p, &vlen, &fl), SHMC_NOT_FOUND);
    free(val);
}

static void check_keylen_all_ops(shmc_t *c, const void *key, size_t klen, shmc_status want)
{
    char buf[16];
    size_t vlen;
    void *p = NULL;
    assert_int_equal(shmc_set(c, key, klen, "v", 1, 0, 0), want);
    assert_int_equal(shmc_get(c, key, klen, buf, sizeof buf, &vlen, NULL), want);
    assert_int_equal(shmc_get_alloc(c, key, klen, &p, &vlen, NULL), want);
    if (want == SHMC_OK)
        free(p);
    assert_int_equal(shmc_exists(c, key, klen), want);
    assert_int_equal(shmc_delete(c, key, klen), want);
}

static void test_key_length_limits(void **state)
{
    fx *f = *state;
    /* default max_key */
    assert_int_equal(shmc_open(f->name, NULL, &f->c), SHMC_OK);
    char key[SHMC_MAX_KEY_LIMIT + 2];
    memset(key, 'k', sizeof key);
    check_keylen_all_ops(f->c, key, 0, SHMC_EKEYLEN);
    check_keylen_all_ops(f->c, key, SHMC_DEFAULT_MAX_KEY + 1, SHMC_EKEYLEN);
    check_keylen_all_ops(f->c, key, SHMC_DEFAULT_MAX_KEY, SHMC_OK);
    check_keylen_all_ops(f->c, key, 1, SHMC_OK);
    shmc_close(f->c);
    f->c = NULL;
    tu_destroy(f->name);

    /* a custom, small max_key */
    assert_int_equal(open_with(f, 16ull << 20, 16, 64u << 10), SHMC_OK);
    check_keylen_all_ops(f->c, key, 17, SHMC_EKEYLEN);
    check_keylen_all_ops(f->c, key, 16, SHMC_OK);
    check_keylen_all_ops(f->c, key, 0, SHMC_EKEYLEN);
    shmc_close(f->c);
    f->c = NULL;
    tu_destroy(f->name);

    /* the largest max_key accepted */
    assert_int_equal(open_with(f, 16ull << 20, SHMC_MAX_KEY_LIMIT, 64u << 10), SHMC_OK);
    check_keylen_all_ops(f->c, key, SHMC_MAX_KEY_LIMIT, SHMC_OK);
    check_keylen_all_ops(f->c, key, SHMC_MAX_KEY_LIMIT + 1, SHMC_EKEYLEN);
}

static void test_value_length_limits(void **state)
{
    fx *f = *state;
    const uint32_t maxv = 16u << 10;
    assert_int_equal(open_with(f, TU_SMALL_SIZE, 0, maxv), SHMC_OK);
    uint8_t *val = malloc(maxv + 1), *buf = malloc(maxv + 1);
    tu_value_fill(val, maxv, 9, 0, 0);
    assert_int_equal(shmc_set(f->c, "v", 1, val, maxv + 1, 0, 0), SHMC_EVALLEN);
    assert_int_equal(shmc_exists(f->c, "v", 1), SHMC_NOT_FOUND);
    assert_int_equal(shmc_set(f->c, "v", 1, val, maxv, tu_value_flags(9, maxv), 0), SHMC_OK);
    size_t vlen;
    uint32_t fl;
    assert_int_equal(shmc_get(f->c, "v", 1, buf, maxv + 1, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, maxv);
    assert_int_equal(tu_value_check(buf, vlen, fl, 9, NULL, 0), 0);
    /* A refused overwrite leaves the old value in place. */
    assert_int_equal(shmc_set(f->c, "v", 1, val, maxv + 1, 0, 0), SHMC_EVALLEN);
    assert_int_equal(shmc_get(f->c, "v", 1, buf, maxv + 1, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, maxv);
    free(val);
    free(buf);
    shmc_close(f->c);
    f->c = NULL;
    tu_destroy(f->name);

    /* default max_value (1 MiB) */
    assert_int_equal(shmc_open(f->name, NULL, &f->c), SHMC_OK);
    const size_t dmax = SHMC_DEFAULT_MAX_VALUE;
    val = malloc(dmax + 1);
    tu_value_fill(val, dmax, 10, 0, 0);
    assert_int_equal(shmc_set(f->c, "d", 1, val, dmax + 1, 0, 0), SHMC_EVALLEN);
    assert_int_equal(shmc_set(f->c, "d", 1, val, dmax, tu_value_flags(10, dmax), 0), SHMC_OK);
    void *p = NULL;
    assert_int_equal(shmc_get_alloc(f->c, "d", 1, &p, &vlen, &fl), SHMC_OK);
    assert_int_equal(vlen, dmax);
    assert_int_equal(tu_value_check(p, vlen, fl, 10, NULL, 0), 0);
    free(p);
    free(val);
}

static void test_null_args(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    shmc_t *out = (shmc_t *)0x1;
    char buf[8];
    size_t vlen;
    void *p;
    assert_int_equal(shmc_open(NULL, NULL, &out), SHMC_EINVAL);
    assert_null(out);
    assert_int_equal(shmc_open(f->name, NULL, NULL), SHMC_EINVAL);

    assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), SHMC_OK);

    assert_int_equal(shmc_get(NULL, "k", 1, buf, sizeof buf, &vlen, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get(c, NULL, 1, buf, sizeof buf, &vlen, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, NULL, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get(c, "k", 1, NULL, 8, &vlen, NULL), SHMC_EINVAL);

    assert_int_equal(shmc_get_alloc(NULL, "k", 1, &p, &vlen, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get_alloc(c, NULL, 1, &p, &vlen, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get_alloc(c, "k", 1, NULL, &vlen, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_get_alloc(c, "k", 1, &p, NULL, NULL), SHMC_EINVAL);

    assert_int_equal(shmc_set(NULL, "k", 1, "v", 1, 0, 0), SHMC_EINVAL);
    assert_int_equal(shmc_set(c, NULL, 1, "v", 1, 0, 0), SHMC_EINVAL);
    assert_int_equal(shmc_set(c, "k", 1, NULL, 1, 0, 0), SHMC_EINVAL);

    assert_int_equal(shmc_delete(NULL, "k", 1), SHMC_EINVAL);
    assert_int_equal(shmc_delete(c, NULL, 1), SHMC_EINVAL);
    assert_int_equal(shmc_exists(NULL, "k", 1), SHMC_EINVAL);
    assert_int_equal(shmc_exists(c, NULL, 1), SHMC_EINVAL);

    shmc_info in;
    shmc_stats st;
    shmc_verify_report rep;
    assert_int_equal(shmc_info_get(NULL, &in), SHMC_EINVAL);
    assert_int_equal(shmc_info_get(c, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_stats_get(NULL, &st), SHMC_EINVAL);
    assert_int_equal(shmc_stats_get(c, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_verify(NULL, &rep), SHMC_EINVAL);

    shmc_status d = shmc_destroy(NULL);
    assert_true(d == SHMC_EINVAL || d == SHMC_ENAME);

    /* None of the refused calls changed the key. */
    assert_int_equal(shmc_get(c, "k", 1, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(vlen, 1);
    assert_int_equal(buf[0], 'v');
}

static void test_bad_options(void **state)
{
    fx *f = *state;
    shmc_t *out;
    shmc_options o;

    o = (shmc_options){.reserved_ = 1};
    out = (shmc_t *)0x1;
    assert_int_equal(shmc_open(f->name, &o, &out), SHMC_EINVAL);
    assert_null(out);

    o = (shmc_options){.flags = SHMC_OPEN_CREATE_ONLY | SHMC_OPEN_ATTACH_ONLY};
    assert_int_equal(shmc_open(f->name, &o, &out), SHMC_EINVAL);
    o = (shmc_options){.flags = 0x100};
    assert_int_equal(shmc_open(f->name, &o, &out), SHMC_EINVAL);
    o = (shmc_options){.max_key = SHMC_MAX_KEY_LIMIT + 1};
    assert_int_equal(shmc_open(f->name, &o, &out), SHMC_EINVAL);
    o = (shmc_options){.max_value = SHMC_MAX_VALUE_LIMIT + 1};
    assert_int_equal(shmc_open(f->name, &o, &out), SHMC_EINVAL);
    o = (shmc_options){.size = 4096};
    assert_int_equal(shmc_open(f->name, &o, &out), SHMC_ETOOSMALL);
    assert_null(out);
    /* Nothing was created by the refused opens. */
    assert_false(shm_file_exists(f->name));
}

static void test_ttl(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    char buf[16];
    size_t vlen;

    uint64_t t0 = tu_now_ms();
    assert_int_equal(shmc_set(c, "short", 5, "s", 1, 0, 40), SHMC_OK);
    shmc_status g = shmc_get(c, "short", 5, buf, sizeof buf, &vlen, NULL);
    shmc_status e = shmc_exists(c, "short", 5);
    uint64_t t1 = tu_now_ms();
    /* Only meaningful when we were not descheduled for 40 ms in between. */
    if (t1 - t0 < 30) {
        assert_int_equal(g, SHMC_OK);
        assert_int_equal(e, SHMC_OK);
    }
    assert_int_equal(shmc_set(c, "long", 4, "l", 1, 0, 600000), SHMC_OK);
    assert_int_equal(shmc_set(c, "never", 5, "n", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_set(c, "short2", 6, "s", 1, 0, 40), SHMC_OK);

    tu_sleep_ms(150);
    assert_int_equal(shmc_get(c, "short", 5, buf, sizeof buf, &vlen, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "short", 5), SHMC_NOT_FOUND);
    void *p = NULL;
    assert_int_equal(shmc_get_alloc(c, "short", 5, &p, &vlen, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_delete(c, "short", 5), SHMC_NOT_FOUND);
    /* delete of an expired key never looked up before, too */
    assert_int_equal(shmc_delete(c, "short2", 6), SHMC_NOT_FOUND);

    assert_int_equal(shmc_get(c, "long", 4, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(shmc_get(c, "never", 5, buf, sizeof buf, &vlen, NULL), SHMC_OK);

    /* An expired key can be set again, and a ttl can be removed by overwrite. */
    assert_int_equal(shmc_set(c, "short", 5, "t", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_get(c, "short", 5, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(buf[0], 't');
    assert_int_equal(shmc_set(c, "long", 4, "m", 1, 0, 40), SHMC_OK);
    tu_sleep_ms(150);
    assert_int_equal(shmc_exists(c, "long", 4), SHMC_NOT_FOUND);
    assert_int_equal(shmc_exists(c, "short", 5), SHMC_OK);
}

static void test_overwrite_replaces(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    uint8_t buf[4096];
    size_t vlen;
    uint32_t fl;
    shmc_stats st0, st1;
    assert_int_equal(shmc_stats_get(c, &st0), SHMC_OK);
    /* Lengths grow and shrink across item-size boundaries. */
    static const size_t lens[] = {10, 3000, 1, 31, 32, 33, 4000, 0, 100};
    for (uint32_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        assert_int_equal(tu_set_value(c, "ow", 1, buf, lens[i], 0, i, 0), SHMC_OK);
        memset(buf, 0, sizeof buf);
        assert_int_equal(shmc_get(c, "ow1", 3, buf, sizeof buf, &vlen, &fl), SHMC_OK);
        assert_int_equal(vlen, lens[i]);
        assert_int_equal(tu_value_check(buf, vlen, fl, 1, NULL, 0), 0);
        if (vlen >= TU_VHDR) {
            uint32_t seq;
            memcpy(&seq, buf + 12, 4); /* header field: sequence */
            assert_int_equal(seq, i);
        }
    }
    assert_int_equal(shmc_stats_get(c, &st1), SHMC_OK);
    /* Overwrites do not multiply the key. */
    assert_int_equal(st1.items, st0.items + 1);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(c, &rep), SHMC_OK);
    assert_int_equal(rep.items, st0.items + 1);
    assert_int_equal(rep.duplicates, 0);
}

static void test_stats_counters(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    shmc_info in;
    assert_int_equal(shmc_info_get(c, &in), SHMC_OK);
    shmc_stats a, b;
    char buf[64];
    size_t vlen;

    assert_int_equal(shmc_stats_get(c, &a), SHMC_OK);
    assert_int_equal(a.items, 0);
    assert_int_equal(a.bytes_total, in.data_bytes);
    assert_int_equal(a.index_capacity, in.index_slots);
    assert_true(a.bytes_free <= a.bytes_total);

    for (int i = 0; i < 10; i++) {
        int kl = snprintf(buf, sizeof buf, "st%d", i);
        assert_int_equal(shmc_set(c, buf, (size_t)kl, "0123456789", 10, 0, 0), SHMC_OK);
    }
    assert_int_equal(shmc_get(c, "st1", 3, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(shmc_get(c, "st2", 3, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(shmc_get(c, "st3", 3, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(shmc_get(c, "zz1", 3, buf, sizeof buf, &vlen, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_get(c, "zz2", 3, buf, sizeof buf, &vlen, NULL), SHMC_NOT_FOUND);
    assert_int_equal(shmc_delete(c, "st9", 3), SHMC_OK);
    assert_int_equal(shmc_delete(c, "st8", 3), SHMC_OK);

    assert_int_equal(shmc_stats_get(c, &b), SHMC_OK);
    assert_int_equal(b.sets - a.sets, 10);
    assert_int_equal(b.hits - a.hits, 3);
    assert_int_equal(b.misses - a.misses, 2);
    assert_int_equal(b.gets - a.gets, 5);
    assert_int_equal(b.deletes - a.deletes, 2);
    assert_int_equal(b.items, 8);
    assert_int_equal(b.evictions, 0);
    assert_int_equal(b.enomem, 0);
    assert_true(b.bytes_used > 0);
    assert_true(b.bytes_used >= 8 * (10 + 3));
    assert_true(b.bytes_used + b.bytes_free <= b.bytes_total);
    assert_true(b.slots_live >= 1);
    /* A quiet cache: every storage segment is in exactly one state. */
    assert_int_equal(b.segments_free + b.segments_open + b.segments_sealed + b.segments_retired,
                     in.segments);
    assert_true(b.segments_open >= 1);

    /* A second handle sees the same counters (summed over slots). */
    shmc_t *c2;
    assert_int_equal(shmc_open(f->name, NULL, &c2), SHMC_OK);
    assert_int_equal(shmc_get(c2, "st1", 3, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    shmc_stats s2;
    assert_int_equal(shmc_stats_get(c2, &s2), SHMC_OK);
    assert_int_equal(s2.hits, b.hits + 1);
    assert_int_equal(s2.items, 8);
    shmc_close(c2);
    /* ...and counters survive the close of the handle that made them. */
    assert_int_equal(shmc_stats_get(c, &s2), SHMC_OK);
    assert_int_equal(s2.hits, b.hits + 1);
}

static void test_many_keys_no_eviction(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    enum { N = 20000 };
    uint8_t buf[512];
    char why[200];
    tu_rng r;
    tu_rng_seed(&r, 12345);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(tu_set_value(c, "many-", i, buf, tu_rng_range(&r, 0, 300), 0, i, 0),
                         SHMC_OK);
    for (uint32_t i = 0; i < N; i++) {
        shmc_status s = tu_get_check(c, "many-", i, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("key %u: %s %s", i, s == TU_INVALID ? "invalid" : shmc_strerror(s), why);
    }
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_int_equal(st.items, N);
    assert_int_equal(st.evictions, 0);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(c, &rep), SHMC_OK);
    assert_int_equal(rep.items, N);
    assert_string_equal(rep.first_error, "");
}

static void test_eviction_small_cache(void **state)
{
    fx *f = *state;
    assert_int_equal(open_with(f, TU_SMALL_SIZE, 0, 16u << 10), SHMC_OK);
    shmc_t *c = f->c;
    shmc_info in;
    assert_int_equal(shmc_info_get(c, &in), SHMC_OK);

    const uint64_t target = 4 * in.data_bytes;
    uint32_t cap = (uint32_t)(target / 500 + 16);
    uint16_t *lens = calloc(cap, sizeof *lens);
    uint8_t *buf = malloc(16u << 10);
    char why[200];
    tu_rng r;
    tu_rng_seed(&r, 777);
    uint64_t written = 0;
    uint32_t n = 0;
    while (written < target) {
        assert_true(n < cap);
        uint32_t len = tu_rng_range(&r, 500, 3000);
        if (tu_rng_below(&r, 50) == 0)
            len = tu_rng_range(&r, 8000, 16u << 10); /* a few big ones */
        lens[n] = (uint16_t)len;
        char key[TU_KEY_MAX];
        size_t kl = tu_key(key, "ev-", n);
        shmc_status s = tu_set_value(c, "ev-", n, buf, len, 0, n, 0);
        if (s != SHMC_OK)
            fail_msg("set #%u (len %u) after %llu bytes: %s", n, len,
                     (unsigned long long)written, shmc_strerror(s));
        written += tu_item_bytes(kl, len);
        n++;
    }

    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_true(st.evictions > 0);
    assert_int_equal(st.enomem, 0);
    assert_true(st.items > 0);
    assert_true(st.items <= st.index_capacity);
    assert_true(st.items <= in.data_bytes / tu_item_bytes(4, 500));
    assert_true(st.bytes_used <= st.bytes_total);

    /* The newest quarter of the storage's worth of keys must all be there. */
    uint64_t recent = 0;
    uint32_t checked = 0;
    for (uint32_t i = n; i-- > 0;) {
        char key[TU_KEY_MAX];
        recent += tu_item_bytes(tu_key(key, "ev-", i), lens[i]);
        if (recent > in.data_bytes / 4)
            break;
        shmc_status s = tu_get_check(c, "ev-", i, buf, 16u << 10, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("recent key ev-%u (of %u): %s %s", i, n,
                     s == TU_INVALID ? "invalid value" : shmc_strerror(s), why);
        checked++;
    }
    assert_true(checked > 100);
    /* Older keys are either gone or intact. */
    uint64_t present = 0;
    for (uint32_t i = 0; i < n; i++) {
        shmc_status s = tu_get_check(c, "ev-", i, buf, 16u << 10, why, sizeof why);
        if (s == SHMC_OK)
            present++;
        else if (s != SHMC_NOT_FOUND)
            fail_msg("key ev-%u: %s %s", i, s == TU_INVALID ? "invalid value" : shmc_strerror(s),
                     why);
    }
    assert_true(present >= checked);
    assert_true(present < n);

    shmc_verify_report rep;
    shmc_status v = shmc_verify(c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_int_equal(rep.items, st.items);
    assert_int_equal(rep.items, present);

    /* And the cache keeps accepting writes. */
    for (uint32_t i = 0; i < 200; i++)
        assert_int_equal(tu_set_value(c, "after-", i, buf, 1000, 0, i, 0), SHMC_OK);
    for (uint32_t i = 0; i < 200; i++) {
        shmc_status s = tu_get_check(c, "after-", i, buf, 16u << 10, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("key after-%u of 200 (1000 bytes each, just written): %s %s", i,
                     s == TU_INVALID ? "invalid value" : shmc_strerror(s), why);
    }
    free(lens);
    free(buf);
}

/* Reading items gives them a second chance at eviction; that must not cost
 * the items written just now.  Fill a small cache, read every key (all are
 * "recently read"), then write a small batch of new keys: all must be there. */
static void test_new_writes_survive_hot_cache(void **state)
{
    fx *f = *state;
    assert_int_equal(open_with(f, TU_SMALL_SIZE, 0, 16u << 10), SHMC_OK);
    shmc_t *c = f->c;
    shmc_info in;
    assert_int_equal(shmc_info_get(c, &in), SHMC_OK);
    uint8_t *buf = malloc(16u << 10);
    char why[200];
    uint64_t written = 0;
    uint32_t n = 0;
    while (written < 2 * in.data_bytes) {
        char key[TU_KEY_MAX];
        assert_int_equal(tu_set_value(c, "hot-", n, buf, 2000, 0, n, 0), SHMC_OK);
        written += tu_item_bytes(tu_key(key, "hot-", n), 2000);
        n++;
    }
    for (uint32_t i = 0; i < n; i++) {
        shmc_status s = tu_get_check(c, "hot-", i, buf, 16u << 10, why, sizeof why);
        assert_true(s == SHMC_OK || s == SHMC_NOT_FOUND);
    }
    /* New keys worth ~2% of the storage. */
    const uint32_t fresh = (uint32_t)(in.data_bytes / 50 / tu_item_bytes(10, 1000));
    for (uint32_t i = 0; i < fresh; i++)
        assert_int_equal(tu_set_value(c, "fresh-", i, buf, 1000, 0, i, 0), SHMC_OK);
    uint32_t missing = 0, first = UINT32_MAX;
    for (uint32_t i = 0; i < fresh; i++)
        if (tu_get_check(c, "fresh-", i, buf, 16u << 10, why, sizeof why) != SHMC_OK) {
            missing++;
            if (first == UINT32_MAX)
                first = i;
        }
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    free(buf);
    if (missing)
        fail_msg("%u of %u keys just written (1000 bytes each, %.1f%% of the storage) are "
                 "gone, first fresh-%u; evictions %llu",
                 missing, fresh, 100.0 * fresh * 1048 / (double)in.data_bytes, first,
                 (unsigned long long)st.evictions);
}

static void test_strerror(void **state)
{
    (void)state;
    const char *msgs[SHMC_STATUS_COUNT_];
    for (int i = 0; i < SHMC_STATUS_COUNT_; i++) {
        msgs[i] = shmc_strerror((shmc_status)i);
        assert_non_null(msgs[i]);
        assert_true(strlen(msgs[i]) > 0);
        for (int j = 0; j < i; j++)
            if (strcmp(msgs[i], msgs[j]) == 0)
                fail_msg("status %d and %d share the message \"%s\"", j, i, msgs[i]);
    }
    const char *u = shmc_strerror(SHMC_STATUS_COUNT_);
    assert_non_null(u);
    assert_true(strlen(u) > 0);
    assert_non_null(shmc_strerror((shmc_status)-1));
    assert_non_null(shmc_strerror((shmc_status)100000));
    /* An unknown status is not described as any known one. */
    for (int i = 0; i < SHMC_STATUS_COUNT_; i++)
        assert_string_not_equal(u, msgs[i]);
}

/* ---- threads of one process ---- */

typedef struct thr_arg {
    shmc_t *c;
    uint32_t id;
    int errors;
    char why[200];
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    uint8_t buf[2048];
    tu_rng r;
    tu_rng_seed(&r, 1000 + a->id);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "t%u-", a->id);
    for (uint32_t i = 0; i < 3000; i++) {
        uint32_t k = tu_rng_below(&r, 200);
        uint32_t op = tu_rng_below(&r, 10);
        shmc_status s;
        if (op < 5) {
            s = tu_set_value(a->c, prefix, k, buf, tu_rng_range(&r, 0, 2000), a->id, i, 0);
            if (s != SHMC_OK && a->errors++ == 0)
                snprintf(a->why, sizeof a->why, "set: %s", shmc_strerror(s));
        } else if (op < 9) {
            s = tu_get_check(a->c, prefix, k, buf, sizeof buf, a->why, sizeof a->why);
            if (s != SHMC_OK && s != SHMC_NOT_FOUND && a->errors++ == 0 && s != TU_INVALID)
                snprintf(a->why, sizeof a->why, "get: %s", shmc_strerror(s));
        } else {
            char key[TU_KEY_MAX];
            s = shmc_delete(a->c, key, tu_key(key, prefix, k));
            if (s != SHMC_OK && s != SHMC_NOT_FOUND && a->errors++ == 0)
                snprintf(a->why, sizeof a->why, "delete: %s", shmc_strerror(s));
        }
    }
    /* Own keys written last are all readable. */
    for (uint32_t k = 0; k < 50; k++) {
        if (tu_set_value(a->c, "fin-", a->id * 1000 + k, buf, 100 + k, a->id, k, 0) != SHMC_OK)
            a->errors++;
    }
    for (uint32_t k = 0; k < 50; k++) {
        if (tu_get_check(a->c, "fin-", a->id * 1000 + k, buf, sizeof buf, NULL, 0) != SHMC_OK)
            a->errors++;
    }
    shmc_thread_detach(a->c);
    return NULL;
}

static void test_threads_one_process(void **state)
{
    fx *f = *state;
    enum { T = 4 };
    pthread_t th[T];
    thr_arg args[T];
    for (uint32_t i = 0; i < T; i++) {
        args[i] = (thr_arg){.c = f->c, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    for (uint32_t i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (uint32_t i = 0; i < T; i++)
        if (args[i].errors)
            fail_msg("thread %u: %d errors, first: %s", i, args[i].errors, args[i].why);
    shmc_verify_report rep;
    shmc_status v = shmc_verify(f->c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
    /* Detached threads' slots are free again. */
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_true(st.slots_live <= 1);
}

static void test_thread_detach(void **state)
{
    fx *f = *state;
    char buf[8];
    size_t vlen;
    assert_int_equal(shmc_set(f->c, "d", 1, "1", 1, 0, 0), SHMC_OK);
    shmc_thread_detach(f->c);
    shmc_thread_detach(f->c); /* twice is harmless */
    assert_int_equal(shmc_get(f->c, "d", 1, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "d", 1, "2", 1, 0, 0), SHMC_OK);
    assert_int_equal(shmc_get(f->c, "d", 1, buf, sizeof buf, &vlen, NULL), SHMC_OK);
    assert_int_equal(buf[0], '2');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_close_destroy, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_one_process, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_info_defaults, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_info_custom, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_small_cache_max_value, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_set_get_delete_exists, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_binary_keys, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_value, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_every_short_length, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_flags_roundtrip, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_ebufsize_then_success, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_get_alloc, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_key_length_limits, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_value_length_limits, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_null_args, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_ttl, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_replaces, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_stats_counters, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys_no_eviction, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_small_cache, setup_name_only, teardown),
        cmocka_unit_test_setup_teardown(test_new_writes_survive_hot_cache, setup_name_only,
                                        teardown),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test_setup_teardown(test_threads_one_process, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_thread_detach, setup_default, teardown),
    };
    return cmocka_run_group_tests_name("shmcache public API", tests, NULL, NULL);
}
