/*
 * alloc.c — storage segments: append allocation, sealing, eviction, expiry
 * and RCU reclamation.
 *
 * Items are appended to one of a few open segments ("heads") with a
 * fetch_add on the segment's write position: no free lists, no size classes.
 * An overwritten or deleted item is dead bytes; memory comes back a whole
 * segment at a time:
 *
 *   FREE -> RESERVED -> OPEN (a head) -> SEALING -> SEALED -> EVICTING -> RETIRED -> FREE
 *
 * (SEALING: its owner stamps the seal epoch and age; layout.h: enum seg_state.)
 *
 * Every transition is a CAS on the segment's state word, which also names
 * the owning participant for the transient states, so there is no global
 * lock: a scan that finds a segment held by a dead owner takes it over and
 * redoes the (idempotent) step.
 *
 * Grace periods: a writer allocates inside a read section, so a segment
 * sealed at epoch t may still receive items from writers whose epoch is < t;
 * it is evicted only when no live participant shows an epoch < t.  Readers
 * may hold items of an evicted segment; it is reused only when no live
 * participant shows an epoch < its retire epoch.
 *
 * Eviction walks the segment's items and unlinks those the index still
 * points at.  A participant killed mid-write can leave an unparseable gap,
 * so each segment also counts its index entries (incremented before
 * publication, decremented after unlink: a crash can only leave it high);
 * if the walk leaves it non-zero, a full index scan removes the rest.
 */
#include "alloc.h"
#include "epoch.h"
#include "index.h"
#include "slots.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* (BOUND_MS: fuzz builds wait these out sooner, see util.h.) */
/* A read section that holds reclamation back for this long, while a writer
 * needs memory, is ejected (epoch.c).  Sections last microseconds; this is
 * a stopped participant or one descheduled for longer than a time slice. */
#define EJECT_MS BOUND_MS(EJECT_MS_DEFAULT)
/* A write gives up (SHMC_ENOMEM) when for this long nothing could be freed,
 * nothing was ejected and the grace horizon did not move: every segment is
 * pinned (heads, write hazards, segments held by stopped participants). */
#define NOMEM_MS BOUND_MS(2000u)

static bool cas_state(shmc_segmeta *m, uint64_t *expect, uint64_t want)
{
    return atomic_compare_exchange_strong_explicit(&m->state, expect, want,
                                                   memory_order_acq_rel, memory_order_acquire);
}

static bool in_a_head(struct shmc *c, uint32_t s)
{
    for (uint32_t h = 0; h < c->nheads; h++)
        if (atomic_load_explicit(&c->heads[h].seg, memory_order_acquire) == (uint64_t)s + 1)
            return true;
    return atomic_load_explicit(&c->heads[SHMC_MAIN_HEAD].seg, memory_order_acquire) ==
           (uint64_t)s + 1;
}

/* SEALING(us) -> SEALED.  The epoch and age are stamped while we own the
 * segment, so two would-be sealers can never overwrite each other. */
static void finish_seal(struct shmc *c, uint32_t s)
{
    shmc_segmeta *m = &c->segs[s];
    /* Every writer that could still append here entered before this bump. */
    uint64_t t = atomic_fetch_add_explicit(&c->hdr->epoch, 1, memory_order_acq_rel) + 1;
    atomic_store_explicit(&m->epoch, t, memory_order_relaxed);
    atomic_store_explicit(&m->seq, atomic_fetch_add(&c->hdr->seal_seq, 1), memory_order_relaxed);
    atomic_store_explicit(&m->state, sw_make(SEG_SEALED, 0), memory_order_release);
}

/* OPEN (state word sw) -> SEALED, unless someone else got there first. */
static void seal(struct shmc *c, tslot *t, uint32_t s, uint64_t sw)
{
    if (cas_state(&c->segs[s], &sw, sw_make(SEG_SEALING, slot_owner(t))))
        finish_seal(c, s);
}

/* Whether `size` bytes (a multiple of 8) fit at write position `pos` of a
 * segment.  pos is read from shared memory, so it is checked in full: tested
 * as pos + size <= seg_size, a damaged pos near 2^64 wraps around and the
 * item lands before its segment (in the previous one, or in the index); a
 * pos that is not a multiple of 8 misaligns the item (an index word cannot
 * even name it).  Either way the item would be written and never found. */
static inline bool fits(const struct shmc *c, uint64_t pos, uint64_t size)
{
    return pos <= c->seg_size && size <= c->seg_size - pos && (pos & 7) == 0;
}

/* The first allocation of this process in segment s maps the whole segment
 * in at once (handle_populate_segment): a set that faults a fresh page costs a
 * trap per 4 KiB (27 items of 150 B), which on a VM halved set throughput. */
/* Asks for the lines the next append to this segment will write, for
 * writing: a fresh line costs a read-for-ownership from memory, and the
 * publishing CAS waits for every store before it, so without this each
 * write paid that miss in full.  (pos is in range: fits() passed.) */
static inline void prefetch_next(struct shmc *c, uint64_t off, uint64_t size)
{
    const uint8_t *p = c->data + off + size;
    if (((off + size) & (c->seg_size - 1)) + 128 <= c->seg_size) {
        __builtin_prefetch(p, 1);
        __builtin_prefetch(p + 64, 1);
    }
}

static inline void populate_once(struct shmc *c, tslot *t, uint32_t s)
{
    _Atomic uint64_t *bits = c->pop_bits;
    if (!bits)
        return;
    if (caa_unlikely(atomic_load_explicit(&c->pop_gen, memory_order_relaxed) != t->fork_gen)) {
        /* A forked child: fork() copies no page tables of a shared mapping. */
        for (uint32_t i = 0; i <= c->nsegs / 64; i++)
            atomic_store_explicit(&bits[i], 0, memory_order_relaxed);
        atomic_store_explicit(&c->pop_gen, t->fork_gen, memory_order_relaxed);
    }
    uint64_t bit = 1ull << (s % 64);
    if (caa_likely(atomic_load_explicit(&bits[s / 64], memory_order_relaxed) & bit))
        return;
    atomic_fetch_or_explicit(&bits[s / 64], bit, memory_order_relaxed);
    handle_populate_segment(c, s);
}

/* Publishes the write hazard on segment hw - 1 (hazard-pointer style: the
 * store, then a fence, then the caller re-checks that the segment is OPEN).
 * An evictor that moves the segment out of SEALED and then issues
 * heavy_barrier() sees the hazard unless our check saw it no longer OPEN
 * (store-buffering: each side's fence orders its store before its load). */
static inline void wseg_set(struct shmc *c, tslot *t, uint64_t hw)
{
    if (atomic_load_explicit(&t->s->wseg, memory_order_relaxed) == hw)
        return; /* published, fenced and never cleared since */
    atomic_store_explicit(&t->s->wseg, hw, memory_order_relaxed);
    if (caa_likely(c->membarrier))
        atomic_signal_fence(memory_order_seq_cst); /* paired with heavy_barrier */
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* Appends `size` bytes to open segment hw - 1 if it has room, under our
 * write hazard (kept until the caller publishes: wseg_clear). */
static bool head_append(struct shmc *c, tslot *t, uint64_t hw, uint64_t size, uint64_t *off)
{
    if (!hw || hw > c->nsegs)
        return false;
    shmc_segmeta *m = &c->segs[hw - 1];
    if (!fits(c, atomic_load_explicit(&m->wpos, memory_order_relaxed), size))
        return false;
    wseg_set(c, t, hw);
    /* A head only ever names an OPEN segment; check anyway, since the word
     * comes from shared memory, and after the hazard (see wseg_set). */
    if (sw_state(atomic_load_explicit(&m->state, memory_order_acquire)) != SEG_OPEN)
        return false;
    uint64_t pos = atomic_fetch_add_explicit(&m->wpos, size, memory_order_relaxed);
    if (!fits(c, pos, size))
        return false;
    populate_once(c, t, (uint32_t)(hw - 1));
    *off = ((hw - 1) << c->seg_shift) + pos;
    prefetch_next(c, *off, size);
    return true;
}

/* Appends `size` bytes to our head if it has room; never opens a segment,
 * so never waits (safe under a stripe lock).  Inside a read section. */
bool alloc_in_head(struct shmc *c, tslot *t, uint64_t size, uint64_t *off)
{
    uint64_t hw = atomic_load_explicit(&c->heads[t->idx % c->nheads].seg, memory_order_acquire);
    return head_append(c, t, hw, size, off);
}

/* Whether some live participant's write hazard names segment s.  A hazard
 * found is checked for its owner's liveness, and a dead owner's slot is
 * reaped, which clears it: a participant killed while its section was
 * ejected is skipped by the grace-period scan, which therefore never reaps
 * it, and its hazard would pin the segment for good.  (A free slot has no
 * hazard: release clears it, and whoever takes the slot next re-checks the
 * segment's state after publishing one.) */
static bool seg_hazarded(struct shmc *c, uint32_t s)
{
    for (uint32_t i = 0; i < c->nslots; i++)
        if (atomic_load_explicit(&c->slots[i].wseg, memory_order_acquire) == (uint64_t)s + 1 &&
            slot_check_live(c, i))
            return true;
    return false;
}

/* How eviction empties its victim (pick_victim decides). */
enum evict_mode {
    EV_DROP,     /* storage is full of live data: drop items, second chance for read ones */
    EV_COMPACT,  /* the victim is mostly dead bytes: move every live item forward */
};

/* What became of an eviction (evict_and_retire). */
enum evict_outcome {
    EO_RETIRED,  /* emptied and retired */
    EO_HAZARD,   /* a write hazard names it: back to SEALED, nothing done */
    EO_KEPT,     /* a compaction ran out of room: back to SEALED, partly moved */
};

static bool evict_items(struct shmc *c, tslot *t, uint32_t s, enum evict_mode mode,
                        bool must_free);
static void retire(struct shmc *c, uint32_t s, uint64_t sw);

/* The one way an eviction starts or resumes: segment s is EVICTING(mine),
 * just taken by CAS (from SEALED, or from a dead evictor).  After a heavy
 * barrier, a write hazard on s means a writer (perhaps stopped or ejected)
 * may still copy into it: then s goes back to SEALED, its epoch untouched
 * (the seal epoch until retire() stamps it; a later one if a dead evictor
 * got that far, which only delays it), and nothing is evicted.  Otherwise
 * its items are moved or unlinked (evict_items, `mode`) and it is retired,
 * unless a compaction ran out of room and need not free it (`must_free`
 * false): then it goes back to SEALED with what it still holds (the moved
 * items are no longer indexed there, the rest still are). */
static enum evict_outcome evict_and_retire(struct shmc *c, tslot *t, uint32_t s, uint64_t mine,
                                           enum evict_mode mode, bool must_free)
{
    shmc_segmeta *m = &c->segs[s];
    uint64_t back = mine;
    if (!heavy_barrier(c) || seg_hazarded(c, s)) {
        cas_state(m, &back, sw_make(SEG_SEALED, 0));
        return EO_HAZARD;
    }
    if (!evict_items(c, t, s, mode, must_free)) {
        cas_state(m, &back, sw_make(SEG_SEALED, 0));
        return EO_KEPT;
    }
    retire(c, s, mine);
    return EO_RETIRED;
}

/* Room for a copy moved at eviction: the main head if `to_main` and it has
 * room, else our head, else any other head with room (an evictor that found
 * no free segment has a full head itself).  Never waits.  Inside a read
 * section. */
static bool alloc_for_move(struct shmc *c, tslot *t, uint64_t size, uint64_t *off, bool to_main)
{
    if (to_main) {
        if (head_append(c, t, atomic_load_explicit(&c->heads[SHMC_MAIN_HEAD].seg,
                                                   memory_order_acquire), size, off))
            return true;
        /* No main head, or full: this process's next head replacement
         * opens one (alloc_item). */
        atomic_store_explicit(&c->main_wanted, true, memory_order_relaxed);
    }
    for (uint32_t k = 0; k < c->nheads; k++) {
        uint32_t h = (t->idx + k) % c->nheads;
        uint64_t hw = atomic_load_explicit(&c->heads[h].seg, memory_order_acquire);
        if (head_append(c, t, hw, size, off))
            return true;
    }
    return false;
}

/* What became of one item of the victim (move_item). */
enum move_result { MV_GONE, MV_MOVED, MV_NOT_KEPT, MV_NO_ROOM };

/* Moves the item at `off` (in a segment we hold as EVICTING) to an open
 * segment, when the index still points at it and it is to be kept: in
 * EV_COMPACT mode every unexpired item, in EV_DROP mode (second chance) an
 * item read since it was written that is not about to expire.  The copy
 * keeps the CAS token, flags, expiry and kind (the header is copied) and
 * replaces the old entry by CAS, so a concurrent set or delete of the key
 * simply wins and the copy becomes dead bytes.  The live count of the
 * copy's segment is raised before the CAS and the loser's lowered after, so
 * a crash in between can only leave a count high (see evict_items). */
static enum move_result move_item(struct shmc *c, tslot *t, shmc_item *it, uint64_t off,
                                  uint64_t total, uint64_t now, enum evict_mode mode)
{
    uint64_t exp = item_expire(it);
    if (exp && exp <= now + (mode == EV_COMPACT ? 0 : EXPIRE_ROUND_MS))
        return MV_NOT_KEPT;
    keyhash kh;
    keyhash_of(c, item_key(it), item_klen(it), &kh);
    uint64_t ow = iw_make(kh.tag, off), cur = 0;
    _Atomic uint64_t *where = NULL;
    uint64_t bs[2] = {kh.b1, kh.b2};
    for (int k = 0; k < 2 && !where; k++)
        for (unsigned i = 0; i < SHMC_BUCKET_WAYS && !where; i++) {
            _Atomic uint64_t *p = c->index + bs[k] * SHMC_BUCKET_WAYS + i;
            cur = atomic_load_explicit(p, memory_order_acquire);
            if (iw_same(cur, ow))
                where = p;
        }
    if (!where)
        return MV_GONE; /* dead bytes: nothing to keep */
    if (mode == EV_DROP && !(cur & IW_ACC))
        return MV_NOT_KEPT; /* not read since written */
    enum move_result r = MV_NO_ROOM;
    read_enter(c, t);
    uint64_t noff;
    if (alloc_for_move(c, t, total, &noff, mode == EV_DROP)) {
        /* `it` is in a segment we own (EVICTING): nobody reuses it under us.
         * The copy goes where our write hazard keeps it from eviction. */
        shmc_item *copy = (shmc_item *)(c->data + noff);
        /* A counter's cell is frozen first and its last state copied, so no
         * increment is lost (item_move_copy). */
        bool copied = item_move_copy(c, t, it, copy, total);
        seg_inc_live(c, noff, total, item_expire(copy));
        /* A compaction keeps the accessed mark (the item was not evicted);
         * a second chance uses it up. */
        bool done = copied &&
                    iw_cas(where, &cur,
                           iw_make(kh.tag, noff) | (mode == EV_COMPACT ? cur & IW_ACC : 0));
        seg_dec_live(c, done ? off : noff, total);
        /* Not copied: our section is no longer valid (a counter's cell could
         * not be frozen); stop as for want of room, keeping the item. */
        r = !copied ? MV_NO_ROOM : done ? MV_MOVED : MV_GONE;
    }
    wseg_clear(t);
    read_exit(c, t);
    return r;
}

/* Removes the item at `off` from the index (an eviction or an expiry). */
static void drop_item(struct shmc *c, tslot *t, shmc_item *it, uint64_t off, uint64_t total,
                      uint64_t now)
{
    if (!index_unlink_item(c, t, it, off))
        return;
    seg_dec_live(c, off, total);
    uint64_t exp = item_expire(it);
    if (exp && exp <= now)
        STAT_ADD(t, expirations, 1);
    else
        STAT_ADD(t, evictions, 1);
}

/* Whether an index word names the item at data offset `off` (its key's
 * buckets, its tag, its location). */
static bool item_indexed(struct shmc *c, const shmc_item *it, uint64_t off)
{
    keyhash kh;
    keyhash_of(c, item_key(it), item_klen(it), &kh);
    uint64_t ow = iw_make(kh.tag, off), bs[2] = {kh.b1, kh.b2};
    for (int k = 0; k < 2; k++)
        for (unsigned i = 0; i < SHMC_BUCKET_WAYS; i++)
            if (iw_same(atomic_load_explicit(c->index + bs[k] * SHMC_BUCKET_WAYS + i,
                                             memory_order_acquire), ow))
                return true;
    return false;
}

/* An eviction's progress through its victim. */
typedef struct evict_pass {
    enum evict_mode mode;
    bool must_free;
    uint64_t now;
    uint64_t budget;  /* bytes second chance or compaction may still move */
} evict_pass;

/* Moves or drops the item at `off` (`total` bytes, parsed and bounded by
 * the caller) as the pass says.  False when a compaction found no room and
 * need not free the segment: the caller stops and keeps the segment. */
static bool evict_item(struct shmc *c, tslot *t, evict_pass *p, shmc_item *it, uint64_t off,
                      uint64_t total)
{
    /* A compaction that need not free the segment keeps what is over its
     * copy budget, as when it finds no room: the live count it was picked
     * by can be below what the walk finds (writers that had room in the
     * segment count their items after the pick; a dead evictor's segment
     * is compacted whatever it holds), and a compaction drops nothing. */
    if (total > p->budget && p->mode == EV_COMPACT && !p->must_free)
        return false;
    enum move_result r = total <= p->budget ? move_item(c, t, it, off, total, p->now, p->mode)
                                            : MV_NOT_KEPT;
    if (r == MV_MOVED) {
        p->budget -= total;
        if (p->mode == EV_COMPACT)
            STAT_ADD(t, compacted, 1);
        else
            STAT_ADD(t, rescued, 1);
    } else if (r == MV_NO_ROOM && p->mode == EV_COMPACT && !p->must_free) {
        return false;
    } else if (r != MV_GONE) {
        drop_item(c, t, it, off, total, p->now);
    }
    return true;
}

/* What the walk left: every index word still naming segment s, found by a
 * scan of the whole index, is treated as the walk would have treated it.
 * The walk misses items only after a participant died mid-write: bytes from
 * the segment's earlier life at the torn spot can parse as an item whose
 * length steps over live ones (test_compact: test_torn_write_hides_items).
 * A word whose item does not parse is unlinked.  Costs a pass over the
 * index, so it runs only when the live count says something is left. */
static bool evict_rest(struct shmc *c, tslot *t, uint32_t s, evict_pass *p)
{
    uint64_t lo = (uint64_t)s << c->seg_shift, hi = lo + c->seg_size;
    uint64_t ways = c->nbuckets * SHMC_BUCKET_WAYS, dropped = 0;
    atomic_fetch_add_explicit(&c->hdr->purges, 1, memory_order_relaxed);
    for (uint64_t i = 0; i < ways; i++) {
        uint64_t w = atomic_load_explicit(&c->index[i], memory_order_acquire);
        if (!w || iw_off(w) < lo || iw_off(w) >= hi)
            continue;
        uint64_t off;
        shmc_item *it = item_at(c, w, &off);
        uint32_t kl, vl;
        uint64_t total = it ? item_check(it, hi - off, c->max_key, c->max_value, &kl, &vl) : 0;
        if (total) {
            if (!evict_item(c, t, p, it, off, total))
                return false;
        } else if ((!it || cell_freeze(c, t, it)) && iw_cas(&c->index[i], &w, 0)) {
            dropped++;
        }
    }
    STAT_ADD(t, evictions, dropped);
    return true;
}

/* Walks segment s (EVICTING, owned by us) and empties it of what the index
 * still points at: EV_COMPACT moves every live item forward, EV_DROP unlinks
 * them, giving recently read ones a second chance.  Returns false, leaving
 * the rest in place, when a compaction found no room for an item and
 * `must_free` is false (the caller puts the segment back: nothing is lost);
 * with must_free such an item is dropped instead. */
static bool evict_items(struct shmc *c, tslot *t, uint32_t s, enum evict_mode mode,
                        bool must_free)
{
    shmc_segmeta *m = &c->segs[s];
    uint64_t limit = atomic_load_explicit(&m->wpos, memory_order_acquire);
    if (limit > c->seg_size)
        limit = c->seg_size;
    uint64_t base = (uint64_t)s << c->seg_shift;
    uint64_t pos = 0;
    /* Second chance rescues at most 7/8 of a segment per eviction: every
     * eviction then frees at least 1/8, so one segment of new writes drives
     * at most 8 evictions and, when every item is hot, the clock hand cannot
     * sweep the whole cache at once and drop the newest (unread) items.
     * (Rescued hot items cluster, so a tighter cap loses them: 1/2 kept 54%
     * of a hot set that 7/8 keeps 90% of, in the same churn.)  A compaction
     * victim holds at most COMPACT_LIVE_MAX live bytes, under that cap. */
    evict_pass p = {.mode = mode, .must_free = must_free, .now = now_ms(),
                    .budget = c->seg_size - c->seg_size / 8};
    bool resync = false;
    while (live_items(atomic_load_explicit(&m->live, memory_order_relaxed)) &&
           pos + ITEM_HDR_MIN <= limit) {
        shmc_item *it = (shmc_item *)(c->data + base + pos);
        uint32_t kl, vl;
        uint64_t total = item_check(it, c->seg_size - pos, c->max_key, c->max_value, &kl, &vl);
        if (!total || (resync && !item_indexed(c, it, base + pos))) {
            /* Torn by a dead writer (room taken, header never written): its
             * length is unknown, so the next item is looked for 8 bytes at
             * a time, trusting only one the index names (bytes left from
             * the segment's earlier life may parse as an item).  A live
             * item is indexed and 8-aligned, so none is stepped over;
             * anything else left, evict_rest finds.  (Stopping here instead
             * left every live item after the torn bytes to that scan.) */
            resync = true;
            pos += 8;
            continue;
        }
        resync = false;
        if (!evict_item(c, t, &p, it, base + pos, total))
            return false;
        pos += total;
    }
    if (live_items(atomic_load_explicit(&m->live, memory_order_acquire)))
        return evict_rest(c, t, s, &p);
    return true;
}

#ifdef SHMC_TESTING
void (*shmc__test_retire_hook)(uint32_t seg, uint64_t word, uint64_t live);

/* The invariant retire() relies on: no index word names the segment. */
static void check_unindexed(struct shmc *c, uint32_t s)
{
    if (!shmc__test_retire_hook)
        return;
    uint64_t lo = (uint64_t)s << c->seg_shift, hi = lo + c->seg_size;
    uint64_t ways = c->nbuckets * SHMC_BUCKET_WAYS;
    for (uint64_t i = 0; i < ways; i++) {
        uint64_t w = atomic_load_explicit(&c->index[i], memory_order_acquire);
        if (w && iw_off(w) >= lo && iw_off(w) < hi)
            shmc__test_retire_hook(s, w, atomic_load(&c->segs[s].live));
    }
}
#endif

/* EVICTING(us) -> RETIRED, stamped with the epoch after the unlinks. */
static void retire(struct shmc *c, uint32_t s, uint64_t sw)
{
    shmc_segmeta *m = &c->segs[s];
#ifdef SHMC_TESTING
    check_unindexed(c, s);
#endif
    uint64_t t = atomic_fetch_add_explicit(&c->hdr->epoch, 1, memory_order_acq_rel) + 1;
    atomic_store_explicit(&m->epoch, t, memory_order_relaxed);
    cas_state(m, &sw, sw_make(SEG_RETIRED, 0));
}


/* Resets a segment we hold as RESERVED. */
static void reset_seg(shmc_segmeta *m)
{
    atomic_store_explicit(&m->wpos, 0, memory_order_relaxed);
    /* A new life, then its count: an unlinker of the last life that comes
     * back late (seg_dec_live_if) either sees the old life, and lowers the
     * old count that the store below overwrites, or the new one, and leaves
     * the count alone. */
    atomic_store_explicit(&m->life, atomic_load_explicit(&m->life, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&m->live, 0, memory_order_release);
    atomic_store_explicit(&m->max_expire, 0, memory_order_relaxed);
    atomic_store_explicit(&m->epoch, 0, memory_order_relaxed);
    atomic_store_explicit(&m->seq, 0, memory_order_relaxed);
    atomic_store_explicit(&m->cls, SEG_CLS_SMALL, memory_order_relaxed);
}

typedef struct scan {
    uint64_t h;          /* grace horizon, valid if have_h */
    bool have_h;
    uint32_t retired;
    uint32_t free;       /* FREE segments seen (not counting one taken) */
} scan;

/* The largest epoch t such that memory retired (or sealed) at t is no longer
 * visible to anyone: the smallest live reader epoch, capped by the global
 * epoch read before the barrier (readers that enter later see at least it). */
static uint64_t grace_horizon(struct shmc *c, tslot *t, scan *sc)
{
    if (!sc->have_h) {
        uint64_t g = atomic_load_explicit(&c->hdr->epoch, memory_order_acquire);
        if (!heavy_barrier(c)) {
            sc->h = 0; /* cannot prove any grace period */
        } else {
            uint64_t m = min_reader_epoch(c, t);
            sc->h = m < g ? m : g;
        }
        sc->have_h = true;
    }
    return sc->h;
}

/* A segment we just took as RESERVED(me) from a retired or dead owner's
 * state: reset it, then keep it (if we still want one) or free it. */
static void claim(shmc_segmeta *m, uint32_t s, uint64_t me, uint32_t *got, scan *sc)
{
    reset_seg(m);
    if (!*got) {
        *got = s + 1;
        return;
    }
    uint64_t mine = sw_make(SEG_RESERVED, me);
    cas_state(m, &mine, sw_make(SEG_FREE, 0));
    sc->free++;
}

/* One pass over the segment table: recovers segments of dead owners, frees
 * retired segments whose grace period passed, and (if `want`) takes one free
 * segment as RESERVED(me).  Returns the segment + 1 or 0. */
static uint32_t take_free(struct shmc *c, tslot *t, scan *sc, bool want)
{
    uint64_t me = slot_owner(t);
    uint32_t got = want ? 0 : UINT32_MAX;
    sc->retired = 0;
    sc->free = 0;
    for (uint32_t s = 0; s < c->nsegs; s++) {
        shmc_segmeta *m = &c->segs[s];
        uint64_t sw = atomic_load_explicit(&m->state, memory_order_acquire);
        switch (sw_state(sw)) {
        case SEG_FREE:
            if (!got && cas_state(m, &sw, sw_make(SEG_RESERVED, me)))
                got = s + 1;
            else
                sc->free++;
            break;
        case SEG_RETIRED: {
            uint64_t e = atomic_load_explicit(&m->epoch, memory_order_relaxed);
            if (e > grace_horizon(c, t, sc)) {
                sc->retired++;
                break;
            }
            if (cas_state(m, &sw, sw_make(SEG_RESERVED, me)))
                claim(m, s, me, &got, sc);
            break;
        }
        case SEG_RESERVED:
            if (!owner_is_live(c, sw_owner(sw)) &&
                cas_state(m, &sw, sw_make(SEG_RESERVED, me)))
                claim(m, s, me, &got, sc);
            break;
        case SEG_EVICTING:
            if (!owner_is_live(c, sw_owner(sw))) {
                uint64_t mine = sw_make(SEG_EVICTING, me);
                /* Redone as a compaction (after the same hazard check as a
                 * fresh eviction): whatever it had moved is moved, the rest
                 * is kept (or stays, SEALED, if no head has room). */
                if (cas_state(m, &sw, mine))
                    evict_and_retire(c, t, s, mine, EV_COMPACT, false);
            }
            break;
        case SEG_OPEN:
            /* An open segment that no head names was being installed or
             * replaced by someone who died (or is about to seal it). */
            if (!in_a_head(c, s) &&
                (atomic_load_explicit(&m->wpos, memory_order_relaxed) >= c->seg_size ||
                 !owner_is_live(c, sw_owner(sw))))
                seal(c, t, s, sw);
            break;
        case SEG_SEALING:
            if (!owner_is_live(c, sw_owner(sw)) &&
                cas_state(m, &sw, sw_make(SEG_SEALING, slot_owner(t))))
                finish_seal(c, s);
            break;
        default:
            break;
        }
    }
    return got;
}

/* A sealed segment is compacted (its live items moved forward) rather than
 * evicted when at least 1/8 of a segment in it is dead bytes (items replaced
 * or deleted since): the move then costs at most 7/8 of a segment of copies,
 * the bound second chance already had (evict_items), and destroys at least
 * 1/8 of a segment of dead bytes for good.  Dead bytes, not free space: the
 * slack a segment was sealed with (the next item did not fit) comes back
 * with the copies, and a rule on live bytes alone (live <= 7/8) compacted
 * one half-full segment of 15 KB items into the next for ever.  Dead bytes
 * arise only from writes, so compaction cannot run without end.  Only when no
 * evictable segment has that much dead data is the storage full of live
 * data, and items are dropped (oldest segment first, second chance).
 * (3/4 of live bytes instead of 7/8 was tried: on the overwrite-heavy
 * hit-ratio trace it held 18 % fewer items, 0.7922 against 0.7984 hits.) */
static inline bool worth_compacting(const struct shmc *c, uint64_t dead, uint64_t live)
{
    return dead >= c->seg_size / 8 && live <= c->seg_size - c->seg_size / 8;
}

#define VICTIM_TRIES 8u

/* Probation (after S3-FIFO, Yang et al., SOSP 2023): new writes and what
 * compaction moves go to the write heads (the "small" FIFO), what second
 * chance keeps goes to the main head (the "main" FIFO, SEG_CLS_MAIN).  An
 * item dropped because it was not read takes its place only in the small
 * FIFO, not a whole lap of the storage: pick_victim drops from the oldest
 * small segment while small segments hold more than SMALL_PCT % of the
 * segments, else from the oldest main one. */
#define SMALL_PCT 10u

typedef struct victim {
    uint32_t seg1;       /* segment + 1, 0 = none */
    enum evict_mode mode;
} victim;

static bool excluded(const uint32_t *excl, uint32_t nexcl, uint32_t seg1)
{
    for (uint32_t k = 0; k < nexcl; k++)
        if (excl[k] == seg1)
            return true;
    return false;
}

/* Chooses the segment to evict among the sealed ones no writer can still be
 * appending to, and not one of excl[0..nexcl) (found under a write hazard):
 * a wholly expired one if any (dropped: costs no live item), else the one
 * with the most dead bytes if worth compacting (compacted), else the oldest
 * of the small or the main FIFO (dropped, with second chance; SMALL_PCT). */
static victim pick_victim(struct shmc *c, tslot *t, scan *sc, const uint32_t *excl,
                          uint32_t nexcl)
{
    uint64_t now = now_ms();
    uint64_t h = grace_horizon(c, t, sc);
    uint32_t oldest[2] = {0, 0}, deadest = 0, nsmall = 0;
    uint64_t oldest_seq[2] = {UINT64_MAX, UINT64_MAX}, most = 0, most_live = 0;
    bool compact_later = false;
    for (uint32_t s = 0; s < c->nsegs; s++) {
        shmc_segmeta *m = &c->segs[s];
        uint64_t sw = atomic_load_explicit(&m->state, memory_order_acquire);
        unsigned cls = atomic_load_explicit(&m->cls, memory_order_relaxed) == SEG_CLS_MAIN;
        unsigned st = sw_state(sw);
        if (!cls && (st == SEG_OPEN || st == SEG_SEALING || st == SEG_SEALED ||
                     st == SEG_EVICTING))
            nsmall++;
        if (st != SEG_SEALED || excluded(excl, nexcl, s + 1))
            continue;
        uint64_t lb = live_bytes(atomic_load_explicit(&m->live, memory_order_relaxed));
        uint64_t used = atomic_load_explicit(&m->wpos, memory_order_relaxed);
        used = used < c->seg_size ? used : c->seg_size;
        uint64_t dead = used > lb ? used - lb : 0;
        if (atomic_load_explicit(&m->epoch, memory_order_relaxed) > h) {
            /* Sealed after the grace horizon: not yet.  If it is worth
             * compacting, dropping live items now would be premature. */
            compact_later |= worth_compacting(c, dead, lb);
            continue;
        }
        uint64_t mx = atomic_load_explicit(&m->max_expire, memory_order_relaxed);
        uint64_t seq = atomic_load_explicit(&m->seq, memory_order_relaxed);
        if (mx != 0 && mx != UINT64_MAX && mx < now)
            return (victim){s + 1, EV_DROP}; /* everything in it has expired */
        if (seq < oldest_seq[cls]) {
            oldest_seq[cls] = seq;
            oldest[cls] = s + 1;
        }
        if (dead > most) {
            most = dead;
            most_live = lb;
            deadest = s + 1;
        }
    }
    if (deadest && worth_compacting(c, most, most_live))
        return (victim){deadest, EV_COMPACT};
    /* Dead bytes will be reclaimable once the horizon passes (a section
     * leaves, or is ejected after EJECT_MS, get_segment): no victim now,
     * rather than drop live items while storage is not full of them.  (Under
     * load, a descheduled participant holding the horizon back made a
     * kill-storm churn of test_compact drop a few live items.) */
    if (compact_later)
        return (victim){0, EV_DROP};
    /* Probation (S3-FIFO): the small FIFO is evicted while it holds more
     * than its share of the storage, else the main one. */
    unsigned want = (uint64_t)nsmall * 100 > (uint64_t)c->nsegs * SMALL_PCT ? 0 : 1;
    if (!oldest[want])
        want ^= 1;
    return (victim){oldest[want], EV_DROP};
}

/* Evicts (or compacts) the best victim, if any.  Returns whether one was
 * retired.  must_free: the caller has no other way to a free segment, so a
 * compaction that runs out of room drops the rest instead of stopping.  A
 * segment named by a write hazard (a writer, perhaps stopped or ejected,
 * may still be copying into it) is skipped: the hazard is checked after the
 * segment is ours (EVICTING) and a heavy barrier, so a writer that saw it
 * OPEN after publishing its hazard is always seen (see wseg_set). */
static bool evict_one(struct shmc *c, tslot *t, scan *sc, bool must_free)
{
    uint32_t excl[VICTIM_TRIES], nexcl = 0;
    while (nexcl < VICTIM_TRIES) {
        victim v = pick_victim(c, t, sc, excl, nexcl);
        if (!v.seg1)
            return false;
        if (seg_hazarded(c, v.seg1 - 1)) {
            excl[nexcl++] = v.seg1;
            continue;
        }
        shmc_segmeta *m = &c->segs[v.seg1 - 1];
        uint64_t sw = atomic_load_explicit(&m->state, memory_order_acquire);
        uint64_t mine = sw_make(SEG_EVICTING, slot_owner(t));
        if (sw_state(sw) != SEG_SEALED || !cas_state(m, &sw, mine))
            return true; /* someone else took it: progress */
        enum evict_outcome o = evict_and_retire(c, t, v.seg1 - 1, mine, v.mode, must_free);
        if (o == EO_HAZARD) {
            excl[nexcl++] = v.seg1; /* SEALED again, epoch and age untouched */
            continue;
        }
        if (o == EO_RETIRED && v.mode == EV_COMPACT)
            STAT_ADD(t, compactions, 1);
        return o == EO_RETIRED;
    }
    return false;
}

static void pause_briefly(unsigned round)
{
    if (round < 16) {
        caa_cpu_relax();
    } else {
        /* Sleep, so that the readers we wait for get the CPU. */
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Gets a segment in state RESERVED(me), making room if needed.  Called
 * outside any read section. */
static uint32_t retired_cap(const struct shmc *c)
{
    return c->nsegs / 4 > 2 ? c->nsegs / 4 : 2;
}

/* Per-thread snapshot of slot epochs for stall detection (lazily made). */
static uint64_t *stall_seen(struct shmc *c, tslot *t)
{
    if (!t->stall_seen)
        t->stall_seen = calloc(c->nslots, sizeof *t->stall_seen);
    return t->stall_seen;
}

static shmc_status get_segment(struct shmc *c, tslot *t, uint32_t *out, scan *last)
{
    uint32_t cap = retired_cap(c);
    uint64_t last_progress = 0, last_h = 0, watch = 0, watch_g = 0;
    for (unsigned round = 0;; round++) {
        scan sc = {0};
        uint32_t got = take_free(c, t, &sc, true);
        if (got) {
            *out = got - 1;
            *last = sc;
            return SHMC_OK;
        }
        /* Nothing free: evict.  A compaction that finds no room in any head
         * drops what is left only when no retired segment is on its way to
         * becoming free (then there is no other way to one). */
        if (sc.retired < cap && evict_one(c, t, &sc, sc.retired == 0))
            continue;
        /* Nothing free or evictable now: participants inside a section
         * still hold the memory.  Wait while they leave (the grace horizon
         * advances); a section that is still the same EJECT_MS after we
         * began watching is ejected, and memory is reclaimed without it. */
        uint64_t now = now_ms();
        uint64_t h = grace_horizon(c, t, &sc);
        if (!last_progress || h != last_h) {
            last_progress = now;
            last_h = h;
        }
        uint64_t *seen = stall_seen(c, t);
        if (seen && !watch) {
            watch_g = atomic_load_explicit(&c->hdr->epoch, memory_order_acquire);
            stall_snapshot(c, t, seen);
            watch = now;
        } else if (seen && now - watch + 1 > EJECT_MS) {
            uint32_t n = eject_stalled(c, t, seen, watch_g, now - watch);
            watch = 0;
            if (n) {
                last_progress = now;
                continue;
            }
        }
        if (now - last_progress > NOMEM_MS) {
            atomic_fetch_add_explicit(&c->hdr->enomem, 1, memory_order_relaxed);
            return SHMC_ENOMEM;
        }
        pause_briefly(round);
    }
}

void alloc_recover(struct shmc *c, tslot *t)
{
    scan sc = {0};
    take_free(c, t, &sc, false);
}

/* Free segments a writer that installs a fresh head keeps in reserve (by
 * evicting one victim while its fresh head has room for the victim's moves):
 * two, or one when segments are few and large (under 64: a segment is then
 * over 1/64 of the storage, and a second idle one cost 7 % of the items a
 * 32 MiB cache holds, with 14 segments of 2 MiB). */
static uint32_t reserve_segs(const struct shmc *c)
{
    return c->nsegs >= 64 ? 2u : 1u;
}

/* Replaces head h (which showed old_hw) with a fresh segment. */
static shmc_status replace_head(struct shmc *c, tslot *t, uint32_t h, uint64_t old_hw)
{
    uint32_t n;
    scan seen;
    shmc_status st = get_segment(c, t, &n, &seen);
    if (st != SHMC_OK)
        return st;
    shmc_segmeta *m = &c->segs[n];
    uint64_t me = slot_owner(t);
    uint64_t open = sw_make(SEG_OPEN, me);
    atomic_store_explicit(&m->cls, h == SHMC_MAIN_HEAD ? SEG_CLS_MAIN : SEG_CLS_SMALL,
                          memory_order_relaxed);
    atomic_store_explicit(&m->state, open, memory_order_release);
    uint64_t expect = old_hw;
    if (atomic_compare_exchange_strong_explicit(&c->heads[h].seg, &expect, (uint64_t)n + 1,
                                                memory_order_acq_rel, memory_order_acquire)) {
        /* old_hw is the head word we read from shared memory: a damaged
         * one (> nsegs) names no segment to seal. */
        if (old_hw && old_hw <= c->nsegs) {
            shmc_segmeta *om = &c->segs[old_hw - 1];
            uint64_t osw = atomic_load_explicit(&om->state, memory_order_acquire);
            if (sw_state(osw) == SEG_OPEN)
                seal(c, t, (uint32_t)(old_hw - 1), osw);
        }
        /* Keep a small reserve of free segments by evicting now, while our
         * fresh head has room to give recently read items a second chance. */
        if (seen.free < reserve_segs(c) && seen.retired < retired_cap(c)) {
            scan sc = {0};
            evict_one(c, t, &sc, false);
        }
        return SHMC_OK;
    }
    /* Someone else replaced the head first; nobody has seen n: free it. */
    cas_state(m, &open, sw_make(SEG_FREE, 0));
    return SHMC_OK;
}

/* Whether the main head (word mw) is missing or has less than 1/8 of a
 * segment of room left. */
static bool main_head_low(const struct shmc *c, uint64_t mw)
{
    if (!mw || mw > c->nsegs)
        return true;
    uint64_t pos = atomic_load_explicit(&c->segs[mw - 1].wpos, memory_order_relaxed);
    return !fits(c, pos, c->seg_size / 8);
}

shmc_status alloc_item(struct shmc *c, tslot *t, uint64_t size, uint64_t *off)
{
    uint32_t h = t->idx % c->nheads;
    for (;;) {
        uint64_t hw = atomic_load_explicit(&c->heads[h].seg, memory_order_acquire);
        if (head_append(c, t, hw, size, off))
            return SHMC_OK;
        /* The head is full (or missing): make a new one outside our read
         * section, since making room may wait for readers. */
        wseg_clear(t);
        uint32_t depth = t->depth;
        t->depth = 1;
        read_exit(c, t);
        shmc_status st = SHMC_OK;
        if (atomic_load_explicit(&c->heads[h].seg, memory_order_acquire) == hw)
            st = replace_head(c, t, h, hw);
        /* The main head, when nearly full, is replaced here too (eviction
         * never waits for a segment, so it cannot open one itself).  Our
         * write does not depend on it: a failure only sends second chance
         * to the write heads meanwhile. */
        uint64_t mw = atomic_load_explicit(&c->heads[SHMC_MAIN_HEAD].seg, memory_order_acquire);
        if (st == SHMC_OK && main_head_low(c, mw) &&
            atomic_exchange_explicit(&c->main_wanted, false, memory_order_relaxed))
            (void)replace_head(c, t, SHMC_MAIN_HEAD, mw);
        read_enter(c, t);
        t->depth = depth;
        if (st != SHMC_OK)
            return st;
    }
}
