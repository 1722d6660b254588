/*
 * test_crash.c — processes that die or stall at arbitrary points.
 *
 *  (a) workers on a small, constantly evicting cache are SIGKILLed at random
 *      moments and respawned; afterwards the index and storage metadata must
 *      be consistent, every readable value valid, and all memory must come
 *      back for new writes;
 *  (b) a reader stopped (SIGSTOP) inside a read-side section pins retired
 *      memory: writes must eventually fail with SHMC_ENOMEM (not hang) while
 *      reads and deletes keep working, and killing the reader frees it all;
 *  (c) a reader stopped outside a read-side section must not affect writers;
 *  (d) writers of large values killed mid-write leave no damage;
 *  (e) a dead evictor's EVICTING segment is not evicted while a live write
 *      hazard names it.
 *
 * White-box: links the SHMC_TESTING build for shmc__test_read_enter().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SHMC_TESTING
#define SHMC_TESTING 1 /* declares the test hooks in epoch.h */
#endif
#include "alloc.h"
#include "epoch.h"
#include "index.h"
#include "slots.h"
#include "testutil.h"

#define CACHE_SIZE   (16ull << 20)
#define CACHE_MAXVAL (32u << 10)
#define NKEYS        2000u

/* ---- fixture: a cache, a report block, and children to kill on failure ---- */

typedef struct fx {
    char name[96];
    shmc_t *c;
    shmc_info info;
    tu_report *rep;
    pid_t pids[16];   /* children still to be killed/reaped at teardown */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    tu_name(f->name, sizeof f->name, "crash");
    tu_destroy(f->name);
    shmc_options o = {.size = CACHE_SIZE, .max_value = CACHE_MAXVAL};
    shmc_status s = shmc_open(f->name, &o, &f->c);
    if (s != SHMC_OK) {
        fprintf(stderr, "shmc_open: %s\n", shmc_strerror(s));
        free(f);
        return -1;
    }
    shmc_info_get(f->c, &f->info);
    f->rep = tu_report_new();
    *state = f;
    return 0;
}

static void track(fx *f, pid_t pid)
{
    for (size_t i = 0; i < sizeof f->pids / sizeof f->pids[0]; i++)
        if (f->pids[i] == 0) {
            f->pids[i] = pid;
            return;
        }
}

static void untrack(fx *f, pid_t pid)
{
    for (size_t i = 0; i < sizeof f->pids / sizeof f->pids[0]; i++)
        if (f->pids[i] == pid)
            f->pids[i] = 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (size_t i = 0; i < sizeof f->pids / sizeof f->pids[0]; i++)
        if (f->pids[i] > 0) {
            kill(f->pids[i], SIGKILL);
            waitpid(f->pids[i], NULL, 0);
        }
    shmc_close(f->c);
    tu_destroy(f->name);
    tu_report_free(f->rep);
    free(f);
    return 0;
}

static const char *status_or_invalid(shmc_status s)
{
    return s == TU_INVALID ? "invalid value" : shmc_strerror(s);
}

static char sbuf[128];
static const char *st_name(int st)
{
    return tu_status_str(st, sbuf, sizeof sbuf);
}

/* Kills (SIGKILL) and reaps a child; true if it died of that signal (and not
 * of something else before we got to it). */
static bool kill_and_reap(fx *f, pid_t pid, int *how)
{
    kill(pid, SIGKILL);
    int st = tu_wait(pid, 20000);
    untrack(f, pid);
    if (how)
        *how = st;
    return st == TU_SIGNALLED + SIGKILL;
}

/* Expects a quiet, fully consistent cache. */
static void assert_verify_ok(shmc_t *c, shmc_verify_report *rep, const char *when)
{
    memset(rep, 0, sizeof *rep);
    shmc_status v = shmc_verify(c, rep);
    if (v != SHMC_OK)
        fail_msg("%s: shmc_verify = %s: %s (items %llu bad_offsets %llu bad_items %llu "
                 "misplaced %llu in_dead %llu dups %llu seg_errors %llu orphans %llu)",
                 when, shmc_strerror(v), rep->first_error, (unsigned long long)rep->items,
                 (unsigned long long)rep->bad_offsets, (unsigned long long)rep->bad_items,
                 (unsigned long long)rep->misplaced, (unsigned long long)rep->in_dead_segments,
                 (unsigned long long)rep->duplicates, (unsigned long long)rep->segment_errors,
                 (unsigned long long)rep->orphan_segments);
    assert_int_equal(rep->bad_offsets, 0);
    assert_int_equal(rep->bad_items, 0);
    assert_int_equal(rep->misplaced, 0);
    assert_int_equal(rep->in_dead_segments, 0);
    assert_int_equal(rep->duplicates, 0);
    assert_int_equal(rep->segment_errors, 0);
    assert_int_equal(rep->orphan_segments, 0);
}

/* Every key under prefix 0..n-1 is absent or valid.  Returns the number present. */
static uint64_t check_all_keys(shmc_t *c, const char *prefix, uint32_t n)
{
    uint8_t *buf = malloc(CACHE_MAXVAL);
    char why[200];
    uint64_t present = 0;
    for (uint32_t k = 0; k < n; k++) {
        shmc_status s = tu_get_check(c, prefix, k, buf, CACHE_MAXVAL, why, sizeof why);
        if (s == SHMC_OK)
            present++;
        else if (s != SHMC_NOT_FOUND)
            fail_msg("key %s%u: %s %s", prefix, k, status_or_invalid(s), why);
    }
    free(buf);
    return present;
}

/* ---- a child that fills the cache with new distinct keys ---- */

typedef struct fill_arg {
    const char *name;
    tu_report *rep;
    const char *prefix;
    uint32_t count;        /* keys to write */
    uint32_t len;          /* value length */
    uint64_t check_bytes;  /* the newest keys worth this many bytes must read back */
} fill_arg;

static int fill_main(void *p)
{
    fill_arg *a = p;
    shmc_t *c = NULL;
    shmc_status s = shmc_open(a->name, NULL, &c);
    if (s != SHMC_OK) {
        tu_report_error(a->rep, "fill: open: %s", shmc_strerror(s));
        return 1;
    }
    uint8_t *buf = malloc(CACHE_MAXVAL);
    for (uint32_t i = 0; i < a->count; i++) {
        s = tu_set_value(c, a->prefix, i, buf, a->len, 77, i, 0);
        if (s != SHMC_OK) {
            tu_report_error(a->rep, "fill: set #%u of %u (%s%u, %u bytes): %s", i, a->count,
                            a->prefix, i, a->len, shmc_strerror(s));
            return 2;
        }
    }
    uint64_t bytes = 0;
    char why[200];
    for (uint32_t i = a->count; i-- > 0;) {
        char key[TU_KEY_MAX];
        bytes += tu_item_bytes(tu_key(key, a->prefix, i), a->len);
        if (bytes > a->check_bytes)
            break;
        s = tu_get_check(c, a->prefix, i, buf, CACHE_MAXVAL, why, sizeof why);
        if (s != SHMC_OK) {
            tu_report_error(a->rep, "fill: recent key %s%u (of %u): %s %s", a->prefix, i,
                            a->count, status_or_invalid(s), why);
            return 3;
        }
    }
    free(buf);
    shmc_close(c);
    return 0;
}

/* Runs fill_main in a child and fails the test if it did not succeed. */
static void run_fill(fx *f, const char *prefix, uint64_t total_bytes, uint32_t len)
{
    fill_arg a = {.name = f->name, .rep = f->rep, .prefix = prefix, .len = len,
                  .count = (uint32_t)(total_bytes / tu_item_bytes(12, len) + 1),
                  .check_bytes = f->info.data_bytes / 4};
    pid_t pid = tu_fork(fill_main, &a);
    assert_true(pid > 0);
    track(f, pid);
    int st = tu_wait(pid, 120000);
    untrack(f, pid);
    if (st != 0)
        fail_msg("fill child (%u keys of %u bytes): %s; %s", a.count, len, st_name(st),
                 tu_report_msg(f->rep));
}

/* ---- (a) SIGKILL loop ---- */

enum { NWORKERS = 4, MAX_KILLS = 150, KILL_LOOP_MS = 30000 };

typedef struct worker_arg {
    const char *name;
    tu_report *rep;
    uint32_t id, incarnation;
    uint32_t big_pct;  /* % of sets with values of 4 KiB .. max */
    uint32_t fixed_len; /* if non-zero: every value has this length */
} worker_arg;

/* Diagnostics for an unexpected SHMC_ENOMEM: which participants hold the
 * grace horizon back (white-box: reads the slot table). */
static void dump_pinning_slots(shmc_t *c, const char *who)
{
    uint64_t g = atomic_load(&c->hdr->epoch);
    fprintf(stderr, "  [%s pid %ld] SHMC_ENOMEM: global epoch %llu; slots in a section:", who,
            (long)getpid(), (unsigned long long)g);
    for (uint32_t i = 0; i < c->nslots; i++) {
        uint64_t e = atomic_load(&c->slots[i].epoch);
        if (!e)
            continue;
        uint32_t pid = atomic_load(&c->slots[i].pid);
        fprintf(stderr, " #%u(pid %u%s, epoch %llu)", i, pid,
                kill((pid_t)pid, 0) == 0 ? "" : " DEAD", (unsigned long long)e);
    }
    uint32_t st[8] = {0};
    for (uint32_t s = 0; s < c->nsegs; s++)
        st[sw_state(atomic_load(&c->segs[s].state)) & 7]++;
    fprintf(stderr, "; segment states free %u reserved %u open %u sealed %u evicting %u "
            "retired %u sealing %u other %u\n", st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]);
}

static int worker_main(void *p)
{
    worker_arg *a = p;
    shmc_t *c = NULL;
    shmc_status s = shmc_open(a->name, NULL, &c);
    if (s != SHMC_OK) {
        tu_report_error(a->rep, "worker %u.%u: open: %s", a->id, a->incarnation,
                        shmc_strerror(s));
        return 1;
    }
    uint8_t *buf = malloc(CACHE_MAXVAL);
    char why[200];
    tu_rng r;
    tu_rng_seed(&r, ((uint64_t)a->id << 32) | a->incarnation);
    uint32_t seq = 0;
    while (!atomic_load_explicit(&a->rep->stop, memory_order_relaxed)) {
        uint32_t k = tu_rng_below(&r, NKEYS);
        uint32_t op = tu_rng_below(&r, 100);
        if (op < 50 || a->fixed_len) {
            uint32_t len = a->fixed_len;
            if (!len)
                len = tu_rng_below(&r, 100) < a->big_pct ? tu_rng_range(&r, 4096, CACHE_MAXVAL)
                                                         : tu_rng_range(&r, 1, 4000);
            s = tu_set_value(c, "ck-", k, buf, len, a->id, seq++, 0);
            if (s == SHMC_ENOMEM) {
                if (atomic_fetch_add(&a->rep->enomem, 1) < 3)
                    dump_pinning_slots(c, "worker");
            } else if (s != SHMC_OK)
                tu_report_error(a->rep, "worker %u: set %u (%u bytes): %s", a->id, k, len,
                                shmc_strerror(s));
        } else if (op < 85) {
            s = tu_get_check(c, "ck-", k, buf, CACHE_MAXVAL, why, sizeof why);
            if (s == SHMC_OK)
                atomic_fetch_add_explicit(&a->rep->hits, 1, memory_order_relaxed);
            else if (s != SHMC_NOT_FOUND)
                tu_report_error(a->rep, "worker %u: get %u: %s %s", a->id, k,
                                status_or_invalid(s), why);
        } else {
            char key[TU_KEY_MAX];
            s = shmc_delete(c, key, tu_key(key, "ck-", k));
            if (s != SHMC_OK && s != SHMC_NOT_FOUND)
                tu_report_error(a->rep, "worker %u: delete %u: %s", a->id, k, shmc_strerror(s));
        }
        atomic_fetch_add_explicit(&a->rep->ops, 1, memory_order_relaxed);
    }
    free(buf);
    shmc_close(c);
    return 0;
}

static void test_sigkill_loop(void **state)
{
    fx *f = *state;
    worker_arg args[NWORKERS];
    pid_t pids[NWORKERS];
    for (uint32_t i = 0; i < NWORKERS; i++) {
        args[i] = (worker_arg){.name = f->name, .rep = f->rep, .id = i, .big_pct = 10};
        pids[i] = tu_fork(worker_main, &args[i]);
        assert_true(pids[i] > 0);
        track(f, pids[i]);
    }
    tu_rng r;
    tu_rng_seed(&r, 4242);
    uint64_t t0 = tu_now_ms();
    uint32_t kills = 0, unexpected = 0;
    int last_unexpected = 0;
    while (kills < MAX_KILLS && tu_now_ms() - t0 < KILL_LOOP_MS) {
        tu_sleep_ms(tu_rng_range(&r, 1, 20));
        uint32_t w = tu_rng_below(&r, NWORKERS);
        int how;
        if (!kill_and_reap(f, pids[w], &how)) {
            unexpected++;
            last_unexpected = how;
        }
        kills++;
        args[w].incarnation++;
        pids[w] = tu_fork(worker_main, &args[w]);
        assert_true(pids[w] > 0);
        track(f, pids[w]);
    }
    /* Let the survivors work past the last kill, then stop them cleanly. */
    tu_sleep_ms(200);
    atomic_store(&f->rep->stop, 1);
    int bad = 0;
    for (uint32_t i = 0; i < NWORKERS; i++) {
        int st = tu_wait(pids[i], 30000);
        untrack(f, pids[i]);
        if (st != 0) {
            fprintf(stderr, "worker %u at stop: %s\n", i, st_name(st));
            bad++;
        }
    }
    fprintf(stderr, "  %u kills in %llu ms, %llu ops, %llu validated hits\n", kills,
            (unsigned long long)(tu_now_ms() - t0), (unsigned long long)f->rep->ops,
            (unsigned long long)f->rep->hits);
    if (f->rep->errors)
        fail_msg("%llu errors in workers; first: %s", (unsigned long long)f->rep->errors,
                 tu_report_msg(f->rep));
    if (unexpected)
        fail_msg("%u workers died before being killed (last: %s)", unexpected,
                 st_name(last_unexpected));
    if (bad)
        fail_msg("%d workers did not stop cleanly", bad);
    /* SHMC_ENOMEM is checked last, so that the other invariants are
     * reported even when it fails. */
    uint64_t enomem = f->rep->enomem;
    assert_true(kills >= 20); /* the loop really ran */
    assert_true(f->rep->hits > 0);

    /* The invariants after the storm. */
    shmc_verify_report rep;
    assert_verify_ok(f->c, &rep, "after the kill loop");
    uint64_t present = check_all_keys(f->c, "ck-", NKEYS);
    assert_int_equal(rep.items, present);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    fprintf(stderr,
            "  items: stats %llu, verify %llu; evictions %llu, compactions %llu, reaped slots "
            "%llu\n",
            (unsigned long long)st.items, (unsigned long long)rep.items,
            (unsigned long long)st.evictions, (unsigned long long)st.compactions,
            (unsigned long long)st.slots_reaped);
    assert_true(st.items >= rep.items);
    assert_true(st.items - rep.items <= kills);
    /* The cache was under pressure: storage was reclaimed, by compaction
     * (dead bytes) or, when the live data did not fit, by eviction. */
    assert_true(st.evictions + st.compactions > 0);

    /* All memory comes back: 3x the storage in new keys from a fresh process. */
    run_fill(f, "fill-", 3 * f->info.data_bytes, 3000);
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    fprintf(stderr, "  after refill: free %llu open %llu sealed %llu retired %llu of %u\n",
            (unsigned long long)st.segments_free, (unsigned long long)st.segments_open,
            (unsigned long long)st.segments_sealed, (unsigned long long)st.segments_retired,
            f->info.segments);
    assert_true(st.segments_retired <= f->info.segments / 4 + SHMC_MAX_HEADS);
    assert_verify_ok(f->c, &rep, "after the refill");
    check_all_keys(f->c, "ck-", NKEYS);
    if (enomem || st.enomem)
        fail_msg("%llu sets of the workers returned SHMC_ENOMEM (stats.enomem %llu) though no "
                 "reader was stalled (only killed)",
                 (unsigned long long)enomem, (unsigned long long)st.enomem);
}

/* ---- (b) reader stalled inside a read section ---- */

typedef struct stall_arg {
    const char *name;
    bool in_section;
    tu_report *rep;
} stall_arg;

static int stalled_reader_main(void *p)
{
    stall_arg *a = p;
    shmc_t *c = NULL;
    if (shmc_open(a->name, NULL, &c) != SHMC_OK)
        return 1;
    uint8_t buf[8192];
    char why[200];
    /* Some ordinary reads first (takes a slot, touches the index). */
    for (uint32_t k = 0; k < 200; k++) {
        shmc_status s = tu_get_check(c, "pre-", k, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK && s != SHMC_NOT_FOUND) {
            tu_report_error(a->rep, "stalled reader (before stop): key %u: %s %s", k,
                            status_or_invalid(s), why);
            return 2;
        }
    }
    if (a->in_section) {
        if (shmc__test_read_enter(c) != SHMC_OK)
            return 3;
    }
    raise(SIGSTOP);
    /* Continued: the handle still works. */
    if (a->in_section)
        shmc__test_read_exit(c);
    for (uint32_t k = 0; k < 200; k++) {
        shmc_status s = tu_get_check(c, "pre-", k, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK && s != SHMC_NOT_FOUND) {
            tu_report_error(a->rep, "stalled reader (after continue): key %u: %s %s", k,
                            status_or_invalid(s), why);
            return 4;
        }
    }
    shmc_close(c);
    return 0;
}

static pid_t start_stalled_reader(fx *f, stall_arg *a)
{
    uint8_t buf[1024];
    for (uint32_t k = 0; k < 200; k++)
        assert_int_equal(tu_set_value(f->c, "pre-", k, buf, 500, 0, k, 0), SHMC_OK);
    pid_t pid = tu_fork(stalled_reader_main, a);
    assert_true(pid > 0);
    track(f, pid);
    if (!tu_wait_stopped(pid, 30000))
        fail_msg("reader did not stop itself: %s", tu_report_msg(f->rep));
    return pid;
}

typedef struct pinned_arg {
    const char *name;
    tu_report *rep;
    uint32_t max_keys;
    uint32_t len;
} pinned_arg;

/* Writes distinct keys, 10 times the capacity, past a reader stopped inside
 * its read section: every write succeeds (the stopped section is ejected),
 * then reads and deletes work. */
static int pinned_writer_main(void *p)
{
    pinned_arg *a = p;
    shmc_t *c = NULL;
    if (shmc_open(a->name, NULL, &c) != SHMC_OK)
        return 1;
    uint8_t *buf = malloc(CACHE_MAXVAL);
    char why[200];
    uint32_t n = 0;
    shmc_status s = SHMC_OK;
    for (; n < a->max_keys; n++) {
        s = tu_set_value(c, "pin-", n, buf, a->len, 5, n, 0);
        if (s != SHMC_OK) {
            tu_report_error(a->rep, "set #%u returned %s with a reader stopped in a read "
                            "section; want SHMC_OK", n, shmc_strerror(s));
            return 20;
        }
    }
    fprintf(stderr, "  %u sets of %u bytes past a stopped reader\n", n, a->len);
    /* Reads work: OK (valid) or NOT_FOUND, never an error. */
    uint32_t present = 0, last_present = UINT32_MAX;
    for (uint32_t k = 0; k < n; k++) {
        s = tu_get_check(c, "pin-", k, buf, CACHE_MAXVAL, why, sizeof why);
        if (s == SHMC_OK) {
            present++;
            last_present = k;
        } else if (s != SHMC_NOT_FOUND) {
            tu_report_error(a->rep, "get pin-%u while pinned: %s %s", k, status_or_invalid(s),
                            why);
            return 22;
        }
    }
    for (uint32_t k = 0; k < 200; k++) {
        s = tu_get_check(c, "pre-", k, buf, CACHE_MAXVAL, why, sizeof why);
        if (s != SHMC_OK && s != SHMC_NOT_FOUND) {
            tu_report_error(a->rep, "get pre-%u while pinned: %s %s", k, status_or_invalid(s),
                            why);
            return 23;
        }
    }
    if (last_present == UINT32_MAX) {
        tu_report_error(a->rep, "no key of %u written is readable while pinned", n);
        return 24;
    }
    /* Deletes work. */
    char key[TU_KEY_MAX];
    size_t kl = tu_key(key, "pin-", last_present);
    if ((s = shmc_delete(c, key, kl)) != SHMC_OK) {
        tu_report_error(a->rep, "delete of present key while pinned: %s", shmc_strerror(s));
        return 25;
    }
    if ((s = shmc_exists(c, key, kl)) != SHMC_NOT_FOUND) {
        tu_report_error(a->rep, "deleted key still exists: %s", shmc_strerror(s));
        return 26;
    }
    shmc_stats st;
    if (shmc_stats_get(c, &st) != SHMC_OK || st.enomem != 0 || st.ejections == 0) {
        tu_report_error(a->rep, "stats.enomem %llu, ejections %llu: want 0 and > 0",
                        (unsigned long long)st.enomem, (unsigned long long)st.ejections);
        return 27;
    }
    free(buf);
    shmc_close(c);
    return 0;
}

static void test_stalled_reader_in_section(void **state)
{
    fx *f = *state;
    stall_arg sa = {.name = f->name, .in_section = true, .rep = f->rep};
    pid_t reader = start_stalled_reader(f, &sa);

    const uint32_t len = 4000;
    uint32_t cap = (uint32_t)(f->info.data_bytes / tu_item_bytes(12, len));
    pinned_arg pa = {.name = f->name, .rep = f->rep, .max_keys = 10 * cap, .len = len};
    pid_t w = tu_fork(pinned_writer_main, &pa);
    assert_true(w > 0);
    track(f, w);
    int st = tu_wait(w, 120000);
    untrack(f, w);
    if (st != 0)
        fail_msg("writer against a stalled reader: %s; %s", st_name(st),
                 st == TU_TIMEDOUT ? "(hung?)" : tu_report_msg(f->rep));

    /* shmc_procs shows the stopped reader's section ejected. */
    shmc_proc_info pi[64];
    size_t np = 0, ej = 0;
    assert_int_equal(shmc_procs(f->c, 0, pi, 64, &np), SHMC_OK);
    for (size_t i = 0; i < np && i < 64; i++)
        if (pi[i].pid == (uint32_t)reader && pi[i].ejected && pi[i].ejections >= 1 &&
            pi[i].eject_stall_ms >= 1)
            ej++;
    assert_int_equal(ej, 1);
    /* The reader resumes: it leaves its section and its reads work. */
    kill(reader, SIGCONT);
    int how = tu_wait(reader, 30000);
    untrack(f, reader);
    if (how != 0)
        fail_msg("continued reader: %s; %s", st_name(how), tu_report_msg(f->rep));
    run_fill(f, "after-", 2 * f->info.data_bytes, len);
    shmc_verify_report rep;
    assert_verify_ok(f->c, &rep, "after the stalled reader was killed");
}

/* A reader that stays inside a read section for long while running (as a
 * preempted reader on an oversubscribed host does) is ejected like a stopped
 * one: writers that need the memory it holds never fail with SHMC_ENOMEM. */
typedef struct slow_arg {
    const char *name;
    _Atomic int *inside;
} slow_arg;

static int slow_reader_main(void *p)
{
    slow_arg *a = p;
    shmc_t *c = NULL;
    if (shmc_open(a->name, NULL, &c) != SHMC_OK || shmc__test_read_enter(c) != SHMC_OK)
        return 1;
    atomic_store(a->inside, 1);
    uint64_t end = tu_now_ms() + 1200; /* far above the ejection bound, running */
    while (tu_now_ms() < end)
        ;
    shmc__test_read_exit(c);
    shmc_close(c);
    return 0;
}

static void test_slow_running_reader_in_section(void **state)
{
    fx *f = *state;
    _Atomic int *inside = tu_shared_alloc(sizeof *inside);
    slow_arg a = {.name = f->name, .inside = inside};
    pid_t reader = tu_fork(slow_reader_main, &a);
    assert_true(reader > 0);
    track(f, reader);
    uint64_t until = tu_now_ms() + 30000;
    while (!atomic_load(inside) && tu_now_ms() < until)
        tu_sleep_ms(1);
    assert_true(atomic_load(inside));
    run_fill(f, "slow-", 3 * f->info.data_bytes, 3000);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_int_equal(st.enomem, 0);
    assert_true(st.evictions > 0);
    int how = tu_wait(reader, 30000);
    untrack(f, reader);
    assert_int_equal(how, 0);
    tu_shared_free(inside, sizeof *inside);
}

/* ---- (c) reader stopped outside a read section ---- */

static void test_stopped_reader_outside_section(void **state)
{
    fx *f = *state;
    stall_arg sa = {.name = f->name, .in_section = false, .rep = f->rep};
    pid_t reader = start_stalled_reader(f, &sa);

    run_fill(f, "free-", 3 * f->info.data_bytes, 3000);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_int_equal(st.enomem, 0);
    assert_true(st.evictions > 0);

    /* The reader resumes and its handle still works. */
    kill(reader, SIGCONT);
    int s = tu_wait(reader, 30000);
    untrack(f, reader);
    if (s != 0)
        fail_msg("continued reader: %s; %s", st_name(s), tu_report_msg(f->rep));
    shmc_verify_report rep;
    assert_verify_ok(f->c, &rep, "after the stopped reader");
}

/* ---- (d) killed in the middle of large writes ---- */

enum { MIDWRITE_KILLS = 50, MIDWRITE_WORKERS = 2 };

static void test_killed_mid_write(void **state)
{
    fx *f = *state;
    worker_arg args[MIDWRITE_WORKERS];
    pid_t pids[MIDWRITE_WORKERS];
    for (uint32_t i = 0; i < MIDWRITE_WORKERS; i++) {
        args[i] = (worker_arg){.name = f->name, .rep = f->rep, .id = 10 + i,
                               .fixed_len = 16u << 10};
        pids[i] = tu_fork(worker_main, &args[i]);
        assert_true(pids[i] > 0);
        track(f, pids[i]);
    }
    tu_rng r;
    tu_rng_seed(&r, 5151);
    uint32_t kills = 0, unexpected = 0;
    int last_unexpected = 0;
    uint64_t t0 = tu_now_ms();
    while (kills < MIDWRITE_KILLS && tu_now_ms() - t0 < KILL_LOOP_MS) {
        tu_sleep_ms(tu_rng_range(&r, 1, 15));
        uint32_t w = tu_rng_below(&r, MIDWRITE_WORKERS);
        int how;
        if (!kill_and_reap(f, pids[w], &how)) {
            unexpected++;
            last_unexpected = how;
        }
        kills++;
        args[w].incarnation++;
        pids[w] = tu_fork(worker_main, &args[w]);
        assert_true(pids[w] > 0);
        track(f, pids[w]);
    }
    /* The last ones die mid-write too. */
    tu_sleep_ms(tu_rng_range(&r, 1, 15));
    for (uint32_t i = 0; i < MIDWRITE_WORKERS; i++) {
        int how;
        if (!kill_and_reap(f, pids[i], &how)) {
            unexpected++;
            last_unexpected = how;
        }
        kills++;
    }
    fprintf(stderr, "  %u kills, %llu ops\n", kills, (unsigned long long)f->rep->ops);
    if (f->rep->errors)
        fail_msg("%llu errors in writers; first: %s", (unsigned long long)f->rep->errors,
                 tu_report_msg(f->rep));
    if (unexpected)
        fail_msg("%u writers died before being killed (last: %s)", unexpected,
                 st_name(last_unexpected));

    /* Right after the kills, with no survivor having run: shmc_verify does
     * the lazy recovery itself (reaps dead slots, takes over their storage
     * segments), so the cache must check out fully consistent. */
    shmc_verify_report rep;
    assert_verify_ok(f->c, &rep, "right after the kills");
    uint64_t present = check_all_keys(f->c, "ck-", NKEYS);
    assert_int_equal(rep.items, present);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_true(st.items >= rep.items);
    assert_true(st.items - rep.items <= kills);

    /* A new writer gets all the memory back; then everything is clean. */
    run_fill(f, "mw-fill-", 2 * f->info.data_bytes, 16u << 10);
    assert_verify_ok(f->c, &rep, "after the refill");
    check_all_keys(f->c, "ck-", NKEYS);
}

/* ---- counters and cas loops under SIGKILL ----
 * Workers increment two counters, one with shmc_incr and one with gets+cas
 * loops, and count each acknowledged increment in shared memory right after
 * the call returns; they also write filler items so the cache evicts.  A kill
 * can land after an increment was published but before it was counted, so
 * each counter must end within [acked, acked + kills]; and nothing may hang. */

enum { CTR_WORKERS = 3, CTR_KILLS = 60 };

typedef struct ctr_shared {
    _Atomic uint64_t acked_incr, acked_cas, errors;
    char first_error[160];
} ctr_shared;

typedef struct ctr_arg {
    const char *name;
    ctr_shared *sh;
    uint32_t id;
} ctr_arg;

static void ctr_error(ctr_shared *sh, const char *what, shmc_status s)
{
    if (atomic_fetch_add(&sh->errors, 1) == 0)
        snprintf(sh->first_error, sizeof sh->first_error, "%s: %s", what, shmc_strerror(s));
}

static int ctr_worker(void *p)
{
    ctr_arg *a = p;
    shmc_t *c;
    shmc_status s = shmc_open(a->name, NULL, &c);
    if (s != SHMC_OK) {
        ctr_error(a->sh, "open", s);
        return 10;
    }
    uint8_t filler[4000];
    memset(filler, (int)a->id, sizeof filler);
    for (uint64_t i = 0;; i++) {
        uint64_t v;
        s = shmc_incr(c, "c-incr", 6, 1, 1, 0, SHMC_INCR_CREATE, &v);
        if (s != SHMC_OK)
            ctr_error(a->sh, "incr", s);
        else
            atomic_fetch_add(&a->sh->acked_incr, 1);
        s = tu_cas_incr(c, "c-cas", NULL);
        if (s != SHMC_OK)
            ctr_error(a->sh, "gets+cas", s);
        else
            atomic_fetch_add(&a->sh->acked_cas, 1);
        char k[32];
        int kl = snprintf(k, sizeof k, "fill-%u-%llu", a->id, (unsigned long long)(i % 3000));
        s = shmc_set(c, k, (size_t)kl, filler, sizeof filler, 0, 0);
        if (s != SHMC_OK)
            ctr_error(a->sh, "set", s);
    }
}

static void test_counters_under_sigkill(void **state)
{
    fx *f = *state;
    ctr_shared *sh = tu_shared_alloc(sizeof *sh);
    /* Both counters are made permanent by reading them often: the second
     * chance keeps recently read items through evictions. */
    assert_int_equal(shmc_set(f->c, "c-cas", 5, "0", 1, 0, 0), SHMC_OK);
    ctr_arg args[CTR_WORKERS];
    pid_t pids[CTR_WORKERS];
    for (uint32_t i = 0; i < CTR_WORKERS; i++) {
        args[i] = (ctr_arg){f->name, sh, i};
        pids[i] = tu_fork(ctr_worker, &args[i]);
        assert_true(pids[i] > 0);
        track(f, pids[i]);
    }
    tu_rng r;
    tu_rng_seed(&r, 8080);
    uint32_t kills = 0, unexpected = 0;
    uint64_t t0 = tu_now_ms();
    while (kills < CTR_KILLS && tu_now_ms() - t0 < KILL_LOOP_MS) {
        tu_sleep_ms(tu_rng_range(&r, 1, 20));
        uint32_t w = tu_rng_below(&r, CTR_WORKERS);
        if (!kill_and_reap(f, pids[w], NULL))
            unexpected++;
        kills++;
        pids[w] = tu_fork(ctr_worker, &args[w]);
        assert_true(pids[w] > 0);
        track(f, pids[w]);
    }
    tu_sleep_ms(50);
    for (uint32_t i = 0; i < CTR_WORKERS; i++) {
        if (!kill_and_reap(f, pids[i], NULL))
            unexpected++;
        kills++;
    }
    if (atomic_load(&sh->errors))
        fail_msg("%llu errors in workers; first: %s", (unsigned long long)atomic_load(&sh->errors),
                 sh->first_error);
    assert_int_equal(unexpected, 0);

    char buf[32];
    size_t n;
    uint64_t acked_incr = atomic_load(&sh->acked_incr), acked_cas = atomic_load(&sh->acked_cas);
    assert_int_equal(shmc_get(f->c, "c-incr", 6, buf, sizeof buf, &n, NULL), SHMC_OK);
    uint64_t vi = tu_parse_u64(buf, n);
    assert_int_equal(shmc_get(f->c, "c-cas", 5, buf, sizeof buf, &n, NULL), SHMC_OK);
    uint64_t vc = tu_parse_u64(buf, n);
    fprintf(stderr, "  %u kills; incr counter %llu (acked %llu), cas counter %llu (acked %llu)\n",
            kills, (unsigned long long)vi, (unsigned long long)acked_incr,
            (unsigned long long)vc, (unsigned long long)acked_cas);
    assert_true(acked_incr > 0 && acked_cas > 0);
    assert_true(vi >= acked_incr && vi <= acked_incr + kills);
    assert_true(vc >= acked_cas && vc <= acked_cas + kills);
    shmc_verify_report rep;
    assert_verify_ok(f->c, &rep, "after killing counter workers");
    tu_shared_free(sh, sizeof *sh);
}

/* ---- participant slots run out, and come back ---- */

typedef struct slot_kid {
    const char *name;
    int ready;      /* write end: one byte once the kid holds a slot */
    bool vanish;    /* leave without the kernel's owner-died marks */
} slot_kid;

static int slot_kid_main(void *arg)
{
    slot_kid *k = arg;
    shmc_t *c;
    if (shmc_open(k->name, &(shmc_options){.flags = SHMC_OPEN_ATTACH_ONLY}, &c) != SHMC_OK)
        return 1;
    shmc_status st = shmc_set(c, "k", 1, "v", 1, 0, 0);
    if (st != SHMC_OK)
        return st == SHMC_ENOSLOTS ? 42 : 2;
    char b = 1;
    if (write(k->ready, &b, 1) != 1)
        return 3;
    if (k->vanish) {
        /* As if the segment had been restored with this slot held: the
         * kernel will not mark the slot's mutex when we exit. */
        return tu_forget_robust_list() == 0 ? 0 : 4;
    }
    for (;;)
        pause();
}

static pid_t slot_kid_start(slot_kid *k, int *pfd)
{
    k->ready = pfd[1];
    pid_t p = tu_fork(slot_kid_main, k);
    assert_true(p > 0);
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    if (poll(&pf, 1, 20000) != 1) {
        char why[64];
        fail_msg("participant %d never got a slot: %s", (int)p,
                 tu_status_str(tu_wait(p, 1000), why, sizeof why));
    }
    char b;
    assert_int_equal(read(pfd[0], &b, 1), 1);
    return p;
}

/* A cache with 4 slots: the 5th thread gets SHMC_ENOSLOTS; a killed
 * participant's slot is reaped and reused; so is the slot of one that
 * vanished without the kernel's owner-died mark (checked only once every
 * slot looks taken). */
static void test_slots_run_out_and_come_back(void **state)
{
    (void)state;
    char name[64];
    tu_name(name, sizeof name, "slots");
    shmc_t *c;
    assert_int_equal(shmc_open(name, &(shmc_options){.size = 4u << 20, .slots = 4}, &c),
                     SHMC_OK);
    assert_int_equal(shmc_set(c, "p", 1, "v", 1, 0, 0), SHMC_OK); /* slot 1: us */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    slot_kid sit = {.name = name}, ghost = {.name = name, .vanish = true};
    pid_t s1 = slot_kid_start(&sit, pfd), s2 = slot_kid_start(&sit, pfd);
    pid_t g = slot_kid_start(&ghost, pfd); /* slot 4, then gone */
    assert_int_equal(tu_wait(g, 10000), 0);
    /* every slot looks taken; the vanished one is found and reused */
    pid_t s3 = slot_kid_start(&sit, pfd);
    /* now really full: a 5th participant is refused, with a clear status */
    pid_t x = tu_fork(slot_kid_main, &sit);
    assert_int_equal(tu_wait(x, 10000), 42);
    /* a killed participant's slot comes back */
    kill(s2, SIGKILL);
    assert_int_equal(tu_wait(s2, 10000), TU_SIGNALLED + SIGKILL);
    pid_t s4 = slot_kid_start(&sit, pfd);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
    assert_int_equal(st.slots_live, 4);
    assert_true(st.slots_reaped >= 2);
    pid_t kids[] = {s1, s3, s4};
    for (size_t i = 0; i < 3; i++) {
        kill(kids[i], SIGKILL);
        assert_int_equal(tu_wait(kids[i], 10000), TU_SIGNALLED + SIGKILL);
    }
    close(pfd[0]);
    close(pfd[1]);
    shmc_close(c);
    tu_destroy(name);
}

/* (e) An evictor killed after it moved a segment to EVICTING but before its
 * write-hazard check leaves EVICTING(dead owner).  The scan that takes such a
 * segment over must do that check too: while a live participant's write
 * hazard names the segment (a writer, perhaps stopped or ejected, may still
 * copy its item into it), the segment goes back to SEALED with its items
 * indexed; once no hazard names it, the takeover evicts and retires it. */
static int dead_owner_main(void *arg)
{
    const char *name = arg;
    shmc_t *c;
    tslot *t;
    if (shmc_open(name, NULL, &c) != SHMC_OK || slot_get(c, &t) != SHMC_OK)
        return 1;
    uint64_t owner = slot_owner(t);
    if (write(STDOUT_FILENO, &owner, sizeof owner) != (ssize_t)sizeof owner)
        return 1;
    _exit(0); /* dies holding its slot: the kernel marks it owner-died */
}

static void test_evicting_takeover_honours_hazard(void **state)
{
    fx *f = *state;
    struct shmc *c = f->c;
    /* Fill a few segments so that some are sealed. */
    char key[32], val[4096];
    memset(val, 'h', sizeof val);
    for (unsigned i = 0; i < 1024; i++) {
        int n = snprintf(key, sizeof key, "hz%u", i);
        assert_int_equal(shmc_set(c, key, (size_t)n, val, sizeof val, 0, 0), SHMC_OK);
    }
    uint32_t s = UINT32_MAX;
    for (uint32_t i = 0; i < c->nsegs && s == UINT32_MAX; i++)
        if (sw_state(atomic_load(&c->segs[i].state)) == SEG_SEALED &&
            (atomic_load(&c->segs[i].live) >> LIVE_SHIFT) > 0)
            s = i;
    assert_int_not_equal(s, UINT32_MAX);
    shmc_segmeta *m = &c->segs[s];
    uint64_t live_before = atomic_load(&m->live);

    /* A dead participant's owner id, from a child that exits holding its slot. */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        dup2(pfd[1], STDOUT_FILENO);
        _exit(dead_owner_main(f->name));
    }
    uint64_t dead = 0;
    assert_int_equal(read(pfd[0], &dead, sizeof dead), (ssize_t)sizeof dead);
    assert_int_equal(tu_wait(kid, 10000), 0);
    close(pfd[0]);
    close(pfd[1]);
    assert_false(owner_is_live(c, dead));

    tslot *t;
    assert_int_equal(slot_get(c, &t), SHMC_OK);
    /* Our write hazard names s, as a stopped writer's would. */
    atomic_store(&t->s->wseg, (uint64_t)s + 1);
    uint64_t sw = atomic_load(&m->state);
    assert_int_equal(sw_state(sw), SEG_SEALED);
    assert_true(atomic_compare_exchange_strong(&m->state, &sw, sw_make(SEG_EVICTING, dead)));
    alloc_recover(c, t);
    assert_int_equal(sw_state(atomic_load(&m->state)), SEG_SEALED);
    assert_int_equal(atomic_load(&m->live), live_before); /* nothing unlinked */
    uint32_t kl, vl;
    uint64_t off;
    bool indexed = false;
    for (uint64_t j = 0; j < c->nbuckets * SHMC_BUCKET_WAYS && !indexed; j++) {
        uint64_t w = atomic_load(&c->index[j]);
        shmc_item *it = item_at(c, w, &off);
        indexed = it && item_lens(c, it, &kl, &vl) && (off >> c->seg_shift) == s;
    }
    assert_true(indexed);

    /* Without the hazard, the same takeover empties and retires it, as a
     * compaction, which drops nothing: the segment is all live, more than
     * one compaction may copy (7/8 of a segment) and more than the write
     * heads may have room for, so a takeover moves what it can and puts the
     * segment back; a few writes open heads with room, and the next
     * takeover (the dead evictor's state again) goes on.  Every key the
     * segment held stays readable. */
    enum { MAXK = 64 };
    char keys[MAXK][16];
    size_t nk = 0;
    for (uint64_t j = 0; j < c->nbuckets * SHMC_BUCKET_WAYS; j++) {
        shmc_item *it = item_at(c, atomic_load(&c->index[j]), &off);
        if (it && item_lens(c, it, &kl, &vl) && (off >> c->seg_shift) == s && kl < 16 &&
            nk < MAXK) {
            memcpy(keys[nk], item_key(it), kl);
            keys[nk++][kl] = 0;
        }
    }
    assert_true(nk > 0);
    shmc_stats st0, st1;
    assert_int_equal(shmc_stats_get(c, &st0), SHMC_OK);
    atomic_store(&t->s->wseg, 0);
    uint32_t st = SEG_SEALED;
    for (unsigned pass = 0; pass < 8 && st == SEG_SEALED; pass++) {
        sw = atomic_load(&m->state);
        assert_true(atomic_compare_exchange_strong(&m->state, &sw, sw_make(SEG_EVICTING, dead)));
        alloc_recover(c, t);
        st = sw_state(atomic_load(&m->state));
        for (unsigned i = 0; st == SEG_SEALED && i < 4; i++) {
            int n = snprintf(key, sizeof key, "hz-room-%u-%u", pass, i);
            assert_int_equal(shmc_set(c, key, (size_t)n, val, sizeof val, 0, 0), SHMC_OK);
            st = sw_state(atomic_load(&m->state));
        }
    }
    assert_true(st == SEG_RETIRED || st == SEG_FREE);
    assert_int_equal(atomic_load(&m->live) >> LIVE_SHIFT, 0);
    for (size_t i = 0; i < nk; i++) {
        shmc_status gs = shmc_exists(c, keys[i], strlen(keys[i]));
        if (gs != SHMC_OK)
            fail_msg("%s, held by the segment taken over: %s", keys[i], shmc_strerror(gs));
    }
    assert_int_equal(shmc_stats_get(c, &st1), SHMC_OK);
    assert_true(st1.compacted > st0.compacted);
    shmc_verify_report vr;
    assert_int_equal(shmc_verify(c, &vr), SHMC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigkill_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_reader_in_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_running_reader_in_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_reader_outside_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_mid_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_under_sigkill, setup, teardown),
        cmocka_unit_test(test_slots_run_out_and_come_back),
        cmocka_unit_test_setup_teardown(test_evicting_takeover_honours_hazard, setup, teardown),
    };
    return cmocka_run_group_tests_name("shmcache crash recovery", tests, NULL, NULL);
}
