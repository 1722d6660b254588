/*
 * introspect.c — read-only views of a live cache for operators and tools
 * (shmcache-cli): participant slots and a walk over the keys.  The views of
 * the lock/singleflight table live in coord.c, which owns its protocol.
 *
 * Nothing here stops other processes.  Every index, slot number and offset
 * read from the segment is bounds-checked before use.
 */
#include "internal.h"

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
                p->read_epoch = e;
                p->epochs_behind = g > e ? g - e : 0;
            }
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
            uint64_t off;
            shmc_item *it = item_at(c, w, &off); /* validates offset, header, lengths */
            if (!it)
                continue;
            if (it->expire_ms && it->expire_ms <= now)
                continue;
            uint32_t klen = it->klen; /* checked by item_at; read once */
            if (klen > c->max_key)
                continue;
            kent *k = &ents[ne++];
            k->way = j;
            k->koff = (uint32_t)used;
            k->klen = klen;
            k->vlen = it->vlen;
            k->flags = it->flags;
            k->counter = it->kind == ITEM_KIND_COUNTER || it->kind == ITEM_KIND_CELL_BIN;
            k->ttl_left = it->expire_ms ? it->expire_ms - now : SHMC_TTL_NONE;
            k->cas = item_token(it);
            if (item_is_cell(it)) {
                /* A counter reads as its number: 8 bytes, or its decimal digits. */
                uint64_t v = cell_val(cell_read(item_cell(it)));
                uint32_t n = 1;
                for (; v >= 10; v /= 10)
                    n++;
                k->vlen = it->kind == ITEM_KIND_CELL_BIN ? 8 : n;
            }
            memcpy(buf + used, (const uint8_t *)(it + 1), klen);
            used += klen;
        }
        read_exit(c, t);
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
