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
 * Calls slots.c (liveness of the readers it finds) only.
 */
#ifndef SHMC_EPOCH_H
#define SHMC_EPOCH_H

#include "handle.h"

/* Enter / leave a read section.  Any context; nestable. */
HIDDEN void read_enter(struct shmc *c, tslot *t);
HIDDEN void read_exit(struct shmc *c, tslot *t);
/* Whether memory reached in the current read section still means what it
 * meant when it was reached: a thread that writes into an item's bytes in
 * place (the counter cells of index.h) checks this after reading them and
 * before its write.  Always true here: issue 16 (stalled readers are
 * ejected, and their memory reused, after a few ms) gives it its meaning. */
static inline bool read_section_valid(struct shmc *c, tslot *t)
{
    (void)c, (void)t;
    return true;
}
/* Heavy side of the grace period: makes every reader's epoch store visible
 * (membarrier, or fences).  Any context. */
HIDDEN bool heavy_barrier(struct shmc *c);
/* Smallest epoch of any live reader (reaping dead ones); UINT64_MAX if none.
 * `self` (may be NULL) is ignored.  Any context. */
HIDDEN uint64_t min_reader_epoch(struct shmc *c, const tslot *self);
/* Whether a live participant whose reader epoch is at or below `horizon`
 * (one that holds reclamation back) is stopped (SIGSTOP, a debugger) or
 * cannot be inspected, as opposed to merely waiting for a CPU.  Reads /proc:
 * only on the slow path of a writer that cannot get memory. */
HIDDEN bool readers_stalled(struct shmc *c, const tslot *self, uint64_t horizon);
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
