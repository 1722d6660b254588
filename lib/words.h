/*
 * words.h — every packed 64-bit word of the segment, as typed encode/decode
 * functions.  A field's width is written once, here, and checked by
 * _Static_assert against what it must hold.
 *
 * The 16-bit participant id: slot index + 1 (0 = none).  It appears in
 * owner ids, segment state words, lock-table state and want words, and CAS
 * tokens; SLOT1_BITS is its one width.
 */
#ifndef SHMC_WORDS_H
#define SHMC_WORDS_H

#include <stdbool.h>
#include <stdint.h>

#define SHMC_MAX_SLOTS 65535u    /* slot index + 1 must fit SLOT1_BITS */
#define SLOT1_BITS 16
#define SLOT1_MASK ((1ull << SLOT1_BITS) - 1)
_Static_assert(SHMC_MAX_SLOTS <= SLOT1_MASK, "slot index + 1 fits its field");

static inline uint32_t slot1_of(uint64_t w) { return (uint32_t)(w & SLOT1_MASK); }

/* ---- owner id: [slot generation (low 32 bits):32][slot index + 1:16] ----
 * Names one participant for one tenure of its slot: the generation is bumped
 * each time the slot is taken or reaped, so a stale id reads as dead. */
#define OWNER_GEN_BITS 32
_Static_assert(SLOT1_BITS + OWNER_GEN_BITS <= 48, "owner id fits a state word's 48 bits");
static inline uint64_t owner_make(uint64_t gen, uint32_t idx)
{
    return ((gen & ((1ull << OWNER_GEN_BITS) - 1)) << SLOT1_BITS) | (uint64_t)(idx + 1u);
}
static inline uint64_t owner_gen(uint64_t owner) { return owner >> SLOT1_BITS; }

/* ---- segment state word: [owner id:48][unused:8][state:8] ---- */
#define SW_STATE_BITS 8
#define SW_OWNER_SHIFT 16
_Static_assert(SW_OWNER_SHIFT + SLOT1_BITS + OWNER_GEN_BITS <= 64, "state word fits");
static inline uint32_t sw_state(uint64_t w) { return (uint32_t)(w & ((1u << SW_STATE_BITS) - 1)); }
static inline uint64_t sw_owner(uint64_t w) { return w >> SW_OWNER_SHIFT; }
static inline uint64_t sw_make(uint32_t state, uint64_t owner)
{
    return (owner << SW_OWNER_SHIFT) | (uint64_t)state;
}

/* ---- segment live word: [index entries:24][their bytes:40] ----
 * Items and bytes share one word so that one atomic add updates both. */
#define LIVE_SHIFT 40
_Static_assert((1ull << LIVE_SHIFT) > (1ull << 24), "a segment's bytes fit LIVE_SHIFT bits");
static inline uint64_t live_one(uint64_t bytes) { return (1ull << LIVE_SHIFT) | bytes; }
static inline uint64_t live_items(uint64_t w) { return w >> LIVE_SHIFT; }
static inline uint64_t live_bytes(uint64_t w) { return w & ((1ull << LIVE_SHIFT) - 1); }

/* ---- index word: [tag:16][A:1][loc:47]; loc = item offset in data / 8 + 1; 0 = empty ----
 * A (accessed, IW_ACC) is set by readers, by CAS and only while the word still
 * names the item, for the item's second chance at eviction: readers never
 * write into storage, which an ejected reader could otherwise do after the
 * memory was reused (epoch.h).  Words are compared with A masked (iw_same). */
#define IW_LOC_BITS 48
#define IW_ACC (1ull << 47)
#define IW_LOC_MASK (IW_ACC - 1)
_Static_assert((IW_LOC_MASK << 3) >= (1ull << 46), "loc addresses the largest data area (2^46 bytes)");
static inline uint64_t iw_make(uint16_t tag, uint64_t off)
{
    return ((uint64_t)tag << IW_LOC_BITS) | ((off >> 3) + 1);
}
static inline uint16_t iw_tag(uint64_t w) { return (uint16_t)(w >> IW_LOC_BITS); }
static inline uint64_t iw_loc(uint64_t w) { return w & IW_LOC_MASK; }
/* The data offset a word names.  Not validated: an empty word (loc 0) gives
 * an offset above any data area, so `iw_off(w) < data_bytes` rejects it. */
static inline uint64_t iw_off(uint64_t w) { return (iw_loc(w) - 1) << 3; }
/* Whether two index words name the same item (the accessed mark aside). */
static inline bool iw_same(uint64_t a, uint64_t b) { return ((a ^ b) & ~IW_ACC) == 0; }

/* ---- lock-table entry state: [tok:44][busy:1][hold k:3][holder slot + 1:16] ----
 * slot+1 == 0: free (tok is the last token issued).  busy with a holder: the
 * holder is rewriting its lease; busy without one: the entry is being
 * re-claimed for another name.  tok is the low 44 bits of the owner token. */
#define ST_K_BITS 3
#define ST_TOK_BITS 44
#define ST_K_SHIFT SLOT1_BITS
#define ST_BUSY (1ull << (ST_K_SHIFT + ST_K_BITS))
#define ST_TOK_SHIFT (ST_K_SHIFT + ST_K_BITS + 1)
#define TOK_MASK ((1ull << ST_TOK_BITS) - 1)
_Static_assert(ST_TOK_SHIFT + ST_TOK_BITS == 64, "state word is exactly 64 bits");
static inline uint32_t st_k(uint64_t s) { return (uint32_t)((s >> ST_K_SHIFT) & ((1u << ST_K_BITS) - 1)); }
static inline uint64_t st_tok(uint64_t s) { return s >> ST_TOK_SHIFT; }
static inline bool st_busy(uint64_t s) { return (s & ST_BUSY) != 0; }
static inline uint64_t st_make(uint64_t tok, uint32_t slot1, uint32_t k)
{
    return ((tok & TOK_MASK) << ST_TOK_SHIFT) | ((uint64_t)k << ST_K_SHIFT) | (uint64_t)slot1;
}

/* ---- lock-table want word: [expiry, monotonic ms:45][hold k:3][want-er slot + 1:16] ---- */
#define WANT_EXP_SHIFT (ST_K_SHIFT + ST_K_BITS)
_Static_assert(64 - WANT_EXP_SHIFT >= 45, "a want's expiry (ms, < 2^44) fits");
static inline uint64_t want_exp(uint64_t w) { return w >> WANT_EXP_SHIFT; }
static inline uint64_t want_make(uint64_t exp, uint32_t slot1, uint32_t k)
{
    return (exp << WANT_EXP_SHIFT) | ((uint64_t)k << ST_K_SHIFT) | (uint64_t)slot1;
}

/* ---- CAS token of an item: [per-slot sequence:48][writer slot + 1:16] ----
 * Unique per modification: each slot numbers its own writes. */
static inline uint64_t cas_make(uint64_t seq, uint32_t slot1)
{
    return (seq << SLOT1_BITS) | (uint64_t)slot1;
}

#endif
