/*
 * test_corrupt_body.c — a live segment whose body (index words, item
 * headers, segment table) is overwritten with garbage, as a stray write from
 * a buggy process might do.  Every offset the library reads from shared
 * memory is bounds-checked, so operations must keep returning status codes
 * (never crash or hang) and shmc_verify must report the damage.  Also lock
 * words that name a holder which is gone, or one that never lets go.
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
#include "layout.h"

/* Where things are: lib/layout.h, the one source of the segment's shape
 * (white-box: damage is aimed at exact fields). */
#define OFF_OFF_STRIPES offsetof(shmc_hdr, off_stripes)
#define OFF_COORD_MTX offsetof(shmc_hdr, coord_mtx)
#define OFF_OFF_COORD offsetof(shmc_hdr, off_coord)
#define OFF_OFF_SEGS offsetof(shmc_hdr, off_segs)
#define OFF_OFF_INDEX offsetof(shmc_hdr, off_index)
#define OFF_OFF_DATA offsetof(shmc_hdr, off_data)
#define OFF_NSLOTS offsetof(shmc_hdr, nslots)
#define OFF_OFF_SLOTS offsetof(shmc_hdr, off_slots)
#define SLOT_GEN offsetof(shmc_slot, gen)
#define SLOT_PID offsetof(shmc_slot, pid)
#define SLOT_TID offsetof(shmc_slot, tid)
#define SLOT_EPOCH offsetof(shmc_slot, epoch)

typedef struct fx {
    char name[64];
    shmc_t *c;
    uint8_t *raw;     /* a second, raw mapping of the same segment */
    size_t size;
} fx;

/* plain: the items have no flags and no TTL, the headers a get parses on
 * its fast path (index.h: item_at_key); else they carry flags. */
static int setup_items(void **state, bool plain)
{
    fx *f = calloc(1, sizeof *f);
    tu_name(f->name, sizeof f->name, "body");
    shmc_options o = {.size = 8u << 20, .max_value = 16u << 10};
    if (shmc_open(f->name, &o, &f->c) != SHMC_OK)
        return -1;
    uint8_t buf[4096];
    memset(buf, 'p', sizeof buf);
    for (uint32_t i = 0; i < 2000; i++) {
        char k[TU_KEY_MAX];
        shmc_status st = plain ? shmc_set(f->c, k, tu_key(k, "b-", i), buf, 50 + i % 2000, 0, 0)
                               : tu_set_value(f->c, "b-", i, buf, 50 + i % 2000, 0, i, 0);
        if (st != SHMC_OK)
            return -1;
    }
    f->raw = tu_map_segment(f->name, &f->size);
    if (!f->raw)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_items(state, false);
}

static int setup_plain(void **state)
{
    return setup_items(state, true);
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

static uint64_t hdr64(fx *f, size_t off) { return tu_load64(f->raw, off); }

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
        case 2: w = ((uint64_t)tu_rng_below(&r, 65536) << IW_LOC_BITS) | (tu_rng_below(&r, 1u << 20) + 1); break;
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

/* A global epoch with bit 63 set (the ejected mark of a slot's word): a
 * read section that copied it would start out ejected, and every read
 * retried for ever (fuzz_attach found it).  Reads must still return. */
static void test_epoch_with_eject_bit(void **state)
{
    fx *f = *state;
    uint64_t e = hdr64(f, offsetof(shmc_hdr, epoch)) | (1ull << 63);
    memcpy(f->raw + offsetof(shmc_hdr, epoch), &e, 8);
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

/* Damage aimed at the fields of item headers (layout.h: shmc_item_n, the
 * narrow prefix every item of these fixtures has; with setup, flags follow
 * it, with setup_plain nothing does, which is the header a get parses on its
 * fast path): a wrong mark, the wide bit, option bits that lengthen the
 * header, lengths of 0 or over the limits, a counter kind on a non-counter,
 * a value length that runs into the next item or past the end of the
 * segment.  The items are found by walking the first storage segment with
 * the format's own rules.  Operations go on returning statuses (and read
 * nothing out of bounds: the suite runs under ASan), and shmc_verify
 * reports the malformed items. */
/* The start of the item after the one at pos (the format's own rules). */
static uint64_t next_item(const uint8_t *base, uint64_t pos)
{
    shmc_item_n h;
    memcpy(&h, base + pos, sizeof h);
    uint64_t hlen = sizeof h + (h.fmt & ITEM_FMT_FLAGS ? 4 : 0) + (h.fmt & ITEM_FMT_EXPIRE ? 8 : 0);
    return pos + ((hlen + h.klen + h.vlen + 7) & ~7ull);
}

static bool is_item(const uint8_t *base, uint64_t pos, uint64_t seg)
{
    return pos + sizeof(shmc_item_n) <= seg &&
           (base[pos + offsetof(shmc_item_n, fmt)] & ITEM_FMT_MARK_MASK) == ITEM_FMT_MARK;
}

static void test_damaged_item_headers(void **state)
{
    fx *f = *state;
    uint64_t off_data = hdr64(f, OFF_OFF_DATA);
    uint64_t seg = hdr64(f, offsetof(shmc_hdr, seg_size));
    uint8_t *base = f->raw + off_data;
    /* The last item of the first segment: a value length (under max_value)
     * that runs past the segment's end.  Refused, not read past it. */
    uint64_t last = 0, end = 0;
    assert_true(is_item(base, 0, seg));
    for (uint64_t p = 0; is_item(base, p, seg); p = next_item(base, p))
        last = p;
    end = next_item(base, last);
    shmc_item_n lh;
    memcpy(&lh, base + last, sizeof lh);
    char lkey[256];
    memcpy(lkey, base + last + sizeof lh + (lh.fmt & ITEM_FMT_FLAGS ? 4 : 0), lh.klen);
    uint8_t got[20000];
    size_t glen;
    assert_int_equal(shmc_get(f->c, lkey, lh.klen, got, sizeof got, &glen, NULL), SHMC_OK);
    uint16_t v16 = (uint16_t)(lh.vlen + (seg - end) + 64);
    memcpy(base + last + offsetof(shmc_item_n, vlen), &v16, 2);
    assert_int_equal(shmc_get(f->c, lkey, lh.klen, got, sizeof got, &glen, NULL), SHMC_NOT_FOUND);
    /* Then every item before it. */
    uint64_t pos = 0;
    uint32_t damaged = 0;
    while (pos < last && damaged < 400) {
        uint8_t *p = base + pos;
        shmc_item_n h;
        memcpy(&h, p, sizeof h);
        assert_int_equal(h.fmt & ITEM_FMT_WIDE, 0);
        uint64_t next = next_item(base, pos);
        switch (damaged++ % 8) {
        case 0: p[offsetof(shmc_item_n, fmt)] = 0; break;
        case 1: p[offsetof(shmc_item_n, fmt)] ^= ITEM_FMT_WIDE; break;
        case 2: p[offsetof(shmc_item_n, fmt)] |= ITEM_FMT_FLAGS | ITEM_FMT_EXPIRE; break;
        case 3: p[offsetof(shmc_item_n, klen)] = 0; break;
        case 4: p[offsetof(shmc_item_n, klen)] = 255; break; /* > max_key 250 */
        case 5:
            v16 = 65535; /* > max_value 16 KiB */
            memcpy(p + offsetof(shmc_item_n, vlen), &v16, 2);
            break;
        case 6: p[offsetof(shmc_item_n, fmt)] |= ITEM_KIND_CELL_DEC; break;
        default:
            v16 = (uint16_t)(h.vlen + 64);
            memcpy(p + offsetof(shmc_item_n, vlen), &v16, 2);
            break;
        }
        pos = next;
    }
    assert_true(damaged >= 100);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_ECORRUPT);
    assert_true(rep.bad_items > 0);
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

/* Damaged write positions in the segment table (a stray write).  Near
 * 2^64, an append computed as pos + size <= segment size wraps around and
 * puts the item before its segment (in the previous one, or in the index);
 * not a multiple of 8, it misaligns the item (UBSan, and no index word can
 * name it).  Either way the item cannot be found.  Appends must check pos
 * in full: what a set reports stored reads back, the index stays sound. */
static void damaged_write_positions(fx *f, uint64_t (*wpos)(uint32_t seg), const char *prefix)
{
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    uint64_t off_segs = hdr64(f, OFF_OFF_SEGS);
    for (uint32_t s = 0; s < in.segments; s++) {
        uint64_t w = wpos(s); /* wpos: a segment's first word */
        memcpy(f->raw + off_segs + sizeof(shmc_segmeta) * s + offsetof(shmc_segmeta, wpos), &w, 8);
    }
    uint8_t buf[4096];
    char why[200];
    for (uint32_t i = 0; i < 500; i++) {
        shmc_status s = tu_set_value(f->c, prefix, i, buf, 100 + i % 300, 4, i, 0);
        assert_int_equal(s, SHMC_OK);
        s = tu_get_check(f->c, prefix, i, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("%s%u stored, then: %s %s", prefix, i,
                     s == TU_INVALID ? "invalid" : shmc_strerror(s), why);
    }
    shmc_verify_report rep;
    shmc_status v = shmc_verify(f->c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
}

static uint64_t wpos_wrapping(uint32_t s) { return UINT64_MAX - 7 - 8 * (s % 4); }
static uint64_t wpos_misaligned(uint32_t s) { return 8 * (s % 5) + 1 + s % 7; }

static void test_damaged_write_positions(void **state)
{
    damaged_write_positions(*state, wpos_wrapping, "w-");
    damaged_write_positions(*state, wpos_misaligned, "m-");
}

/* The lock table entry of a lock name (lib/layout.h: shmc_centry). */
static uint8_t *lock_entry(fx *f, const char *name)
{
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    uint8_t *table = f->raw + hdr64(f, OFF_OFF_COORD);
    uint64_t kind_len = ((uint64_t)CE_KIND_LOCK << 32) | strlen(name);
    for (uint32_t i = 0; i < in.locks; i++) {
        uint8_t *e = table + sizeof(shmc_centry) * i;
        uint64_t kl;
        memcpy(&kl, e + offsetof(shmc_centry, kind_len), 8);
        if (kl == kind_len && memcmp(e + offsetof(shmc_centry, name), name, strlen(name)) == 0)
            return e;
    }
    fail_msg("no table entry for lock %s", name);
    return NULL;
}

/* A lock's "next turn" word (want) naming slot 0 (slot + 1 == 0: nobody)
 * with an expiry far ahead: an acquirer of the free lock must not take it
 * for another waiter's turn and sleep on a hold record before the slot
 * table (the fuzzer's SEGV); it takes the lock. */
static void test_garbage_want_word(void **state)
{
    fx *f = *state;
    uint64_t tok;
    assert_int_equal(shmc_lock_acquire(f->c, "L", 1, 0, 0, &tok), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, "L", 1, tok), SHMC_OK);
    uint8_t *e = lock_entry(f, "L");
    uint64_t want = want_make(1ull << 44, 0, 0); /* slot + 1 = 0: nobody */
    memcpy(e + offsetof(shmc_centry, want), &want, 8);
    assert_int_equal(shmc_lock_acquire(f->c, "L", 1, 200, 0, &tok), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, "L", 1, tok), SHMC_OK);
    /* and one naming a slot past the table */
    want = want_make(1ull << 44, 0xffff, 0);
    memcpy(e + offsetof(shmc_centry, want), &want, 8);
    assert_int_equal(shmc_lock_acquire(f->c, "L", 1, 200, 0, &tok), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, "L", 1, tok), SHMC_OK);
}

/* A lock table entry left "being re-claimed" (busy bit, no holder), as by
 * a claimer killed in the middle of a claim, or damage: acquirers of its
 * name must not spin on it for ever (the fuzzer's hang); they repair it
 * under the claim mutex and take the lock. */
static void test_entry_left_busy(void **state)
{
    fx *f = *state;
    uint64_t tok;
    assert_int_equal(shmc_lock_acquire(f->c, "B", 1, 0, 0, &tok), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, "B", 1, tok), SHMC_OK);
    uint8_t *e = lock_entry(f, "B");
    uint64_t st;
    memcpy(&st, e + offsetof(shmc_centry, state), 8);
    st |= ST_BUSY; /* busy with no holder: being re-claimed */
    memcpy(e + offsetof(shmc_centry, state), &st, 8);
    uint64_t t0 = tu_now_ms();
    assert_int_equal(shmc_lock_try(f->c, "B", 1, 0, &tok), SHMC_OK);
    assert_true(tok != 0);
    assert_int_equal(shmc_lock_release(f->c, "B", 1, tok), SHMC_OK);
    assert_true(tu_now_ms() - t0 < 5000);
}

/* Sets the futex word (glibc: the first int of pthread_mutex_t) of every
 * stripe lock and of the lock table's claim mutex. */
static void set_lock_words(fx *f, uint32_t word)
{
    uint64_t off_stripes = hdr64(f, OFF_OFF_STRIPES);
    for (uint32_t i = 0; i < SHMC_STRIPES; i++)
        memcpy(f->raw + off_stripes + sizeof(shmc_stripe) * i + offsetof(shmc_stripe, mtx), &word, 4);
    memcpy(f->raw + OFF_COORD_MTX, &word, 4);
}

/* Lock words that name a holder which does not exist, without the kernel's
 * owner-died mark (damage, or a segment copied with its locks held): the
 * kernel never leaves such a word for a holder that died, so no waiter would
 * ever be woken.  Writers must not wait for ever: they find the holder gone
 * and recover the lock as from a dead holder, at once. */
static void test_orphaned_lock_words(void **state)
{
    fx *f = *state;
    set_lock_words(f, 0x3f000000u); /* a TID above any pid_max */
    uint64_t t0 = tu_now_ms();
    uint8_t buf[4096];
    char why[200];
    for (uint32_t i = 0; i < 300; i++)
        assert_int_equal(tu_set_value(f->c, "o-", i, buf, 100, 3, i, 0), SHMC_OK);
    uint64_t tok;
    assert_int_equal(shmc_lock_acquire(f->c, "a-new-name", 10, 1000, 0, &tok), SHMC_OK);
    assert_int_equal(shmc_lock_release(f->c, "a-new-name", 10, tok), SHMC_OK);
    uint64_t took = tu_now_ms() - t0;
    if (took > 10000)
        fail_msg("writes over orphaned lock words took %llu ms", (unsigned long long)took);
    for (uint32_t i = 0; i < 300; i++)
        assert_int_equal(tu_get_check(f->c, "o-", i, buf, sizeof buf, why, sizeof why), SHMC_OK);
    shmc_verify_report rep;
    shmc_status v = shmc_verify(f->c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s", rep.first_error);
}

/* A participant slot whose mutex names a thread that is gone, without the
 * owner-died mark, and that was inside a read section (a segment restored
 * with its slots held, or damage).  Its old reader epoch would hold back all
 * reclamation for ever, and it would look alive.  Writes that need memory
 * back find the owner gone once the reader looks stalled, reap the slot and
 * go on; shmc_procs reports it not alive. */
static uint32_t plant_vanished_reader(fx *f)
{
    uint32_t nslots;
    memcpy(&nslots, f->raw + OFF_NSLOTS, 4);
    uint64_t off_slots = hdr64(f, OFF_OFF_SLOTS);
    uint64_t stride = sizeof(shmc_slot);
    uint32_t j = nslots - 1; /* the test takes slots from the start */
    uint8_t *s = f->raw + off_slots + stride * j;
    uint32_t word;
    memcpy(&word, s, 4);
    assert_int_equal(word, 0); /* free */
    uint64_t gen = 7, epoch = 1;
    uint32_t tid = 0x3f000000u; /* above any pid_max */
    memcpy(s + SLOT_GEN, &gen, 8);
    memcpy(s + SLOT_PID, &tid, 4);
    memcpy(s + SLOT_TID, &tid, 4);
    memcpy(s + SLOT_EPOCH, &epoch, 8);
    memcpy(s, &tid, 4); /* the futex word last: now "held" */
    return j;
}

static int slot_alive(fx *f, uint32_t j)
{
    shmc_proc_info p[64];
    size_t n;
    assert_int_equal(shmc_procs(f->c, 1, p, 64, &n), SHMC_OK);
    for (size_t i = 0; i < n && i < 64; i++)
        if (p[i].slot == j)
            return (int)p[i].alive;
    return -1;
}

static void test_vanished_reader(void **state)
{
    fx *f = *state;
    plant_vanished_reader(f);
    /* 8 MiB cache, ~6 times its size written over 300 keys */
    uint8_t buf[16u << 10];
    char why[200];
    for (uint32_t i = 0; i < 3000; i++) {
        shmc_status st = tu_set_value(f->c, "v-", i % 300, buf, 16000, 0, i, 0);
        if (st != SHMC_OK)
            fail_msg("set %u behind a vanished reader: %s", i, shmc_strerror(st));
    }
    for (uint32_t i = 2700; i < 3000; i++)
        assert_int_equal(tu_get_check(f->c, "v-", i % 300, buf, sizeof buf, why, sizeof why),
                         SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_int_equal(st.enomem, 0);

    uint32_t j = plant_vanished_reader(f);
    assert_int_equal(slot_alive(f, j), 0);
    /* and it stays free for the next participant */
    assert_int_equal(slot_alive(f, j), 0);
    shmc_verify_report rep;
    if (shmc_verify(f->c, &rep) != SHMC_OK)
        fail_msg("verify: %s", rep.first_error);
}

/* Lock words that name a live thread that never lets go (here init: PID 1;
 * in real life a writer stopped by SIGSTOP or a debugger inside its few
 * instructions under the lock): a write waits a bounded time (10 s) and
 * says SHMC_ETIMEDOUT, an increment too (not three times as long); reads
 * never wait. */
static void test_lock_held_for_ever(void **state)
{
    fx *f = *state;
    set_lock_words(f, 1u);
    uint8_t buf[4096];
    char why[200];
    uint64_t t0 = tu_now_ms();
    assert_int_equal(tu_set_value(f->c, "b-", 5, buf, 100, 1, 1, 0), SHMC_ETIMEDOUT);
    uint64_t t1 = tu_now_ms();
    uint64_t r;
    assert_int_equal(shmc_incr(f->c, "ctr", 3, 1, 0, 0, SHMC_INCR_CREATE, &r), SHMC_ETIMEDOUT);
    uint64_t t2 = tu_now_ms();
    if (t1 - t0 < 9000 || t1 - t0 > 20000 || t2 - t1 > 20000)
        fail_msg("waited %llu ms (set) and %llu ms (incr), want about 10 s each",
                 (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1));
    for (uint32_t i = 0; i < 2000; i += 50) {
        shmc_status s = tu_get_check(f->c, "b-", i, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("get b-%u while writes wait: %s %s", i, shmc_strerror(s), why);
    }
    /* Once the holder lets go, writes go on. */
    set_lock_words(f, 0);
    assert_int_equal(tu_set_value(f->c, "b-", 5, buf, 100, 1, 1, 0), SHMC_OK);
    assert_int_equal(shmc_incr(f->c, "ctr", 3, 1, 0, 0, SHMC_INCR_CREATE, &r), SHMC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_index_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_with_eject_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_item_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_item_headers, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_segment_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_write_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_want_word, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_left_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphaned_lock_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_held_for_ever, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vanished_reader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
