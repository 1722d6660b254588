/*
 * index.c — key -> item lookup: a bucketed hash table of 64-bit words.
 *
 * A bucket is one cache line of 8 words; each key has two candidate buckets
 * (two-choice hashing keeps the table dense without overflow chains).  A word
 * packs a 16-bit tag (from the key's hash) with the item's location, so most
 * non-matching ways are rejected without touching the item.  Readers load
 * words with acquire order and never write; writers change a word with one
 * CAS, which is the moment a change becomes visible.  Writers of one key are
 * serialised by that key's stripe lock, so a key is never inserted twice;
 * evictors of other keys only ever CAS words to 0.
 *
 * Every word read is validated (range, alignment, item header, lengths)
 * before the item is used: a bad word is skipped, never followed.
 */
#include "internal.h"

#include <string.h>

uint64_t make_word(uint16_t tag, uint64_t off)
{
    return ((uint64_t)tag << IW_LOC_BITS) | ((off >> 3) + 1);
}

static inline uint64_t reduce(uint64_t x32, uint64_t n)
{
    return (x32 * n) >> 32;
}

void keyhash_of(struct shmc *c, const void *key, size_t klen, keyhash *kh)
{
    uint64_t h = hash_key(c->hash_seed, key, klen);
    /* A second, independent-looking mix for the tag and the stripe, so that
     * keys sharing a bucket do not also share tags. */
    uint64_t h2 = (h ^ (h >> 31)) * 0x94d049bb133111ebull;
    h2 ^= h2 >> 29;
    kh->h = h;
    kh->b1 = reduce(h & 0xffffffffull, c->nbuckets);
    kh->b2 = reduce(h >> 32, c->nbuckets);
    if (kh->b2 == kh->b1)
        kh->b2 = (kh->b1 + 1) % c->nbuckets;
    kh->tag = (uint16_t)(h2 >> 48);
    kh->stripe = (uint32_t)(h2 % SHMC_STRIPES);
}

shmc_item *item_at(struct shmc *c, uint64_t word, uint64_t *off_out)
{
    uint64_t loc = word & IW_LOC_MASK;
    if (loc == 0)
        return NULL;
    uint64_t off = (loc - 1) << 3;
    if (off >= c->data_bytes)
        return NULL;
    uint64_t in_seg = off & (c->seg_size - 1);
    if (in_seg + sizeof(shmc_item) > c->seg_size)
        return NULL;
    shmc_item *it = (shmc_item *)(c->data + off);
    if (it->magic != ITEM_MAGIC || it->klen == 0 || it->klen > c->max_key ||
        it->vlen > c->max_value || in_seg + item_total(it->klen, it->vlen) > c->seg_size ||
        (item_is_cell(it) && it->vlen != CELL_VLEN))
        return NULL;
    *off_out = off;
    return it;
}

static inline _Atomic uint64_t *bucket(struct shmc *c, uint64_t b)
{
    return c->index + b * SHMC_BUCKET_WAYS;
}

static unsigned empties(_Atomic uint64_t *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++)
        n += atomic_load_explicit(&b[i], memory_order_relaxed) == 0;
    return n;
}

/* The ways of bucket b whose word carries `tag` (and a location), one bit
 * each.  Branch-free: which way holds a key is random, so a loop that stops
 * at the first match costs a mispredicted branch per lookup. */
static inline unsigned tag_matches(_Atomic uint64_t *b, uint16_t tag)
{
    unsigned m = 0;
    for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++) {
        uint64_t w = atomic_load_explicit(&b[i], memory_order_relaxed);
        m |= (unsigned)((uint16_t)(w >> IW_LOC_BITS) == tag && (w & IW_LOC_MASK) != 0) << i;
    }
    return m;
}

void index_prefetch(struct shmc *c, const keyhash *kh)
{
    _Atomic uint64_t *b1 = bucket(c, kh->b1), *b2 = bucket(c, kh->b2);
    unsigned mask = tag_matches(b1, kh->tag) | tag_matches(b2, kh->tag) << SHMC_BUCKET_WAYS;
    /* No branch on what was loaded: the caller goes on with its own work
     * while the loads are outstanding.  A prefetch never faults, so a word
     * that changed, or no candidate at all, costs a useless prefetch only. */
    unsigned j = (unsigned)__builtin_ctz(mask | 1u << (2 * SHMC_BUCKET_WAYS));
    _Atomic uint64_t *b = j < SHMC_BUCKET_WAYS ? b1 : b2;
    uint64_t w = atomic_load_explicit(&b[j % SHMC_BUCKET_WAYS], memory_order_relaxed);
    uint64_t off = ((w & IW_LOC_MASK) - 1) << 3;
    const uint8_t *p = c->data + (off < c->data_bytes ? off : 0);
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
}

_Atomic uint64_t *index_find(struct shmc *c, const keyhash *kh, const void *key, size_t klen,
                             uint64_t *word, shmc_item **item)
{
    _Atomic uint64_t *b1 = bucket(c, kh->b1), *b2 = bucket(c, kh->b2);
    /* Both buckets at once (their two misses overlap), and the candidates of
     * both in one mask: a key is in either bucket at random, and a branch on
     * which one was mispredicted half the time, each time discarding the work
     * already started on the next operation.  A key is never indexed twice,
     * so the order of the candidates does not matter. */
    __builtin_prefetch(b2);
    unsigned mask = tag_matches(b1, kh->tag) | tag_matches(b2, kh->tag) << SHMC_BUCKET_WAYS;
    for (unsigned m = mask; m; m &= m - 1) {
        unsigned j = (unsigned)__builtin_ctz(m);
        _Atomic uint64_t *b = j < SHMC_BUCKET_WAYS ? b1 : b2;
        unsigned i = j % SHMC_BUCKET_WAYS;
        /* Acquire: the item's bytes were written before its word. */
        uint64_t w = atomic_load_explicit(&b[i], memory_order_acquire);
        if ((uint16_t)(w >> IW_LOC_BITS) != kh->tag)
            continue; /* changed since */
        /* Ask for the item's first lines at once: the header, the key and
         * a short value then cost one memory round trip, not three. */
        uint64_t loc = w & IW_LOC_MASK;
        if (loc && ((loc - 1) << 3) < c->data_bytes) {
            const uint8_t *p = c->data + ((loc - 1) << 3);
            __builtin_prefetch(p);
            __builtin_prefetch(p + 64);
            __builtin_prefetch(p + 128);
        }
        uint64_t off;
        shmc_item *it = item_at(c, w, &off);
        if (!it || it->klen != klen)
            continue;
        if (memcmp((const uint8_t *)(it + 1), key, klen) != 0)
            continue;
        *word = w;
        *item = it;
        return &b[i];
    }
    return NULL;
}

/* Age rank of the item a word points at: lower is older.  Open segments
 * are the youngest; unparseable words are the first to go. */
static uint64_t word_age(struct shmc *c, uint64_t w, uint64_t now, uint64_t *bytes)
{
    uint64_t off;
    shmc_item *it = item_at(c, w, &off);
    *bytes = 0;
    if (!it)
        return 0;
    *bytes = item_total(it->klen, it->vlen);
    if (it->expire_ms && it->expire_ms <= now)
        return 1;
    uint64_t seq = atomic_load_explicit(&c->segs[off >> c->seg_shift].seq, memory_order_relaxed);
    return seq ? seq + 2 : UINT64_MAX;
}

void index_insert(struct shmc *c, tslot *t, const keyhash *kh, uint64_t newword)
{
    _Atomic uint64_t *b1 = bucket(c, kh->b1), *b2 = bucket(c, kh->b2);
    for (;;) {
        /* The emptier bucket first: two-choice balance keeps a full bucket
         * pair (which forces an eviction) vanishingly rare below ~80% load.
         * (First fit, tried before, overflowed pairs at 28% load.) */
        _Atomic uint64_t *bb[2] = {b1, b2};
        if (empties(b2) > empties(b1)) {
            bb[0] = b2;
            bb[1] = b1;
        }
        for (int k = 0; k < 2; k++) {
            for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++) {
                uint64_t zero = 0;
                if (atomic_load_explicit(&bb[k][i], memory_order_relaxed) == 0 &&
                    atomic_compare_exchange_strong_explicit(&bb[k][i], &zero, newword,
                                                            memory_order_release,
                                                            memory_order_relaxed))
                    return;
            }
        }
        /* Both buckets full: replace the oldest entry of the two. */
        uint64_t now = now_ms();
        _Atomic uint64_t *victim = NULL;
        uint64_t vword = 0, vbytes = 0, best = UINT64_MAX;
        bool found = false;
        for (int k = 0; k < 2; k++) {
            for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++) {
                uint64_t w = atomic_load_explicit(&bb[k][i], memory_order_acquire);
                if (!w)
                    continue;
                uint64_t bytes;
                uint64_t age = word_age(c, w, now, &bytes);
                if (!found || age < best) {
                    found = true;
                    best = age;
                    victim = &bb[k][i];
                    vword = w;
                    vbytes = bytes;
                }
            }
        }
        if (!found)
            continue;
        /* A counter cell is frozen before it goes (see cell_freeze). */
        uint64_t voff0;
        shmc_item *vit = item_at(c, vword, &voff0);
        if (vit && !cell_freeze(c, t, vit))
            continue;
        if (atomic_compare_exchange_strong_explicit(victim, &vword, newword,
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            uint64_t voff = ((vword & IW_LOC_MASK) - 1) << 3;
            if (vbytes && voff < c->data_bytes)
                seg_dec_live(c, voff, vbytes);
            if (best == 1)
                STAT_ADD(t, st_expirations, 1);
            else
                STAT_ADD(t, st_evictions, 1);
            return;
        }
    }
}

bool index_unlink_item(struct shmc *c, tslot *t, shmc_item *it, uint64_t off)
{
    keyhash kh;
    keyhash_of(c, (const uint8_t *)(it + 1), it->klen, &kh);
    uint64_t loc = (off >> 3) + 1;
    uint64_t bs[2] = {kh.b1, kh.b2};
    for (int k = 0; k < 2; k++) {
        _Atomic uint64_t *b = bucket(c, bs[k]);
        for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++) {
            uint64_t w = atomic_load_explicit(&b[i], memory_order_acquire);
            if ((w & IW_LOC_MASK) != loc)
                continue;
            if (!cell_freeze(c, t, it))
                return false;
            if (atomic_compare_exchange_strong_explicit(&b[i], &w, 0, memory_order_acq_rel,
                                                        memory_order_relaxed))
                return true;
        }
    }
    return false;
}

uint64_t index_purge_range(struct shmc *c, tslot *t, uint64_t lo, uint64_t hi)
{
    uint64_t n = 0, ways = c->nbuckets * SHMC_BUCKET_WAYS;
    for (uint64_t i = 0; i < ways; i++) {
        uint64_t w = atomic_load_explicit(&c->index[i], memory_order_relaxed);
        if (!w)
            continue;
        uint64_t off = ((w & IW_LOC_MASK) - 1) << 3;
        if (off < lo || off >= hi)
            continue;
        uint64_t ioff;
        shmc_item *it = item_at(c, w, &ioff);
        if (it && !cell_freeze(c, t, it))
            continue;
        if (atomic_compare_exchange_strong_explicit(&c->index[i], &w, 0, memory_order_acq_rel,
                                                    memory_order_relaxed))
            n++;
    }
    return n;
}
