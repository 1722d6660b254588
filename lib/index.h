/*
 * index.h — key -> item lookup (index.c), the per-key stripe locks that
 * serialise its writers, and the per-segment count of its entries.
 *
 * Owns: the index words (words.h: iw_*), the stripe locks, and each
 * segment's `live` and `max_expire` words (segmeta).
 * Invariants:
 *  - Each key has two candidate buckets; a key is in at most one way of
 *    them.  Writers of one key hold its stripe lock, so a key is never
 *    inserted twice; evictors of other keys only ever CAS words to 0.
 *  - A word is validated (range, alignment, item header, lengths) before
 *    the item it names is used (item_at): a bad word is skipped.
 *  - A segment's live count is raised before an entry pointing into it is
 *    published and lowered after the entry is unlinked: never under-counted.
 * Contexts: readers are inside a read section (epoch.h); writers are inside
 * a read section and hold the key's stripe lock unless said otherwise.
 * Calls only util.c.
 */
#ifndef SHMC_INDEX_H
#define SHMC_INDEX_H

#include "handle.h"

/* max_expire is kept coarse (rounded up to this) so that it changes rarely. */
#define EXPIRE_ROUND_MS 1024u

typedef struct keyhash {
    uint64_t h;
    uint64_t b1, b2;             /* bucket numbers */
    uint16_t tag;
    uint32_t stripe;
} keyhash;

static inline uint64_t item_total(uint32_t klen, uint32_t vlen)
{
    return (sizeof(shmc_item) + (uint64_t)klen + vlen + 7u) & ~7ull;
}

/* Any context. */
HIDDEN void keyhash_of(struct shmc *c, const void *key, size_t klen, keyhash *kh);
/* Validates an index word; returns the item or NULL (bad offset / malformed).
 * Inside a read section. */
HIDDEN shmc_item *item_at(struct shmc *c, uint64_t word, uint64_t *off_out);
/* Finds the index word for key.  Returns a pointer to the word (and its value
 * in *word, its item in *item) or NULL.  Inside a read section. */
HIDDEN _Atomic uint64_t *index_find(struct shmc *c, const keyhash *kh, const void *key,
                                    size_t klen, uint64_t *word, shmc_item **item);
/* Publishes `newword` for a key not present in the index: takes an empty way
 * in either bucket, or evicts the oldest entry of the two buckets.  Inside a
 * read section, under the key's stripe lock. */
HIDDEN void index_insert(struct shmc *c, tslot *t, const keyhash *kh, uint64_t newword);
/* Removes every index entry pointing into data range [lo, hi) by a scan of the
 * whole index (fallback after a crash left counters high).  Inside a read
 * section; no stripe lock (only CASes words to 0). */
HIDDEN uint64_t index_purge_range(struct shmc *c, uint64_t lo, uint64_t hi);
/* Removes the entry for the item at `off` if present.  Inside a read
 * section; no stripe lock (CAS to 0 from the exact word). */
HIDDEN bool index_unlink_item(struct shmc *c, shmc_item *it, uint64_t off);

/* The segment of data offset `off` gains / loses one entry of `bytes` bytes
 * (and, gaining, an expiry: 0 = never).  Any context. */
HIDDEN void seg_inc_live(struct shmc *c, uint64_t off, uint64_t bytes, uint64_t expire);
HIDDEN void seg_dec_live(struct shmc *c, uint64_t off, uint64_t bytes);

/* The stripe (per-key writer) lock: robust, bounded (LOCK_WAIT_MS).  A dead
 * holder needs no repair (every step under it leaves the index valid).
 * Taken inside or outside a read section; never wait for memory under it
 * (alloc.h: only alloc_in_head). */
HIDDEN shmc_status stripe_lock(struct shmc *c, uint32_t stripe);
HIDDEN void stripe_unlock(struct shmc *c, uint32_t stripe);

#endif
