/*
 * introspect.c — the whole-cache walks for operators and tools
 * (shmcache-cli, tests): participant slots, a walk over the keys, and the
 * consistency check (shmc_verify).  The views of
 * the lock/singleflight table live in coord.c, which owns its protocol.
 *
 * Nothing here stops other processes.  Every index, slot number and offset
 * read from the segment is bounds-checked before use.
 */
#include "alloc.h"
#include "coord.h"
#include "epoch.h"
#include "index.h"
#include "slots.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- participant slots ---- */

shmc_status shmc_procs(shmc_t *c, int all, shmc_proc_info *out, size_t max, size_t *n)
{
    if (!c || !n || (!out && max))
        return SHMC_EINVAL;
    size_t cnt = 0;
    for (uint32_t i = 0; i < c->nslots; i++) {
        shmc_slot *s = &c->slots[i];
        if (!atomic_load_explicit(&s->gen, memory_order_relaxed))
            continue; /* never taken */
        bool alive = slot_check_live_thorough(c, i); /* reaps a dead owner's slot */
        if (!alive && !all)
            continue;
        if (cnt < max) {
            shmc_proc_info *p = &out[cnt];
            memset(p, 0, sizeof *p);
            p->slot = i;
            p->pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
            p->tid = atomic_load_explicit(&s->tid, memory_order_relaxed);
            p->alive = alive;
            uint64_t e = atomic_load_explicit(&s->epoch, memory_order_acquire);
            uint64_t g = atomic_load_explicit(&c->hdr->epoch, memory_order_acquire);
            if (e) {
                p->reading = 1;
                p->ejected = (e & EPOCH_EJECTED) != 0;
                e &= ~EPOCH_EJECTED;
                p->read_epoch = e;
                p->epochs_behind = g > e ? g - e : 0;
            }
            p->ejections = atomic_load_explicit(&s->eject_count, memory_order_relaxed);
            p->eject_stall_ms = atomic_load_explicit(&s->eject_stall_ms, memory_order_relaxed);
            uint64_t at = atomic_load_explicit(&s->eject_at_ms, memory_order_relaxed), now = now_ms();
            p->eject_ago_ms = at && at <= now ? now - at : 0;
            p->holds = alive ? coord_holds(c, i) : 0;
        }
        cnt++;
    }
    *n = cnt;
    return SHMC_OK;
}

/* ---- keys ---- */

#define KEYS_WAYS_PER_SECTION 4096u
#define KEYS_BUF (64u << 10)

typedef struct kent {
    uint64_t way;
    uint32_t koff, klen;
    uint32_t vlen, flags;
    uint32_t counter;
    uint64_t ttl_left, cas;
} kent;

/* The length of an item's value as a get returns it: a counter cell reads as
 * its number, 8 bytes or its decimal digits. */
static uint32_t value_len(struct shmc *c, shmc_item *it, uint32_t vlen)
{
    if (!item_is_cell(it))
        return vlen; /* read once and checked (item_lens) */
    if (item_kind(it) == ITEM_KIND_CELL_BIN)
        return 8;
    uint32_t n = 1;
    for (uint64_t v = cell_val(cell_read(item_cell(c, it))); v >= 10; v /= 10)
        n++;
    return n;
}

shmc_status shmc_keys_iter(shmc_t *c, uint64_t *cursor, shmc_key_fn fn, void *ctx)
{
    if (!c || !fn)
        return SHMC_EINVAL;
    tslot *t;
    shmc_status st = slot_get_outside(c, &t);
    if (st != SHMC_OK)
        return st;
    uint64_t ways = c->nbuckets * SHMC_BUCKET_WAYS;
    uint64_t pos = cursor ? *cursor : 0;
    if (cursor)
        *cursor = 0;
    size_t bufcap = KEYS_BUF + c->max_key;
    uint8_t *buf = malloc(bufcap);
    kent *ents = malloc(KEYS_WAYS_PER_SECTION * sizeof *ents);
    if (!buf || !ents) {
        free(buf);
        free(ents);
        return SHMC_ESYS;
    }
    while (pos < ways) {
        uint64_t end = pos + KEYS_WAYS_PER_SECTION < ways ? pos + KEYS_WAYS_PER_SECTION : ways;
        size_t ne = 0, used = 0;
        uint64_t now = now_ms();
        read_enter(c, t);
        uint64_t j = pos;
        for (; j < end && used + c->max_key <= bufcap; j++) {
            uint64_t w = atomic_load_explicit(&c->index[j], memory_order_acquire);
            if (!w)
                continue;
            uint64_t off, exp;
            uint32_t klen, vlen; /* read once, checked */
            shmc_item *it = item_at(c, w, &off); /* validates offset, header, lengths */
            if (!it || ((exp = item_expire(it)) && exp <= now) ||
                !item_lens(c, it, &klen, &vlen))
                continue;
            kent *k = &ents[ne++];
            k->way = j;
            k->koff = (uint32_t)used;
            k->klen = klen;
            k->vlen = value_len(c, it, vlen);
            k->flags = item_flags(it);
            k->counter = item_kind(it) == ITEM_KIND_COUNTER || item_kind(it) == ITEM_KIND_CELL_BIN;
            k->ttl_left = exp ? exp - now : SHMC_TTL_NONE;
            k->cas = item_token(c, it);
            memcpy(buf + used, item_key(it), klen);
            used += klen;
        }
        bool valid = read_section_valid(c, t);
        read_exit(c, t);
        if (!valid)
            continue; /* ejected: these copies may be reused bytes; redo */
        pos = j;
        for (size_t i = 0; i < ne; i++) {
            shmc_key_info ki = {
                .key = buf + ents[i].koff,
                .klen = ents[i].klen,
                .vlen = ents[i].vlen,
                .flags = ents[i].flags,
                .counter = ents[i].counter,
                .ttl_left_ms = ents[i].ttl_left,
                .cas = ents[i].cas,
            };
            if (fn(ctx, &ki) != 0) {
                if (cursor)
                    *cursor = ents[i].way + 1 < ways ? ents[i].way + 1 : 0;
                free(buf);
                free(ents);
                return SHMC_OK;
            }
        }
    }
    free(buf);
    free(ents);
    return SHMC_OK;
}

#define NOTE(rep, ...) \
    do { \
        if (!(rep)->first_error[0]) \
            snprintf((rep)->first_error, sizeof (rep)->first_error, __VA_ARGS__); \
    } while (0)

/* Segment states and heads (after recovery: what is left is damage). */
static void verify_segments(struct shmc *c, shmc_verify_report *rep)
{
    for (uint32_t s = 0; s < c->nsegs; s++) {
        uint64_t sw = atomic_load_explicit(&c->segs[s].state, memory_order_acquire);
        uint32_t state = sw_state(sw);
        if (state > SEG_SEALING) {
            rep->segment_errors++;
            NOTE(rep, "segment %u has invalid state %u", s, state);
            continue;
        }
        if ((state == SEG_RESERVED || state == SEG_EVICTING || state == SEG_SEALING) &&
            !owner_is_live(c, sw_owner(sw))) {
            rep->orphan_segments++;
            NOTE(rep, "segment %u (state %u) is held by a dead participant", s, state);
        }
    }
    for (uint32_t h = 0; h <= c->nheads; h++) {
        /* The write heads, then the main head (alloc.c: probation). */
        uint32_t hs = h < c->nheads ? h : SHMC_MAIN_HEAD;
        uint64_t hw = atomic_load_explicit(&c->heads[hs].seg, memory_order_acquire);
        if (hw > c->nsegs) {
            rep->segment_errors++;
            NOTE(rep, "head %u names segment %llu of %u", hs, (unsigned long long)hw, c->nsegs);
        }
    }
}

#define VERIFY_WAYS 4096u

/* verify_index over ways [from, to), in one read section; a section that
 * is ejected (it held reclamation back while writers needed memory) may
 * have seen reused bytes, so its part of the report is redone. */
static void verify_ways(struct shmc *c, tslot *t, shmc_verify_report *rep, uint64_t from,
                        uint64_t to)
{
    shmc_verify_report saved = *rep;
    read_enter(c, t);
again:
    for (uint64_t i = from; i < to; i++) {
        uint64_t w = atomic_load_explicit(&c->index[i], memory_order_acquire);
        if (!w)
            continue;
        uint64_t off;
        if (iw_off(w) >= c->data_bytes) {
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
        uint32_t state = sw_state(atomic_load_explicit(&c->segs[off >> c->seg_shift].state,
                                                       memory_order_acquire));
        if (state == SEG_FREE || state == SEG_RESERVED || state == SEG_RETIRED) {
            if (atomic_load_explicit(&c->index[i], memory_order_acquire) != w)
                continue;
            rep->in_dead_segments++;
            NOTE(rep, "index word %llu points into a segment in state %u",
                 (unsigned long long)i, state);
            continue;
        }
        uint32_t kl, vl;
        if (!item_lens(c, it, &kl, &vl))
            continue; /* changed since item_at: only after an ejection */
        keyhash kh;
        keyhash_of(c, item_key(it), kl, &kh);
        uint64_t b = i / SHMC_BUCKET_WAYS;
        if ((b != kh.b1 && b != kh.b2) || iw_tag(w) != kh.tag) {
            rep->misplaced++;
            NOTE(rep, "index word %llu is not where its key hashes", (unsigned long long)i);
            continue;
        }
        uint64_t fw;
        shmc_item *fit;
        _Atomic uint64_t *found = index_find(c, &kh, item_key(it), kl, &fw, &fit);
        if (found && found != &c->index[i] &&
            atomic_load_explicit(&c->index[i], memory_order_acquire) == w) {
            rep->duplicates++;
            NOTE(rep, "key of index word %llu is indexed twice", (unsigned long long)i);
        }
        rep->items++;
    }
    if (!read_section_valid(c, t)) {
        *rep = saved; /* what we saw may be reused bytes: look again */
        read_renew(c, t);
        goto again;
    }
    read_exit(c, t);
}

/* Every index word: in range, a well-formed item, in a live segment, where
 * its key hashes, and the only entry of its key.  Outside any read section;
 * short sections (VERIFY_WAYS words each). */
static void verify_index(struct shmc *c, tslot *t, shmc_verify_report *rep)
{
    uint64_t ways = c->nbuckets * SHMC_BUCKET_WAYS;
    for (uint64_t from = 0; from < ways; from += VERIFY_WAYS)
        verify_ways(c, t, rep, from, from + VERIFY_WAYS < ways ? from + VERIFY_WAYS : ways);
}

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

    verify_segments(c, rep);
    verify_index(c, t, rep);
    bool bad = rep->bad_offsets || rep->bad_items || rep->misplaced || rep->in_dead_segments ||
               rep->duplicates || rep->segment_errors || rep->orphan_segments;
    return bad ? SHMC_ECORRUPT : SHMC_OK;
}
