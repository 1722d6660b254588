/*
 * stats.c — shmc_stats_get: the per-slot counters (layout.h: shmc_counters,
 * from SHMC_STATS_FIELDS) summed, and the gauges computed from the segment.
 * shmc_verify, the consistency walk, is in introspect.c.
 */
#include "slots.h"

#include <stdio.h>
#include <string.h>

shmc_status shmc_stats_get(shmc_t *c, shmc_stats *st)
{
    if (!c || !st)
        return SHMC_EINVAL;
    memset(st, 0, sizeof *st);
    for (uint32_t i = 0; i < c->nslots; i++) {
        shmc_slot *s = &c->slots[i];
#define SUM_slot(f) st->f += atomic_load_explicit(&s->st.f, memory_order_relaxed);
#define SUM_cache(f)
#define SUM(f, kind, src, help) SUM_##src(f)
        SHMC_STATS_FIELDS(SUM)
#undef SUM
#undef SUM_slot
#undef SUM_cache
        if (atomic_load_explicit(&s->gen, memory_order_relaxed) && slot_check_live(c, i))
            st->slots_live++;
    }
    for (uint32_t s = 0; s < c->nsegs; s++) {
        shmc_segmeta *m = &c->segs[s];
        uint64_t sw = atomic_load_explicit(&m->state, memory_order_acquire);
        uint64_t live = atomic_load_explicit(&m->live, memory_order_relaxed);
        st->items += live_items(live);
        st->bytes_used += live_bytes(live);
        uint64_t w = atomic_load_explicit(&m->wpos, memory_order_relaxed);
        w = w < c->seg_size ? w : c->seg_size;
        switch (sw_state(sw)) {
        case SEG_FREE:
            st->segments_free++;
            st->bytes_free += c->seg_size;
            break;
        case SEG_OPEN:
            st->segments_open++;
            st->bytes_free += c->seg_size - w;
            st->bytes_dead += w > live_bytes(live) ? w - live_bytes(live) : 0;
            break;
        case SEG_SEALED:
        case SEG_SEALING:
        case SEG_EVICTING:
            st->segments_sealed++;
            st->bytes_dead += w > live_bytes(live) ? w - live_bytes(live) : 0;
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
        if (slot1_of(s))
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
