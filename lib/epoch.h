/*
 * epoch.h — cross-process RCU (epoch.c): read sections and grace periods.
 *
 * Owns: hdr->epoch (the global epoch) and each slot's reader epoch word.
 * Invariants:
 *  - A thread inside a read section shows an epoch != 0 in its slot, no
 *    later than any index or item load of the section (fence or membarrier).
 *  - Memory unlinked at global epoch t is reused only once every live
 *    participant shows 0 or an epoch >= t (min_reader_epoch > t - 1).
 *  - Read sections nest (tslot.depth); only the outermost publishes.
 *  - A section that held reclamation back for EJECT_MS while a writer needed
 *    memory may be ejected: one CAS e -> e | EPOCH_EJECTED on its word, after
 *    which grace periods are computed without it.  Its owner sees that in
 *    read_section_valid() and discards what it read (docs/design.md,
 *    "Neutralisation").
 * Calls slots.c (liveness of the readers it finds) only.
 */
#ifndef SHMC_EPOCH_H
#define SHMC_EPOCH_H

#include "handle.h"

/* A slot's epoch word with this bit set: a writer ejected that read section
 * (it held reclamation back for EJECT_MS) and reclaims memory without it.
 * The owner's next read_enter() stores a fresh epoch, which clears it. */
#define EPOCH_EJECTED (1ull << 63)

/* Enter / leave a read section.  Any context; nestable.  Inline: every
 * operation enters one, and a call each way was ~10% of a get's
 * instructions (perf17 branch, callgrind). */
static inline void read_enter(struct shmc *c, tslot *t)
{
    if (t->depth++)
        return;
    /* (A damaged header's epoch could carry EPOCH_EJECTED: a section would
     * then start ejected, and every validated read retry for ever.) */
    uint64_t e = atomic_load_explicit(&c->hdr->epoch, memory_order_acquire) & ~EPOCH_EJECTED;
    atomic_store_explicit(&t->s->epoch, e, memory_order_relaxed);
    /* Our epoch store is visible before any load of the section: a full
     * fence, or in membarrier mode a compiler barrier paired with the
     * writer's heavy_barrier() (membarrier) before it reads the slots. */
    if (caa_likely(c->membarrier))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}
static inline void read_exit(struct shmc *c, tslot *t)
{
    (void)c;
    if (--t->depth)
        return;
    /* Release: every load of the section is done before the slot reads 0
     * (paired with the acquire load of the grace-period scan). */
    atomic_store_explicit(&t->s->epoch, 0, memory_order_release);
}
/* Whether the calling thread's current read section has not been ejected:
 * when true, every load the thread made since read_enter() saw memory that
 * no writer had reused yet, so what it copied is what was published.  All
 * loads before the call are ordered before its own load (an acquire fence:
 * a compiler barrier on x86).  Costs one load of the thread's own slot line.
 * Call it after copying out and before acting on what was read; when false,
 * discard the copy and retry in a fresh section (read_renew). */
static inline bool read_section_valid(struct shmc *c, tslot *t)
{
    (void)c;
    atomic_thread_fence(memory_order_acquire);
    return !(atomic_load_explicit(&t->s->epoch, memory_order_relaxed) & EPOCH_EJECTED);
}
/* Leaves the current (outermost) section and enters a fresh one, keeping the
 * nesting depth: the retry step after an ejection. */
HIDDEN void read_renew(struct shmc *c, tslot *t);
/* Heavy side of the grace period: makes every reader's epoch store visible
 * (membarrier, or fences).  Any context. */
HIDDEN bool heavy_barrier(struct shmc *c);
/* Smallest epoch of any live reader that is not ejected (reaping dead ones);
 * UINT64_MAX if none.  `self` (may be NULL) is ignored.  Any context. */
HIDDEN uint64_t min_reader_epoch(struct shmc *c, const tslot *self);
/* Notes every other slot's epoch word in seen[nslots] (a writer's wait begins). */
HIDDEN void stall_snapshot(struct shmc *c, const tslot *self, uint64_t *seen);
/* Ejects every slot whose epoch word is still the non-zero, non-ejected
 * value seen[] holds and is below `below` (a section that has lasted at
 * least `stalled_ms`): one CAS each.  Returns how many were ejected.  Only
 * on the slow path of a writer that cannot get memory. */
HIDDEN uint32_t eject_stalled(struct shmc *c, tslot *self, const uint64_t *seen,
                              uint64_t below, uint64_t stalled_ms);
/* Registers the process for membarrier; whether the kernel offers it
 * (segment creation decides the segment's mode with it). */
HIDDEN uint32_t membarrier_supported(void);
/* Sets c->seg_membarrier / c->membarrier at open. */
HIDDEN void membarrier_setup(struct shmc *c);

#ifdef SHMC_TESTING
/* Test hooks: hold a read section open (for stalled-reader tests). */
shmc_status shmc__test_read_enter(struct shmc *c);
void shmc__test_read_exit(struct shmc *c);
#endif

#endif
