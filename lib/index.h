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

#include "cas16.h"
#include "handle.h"
#include "item.h"

#include <stddef.h>

/* max_expire is kept coarse (rounded up to this) so that it changes rarely. */
#define EXPIRE_ROUND_MS 1024u

typedef struct keyhash {
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

/* The lookup is inline, down to the key compare: a get is little more than
 * it, and as calls (keyhash_of, index_find, item_at, each item header
 * parsed three times) it took twice the instructions (callgrind). */

static inline uint64_t reduce32_(uint64_t x32, uint64_t n)
{
    return (x32 * n) >> 32;
}

/* The key's hash, buckets, tag and stripe.  Any context. */
static inline void keyhash_of(struct shmc *c, const void *key, size_t klen, keyhash *kh)
{
    uint64_t h = hash_key(c->hash_seed, key, klen);
    /* A second, independent-looking mix for the tag and the stripe, so that
     * keys sharing a bucket do not also share tags. */
    uint64_t h2 = (h ^ (h >> 31)) * 0x94d049bb133111ebull;
    h2 ^= h2 >> 29;
    kh->b1 = reduce32_(h & 0xffffffffull, c->nbuckets);
    kh->b2 = reduce32_(h >> 32, c->nbuckets);
    if (caa_unlikely(kh->b2 == kh->b1))
        kh->b2 = (kh->b1 + 1) % c->nbuckets;
    kh->tag = (uint16_t)(h2 >> 48);
    kh->stripe = (uint32_t)(h2 % SHMC_STRIPES);
}

#define CELL_VLEN 79u
static inline bool kind_is_cell(uint8_t kind)
{
    return kind == ITEM_KIND_CELL_DEC || kind == ITEM_KIND_CELL_BIN;
}

/* Validates an index word: the item it names, with its fmt byte, key and
 * value lengths (each read once and checked, item_check_f), or NULL (an empty
 * word, a bad offset, a malformed item).  Inside a read section. */
static inline shmc_item *item_at_lens(struct shmc *c, uint64_t word, uint8_t *f, uint32_t *kl,
                                      uint32_t *vl)
{
    uint64_t off = iw_off(word); /* an empty word gives an offset out of range */
    if (caa_unlikely(off >= c->data_bytes))
        return NULL;
    uint64_t in_seg = off & (c->seg_size - 1);
    shmc_item *it = (shmc_item *)(c->data + off);
    if (caa_unlikely(!item_check_f(it, c->seg_size - in_seg, c->max_key, c->max_value, f, kl,
                                   vl) ||
                     (kind_is_cell(*f & ITEM_FMT_KIND) && *vl != CELL_VLEN)))
        return NULL;
    return it;
}
/* item_at_lens with the item's data offset instead of its lengths. */
HIDDEN shmc_item *item_at(struct shmc *c, uint64_t word, uint64_t *off_out);

static inline _Atomic uint64_t *bucket(struct shmc *c, uint64_t b)
{
    return c->index + b * SHMC_BUCKET_WAYS;
}

/* The ways of bucket b whose word carries `tag`, one bit each: candidates
 * only, since every caller loads the word again (acquire) and checks it
 * before it follows it (an empty word names no item: its iw_off is past the
 * data area, and item_at refuses it).  Branch-free: which way holds a key is
 * random, so a loop that stops at the first match costs a mispredicted
 * branch per lookup.  With SSE2 the 16 tags of both buckets are gathered
 * with shifts and packs and compared at once (the loop took about 130
 * instructions per lookup, a fifth of a get's; four compares per bucket,
 * 45).  Those loads are not C11 atomics, but each aligned 8-byte half is
 * read whole on x86 and the result is only a hint; ThreadSanitizer, which
 * cannot know that, gets the loop. */
#if defined(__SSE2__) && !defined(__SANITIZE_THREAD__)
#include <emmintrin.h>
_Static_assert(SHMC_BUCKET_WAYS == 8 && IW_LOC_BITS == 48, "4 x 2 words, tag in the top 16 bits");
/* The 8 tags of bucket b as 8 16-bit lanes, in way order: an arithmetic
 * shift by 16 of each 32-bit half keeps its top 16 bits, sign-extended, so
 * the saturating packs lose nothing; twice, that leaves each word's top 16
 * bits.  Those loads are not C11 atomics (see candidates). */
static inline __m128i bucket_tags(_Atomic uint64_t *b)
{
    const __m128i *v = (const __m128i *)(const void *)b;
    __m128i x01 = _mm_packs_epi32(_mm_srai_epi32(_mm_load_si128(v), 16),
                                  _mm_srai_epi32(_mm_load_si128(v + 1), 16));
    __m128i x23 = _mm_packs_epi32(_mm_srai_epi32(_mm_load_si128(v + 2), 16),
                                  _mm_srai_epi32(_mm_load_si128(v + 3), 16));
    return _mm_packs_epi32(_mm_srai_epi32(x01, 16), _mm_srai_epi32(x23, 16));
}
/* The candidates of both buckets of kh, one bit per way (b1's ways low):
 * the two buckets' 16 tags compared at once into one byte mask. */
static inline unsigned candidates(struct shmc *c, const keyhash *kh)
{
    __m128i t = _mm_set1_epi16((short)kh->tag);
    __m128i e1 = _mm_cmpeq_epi16(bucket_tags(bucket(c, kh->b1)), t);
    __m128i e2 = _mm_cmpeq_epi16(bucket_tags(bucket(c, kh->b2)), t);
    return (unsigned)_mm_movemask_epi8(_mm_packs_epi16(e1, e2));
}
#else
static inline unsigned tag_matches(_Atomic uint64_t *b, uint16_t tag)
{
    unsigned m = 0;
    for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++) {
        uint64_t w = atomic_load_explicit(&b[i], memory_order_relaxed);
        m |= (unsigned)(iw_tag(w) == tag) << i;
    }
    return m;
}
static inline unsigned candidates(struct shmc *c, const keyhash *kh)
{
    return tag_matches(bucket(c, kh->b1), kh->tag) |
           tag_matches(bucket(c, kh->b2), kh->tag) << SHMC_BUCKET_WAYS;
}
#endif

static inline _Atomic uint64_t *candidate_way(struct shmc *c, const keyhash *kh, unsigned j)
{
    return bucket(c, j < SHMC_BUCKET_WAYS ? kh->b1 : kh->b2) + j % SHMC_BUCKET_WAYS;
}

/* Whether n bytes at a and b are equal: keys are short, and a call to
 * memcmp cost a get about 20 instructions. */
static inline bool key_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (caa_likely(n >= 8 && n <= 16)) {
        uint64_t x, y, u, v;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        memcpy(&u, a + n - 8, 8);
        memcpy(&v, b + n - 8, 8);
        return ((x ^ y) | (u ^ v)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

/* What a lookup found: the index word (where, and its value when read),
 * the item, and the item's lengths as read once and checked. */
typedef struct found {
    _Atomic uint64_t *way;
    uint64_t w;
    shmc_item *it;
    const uint8_t *val;          /* the value's bytes (a cell's: see item_cell) */
    uint8_t fmt;
    uint32_t kl, vl;
} found;

/* The item word w names if it is a well-formed item of this key (its fmt
 * and lengths in f), else NULL.  Nearly every item is narrow with no flags
 * and no expiry; its fmt, klen and vlen are then the low 4 bytes of one
 * aligned 8-byte load, and its checks are a few compares.  Each instruction
 * here waits for the item's cache miss and holds a place in the CPU's
 * window that the next operation's own misses could have used: a get went
 * from 348 to 323 instructions (callgrind) with this path.  Other items take
 * the general parse (item_at_lens). */
static inline shmc_item *item_at_key(struct shmc *c, uint64_t w, const void *key, size_t klen,
                                     found *f)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    _Static_assert(offsetof(shmc_item_n, klen) == 1 && offsetof(shmc_item_n, vlen) == 2 &&
                       sizeof(((shmc_item_n *)0)->vlen) == 2 && ITEM_HDR_MIN == 12,
                   "fmt, klen, vlen are bytes 0, 1, 2-3 of a narrow header");
    uint64_t off = iw_off(w); /* an empty word gives an offset out of range */
    if (caa_unlikely(off >= c->data_bytes))
        return NULL;
    shmc_item *it = (shmc_item *)(c->data + off);
    /* Items are 8-byte aligned, and the data area's guard covers a header
     * read at any offset below data_bytes. */
    uint64_t hd = __atomic_load_n((const uint64_t *)(const void *)it, __ATOMIC_RELAXED);
    uint8_t fm = (uint8_t)hd;
    if (caa_likely((fm & ~(uint8_t)ITEM_KIND_COUNTER) == ITEM_FMT_MARK)) {
        uint32_t k = (uint8_t)(hd >> 8), n = (uint16_t)(hd >> 16);
        uint64_t end = (off & (c->seg_size - 1)) + ((ITEM_HDR_MIN + k + n + 7u) & ~7ull);
        const uint8_t *kp = (const uint8_t *)it + ITEM_HDR_MIN;
        if (k != klen || n > c->max_value || end > c->seg_size || !key_eq(kp, key, klen))
            return NULL;
        f->val = kp + k;
        f->fmt = fm;
        f->kl = k;
        f->vl = n;
        return it;
    }
#endif
    shmc_item *g = item_at_lens(c, w, &f->fmt, &f->kl, &f->vl);
    if (!g || f->kl != klen)
        return NULL;
    const uint8_t *gk = item_key_f(g, f->fmt);
    if (!key_eq(gk, key, klen))
        return NULL;
    f->val = gk + klen;
    return g;
}

/* Finds the key's index word; false if the key is not indexed.  Inside a
 * read section. */
static inline __attribute__((always_inline)) bool
index_lookup(struct shmc *c, const keyhash *kh, const void *key, size_t klen, found *f)
{
    /* Both buckets at once (their two misses overlap; keyed operations ask
     * for both right after hashing, cache.c: op_begin), and the candidates of
     * both in one mask: a key is in either bucket at random, and a branch on
     * which one was mispredicted half the time, each time discarding the work
     * already started on the next operation.  A key is never indexed twice,
     * so the order of the candidates does not matter. */
    for (unsigned m = candidates(c, kh); m; m &= m - 1) {
        _Atomic uint64_t *way = candidate_way(c, kh, (unsigned)__builtin_ctz(m));
        /* Acquire: the item's bytes were written before its word. */
        uint64_t w = atomic_load_explicit(way, memory_order_acquire);
        if (caa_unlikely(iw_tag(w) != kh->tag))
            continue; /* changed since */
        /* Ask for the item's first lines at once: the header, the key and
         * a short value then cost one memory round trip, not three. */
        if (caa_likely(iw_off(w) < c->data_bytes)) {
            const uint8_t *p = c->data + iw_off(w);
            __builtin_prefetch(p);
            __builtin_prefetch(p + 64);
            __builtin_prefetch(p + 128);
        }
        shmc_item *it = item_at_key(c, w, key, klen, f);
        if (caa_unlikely(!it))
            continue;
        f->way = way;
        f->w = w;
        f->it = it;
        return true;
    }
    return false;
}

/* index_lookup for callers that need the word and the item only: a pointer
 * to the word (its value in *word, its item in *item) or NULL. */
static inline _Atomic uint64_t *index_find(struct shmc *c, const keyhash *kh, const void *key,
                                           size_t klen, uint64_t *word, shmc_item **item)
{
    found f;
    if (!index_lookup(c, kh, key, klen, &f))
        return NULL;
    *word = f.w;
    *item = f.it;
    return f.way;
}
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
typedef u128 cell_t;
#define CELL_FROZEN (1ull << 63)

static inline bool item_is_cell(const shmc_item *it)
{
    return kind_is_cell(item_kind(it));
}
/* The cell of a cell item (item_at checked that vlen == CELL_VLEN, so it
 * lies inside the item; the data area is page-aligned, so this is 16-byte
 * aligned in every mapping). */
static inline cell_t *item_cell_f(const struct shmc *c, shmc_item *it, uint8_t fmt, uint32_t kl)
{
    /* fmt and kl are as read once and checked, and the cell is bounded by
     * the data area: in a section that was ejected the item's bytes may be
     * reused (epoch.h), and then the cell read is garbage that validation
     * discards, never a fault.  A valid section never sees the fallback
     * (item_at checked the item). */
    uintptr_t v = (uintptr_t)(item_key_f(it, fmt) + kl);
    v = (v + 63) & ~(uintptr_t)63;
    if (v + sizeof(cell_t) > (uintptr_t)(c->data + c->data_bytes))
        return (cell_t *)c->data;
    return (cell_t *)v;
}
static inline cell_t *item_cell(const struct shmc *c, shmc_item *it)
{
    uint8_t f = item_fmt(it);
    uint32_t kl = f & ITEM_FMT_WIDE ? ((const volatile shmc_item_w *)item_w_(it))->klen
                                    : ((const volatile shmc_item_n *)item_n_(it))->klen;
    return item_cell_f(c, it, f, kl);
}
static inline cell_t cell_make(uint64_t value, uint64_t token)
{
    return ((cell_t)token << 64) | value;
}
static inline uint64_t cell_val(cell_t x) { return (uint64_t)x; }
static inline uint64_t cell_tok(cell_t x) { return (uint64_t)(x >> 64); }
/* One 16-byte CAS (cas16.h: a full barrier); returns the cell as it was. */
static inline cell_t cell_cas(cell_t *p, cell_t expect, cell_t want)
{
    return cas16(p, expect, want);
}
/* The cell's two words as two plain loads: not always a pair that
 * existed together (see cell_read), only a CAS's first guess. */
static inline cell_t cell_peek(cell_t *p)
{
    uint64_t *w = (uint64_t *)p;
    return cell_make(__atomic_load_n(&w[0], __ATOMIC_RELAXED),
                     __atomic_load_n(&w[1], __ATOMIC_RELAXED));
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
 * (and, gaining, an expiry: 0 = never).  For a segment the caller holds
 * (EVICTING, or under its write hazard: its life cannot change).  Any
 * context. */
HIDDEN void seg_inc_live(struct shmc *c, uint64_t off, uint64_t bytes, uint64_t expire);
HIDDEN void seg_dec_live(struct shmc *c, uint64_t off, uint64_t bytes);
/* The life of the segment holding data offset `off` (segmeta.life), for
 * seg_dec_live_if: read it while the entry to be unlinked is still indexed,
 * i.e. before the CAS that unlinks it (whose success proves the segment was
 * not reset in between). */
static inline uint64_t seg_life(const struct shmc *c, uint64_t off)
{
    return atomic_load_explicit(&c->segs[off >> c->seg_shift].life, memory_order_acquire);
}
/* seg_dec_live for an entry found through the index, in a segment the
 * caller does not hold: lowers the count only if the segment is still in
 * `life`.  An unlinker stalled (and ejected) between its CAS and this call
 * may come back after the segment was evicted and reset: its decrement then
 * belongs to a count that is gone, and taking it from the new life's count
 * would make eviction stop early and retire a segment still indexed.  Any
 * context. */
HIDDEN void seg_dec_live_if(struct shmc *c, uint64_t off, uint64_t bytes, uint64_t life);

/* The stripe (per-key writer) lock: robust, bounded (LOCK_WAIT_MS).  A dead
 * holder needs no repair (every step under it leaves the index valid).
 * Taken inside or outside a read section; never wait for memory under it
 * (alloc.h: only alloc_in_head). */
HIDDEN shmc_status stripe_lock(struct shmc *c, uint32_t stripe);
HIDDEN void stripe_unlock(struct shmc *c, uint32_t stripe);

#endif
