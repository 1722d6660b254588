/*
 * test_corrupt_body.c — a live segment whose body (index words, item
 * headers, segment table) is overwritten with garbage, as a stray write from
 * a buggy process might do.  Every offset the library reads from shared
 * memory is bounds-checked, so operations must keep returning status codes
 * (never crash or hang) and shmc_verify must report the damage.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmcache.h"
#include "testutil.h"

/* Header fields (see lib/layout.h). */
#define OFF_OFF_SEGS 120
#define OFF_OFF_INDEX 128
#define OFF_OFF_DATA 136

typedef struct fx {
    char name[64];
    shmc_t *c;
    uint8_t *raw;     /* a second, raw mapping of the same segment */
    size_t size;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    tu_name(f->name, sizeof f->name, "body");
    shmc_options o = {.size = 8u << 20, .max_value = 16u << 10};
    if (shmc_open(f->name, &o, &f->c) != SHMC_OK)
        return -1;
    uint8_t buf[4096];
    for (uint32_t i = 0; i < 2000; i++)
        if (tu_set_value(f->c, "b-", i, buf, 50 + i % 2000, 0, i, 0) != SHMC_OK)
            return -1;
    char path[256];
    tu_shm_path(path, sizeof path, f->name);
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return -1;
    f->size = (size_t)st.st_size;
    f->raw = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (f->raw == MAP_FAILED)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    munmap(f->raw, f->size);
    shmc_close(f->c);
    tu_destroy(f->name);
    free(f);
    return 0;
}

static uint64_t hdr64(fx *f, size_t off)
{
    uint64_t v;
    memcpy(&v, f->raw + off, 8);
    return v;
}

/* Every operation on every key returns a status.  When only index words were
 * damaged, a value that comes back must still be the right one (a bad word is
 * skipped, never followed).  Bytes written over a value's contents cannot be
 * told from a value (items carry no checksum): then the promise is only that
 * nothing is read out of bounds (the suite also runs under ASan). */
static void exercise(fx *f, bool values_intact)
{
    uint8_t buf[20000];
    char why[200];
    for (uint32_t i = 0; i < 2000; i++) {
        shmc_status s;
        if (values_intact) {
            s = tu_get_check(f->c, "b-", i, buf, sizeof buf, why, sizeof why);
        } else {
            char k[TU_KEY_MAX];
            size_t vlen = 0;
            s = shmc_get(f->c, k, tu_key(k, "b-", i), buf, sizeof buf, &vlen, NULL);
            if (s == SHMC_OK)
                assert_true(vlen <= (16u << 10));
        }
        if (s != SHMC_OK && s != SHMC_NOT_FOUND)
            fail_msg("get b-%u after corruption: %s %s", i,
                     s == TU_INVALID ? "invalid value" : shmc_strerror(s), why);
    }
    /* Writes go on (they may evict), and what is written reads back. */
    for (uint32_t i = 0; i < 3000; i++) {
        shmc_status s = tu_set_value(f->c, "n-", i, buf, 3000, 1, i, 0);
        assert_int_equal(s, SHMC_OK);
    }
    assert_int_equal(tu_get_check(f->c, "n-", 2999, buf, sizeof buf, why, sizeof why), SHMC_OK);
    for (uint32_t i = 0; i < 100; i++) {
        char k[TU_KEY_MAX];
        shmc_status s = shmc_delete(f->c, k, tu_key(k, "b-", i));
        assert_true(s == SHMC_OK || s == SHMC_NOT_FOUND);
    }
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
}

static void test_garbage_index_words(void **state)
{
    fx *f = *state;
    uint64_t off_index = hdr64(f, OFF_OFF_INDEX), off_data = hdr64(f, OFF_OFF_DATA);
    assert_true(off_index < off_data && off_data <= f->size);
    tu_rng r;
    tu_rng_seed(&r, 99);
    /* Random words, words pointing past the end, into the middle of items,
     * and at offset 0 of every tag. */
    uint64_t nwords = (off_data - off_index) / 8;
    for (uint32_t i = 0; i < 3000; i++) {
        uint64_t w;
        switch (i % 4) {
        case 0: w = ((uint64_t)tu_rng_below(&r, 1u << 31) << 33) ^ tu_rng_below(&r, ~0u); break;
        case 1: w = ((uint64_t)tu_rng_below(&r, 65536) << 48) | ((1ull << 48) - 1); break;
        case 2: w = ((uint64_t)tu_rng_below(&r, 65536) << 48) | (tu_rng_below(&r, 1u << 20) + 1); break;
        default: w = (uint64_t)tu_rng_below(&r, 65536) << 48; break;
        }
        memcpy(f->raw + off_index + 8 * (uint64_t)tu_rng_below(&r, (uint32_t)nwords), &w, 8);
    }
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_ECORRUPT);
    assert_true(rep.bad_offsets + rep.bad_items + rep.misplaced > 0);
    assert_true(rep.first_error[0] != '\0');
    exercise(f, true);
}

static void test_garbage_items(void **state)
{
    fx *f = *state;
    uint64_t off_data = hdr64(f, OFF_OFF_DATA);
    tu_rng r;
    tu_rng_seed(&r, 7);
    /* Clobber 200 random 64-byte stretches of item storage that holds data. */
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    uint64_t span = in.segment_bytes * 3; /* the first segments hold the items */
    for (uint32_t i = 0; i < 200; i++) {
        uint8_t junk[64];
        for (size_t j = 0; j < sizeof junk; j++)
            junk[j] = (uint8_t)tu_rng_below(&r, 256);
        uint64_t at = off_data + tu_rng_below(&r, (uint32_t)(span - 64));
        memcpy(f->raw + at, junk, sizeof junk);
    }
    shmc_verify_report rep;
    shmc_status v = shmc_verify(f->c, &rep);
    assert_true(v == SHMC_ECORRUPT || v == SHMC_OK);
    exercise(f, false);
}

static void test_garbage_segment_table(void **state)
{
    fx *f = *state;
    uint64_t off_segs = hdr64(f, OFF_OFF_SEGS), off_index = hdr64(f, OFF_OFF_INDEX);
    tu_rng r;
    tu_rng_seed(&r, 3);
    for (uint64_t p = off_segs; p + 8 <= off_index; p += 8) {
        if (tu_rng_below(&r, 4))
            continue;
        uint64_t w = ((uint64_t)tu_rng_below(&r, ~0u) << 32) | tu_rng_below(&r, ~0u);
        memcpy(f->raw + p, &w, 8);
    }
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_ECORRUPT);
    /* Reads never need the segment table; they stay safe. */
    uint8_t buf[20000];
    char why[200];
    for (uint32_t i = 0; i < 2000; i++) {
        shmc_status s = tu_get_check(f->c, "b-", i, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK && s != SHMC_NOT_FOUND)
            fail_msg("get b-%u: %s %s", i, s == TU_INVALID ? "invalid" : shmc_strerror(s), why);
    }
    /* Writes return a status (they may find no usable segment), never crash
     * or hang; whatever they report stored reads back intact. */
    for (uint32_t i = 0; i < 3000; i++) {
        shmc_status s = tu_set_value(f->c, "w-", i, buf, 2000, 2, i, 0);
        assert_true(s == SHMC_OK || s == SHMC_ENOMEM);
        if (s == SHMC_OK) {
            shmc_status g = tu_get_check(f->c, "w-", i, buf, sizeof buf, why, sizeof why);
            if (g != SHMC_OK)
                fail_msg("w-%u stored, then: %s %s", i, g == TU_INVALID ? "invalid" : shmc_strerror(g), why);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_index_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_segment_table, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
