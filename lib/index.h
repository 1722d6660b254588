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
#include "item.h"

/* max_expire is kept coarse (rounded up to this) so that it changes rarely. */
#define EXPIRE_ROUND_MS 1024u

typedef struct keyhash {
    uint64_t h;
    uint64_t b1, b2;             /* bucket numbers */
    uint16_t tag;
    uint32_t stripe;
} keyhash;

/* CAS of an index word from the item `*ow` names to `nw`: succeeds while the
 * word names that item, whatever its accessed mark (readers set it at any
 * time).  On failure *ow holds the current word. */
static inline bool iw_cas(_Atomic uint64_t *p, uint64_t *ow, uint64_t nw)
{
    uint64_t want = *ow;
    for (;;) {
        if (atomic_compare_exchange_strong_explicit(p, ow, nw, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return true;
        if (!iw_same(*ow, want))
            return false;
    }
}

/* Marks the item the index word *p names as read (second chance), if the
 * word still names it: never a store into storage. */
static inline void iw_mark_accessed(_Atomic uint64_t *p, uint64_t w)
{
    if (!(w & IW_ACC))
        atomic_compare_exchange_strong_explicit(p, &w, w | IW_ACC, memory_order_relaxed,
                                                memory_order_relaxed);
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
/* Starts loading the key's buckets and its likely item, without waiting for
 * them: for writers, which have work of their own before index_find.
 * Inside a read section. */
HIDDEN void index_prefetch(struct shmc *c, const keyhash *kh);
/* Publishes `newword` for a key not present in the index: takes an empty way
 * in either bucket, or evicts the oldest entry of the two buckets.  Inside a
 * read section, under the key's stripe lock. */
HIDDEN void index_insert(struct shmc *c, tslot *t, const keyhash *kh, uint64_t newword);
#ifdef SHMC_TESTING
/* Called by index_insert when both buckets are full, before it evicts the
 * oldest entry: a test ejects the caller's section there. */
extern void (*shmc__test_victim_hook)(struct shmc *c, tslot *t);
#endif
/* Removes every index entry pointing into data range [lo, hi) by a scan of the
 * whole index (fallback after a crash left counters high).  Inside a read
 * section; no stripe lock (only CASes words to 0). */
HIDDEN uint64_t index_purge_range(struct shmc *c, tslot *t, uint64_t lo, uint64_t hi);
/* Removes the entry for the item at `off` if present.  Inside a read
 * section; no stripe lock (CAS to 0 from the exact word). */
HIDDEN bool index_unlink_item(struct shmc *c, tslot *t, shmc_item *it, uint64_t off);

/* ---- in-place counters (cells) ----
 * A counter item (ITEM_KIND_CELL_*) keeps its number and its CAS token in a
 * 16-byte cell {value, token}, on a cache line of its own (the first 64-byte
 * boundary at or after the value's start; CELL_VLEN value bytes always hold
 * it).  incr/decr change both with one 16-byte CAS, in place (cache.c).
 * Tokens are unique and never come back at one place, so a CAS from a state
 * read earlier fails if anything changed meanwhile, including the memory
 * being reused.  CELL_FROZEN in the token stops in-place updates for good:
 * whoever moves, replaces or unlinks a counter item freezes its cell first,
 * and an incrementer that finds it frozen takes the locked path.  A frozen
 * cell still reads as (value, token & ~CELL_FROZEN). */
typedef unsigned __int128 cell_t;
#define CELL_VLEN 79u
#define CELL_FROZEN (1ull << 63)

static inline bool item_is_cell(const shmc_item *it)
{
    uint8_t k = item_kind(it);
    return k == ITEM_KIND_CELL_DEC || k == ITEM_KIND_CELL_BIN;
}
/* The cell of a cell item (item_at checked that vlen == CELL_VLEN, so it
 * lies inside the item; the data area is page-aligned, so this is 16-byte
 * aligned in every mapping). */
static inline cell_t *item_cell(const struct shmc *c, shmc_item *it)
{
    /* The key's place and length are read once and the cell bounded by the
     * data area: in a section that was ejected the item's bytes may be
     * reused (epoch.h), and then the cell read is garbage that validation
     * discards, never a fault.  A valid section never sees the fallback
     * (item_at checked the item). */
    const uint8_t *key = item_key(it);
    uint32_t k = item_klen(it);
    uintptr_t v = (uintptr_t)(key + k);
    v = (v + 63) & ~(uintptr_t)63;
    if (v + sizeof(cell_t) > (uintptr_t)(c->data + c->data_bytes))
        return (cell_t *)c->data;
    return (cell_t *)v;
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
static inline uint64_t item_token(const struct shmc *c, shmc_item *it)
{
    return item_is_cell(it) ? cell_tok(cell_read(item_cell(c, it))) & ~CELL_FROZEN : item_cas(it);
}
/* Freezes a counter item's cell (no-op for other items) so that no in-place
 * update lands on it any more; returns false, having written nothing, if
 * the read section is no longer valid (epoch.h: read_section_valid).
 * Inside a read section. */
HIDDEN bool cell_freeze(struct shmc *c, tslot *t, shmc_item *it);
/* Copies an item (total bytes) for a mover (second chance, compaction):
 * freezes a counter's cell first and gives the copy the cell's value and
 * token, so no increment is lost.  False (the copy
 * must not be published) when the section is no longer valid.  Inside a
 * read section. */
HIDDEN bool item_move_copy(struct shmc *c, tslot *t, shmc_item *from, shmc_item *to,
                           uint64_t total);

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
