/*
 * stats.c — counters summed over participant slots, and the consistency
 * check (verify) used by tests and, later, the CLI.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

shmc_status shmc_stats_get(shmc_t *c, shmc_stats *st)
{
    if (!c || !st)
        return SHMC_EINVAL;
    memset(st, 0, sizeof *st);
    for (uint32_t i = 0; i < c->nslots; i++) {
        shmc_slot *s = &c->slots[i];
#define SUM(f, g) st->f += atomic_load_explicit(&s->g, memory_order_relaxed)
        SUM(hits, st_hits);
        SUM(misses, st_misses);
        SUM(sets, st_sets);
        SUM(deletes, st_deletes);
        SUM(evictions, st_evictions);
        SUM(expirations, st_expirations);
        SUM(rescued, st_rescued);
        SUM(lock_acquires, st_lock_acq);
        SUM(lock_waits, st_lock_wait);
        SUM(lock_timeouts, st_lock_timeout);
        SUM(lock_takeovers, st_lock_takeover);
        SUM(fills, st_fills);
        SUM(fill_waits, st_fill_waits);
        SUM(fill_takeovers, st_fill_takeover);
        SUM(fill_errors, st_fill_errors);
#undef SUM
        if (atomic_load_explicit(&s->gen, memory_order_relaxed) && slot_check_live(c, i))
            st->slots_live++;
    }
    for (uint32_t s = 0; s < c->nsegs; s++) {
        shmc_segmeta *m = &c->segs[s];
        uint64_t sw = atomic_load_explicit(&m->state, memory_order_acquire);
        uint64_t live = atomic_load_explicit(&m->live, memory_order_relaxed);
        st->items += LIVE_ITEMS(live);
        st->bytes_used += LIVE_BYTES(live);
        switch (SW_STATE(sw)) {
        case SEG_FREE:
            st->segments_free++;
            st->bytes_free += c->seg_size;
            break;
        case SEG_OPEN: {
            st->segments_open++;
            uint64_t w = atomic_load_explicit(&m->wpos, memory_order_relaxed);
            st->bytes_free += w < c->seg_size ? c->seg_size - w : 0;
            break;
        }
        case SEG_SEALED:
        case SEG_SEALING:
        case SEG_EVICTING:
            st->segments_sealed++;
            break;
        case SEG_RETIRED:
            st->segments_retired++;
            break;
        default:
            break;
        }
    }
    for (uint32_t i = 0; i < c->ncoord; i++) {
        uint64_t s = atomic_load_explicit(&c->coord[i].state, memory_order_relaxed);
        if (s & 0xffffu)
            st->locks_used++; /* held: a lock owner or a fill leader */
    }
    st->locks_capacity = c->ncoord;
    st->gets = st->hits + st->misses;
    st->bytes_total = c->data_bytes;
    st->slots_reaped = atomic_load_explicit(&c->hdr->slots_reaped, memory_order_relaxed);
    st->index_capacity = c->nbuckets * SHMC_BUCKET_WAYS;
    st->enomem = atomic_load_explicit(&c->hdr->enomem, memory_order_relaxed);
    return SHMC_OK;
}

#define NOTE(rep, ...) \
    do { \
        if (!(rep)->first_error[0]) \
            snprintf((rep)->first_error, sizeof (rep)->first_error, __VA_ARGS__); \
    } while (0)

shmc_status shmc_verify(shmc_t *c, shmc_verify_report *rep)
{
    if (!c || !rep)
        return SHMC_EINVAL;
    memset(rep, 0, sizeof *rep);
    tslot *t;
    shmc_status st = slot_get_outside(c, &t);
    if (st != SHMC_OK)
        return st;
    /* Recovery first: reap dead slots, then take over their segments. */
    for (uint32_t i = 0; i < c->nslots; i++)
        if (atomic_load_explicit(&c->slots[i].gen, memory_order_relaxed))
            slot_check_live(c, i);
    alloc_recover(c, t);

    for (uint32_t s = 0; s < c->nsegs; s++) {
        uint64_t sw = atomic_load_explicit(&c->segs[s].state, memory_order_acquire);
        uint32_t state = SW_STATE(sw);
        if (state > SEG_SEALING) {
            rep->segment_errors++;
            NOTE(rep, "segment %u has invalid state %u", s, state);
            continue;
        }
        if ((state == SEG_RESERVED || state == SEG_EVICTING || state == SEG_SEALING) &&
            !owner_is_live(c, SW_OWNER(sw))) {
            rep->orphan_segments++;
            NOTE(rep, "segment %u (state %u) is held by a dead participant", s, state);
        }
    }
    for (uint32_t h = 0; h < c->nheads; h++) {
        uint64_t hw = atomic_load_explicit(&c->heads[h].seg, memory_order_acquire);
        if (hw > c->nsegs) {
            rep->segment_errors++;
            NOTE(rep, "head %u names segment %llu of %u", h, (unsigned long long)hw, c->nsegs);
        }
    }

    read_enter(c, t);
    uint64_t ways = c->nbuckets * SHMC_BUCKET_WAYS;
    for (uint64_t i = 0; i < ways; i++) {
        uint64_t w = atomic_load_explicit(&c->index[i], memory_order_acquire);
        if (!w)
            continue;
        uint64_t loc = w & IW_LOC_MASK, off;
        if (loc == 0 || ((loc - 1) << 3) >= c->data_bytes) {
            rep->bad_offsets++;
            NOTE(rep, "index word %llu points outside storage", (unsigned long long)i);
            continue;
        }
        shmc_item *it = item_at(c, w, &off);
        if (!it) {
            if (atomic_load_explicit(&c->index[i], memory_order_acquire) != w)
                continue; /* changed under us */
            rep->bad_items++;
            NOTE(rep, "index word %llu points at a malformed item", (unsigned long long)i);
            continue;
        }
        uint32_t state = SW_STATE(atomic_load_explicit(&c->segs[off >> c->seg_shift].state,
                                                       memory_order_acquire));
        if (state == SEG_FREE || state == SEG_RESERVED || state == SEG_RETIRED) {
            if (atomic_load_explicit(&c->index[i], memory_order_acquire) != w)
                continue;
            rep->in_dead_segments++;
            NOTE(rep, "index word %llu points into a segment in state %u",
                 (unsigned long long)i, state);
            continue;
        }
        keyhash kh;
        keyhash_of(c, (const uint8_t *)(it + 1), it->klen, &kh);
        uint64_t b = i / SHMC_BUCKET_WAYS;
        if ((b != kh.b1 && b != kh.b2) || (uint16_t)(w >> IW_LOC_BITS) != kh.tag) {
            rep->misplaced++;
            NOTE(rep, "index word %llu is not where its key hashes", (unsigned long long)i);
            continue;
        }
        uint64_t fw;
        shmc_item *fit;
        _Atomic uint64_t *found = index_find(c, &kh, (const uint8_t *)(it + 1), it->klen, &fw, &fit);
        if (found && found != &c->index[i] &&
            atomic_load_explicit(&c->index[i], memory_order_acquire) == w) {
            rep->duplicates++;
            NOTE(rep, "key of index word %llu is indexed twice", (unsigned long long)i);
        }
        rep->items++;
    }
    read_exit(c, t);
    bool bad = rep->bad_offsets || rep->bad_items || rep->misplaced || rep->in_dead_segments ||
               rep->duplicates || rep->segment_errors || rep->orphan_segments;
    return bad ? SHMC_ECORRUPT : SHMC_OK;
}
