/*
 * internal.h — private declarations shared by the layers of lib/.
 * Nothing here is part of the public API; symbols are hidden in the shared
 * library.  White-box tests include it (built with SHMC_TESTING).
 */
#ifndef SHMC_INTERNAL_H
#define SHMC_INTERNAL_H

#include "shmcache.h"
#include "layout.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu/arch.h>
#include <urcu/compiler.h>

#define HIDDEN __attribute__((visibility("hidden")))

/* A process-local handle on a mapped segment. */
struct shmc {
    uint8_t *base;               /* mapping base */
    uint64_t size;               /* mapping length */
    int fd;                      /* holds flock(LOCK_SH) for the handle's life */
    shmc_hdr *hdr;
    shmc_slot *slots;
    shmc_stripe *stripes;
    shmc_centry *coord;          /* lock/flight table */
    shmc_head *heads;
    shmc_segmeta *segs;
    _Atomic uint64_t *index;     /* nbuckets * SHMC_BUCKET_WAYS words */
    uint8_t *data;
    /* copies of creation parameters (validated; never re-read from shm) */
    uint64_t seg_size, data_bytes, nbuckets, hash_seed;
    uint32_t seg_shift, nsegs, nslots, nheads, max_key, max_value, ncoord;
    bool membarrier;             /* this process registered for membarrier */
    bool seg_membarrier;         /* the segment runs in membarrier mode */
    pthread_key_t tkey;          /* per-thread participant record */
    _Atomic int refs;            /* 1 for the handle + 1 per thread slot held */
    _Atomic int closed;
    uint64_t id;                 /* process-unique handle id */
    bool prefault;               /* opened with SHMC_OPEN_PREFAULT */
    _Atomic int prefaulted_pid;  /* the process whose page tables hold it all */
    /* Storage segments this process has mapped in (populated) for writing,
     * one bit each (NULL: not tracked); valid for fork generation pop_gen. */
    _Atomic uint64_t *pop_bits;
    _Atomic uint64_t pop_gen;
};

/* Per-(thread, handle) participant record. */
typedef struct tslot {
    struct shmc *c;
    shmc_slot *s;
    uint32_t idx;
    uint64_t gen;
    uint64_t fork_gen;           /* process fork generation it was taken in */
    uint32_t depth;              /* read-section nesting */
    /* Locks and fills this thread holds, by hold record (see coord.c). */
    uint32_t hold_mask;
    uint32_t hold_entry[SHMC_HOLDS];
    uint64_t hold_token[SHMC_HOLDS];
    uint32_t hold_last[SHMC_HOLDS];  /* entry + 1 each record last served */
    uint64_t hold_used[SHMC_HOLDS];  /* when (hold_clock) it was last taken */
    uint64_t hold_clock;
} tslot;

_Static_assert(SHMC_HOLDS == SHMC_MAX_HOLDS, "hold records match the public limit");

/* ---- util.c ---- */
HIDDEN uint64_t now_ms(void);
HIDDEN uint64_t hash_key(uint64_t seed, const void *key, size_t len);
HIDDEN int robust_mutex_init(pthread_mutex_t *m);
/* A robust, error-checking mutex (relocking by its owner fails, not hangs). */
HIDDEN int hold_mutex_init(pthread_mutex_t *m);
HIDDEN uint64_t random_seed(void);
/* Whether a mutex of the segment still has the kind robust_mutex_init
 * (hold = false) or hold_mutex_init (hold = true) gave it (see util.c). */
HIDDEN bool mutex_kind_ok(const pthread_mutex_t *m, bool hold);
/* pthread_mutex_clocklock on CLOCK_MONOTONIC until `deadline` (now_ms()
 * time): 0, EOWNERDEAD, ETIMEDOUT or another error. */
HIDDEN int mutex_lock_until(pthread_mutex_t *m, uint64_t deadline);
/* Locks a robust mutex of the segment, waiting at most wait_ms: another
 * process, or damage, can leave it held for ever, and no call may hang.  A
 * holder that no longer exists is treated as dead (see util.c).  Returns 0,
 * EOWNERDEAD (the caller makes it consistent), ETIMEDOUT or another error. */
HIDDEN int mutex_lock_bounded(pthread_mutex_t *m, uint64_t wait_ms);
/* When m's futex word names a holder thread that no longer exists (and the
 * kernel did not mark it owner-died), marks it as the kernel marks a dead
 * holder's mutex, so the next locker gets EOWNERDEAD.  One kill(tid, 0).
 * Returns whether it marked the mutex (see util.c). */
HIDDEN bool mutex_mark_vanished(pthread_mutex_t *m);
/* Fuzz builds (fuzz/meson.build) wait out every bound 50 times sooner, so
 * that an input which makes a call wait its whole bound (a lock that looks
 * held by a live thread, a reader that looks stalled) costs milliseconds,
 * not seconds.  The logic is the same. */
#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#define BOUND_MS(ms) ((ms) / 50u)
#else
#define BOUND_MS(ms) (ms)
#endif
/* How long a per-key (stripe) lock or the lock table's claim lock is waited
 * for: their holders keep them for microseconds, so this is a holder that is
 * stopped (SIGSTOP, a debugger) or a damaged mutex. */
#define LOCK_WAIT_MS BOUND_MS(10000u)

/* ---- segment.c ---- */
HIDDEN shmc_status validate_name(const char *name, char *path, size_t pathlen);
HIDDEN uint64_t layout_hash(void);
/* With SHMC_OPEN_PREFAULT: maps the whole segment into this process, once
 * per process (a child that inherited the handle does it on first use). */
HIDDEN void segment_prefault(struct shmc *c);
/* Maps storage segment `seg` into this process for writing, in one call
 * (MADV_POPULATE_WRITE): the first writes into a segment otherwise fault
 * once per 4 KiB page, in every process.  Best effort. */
HIDDEN void segment_populate(struct shmc *c, uint32_t seg);

/* ---- slots.c ---- */
/* The calling thread's participant record on c (taking a slot on first use). */
HIDDEN shmc_status slot_get(struct shmc *c, tslot **out);
/* slot_get for calls that open read sections of their own (whole-cache
 * walks): SHMC_EINVAL when called from inside one (a callback). */
HIDDEN shmc_status slot_get_outside(struct shmc *c, tslot **out);
HIDDEN void slot_release(tslot *t);
/* Checks whether slot i is owned by a live thread; reaps it if its owner died.
 * Returns true when live. */
HIDDEN bool slot_check_live(struct shmc *c, uint32_t i);
/* slot_check_live that also looks whether the owner thread named in the
 * slot's mutex still exists (a syscall): for the rare paths that ask about a
 * slot that holds things back for long (a stalled reader) and for
 * introspection, never for every scan. */
HIDDEN bool slot_check_live_thorough(struct shmc *c, uint32_t i);
/* Owner id of a participant: (slot gen & 0xffffffff) << 16 | (index + 1). */
HIDDEN uint64_t slot_owner(const tslot *t);
HIDDEN bool owner_is_live(struct shmc *c, uint64_t owner);
HIDDEN void tslot_destructor(void *p);
HIDDEN void handle_unref(struct shmc *c);

/* ---- epoch.c ---- */
HIDDEN void read_enter(struct shmc *c, tslot *t);
HIDDEN void read_exit(struct shmc *c, tslot *t);
/* Whether memory reached in the current read section still means what it
 * meant when it was reached: a thread that writes into an item's bytes in
 * place (the counter cells below) checks this after reading them and before
 * its write.  Always true here: issue 16 (stalled readers are ejected, and
 * their memory reused, after a few ms) gives it its meaning. */
static inline bool read_section_valid(struct shmc *c, tslot *t)
{
    (void)c, (void)t;
    return true;
}
/* Heavy side of the grace period: makes every reader's epoch store visible. */
HIDDEN bool heavy_barrier(struct shmc *c);
/* Smallest epoch of any live reader (reaping dead ones); UINT64_MAX if none.
 * `self` (may be NULL) is ignored. */
HIDDEN uint64_t min_reader_epoch(struct shmc *c, const tslot *self);
HIDDEN void membarrier_setup(struct shmc *c);
/* Whether a live participant whose reader epoch is at or below `horizon`
 * (one that holds reclamation back) is stopped (SIGSTOP, a debugger) or
 * cannot be inspected, as opposed to merely waiting for a CPU. */
HIDDEN bool readers_stalled(struct shmc *c, const tslot *self, uint64_t horizon);
HIDDEN uint32_t membarrier_supported(void);

/* ---- cache.c ---- */
/* shmc_get_alloc that also returns the item's expiry (monotonic ms, 0 = never). */
HIDDEN shmc_status get_alloc_expire(shmc_t *c, const void *key, size_t klen, void **val,
                                    size_t *vlen, uint32_t *flags, uint64_t *expire);

/* ---- coord.c ---- */
/* Releases every lock and fill the thread holds (thread detach, close). */
HIDDEN void coord_release_all(struct shmc *c, tslot *t);
/* Frees the entries a dead slot's thread owned (called when it is reaped,
 * before the slot can be reused). */
HIDDEN void coord_reap(struct shmc *c, uint32_t slot);
/* How many entries slot's hold records own now (introspection). */
HIDDEN uint32_t coord_holds(struct shmc *c, uint32_t slot);

/* ---- robust locks ---- */
HIDDEN shmc_status stripe_lock(struct shmc *c, uint32_t stripe);
HIDDEN void stripe_unlock(struct shmc *c, uint32_t stripe);

/* ---- alloc.c ---- */
/* Reserves `size` bytes (multiple of 8) in an open segment.  Must be called
 * with the thread inside a read section (read_enter); may leave and re-enter
 * it internally while making room.  On SHMC_OK *off is the data offset. */
HIDDEN shmc_status alloc_item(struct shmc *c, tslot *t, uint64_t size, uint64_t *off);
/* The fast path of alloc_item only: false when the head is full.  Never
 * waits, so it may be called under a stripe lock. */
HIDDEN bool alloc_in_head(struct shmc *c, tslot *t, uint64_t size, uint64_t *off);
/* One recovery pass over the segments (outside any read section): takes over
 * what dead participants held and frees retired segments past their grace. */
HIDDEN void alloc_recover(struct shmc *c, tslot *t);
HIDDEN void seg_dec_live(struct shmc *c, uint64_t off, uint64_t bytes);
HIDDEN void seg_inc_live(struct shmc *c, uint64_t off, uint64_t bytes, uint64_t expire);

/* ---- index.c ---- */
typedef struct keyhash {
    uint64_t h;
    uint64_t b1, b2;             /* bucket numbers */
    uint16_t tag;
    uint32_t stripe;
} keyhash;

HIDDEN void keyhash_of(struct shmc *c, const void *key, size_t klen, keyhash *kh);
/* Validates an index word; returns the item or NULL (bad offset / malformed). */
HIDDEN shmc_item *item_at(struct shmc *c, uint64_t word, uint64_t *off_out);
static inline uint64_t item_total(uint32_t klen, uint32_t vlen)
{
    return (sizeof(shmc_item) + (uint64_t)klen + vlen + 7u) & ~7ull;
}
/* Finds the index word for key.  Returns a pointer to the word (and its value
 * in *word) or NULL. */
HIDDEN _Atomic uint64_t *index_find(struct shmc *c, const keyhash *kh, const void *key,
                                    size_t klen, uint64_t *word, shmc_item **item);
/* Starts loading the key's buckets and its likely item, without waiting for
 * them: for writers, which have work of their own to do before index_find. */
HIDDEN void index_prefetch(struct shmc *c, const keyhash *kh);
/* Publishes `newword` for a key not present in the index: takes an empty way
 * in either bucket, or evicts the oldest entry of the two buckets. */
HIDDEN void index_insert(struct shmc *c, tslot *t, const keyhash *kh, uint64_t newword);
HIDDEN uint64_t make_word(uint16_t tag, uint64_t off);
/* Removes every index entry pointing into data range [lo, hi) by a scan of the
 * whole index (fallback after a crash left counters high). */
HIDDEN uint64_t index_purge_range(struct shmc *c, tslot *t, uint64_t lo, uint64_t hi);
/* Removes the entry `word` for the item at `off` if present. */
HIDDEN bool index_unlink_item(struct shmc *c, tslot *t, shmc_item *it, uint64_t off);

/* ---- in-place counters (cells; cache.c) ----
 * A counter item (ITEM_KIND_CELL_*) keeps its number and its CAS token in a
 * 16-byte cell {value, token}, on a cache line of its own (the first 64-byte
 * boundary at or after the value's start; CELL_VLEN value bytes always hold
 * it).  incr/decr change both with one 16-byte CAS, in place.  Tokens are
 * unique and never come back at one place, so a CAS from a state read
 * earlier fails if anything changed meanwhile, including the memory being
 * reused.  CELL_FROZEN in the token stops in-place updates for good: whoever
 * moves, replaces or unlinks a counter item freezes its cell first, and an
 * incrementer that finds it frozen takes the locked path.  A frozen cell
 * still reads as (value, token & ~CELL_FROZEN). */
typedef unsigned __int128 cell_t;
#define CELL_VLEN 79u
#define CELL_FROZEN (1ull << 63)

static inline bool item_is_cell(const shmc_item *it)
{
    return it->kind == ITEM_KIND_CELL_DEC || it->kind == ITEM_KIND_CELL_BIN;
}
/* The cell of a cell item (item_at checked that vlen == CELL_VLEN, so it
 * lies inside the item; the data area is page-aligned, so this is 16-byte
 * aligned in every mapping). */
static inline cell_t *item_cell(shmc_item *it)
{
    uintptr_t v = (uintptr_t)((uint8_t *)(it + 1) + it->klen);
    return (cell_t *)((v + 63) & ~(uintptr_t)63);
}
static inline cell_t cell_make(uint64_t value, uint64_t token)
{
    return ((cell_t)token << 64) | value;
}
static inline uint64_t cell_val(cell_t x) { return (uint64_t)x; }
static inline uint64_t cell_tok(cell_t x) { return (uint64_t)(x >> 64); }
/* One 16-byte CAS (a full barrier); returns the cell as it was. */
static inline cell_t cell_cas(cell_t *p, cell_t expect, cell_t want)
{
    return __sync_val_compare_and_swap(p, expect, want);
}
/* The cell's state, read without writing (readers): token, value, token
 * again, until both token reads agree.  A token never comes back at one
 * place, so the value read between them belongs to that token. */
static inline cell_t cell_read(cell_t *p)
{
    uint64_t *w = (uint64_t *)p;
    for (;;) {
        uint64_t t1 = __atomic_load_n(&w[1], __ATOMIC_ACQUIRE);
        uint64_t v = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE);
        uint64_t t2 = __atomic_load_n(&w[1], __ATOMIC_ACQUIRE);
        if (t1 == t2)
            return cell_make(v, t1);
    }
}
/* The CAS token of an item: its cell's (unfrozen) for a counter. */
static inline uint64_t item_token(shmc_item *it)
{
    return item_is_cell(it) ? cell_tok(cell_read(item_cell(it))) & ~CELL_FROZEN : it->cas;
}
/* Freezes a counter item's cell (no-op for other items) so that no in-place
 * update lands on it any more; returns false, having written nothing, if
 * the read section is no longer valid (see read_section_valid). */
HIDDEN bool cell_freeze(struct shmc *c, tslot *t, shmc_item *it);
/* Copies an item (total bytes) for a mover (second chance, compaction):
 * freezes a counter's cell first and gives the copy the cell's value and
 * token, so no increment is lost; copies around `accessed`. */
HIDDEN bool item_move_copy(struct shmc *c, tslot *t, shmc_item *from, shmc_item *to,
                           uint64_t total);

/* ---- stats ---- */
#define STAT_ADD(t, field, n) \
    atomic_store_explicit(&(t)->s->field, \
        atomic_load_explicit(&(t)->s->field, memory_order_relaxed) + (n), memory_order_relaxed)

#ifdef SHMC_TESTING
/* Test hooks: hold a read section open (for stalled-reader tests). */
shmc_status shmc__test_read_enter(struct shmc *c);
void shmc__test_read_exit(struct shmc *c);
#endif

#endif
