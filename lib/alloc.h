/*
 * alloc.h — storage segments (alloc.c): append allocation, sealing,
 * eviction, expiry and RCU reclamation.
 *
 * Owns: the heads, and each segment's wpos, state, epoch and seq words.
 * Invariants:
 *  - A segment moves FREE -> RESERVED -> OPEN -> SEALING -> SEALED ->
 *    EVICTING -> RETIRED -> FREE (layout.h: enum seg_state), each step one
 *    CAS on its state word; transient states name their owner
 *    (words.h: sw_*), so a dead owner's segment is taken over by any scan.
 *  - A SEALED segment is evicted only once no live participant shows an
 *    epoch below its seal epoch; a RETIRED one is reused only once none
 *    shows an epoch below its retire epoch.
 * Calls epoch.c, index.c, slots.c and util.c.
 */
#ifndef SHMC_ALLOC_H
#define SHMC_ALLOC_H

#include "handle.h"

/* Reserves `size` bytes (multiple of 8) in an open segment.  Inside a read
 * section, holding no stripe lock; may leave and re-enter the section while
 * making room.  On SHMC_OK *off is the data offset. */
HIDDEN shmc_status alloc_item(struct shmc *c, tslot *t, uint64_t size, uint64_t *off);
/* The fast path of alloc_item only: false when the head is full.  Never
 * waits, so it may be called under a stripe lock (inside a read section). */
HIDDEN bool alloc_in_head(struct shmc *c, tslot *t, uint64_t size, uint64_t *off);
/* One recovery pass over the segments: takes over what dead participants
 * held and frees retired segments past their grace.  Outside any read section. */
HIDDEN void alloc_recover(struct shmc *c, tslot *t);
/* Clears the thread's write hazard (after its item is published or given
 * up): from then on its segment may be evicted without waiting for it.
 * alloc_item and alloc_in_head set it (alloc.c: wseg_set). */
static inline void wseg_clear(tslot *t)
{
    atomic_store_explicit(&t->s->wseg, 0, memory_order_release);
}

#ifdef SHMC_TESTING
/* Called when a segment about to be retired is still named by an index word
 * (a broken invariant: readers could follow it into reused memory). */
extern void (*shmc__test_retire_hook)(uint32_t seg, uint64_t word, uint64_t live);
#endif

#endif
