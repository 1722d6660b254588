/*
 * layout.h — the shape of a shmcache segment in shared memory: the one
 * source of truth.  Every shared struct is declared here from a field table
 * (an X-macro), and the same tables generate
 *   - layout_hash() (segment.c): name, type, offset and size of every field
 *     of every struct below, so a reorder, resize, retype or rename of any
 *     field changes it, and a process built with another layout refuses to
 *     attach (SHMC_EVERSION);
 *   - the header's geometry init/check/bind code (segment.c, SHMC_HDR_GEOMETRY);
 *   - the per-slot statistic counters and their summing (stats.c), from
 *     SHMC_STATS_FIELDS in shmcache.h.
 * Packed words (state words, owner ids, index words...) are in words.h.
 *
 * Everything here lives in the segment and is reached by offset from the
 * mapping base, never by pointer.  Every shared word that is written after
 * initialisation is a 64-bit C11 atomic (lock-free here) or a process-shared
 * robust pthread mutex.
 *
 * Segment map (segment.c: compute_layout; each region 64-byte aligned, data
 * 4 KiB aligned):
 *   [hdr 4096] [slots: nslots x shmc_slot] [stripe locks: 1024 x shmc_stripe]
 *   [lock/flight table: ncoord x shmc_centry] [heads: 4 x shmc_head]
 *   [segment meta: nsegs x shmc_segmeta] [index: nbuckets x 8 words]
 *   [data: nsegs x seg_size, items (item.h: header + key + value)] [guard]
 *
 * SHMC_LAYOUT_VERSION is public (shmcache.h): bump it with any change here.
 */
#ifndef SHMC_LAYOUT_H
#define SHMC_LAYOUT_H

#include "shmcache.h"
#include "words.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

#define SHMC_MAGIC            0x31454843414d4853ull /* bytes "SHMACHE1" in memory order (sic) */
#define SHMC_HDR_SIZE         4096u
#define SHMC_CL               64u

#define SHMC_STATE_INIT       0x494e4954u /* header being initialised */
#define SHMC_STATE_READY      0x52454459u /* initialised, usable */

#define SHMC_STRIPES          1024u       /* per-key writer locks */
#define SHMC_MAX_HEADS        4u          /* open (append) segments at once */
/* The head slots: SHMC_MAX_HEADS for writes (the "small" FIFO), then one
 * for items kept by second chance (the "main" FIFO, alloc.c: probation). */
#define SHMC_HEAD_SLOTS       (SHMC_MAX_HEADS + 1u)
#define SHMC_MAIN_HEAD        SHMC_MAX_HEADS
#define SHMC_BUCKET_WAYS      8u          /* index words per bucket (one cache line) */
/* Geometry rules (segment.c: compute_layout): an attacher re-derives the
 * whole layout with them, so they are part of the layout hash. */
#define SHMC_MIN_SEG_SIZE     (64ull << 10)
#define SHMC_MAX_SEG_SIZE     (16ull << 20)
#define SHMC_SEGS_TARGET      128u        /* segment size aims at size / 128 */
#define SHMC_INDEX_BYTES_PER_WAY 80u      /* one index way per 80 bytes of data (default) */
/* With options.max_items: the index is at most NUM/DEN full when it holds them. */
#define SHMC_INDEX_LOAD_NUM   2u
#define SHMC_INDEX_LOAD_DEN   3u
#define SHMC_HOLDS            8u          /* = SHMC_MAX_HOLDS: locks + fills one thread holds */
_Static_assert(SHMC_HOLDS == SHMC_MAX_HOLDS, "hold records match the public limit");
_Static_assert(SHMC_HOLDS <= (1u << ST_K_BITS), "a hold record number fits its field");

/* A field table row is F(type, name, array suffix or empty). */
#define SHMC_DECLARE_FIELD_(type, name, dim) type name dim;

/* ---- header (one page) ----
 * G rows are the geometry: creation parameters and region offsets, all
 * derived from (size, max_key, max_value, nslots, ncoord) by compute_layout;
 * an attacher re-derives them and compares every one (segment.c). */
#define SHMC_HDR_FIELDS(F, G) \
    F(uint64_t, magic, )                  /* SHMC_MAGIC */ \
    F(uint32_t, layout_version, )         /* SHMC_LAYOUT_VERSION */ \
    F(uint32_t, hdr_size, )               /* SHMC_HDR_SIZE */ \
    F(uint64_t, layout_hash, )            /* layout_hash() of the creator */ \
    F(_Atomic uint32_t, state, )          /* SHMC_STATE_* */ \
    F(uint32_t, features, )               /* feature bits (none yet) */ \
    F(uint64_t, pidns, )                  /* inode of the creator's PID namespace */ \
    G(uint64_t, size)                     /* total bytes */ \
    G(uint32_t, max_key) \
    G(uint32_t, max_value) \
    G(uint32_t, nslots) \
    G(uint32_t, nheads) \
    G(uint64_t, seg_size)                 /* bytes per storage segment (power of 2) */ \
    G(uint32_t, seg_shift) \
    G(uint32_t, nsegs) \
    G(uint64_t, nbuckets) \
    F(uint64_t, hash_seed, ) \
    G(uint64_t, off_slots)                /* region offsets from the mapping base */ \
    G(uint64_t, off_stripes) \
    G(uint64_t, off_heads) \
    G(uint64_t, off_segs) \
    G(uint64_t, off_index) \
    G(uint64_t, off_data) \
    G(uint64_t, data_bytes) \
    F(uint64_t, created_ms, )             /* monotonic ms at creation */ \
    F(uint32_t, membarrier, )             /* 1: readers may rely on membarrier */ \
    G(uint32_t, ncoord)                   /* entries of the lock/flight table */ \
    G(uint64_t, off_coord) \
    G(uint64_t, max_items)                /* options.max_items (0: index sized by storage) */ \
    /* hot shared words, each group on its own cache line */ \
    F(_Alignas(64) _Atomic uint64_t, epoch, )    /* global reclamation epoch, starts at 1 */ \
    F(_Alignas(64) _Atomic uint64_t, seal_seq, ) /* sequence for sealed-segment age */ \
    F(_Atomic uint64_t, slots_reaped, ) \
    F(_Atomic uint64_t, enomem, ) \
    F(_Atomic uint64_t, purges, )                /* full index scans after a crash */ \
    F(_Atomic uint64_t, slot_hint, )             /* where the next slot search starts */ \
    /* Every token ever issued by a recycled lock/flight entry is <= token_hi, \
     * so a name given a fresh entry starts above all of its earlier tokens. */ \
    F(_Alignas(64) _Atomic uint64_t, token_hi, ) \
    F(pthread_mutex_t, coord_mtx, )              /* robust: serialises entry (re)claims */

#define SHMC_DECLARE_GEOMETRY_(type, name) type name;
typedef struct shmc_hdr {
    SHMC_HDR_FIELDS(SHMC_DECLARE_FIELD_, SHMC_DECLARE_GEOMETRY_)
} shmc_hdr;
_Static_assert(sizeof(shmc_hdr) <= SHMC_HDR_SIZE, "header too large");
_Static_assert(offsetof(shmc_hdr, epoch) % 64 == 0 && offsetof(shmc_hdr, seal_seq) % 64 == 0 &&
               offsetof(shmc_hdr, token_hi) % 64 == 0, "hot header words on their own lines");
/* Fixed forever (shmc_peek and older builds read them to refuse a segment). */
_Static_assert(offsetof(shmc_hdr, magic) == 0 && offsetof(shmc_hdr, layout_version) == 8 &&
               offsetof(shmc_hdr, hdr_size) == 12 && offsetof(shmc_hdr, layout_hash) == 16 &&
               offsetof(shmc_hdr, state) == 24, "the identifying prefix never moves");

/* The geometry alone (segment.c computes, stores, checks and binds it). */
#define SHMC_HDR_GEOMETRY(G) SHMC_HDR_FIELDS(SHMC_IGNORE_FIELD_, G)
#define SHMC_IGNORE_FIELD_(type, name, dim)

/* ---- hold record ----
 * The owning thread keeps `m` locked for exactly as long as it owns the
 * lock or leads the fill that names this record (see coord.c).  Waiters
 * sleep on `m`, so the kernel wakes them on release and on death.  `entry`
 * is what reaping relies on: a dead participant's holds are found and freed
 * through it (coord_reap), so it is written before any CAS can make the
 * record an owner. */
#define SHMC_HOLD_FIELDS(F) \
    F(pthread_mutex_t, m, )               /* robust, process-shared, error-checking */ \
    F(_Atomic uint64_t, entry, )          /* table entry + 1 held through it; 0 = none */ \
    F(_Atomic uint64_t, token, )          /* its token (introspection) */
typedef struct shmc_hold {
    SHMC_HOLD_FIELDS(SHMC_DECLARE_FIELD_)
} __attribute__((aligned(64))) shmc_hold;

/* ---- per-slot statistic counters, from the public SHMC_STATS_FIELDS ----
 * Only rows whose source is `slot` have a counter; each is written by its
 * slot's owner only (STAT_ADD) and summed by shmc_stats_get. */
#define SHMC_COUNTER_slot(name) _Atomic uint64_t name;
#define SHMC_COUNTER_cache(name)
#define SHMC_COUNTER_(name, kind, src, help) SHMC_COUNTER_##src(name)
typedef struct shmc_counters {
    SHMC_STATS_FIELDS(SHMC_COUNTER_)
} __attribute__((aligned(64))) shmc_counters;

/* ---- per-participant (per-thread) slot ----
 * The mutex is held by the owning thread for the slot's whole life: the
 * kernel marks it OWNER_DIED when that thread dies, which is how others
 * learn the slot must be reaped.  pid and tid name the owner for
 * introspection. */
#define SHMC_SLOT_FIELDS(F) \
    F(pthread_mutex_t, mtx, )             /* robust, process-shared */ \
    F(_Atomic uint64_t, gen, )            /* bumped each time the slot is taken or reaped */ \
    F(_Atomic uint32_t, pid, ) \
    F(_Atomic uint32_t, tid, ) \
    /* reader epoch, 0 = not reading; | EPOCH_EJECTED once a writer ejected \
     * the section (epoch.h) */ \
    F(_Alignas(64) _Atomic uint64_t, epoch, ) \
    F(_Atomic uint64_t, cas_seq, )        /* last CAS token sequence (words.h: cas_make) */ \
    F(_Atomic uint64_t, wseg, )           /* write hazard: segment + 1 this participant may \
                                           * still write into (alloc.c); 0 = none */ \
    F(_Atomic uint64_t, eject_count, )    /* times a section of this slot was ejected */ \
    F(_Atomic uint64_t, eject_stall_ms, ) /* last ejection: how long it had held the epoch */ \
    F(_Atomic uint64_t, eject_at_ms, )    /* last ejection: when (monotonic ms) */ \
    F(shmc_counters, st, ) \
    F(shmc_hold, hold, [SHMC_HOLDS])
typedef struct shmc_slot {
    SHMC_SLOT_FIELDS(SHMC_DECLARE_FIELD_)
} shmc_slot;
/* The reader epoch (written on every read section) shares no line with the
 * liveness words others poll, nor with the counters. */
_Static_assert(offsetof(shmc_slot, epoch) == 64 && offsetof(shmc_slot, st) == 128 &&
               offsetof(shmc_slot, hold) % 64 == 0, "slot cache lines");

/* ---- stripe (per-key writer) lock ---- */
#define SHMC_STRIPE_FIELDS(F) \
    F(pthread_mutex_t, mtx, )             /* robust, process-shared */ \
    /* The holder TID a waiter gave up on (SHMC_ETIMEDOUT) and that still held \
     * the lock then; cleared by the next locker.  While the same holder keeps \
     * it, later waiters give up after STRIPE_STALLED_WAIT_MS (index.c). */ \
    F(_Atomic uint32_t, stalled_tid, )
typedef struct shmc_stripe {
    SHMC_STRIPE_FIELDS(SHMC_DECLARE_FIELD_)
} __attribute__((aligned(64))) shmc_stripe;

/* ---- lock/flight table entry ----
 * `state` packs the whole ownership (words.h: st_*): holder slot, hold
 * record, busy bit and the token's low 44 bits.  A holder's `until` (lease
 * end or fill deadline) is trusted only while `token` matches state's tok
 * and busy is clear.  `want` names a priority waiter (words.h: want_*); its
 * expiry is monotonic ms (now_ms() time). */
#define SHMC_CENTRY_FIELDS(F) \
    F(_Atomic uint64_t, state, ) \
    F(_Atomic uint64_t, want, ) \
    F(_Atomic uint64_t, token, )          /* last published full token */ \
    F(_Atomic uint64_t, until, )          /* monotonic ms; 0 = no lease */ \
    F(_Atomic uint64_t, h1, )             /* identity: keyed 128-bit hash of kind + name; */ \
    F(_Atomic uint64_t, h2, )             /*   0,0 = unused */ \
    F(_Atomic uint64_t, used_ms, )        /* last claim or acquisition (recycling: oldest) */ \
    F(_Atomic uint64_t, kind_len, )       /* kind << 32 | name length (introspection) */ \
    F(_Atomic uint64_t, name, [8])        /* first 64 bytes of the name (introspection) */ \
    F(_Atomic uint64_t, err_token, )      /* fill error: token of the failed fill (0 = none), written last */ \
    F(_Atomic uint64_t, err_until, )      /* ... served to new callers until then */ \
    F(_Atomic uint64_t, err_code, ) \
    F(_Atomic uint64_t, err_msg, [12]) \
    F(uint64_t, pad, [1])
typedef struct shmc_centry {
    SHMC_CENTRY_FIELDS(SHMC_DECLARE_FIELD_)
} shmc_centry;
_Static_assert(sizeof(shmc_centry) == 256, "table entry is 4 cache lines");
_Static_assert(offsetof(shmc_centry, state) == 0 && offsetof(shmc_centry, want) == 8 &&
               offsetof(shmc_centry, name) == 64 && offsetof(shmc_centry, err_token) == 128,
               "ownership words, then the name, then the fill error, by line");

#define CE_KIND_LOCK 1u
#define CE_KIND_FILL 2u

/* ---- append head ---- */
#define SHMC_HEAD_FIELDS(F) \
    F(_Atomic uint64_t, seg, )            /* segment id + 1 that is open here; 0 = none */
typedef struct shmc_head {
    SHMC_HEAD_FIELDS(SHMC_DECLARE_FIELD_)
} __attribute__((aligned(64))) shmc_head;

/* Storage segment life cycle (alloc.c).  Every transition is one CAS on
 * `state`, whose word (words.h: sw_*) packs the state with the owning
 * participant, so a segment held by a dead participant is recognised and
 * taken over with no lock at all. */
enum seg_state {
    SEG_FREE = 0,
    SEG_RESERVED = 1,   /* taken by its owner: being reset, or about to open */
    SEG_OPEN = 2,       /* a head: writers append with fetch_add on wpos */
    SEG_SEALED = 3,     /* full; evictable once every writer that saw it open left */
    SEG_EVICTING = 4,   /* its owner is unlinking its items */
    SEG_RETIRED = 5,    /* unlinked; free once every reader passed `epoch` */
    SEG_SEALING = 6,    /* its owner is stamping the seal epoch */
};

/* Segment classes (alloc.c: probation).  Set when a segment is opened;
 * only eviction's choice of victim reads it. */
#define SEG_CLS_SMALL 0u    /* new writes (probation) */
#define SEG_CLS_MAIN  1u    /* items kept by second chance, and their compactions */

/* ---- storage segment metadata (one cache line) ---- */
#define SHMC_SEGMETA_FIELDS(F) \
    F(_Atomic uint64_t, wpos, )           /* next append offset (may exceed seg_size) */ \
    F(_Atomic uint64_t, state, )          /* state word, words.h: sw_* */ \
    F(_Atomic uint64_t, cls, )            /* SEG_CLS_*: which FIFO it belongs to (a hint) */ \
    F(_Atomic uint64_t, epoch, )          /* SEALED: seal epoch; RETIRED: retire epoch */ \
    F(_Atomic uint64_t, seq, )            /* seal order (age) */ \
    F(_Atomic uint64_t, max_expire, )     /* latest expiry of items here; UINT64_MAX: one never expires */ \
    F(_Atomic uint64_t, live, )           /* words.h live_*: index entries pointing here */ \
                                          /* (never under-counted) and their bytes */ \
    F(_Atomic uint64_t, life, )           /* bumped by each reset: which life `live` counts */
typedef struct shmc_segmeta {
    SHMC_SEGMETA_FIELDS(SHMC_DECLARE_FIELD_)
} shmc_segmeta;
_Static_assert(sizeof(shmc_segmeta) == 64, "segmeta is one cache line");
/* live and life are one 16-byte pair (index.c: seg_dec_live compares life
 * and lowers live in one cmpxchg16b). */
_Static_assert(offsetof(shmc_segmeta, live) % 16 == 0 &&
                   offsetof(shmc_segmeta, life) == offsetof(shmc_segmeta, live) + 8,
               "live and life form an aligned 16-byte pair");

/* ---- item in a storage segment (layout 7: a variable-length header) ----
 * An item is a header, then the key bytes, then the value bytes, padded to
 * 8 (index words address 8-byte units).  Its first byte, `fmt`, says what
 * the header holds (ITEM_FMT_*): a fixed prefix, narrow (klen < 256 and
 * vlen < 65536: 12 bytes) or wide (16 bytes), then the user flags (4 bytes)
 * only if nonzero and the expiry (8 bytes) only if set.  A 16 B key / 100 B
 * value item with neither costs 12 + 116 = 128 bytes (it was 152 with the
 * fixed 32-byte header of layouts <= 6).  Encoding and decoding are in
 * item.h only (item_encode and the item_* accessors); the structs below
 * are the shapes of the parts, packed (fields at any byte offset), for the
 * layout hash and for code that aims at a field (tests).
 * Immutable once published, except the cell of a counter item
 * (ITEM_KIND_CELL_*, see index.h); the accessed mark is in the index word
 * (words.h, IW_ACC). */
#define SHMC_ITEM_N_FIELDS(F) \
    F(uint8_t, fmt, )                     /* ITEM_FMT_* */ \
    F(uint8_t, klen, ) \
    F(uint16_t, vlen, ) \
    F(uint64_t, cas, )                    /* unique per modification (words.h: cas_make) */
typedef struct __attribute__((packed)) shmc_item_n {
    SHMC_ITEM_N_FIELDS(SHMC_DECLARE_FIELD_)
} shmc_item_n;
#define SHMC_ITEM_W_FIELDS(F) \
    F(uint8_t, fmt, )                     /* ITEM_FMT_* with ITEM_FMT_WIDE */ \
    F(uint8_t, zero, )                    /* 0 */ \
    F(uint16_t, klen, ) \
    F(uint32_t, vlen, ) \
    F(uint64_t, cas, )
typedef struct __attribute__((packed)) shmc_item_w {
    SHMC_ITEM_W_FIELDS(SHMC_DECLARE_FIELD_)
} shmc_item_w;
/* After the prefix, in this order, each only if its fmt bit is set. */
#define SHMC_ITEM_X_FIELDS(F) \
    F(uint32_t, flags, )                  /* ITEM_FMT_FLAGS: user flags (nonzero) */ \
    F(uint64_t, expire_ms, )              /* ITEM_FMT_EXPIRE: monotonic ms (nonzero) */
typedef struct __attribute__((packed)) shmc_item_x {
    SHMC_ITEM_X_FIELDS(SHMC_DECLARE_FIELD_)
} shmc_item_x;
_Static_assert(sizeof(shmc_item_n) == 12 && sizeof(shmc_item_w) == 16 &&
               sizeof(shmc_item_x) == 12, "item header parts");
_Static_assert(SHMC_MAX_KEY_LIMIT <= UINT16_MAX, "klen fits the wide item header");

/* fmt: [mark 101:3][wide:1][expire:1][flags:1][kind:2].  The mark makes a
 * zeroed or random byte unlikely to parse as an item. */
#define ITEM_FMT_KIND      0x03u
#define ITEM_FMT_FLAGS     0x04u
#define ITEM_FMT_EXPIRE    0x08u
#define ITEM_FMT_WIDE      0x10u
#define ITEM_FMT_MARK_MASK 0xe0u
#define ITEM_FMT_MARK      0xa0u
#define ITEM_HDR_MIN       12u    /* narrow, no flags, no expiry */
#define ITEM_HDR_MAX       28u    /* wide, flags and expiry */
/* Bytes of the mapping after the data area (segment.c: compute_layout): a
 * header re-read under an ejected read section (epoch.h), whose fmt changed
 * since its lengths were checked, is read at most ITEM_HDR_MAX bytes past a
 * checked item start; the guard keeps such reads inside the mapping. */
#define ITEM_GUARD         64u
_Static_assert(ITEM_GUARD >= ITEM_HDR_MAX, "the guard covers a header");

#define ITEM_KIND_PLAIN   0u     /* bytes; a counter if they are decimal digits */
#define ITEM_KIND_COUNTER 1u     /* an 8-byte little-endian binary counter */
#define ITEM_KIND_CELL_DEC 2u    /* in-place counter read as decimal text (index.h) */
#define ITEM_KIND_CELL_BIN 3u    /* in-place counter read as 8 little-endian bytes */

/* Every shared struct and its field table: what layout_hash() covers
 * (with shmc_counters, hashed from SHMC_STATS_FIELDS).  S2 marks the
 * header, whose table takes two row macros (F, G). */
#define SHMC_SHARED_STRUCTS(S, S2) \
    S2(shmc_hdr, SHMC_HDR_FIELDS) \
    S(shmc_hold, SHMC_HOLD_FIELDS) \
    S(shmc_slot, SHMC_SLOT_FIELDS) \
    S(shmc_stripe, SHMC_STRIPE_FIELDS) \
    S(shmc_centry, SHMC_CENTRY_FIELDS) \
    S(shmc_head, SHMC_HEAD_FIELDS) \
    S(shmc_segmeta, SHMC_SEGMETA_FIELDS) \
    S(shmc_item_n, SHMC_ITEM_N_FIELDS) \
    S(shmc_item_w, SHMC_ITEM_W_FIELDS) \
    S(shmc_item_x, SHMC_ITEM_X_FIELDS)

/* ---- the layout hash ----
 * One row per field of every shared struct (and one per struct for its
 * size), generated from the tables above. */
typedef struct shmc_field_desc {
    const char *strct, *name, *type;
    uint64_t offset, size;
} shmc_field_desc;

#define SHMC_DESC_(T, type, name, dim) \
    {#T, #name, #type #dim, offsetof(T, name), sizeof(((T *)0)->name)},
#define SHMC_DESC_STRUCT_(T) {#T, "", "", 0, sizeof(T)},
#define SHMC_DESC_hdr_(type, name, dim) SHMC_DESC_(shmc_hdr, type, name, dim)
#define SHMC_DESC_hdrg_(type, name) SHMC_DESC_(shmc_hdr, type, name, )
#define SHMC_DESC_hold_(type, name, dim) SHMC_DESC_(shmc_hold, type, name, dim)
#define SHMC_DESC_slot_(type, name, dim) SHMC_DESC_(shmc_slot, type, name, dim)
#define SHMC_DESC_stripe_(type, name, dim) SHMC_DESC_(shmc_stripe, type, name, dim)
#define SHMC_DESC_centry_(type, name, dim) SHMC_DESC_(shmc_centry, type, name, dim)
#define SHMC_DESC_head_(type, name, dim) SHMC_DESC_(shmc_head, type, name, dim)
#define SHMC_DESC_segmeta_(type, name, dim) SHMC_DESC_(shmc_segmeta, type, name, dim)
#define SHMC_DESC_item_n_(type, name, dim) SHMC_DESC_(shmc_item_n, type, name, dim)
#define SHMC_DESC_item_w_(type, name, dim) SHMC_DESC_(shmc_item_w, type, name, dim)
#define SHMC_DESC_item_x_(type, name, dim) SHMC_DESC_(shmc_item_x, type, name, dim)
#define SHMC_DESC_counter_slot(name) SHMC_DESC_(shmc_counters, _Atomic uint64_t, name, )
#define SHMC_DESC_counter_cache(name)
#define SHMC_DESC_counter_(name, kind, src, help) SHMC_DESC_counter_##src(name)

/* Initialiser of the shmc_field_desc array of this build's layout. */
#define SHMC_LAYOUT_DESCS \
    SHMC_DESC_STRUCT_(shmc_hdr) SHMC_HDR_FIELDS(SHMC_DESC_hdr_, SHMC_DESC_hdrg_) \
    SHMC_DESC_STRUCT_(shmc_hold) SHMC_HOLD_FIELDS(SHMC_DESC_hold_) \
    SHMC_DESC_STRUCT_(shmc_counters) SHMC_STATS_FIELDS(SHMC_DESC_counter_) \
    SHMC_DESC_STRUCT_(shmc_slot) SHMC_SLOT_FIELDS(SHMC_DESC_slot_) \
    SHMC_DESC_STRUCT_(shmc_stripe) SHMC_STRIPE_FIELDS(SHMC_DESC_stripe_) \
    SHMC_DESC_STRUCT_(shmc_centry) SHMC_CENTRY_FIELDS(SHMC_DESC_centry_) \
    SHMC_DESC_STRUCT_(shmc_head) SHMC_HEAD_FIELDS(SHMC_DESC_head_) \
    SHMC_DESC_STRUCT_(shmc_segmeta) SHMC_SEGMETA_FIELDS(SHMC_DESC_segmeta_) \
    SHMC_DESC_STRUCT_(shmc_item_n) SHMC_ITEM_N_FIELDS(SHMC_DESC_item_n_) \
    SHMC_DESC_STRUCT_(shmc_item_w) SHMC_ITEM_W_FIELDS(SHMC_DESC_item_w_) \
    SHMC_DESC_STRUCT_(shmc_item_x) SHMC_ITEM_X_FIELDS(SHMC_DESC_item_x_)

/* Constants that shape the segment besides the structs: region counts, the
 * geometry rules, the widths of the packed words, the mutex's size and the
 * byte order. */
#define SHMC_LAYOUT_CONSTANTS \
    {sizeof(pthread_mutex_t), SHMC_BUCKET_WAYS, SHMC_STRIPES, SHMC_MAX_HEADS, SHMC_HEAD_SLOTS, SHMC_HOLDS, \
     SHMC_HDR_SIZE, SHMC_MIN_SEG_SIZE, SHMC_MAX_SEG_SIZE, SHMC_SEGS_TARGET, \
     SHMC_INDEX_BYTES_PER_WAY, SHMC_INDEX_LOAD_NUM, SHMC_INDEX_LOAD_DEN, SLOT1_BITS, \
     OWNER_GEN_BITS, SW_OWNER_SHIFT, LIVE_SHIFT, \
     IW_LOC_BITS, IW_ACC, ST_K_BITS, ST_TOK_BITS, WANT_EXP_SHIFT, ITEM_FMT_KIND, \
     ITEM_FMT_FLAGS, ITEM_FMT_EXPIRE, ITEM_FMT_WIDE, ITEM_FMT_MARK_MASK, ITEM_FMT_MARK, \
     ITEM_GUARD, 0x0102030405060708ull}

static inline uint64_t shmc_hash_mix_(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

static inline uint64_t shmc_hash_str_(uint64_t h, const char *s)
{
    uint64_t n = 0;
    for (; *s; s++, n++)
        h = shmc_hash_mix_(h, (unsigned char)*s);
    return shmc_hash_mix_(h, n); /* the length separates adjacent strings */
}

/* Hash of a layout: every row's struct, name, type, offset and size, in
 * order, then the constants.  layout_hash() (segment.c) is this of
 * SHMC_LAYOUT_DESCS and SHMC_LAYOUT_CONSTANTS; a test perturbs the rows. */
static inline uint64_t shmc_layout_hash_of(const shmc_field_desc *d, size_t n,
                                           const uint64_t *k, size_t nk)
{
    uint64_t h = 0x5348434c41594f55ull;
    for (size_t i = 0; i < n; i++) {
        h = shmc_hash_str_(h, d[i].strct);
        h = shmc_hash_str_(h, d[i].name);
        h = shmc_hash_str_(h, d[i].type);
        h = shmc_hash_mix_(h, d[i].offset);
        h = shmc_hash_mix_(h, d[i].size);
    }
    for (size_t i = 0; i < nk; i++)
        h = shmc_hash_mix_(h, k[i]);
    return h;
}

#endif
