/*
 * cache.c — the public key/value operations, built on index + alloc + epoch.
 *
 * Reads: enter a read section, look the key up, copy out, check that the
 * section was not ejected (read_section_valid: else retry), leave.  No lock,
 * no shared write but the reader's own slot (and the accessed mark of the
 * index word, set by CAS only when clear).
 *
 * Writes: the new item is allocated and fully written first, then published
 * under the key's stripe lock with one CAS (replace) or an insert into an
 * empty way.  A writer killed before the CAS leaves dead bytes only; after
 * it, the write is complete.  Only then is the write acknowledged.
 */
#include "cache.h"
#include "alloc.h"
#include "epoch.h"
#include "index.h"
#include "slots.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static inline shmc_status check_key(struct shmc *c, const void *key, size_t klen)
{
    if (!c || !key)
        return SHMC_EINVAL;
    if (klen == 0 || klen > c->max_key)
        return SHMC_EKEYLEN;
    return SHMC_OK;
}

static inline bool expired_f(const shmc_item *it, uint8_t fmt, uint64_t *now)
{
    if (caa_likely(!(fmt & ITEM_FMT_EXPIRE)))
        return false;
    uint64_t exp = item_expire_f(it, fmt);
    if (!exp)
        return false;
    if (!*now)
        *now = now_ms();
    return exp <= *now;
}
static inline bool expired(const shmc_item *it, uint64_t *now)
{
    return expired_f(it, item_fmt(it), now);
}

/* What a write requires of the key's current entry, and what it reports
 * about that entry when refused. */
enum store_mode { STORE_SET, STORE_ADD, STORE_REPLACE, STORE_CAS, STORE_VALUE };
typedef struct cond {
    enum store_mode mode;
    uint64_t token;             /* STORE_CAS */
    const void *expected;       /* STORE_VALUE */
    size_t elen;
    bool abs_expire;            /* the ttl argument is an absolute expiry (rewrites) */
    uint8_t kind;               /* item kind to write (ITEM_KIND_*) */
    uint64_t cell_value;        /* ITEM_KIND_CELL_*: the number (val is ignored) */
    uint64_t cur_cas;           /* out: the current entry's token, 0 if none */
    void *cur;                  /* out (optional): the current value on refusal */
    size_t curlen, *cur_vlen;
} cond;
static shmc_status store(struct shmc *c, const void *key, size_t klen, const void *val,
                         size_t vlen, uint32_t flags, uint64_t ttl_ms, cond *cd);
static shmc_status publish(struct shmc *c, tslot *t, const keyhash *kh, const void *key,
                           size_t klen, cond *cd, uint64_t off, uint64_t total);
static shmc_item *write_item(struct shmc *c, tslot *t, uint64_t off, const void *key, size_t klen,
                             const void *val, size_t vlen, uint32_t flags, uint64_t expire,
                             uint8_t kind);
static shmc_item *write_cell_item(struct shmc *c, tslot *t, uint64_t off, const void *key,
                                  size_t klen, uint64_t value, uint32_t flags, uint64_t expire,
                                  uint8_t kind);
static size_t counter_format(uint64_t v, uint8_t kind, uint8_t out[24]);
static uint64_t next_cas(tslot *t);
static uint64_t expiry_of(uint64_t ttl_ms);


/* Counters live in cells when a cell item fits under max_value. */
static inline bool cells_ok(const struct shmc *c)
{
    return c->max_value >= CELL_VLEN;
}

/* The value of an item as readers see it: its bytes, or a counter cell's
 * number formatted into tmp (with the cell's token in *tok). */
static inline const uint8_t *item_value_f(struct shmc *c, shmc_item *it, uint8_t fmt,
                                          uint32_t kl, uint32_t vl, uint8_t tmp[24],
                                          uint32_t *vlen, uint64_t *tok)
{
    /* fmt, kl, vl: read once and checked (item_check_f), since the item's
     * bytes may be reused under an ejected section. */
    if (caa_unlikely(kind_is_cell(fmt & ITEM_FMT_KIND))) {
        cell_t x = cell_read(item_cell(c, it));
        *tok = cell_tok(x) & ~CELL_FROZEN;
        *vlen = (uint32_t)counter_format(cell_val(x), fmt & ITEM_FMT_KIND, tmp);
        return tmp;
    }
    *tok = item_cas_f(it, fmt);
    *vlen = vl;
    return item_key_f(it, fmt) + kl;
}
/* item_value_f of what a lookup found: its value pointer is known. */
static inline const uint8_t *found_value(struct shmc *c, const found *f, uint8_t tmp[24],
                                         uint32_t *vlen, uint64_t *tok)
{
    if (caa_unlikely(kind_is_cell(f->fmt & ITEM_FMT_KIND)))
        return item_value_f(c, f->it, f->fmt, f->kl, f->vl, tmp, vlen, tok);
    *tok = item_cas_f(f->it, f->fmt);
    *vlen = f->vl;
    return f->val;
}
static inline const uint8_t *item_value(struct shmc *c, shmc_item *it, uint32_t kl,
                                        uint32_t vl, uint8_t tmp[24], uint32_t *vlen,
                                        uint64_t *tok)
{
    return item_value_f(c, it, item_fmt(it), kl, vl, tmp, vlen, tok);
}

/* The start of every keyed operation: validate the key, take the calling
 * thread's slot, hash the key. */
static inline shmc_status op_begin(struct shmc *c, const void *key, size_t klen, tslot **t,
                                   keyhash *kh)
{
    shmc_status st = check_key(c, key, klen);
    if (st == SHMC_OK)
        st = slot_get(c, t);
    if (st == SHMC_OK) {
        keyhash_of(c, key, klen, kh);
        /* Every keyed operation reads both buckets: ask for them before
         * the read section's bookkeeping (a prefetch never faults). */
        __builtin_prefetch(c->index + kh->b1 * SHMC_BUCKET_WAYS);
        __builtin_prefetch(c->index + kh->b2 * SHMC_BUCKET_WAYS);
    }
    return st;
}

#ifdef SHMC_TESTING
void (*shmc__test_publish_hook)(const void *key, size_t klen);
void (*shmc__test_prelock_hook)(const void *key, size_t klen);
bool (*shmc__test_alloc_hook)(void *room, uint64_t bytes);
void (*shmc__test_unlinked_hook)(const void *key, size_t klen);
#endif

/* What a get callback is given: the value (a counter's formatted into a
 * buffer of the caller's), the item and its CAS token.  Valid only inside
 * the callback. */
typedef struct visit {
    const uint8_t *val;
    uint32_t vlen;
    const shmc_item *it;
    uint8_t fmt;                 /* the item's, as checked: item_*_f(it, fmt) */
    uint64_t cas;
} visit;

/* Called inside the read section with the value in place.  It may run more
 * than once: its output is discarded (by the undo function, when given, for
 * a SHMC_OK result) if the section turns out to have been ejected. */
typedef shmc_status (*visit_fn)(void *ctx, const visit *v);
typedef void (*undo_fn)(void *ctx);

/* Inline in every reader, so that the callback is inlined too: a get is a
 * lookup and a copy, and every call it makes shows (callgrind). */
static inline __attribute__((always_inline)) shmc_status
get_visit_undo(struct shmc *c, const void *key, size_t klen, visit_fn fn, undo_fn undo,
               void *ctx)
{
    tslot *t;
    keyhash kh;
    shmc_status st = op_begin(c, key, klen, &t, &kh);
    if (caa_unlikely(st != SHMC_OK))
        return st;
    read_enter(c, t);
    for (;;) {
        uint64_t now = 0;
        found f;
        bool hit = index_lookup(c, &kh, key, klen, &f) && !expired_f(f.it, f.fmt, &now);
        if (caa_likely(hit)) {
            uint8_t tmp[24];
            visit v = {.it = f.it, .fmt = f.fmt};
            v.val = found_value(c, &f, tmp, &v.vlen, &v.cas);
            st = fn(ctx, &v);
        } else {
            st = SHMC_NOT_FOUND;
        }
        if (caa_likely(read_section_valid(c, t))) {
            if (hit) {
                iw_mark_accessed(f.way, f.w);
                STAT_ADD(t, hits, 1);
            } else {
                STAT_ADD(t, misses, 1);
            }
            break;
        }
        /* Ejected: what we saw may be memory reused under us.  Forget it
         * and look the key up again in a fresh section. */
        if (hit && st == SHMC_OK && undo)
            undo(ctx);
        read_renew(c, t);
    }
    read_exit(c, t);
    return st;
}

static inline __attribute__((always_inline)) shmc_status
get_visit(struct shmc *c, const void *key, size_t klen, visit_fn fn, void *ctx)
{
    return get_visit_undo(c, key, klen, fn, NULL, ctx);
}

struct copy_ctx {
    void *buf;
    size_t buflen, *vlen;
    uint32_t *flags;
};


static shmc_status copy_value(struct copy_ctx *x, const uint8_t *val, uint32_t vlen,
                              uint32_t flags)
{
    *x->vlen = vlen;
    if (vlen > x->buflen)
        return SHMC_EBUFSIZE;
    copy_short(x->buf, val, vlen);
    if (x->flags)
        *x->flags = flags;
    return SHMC_OK;
}

static inline shmc_status copy_out(void *p, const visit *v)
{
    return copy_value(p, v->val, v->vlen, item_flags_f(v->it, v->fmt));
}

shmc_status shmc_get(shmc_t *c, const void *key, size_t klen, void *buf, size_t buflen,
                     size_t *vlen, uint32_t *flags)
{
    if (!vlen || (!buf && buflen))
        return SHMC_EINVAL;
    struct copy_ctx x = {buf, buflen, vlen, flags};
    return get_visit(c, key, klen, copy_out, &x);
}

struct alloc_ctx {
    void **val;
    size_t *vlen;
    uint32_t *flags;
};

static void alloc_undo(void *p)
{
    struct alloc_ctx *x = p;
    free(*x->val);
    *x->val = NULL;
}

static shmc_status alloc_value(struct alloc_ctx *x, const uint8_t *val, uint32_t vlen,
                               uint32_t flags)
{
    uint8_t *m = malloc(vlen ? vlen : 1);
    if (!m) {
        errno = ENOMEM;
        return SHMC_ESYS;
    }
    if (vlen)
        memcpy(m, val, vlen);
    *x->val = m;
    *x->vlen = vlen;
    if (x->flags)
        *x->flags = flags;
    return SHMC_OK;
}

/* A private copy of an entry, for read-modify-write loops. */
typedef struct entry_copy {
    void *val;
    size_t vlen;
    uint32_t flags;
    uint64_t cas, expire;
    uint8_t kind;
} entry_copy;

static shmc_status alloc_out(void *p, const visit *v)
{
    return alloc_value(p, v->val, v->vlen, item_flags_f(v->it, v->fmt));
}

static shmc_status entry_out(void *p, const visit *v)
{
    entry_copy *e = p;
    e->cas = v->cas;
    e->expire = item_expire_f(v->it, v->fmt);
    e->kind = v->fmt & ITEM_FMT_KIND;
    struct alloc_ctx a = {&e->val, &e->vlen, &e->flags};
    return alloc_value(&a, v->val, v->vlen, item_flags_f(v->it, v->fmt));
}

static void entry_undo(void *p)
{
    entry_copy *e = p;
    free(e->val);
    e->val = NULL;
}

static bool counter_parse(const entry_copy *e, uint64_t *v);

static shmc_status read_entry(shmc_t *c, const void *key, size_t klen, entry_copy *e)
{
    e->val = NULL;
    return get_visit_undo(c, key, klen, entry_out, entry_undo, e);
}

shmc_status shmc_get_alloc(shmc_t *c, const void *key, size_t klen, void **val, size_t *vlen,
                           uint32_t *flags)
{
    if (!val || !vlen)
        return SHMC_EINVAL;
    *val = NULL;
    struct alloc_ctx x = {val, vlen, flags};
    return get_visit_undo(c, key, klen, alloc_out, alloc_undo, &x);
}

shmc_status get_alloc_expire(shmc_t *c, const void *key, size_t klen, void **val,
                             size_t *vlen, uint32_t *flags, uint64_t *expire)
{
    entry_copy e;
    shmc_status st = read_entry(c, key, klen, &e);
    *val = e.val;
    if (st == SHMC_OK) {
        *vlen = e.vlen;
        if (flags)
            *flags = e.flags;
        *expire = e.expire;
    }
    return st;
}

struct gets_ctx {
    struct copy_ctx copy;
    uint64_t *cas;
};

static inline shmc_status gets_out(void *p, const visit *v)
{
    struct gets_ctx *x = p;
    *x->cas = v->cas;
    return copy_value(&x->copy, v->val, v->vlen, item_flags_f(v->it, v->fmt));
}

shmc_status shmc_gets(shmc_t *c, const void *key, size_t klen, void *buf, size_t buflen,
                      size_t *vlen, uint32_t *flags, uint64_t *cas)
{
    if (!vlen || !cas || (!buf && buflen))
        return SHMC_EINVAL;
    *cas = 0;
    struct gets_ctx x = {{buf, buflen, vlen, flags}, cas};
    return get_visit(c, key, klen, gets_out, &x);
}

static shmc_status ttl_out(void *p, const visit *v)
{
    uint64_t e = item_expire_f(v->it, v->fmt), now = now_ms();
    *(uint64_t *)p = e == 0 ? SHMC_TTL_NONE : (e > now ? e - now : 0);
    return SHMC_OK;
}

shmc_status shmc_ttl(shmc_t *c, const void *key, size_t klen, uint64_t *ttl_ms)
{
    if (!ttl_ms)
        return SHMC_EINVAL;
    return get_visit(c, key, klen, ttl_out, ttl_ms);
}

/* Republishes the entry with a new expiry (and returns its value if asked):
 * items are immutable once published (readers copy them without a lock), so
 * this is a cas loop that cannot lose to, or undo, a concurrent write. */
static shmc_status retouch(shmc_t *c, const void *key, size_t klen, uint64_t ttl_ms,
                           entry_copy *keep)
{
    for (;;) {
        entry_copy e;
        shmc_status st = read_entry(c, key, klen, &e);
        if (st != SHMC_OK)
            return st;
        cond cd = {.mode = STORE_CAS, .token = e.cas, .kind = e.kind};
        if (kind_is_cell(e.kind) && !counter_parse(&e, &cd.cell_value))
            cd.kind = ITEM_KIND_PLAIN; /* cannot happen: a cell reads as a number */
        st = store(c, key, klen, e.val, e.vlen, e.flags, ttl_ms, &cd);
        if (st == SHMC_OK && keep) {
            *keep = e;
            return st;
        }
        free(e.val);
        if (st != SHMC_STALE)
            return st;
    }
}

shmc_status shmc_touch(shmc_t *c, const void *key, size_t klen, uint64_t ttl_ms)
{
    return retouch(c, key, klen, ttl_ms, NULL);
}

shmc_status shmc_get_and_touch(shmc_t *c, const void *key, size_t klen, uint64_t ttl_ms,
                               void **val, size_t *vlen, uint32_t *flags)
{
    if (!val || !vlen)
        return SHMC_EINVAL;
    *val = NULL;
    entry_copy e;
    shmc_status st = retouch(c, key, klen, ttl_ms, &e);
    if (st == SHMC_OK) {
        *val = e.val;
        *vlen = e.vlen;
        if (flags)
            *flags = e.flags;
    }
    return st;
}

/* Appends (or prepends) data to a present value, keeping flags, expiry and
 * kind: a read and a compare-and-swap, retried if another write won. */
static shmc_status concat(shmc_t *c, const void *key, size_t klen, const void *data,
                          size_t dlen, bool front)
{
    if (!data && dlen)
        return SHMC_EINVAL;
    for (;;) {
        entry_copy e;
        shmc_status st = read_entry(c, key, klen, &e);
        if (st != SHMC_OK)
            return st;
        /* dlen is the caller's: e.vlen + dlen could wrap around (SIZE_MAX
         * made a 20-byte prepend write before its buffer). */
        if (dlen > c->max_value || e.vlen + dlen > c->max_value) {
            free(e.val);
            return SHMC_EVALLEN;
        }
        uint8_t *nv = malloc(e.vlen + dlen + 1);
        if (!nv) {
            free(e.val);
            errno = ENOMEM;
            return SHMC_ESYS;
        }
        uint8_t *old_at = nv + (front ? dlen : 0), *new_at = nv + (front ? 0 : e.vlen);
        if (e.vlen)
            memcpy(old_at, e.val, e.vlen);
        if (dlen)
            memcpy(new_at, data, dlen);
        cond cd = {.mode = STORE_CAS, .token = e.cas, .abs_expire = true, .kind = ITEM_KIND_PLAIN};
        st = store(c, key, klen, nv, e.vlen + dlen, e.flags, e.expire, &cd);
        free(nv);
        free(e.val);
        if (st != SHMC_STALE)
            return st;
    }
}

shmc_status shmc_append(shmc_t *c, const void *key, size_t klen, const void *data, size_t dlen)
{
    return concat(c, key, klen, data, dlen, false);
}

shmc_status shmc_prepend(shmc_t *c, const void *key, size_t klen, const void *data, size_t dlen)
{
    return concat(c, key, klen, data, dlen, true);
}

/* ---- counters ---- */

/* Parses a counter value: ITEM_KIND_COUNTER items hold 8 little-endian
 * bytes; any other value must be 1-20 ASCII decimal digits <= 2^64-1. */
static bool counter_value(uint8_t kind, const uint8_t *p, size_t n, uint64_t *v)
{
    if (kind == ITEM_KIND_COUNTER || kind == ITEM_KIND_CELL_BIN) {
        if (n != 8)
            return false;
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = (x << 8) | p[i];
        *v = x;
        return true;
    }
    if (n == 0 || n > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

static bool counter_parse(const entry_copy *e, uint64_t *v)
{
    return counter_value(e->kind, e->val, e->vlen, v);
}

static size_t counter_format(uint64_t v, uint8_t kind, uint8_t out[24])
{
    if (kind == ITEM_KIND_COUNTER || kind == ITEM_KIND_CELL_BIN) {
        for (int i = 0; i < 8; i++)
            out[i] = (uint8_t)(v >> (8 * i));
        return 8;
    }
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)tmp[n - 1 - i];
    return n;
}

/* The kind a counter is written as: a cell when cells fit (cells_ok),
 * binary or decimal as it was. */
static uint8_t counter_kind(uint8_t kind, bool cell)
{
    bool bin = kind == ITEM_KIND_COUNTER || kind == ITEM_KIND_CELL_BIN;
    return cell ? (bin ? ITEM_KIND_CELL_BIN : ITEM_KIND_CELL_DEC)
                : (bin ? ITEM_KIND_COUNTER : ITEM_KIND_PLAIN);
}

/* incr wraps modulo 2^64; decr stops at 0 (as memcached does). */
static inline uint64_t counter_step(uint64_t v, uint64_t delta, bool down)
{
    return down ? (v > delta ? v - delta : 0) : v + delta;
}

/* One in-place update of a counter cell: read it, check the section,
 * compute, and CAS value and a fresh token together; retried while other
 * incrementers win.  False, having written nothing, when the cell is frozen
 * (being moved or replaced) or the read section is no longer valid: the
 * caller then takes the locked path.
 * The first read is two plain loads, not a consistent pair (cell_read): a
 * torn pair only fails the CAS, which returns the real state.  It used to be
 * a CAS of 0 over 0 (the line then comes over once, for writing); with two
 * processes on one hot counter that was a second locked operation per
 * increment, within which the other core took the line away, and two
 * processes incremented 1.4x slower than with plain loads (bench/README). */
static inline bool cell_add(struct shmc *c, tslot *t, cell_t *p, uint64_t delta, bool down,
                            uint64_t *result)
{
    cell_t x = cell_peek(p);
    uint64_t tok = next_cas(t);
    for (;;) {
        if (caa_unlikely(cell_tok(x) & CELL_FROZEN))
            return false;
        /* After reading, before writing: an ejected section's item may have
         * been reused meanwhile (issue 16); the CAS then fails anyway unless
         * the same 16 bytes came back, which needs the same unique token. */
        if (caa_unlikely(!read_section_valid(c, t)))
            return false;
        uint64_t nv = counter_step(cell_val(x), delta, down);
        cell_t was = cell_cas(p, x, cell_make(nv, tok));
        if (caa_likely(was == x)) {
            *result = nv;
            return true;
        }
        x = was;
    }
}

/* Whether an item sits in a segment sealed more than nsegs/8 seals ago:
 * eviction (oldest first) may reach it soon (retired segments and the free
 * reserve can leave few sealed ones).  A counter updated in place stays
 * where it was written, and a second-chance copy is not always possible (the
 * evicting writer's open segment can be full): so a counter that ages is
 * rewritten once by the locked path, into an open segment, and is then
 * updated in place there. */
static inline bool item_aging(struct shmc *c, shmc_item *it)
{
    uint64_t off = (uint64_t)((uint8_t *)it - c->data);
    uint64_t seq = atomic_load_explicit(&c->segs[off >> c->seg_shift].seq, memory_order_relaxed);
    return seq && atomic_load_explicit(&c->hdr->seal_seq, memory_order_relaxed) - seq >
                      c->nsegs / 8;
}

/* The fast path: a counter cell updated in place, with no lock and no
 * allocation.  False when the key is not a live counter cell (or the cell is
 * frozen): the caller takes the locked path. */
static bool counter_inplace(shmc_t *c, const void *key, size_t klen, uint64_t delta, bool down,
                            uint64_t *result)
{
    tslot *t;
    keyhash kh;
    if (op_begin(c, key, klen, &t, &kh) != SHMC_OK)
        return false; /* the locked path reports the error */
    read_enter(c, t);
    uint64_t now = 0;
    found f;
    bool done = index_lookup(c, &kh, key, klen, &f) && kind_is_cell(f.fmt & ITEM_FMT_KIND) &&
                !expired_f(f.it, f.fmt, &now) && !item_aging(c, f.it) &&
                cell_add(c, t, item_cell_f(c, f.it, f.fmt, f.kl), delta, down, result);
    if (done) {
        iw_mark_accessed(f.way, f.w);
        STAT_ADD(t, sets, 1);
    }
    read_exit(c, t);
    return done;
}

/* The locked path, in one pass under the key's stripe lock: a live cell is
 * updated in place; anything else (a missing key with SHMC_INCR_CREATE, a
 * decimal value set by shmc_set, a frozen cell) is replaced by a new counter
 * cell appended with the no-wait allocation fast path (so holding the lock
 * cannot stall anyone) and published by CAS.  Returns false, having changed
 * nothing, when the open segment is full or a mover changed the entry; the
 * caller then takes the general path. */
/* A counter being rewritten under the stripe lock: its next state. */
typedef struct ctr_next {
    uint64_t nv, expire;
    uint32_t flags;
    uint8_t kind;
} ctr_next;

/* Writes the counter's next state as a new item (a cell when cells fit)
 * from the no-wait allocation path and publishes it in place of `old`
 * (slot/ow; NULL: absent).  Under the key's stripe lock.  False, having
 * changed nothing, when the open segment is full or a mover changed the
 * entry; else *out (SHMC_OK or SHMC_EVALLEN). */
static bool counter_republish(struct shmc *c, tslot *t, const keyhash *kh, const void *key,
                              size_t klen, _Atomic uint64_t *slot, uint64_t ow, shmc_item *old,
                              const ctr_next *n, shmc_status *out)
{
    uint8_t buf[24];
    bool cell = cells_ok(c);
    uint8_t kind = counter_kind(n->kind, cell);
    size_t len = counter_format(n->nv, kind, buf);
    if (len > c->max_value) {
        /* As store() would say: an item over max_value would be written and
         * published, then refused by every reader (item_at). */
        *out = SHMC_EVALLEN;
        return true;
    }
    uint64_t total = item_size((uint32_t)klen, cell ? CELL_VLEN : (uint32_t)len, n->flags,
                               n->expire), off;
    if (!alloc_in_head(c, t, total, &off))
        return false;
    if (cell)
        write_cell_item(c, t, off, key, klen, n->nv, n->flags, n->expire, kind);
    else
        write_item(c, t, off, key, klen, buf, len, n->flags, n->expire, kind);
    uint64_t nw = iw_make(kh->tag, off);
    if (!read_section_valid(c, t)) {
        /* Ejected: the entry (or the miss) we read may be bytes reused under
         * us; the general path redoes it in a fresh section. */
        seg_dec_live(c, off, total);
        return false;
    }
    /* From here to the CAS the key's word can change only by eviction (-> 0)
     * or a second-chance copy (new location), both of which fail the CAS:
     * the value we read is the one we replace. */
    if (slot) {
        uint64_t ooff = iw_off(ow);
        uint64_t obytes = item_bytes(old), olife = seg_life(c, ooff);
        /* old is no cell, or frozen by the caller, or expired (freezing it
         * keeps late updates off it). */
        if (!cell_freeze(c, t, old) || !iw_cas(slot, &ow, nw)) {
            seg_dec_live(c, off, total); /* moved by an evictor: dead bytes */
            return false;
        }
        seg_dec_live_if(c, ooff, obytes, olife);
    } else {
        index_insert(c, t, kh, nw);
    }
    STAT_ADD(t, sets, 1);
    *out = SHMC_OK;
    return true;
}

static bool counter_locked(shmc_t *c, const void *key, size_t klen, uint64_t delta, bool down,
                           uint64_t initial, uint64_t ttl_ms, unsigned opts, uint64_t *result,
                           shmc_status *out)
{
    tslot *t;
    keyhash kh;
    if (op_begin(c, key, klen, &t, &kh) != SHMC_OK)
        return false; /* the general path reports the error */
    read_enter(c, t);
    shmc_status ls = stripe_lock(c, kh.stripe);
    if (ls != SHMC_OK) {
        /* The general path would only wait for the same lock again. */
        read_exit(c, t);
        *out = ls;
        return true;
    }
    bool done = true;
    uint64_t ow = 0, now = 0;
    shmc_item *old = NULL;
    _Atomic uint64_t *slot = index_find(c, &kh, key, klen, &ow, &old);
    ctr_next n;
    if (!slot || expired(old, &now)) {
        n = (ctr_next){initial, expiry_of(ttl_ms), 0,
                       opts & SHMC_INCR_BINARY ? ITEM_KIND_COUNTER : ITEM_KIND_PLAIN};
        *out = opts & SHMC_INCR_CREATE ? SHMC_OK : SHMC_NOT_FOUND;
    } else if (item_is_cell(old) && !item_aging(c, old) &&
               cell_add(c, t, item_cell(c, old), delta, down, result)) {
        iw_mark_accessed(slot, ow);
        STAT_ADD(t, sets, 1);
        *out = SHMC_OK;
        goto unlock;
    } else if (!cell_freeze(c, t, old)) {
        /* To be replaced: frozen first, so that the number read below is
         * final (an unlocked incrementer may be at it right now). */
        done = false;
        goto unlock;
    } else {
        uint8_t tmp[24];
        uint32_t kl, vl, vlen;
        uint64_t tok, v = 0;
        *out = SHMC_ENOTNUM;
        if (item_lens(c, old, &kl, &vl)) {
            const uint8_t *val = item_value(c, old, kl, vl, tmp, &vlen, &tok);
            if (counter_value(item_kind(old), val, vlen, &v))
                *out = SHMC_OK;
        }
        n = (ctr_next){counter_step(v, delta, down), item_expire(old), item_flags(old),
                       item_kind(old)};
    }
    if (*out != SHMC_OK) {
        /* A miss or a non-number seen in bytes reused under us (ejected)
         * proves nothing: the general path reads the entry again. */
        done = read_section_valid(c, t);
    } else {
        done = counter_republish(c, t, &kh, key, klen, slot, ow, old, &n, out);
        if (done && *out == SHMC_OK)
            *result = n.nv;
    }
unlock:
    wseg_clear(t);
    stripe_unlock(c, kh.stripe);
    read_exit(c, t);
    return done;
}

static shmc_status counter_add(shmc_t *c, const void *key, size_t klen, uint64_t delta,
                               bool down, uint64_t initial, uint64_t ttl_ms, unsigned opts,
                               uint64_t *result)
{
    if (!result || (opts & ~(SHMC_INCR_CREATE | SHMC_INCR_BINARY)))
        return SHMC_EINVAL;
    if (counter_inplace(c, key, klen, delta, down, result))
        return SHMC_OK;
    shmc_status fast;
    if (counter_locked(c, key, klen, delta, down, initial, ttl_ms, opts, result, &fast))
        return fast;
    /* The general path: a read and a compare-and-swap, retried. */
    bool cell = cells_ok(c);
    uint8_t buf[24];
    for (;;) {
        entry_copy e;
        shmc_status st = read_entry(c, key, klen, &e);
        if (st == SHMC_NOT_FOUND) {
            if (!(opts & SHMC_INCR_CREATE))
                return st;
            uint8_t kind = counter_kind(
                opts & SHMC_INCR_BINARY ? ITEM_KIND_COUNTER : ITEM_KIND_PLAIN, cell);
            cond cd = {.mode = STORE_ADD, .kind = kind, .cell_value = initial};
            st = store(c, key, klen, buf, counter_format(initial, kind, buf), 0, ttl_ms, &cd);
            if (st == SHMC_OK)
                *result = initial;
            if (st == SHMC_EXISTS)
                continue; /* created meanwhile by someone else: count on it */
            return st;
        }
        if (st != SHMC_OK)
            return st;
        uint64_t v;
        if (!counter_parse(&e, &v)) {
            free(e.val);
            return SHMC_ENOTNUM;
        }
        uint64_t nv = counter_step(v, delta, down);
        uint8_t kind = counter_kind(e.kind, cell);
        cond cd = {.mode = STORE_CAS, .token = e.cas, .abs_expire = true, .kind = kind,
                   .cell_value = nv};
        st = store(c, key, klen, buf, counter_format(nv, kind, buf), e.flags, e.expire, &cd);
        free(e.val);
        if (st == SHMC_OK) {
            *result = nv;
            return st;
        }
        if (st != SHMC_STALE && st != SHMC_NOT_FOUND)
            return st;
    }
}

shmc_status shmc_incr(shmc_t *c, const void *key, size_t klen, uint64_t delta, uint64_t initial,
                      uint64_t ttl_ms, unsigned opts, uint64_t *result)
{
    return counter_add(c, key, klen, delta, false, initial, ttl_ms, opts, result);
}

shmc_status shmc_decr(shmc_t *c, const void *key, size_t klen, uint64_t delta, uint64_t initial,
                      uint64_t ttl_ms, unsigned opts, uint64_t *result)
{
    return counter_add(c, key, klen, delta, true, initial, ttl_ms, opts, result);
}

static shmc_status found_ok(void *p, const visit *v)
{
    (void)p, (void)v;
    return SHMC_OK;
}

shmc_status shmc_exists(shmc_t *c, const void *key, size_t klen)
{
    return get_visit(c, key, klen, found_ok, NULL);
}

static uint64_t next_cas(tslot *t)
{
    uint64_t seq = atomic_load_explicit(&t->s->cas_seq, memory_order_relaxed) + 1;
    atomic_store_explicit(&t->s->cas_seq, seq, memory_order_relaxed);
    /* The top bit is a counter cell's CELL_FROZEN (2^47 tokens per slot). */
    return cas_make(seq, t->idx + 1) & ~CELL_FROZEN;
}

/* ---- writes ---- */

/* Fills a freshly allocated (unpublished) item and counts it in its
 * segment, before it is published. */
static shmc_item *write_item(struct shmc *c, tslot *t, uint64_t off, const void *key, size_t klen,
                             const void *val, size_t vlen, uint32_t flags, uint64_t expire,
                             uint8_t kind)
{
    shmc_item *it = (shmc_item *)(c->data + off);
    uint8_t *k = item_encode(it, kind, (uint32_t)klen, (uint32_t)vlen, flags, expire,
                             next_cas(t));
    copy_short(k, key, klen);
    copy_short(k + klen, val, vlen);
    seg_inc_live(c, off, item_size((uint32_t)klen, (uint32_t)vlen, flags, expire), expire);
    return it;
}

/* write_item for a counter cell holding `value` (kind ITEM_KIND_CELL_*);
 * the allocation is item_size(klen, CELL_VLEN, flags, expire). */
static shmc_item *write_cell_item(struct shmc *c, tslot *t, uint64_t off, const void *key,
                                  size_t klen, uint64_t value, uint32_t flags, uint64_t expire,
                                  uint8_t kind)
{
    uint8_t zero[CELL_VLEN] = {0};
    shmc_item *it = write_item(c, t, off, key, klen, zero, CELL_VLEN, flags, expire, kind);
    *item_cell(c, it) = cell_make(value, item_cas(it)); /* unpublished: a plain store */
    return it;
}

/* Whether a write under `cd` may replace `old` (NULL: absent).  Called under
 * the key's stripe lock.  On refusal, the status to return, with the current
 * entry's token and (if asked) value reported through cd. */
static shmc_status store_allowed(struct shmc *c, cond *cd, shmc_item *old, bool old_expired)
{
    uint32_t okl = 0, ovl = 0;
    if (old && !item_lens(c, old, &okl, &ovl))
        old = NULL; /* only after an ejection (validated by the caller) */
    bool present = old && !old_expired;
    shmc_status st;
    uint8_t tmp[24];
    uint32_t vlen = 0;
    uint64_t tok = 0;
    const uint8_t *val = present ? item_value(c, old, okl, ovl, tmp, &vlen, &tok) : NULL;
    cd->cur_cas = tok;
    switch (cd->mode) {
    case STORE_SET: st = SHMC_OK; break;
    case STORE_ADD: st = present ? SHMC_EXISTS : SHMC_OK; break;
    case STORE_REPLACE: st = present ? SHMC_OK : SHMC_NOT_FOUND; break;
    case STORE_CAS:
        st = !present ? SHMC_NOT_FOUND : tok == cd->token ? SHMC_OK : SHMC_STALE;
        break;
    case STORE_VALUE:
        st = !present ? SHMC_NOT_FOUND
             : (vlen == cd->elen && (cd->elen == 0 || memcmp(val, cd->expected, cd->elen) == 0))
                 ? SHMC_OK
                 : SHMC_STALE;
        break;
    default: st = SHMC_EINVAL; break;
    }
    if (st != SHMC_OK && present && cd->cur_vlen) {
        *cd->cur_vlen = vlen;
        if (vlen <= cd->curlen && vlen)
            memcpy(cd->cur, val, vlen);
    }
    return st;
}

/* Items up to this size are written under the stripe lock by a conditional
 * write that passed its check (the no-wait allocation fast path). */
#define LOCKED_WRITE_MAX 512u

/* Checks a conditional write before paying for it: a failed add or stale
 * cas (common in retry loops) then allocates nothing.  The verdict counts
 * only if the section was not ejected meanwhile (else the old entry's bytes
 * may have been reused under us): then it is taken again.  When it passes and
 * the item is small, this also takes its room in our open segment (never
 * waits) and keeps the lock (*locked): the write is then published in the
 * same round on the lock, which halves the lock traffic of cas loops. */
static shmc_status precheck(struct shmc *c, tslot *t, const keyhash *kh, const void *key,
                            size_t klen, cond *cd, uint64_t total, uint64_t *off, bool *locked)
{
    *locked = false;
    shmc_status st = stripe_lock(c, kh->stripe);
    if (st != SHMC_OK)
        return st;
    for (;;) {
        uint64_t ow, now = 0;
        shmc_item *old = NULL;
        if (!index_find(c, kh, key, klen, &ow, &old))
            old = NULL;
        st = store_allowed(c, cd, old, old && expired(old, &now));
        if (read_section_valid(c, t))
            break;
        read_renew(c, t);
    }
    if (st == SHMC_OK && total <= LOCKED_WRITE_MAX && alloc_in_head(c, t, total, off)) {
        *locked = true; /* under our write hazard (alloc_in_head) */
        return st;
    }
    stripe_unlock(c, kh->stripe);
    return st;
}

/* The expiry of an item stored now with ttl_ms (0 = never). */
static uint64_t expiry_of(uint64_t ttl_ms)
{
    if (!ttl_ms)
        return 0;
    uint64_t now = now_ms();
    return ttl_ms > UINT64_MAX - now ? UINT64_MAX : now + ttl_ms;
}

/* Publishes the written item at `off` under the key's stripe lock (held):
 * checks the condition against the current entry and CASes the word, or
 * inserts it.  A counter cell changes in place without the lock, so it is
 * frozen first (no increment lands on it once replaced) and the condition
 * checked again against its final state; a write refused then leaves it
 * frozen, and the next increment replaces it under the lock.  When the read
 * section turns out to have been ejected, the lookup is redone in a fresh
 * section (read_renew), keeping the lock and the new item (our write hazard
 * keeps its segment). */
static shmc_status publish(struct shmc *c, tslot *t, const keyhash *kh, const void *key,
                           size_t klen, cond *cd, uint64_t off, uint64_t total)
{
    uint64_t nw = iw_make(kh->tag, off);
    for (;;) {
        uint64_t ow, now = 0;
        shmc_item *old;
        _Atomic uint64_t *slot = index_find(c, kh, key, klen, &ow, &old);
        bool was_expired = slot && expired(old, &now);
        /* A set is always allowed (its token is the new item's: store()). */
        shmc_status st = cd->mode == STORE_SET
                             ? SHMC_OK
                             : store_allowed(c, cd, slot ? old : NULL, was_expired);
        /* Everything read above (the lookup, the old entry) counts only if
         * our section was not ejected; else redo it in a fresh one.  Our
         * new item is safe meanwhile: its segment is under our write hazard.
         * Between this check and the CAS only eviction (-> 0) and a
         * second-chance copy (new location) can change the key's word, as
         * we hold its stripe lock; both make the CAS fail. */
        if (!read_section_valid(c, t)) {
            read_renew(c, t);
            continue;
        }
        if (st != SHMC_OK) {
            /* Changed between the check and now: the new item is dead bytes. */
            seg_dec_live(c, off, total);
            return st;
        }
        if (!slot) {
            index_insert(c, t, kh, nw);
            return SHMC_OK;
        }
        bool live_cell = item_is_cell(old) && !was_expired &&
                         !(cell_tok(cell_read(item_cell(c, old))) & CELL_FROZEN);
        if (!cell_freeze(c, t, old) || live_cell) {
            /* Ejected while freezing (nothing frozen: a fresh section looks
             * again), or frozen now: check again against the final state.
             * The new item stays ours, under our write hazard, and is
             * counted off once, by whichever pass refuses it. */
            if (!read_section_valid(c, t))
                read_renew(c, t);
            continue;
        }
        uint64_t ooff = iw_off(ow);
        uint64_t obytes = item_bytes(old), olife = seg_life(c, ooff);
        /* Fails only if an evictor removed (or moved) the old entry. */
        if (iw_cas(slot, &ow, nw)) {
            seg_dec_live_if(c, ooff, obytes, olife);
            if (was_expired)
                STAT_ADD(t, expirations, 1);
            return SHMC_OK;
        }
    }
}

/* The write path of set/add/replace/cas.  The new item is allocated and
 * fully written outside the stripe lock (allocation may wait for readers,
 * and a writer waiting for a stripe lock sits inside its read section, so
 * holding the lock while allocating could stall both); the condition is
 * then checked again and the item published under the lock, by one CAS.
 * (A small conditional write is the exception: see precheck.) */
static shmc_status store(struct shmc *c, const void *key, size_t klen, const void *val,
                         size_t vlen, uint32_t flags, uint64_t ttl_ms, cond *cd)
{
    cd->cur_cas = 0;
    if (cd->cur_vlen)
        *cd->cur_vlen = 0;
    tslot *t;
    keyhash kh;
    shmc_status st = op_begin(c, key, klen, &t, &kh);
    if (st != SHMC_OK)
        return st;
    if (!val && vlen)
        return SHMC_EINVAL;
    if (vlen > c->max_value)
        return SHMC_EVALLEN;
    bool cell = kind_is_cell(cd->kind);
    uint64_t expire = cd->abs_expire ? ttl_ms : expiry_of(ttl_ms);
    uint64_t total = item_size((uint32_t)klen, cell ? CELL_VLEN : (uint32_t)vlen, flags, expire);
    /* The bucket and the old item then arrive while we write the new item.
     * (A lookup here, used as a hint under the lock, saved the second
     * lookup's instructions but waited for the old item before writing:
     * sets ran 4-8 % slower in three alternating rounds.) */
    if (cd->mode == STORE_SET)
        index_prefetch(c, &kh);
    read_enter(c, t);
    uint64_t off;
    bool locked = false;
    if (cd->mode != STORE_SET) {
        st = precheck(c, t, &kh, key, klen, cd, total, &off, &locked);
        if (st != SHMC_OK) {
            read_exit(c, t);
            return st;
        }
    }
    if (!locked && (st = alloc_item(c, t, total, &off)) != SHMC_OK) {
        wseg_clear(t);
        read_exit(c, t);
        return st;
    }
#ifdef SHMC_TESTING
    if (shmc__test_alloc_hook && shmc__test_alloc_hook(c->data + off, total)) {
        wseg_clear(t);
        read_exit(c, t);
        return SHMC_ESYS;
    }
#endif
    /* From here our write hazard keeps the new item's segment from being
     * evicted, even if this section is ejected, until wseg_clear below. */
    shmc_item *it = cell ? write_cell_item(c, t, off, key, klen, cd->cell_value, flags,
                                           expire, cd->kind)
                         : write_item(c, t, off, key, klen, val, vlen, flags, expire, cd->kind);
    uint64_t new_cas = item_cas(it);
#ifdef SHMC_TESTING
    if (shmc__test_prelock_hook)
        shmc__test_prelock_hook(key, klen);
#endif
    st = locked ? SHMC_OK : stripe_lock(c, kh.stripe);
    if (st != SHMC_OK) {
        seg_dec_live(c, off, total);
        wseg_clear(t);
        read_exit(c, t);
        return st;
    }
#ifdef SHMC_TESTING
    if (shmc__test_publish_hook)
        shmc__test_publish_hook(key, klen);
#endif
    /* Counts the new item off exactly once if it refuses it; an ejection
     * is handled inside (a fresh section, same item and lock). */
    st = publish(c, t, &kh, key, klen, cd, off, total);
    wseg_clear(t);
    stripe_unlock(c, kh.stripe);
    read_exit(c, t);
    if (st == SHMC_OK) {
        STAT_ADD(t, sets, 1);
        cd->cur_cas = new_cas;
    }
    return st;
}

shmc_status shmc_set(shmc_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                     uint32_t flags, uint64_t ttl_ms)
{
    cond cd = {.mode = STORE_SET};
    return store(c, key, klen, val, vlen, flags, ttl_ms, &cd);
}

shmc_status shmc_add(shmc_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                     uint32_t flags, uint64_t ttl_ms)
{
    cond cd = {.mode = STORE_ADD};
    return store(c, key, klen, val, vlen, flags, ttl_ms, &cd);
}

shmc_status shmc_replace(shmc_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                         uint32_t flags, uint64_t ttl_ms)
{
    cond cd = {.mode = STORE_REPLACE};
    return store(c, key, klen, val, vlen, flags, ttl_ms, &cd);
}

/* Whether val is a number in canonical decimal form (1-20 digits, no leading
 * zero, at most 2^64-1): exactly the text a decimal counter cell reads as. */
static bool canonical_decimal(const void *val, size_t vlen, uint64_t *v)
{
    const uint8_t *p = val;
    return val && vlen && !(p[0] == '0' && vlen > 1) &&
           counter_value(ITEM_KIND_PLAIN, p, vlen, v);
}

/* A cas that writes a number onto a decimal counter cell, keeping its flags
 * and its absence of expiry, is done in place: one 16-byte CAS from the
 * cell's state with the caller's token to the new number and a new token.
 * Returns false, having changed nothing, when that does not apply (the
 * caller then takes store()); else the outcome in *out. */
static bool cas_inplace(shmc_t *c, const void *key, size_t klen, uint64_t num, uint32_t flags,
                        uint64_t token, uint64_t *new_tok, shmc_status *out)
{
    tslot *t;
    keyhash kh;
    if (op_begin(c, key, klen, &t, &kh) != SHMC_OK)
        return false;
    read_enter(c, t);
    bool done = false;
    found f;
    if (index_lookup(c, &kh, key, klen, &f) && (f.fmt & ITEM_FMT_KIND) == ITEM_KIND_CELL_DEC &&
        item_flags_f(f.it, f.fmt) == flags && !(f.fmt & ITEM_FMT_EXPIRE) &&
        !item_aging(c, f.it)) {
        cell_t *p = item_cell_f(c, f.it, f.fmt, f.kl);
        /* A consistent read, not a locked one (see cell_add): a token
         * reported with SHMC_STALE must be one the cell had. */
        cell_t x = cell_read(p);
        if (!(cell_tok(x) & CELL_FROZEN) && read_section_valid(c, t)) {
            done = true;
            if (cell_tok(x) != token) {
                *new_tok = cell_tok(x); /* STALE reports the current token */
                *out = SHMC_STALE;
            } else {
                uint64_t tok = next_cas(t);
                cell_t was = cell_cas(p, x, cell_make(num, tok));
                if (was == x) {
                    *new_tok = tok;
                    *out = SHMC_OK;
                    STAT_ADD(t, sets, 1);
                } else if ((cell_tok(was) & CELL_FROZEN) || !read_section_valid(c, t)) {
                    /* Being replaced, or ejected (what the CAS saw may be
                     * reused bytes): store() decides in a fresh section. */
                    done = false;
                } else {
                    *new_tok = cell_tok(was); /* another update won */
                    *out = SHMC_STALE;
                }
            }
        }
    }
    read_exit(c, t);
    return done;
}

shmc_status shmc_cas(shmc_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                     uint32_t flags, uint64_t ttl_ms, uint64_t token, uint64_t *cas_out)
{
    if (cas_out)
        *cas_out = 0;
    if (!token)
        return SHMC_EINVAL;
    cond cd = {.mode = STORE_CAS, .token = token};
    /* A number written by cas is a counter being updated (a gets + cas
     * loop): it is kept as a decimal counter cell, which reads back as the
     * very same text, so that the next cas (or incr) can be done in place. */
    uint64_t num;
    if (c && cells_ok(c) && vlen <= c->max_value && canonical_decimal(val, vlen, &num)) {
        uint64_t tok = 0;
        shmc_status st;
        if (ttl_ms == 0 && cas_inplace(c, key, klen, num, flags, token, &tok, &st)) {
            if (cas_out)
                *cas_out = tok;
            return st;
        }
        cd.kind = ITEM_KIND_CELL_DEC;
        cd.cell_value = num;
    }
    shmc_status st = store(c, key, klen, val, vlen, flags, ttl_ms, &cd);
    if (cas_out)
        *cas_out = cd.cur_cas;
    return st;
}

shmc_status shmc_cas_value(shmc_t *c, const void *key, size_t klen, const void *expected,
                           size_t elen, const void *val, size_t vlen, uint32_t flags,
                           uint64_t ttl_ms, void *cur, size_t curlen, size_t *cur_vlen)
{
    if ((!expected && elen) || (!cur && curlen) || (cur && !cur_vlen))
        return SHMC_EINVAL;
    cond cd = {.mode = expected ? STORE_VALUE : STORE_ADD, .expected = expected, .elen = elen,
               .cur = cur, .curlen = curlen, .cur_vlen = cur_vlen};
    return store(c, key, klen, val, vlen, flags, ttl_ms, &cd);
}

/* Removes the key's entry if `cd` allows it (STORE_SET: unconditionally). */
static shmc_status delete_if(struct shmc *c, const void *key, size_t klen, cond *cd)
{
    tslot *t;
    keyhash kh;
    shmc_status st = op_begin(c, key, klen, &t, &kh);
    if (st != SHMC_OK)
        return st;
    read_enter(c, t);
    st = stripe_lock(c, kh.stripe);
    if (st != SHMC_OK) {
        read_exit(c, t);
        return st;
    }
    st = SHMC_NOT_FOUND;
    for (;;) {
        uint64_t ow, now = 0;
        shmc_item *old;
        _Atomic uint64_t *slot = index_find(c, &kh, key, klen, &ow, &old);
        if (!slot) {
            if (read_section_valid(c, t))
                break;
            read_renew(c, t); /* a miss seen in reused bytes proves nothing */
            continue;
        }
        uint64_t ooff = iw_off(ow);
        uint64_t obytes = item_bytes(old), olife = seg_life(c, ooff);
        bool was_expired = expired(old, &now);
        shmc_status ok = SHMC_OK;
        if (!was_expired && cd->mode != STORE_SET)
            ok = store_allowed(c, cd, old, false);
        if (!read_section_valid(c, t)) { /* see store(): redo in a fresh section */
            read_renew(c, t);
            continue;
        }
        if (ok != SHMC_OK) {
            st = ok;
            break;
        }
        /* A counter cell: freeze it (no increment lands on it once it is
         * gone), then decide on its final state. */
        if (item_is_cell(old) && !(cell_tok(cell_read(item_cell(c, old))) & CELL_FROZEN)) {
            if (!cell_freeze(c, t, old))
                read_renew(c, t); /* ejected: nothing frozen; look again */
            continue;
        }
        if (iw_cas(slot, &ow, 0)) {
#ifdef SHMC_TESTING
            if (shmc__test_unlinked_hook)
                shmc__test_unlinked_hook(key, klen);
#endif
            seg_dec_live_if(c, ooff, obytes, olife);
            if (was_expired) {
                STAT_ADD(t, expirations, 1);
            } else {
                STAT_ADD(t, deletes, 1);
                st = SHMC_OK;
            }
            break;
        }
    }
    stripe_unlock(c, kh.stripe);
    read_exit(c, t);
    return st;
}

shmc_status shmc_delete(shmc_t *c, const void *key, size_t klen)
{
    cond cd = {.mode = STORE_SET};
    return delete_if(c, key, klen, &cd);
}

shmc_status shmc_delete_cas(shmc_t *c, const void *key, size_t klen, uint64_t token)
{
    if (!token)
        return SHMC_EINVAL;
    cond cd = {.mode = STORE_CAS, .token = token};
    return delete_if(c, key, klen, &cd);
}

shmc_status shmc_delete_value(shmc_t *c, const void *key, size_t klen, const void *expected,
                              size_t elen)
{
    if (!expected && elen)
        return SHMC_EINVAL;
    cond cd = {.mode = STORE_VALUE, .expected = expected ? expected : "", .elen = elen};
    return delete_if(c, key, klen, &cd);
}

shmc_status shmc_flush(shmc_t *c)
{
    if (!c)
        return SHMC_EINVAL;
    tslot *t;
    shmc_status st = slot_get_outside(c, &t);
    if (st != SHMC_OK)
        return st;
    uint64_t ways = c->nbuckets * SHMC_BUCKET_WAYS, removed = 0;
    /* Short read sections, so that a flush of a big index never holds
     * reclamation back for long. */
    for (uint64_t i = 0; i < ways; i += 4096) {
        uint64_t end = i + 4096 < ways ? i + 4096 : ways;
        read_enter(c, t);
        for (uint64_t j = i; j < end; j++) {
            uint64_t w = atomic_load_explicit(&c->index[j], memory_order_acquire);
            if (!w)
                continue;
            uint64_t off;
            shmc_item *it = item_at(c, w, &off);
            uint32_t kl, vl;
            if (it && !item_lens(c, it, &kl, &vl))
                it = NULL;
            uint64_t bytes = it ? item_bytes(it) : 0, life = it ? seg_life(c, off) : 0;
            /* cell_freeze validates before it writes; false when ejected. */
            if (!read_section_valid(c, t) || (it && !cell_freeze(c, t, it))) {
                read_renew(c, t); /* the bytes may be reused: read them again */
                j--;
                continue;
            }
            if (iw_cas(&c->index[j], &w, 0)) {
                if (it)
                    seg_dec_live_if(c, off, bytes, life);
                removed++;
            }
        }
        read_exit(c, t);
    }
    STAT_ADD(t, deletes, removed);
    return SHMC_OK;
}

/* ---- many keys ---- */

#define MANY_CHUNK 32u

shmc_status shmc_get_many(shmc_t *c, shmc_get_req *reqs, size_t n)
{
    if (!c || (!reqs && n))
        return SHMC_EINVAL;
    tslot *t;
    shmc_status st = slot_get(c, &t);
    if (st != SHMC_OK)
        return st;
    keyhash kh[MANY_CHUNK];
    for (size_t base = 0; base < n; base += MANY_CHUNK) {
        size_t m = n - base < MANY_CHUNK ? n - base : MANY_CHUNK;
        /* Hash the chunk and ask for every bucket first: the lookups then
         * overlap their memory round trips instead of paying them in turn. */
        for (size_t i = 0; i < m; i++) {
            shmc_get_req *r = &reqs[base + i];
            r->vlen = 0;
            r->status = check_key(c, r->key, r->klen);
            if (r->status == SHMC_OK && !r->buf && r->buflen)
                r->status = SHMC_EINVAL;
            if (r->status != SHMC_OK)
                continue;
            keyhash_of(c, r->key, r->klen, &kh[i]);
            __builtin_prefetch(c->index + kh[i].b1 * SHMC_BUCKET_WAYS);
            __builtin_prefetch(c->index + kh[i].b2 * SHMC_BUCKET_WAYS);
        }
        uint32_t todo = 0;
        for (size_t i = 0; i < m; i++)
            todo |= (uint32_t)(reqs[base + i].status == SHMC_OK) << i;
        _Static_assert(MANY_CHUNK <= 32, "todo is a 32-bit mask");
        _Atomic uint64_t *slots[MANY_CHUNK];
        uint64_t words[MANY_CHUNK];
        uint64_t now = 0, hits = 0, misses = 0;
        read_enter(c, t);
        for (;;) {
            now = hits = misses = 0;
            for (size_t i = 0; i < m; i++) {
                shmc_get_req *r = &reqs[base + i];
                slots[i] = NULL;
                if (!(todo >> i & 1))
                    continue;
                found f;
                if (!index_lookup(c, &kh[i], r->key, r->klen, &f) ||
                    expired_f(f.it, f.fmt, &now)) {
                    r->status = SHMC_NOT_FOUND;
                    misses++;
                    continue;
                }
                struct copy_ctx x = {r->buf, r->buflen, &r->vlen, &r->flags};
                uint8_t tmp[24];
                uint32_t vlen;
                uint64_t tok;
                const uint8_t *val = found_value(c, &f, tmp, &vlen, &tok);
                r->status = copy_value(&x, val, vlen, item_flags_f(f.it, f.fmt));
                words[i] = f.w;
                slots[i] = f.way;
                hits++;
            }
            if (caa_likely(read_section_valid(c, t)))
                break;
            /* Ejected: redo the whole chunk from the index. */
            for (size_t i = 0; i < m; i++)
                if (todo >> i & 1)
                    reqs[base + i].status = SHMC_OK;
            read_renew(c, t);
        }
        for (size_t i = 0; i < m; i++)
            if (slots[i])
                iw_mark_accessed(slots[i], words[i]);
        read_exit(c, t);
        STAT_ADD(t, hits, hits);
        STAT_ADD(t, misses, misses);
    }
    return SHMC_OK;
}

shmc_status shmc_set_many(shmc_t *c, shmc_set_req *reqs, size_t n)
{
    if (!c || (!reqs && n))
        return SHMC_EINVAL;
    shmc_status first = SHMC_OK;
    for (size_t i = 0; i < n; i++) {
        shmc_set_req *r = &reqs[i];
        r->status = shmc_set(c, r->key, r->klen, r->val, r->vlen, r->flags, r->ttl_ms);
        if (r->status != SHMC_OK && first == SHMC_OK)
            first = r->status;
    }
    return first;
}

shmc_status shmc_delete_many(shmc_t *c, shmc_key_req *reqs, size_t n)
{
    if (!c || (!reqs && n))
        return SHMC_EINVAL;
    for (size_t i = 0; i < n; i++)
        reqs[i].status = shmc_delete(c, reqs[i].key, reqs[i].klen);
    return SHMC_OK;
}
