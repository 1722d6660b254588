/*
 * handle.h — the process-local side: the handle on a mapped segment
 * (struct shmc) and the per-(thread, handle) participant record (tslot).
 * handle.c owns the handle's lifetime (its reference count) and prefaulting;
 * it calls no other lib/ file.
 */
#ifndef SHMC_HANDLE_H
#define SHMC_HANDLE_H

#include "layout.h"
#include "util.h"

struct tslot;

/* A process-local handle on a mapped segment.  Every pointer is derived
 * from the validated geometry (segment.c), never read from shared memory. */
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
    /* Second chance tried to move an item to the main head (alloc.c,
     * probation) since this process last replaced it: only then does a
     * writer open a main segment, so a cache whose items are never read
     * keeps no empty one open. */
    _Atomic bool main_wanted;
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
    /* Hooks of the lock table (coord.c, set by coord_bind at open), so that
     * slots.c frees a participant's lock-table holds without calling up:
     * on_reap when a dead slot is reaped, before it can be reused;
     * on_release when a live thread gives its slot up. */
    void (*on_reap)(struct shmc *c, uint32_t slot);
    void (*on_release)(struct shmc *c, struct tslot *t);
};

/* Per-(thread, handle) participant record; process-local, owned by its thread. */
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
    uint64_t *stall_seen;        /* per-slot epochs seen when a wait began (alloc.c) */
} tslot;

/* Drops one reference; the last one unmaps and frees the handle.  Outside
 * any read section. */
HIDDEN void handle_unref(struct shmc *c);
/* With SHMC_OPEN_PREFAULT: maps the whole segment into this process, once
 * per process (a child that inherited the handle does it on first use).
 * Any context; best effort. */
HIDDEN void handle_prefault(struct shmc *c);
/* Maps storage segment `seg` into this process for writing, in one call
 * (MADV_POPULATE_WRITE): the first writes into a segment otherwise fault
 * once per 4 KiB page, in every process.  Any context; best effort. */
HIDDEN void handle_populate_segment(struct shmc *c, uint32_t seg);

/* Adds n to one of the calling participant's statistic counters (a row of
 * SHMC_STATS_FIELDS with source `slot`).  Only the slot's owner writes it. */
#define STAT_ADD(t, field, n) \
    atomic_store_explicit(&(t)->s->st.field, \
        atomic_load_explicit(&(t)->s->st.field, memory_order_relaxed) + (n), memory_order_relaxed)

#endif
