/*
 * item.h — the encoding of an item in a storage segment: every read and
 * write of an item header goes through these accessors (layout.h describes
 * the format: a fmt byte, a narrow or wide prefix with the lengths and the
 * CAS token, then the flags and the expiry only when set).
 *
 * shmc_item is opaque (never defined): an item is reached through a
 * pointer and read only here, so no code depends on where a field sits.
 *
 * Trust: an item's bytes are shared memory, and under an ejected read
 * section (epoch.h) they may be reused while they are read.  item_check
 * (and item_lens, item_at) read the fmt byte once and check the lengths it
 * implies against the limits and the room left in the segment; whoever
 * reads key or value bytes bounds the access by the lengths it checked,
 * never by a second read of the header.  The single-field accessors
 * (item_kind, item_cas, item_flags, item_expire, item_key) re-read fmt: in
 * a valid section the item is immutable and they agree with the check; in
 * an ejected one they return garbage that validation discards, and read at
 * most ITEM_HDR_MAX bytes from a checked item start (plus, for item_key's
 * users, the checked lengths), which the data area's guard (ITEM_GUARD)
 * keeps inside the mapping.
 */
#ifndef SHMC_ITEM_H
#define SHMC_ITEM_H

#include "handle.h"

#include <string.h>

typedef struct shmc_item shmc_item; /* opaque: the bytes of an item */

static inline uint8_t item_fmt(const shmc_item *it)
{
    return *(const volatile uint8_t *)it;
}
static inline bool item_fmt_ok(uint8_t f)
{
    return (f & ITEM_FMT_MARK_MASK) == ITEM_FMT_MARK;
}
/* Header bytes of an item with format f. */
static inline uint32_t item_hlen_of(uint8_t f)
{
    return (f & ITEM_FMT_WIDE ? (uint32_t)sizeof(shmc_item_w) : (uint32_t)sizeof(shmc_item_n)) +
           (f & ITEM_FMT_FLAGS ? 4u : 0u) + (f & ITEM_FMT_EXPIRE ? 8u : 0u);
}
/* The format of an item with these fields. */
static inline uint8_t item_fmt_for(uint8_t kind, uint32_t klen, uint32_t vlen, uint32_t flags,
                                   uint64_t expire)
{
    return (uint8_t)(ITEM_FMT_MARK | (kind & ITEM_FMT_KIND) | (flags ? ITEM_FMT_FLAGS : 0u) |
                     (expire ? ITEM_FMT_EXPIRE : 0u) |
                     (klen > UINT8_MAX || vlen > UINT16_MAX ? ITEM_FMT_WIDE : 0u));
}
/* Bytes an item with these fields takes in storage (padded to 8). */
static inline uint64_t item_size(uint32_t klen, uint32_t vlen, uint32_t flags, uint64_t expire)
{
    return (item_hlen_of(item_fmt_for(0, klen, vlen, flags, expire)) + (uint64_t)klen + vlen +
            7u) & ~7ull;
}
/* The largest size of an item with these lengths (flags and expiry set). */
static inline uint64_t item_size_max(uint32_t klen, uint32_t vlen)
{
    return item_size(klen, vlen, 1, 1);
}

static inline const shmc_item_n *item_n_(const shmc_item *it)
{
    return (const shmc_item_n *)(const void *)it;
}
static inline const shmc_item_w *item_w_(const shmc_item *it)
{
    return (const shmc_item_w *)(const void *)it;
}
/* The optional fields start right after the prefix. */
static inline const uint8_t *item_ext_(const shmc_item *it, uint8_t f)
{
    return (const uint8_t *)it + (f & ITEM_FMT_WIDE ? sizeof(shmc_item_w) : sizeof(shmc_item_n));
}

/* The single-field accessors come in two forms: item_x(it) reads the fmt
 * byte again, item_x_f(it, f) uses the one a caller read and checked
 * (item_check_f): the fast paths read it once. */
static inline uint8_t item_kind(const shmc_item *it)
{
    return item_fmt(it) & ITEM_FMT_KIND;
}
static inline uint32_t item_klen(const shmc_item *it)
{
    uint8_t f = item_fmt(it);
    return f & ITEM_FMT_WIDE ? ((const volatile shmc_item_w *)item_w_(it))->klen
                             : ((const volatile shmc_item_n *)item_n_(it))->klen;
}
static inline uint32_t item_vlen(const shmc_item *it)
{
    uint8_t f = item_fmt(it);
    return f & ITEM_FMT_WIDE ? ((const volatile shmc_item_w *)item_w_(it))->vlen
                             : ((const volatile shmc_item_n *)item_n_(it))->vlen;
}
/* The CAS token written with the item (a counter cell's current token is
 * item_token, index.h). */
static inline uint64_t item_cas_f(const shmc_item *it, uint8_t f)
{
    return f & ITEM_FMT_WIDE ? item_w_(it)->cas : item_n_(it)->cas;
}
static inline uint64_t item_cas(const shmc_item *it)
{
    return item_cas_f(it, item_fmt(it));
}
static inline uint32_t item_flags_f(const shmc_item *it, uint8_t f)
{
    if (!(f & ITEM_FMT_FLAGS))
        return 0;
    uint32_t v;
    memcpy(&v, item_ext_(it, f), sizeof v);
    return v;
}
static inline uint32_t item_flags(const shmc_item *it)
{
    return item_flags_f(it, item_fmt(it));
}
/* Monotonic ms; 0 = never. */
static inline uint64_t item_expire_f(const shmc_item *it, uint8_t f)
{
    if (!(f & ITEM_FMT_EXPIRE))
        return 0;
    uint64_t v;
    memcpy(&v, item_ext_(it, f) + (f & ITEM_FMT_FLAGS ? 4 : 0), sizeof v);
    return v;
}
static inline uint64_t item_expire(const shmc_item *it)
{
    return item_expire_f(it, item_fmt(it));
}
static inline const uint8_t *item_key_f(const shmc_item *it, uint8_t f)
{
    return (const uint8_t *)it + item_hlen_of(f);
}
static inline const uint8_t *item_key(const shmc_item *it)
{
    return item_key_f(it, item_fmt(it));
}
/* Bytes the item takes in storage, from its header (what its writer
 * counted in its segment's live bytes). */
static inline uint64_t item_bytes(const shmc_item *it)
{
    uint8_t f = item_fmt(it);
    return (item_hlen_of(f) + (uint64_t)item_klen(it) + item_vlen(it) + 7u) & ~7ull;
}

/* Writes an item's header at dst (8-byte aligned, item_size bytes of room)
 * and returns where its key goes (the value follows the key). */
static inline uint8_t *item_encode(void *dst, uint8_t kind, uint32_t klen, uint32_t vlen,
                                   uint32_t flags, uint64_t expire, uint64_t cas)
{
    uint8_t f = item_fmt_for(kind, klen, vlen, flags, expire);
    uint8_t *p = dst;
    if (f & ITEM_FMT_WIDE) {
        shmc_item_w h = {.fmt = f, .zero = 0, .klen = (uint16_t)klen, .vlen = vlen, .cas = cas};
        memcpy(p, &h, sizeof h);
        p += sizeof h;
    } else {
        shmc_item_n h = {.fmt = f, .klen = (uint8_t)klen, .vlen = (uint16_t)vlen, .cas = cas};
        memcpy(p, &h, sizeof h);
        p += sizeof h;
    }
    if (flags) {
        memcpy(p, &flags, sizeof flags);
        p += sizeof flags;
    }
    if (expire) {
        memcpy(p, &expire, sizeof expire);
        p += sizeof expire;
    }
    return p;
}

/* Parses the header of a would-be item with `room` bytes before the end of
 * its segment: its fmt is read once, and the lengths it gives are checked
 * (klen in [1, max_key], vlen <= max_value, the whole item within room).
 * Returns the item's size in storage (and its fmt byte in *fmt), or 0 when
 * it is no item. */
static inline uint64_t item_check_f(const shmc_item *it, uint64_t room, uint32_t max_key,
                                    uint32_t max_value, uint8_t *fmt, uint32_t *kl, uint32_t *vl)
{
    if (room < ITEM_HDR_MIN)
        return 0;
    uint8_t f = item_fmt(it);
    uint32_t h = item_hlen_of(f);
    if (!item_fmt_ok(f) || h > room)
        return 0;
    uint32_t k, n;
    if (f & ITEM_FMT_WIDE) {
        const volatile shmc_item_w *w = (const volatile shmc_item_w *)item_w_(it);
        if (w->zero)
            return 0;
        k = w->klen;
        n = w->vlen;
    } else {
        const volatile shmc_item_n *w = (const volatile shmc_item_n *)item_n_(it);
        k = w->klen;
        n = w->vlen;
    }
    uint64_t total = (h + (uint64_t)k + n + 7u) & ~7ull;
    if (k == 0 || k > max_key || n > max_value || total > room)
        return 0;
    *fmt = f;
    *kl = k;
    *vl = n;
    return total;
}
/* item_check_f without the fmt byte. */
static inline uint64_t item_check(const shmc_item *it, uint64_t room, uint32_t max_key,
                                  uint32_t max_value, uint32_t *kl, uint32_t *vl)
{
    uint8_t f;
    return item_check_f(it, room, max_key, max_value, &f, kl, vl);
}

/* An item's key and value lengths, each read once from shared memory and
 * checked against the limits and the item's segment (item_check).
 * Whoever may read memory that a writer reuses under it (an ejected
 * section, epoch.h) bounds every access by these. */
static inline bool item_lens(const struct shmc *c, const shmc_item *it, uint32_t *kl,
                             uint32_t *vl)
{
    uint64_t in_seg = (uint64_t)((const uint8_t *)it - c->data) & (c->seg_size - 1);
    return item_check(it, c->seg_size - in_seg, c->max_key, c->max_value, kl, vl) != 0;
}

#endif
