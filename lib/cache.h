/*
 * cache.h — the key/value operations (cache.c: shmc_get/set/... of
 * shmcache.h).  Owns no shared state of its own: it composes the index,
 * the stripe locks and the allocator.  Every public call takes the thread's
 * slot, runs inside a read section and takes the key's stripe lock to write.
 * Calls alloc.c, epoch.c, index.c, slots.c and util.c.
 */
#ifndef SHMC_CACHE_H
#define SHMC_CACHE_H

#include "handle.h"

/* shmc_get_alloc that also returns the item's expiry (monotonic ms, 0 =
 * never).  Outside any read section (it opens its own). */
HIDDEN shmc_status get_alloc_expire(shmc_t *c, const void *key, size_t klen, void **val,
                                    size_t *vlen, uint32_t *flags, uint64_t *expire);

#ifdef SHMC_TESTING
/* Called by a write with its item written (under its write hazard) and its
 * key's stripe lock held, just before it publishes: a test stops there. */
extern void (*shmc__test_publish_hook)(const void *key, size_t klen);
/* Called by a write with its item written, before it takes its key's
 * stripe lock: a test changes the key there. */
extern void (*shmc__test_prelock_hook)(const void *key, size_t klen);
/* Called by a write with its room allocated, before it writes anything
 * there.  Returning true makes the write stop as a writer killed at that
 * point would (room taken, nothing written by it or published, its write
 * hazard gone); the hook may first write into the room what the segment's
 * earlier life could have left there. */
extern bool (*shmc__test_alloc_hook)(void *room, uint64_t bytes);
/* Called by a delete with the key's entry unlinked, before it lowers the
 * count of the entry's segment: a test stops there. */
extern void (*shmc__test_unlinked_hook)(const void *key, size_t klen);
#endif

#endif
