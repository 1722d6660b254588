/*
 * test_compact.c — compaction: when storage runs out, a cache whose live data
 * fits keeps every live item (mostly-dead segments are compacted, their live
 * items moved forward), and drops items only when live data exceeds the
 * storage.  Overwrite churn in one process and in forked processes, the
 * item's CAS token, flags, expiry and kind kept through moves, the
 * statistics (bytes live/dead, items compacted/evicted), and processes
 * SIGKILLed while they write (and compact): nothing acknowledged is lost,
 * nothing leaks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SHMC_TESTING
#define SHMC_TESTING 1 /* declares the test hooks in cache.h */
#endif
#include "cache.h"
#include "index.h"
#include "item.h"
#include "slots.h"
#include "shmcache.h"
#include "testutil.h"

#define VLEN 100u
#define PREFIX "compact-key-"   /* 12 bytes + the number: 16-17 byte keys */

typedef tu_fx fx;

static int setup(void **state)
{
    /* 8 MiB: 64 KiB storage segments, about 7 MiB of storage. */
    shmc_options o = {.size = 8u << 20, .max_value = 4096, .slots = 64};
    return tu_fx_setup(state, "compact", &o);
}
#define teardown tu_fx_teardown

/* Every key 0..n-1 is present with the value of its last write (seq[i]). */
static void check_all(shmc_t *c, uint32_t n, const uint32_t *seq, uint32_t writer_of_all)
{
    uint8_t buf[256];
    char why[200];
    uint32_t missing = 0, stale = 0, first = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        shmc_status s = tu_get_check(c, PREFIX, i, buf, sizeof buf, why, sizeof why);
        if (s == TU_INVALID)
            fail_msg("key %u: invalid value: %s", i, why);
        if (s != SHMC_OK) {
            missing++;
            first = first == UINT32_MAX ? i : first;
            continue;
        }
        uint32_t w, q;
        assert_true(tu_value_origin(buf, VLEN, &w, &q));
        if (q != seq[i] || (writer_of_all != UINT32_MAX && w != writer_of_all))
            stale++;
    }
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    if (missing || stale)
        fail_msg("%u of %u live keys lost (first %u), %u stale; evictions %llu, compacted %llu",
                 missing, n, first, stale, (unsigned long long)st.evictions,
                 (unsigned long long)st.compacted);
}

static void verify_clean(shmc_t *c, uint64_t want_items)
{
    shmc_verify_report rep;
    shmc_status s = shmc_verify(c, &rep);
    if (s != SHMC_OK)
        fail_msg("shmc_verify: %s", rep.first_error);
    assert_int_equal(rep.items, want_items);
    assert_int_equal(rep.orphan_segments, 0);
}

/* 10 k live keys of 16 B / 100 B (about 1.5 MiB live) in 7 MiB of storage,
 * 500 k random overwrites and no reads: every key survives with its last
 * value, the storage was reclaimed by compaction, nothing was evicted. */
static void test_churn_keeps_every_live_key(void **state)
{
    fx *f = *state;
    const uint32_t n = 10000, rounds = 500000;
    uint32_t *seq = calloc(n, sizeof *seq);
    uint8_t buf[256];
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(tu_set_value(f->c, PREFIX, i, buf, VLEN, 1, 0, 0), SHMC_OK);
    tu_rng r;
    tu_rng_seed(&r, 18);
    for (uint32_t k = 1; k <= rounds; k++) {
        uint32_t i = tu_rng_below(&r, n);
        seq[i] = k;
        assert_int_equal(tu_set_value(f->c, PREFIX, i, buf, VLEN, 1, k, 0), SHMC_OK);
    }
    check_all(f->c, n, seq, 1);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    /* The churn wrote 10x the storage: it was reclaimed, by compaction. */
    assert_true(st.sets * tu_item_bytes(16, VLEN) > 5 * st.bytes_total);
    assert_int_equal(st.evictions, 0);
    assert_true(st.compactions > 0);
    assert_true(st.compacted > 0);
    assert_int_equal(st.items, n);
    /* Keys of 13 to 16 bytes: every item is 136 bytes. */
    assert_int_equal(st.bytes_used, (uint64_t)n * tu_item_bytes(16, VLEN));
    assert_true(st.bytes_used + st.bytes_dead + st.bytes_free <= st.bytes_total);
    verify_clean(f->c, n);
    free(seq);
}

/* Tokens, flags, expiry and kind survive being moved.  The kept items are
 * written one every 200 other writes (3 MiB in all, that fit), so each storage segment holds one or
 * two of them; the others are then deleted, so those segments are nearly
 * empty, and a churn whose live data keeps every other segment about 40 %
 * live makes them the leanest: every one of them is compacted, moving the
 * kept items.  They are never read (a read would give them a second chance
 * of its own). */
static void test_moves_keep_token_flags_expiry_kind(void **state)
{
    fx *f = *state;
    shmc_t *c = f->c;
    enum { N = 100, SPREAD = 200, CHURN_KEYS = 20000 };
    uint64_t cas[N];
    uint8_t buf[256];
    uint64_t ctr;
    for (uint32_t i = 0; i < N; i++) {
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "keep-%u", i);
        int vl = snprintf(val, sizeof val, "value of %u", i);
        assert_int_equal(shmc_set(c, key, (size_t)kl, val, (size_t)vl, 0xf00d0000u + i,
                                  3600u * 1000u), SHMC_OK);
        size_t got;
        uint32_t fl;
        assert_int_equal(shmc_gets(c, key, (size_t)kl, buf, sizeof buf, &got, &fl, &cas[i]),
                         SHMC_OK);
        if (i == N / 2)
            assert_int_equal(shmc_incr(c, "ctr", 3, 5, 1000, 0,
                                       SHMC_INCR_CREATE | SHMC_INCR_BINARY, &ctr), SHMC_OK);
        for (uint32_t j = 0; j < SPREAD; j++)
            assert_int_equal(tu_set_value(c, "junk-", i * SPREAD + j, buf, VLEN, 2, 0, 0),
                             SHMC_OK);
    }
    for (uint32_t i = 0; i < N * SPREAD; i++) {
        char key[32];
        size_t kl = tu_key(key, "junk-", i);
        assert_int_equal(shmc_delete(c, key, kl), SHMC_OK);
    }
    tu_rng r;
    tu_rng_seed(&r, 7);
    for (uint32_t k = 1; k <= 300000; k++)
        assert_int_equal(tu_set_value(c, PREFIX, tu_rng_below(&r, CHURN_KEYS), buf, VLEN, 2, k,
                                      0), SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_true(st.compacted >= N);
    assert_int_equal(st.evictions, 0);
    for (uint32_t i = 0; i < N; i++) {
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "keep-%u", i);
        int vl = snprintf(val, sizeof val, "value of %u", i);
        size_t got;
        uint32_t fl;
        uint64_t tok, ttl;
        assert_int_equal(shmc_gets(c, key, (size_t)kl, buf, sizeof buf, &got, &fl, &tok),
                         SHMC_OK);
        assert_int_equal(got, (size_t)vl);
        assert_memory_equal(buf, val, (size_t)vl);
        assert_int_equal(fl, 0xf00d0000u + i);
        assert_int_equal(tok, cas[i]);
        assert_int_equal(shmc_ttl(c, key, (size_t)kl, &ttl), SHMC_OK);
        assert_true(ttl > 3000u * 1000u && ttl <= 3600u * 1000u);
    }
    /* The counter kept its binary kind: 8 little-endian bytes, and incr
     * goes on from its value. */
    size_t got;
    assert_int_equal(shmc_get(c, "ctr", 3, buf, sizeof buf, &got, NULL), SHMC_OK);
    assert_int_equal(got, 8);
    assert_int_equal(shmc_incr(c, "ctr", 3, 5, 0, 0, 0, &ctr), SHMC_OK);
    assert_int_equal(ctr, 1005);
    /* A token taken before the moves still works for cas. */
    assert_int_equal(shmc_cas(c, "keep-0", 6, "new", 3, 0, 0, cas[0], NULL), SHMC_OK);
}

/* When live data exceeds the storage, items are dropped (evictions), the
 * statistics say so, and the newest writes are kept. */
static void test_overfull_still_evicts(void **state)
{
    fx *f = *state;
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    uint8_t buf[256];
    uint32_t n = (uint32_t)(2 * in.data_bytes / tu_item_bytes(16, VLEN));
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(tu_set_value(f->c, PREFIX, i, buf, VLEN, 3, i, 0), SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_true(st.evictions > 0);
    assert_true(st.items < n);
    /* The last 1/8 of the storage's worth of keys are all there. */
    char why[200];
    for (uint32_t i = n - n / 16; i < n; i++)
        assert_int_equal(tu_get_check(f->c, PREFIX, i, buf, sizeof buf, why, sizeof why),
                         SHMC_OK);
    verify_clean(f->c, st.items);
}

/* ---- forked writers, some SIGKILLed ---- */

#define PROCS 3u
#define KEYS_PER 3000u

typedef struct shared {
    tu_report rep;
    /* Per key: the seq of the last acknowledged write, and the seq of a write
     * that may be in flight (0 = none). */
    _Atomic uint32_t acked[PROCS * KEYS_PER];
    _Atomic uint32_t pending[PROCS * KEYS_PER];
    _Atomic uint32_t next_seq[PROCS];
} shared;

typedef struct wargs {
    const char *name;
    shared *sh;
    uint32_t p;
} wargs;

static int writer(void *arg)
{
    wargs *a = arg;
    shmc_t *c;
    if (shmc_open(a->name, NULL, &c) != SHMC_OK)
        return 2;
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)getpid() * 77 + a->p);
    uint8_t buf[256];
    while (!atomic_load(&a->sh->rep.stop)) {
        uint32_t i = a->p * KEYS_PER + tu_rng_below(&r, KEYS_PER);
        uint32_t q = atomic_fetch_add(&a->sh->next_seq[a->p], 1) + 1;
        atomic_store(&a->sh->pending[i], q);
        shmc_status s = tu_set_value(c, PREFIX, i, buf, VLEN, a->p, q, 0);
        if (s != SHMC_OK) {
            tu_report_error(&a->sh->rep, "set %u: %s", i, shmc_strerror(s));
            break;
        }
        atomic_store(&a->sh->acked[i], q);
        atomic_store(&a->sh->pending[i], 0);
        atomic_fetch_add(&a->sh->rep.ops, 1);
        if (a->p == 0 && (q & 7) == 0) /* one writer also reads: second chance marks */
            (void)tu_get_check(c, PREFIX, i, buf, sizeof buf, NULL, 0);
    }
    shmc_close(c);
    return 0;
}

/* Writers in PROCS processes overwrite their own keys; the parent SIGKILLs
 * and restarts them at random (a kill can land mid-write or mid-compaction).
 * Afterwards every key holds its last acknowledged value or the one write
 * that was in flight when its writer died; nothing was evicted; shmc_verify
 * is clean, and the storage a dead compactor held is reclaimed (a second
 * round of churn in the parent keeps every key too). */
static void test_killed_writers_lose_nothing(void **state)
{
    fx *f = *state;
    shared *sh = tu_shared_alloc(sizeof *sh);
    uint8_t buf[256];
    for (uint32_t i = 0; i < PROCS * KEYS_PER; i++) {
        uint32_t p = i / KEYS_PER;
        uint32_t q = atomic_fetch_add(&sh->next_seq[p], 1) + 1;
        assert_int_equal(tu_set_value(f->c, PREFIX, i, buf, VLEN, p, q, 0), SHMC_OK);
        atomic_store(&sh->acked[i], q);
    }
    wargs a[PROCS];
    pid_t pid[PROCS];
    for (uint32_t p = 0; p < PROCS; p++) {
        a[p] = (wargs){f->name, sh, p};
        pid[p] = tu_fork(writer, &a[p]);
        assert_true(pid[p] > 0);
    }
    tu_rng r;
    tu_rng_seed(&r, 1818);
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    /* At least 3 s, and until the writers have written the storage over
     * three times (slow machines, sanitizers), within 60 s. */
    uint64_t kills = 0, t0 = tu_now_ms();
    while ((tu_now_ms() - t0 < 3000 ||
            atomic_load(&sh->rep.ops) * tu_item_bytes(16, VLEN) < 3 * in.data_bytes) &&
           tu_now_ms() - t0 < 60000 && !atomic_load(&sh->rep.errors)) {
        tu_sleep_ms(20 + tu_rng_below(&r, 40));
        uint32_t p = tu_rng_below(&r, PROCS);
        kill(pid[p], SIGKILL);
        assert_int_equal(tu_wait(pid[p], 10000), TU_SIGNALLED + SIGKILL);
        kills++;
        pid[p] = tu_fork(writer, &a[p]);
        assert_true(pid[p] > 0);
    }
    atomic_store(&sh->rep.stop, 1);
    for (uint32_t p = 0; p < PROCS; p++)
        assert_int_equal(tu_wait(pid[p], 10000), 0);
    if (atomic_load(&sh->rep.errors))
        fail_msg("%s", tu_report_msg(&sh->rep));
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    fprintf(stderr, "  %llu writes, %llu kills, compacted %llu, evictions %llu\n",
            (unsigned long long)atomic_load(&sh->rep.ops), (unsigned long long)kills,
            (unsigned long long)st.compacted, (unsigned long long)st.evictions);
    assert_true(atomic_load(&sh->rep.ops) * tu_item_bytes(16, VLEN) > 2 * st.bytes_total);
    assert_int_equal(st.evictions, 0);
    char why[200];
    uint32_t *last = calloc(PROCS * KEYS_PER, sizeof *last);
    for (uint32_t i = 0; i < PROCS * KEYS_PER; i++) {
        shmc_status s = tu_get_check(f->c, PREFIX, i, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("key %u (acked seq %u): %s %s", i, atomic_load(&sh->acked[i]),
                     shmc_strerror(s), s == TU_INVALID ? why : "");
        uint32_t w, q;
        assert_true(tu_value_origin(buf, VLEN, &w, &q));
        if (q != atomic_load(&sh->acked[i]) && q != atomic_load(&sh->pending[i]))
            fail_msg("key %u holds seq %u; last acknowledged %u, in flight %u", i, q,
                     atomic_load(&sh->acked[i]), atomic_load(&sh->pending[i]));
        last[i] = q;
    }
    verify_clean(f->c, PROCS * KEYS_PER);
    /* Whatever dead participants held is reclaimed: churn on and lose nothing. */
    tu_rng_seed(&r, 99);
    for (uint32_t k = 0; k < 200000; k++) {
        uint32_t i = tu_rng_below(&r, PROCS * KEYS_PER);
        last[i] = 0x40000000u + k;
        assert_int_equal(tu_set_value(f->c, PREFIX, i, buf, VLEN, 9, last[i], 0), SHMC_OK);
    }
    for (uint32_t i = 0; i < PROCS * KEYS_PER; i++) {
        assert_int_equal(tu_get_check(f->c, PREFIX, i, buf, sizeof buf, why, sizeof why),
                         SHMC_OK);
        uint32_t w, q;
        assert_true(tu_value_origin(buf, VLEN, &w, &q));
        assert_int_equal(q, last[i]);
    }
    verify_clean(f->c, PROCS * KEYS_PER);
    free(last);
    tu_shared_free(sh, sizeof *sh);
}

/* What a writer killed between allocating its room and writing it leaves
 * there: the bytes of the segment's earlier life, here the header of an item
 * of 4 000 bytes where the room has 24.  Read as an item, it covers the
 * items written after it. */
static bool ghost_in_room(void *room, uint64_t bytes)
{
    assert_true(bytes < 100);
    memcpy(item_encode(room, ITEM_KIND_PLAIN, 5, 4000, 0, 0, 1), "ghost", 5);
    return true;
}

/* The items a torn write's leftover header hides from the segment's walk
 * are live: when churn makes the cache compact that segment, it keeps them
 * (the walk could not see them; the index scan after it does).  Fails if
 * that scan only unlinks what the walk missed: about 7 evictions. */
static void test_torn_write_hides_items(void **state)
{
    fx *f = *state;
    enum { LIVE = 40, DEAD = 600, CHURN_KEYS = 30000 };
    uint8_t buf[256];
    /* The first write of a fresh cache: its room is at the start of a
     * segment, and the live keys follow it there. */
    shmc__test_alloc_hook = ghost_in_room;
    assert_int_equal(shmc_set(f->c, "torn", 4, "x", 1, 0, 0), SHMC_ESYS);
    shmc__test_alloc_hook = NULL;
    uint32_t seq[LIVE];
    for (uint32_t i = 0; i < LIVE; i++) {
        seq[i] = 1;
        assert_int_equal(tu_set_value(f->c, PREFIX, i, buf, VLEN, 1, 1, 0), SHMC_OK);
    }
    /* The rest of the segment is dead bytes, so it is the one compacted
     * first once storage runs out (the churn leaves its own segments
     * partly live). */
    for (uint32_t i = 0; i < DEAD; i++)
        assert_int_equal(tu_set_value(f->c, "dead-", i, buf, VLEN, 2, 1, 0), SHMC_OK);
    for (uint32_t i = 0; i < DEAD; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "dead-%u", i);
        assert_int_equal(shmc_delete(f->c, k, (size_t)kl), SHMC_OK);
    }
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    tu_rng r;
    tu_rng_seed(&r, 4242);
    uint64_t writes = 2 * in.data_bytes / tu_item_bytes(16, VLEN);
    for (uint64_t k = 0; k < writes; k++)
        assert_int_equal(tu_set_value(f->c, "churn-", tu_rng_below(&r, CHURN_KEYS), buf, VLEN,
                                      3, (uint32_t)k + 1, 0),
                         SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    fprintf(stderr, "  %llu compactions moved %llu items; evictions %llu\n",
            (unsigned long long)st.compactions, (unsigned long long)st.compacted,
            (unsigned long long)st.evictions);
    check_all(f->c, LIVE, seq, 1);
    assert_true(st.compacted >= LIVE);
    shmc_verify_report rep;
    if (shmc_verify(f->c, &rep) != SHMC_OK)
        fail_msg("shmc_verify: %s", rep.first_error);
}

/* A participant killed while it evicted a segment leaves it EVICTING; the
 * next scan takes it over and redoes it as a compaction, whatever the
 * segment holds.  Here it is wholly live, more than one compaction may copy
 * (7/8 of a segment): the takeover moves what its budget allows and keeps
 * the rest, dropping nothing (before, it dropped the last eighth: 60 of
 * its 481 items). */
typedef struct dead_owner {
    _Atomic uint64_t owner;
} dead_owner;

static int take_slot_and_die(void *p)
{
    dead_owner *d = ((void **)p)[0];
    const char *name = ((void **)p)[1];
    shmc_t *c;
    tslot *t;
    if (shmc_open(name, NULL, &c) != SHMC_OK || slot_get(c, &t) != SHMC_OK)
        return 1;
    atomic_store(&d->owner, slot_owner(t));
    return 0; /* exits holding its slot: the kernel marks the owner dead */
}

static void test_dead_evictor_of_a_live_segment(void **state)
{
    fx *f = *state;
    struct shmc *c = f->c;
    /* Two segments of items, none overwritten, and two more, so that the
     * write head holding those two has room for a whole compaction. */
    const uint32_t N = 2 * (uint32_t)(c->seg_size / tu_item_bytes(16, VLEN)) + 2;
    uint8_t buf[256];
    uint32_t *seq = calloc(N, sizeof *seq);
    for (uint32_t i = 0; i < N; i++) {
        seq[i] = 1;
        assert_int_equal(tu_set_value(c, PREFIX, i, buf, VLEN, 1, 1, 0), SHMC_OK);
    }
    /* The segment of the first items written: sealed, every item live. */
    uint64_t lowest = UINT64_MAX;
    for (uint64_t i = 0; i < c->nbuckets * SHMC_BUCKET_WAYS; i++) {
        uint64_t w = atomic_load(&c->index[i]);
        if (w && iw_off(w) < lowest)
            lowest = iw_off(w);
    }
    assert_true(lowest < c->data_bytes);
    uint32_t s = (uint32_t)(lowest >> c->seg_shift);
    uint64_t sw = atomic_load(&c->segs[s].state);
    assert_int_equal(sw_state(sw), SEG_SEALED);
    assert_true(live_bytes(atomic_load(&c->segs[s].live)) > c->seg_size - c->seg_size / 8);
    /* ... left EVICTING by a participant that died. */
    dead_owner *d = tu_shared_alloc(sizeof *d);
    void *args[2] = {d, f->name};
    pid_t pid = tu_fork(take_slot_and_die, args);
    assert_true(pid > 0);
    assert_int_equal(tu_wait(pid, 10000), 0);
    assert_true(atomic_load(&d->owner) != 0);
    assert_true(atomic_compare_exchange_strong(&c->segs[s].state, &sw,
                                               sw_make(SEG_EVICTING, atomic_load(&d->owner))));
    /* shmc_verify recovers first: the takeover runs there. */
    shmc_verify_report rep;
    if (shmc_verify(c, &rep) != SHMC_OK)
        fail_msg("shmc_verify: %s", rep.first_error);
    assert_int_not_equal(sw_state(atomic_load(&c->segs[s].state)), SEG_EVICTING);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_true(st.compacted > 0);
    assert_int_equal(st.evictions, 0);
    check_all(c, N, seq, 1);
    verify_clean(c, N);
    free(seq);
    tu_shared_free(d, sizeof *d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_churn_keeps_every_live_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moves_keep_token_flags_expiry_kind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_overfull_still_evicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_writers_lose_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_write_hides_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_evictor_of_a_live_segment, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
