/*
 * index.c — key -> item lookup: a bucketed hash table of 64-bit words.
 *
 * A bucket is one cache line of 8 words; each key has two candidate buckets
 * (two-choice hashing keeps the table dense without overflow chains).  A word
 * packs a 16-bit tag (from the key's hash) with the item's location, so most
 * non-matching ways are rejected without touching the item.  Readers load
 * words with acquire order and write only the accessed mark (IW_ACC, by CAS
 * from the word they found); writers change a word with one
 * CAS, which is the moment a change becomes visible.  Writers of one key are
 * serialised by that key's stripe lock, so a key is never inserted twice;
 * evictors of other keys only ever CAS words to 0.
 *
 * Every word read is validated (range, alignment, item header, lengths)
 * before the item is used: a bad word is skipped, never followed.
 */
#include "index.h"
#include "epoch.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

shmc_item *item_at(struct shmc *c, uint64_t word, uint64_t *off_out)
{
    uint8_t f;
    uint32_t kl, vl;
    shmc_item *it = item_at_lens(c, word, &f, &kl, &vl);
    if (it)
        *off_out = iw_off(word);
    return it;
}

static unsigned empties(_Atomic uint64_t *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++)
        n += atomic_load_explicit(&b[i], memory_order_relaxed) == 0;
    return n;
}

void index_prefetch(struct shmc *c, const keyhash *kh)
{
    /* No branch on what was loaded: the caller goes on with its own work
     * while the loads are outstanding.  A prefetch never faults, so a word
     * that changed, or no candidate at all, costs a useless prefetch only. */
    unsigned j = (unsigned)__builtin_ctz(candidates(c, kh) | 1u << (2 * SHMC_BUCKET_WAYS));
    uint64_t w = atomic_load_explicit(candidate_way(c, kh, j % (2 * SHMC_BUCKET_WAYS)),
                                      memory_order_relaxed);
    uint64_t off = iw_off(w);
    const uint8_t *p = c->data + (off < c->data_bytes ? off : 0);
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
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
    *bytes = item_bytes(it);
    uint64_t exp = item_expire(it);
    if (exp && exp <= now)
        return 1;
    uint64_t seq = atomic_load_explicit(&c->segs[off >> c->seg_shift].seq, memory_order_relaxed);
    return seq ? seq + 2 : UINT64_MAX;
}

#ifdef SHMC_TESTING
void (*shmc__test_victim_hook)(struct shmc *c, tslot *t);
#endif

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
#ifdef SHMC_TESTING
        if (shmc__test_victim_hook)
            shmc__test_victim_hook(c, t);
#endif
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
        /* A counter cell is frozen before it goes (cell_freeze).  Freezing
         * fails only when our section was ejected (then it would fail for
         * ever): what we read of the victims may be reused bytes, so look
         * again in a fresh section.  The new item stays ours meanwhile, its
         * segment under our write hazard, and the caller holds the key's
         * stripe lock and reads nothing of this section after we return. */
        uint64_t voff0;
        shmc_item *vit = found ? item_at(c, vword, &voff0) : NULL;
        if (!found)
            continue;
        if (vit && !cell_freeze(c, t, vit)) {
            read_renew(c, t);
            continue;
        }
        uint64_t vlife = vit ? seg_life(c, voff0) : 0;
        if (iw_cas(victim, &vword, newword)) {
            if (vbytes && vit)
                seg_dec_live_if(c, voff0, vbytes, vlife);
            if (best == 1)
                STAT_ADD(t, expirations, 1);
            else
                STAT_ADD(t, evictions, 1);
            return;
        }
    }
}

bool index_unlink_item(struct shmc *c, tslot *t, shmc_item *it, uint64_t off)
{
    keyhash kh;
    keyhash_of(c, item_key(it), item_klen(it), &kh);
    uint64_t loc = iw_loc(iw_make(0, off));
    uint64_t bs[2] = {kh.b1, kh.b2};
    for (int k = 0; k < 2; k++) {
        _Atomic uint64_t *b = bucket(c, bs[k]);
        for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++) {
            uint64_t w = atomic_load_explicit(&b[i], memory_order_acquire);
            if (iw_loc(w) != loc)
                continue;
            if (!cell_freeze(c, t, it))
                return false;
            if (iw_cas(&b[i], &w, 0))
                return true;
        }
    }
    return false;
}

/* ---- counter cells (index.h) ---- */

bool cell_freeze(struct shmc *c, tslot *t, shmc_item *it)
{
    if (!item_is_cell(it))
        return true;
    cell_t *p = item_cell(c, it);
    cell_t x = cell_read(p);
    for (;;) {
        if (cell_tok(x) & CELL_FROZEN)
            return true;
        if (!read_section_valid(c, t))
            return false;
        cell_t was = cell_cas(p, x, cell_make(cell_val(x), cell_tok(x) | CELL_FROZEN));
        if (was == x)
            return true;
        x = was;
    }
}

bool item_move_copy(struct shmc *c, tslot *t, shmc_item *from, shmc_item *to, uint64_t total)
{
    /* For a counter, copy around its cell, which incrementers may be
     * changing.  Readers never write into items (the accessed mark is in the
     * index word).  `from` may be reused bytes if this section was ejected:
     * its fmt and klen are read once and bounded by `total`, so neither the copy nor
     * the cell written into `to` leaves `to`'s `total` bytes. */
    if (!item_is_cell(from)) {
        memcpy(to, from, total);
        return true;
    }
    uint8_t f = item_fmt(from);
    uint32_t kl = item_klen(from);
    size_t end = item_hlen_of(f) + (size_t)kl;
    if (!item_fmt_ok(f) || end > total)
        return false;
    memcpy(to, from, end);
    /* The copy's header is the one whose size was just checked, whatever
     * `from` holds now. */
    if (f & ITEM_FMT_WIDE) {
        ((shmc_item_w *)(void *)to)->fmt = f;
        ((shmc_item_w *)(void *)to)->klen = (uint16_t)kl;
    } else {
        ((shmc_item_n *)(void *)to)->fmt = f;
        ((shmc_item_n *)(void *)to)->klen = (uint8_t)kl;
    }
    if ((uintptr_t)item_cell(c, to) + sizeof(cell_t) > (uintptr_t)to + total)
        return false;
    memset((uint8_t *)to + end, 0, total - end);
    if (!cell_freeze(c, t, from))
        return false;
    /* Frozen: no update lands on `from` any more, so this is its last state. */
    cell_t x = cell_read(item_cell(c, from));
    *item_cell(c, to) = cell_make(cell_val(x), cell_tok(x) & ~CELL_FROZEN);
    return true;
}

/* ---- per-segment entry counts ---- */
void seg_inc_live(struct shmc *c, uint64_t off, uint64_t bytes, uint64_t expire)
{
    shmc_segmeta *m = &c->segs[off >> c->seg_shift];
    atomic_fetch_add_explicit(&m->live, live_one(bytes), memory_order_relaxed);
    /* Coarse max of expiry times, so that it changes rarely. */
    uint64_t want = expire ? (expire | (EXPIRE_ROUND_MS - 1)) : UINT64_MAX;
    uint64_t cur = atomic_load_explicit(&m->max_expire, memory_order_relaxed);
    while (cur < want &&
           !atomic_compare_exchange_weak_explicit(&m->max_expire, &cur, want,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Every decrement matches an earlier increment of the same item in the
 * same life of its segment (raised before publication, lowered after
 * unlink), so this never underflows. */
void seg_dec_live(struct shmc *c, uint64_t off, uint64_t bytes)
{
    shmc_segmeta *m = &c->segs[off >> c->seg_shift];
    atomic_fetch_sub_explicit(&m->live, live_one(bytes), memory_order_relaxed);
}

void seg_dec_live_if(struct shmc *c, uint64_t off, uint64_t bytes, uint64_t life)
{
    shmc_segmeta *m = &c->segs[off >> c->seg_shift];
    /* {live, life} as one 16-byte word (layout.h asserts the pair): the
     * life is compared and the count lowered at one instant.  reset_seg
     * stores the new life before the new count, so a CAS that still sees
     * the old life lowers the old count, which the reset then overwrites.
     * (8-byte atomics also act on `live`: cas16.h says why that is sound.) */
    cell_t *p = (cell_t *)(void *)&m->live;
    cell_t x = cell_make(atomic_load_explicit(&m->live, memory_order_relaxed), life);
    for (;;) {
        if (cell_tok(x) != life)
            return;
        cell_t was = cell_cas(p, x, cell_make(cell_val(x) - live_one(bytes), life));
        if (was == x)
            return;
        x = was;
    }
}

/* ---- robust per-key (stripe) locks ----
 * Every step a writer takes under a stripe lock leaves the index valid (the
 * publishing CAS is the commit point), so a lock whose holder died needs no
 * repair: mark it consistent and go on. */
shmc_status stripe_lock(struct shmc *c, uint32_t stripe)
{
    shmc_stripe *sp = &c->stripes[stripe % SHMC_STRIPES];
    pthread_mutex_t *m = &sp->mtx;
    /* Critical sections are a few index operations (~100 ns): spin a little
     * before sleeping in the kernel, which costs far more on a hot key. */
    int r = EBUSY;
    for (int i = 0; i < 100 && r == EBUSY; i++) {
        r = pthread_mutex_trylock(m);
        if (r == EBUSY)
            caa_cpu_relax();
    }
    /* Bounded: a holder that never lets go (stopped, or a damaged mutex)
     * must not hang the caller.  Once one waiter gave up on a holder, the
     * others give up on that same holder quickly: one stopped writer costs
     * its stripe's writers one LOCK_WAIT_MS, not one each. */
    if (r == EBUSY) {
        uint32_t holder = mutex_owner_tid(m);
        bool known = holder && atomic_load_explicit(&sp->stalled_tid, memory_order_relaxed) ==
                                   holder;
        r = mutex_lock_bounded(m, known ? STRIPE_STALLED_WAIT_MS : LOCK_WAIT_MS);
        if (r == ETIMEDOUT && (holder = mutex_owner_tid(m)) != 0)
            atomic_store_explicit(&sp->stalled_tid, holder, memory_order_relaxed);
    }
    if ((r == 0 || r == EOWNERDEAD) &&
        caa_unlikely(atomic_load_explicit(&sp->stalled_tid, memory_order_relaxed)))
        atomic_store_explicit(&sp->stalled_tid, 0, memory_order_relaxed);
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(m);
    return lock_status(r);
}

void stripe_unlock(struct shmc *c, uint32_t stripe)
{
    pthread_mutex_unlock(&c->stripes[stripe % SHMC_STRIPES].mtx);
}
