/*
 * test_layout.c — the segment's shape is declared once (lib/layout.h) and
 * checked: the layout hash a segment records is the one generated from the
 * field tables, and changing any field of the header or of any shared struct
 * (reorder, resize, retype, rename) changes it.  Also the packed words of
 * lib/words.h round-trip at their widths.
 *
 * White-box: includes lib/layout.h (no library internals).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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

#include "layout.h"
#include "testutil.h"

static const shmc_field_desc real_fields[] = {SHMC_LAYOUT_DESCS};
static const uint64_t real_constants[] = SHMC_LAYOUT_CONSTANTS;
#define NFIELDS (sizeof real_fields / sizeof real_fields[0])
#define NCONST (sizeof real_constants / sizeof real_constants[0])

static uint64_t hash_of(const shmc_field_desc *d, size_t n)
{
    return shmc_layout_hash_of(d, n, real_constants, NCONST);
}

static uint64_t real_hash(void) { return hash_of(real_fields, NFIELDS); }

/* The hash a fresh segment records is the one generated from the tables. */
static void test_segment_records_table_hash(void **state)
{
    (void)state;
    char name[64], path[256];
    tu_name(name, sizeof name, "layout");
    shmc_t *c;
    assert_int_equal(shmc_open(name, &(shmc_options){.size = 4u << 20}, &c), SHMC_OK);
    tu_shm_path(path, sizeof path, name);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    shmc_hdr h;
    assert_int_equal(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    assert_int_equal(h.magic, SHMC_MAGIC);
    assert_int_equal(h.layout_version, SHMC_LAYOUT_VERSION);
    assert_int_equal(h.layout_hash, real_hash());
    shmc_close(c);
    tu_destroy(name);
}

/* Every struct of layout.h is in the table, with a row per field. */
static void test_every_struct_is_covered(void **state)
{
    (void)state;
    const char *structs[] = {"shmc_hdr", "shmc_hold", "shmc_counters", "shmc_slot",
                             "shmc_stripe", "shmc_centry", "shmc_head", "shmc_segmeta",
                             "shmc_item_n", "shmc_item_w", "shmc_item_x"};
    for (size_t s = 0; s < sizeof structs / sizeof structs[0]; s++) {
        size_t rows = 0;
        uint64_t size = 0, covered = 0;
        for (size_t i = 0; i < NFIELDS; i++) {
            if (strcmp(real_fields[i].strct, structs[s]) != 0)
                continue;
            if (!real_fields[i].name[0])
                size = real_fields[i].size;
            else
                covered += real_fields[i].size, rows++;
        }
        assert_true(rows > 0);
        /* The fields account for the struct, but for alignment padding. */
        assert_true(covered <= size);
        assert_true(size - covered < 64 * rows);
    }
}

/* A reorder of two same-size fields, a resize, a retype and a rename of any
 * row of any struct each change the hash. */
static void test_any_field_change_changes_hash(void **state)
{
    (void)state;
    uint64_t h0 = real_hash();
    shmc_field_desc *d = malloc(sizeof real_fields);
    assert_non_null(d);
    unsigned swaps = 0;
    for (size_t i = 0; i < NFIELDS; i++) {
        memcpy(d, real_fields, sizeof real_fields);
        d[i].size++;
        assert_true(hash_of(d, NFIELDS) != h0);
        memcpy(d, real_fields, sizeof real_fields);
        d[i].offset += 8;
        assert_true(hash_of(d, NFIELDS) != h0);
        memcpy(d, real_fields, sizeof real_fields);
        d[i].name = "renamed";
        assert_true(hash_of(d, NFIELDS) != h0);
        memcpy(d, real_fields, sizeof real_fields);
        d[i].type = "uint64_t [3]";
        assert_true(hash_of(d, NFIELDS) != h0 || !strcmp(real_fields[i].type, d[i].type));
        /* reorder: swap with the next same-size field of the same struct */
        for (size_t j = i + 1; j < NFIELDS && !strcmp(real_fields[j].strct, real_fields[i].strct);
             j++) {
            if (!real_fields[i].name[0] || real_fields[j].size != real_fields[i].size)
                continue;
            memcpy(d, real_fields, sizeof real_fields);
            d[i].offset = real_fields[j].offset;
            d[j].offset = real_fields[i].offset;
            assert_true(hash_of(d, NFIELDS) != h0);
            swaps++;
            break;
        }
    }
    assert_true(swaps > 20); /* the check above did run on real pairs */
    free(d);
}

/* The same, from real structs: a hand-perturbed copy of a field table
 * compiled into a struct and hashed as the library would. */
#define ALT_DESC(T, type, name, dim) \
    {"shmc_segmeta", #name, #type #dim, offsetof(T, name), sizeof(((T *)0)->name)},

#define REORDERED_FIELDS(F) /* epoch and seq swapped */ \
    F(_Atomic uint64_t, wpos, ) F(_Atomic uint64_t, state, ) F(_Atomic uint64_t, cls, ) \
    F(_Atomic uint64_t, seq, ) F(_Atomic uint64_t, epoch, ) F(_Atomic uint64_t, max_expire, ) \
    F(_Atomic uint64_t, live, ) F(_Atomic uint64_t, life, )
#define RESIZED_FIELDS(F) /* seq 32 bits */ \
    F(_Atomic uint64_t, wpos, ) F(_Atomic uint64_t, state, ) F(_Atomic uint64_t, cls, ) \
    F(_Atomic uint64_t, epoch, ) F(_Atomic uint32_t, seq, ) F(_Atomic uint64_t, max_expire, ) \
    F(_Atomic uint64_t, live, ) F(_Atomic uint64_t, life, )
#define RENAMED_FIELDS(F) /* seq called age */ \
    F(_Atomic uint64_t, wpos, ) F(_Atomic uint64_t, state, ) F(_Atomic uint64_t, cls, ) \
    F(_Atomic uint64_t, epoch, ) F(_Atomic uint64_t, age, ) F(_Atomic uint64_t, max_expire, ) \
    F(_Atomic uint64_t, live, ) F(_Atomic uint64_t, life, )

typedef struct { REORDERED_FIELDS(SHMC_DECLARE_FIELD_) } reordered;
typedef struct { RESIZED_FIELDS(SHMC_DECLARE_FIELD_) } resized;
typedef struct { RENAMED_FIELDS(SHMC_DECLARE_FIELD_) } renamed;
#define D_REORDERED(type, name, dim) ALT_DESC(reordered, type, name, dim)
#define D_RESIZED(type, name, dim) ALT_DESC(resized, type, name, dim)
#define D_RENAMED(type, name, dim) ALT_DESC(renamed, type, name, dim)
#define D_REAL(type, name, dim) ALT_DESC(shmc_segmeta, type, name, dim)

/* The table with the segmeta rows replaced by `alt` (same row count). */
static uint64_t hash_with_segmeta(const shmc_field_desc *alt, size_t nalt)
{
    shmc_field_desc d[NFIELDS];
    memcpy(d, real_fields, sizeof d);
    size_t k = 0;
    for (size_t i = 0; i < NFIELDS; i++)
        if (!strcmp(d[i].strct, "shmc_segmeta") && d[i].name[0]) {
            assert_true(k < nalt);
            d[i] = alt[k++];
        }
    assert_int_equal(k, nalt);
    return hash_of(d, NFIELDS);
}

static void test_perturbed_struct_changes_hash(void **state)
{
    (void)state;
    const shmc_field_desc same[] = {SHMC_SEGMETA_FIELDS(D_REAL)};
    const shmc_field_desc ro[] = {REORDERED_FIELDS(D_REORDERED)};
    const shmc_field_desc rs[] = {RESIZED_FIELDS(D_RESIZED)};
    const shmc_field_desc rn[] = {RENAMED_FIELDS(D_RENAMED)};
    uint64_t h0 = real_hash();
    assert_int_equal(hash_with_segmeta(same, 8), h0); /* the harness itself */
    assert_true(hash_with_segmeta(ro, 8) != h0);
    assert_true(hash_with_segmeta(rs, 8) != h0);
    assert_true(hash_with_segmeta(rn, 8) != h0);
    assert_true(hash_with_segmeta(ro, 8) != hash_with_segmeta(rn, 8));
}

/* Packed words decode what they encode, at the widths they declare. */
static void test_words_round_trip(void **state)
{
    (void)state;
    uint64_t owner = owner_make(0x1234567890ull, 65534);
    assert_int_equal(slot1_of(owner), 65535);
    assert_int_equal(owner_gen(owner), 0x34567890ull);
    uint64_t sw = sw_make(SEG_SEALING, owner);
    assert_int_equal(sw_state(sw), SEG_SEALING);
    assert_int_equal(sw_owner(sw), owner);
    uint64_t lw = live_one(12345) + live_one(7);
    assert_int_equal(live_items(lw), 2);
    assert_int_equal(live_bytes(lw), 12352);
    uint64_t iw = iw_make(0xbeef, 1ull << 45);
    assert_int_equal(iw_tag(iw), 0xbeef);
    assert_int_equal(iw_off(iw), 1ull << 45);
    assert_true(iw_off(0) >= (1ull << 46)); /* empty: out of any data area */
    uint64_t st = st_make(TOK_MASK, 65535, 7);
    assert_int_equal(slot1_of(st), 65535);
    assert_int_equal(st_k(st), 7);
    assert_int_equal(st_tok(st), TOK_MASK);
    assert_false(st_busy(st));
    assert_true(st_busy(st | ST_BUSY));
    assert_int_equal(st_tok(st | ST_BUSY), TOK_MASK);
    uint64_t w = want_make((1ull << 44) + 5, 3, 6);
    assert_int_equal(want_exp(w), (1ull << 44) + 5);
    assert_int_equal(slot1_of(w), 3);
    assert_int_equal(st_k(w), 6);
    uint64_t cas = cas_make(99, 17);
    assert_int_equal(cas >> SLOT1_BITS, 99);
    assert_int_equal(slot1_of(cas), 17);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_records_table_hash),
        cmocka_unit_test(test_every_struct_is_covered),
        cmocka_unit_test(test_any_field_change_changes_hash),
        cmocka_unit_test(test_perturbed_struct_changes_hash),
        cmocka_unit_test(test_words_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
