/*
 * layout.h — the shape of a shmcache segment in shared memory.
 *
 * Everything here lives in the segment and is reached by offset from the
 * mapping base, never by pointer.  Every shared word that is written after
 * initialisation is a 64-bit C11 atomic (lock-free here) or a process-shared
 * robust pthread mutex.  Changing any struct changes layout_hash(), so a
 * process built with another layout refuses to attach.
 *
 * Segment map (each region 64-byte aligned, data 4 KiB aligned):
 *   [hdr 4096] [slots] [stripe locks] [lock/flight table] [heads] [segment meta]
 *   [index] [data]
 */
#ifndef SHMC_LAYOUT_H
#define SHMC_LAYOUT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

#define SHMC_MAGIC            0x31454843414d4853ull /* "SHMCACHE1" little-endian-ish */
/* SHMC_LAYOUT_VERSION is public (shmcache.h): bump it with any change here. */
#define SHMC_HDR_SIZE         4096u
#define SHMC_CL               64u

#define SHMC_STATE_INIT       0x494e4954u /* header being initialised */
#define SHMC_STATE_READY      0x52454459u /* initialised, usable */

#define SHMC_STRIPES          1024u       /* per-key writer locks */
#define SHMC_MAX_HEADS        4u          /* open (append) segments at once */
#define SHMC_BUCKET_WAYS      8u          /* index words per bucket (one cache line) */

/* Index word: [tag:16][loc:48]; loc = item offset in data / 8 + 1; 0 = empty. */
#define IW_LOC_BITS   48
#define IW_LOC_MASK   ((1ull << IW_LOC_BITS) - 1)

typedef struct shmc_hdr {
    uint64_t magic;              /* 0   SHMC_MAGIC */
    uint32_t layout_version;     /* 8   SHMC_LAYOUT_VERSION */
    uint32_t hdr_size;           /* 12  SHMC_HDR_SIZE */
    uint64_t layout_hash;        /* 16  hash of struct sizes/offsets, byte order */
    _Atomic uint32_t state;      /* 24  SHMC_STATE_* */
    uint32_t features;           /* 28  feature bits (none yet) */
    uint64_t pidns;              /* 32  inode of the creator's PID namespace */
    /* creation parameters */
    uint64_t size;               /* 40  total bytes */
    uint32_t max_key;            /* 48 */
    uint32_t max_value;          /* 52 */
    uint32_t nslots;             /* 56 */
    uint32_t nheads;             /* 60 */
    uint64_t seg_size;           /* 64  bytes per storage segment (power of 2) */
    uint32_t seg_shift;          /* 72 */
    uint32_t nsegs;              /* 76 */
    uint64_t nbuckets;           /* 80 */
    uint64_t hash_seed;          /* 88 */
    /* region offsets from the mapping base */
    uint64_t off_slots;          /* 96 */
    uint64_t off_stripes;        /* 104 */
    uint64_t off_heads;          /* 112 */
    uint64_t off_segs;           /* 120 */
    uint64_t off_index;          /* 128 */
    uint64_t off_data;           /* 136 */
    uint64_t data_bytes;         /* 144 */
    uint64_t created_ms;         /* 152 monotonic ms at creation */
    uint32_t membarrier;         /* 160 1: readers may rely on membarrier */
    uint32_t ncoord;             /* 164 entries of the lock/flight table */
    uint64_t off_coord;          /* 168 */
    uint64_t max_items;          /* 176 options.max_items (0: index sized by storage) */
    /* hot shared words, each on its own cache line */
    _Alignas(64) _Atomic uint64_t epoch;        /* global reclamation epoch, starts at 1 */
    _Alignas(64) _Atomic uint64_t seal_seq;     /* sequence for sealed-segment age */
    _Atomic uint64_t slots_reaped;
    _Atomic uint64_t enomem;
    _Atomic uint64_t purges;                    /* full index scans after a crash */
    _Atomic uint64_t slot_hint;                 /* where the next slot search starts */
    /* Every token ever issued by a recycled lock/flight entry is <= this, so a
     * name given a fresh entry starts above all of its earlier tokens. */
    _Alignas(64) _Atomic uint64_t token_hi;
    pthread_mutex_t coord_mtx;                  /* robust: serialises entry (re)claims */
} shmc_hdr;

_Static_assert(sizeof(shmc_hdr) <= SHMC_HDR_SIZE, "header too large");

/* Per-participant (per-thread) slot.  The mutex is held by the owning thread
 * for the slot's whole life: the kernel marks it OWNER_DIED when that thread
 * dies, which is how others learn the slot must be reaped. */
#define SHMC_HOLDS 8u   /* = SHMC_MAX_HOLDS: locks + fills one thread holds at once */

/* A hold record: the owning thread keeps `m` locked for exactly as long as it
 * owns the lock or leads the fill that names this record (see coord.c).
 * Waiters sleep on `m`, so the kernel wakes them on release and on death. */
typedef struct shmc_hold {
    pthread_mutex_t m;                 /* robust, process-shared, error-checking */
    _Atomic uint64_t entry;            /* table entry + 1 held through it (informational) */
    _Atomic uint64_t token;            /* its token (informational) */
} __attribute__((aligned(64))) shmc_hold;

typedef struct shmc_slot {
    pthread_mutex_t mtx;               /* robust, process-shared */
    _Atomic uint64_t gen;              /* bumped each time the slot is taken */
    _Atomic uint32_t pid, tid;         /* owner (informational) */
    _Alignas(64) _Atomic uint64_t epoch;  /* reader epoch, 0 = not reading */
    _Alignas(64) _Atomic uint64_t st_hits, st_misses, st_sets, st_deletes,
        st_evictions, st_expirations, st_cas_seq, st_rescued;
    _Alignas(64) _Atomic uint64_t st_lock_acq, st_lock_wait, st_lock_timeout, st_lock_takeover,
        st_fills, st_fill_waits, st_fill_takeover, st_fill_errors;
    shmc_hold hold[SHMC_HOLDS];
} shmc_slot;

typedef struct shmc_stripe {
    pthread_mutex_t mtx;               /* robust, process-shared */
} __attribute__((aligned(64))) shmc_stripe;

/* Lock/flight table entry.  `state` packs the whole ownership:
 *   [tok:44][busy:1][hold k:3][holder slot + 1:16]
 * slot+1 == 0: free (tok is the last token issued).  busy with a holder: the
 * holder is rewriting its lease; busy without one: the entry is being
 * re-claimed for another name.  tok is the low 44 bits of the owner token;
 * the full 64-bit token is `token` once the owner has published it.  A
 * holder's `until` (lease end or fill deadline) is trusted only while
 * `token` matches state's tok and busy is clear. */
typedef struct shmc_centry {
    _Atomic uint64_t state;
    _Atomic uint64_t want;       /* priority waiter: [expiry ms since creation:45][k:3][slot+1:16] */
    _Atomic uint64_t token;      /* last published full token */
    _Atomic uint64_t until;      /* monotonic ms; 0 = no lease */
    _Atomic uint64_t h1, h2;     /* identity: keyed 128-bit hash of kind + name; 0,0 = unused */
    _Atomic uint64_t used_ms;    /* last claim or acquisition (recycling prefers the oldest) */
    _Atomic uint64_t kind_len;   /* kind << 32 | name length (informational) */
    _Atomic uint64_t name[8];    /* first 64 bytes of the name (informational) */
    _Atomic uint64_t err_token;  /* fill error: token of the failed fill (0 = none), written last */
    _Atomic uint64_t err_until;  /* ... served to new callers until then */
    _Atomic uint64_t err_code;
    _Atomic uint64_t err_msg[12];
    uint64_t pad[1];
} shmc_centry;
_Static_assert(sizeof(shmc_centry) == 256, "table entry is 4 cache lines");

#define CE_KIND_LOCK 1u
#define CE_KIND_FILL 2u

typedef struct shmc_head {
    _Atomic uint64_t seg;              /* segment id + 1 that is open here; 0 = none */
} __attribute__((aligned(64))) shmc_head;

/* Storage segment life cycle.  Every transition is one CAS on `state`, whose
 * word packs the state with the owning participant, so a segment held by a
 * dead participant is recognised and taken over with no lock at all. */
enum seg_state {
    SEG_FREE = 0,
    SEG_RESERVED = 1,   /* taken by its owner: being reset, or about to open */
    SEG_OPEN = 2,       /* a head: writers append with fetch_add on wpos */
    SEG_SEALED = 3,     /* full; evictable once every writer that saw it open left */
    SEG_EVICTING = 4,   /* its owner is unlinking its items */
    SEG_RETIRED = 5,    /* unlinked; free once every reader passed `epoch` */
    SEG_SEALING = 6,    /* its owner is stamping the seal epoch */
};
/* state word: [owner gen:32][owner slot index + 1:16][unused:8][state:8] */
#define SW_STATE(w)   ((uint32_t)((w) & 0xff))
#define SW_OWNER(w)   ((w) >> 16)
#define SW_MAKE(st, owner) (((uint64_t)(owner) << 16) | (uint64_t)(st))

typedef struct shmc_segmeta {
    _Atomic uint64_t wpos;       /* next append offset (may exceed seg_size) */
    _Atomic uint64_t state;      /* state word, see SW_* */
    uint64_t pad0;
    _Atomic uint64_t epoch;      /* SEALED: seal epoch; RETIRED: retire epoch */
    _Atomic uint64_t seq;        /* seal order (age) */
    _Atomic uint64_t live;       /* LIVE_ITEMS(): index entries pointing here (never
                                  * under-counted); LIVE_BYTES(): their bytes */
    uint64_t pad1;
    _Atomic uint64_t max_expire; /* latest expiry of items here; UINT64_MAX if any never expires */
} shmc_segmeta;

_Static_assert(sizeof(shmc_segmeta) == 64, "segmeta is one cache line");

/* Items and bytes share one word so that one atomic add updates both. */
#define LIVE_SHIFT 40
#define LIVE_ONE(bytes) ((1ull << LIVE_SHIFT) | (uint64_t)(bytes))
#define LIVE_ITEMS(w) ((w) >> LIVE_SHIFT)
#define LIVE_BYTES(w) ((w) & ((1ull << LIVE_SHIFT) - 1))

/* An item in a storage segment, followed by key bytes then value bytes,
 * padded to 8.  Immutable once published, except `accessed` and the cell of
 * a counter item (ITEM_KIND_CELL_*, see internal.h). */
typedef struct shmc_item {
    uint32_t magic;              /* ITEM_MAGIC */
    uint16_t klen;
    _Atomic uint8_t accessed;    /* set by readers (only when 0): second chance */
    uint8_t kind;                /* ITEM_KIND_*: how incr/decr read the value */
    uint32_t vlen;
    uint32_t flags;              /* user flags */
    uint64_t expire_ms;          /* monotonic ms, 0 = never */
    uint64_t cas;                /* unique per modification */
} shmc_item;

#define ITEM_MAGIC 0x6d657469u   /* "item" */
#define ITEM_KIND_PLAIN   0u     /* bytes; a counter if they are decimal digits */
#define ITEM_KIND_COUNTER 1u     /* an 8-byte little-endian binary counter */
#define ITEM_KIND_CELL_DEC 2u    /* in-place counter read as decimal text (internal.h) */
#define ITEM_KIND_CELL_BIN 3u    /* in-place counter read as 8 little-endian bytes */
_Static_assert(sizeof(shmc_item) == 32, "item header is 32 bytes");

#endif
