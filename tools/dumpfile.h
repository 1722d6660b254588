/*
 * dumpfile.h — the file format of `shmcache-cli dump` / `load`.
 *
 * A dump carries every live item of a cache across a reboot or into a cache
 * of another size.  All integers are little-endian.
 *
 *   file header, 32 bytes:
 *     magic "SHMCDUMP" (8) | version u32 (= 1) | header size u32 (= 32)
 *     | dumped_at u64 (Unix ms, wall clock) | reserved u64 (= 0)
 *   item record: a 40-byte header, then the key, then the value:
 *     type u32 (= 1) | klen u32 | vlen u32 | flags u32 | kind u32
 *     | reserved u32 (= 0) | expires_at u64 (Unix ms; 0 = never)
 *     | check u64 (hash of the header's first 32 bytes, the key and the value)
 *   end record, 40 bytes, once, last:
 *     type u32 (= 2) | zeros (20 bytes) | items u64 (records before it)
 *     | check u64 (hash of its first 32 bytes)
 *
 * Expiry is absolute wall-clock time, so a TTL keeps counting while the dump
 * sits on disk; items past it are skipped at load.  The per-record check
 * catches flipped bits and names the bad record; the end record catches a
 * truncated file.  A parser accepts nothing it has not fully validated.
 */
#ifndef SHMC_DUMPFILE_H
#define SHMC_DUMPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DUMP_VERSION 1u
#define DUMP_HDR_SIZE 32u
#define DUMP_REC_SIZE 40u
#define DUMP_KIND_BYTES 0u
#define DUMP_KIND_COUNTER 1u  /* an 8-byte binary counter (SHMC_INCR_BINARY) */
#define DUMP_MAX_KEY 4096u          /* SHMC_MAX_KEY_LIMIT */
#define DUMP_MAX_VALUE (256u << 20) /* SHMC_MAX_VALUE_LIMIT */

typedef struct dump_item {
    const void *key;
    uint32_t klen;
    const void *val;
    uint32_t vlen;
    uint32_t flags;
    uint32_t kind;         /* DUMP_KIND_* */
    uint64_t expires_at;   /* Unix ms, 0 = never */
} dump_item;

/* Writing.  Each returns false on a write error (errno set by stdio). */
bool dump_write_header(FILE *f, uint64_t dumped_at);
bool dump_write_item(FILE *f, const dump_item *it);
bool dump_write_end(FILE *f, uint64_t items);

typedef struct dump_info {
    uint64_t dumped_at;    /* from the header */
    uint64_t items;        /* item records */
    uint64_t bytes;        /* key + value bytes of all items */
} dump_info;

/* Called for each item of a valid dump; return false to stop (dump_parse
 * then returns false with err "stopped"). */
typedef bool (*dump_item_fn)(void *ctx, const dump_item *it);

/* Validates the whole dump in buf[0..len) and, only if all of it is valid,
 * calls fn (may be NULL: validate only) for each item in order.  Returns
 * true on success with *info filled (info may be NULL); false with a
 * sentence in err (which names the byte offset and record of the first
 * problem) if the file is not a valid dump.  Never reads outside buf. */
bool dump_parse(const void *buf, size_t len, dump_item_fn fn, void *ctx, dump_info *info,
                char *err, size_t errlen);

#endif
