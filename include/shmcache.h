/*
 * shmcache.h — the one public header of shmcache.
 *
 * shmcache is a daemonless cache that the worker processes of one host share
 * through a POSIX shared-memory segment.  The first process to open a named
 * cache creates it; every later one attaches.  Reads are lock-free, writers
 * publish with atomic compare-and-swap, and memory that a reader might still
 * see is reclaimed only after a grace period (RCU-style, across processes).
 *
 * Thread and process safety, unless a function says otherwise:
 *   - every function may be called concurrently from any number of threads of
 *     any number of processes that have the same cache open;
 *   - a process may be killed (SIGKILL) at any instruction: the others carry on
 *     and what it had reserved comes back;
 *   - a handle opened before fork() is usable in the child (the child takes its
 *     own participant slot on first use).
 *
 * The library never prints, never exits or aborts, and validates every length
 * and offset it reads from shared memory.  Errors are returned as shmc_status
 * values; shmc_strerror() turns one into a sentence.
 */
#ifndef SHMCACHE_H
#define SHMCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(SHMC_BUILDING_LIB)
#define SHMC_API __attribute__((visibility("default")))
#else
#define SHMC_API
#endif

/* Version of this library (not of the segment layout). */
#define SHMC_VERSION_MAJOR 0
#define SHMC_VERSION_MINOR 1
#define SHMC_VERSION_PATCH 0
/* The shared-memory layout this library reads and writes.  Processes built
 * against libraries of different layout versions cannot share a cache:
 * shmc_open reports SHMC_EVERSION (see also shmc_info, shmc_peek). */
#define SHMC_LAYOUT_VERSION 9u

/* Limits and defaults. */
#define SHMC_DEFAULT_MAX_KEY     250u          /* bytes */
#define SHMC_DEFAULT_MAX_VALUE   (1u << 20)    /* 1 MiB */
#define SHMC_MAX_KEY_LIMIT       4096u         /* largest max_key accepted */
#define SHMC_MAX_VALUE_LIMIT     (256u << 20)  /* largest max_value accepted */
#define SHMC_DEFAULT_SLOTS       1024u         /* participant (thread) slots */
#define SHMC_MAX_NAME            200u          /* bytes of a cache name */

/* Status codes.  SHMC_OK is 0; every other value is a distinct outcome. */
typedef enum shmc_status {
    SHMC_OK = 0,
    SHMC_NOT_FOUND,      /* key absent or expired (a normal outcome) */
    SHMC_EXISTS,         /* add: key already present (and not expired) */
    SHMC_EBUFSIZE,       /* caller's buffer too small; needed size reported */
    SHMC_EKEYLEN,        /* key empty or longer than the cache's max_key */
    SHMC_EVALLEN,        /* value longer than the cache's max_value */
    SHMC_EINVAL,         /* invalid argument (NULL pointer, bad option) */
    SHMC_ENAME,          /* invalid cache name (empty, too long, '/', "..", ...) */
    SHMC_ENOENT,         /* no cache of that name (attach-only open, destroy) */
    SHMC_EEXIST,         /* cache already exists (create-only open) */
    SHMC_EACCES,         /* permission denied on the segment */
    SHMC_EVERSION,       /* segment made by an incompatible shmcache version/layout */
    SHMC_EMISMATCH,      /* segment exists with other creation parameters */
    SHMC_ECORRUPT,       /* segment header or data failed validation */
    SHMC_ENOMEM,         /* no memory could be made free (every segment pinned) */
    SHMC_ENOSLOTS,       /* every participant slot is taken by live threads */
    SHMC_ENAMESPACE,     /* segment belongs to another PID namespace */
    SHMC_ETIMEDOUT,      /* waited too long (e.g. for a creator to initialise) */
    SHMC_ESYS,           /* a system call failed; errno holds its error */
    SHMC_ETOOSMALL,      /* size too small for the fixed tables plus 5 storage segments
                          * of max_value (raise size, or lower max_value or slots) */
    SHMC_STALE,          /* cas: the entry changed since its token was read */
    SHMC_ENOTNUM,        /* incr/decr: the value is not a counter */
    SHMC_EBUSY,          /* lock_try: the lock is held by another owner */
    SHMC_ENOTOWNER,      /* lock release/extend, fill finish/abort: the token is not the
                          * current owner's (released already, or its lease or fill
                          * deadline passed and another took over) */
    SHMC_ETABLEFULL,     /* no free entry in the lock and singleflight table */
    SHMC_EHOLDS,         /* this thread already holds SHMC_MAX_HOLDS locks/fills here */
    SHMC_LEADER,         /* fill_begin: you are the leader; compute, then finish or abort */
    SHMC_EFILL,          /* the leader's fill failed; its error is in shmc_fill */
    SHMC_ENOSPC,         /* create: /dev/shm has no room for a cache of this size (a
                          * full or size-limited tmpfs, e.g. a container's 64 MiB) */
    SHMC_STATUS_COUNT_   /* not a status: number of codes */
} shmc_status;

/* Returns a static, human-readable sentence for a status.  Never NULL; an
 * unknown value gets "unknown shmcache status".  Thread-safe. */
SHMC_API const char *shmc_strerror(shmc_status st);

/* An open cache.  Opaque; one handle may be shared by all threads of a process. */
typedef struct shmc shmc_t;

/* Open flags. */
#define SHMC_OPEN_CREATE_ONLY  0x1u  /* fail with SHMC_EEXIST if it exists */
#define SHMC_OPEN_ATTACH_ONLY  0x2u  /* fail with SHMC_ENOENT if it does not exist
                                      * (or was left half-created by a creator that
                                      * died: never initialise anything) */
#define SHMC_OPEN_PREFAULT     0x4u  /* map every page of the segment into this
                                      * process now (MADV_POPULATE_WRITE, then a
                                      * read of one byte per page), instead of one
                                      * page fault per page on first touch: for
                                      * long-lived workers of a large cache.  A child
                                      * that inherits the handle across fork() does
                                      * it on its first call.  Costs what those
                                      * faults would have cost, at open: on a
                                      * 2-vCPU VM whose hypervisor maps pages
                                      * lazily, 0.35-0.5 s for 256 MiB and 2.3-2.6 s
                                      * per GiB (bare metal: a small fraction of
                                      * that), and the page tables (2 MiB per GiB);
                                      * data is not changed.  Best effort: never an
                                      * error */

/* Creation parameters.  Zero-initialise, then set what you need.  A zero field
 * means "the default" when creating and "whatever the segment has" when
 * attaching; a non-zero field that differs from an existing segment's value
 * makes shmc_open fail with SHMC_EMISMATCH. */
typedef struct shmc_options {
    uint64_t size;        /* total segment bytes (default 64 MiB; at least 1 MiB, and
                           * room for the fixed tables (768 B per slot: 768 KiB
                           * for the default 1024 slots; 256 B per lock entry) plus 5
                           * storage segments of >= max_value each: with default
                           * options, at least about 1.6 MiB).  The creator reserves
                           * all of it in /dev/shm at once (posix_fallocate): the
                           * cache's memory is in use from creation on, and a
                           * /dev/shm without room is SHMC_ENOSPC then, never a
                           * SIGBUS later */
    uint32_t max_key;     /* longest key in bytes (default 250, at most 4096) */
    uint32_t max_value;   /* longest value in bytes (default 1 MiB, at most 256 MiB; when
                           * left 0 on a cache too small for 1 MiB, the largest power
                           * of two >= 64 KiB that fits) */
    uint32_t slots;       /* participant slots: max threads attached at once (default 1024) */
    uint32_t mode;        /* file mode of a new segment (default 0600) */
    uint32_t flags;       /* SHMC_OPEN_* */
    uint32_t locks;       /* entries of the lock and singleflight table: named locks
                           * held or waited on plus keys being filled, at once
                           * (default size/64 KiB within [64, 4096]; at most 1M) */
    uint32_t reserved_;   /* must be 0 */
    uint64_t max_items;   /* items the key index holds (at most 2/3 full, so a set
                           * never finds both of a key's buckets full before that).
                           * 0 = derived from size: one index slot per 80 bytes of
                           * storage (about 0.5 full with 150-byte items).  Sizing
                           * it to the items expected keeps the index small enough
                           * to stay in the CPU caches: with 100k items in 256 MiB,
                           * 200000 (2.4 MB instead of 26 MB) made gets 1.75-2.2x
                           * faster, with this version's leaner get (bench_core,
                           * README).  More
                           * items than the index holds are evicted, oldest first,
                           * as when storage is full; a set never fails for it.
                           * At most 2^40 (SHMC_EINVAL), and the index must fit in
                           * size (8 bytes per slot; else SHMC_ETOOSMALL) */
} shmc_options;

/* Opens the cache `name`, creating it if it does not exist (unless
 * SHMC_OPEN_ATTACH_ONLY).  `opts` may be NULL for defaults.
 *
 * name: 1..SHMC_MAX_NAME bytes of [A-Za-z0-9._-], not starting with '.'.
 *   The segment is /dev/shm/<name> (shm_open("/<name>")).
 *
 * Processes that start together race safely: exactly one initialises, the
 * others wait for it (bounded) and attach.  A segment whose creator died
 * mid-initialisation is re-initialised by the next opener, never used (an
 * opener with SHMC_OPEN_ATTACH_ONLY gets SHMC_ENOENT instead).
 *
 * Errors: SHMC_EINVAL (bad option, or name or out NULL), SHMC_ETOOSMALL
 *   (creating: size too small for max_value), SHMC_ENAME, SHMC_ENOENT,
 *   SHMC_EEXIST, SHMC_EACCES (the segment's file permissions refuse this user
 *   read and write access, e.g. another user's 0600 cache), SHMC_EVERSION,
 *   SHMC_EMISMATCH, SHMC_ECORRUPT (a damaged header or mutex; or the name is
 *   taken by something that is not a segment: a directory, a FIFO, a symbolic
 *   link, which is never followed; it is left as it is), SHMC_ENAMESPACE,
 *   SHMC_ETIMEDOUT, SHMC_ENOSPC (creating: /dev/shm has less room than
 *   size; nothing is left behind), SHMC_ESYS (errno set).  *out is NULL on
 *   error.
 * Thread-safe. */
SHMC_API shmc_status shmc_open(const char *name, const shmc_options *opts, shmc_t **out);

/* Closes a handle: releases the calling thread's participant slot and, once
 * no other thread of this process holds a slot on it, unmaps the segment.
 * The cache itself lives on (see shmc_destroy).  Other threads must not start
 * new operations on the handle once close is called.  NULL is accepted.
 * Errors: none (returns SHMC_OK). */
SHMC_API shmc_status shmc_close(shmc_t *c);

/* Removes the cache's name (shm_unlink).  Processes that have it open keep
 * using their mapping; the memory is freed when the last one closes.
 * Errors: SHMC_EINVAL (name NULL), SHMC_ENAME, SHMC_ENOENT, SHMC_EACCES (e.g.
 *   another user's cache: /dev/shm is sticky), SHMC_ECORRUPT (the name is a
 *   directory), SHMC_ESYS.  Thread-safe. */
SHMC_API shmc_status shmc_destroy(const char *name);

/* What shmc_peek reads from a segment's header. */
typedef struct shmc_peek_info {
    uint64_t size;            /* file size in bytes */
    uint32_t layout_version;  /* the segment's layout version (0 if empty) */
    uint32_t ready;           /* 1: initialised; 0: being created, or its creator died */
    uint32_t max_key, max_value, slots, locks; /* creation parameters (if ready) */
} shmc_peek_info;

/* Tells whether /dev/shm/<name> is a shmcache segment, without attaching:
 * it opens the file read-only and reads its header; it takes no lock, maps
 * nothing, never initialises, and never blocks on other processes.
 * Returns SHMC_OK for a segment of this library's layout (ready or not:
 * see out->ready), SHMC_EVERSION for a shmcache segment of another layout
 * version (out->layout_version says which), SHMC_ECORRUPT for a file that
 * is not a shmcache segment (no magic, too short, not a regular file, a
 * symbolic link: never followed).
 * Only shmc_open validates a segment in full.
 * Errors: SHMC_EINVAL (name or out NULL), SHMC_ENAME, SHMC_ENOENT, SHMC_EACCES,
 *   SHMC_ESYS.  Thread-safe. */
SHMC_API shmc_status shmc_peek(const char *name, shmc_peek_info *out);

/* Releases the calling thread's participant slot on `c` now instead of at
 * thread exit (useful for thread pools that outlive their use of a cache).
 * The next operation from this thread takes a slot again.  Thread-safe. */
SHMC_API void shmc_thread_detach(shmc_t *c);

/* Parameters of the open segment (after defaults and rounding). */
typedef struct shmc_info {
    uint64_t size;          /* segment bytes */
    uint32_t max_key, max_value, slots;
    uint32_t layout_version;
    uint64_t data_bytes;    /* bytes of item storage */
    uint64_t segment_bytes; /* size of one storage segment */
    uint32_t segments;      /* number of storage segments */
    uint32_t index_slots;   /* capacity of the key index */
    uint32_t locks;         /* entries of the lock and singleflight table */
    uint64_t max_items;     /* items the index holds: options.max_items if it was
                             * given at creation, else 2/3 of index_slots */
} shmc_info;

/* Fills *info.  Errors: SHMC_EINVAL.  Thread-safe. */
SHMC_API shmc_status shmc_info_get(shmc_t *c, shmc_info *info);

/* --- Key/value operations ----------------------------------------------
 * Keys are binary-safe byte strings of 1..max_key bytes (NUL bytes allowed);
 * values are 0..max_value bytes.  ttl_ms is a relative time-to-live in
 * milliseconds (0 = never expires), never an absolute time whatever its size;
 * the item expires at now + ttl_ms on CLOCK_MONOTONIC, which every process of
 * the host shares and wall-clock changes do not move (a TTL that overflows it
 * means never).  An expired item is absent for every call at once; its memory
 * is reclaimed lazily (next write or delete of the key, or eviction of its
 * storage segment, wholly expired segments first).  `flags` is 32 bits
 * stored with the value for the caller's use (e.g. a serialisation tag).
 *
 * Every operation is lock-free for readers; writers serialise per key only.
 * A writer holds its key's lock for microseconds; one that finds it held for
 * 10 s (its holder stopped, e.g. by SIGSTOP or a debugger, or the segment
 * damaged) gives up with SHMC_ETIMEDOUT rather than wait longer: any call
 * that writes may return it (set, add, replace, cas, cas_value, delete,
 * delete_cas, delete_value, touch, get_and_touch, append, prepend, incr,
 * decr, the *_many writes, get_or_fill and fill_finish when they store).
 * Once one waiter gave up on a holder, later waiters on that same holder give
 * up after 50 ms.  A lock whose holder is gone is taken over.
 *
 * A stopped process never stops the others: a reader stopped inside a call
 * is ejected after ~5 ms if writers need the memory it holds back (it then
 * retries, and never returns bytes reused under it); a writer stopped inside
 * a call pins only the storage segment it writes into and its key's lock.
 * shmc_stats.ejections and shmc_procs show ejections.
 */

/* Copies the value of `key` into buf[0..buflen).
 * On SHMC_OK: *vlen = value length; *flags (if not NULL) = its flags.
 * On SHMC_EBUFSIZE: nothing copied, *vlen = the length needed (retry with a
 *   larger buffer; the value may change in between).
 * buf may be NULL when buflen is 0 (a size query).
 * Errors: SHMC_NOT_FOUND, SHMC_EBUFSIZE, SHMC_EKEYLEN, SHMC_EINVAL,
 *   SHMC_ENOSLOTS, SHMC_ECORRUPT (a bad offset found in the index; the entry
 *   is skipped).  Never blocks. */
SHMC_API shmc_status shmc_get(shmc_t *c, const void *key, size_t klen,
                              void *buf, size_t buflen, size_t *vlen, uint32_t *flags);

/* Like shmc_get, but returns a malloc()ed copy in *val (free() it).  A
 * zero-length value yields a non-NULL 1-byte allocation and *vlen = 0.
 * Errors: as shmc_get (never SHMC_EBUFSIZE), plus SHMC_ESYS if malloc fails. */
SHMC_API shmc_status shmc_get_alloc(shmc_t *c, const void *key, size_t klen,
                                    void **val, size_t *vlen, uint32_t *flags);

/* Stores key -> value, replacing any previous value.  When memory is full the
 * cache evicts a whole storage segment: a wholly expired one first, else the
 * oldest; items of it that were read since they were written are copied
 * forward (second chance) while there is room, the rest are dropped.  The set
 * succeeds.
 * Errors: SHMC_EKEYLEN, SHMC_EVALLEN, SHMC_EINVAL, SHMC_ENOSLOTS,
 *   SHMC_ETIMEDOUT (the key's stripe lock is held by a stopped writer: after
 *   10 s, or 50 ms once another waiter gave up on that same holder; nothing
 *   written), SHMC_ENOMEM (no storage segment could be freed for 2 s because
 *   every one is pinned: open, or being written into or evicted by stopped
 *   processes; never because of a reader; the write was not made).  A read
 *   section that holds the memory a write needs back for 5 ms (a stopped or
 *   descheduled reader) is ejected, so a write waits for readers at most
 *   about that long; the ejected reader retries its read when it runs. */
SHMC_API shmc_status shmc_set(shmc_t *c, const void *key, size_t klen,
                              const void *val, size_t vlen, uint32_t flags, uint64_t ttl_ms);

/* Stores key -> value only if the key is absent or expired.
 * Returns SHMC_OK, or SHMC_EXISTS (nothing written).  Atomic with respect to
 * every other write of the key, in any process: of N concurrent adds of one
 * absent key exactly one succeeds.  Errors: as shmc_set. */
SHMC_API shmc_status shmc_add(shmc_t *c, const void *key, size_t klen,
                              const void *val, size_t vlen, uint32_t flags, uint64_t ttl_ms);

/* Stores key -> value only if the key is present and not expired.
 * Returns SHMC_OK, or SHMC_NOT_FOUND (nothing written).  Errors: as shmc_set. */
SHMC_API shmc_status shmc_replace(shmc_t *c, const void *key, size_t klen,
                                  const void *val, size_t vlen, uint32_t flags, uint64_t ttl_ms);

/* Like shmc_get, and also returns the entry's CAS token in *cas: a 64-bit
 * value, never 0, that changes on every modification of the key (set, add,
 * replace, cas, touch) and is never reused for it.  Moving an item in memory
 * (eviction's second chance) keeps its token.
 * Errors: as shmc_get; SHMC_EINVAL if cas is NULL. */
SHMC_API shmc_status shmc_gets(shmc_t *c, const void *key, size_t klen, void *buf,
                               size_t buflen, size_t *vlen, uint32_t *flags, uint64_t *cas);

/* Compare-and-swap: stores key -> value only if the key's entry still carries
 * `token` (from shmc_gets or a previous shmc_cas).
 * A number in canonical decimal form (1-20 digits, no leading zero) is kept
 * as a counter (it reads back as the same text): a cas of one onto such a
 * counter with the same flags and no TTL on either side is done in place.
 * Returns SHMC_OK (stored; *cas_out = the new token), SHMC_STALE (the entry
 * changed; nothing written; *cas_out = the current token, so a retry loop
 * needs no extra lookup to know it lost), or SHMC_NOT_FOUND (absent or
 * expired; *cas_out = 0).  cas_out may be NULL.  A retry loop that loses
 * allocates no memory.
 * Errors: as shmc_set; SHMC_EINVAL if token is 0. */
SHMC_API shmc_status shmc_cas(shmc_t *c, const void *key, size_t klen, const void *val,
                              size_t vlen, uint32_t flags, uint64_t ttl_ms, uint64_t token,
                              uint64_t *cas_out);

/* Compare-by-value CAS: stores key -> value only if the current value equals
 * expected[0..elen) byte for byte; with expected == NULL, only if the key is
 * absent or expired.  On refusal the current value is copied into
 * cur[0..curlen) (if cur is not NULL and it fits) and *cur_vlen set to its
 * length (0 if absent), so the caller can recompute at once; a *cur_vlen
 * larger than curlen means it did not fit and nothing was copied.
 * Returns SHMC_OK (stored), SHMC_STALE (the value differs), SHMC_NOT_FOUND
 * (expected a value, the key is absent), SHMC_EXISTS (expected absent, the
 * key is present).  Atomic across processes like shmc_cas; a losing call
 * allocates nothing.
 * Errors: as shmc_set; SHMC_EINVAL for NULL with a non-zero length, or cur
 * without cur_vlen. */
SHMC_API shmc_status shmc_cas_value(shmc_t *c, const void *key, size_t klen,
                                    const void *expected, size_t elen, const void *val,
                                    size_t vlen, uint32_t flags, uint64_t ttl_ms, void *cur,
                                    size_t curlen, size_t *cur_vlen);

/* Deletes the key only if its entry still carries `token` (shmc_gets).
 * Returns SHMC_OK, SHMC_STALE (changed; kept) or SHMC_NOT_FOUND.
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL (token 0), SHMC_ENOSLOTS. */
SHMC_API shmc_status shmc_delete_cas(shmc_t *c, const void *key, size_t klen, uint64_t token);

/* Deletes the key only if its value equals expected[0..elen).
 * Returns SHMC_OK, SHMC_STALE (differs; kept) or SHMC_NOT_FOUND.
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL, SHMC_ENOSLOTS. */
SHMC_API shmc_status shmc_delete_value(shmc_t *c, const void *key, size_t klen,
                                       const void *expected, size_t elen);

/* Removes every item present when the call starts, while other processes go
 * on reading and writing: an item written during the flush may survive it.
 * Cost: one pass over the index, in short read sections.  Counted in
 * stats.deletes.  Errors: SHMC_EINVAL (NULL, or called inside a callback),
 * SHMC_ENOSLOTS. */
SHMC_API shmc_status shmc_flush(shmc_t *c);

/* Gives a present, unexpired key a new TTL (ttl_ms relative, 0 = never
 * expires), keeping its value and flags; the CAS token changes.  A write of
 * the key racing with it wins or loses as a whole, never mixed.
 * Returns SHMC_OK or SHMC_NOT_FOUND.  Errors: as shmc_set (it rewrites the
 * value, so it needs memory like a set of that size). */
SHMC_API shmc_status shmc_touch(shmc_t *c, const void *key, size_t klen, uint64_t ttl_ms);

/* Like shmc_touch, and also returns the value (malloc()ed, free() it) and
 * its flags as they were when the new TTL took effect.
 * Errors: as shmc_touch; SHMC_EINVAL if val or vlen is NULL. */
SHMC_API shmc_status shmc_get_and_touch(shmc_t *c, const void *key, size_t klen,
                                        uint64_t ttl_ms, void **val, size_t *vlen,
                                        uint32_t *flags);

/* Appends (shmc_append) or prepends (shmc_prepend) data[0..dlen) to the value
 * of a present key, keeping its flags and expiry; the CAS token changes.
 * Atomic across processes: concurrent appends all land, in some order, and
 * none is lost.  A binary counter becomes plain bytes.
 * Returns SHMC_OK or SHMC_NOT_FOUND.  Errors: as shmc_set (SHMC_EVALLEN when
 * the result would exceed max_value; nothing is changed then). */
SHMC_API shmc_status shmc_append(shmc_t *c, const void *key, size_t klen, const void *data,
                                 size_t dlen);
SHMC_API shmc_status shmc_prepend(shmc_t *c, const void *key, size_t klen, const void *data,
                                  size_t dlen);

/* --- Counters ---------------------------------------------------------------
 * A counter is an unsigned 64-bit number stored either as 1-20 ASCII decimal
 * digits (what memcached and most clients store; any value set that way is a
 * counter) or, when created with SHMC_INCR_BINARY, as 8 little-endian bytes.
 * shmc_incr adds `delta` modulo 2^64 (wraps around, as memcached does);
 * shmc_decr subtracts it and stops at 0.  The key's flags and expiry are
 * kept.  Atomic across processes: N concurrent increments by 1 add exactly N.
 * A counter is updated in place, by one 16-byte compare-and-swap of its
 * number and CAS token, with no lock; a concurrent set, cas, delete, touch or
 * eviction of the key never loses an increment that was acknowledged (see
 * docs/design.md).  The CAS token changes on every increment.  A process
 * killed in the call has added delta or nothing.
 * With SHMC_INCR_CREATE a missing (or expired) key is created holding
 * `initial` (not initial +/- delta), with ttl_ms (0 = never) and flags 0.
 * *result = the new value.
 * Returns SHMC_OK, SHMC_NOT_FOUND (missing, without SHMC_INCR_CREATE) or
 * SHMC_ENOTNUM (the value is not a counter: other bytes, over 20 digits, or
 * above 2^64-1).  Errors: as shmc_set; SHMC_EINVAL for a NULL result or an
 * unknown option bit. */
#define SHMC_INCR_CREATE 0x1u  /* create a missing key with `initial` */
#define SHMC_INCR_BINARY 0x2u  /* ...as an 8-byte binary counter */
SHMC_API shmc_status shmc_incr(shmc_t *c, const void *key, size_t klen, uint64_t delta,
                               uint64_t initial, uint64_t ttl_ms, unsigned opts,
                               uint64_t *result);
SHMC_API shmc_status shmc_decr(shmc_t *c, const void *key, size_t klen, uint64_t delta,
                               uint64_t initial, uint64_t ttl_ms, unsigned opts,
                               uint64_t *result);

/* The remaining lifetime of a present key in *ttl_ms: milliseconds until it
 * expires, or SHMC_TTL_NONE if it never does.  Returns SHMC_OK or
 * SHMC_NOT_FOUND.  Never blocks.  Errors: SHMC_EKEYLEN, SHMC_EINVAL. */
#define SHMC_TTL_NONE UINT64_MAX
SHMC_API shmc_status shmc_ttl(shmc_t *c, const void *key, size_t klen, uint64_t *ttl_ms);

/* Removes `key`.  Returns SHMC_OK if it was present (and not expired),
 * SHMC_NOT_FOUND otherwise.  Never needs free memory.
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL, SHMC_ENOSLOTS. */
SHMC_API shmc_status shmc_delete(shmc_t *c, const void *key, size_t klen);

/* SHMC_OK if `key` is present and not expired, SHMC_NOT_FOUND otherwise.
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL, SHMC_ENOSLOTS.  Never blocks. */
SHMC_API shmc_status shmc_exists(shmc_t *c, const void *key, size_t klen);

/* --- Many keys at once ------------------------------------------------------
 * One call for a batch of keys.  Each key gets its own status; the call's
 * own status covers what the whole call could not do.  Not atomic as a
 * whole: each key is read or written as by the single-key call. */

typedef struct shmc_get_req {
    const void *key;      /* in */
    size_t klen;          /* in */
    void *buf;            /* in: where the value is copied */
    size_t buflen;        /* in */
    size_t vlen;          /* out: the value's length (also on SHMC_EBUFSIZE) */
    uint32_t flags;       /* out */
    shmc_status status;   /* out: SHMC_OK, SHMC_NOT_FOUND, SHMC_EBUFSIZE, SHMC_EKEYLEN,
                           *      SHMC_EINVAL */
} shmc_get_req;

/* Looks up n keys, amortising the read-side entry and exit and overlapping
 * the lookups' memory accesses (keys are hashed and their index buckets
 * fetched a chunk at a time).  Returns SHMC_OK when the statuses in reqs
 * are filled in.  Errors: SHMC_EINVAL (NULL), SHMC_ENOSLOTS.  Never blocks. */
SHMC_API shmc_status shmc_get_many(shmc_t *c, shmc_get_req *reqs, size_t n);

typedef struct shmc_set_req {
    const void *key;      /* in */
    size_t klen;          /* in */
    const void *val;      /* in */
    size_t vlen;          /* in */
    uint32_t flags;       /* in */
    uint64_t ttl_ms;      /* in */
    shmc_status status;   /* out: as shmc_set */
} shmc_set_req;

/* Stores n key/value pairs, each as shmc_set.  Returns SHMC_OK if all were
 * stored, else the first failing status (every request has its own). */
SHMC_API shmc_status shmc_set_many(shmc_t *c, shmc_set_req *reqs, size_t n);

typedef struct shmc_key_req {
    const void *key;      /* in */
    size_t klen;          /* in */
    shmc_status status;   /* out: as shmc_delete */
} shmc_key_req;

/* Deletes n keys, each as shmc_delete.  Returns SHMC_OK when the statuses
 * are filled in.  Errors: SHMC_EINVAL (NULL). */
SHMC_API shmc_status shmc_delete_many(shmc_t *c, shmc_key_req *reqs, size_t n);

/* --- Named locks -------------------------------------------------------------
 * Cross-process mutual exclusion by name, with a lease and a fencing token.
 * A name is 1..max_key bytes (binary-safe, like a key; the lock namespace is
 * separate from the key namespace).  Locks live in the cache's lock and
 * singleflight table (shmc_info.locks entries).  An entry is in use while its
 * lock is held, waited on, or recently used; an idle one is recycled for
 * other names, so the table limits how many names are busy at once, not how
 * many are ever used.
 *
 * Ownership belongs to the acquiring thread: release and extend must be
 * called from it.  If that thread exits or its process dies (even by
 * SIGKILL), the lock is released at once and a waiter takes it; waiters
 * sleep in the kernel and are woken by the release or the death, not by
 * polling.  When a lease ends before the holder releases, the next waiter
 * (or caller) takes the lock over and the old holder's release/extend return
 * SHMC_ENOTOWNER.  Waiters are served roughly in order: a waiter that lost a
 * race once is handed the lock at the next release, so nobody starves.
 * Locks are not re-entrant: acquiring a lock the same thread holds waits
 * for its lease to end (or times out).
 *
 * The token is a fencing token: it is never 0, and tokens of one name
 * strictly increase across acquisitions, takeovers and recycling of its
 * entry (pass it to the resource you protect so it can refuse a late
 * writer).  A thread holds at most SHMC_MAX_HOLDS locks and fills at once on
 * one cache.  shmc_thread_detach and shmc_close release what the thread holds.
 */
#define SHMC_MAX_HOLDS 8u

/* Acquires the lock `name`, waiting up to timeout_ms for it (0 = do not wait,
 * like shmc_lock_try).  lease_ms is how long the lock is ours without an
 * extend (0 = no lease: held until released or the thread dies).
 * On SHMC_OK *token is the new owner token.
 * Errors: SHMC_ETIMEDOUT (held by others the whole time), SHMC_EBUSY (timeout
 *   0 and held), SHMC_ETABLEFULL, SHMC_EHOLDS, SHMC_EKEYLEN, SHMC_EINVAL
 *   (NULL), SHMC_ENOSLOTS.  Thread-safe; sleeps at most timeout_ms. */
SHMC_API shmc_status shmc_lock_acquire(shmc_t *c, const void *name, size_t nlen,
                                       uint64_t timeout_ms, uint64_t lease_ms, uint64_t *token);

/* shmc_lock_acquire without waiting: SHMC_OK or SHMC_EBUSY.  A lock whose
 * holder died or whose lease ended is taken over.  Never sleeps. */
SHMC_API shmc_status shmc_lock_try(shmc_t *c, const void *name, size_t nlen,
                                   uint64_t lease_ms, uint64_t *token);

/* Releases the lock if `token` is still its owner token; the next waiter
 * gets it.  Returns SHMC_OK, or SHMC_ENOTOWNER (already released, the lease
 * ended and another took over, or not acquired by this thread); either way
 * this thread no longer holds it.  Errors: SHMC_EKEYLEN, SHMC_EINVAL.
 * Never sleeps. */
SHMC_API shmc_status shmc_lock_release(shmc_t *c, const void *name, size_t nlen,
                                       uint64_t token);

/* Sets the lease of a held lock to end lease_ms from now (0 = no lease).
 * Returns SHMC_OK or SHMC_ENOTOWNER (as shmc_lock_release, and also once the
 * current lease has ended, or is in its last millisecond, even if nobody has
 * taken the lock over yet: extend before the lease ends; the lock is then
 * released, as if taken over).  Errors: SHMC_EKEYLEN, SHMC_EINVAL.
 * Never sleeps. */
SHMC_API shmc_status shmc_lock_extend(shmc_t *c, const void *name, size_t nlen,
                                      uint64_t token, uint64_t lease_ms);

/* --- Singleflight (cache-stampede protection) --------------------------------
 * When many processes miss one key at once, one of them (the leader)
 * computes the value and the others sleep until it is done, then all get the
 * value it stored, or the error it reported.  Per key: filling one key never
 * delays another.  If the leader dies, or is still filling at its fill
 * deadline, one waiter takes over as leader at once; a late leader's finish
 * or abort then returns SHMC_ENOTOWNER and changes nothing.
 *
 * Waiters read the value from the cache when the leader finishes.  If it is
 * gone before they read it (deleted, evicted, or its TTL already ended), a
 * waiter becomes a new leader rather than return nothing.
 *
 * Two forms: the callback form shmc_get_or_fill, and the split form
 * shmc_fill_begin -> (leader computes) -> shmc_fill_finish / shmc_fill_abort
 * for bindings and event loops.  A leader must finish or abort from the
 * thread that began the fill; a fill counts against SHMC_MAX_HOLDS.
 */
#define SHMC_FILL_MSG_MAX 96u   /* bytes of an error message, with its NUL */

typedef struct shmc_fill_opts {
    uint64_t ttl_ms;        /* TTL of the stored value (get_or_fill; 0 = never expires) */
    uint64_t wait_ms;       /* longest wait for another leader (0 = 10000) */
    uint64_t fill_ms;       /* the leader's deadline: after it a waiter takes over
                             * (0 = 10000) */
    uint64_t error_ttl_ms;  /* get_or_fill: how long a fill error is also returned to
                             * later callers instead of a new fill (0 = only to the
                             * callers waiting at that moment) */
    uint64_t refresh_ms;    /* early refresh: a hit with less than refresh_ms of its TTL
                             * left makes one caller the leader that refreshes it while
                             * every other caller keeps getting the current value
                             * (0 = off) */
} shmc_fill_opts;

/* A fill in progress, and where a failed fill's error is returned. */
typedef struct shmc_fill {
    int32_t error;                    /* out (SHMC_EFILL): the leader's error code */
    char message[SHMC_FILL_MSG_MAX];  /* out (SHMC_EFILL): its message, NUL-terminated */
    /* private to the library (a leader's fill holds a malloc()ed copy of the
     * key until it is finished or aborted) */
    uint64_t token_;
    uint32_t entry_, hold_;
    shmc_t *cache_;
    void *key_;
    size_t klen_;
} shmc_fill;

/* Looks `key` up; on a miss, becomes its leader or waits for the current
 * one.  opts may be NULL (defaults; uses wait_ms, fill_ms and refresh_ms).
 * Returns:
 *   SHMC_OK      the value (from the cache, or the leader's fill): *val is a
 *                malloc()ed copy (free() it), *vlen its length, *flags (if not
 *                NULL) its flags;
 *   SHMC_LEADER  you lead: compute the value, then call shmc_fill_finish or
 *                shmc_fill_abort with f (*val is NULL);
 *   SHMC_EFILL   the leader failed: f->error and f->message hold its error;
 *   SHMC_ETIMEDOUT  a leader was still filling after wait_ms.
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL (NULL), SHMC_ETABLEFULL, SHMC_EHOLDS,
 *   SHMC_ENOSLOTS, SHMC_ESYS (malloc).  Thread-safe; sleeps at most wait_ms. */
SHMC_API shmc_status shmc_fill_begin(shmc_t *c, const void *key, size_t klen,
                                     const shmc_fill_opts *opts, void **val, size_t *vlen,
                                     uint32_t *flags, shmc_fill *f);

/* Leader: stores key -> val (as shmc_set) and wakes the waiters, who return
 * it.  Returns SHMC_OK, or SHMC_ENOTOWNER (another leader took over: nothing
 * stored).  f is finished either way, except on SHMC_EINVAL.
 * Errors: as shmc_set (the fill is then aborted with error -1 and the status's
 * message, so waiters do not hang); SHMC_EINVAL (f not from SHMC_LEADER). */
SHMC_API shmc_status shmc_fill_finish(shmc_t *c, shmc_fill *f, const void *val, size_t vlen,
                                      uint32_t flags, uint64_t ttl_ms);

/* Leader: gives up, waking the waiters with SHMC_EFILL and (error, message);
 * for error_ttl_ms (0 = not at all) later callers get the same error instead
 * of leading a new fill.  message may be NULL; it is truncated to fit.
 * Returns SHMC_OK or SHMC_ENOTOWNER.  Errors: SHMC_EINVAL. */
SHMC_API shmc_status shmc_fill_abort(shmc_t *c, shmc_fill *f, int32_t error,
                                     const char *message, uint64_t error_ttl_ms);

/* What a fill callback returns on success: *val malloc()ed (the library takes
 * it over), its length, flags and TTL (preset from opts->ttl_ms). */
typedef struct shmc_fill_out {
    void *val;
    size_t vlen;
    uint32_t flags;
    uint64_t ttl_ms;
    char message[SHMC_FILL_MSG_MAX];  /* on failure: an optional message */
} shmc_fill_out;

/* Fill callback: computes the value of key.  Returns 0 with out->val set, or a
 * non-zero error code (and optionally out->message) to fail the fill. */
typedef int32_t (*shmc_fill_fn)(void *ctx, const void *key, size_t klen, shmc_fill_out *out);

/* Callback form: returns the cached value, or the value that exactly one
 * caller computes with fn while the others wait for it.  The leader's own
 * call returns the buffer fn produced.  On fn's failure every caller of that
 * fill gets SHMC_EFILL with the error in *f (f may be NULL; the error is then
 * only in the status), and later callers get it too for opts->error_ttl_ms.
 * Returns SHMC_OK with *val (free() it), *vlen, *flags (may be NULL).
 * Errors: as shmc_fill_begin (never SHMC_LEADER), and as shmc_set for the
 * leader's store.  fn runs in the calling thread with no shmcache lock held;
 * it may use the cache, including other fills (within SHMC_MAX_HOLDS). */
SHMC_API shmc_status shmc_get_or_fill(shmc_t *c, const void *key, size_t klen,
                                      shmc_fill_fn fn, void *ctx, const shmc_fill_opts *opts,
                                      void **val, size_t *vlen, uint32_t *flags, shmc_fill *f);

/* --- Statistics -----------------------------------------------------------
 * Counters are summed over every participant slot, including slots of
 * processes that have exited.  A snapshot, not an atomic cut. */
/* Every statistic, in struct order: X(name, kind, source, help).  kind is
 * counter (only grows) or gauge; source is slot (a per-participant counter
 * in the segment, summed) or cache (computed from the segment when read).
 * shmc_stats has one uint64_t per row; tools iterate this list (the CLI's
 * stats output, the Python binding's dict). */
#define SHMC_STATS_FIELDS(X) \
    X(gets, counter, cache, "lookups (hits + misses)") \
    X(hits, counter, slot, "lookups that found the key") \
    X(misses, counter, slot, "lookups that did not") \
    X(sets, counter, slot, "writes") \
    X(deletes, counter, slot, "deletes (including flushed items)") \
    X(evictions, counter, slot, "live items dropped to make room") \
    X(expirations, counter, slot, "expired items removed") \
    /* items: exact, except that a process killed inside a window of a few \
     * instructions of a write can leave it high by one until that storage \
     * segment is evicted (shmc_verify counts exactly) */ \
    X(items, gauge, cache, "items in the index") \
    X(bytes_used, gauge, cache, "bytes of live items") \
    X(bytes_dead, gauge, cache, "bytes of replaced or deleted items not reclaimed yet (in open and sealed storage segments)") \
    X(bytes_free, gauge, cache, "bytes of free storage (free segments + open space)") \
    X(bytes_total, gauge, cache, "bytes of item storage") \
    X(segments_free, gauge, cache, "free storage segments") \
    X(segments_open, gauge, cache, "open (append) storage segments") \
    X(segments_sealed, gauge, cache, "sealed storage segments") \
    X(segments_retired, gauge, cache, "retired storage segments awaiting a grace period") \
    X(slots_live, gauge, cache, "participant slots held by live threads") \
    X(slots_reaped, counter, cache, "slots recovered from dead processes") \
    X(index_capacity, gauge, cache, "index slots") \
    X(enomem, counter, cache, "writes refused: every storage segment pinned") \
    X(rescued, counter, slot, "recently read items kept (copied forward) at eviction") \
    X(compacted, counter, slot, "live items moved forward by compaction (none lost)") \
    X(compactions, counter, slot, "mostly-dead storage segments compacted instead of evicted") \
    X(lock_acquires, counter, slot, "named locks acquired (including takeovers)") \
    X(lock_waits, counter, slot, "lock acquisitions that had to sleep first") \
    X(lock_timeouts, counter, slot, "acquire/try calls that gave up (SHMC_ETIMEDOUT/SHMC_EBUSY)") \
    X(lock_takeovers, counter, slot, "locks taken from a dead holder or an expired lease") \
    X(fills, counter, slot, "fills led (shmc_fill_begin/get_or_fill returned LEADER)") \
    X(fill_waits, counter, slot, "callers that slept on another process's fill") \
    X(fill_takeovers, counter, slot, "fills taken over from a dead or late leader") \
    X(fill_errors, counter, slot, "fills aborted with an error") \
    X(locks_used, gauge, cache, "table entries held now: locks owned, fills in progress") \
    X(locks_capacity, gauge, cache, "lock/singleflight table entries") \
    /* a read section that held reclamation back ~5 ms while a write needed \
     * memory (stopped, debugged, descheduled) is left to retry its read */ \
    X(ejections, counter, slot, "read sections ejected (stalled while memory was needed)")

#define SHMC_STATS_DECLARE_(name, kind, source, help) uint64_t name;
typedef struct shmc_stats {
    SHMC_STATS_FIELDS(SHMC_STATS_DECLARE_)
} shmc_stats;
#undef SHMC_STATS_DECLARE_

/* Fills *st.  Errors: SHMC_EINVAL.  Never blocks on other processes. */
SHMC_API shmc_status shmc_stats_get(shmc_t *c, shmc_stats *st);

/* --- Consistency check ------------------------------------------------------ */
typedef struct shmc_verify_report {
    uint64_t items;             /* valid index entries */
    uint64_t bad_offsets;       /* index words pointing outside item storage */
    uint64_t bad_items;         /* entries whose item header/key is malformed */
    uint64_t misplaced;         /* entries in a bucket their key does not hash to */
    uint64_t in_dead_segments;  /* entries pointing into free/retired storage */
    uint64_t duplicates;        /* keys indexed more than once */
    uint64_t segment_errors;    /* segment metadata out of range */
    uint64_t orphan_segments;   /* segments held by a dead participant */
    char first_error[160];      /* description of the first problem, "" if none */
} shmc_verify_report;

/* Checks the index and storage metadata of a live segment without stopping
 * readers or writers.  It first does the recovery any operation would do
 * lazily: reaps the slots of dead participants and takes over the storage
 * segments they held; it changes nothing else.  Returns SHMC_OK when
 * consistent, SHMC_ECORRUPT when a problem was found (described in *rep).
 * Entries that writers change during the scan may be counted either way; run
 * it on a quiet cache for exact item counts.  Cost: one pass over the whole
 * index inside one read section (reclamation waits for it).
 * Must not be called from inside a shmcache callback.
 * Errors: SHMC_EINVAL, SHMC_ENOSLOTS, SHMC_ECORRUPT. */
SHMC_API shmc_status shmc_verify(shmc_t *c, shmc_verify_report *rep);

/* --- Introspection (read-only, for operators and tools) ----------------------
 * What shmcache-cli shows about a live cache: participant slots, the lock and
 * singleflight table, and the keys.  Each call returns a snapshot taken while
 * other processes go on working, not an atomic cut: an entry may change
 * between two fields' reads (each entry's own fields are re-read until they
 * agree, so one entry is never torn).  Everything read from the segment is
 * bounds-checked; a value out of range is reported, never followed.
 *
 * Read-only, except for the recovery every operation does lazily: a slot or
 * lock/fill entry whose owner is found dead is reaped on the way (exactly as
 * shmc_stats_get and the lock calls do).  Only shmc_keys_iter takes a
 * participant slot (it needs a read section); the others never take a slot
 * and never block on other processes.  Thread-safe. */

/* One participant slot (a thread of some process attached to the cache). */
typedef struct shmc_proc_info {
    uint32_t slot;          /* slot index, 0..info.slots-1 */
    uint32_t pid, tid;      /* last owner (as recorded when it took the slot) */
    uint32_t alive;         /* 1: held by a live thread now */
    uint32_t reading;       /* 1: inside a read section (holds reclamation back) */
    uint64_t read_epoch;    /* the epoch its read section started in (0 if not reading) */
    uint64_t epochs_behind; /* global epoch - read_epoch: grace periods it spans; a
                             * reader stuck at > 1 is stalling reclamation */
    uint32_t holds;         /* locks and fills it owns now (0..SHMC_MAX_HOLDS) */
    uint32_t ejected;       /* 1: its current read section was ejected (it held reclamation
                             * back while stopped or descheduled; it retries when it runs) */
    uint64_t ejections;     /* times a section of this slot was ejected (the count survives
                             * the slot's reuse) */
    uint64_t eject_stall_ms; /* last ejection: how long its section had held the epoch back
                              * when ejected (at least; ~5 ms is the threshold) */
    uint64_t eject_ago_ms;  /* ms since that ejection (0 if never) */
} shmc_proc_info;

/* Lists participant slots: those held by a live thread now, or with
 * `all` non-zero every slot ever taken (generation > 0; free ones with
 * alive = 0).  Up to `max` go into out[] in slot order; *n = how many
 * matched in all (may exceed max: call again with a larger array).
 * Errors: SHMC_EINVAL (c or n NULL, or out NULL with max > 0).
 * Never blocks; takes no slot. */
SHMC_API shmc_status shmc_procs(shmc_t *c, int all, shmc_proc_info *out, size_t max,
                                size_t *n);

#define SHMC_LOCK_NAME_PREFIX 64u   /* bytes of a lock/fill name kept in the table */
#define SHMC_LEASE_NONE UINT64_MAX  /* lease_left_ms: no lease (held until released) */

/* One entry of the lock and singleflight table. */
typedef struct shmc_lock_info {
    uint32_t entry;           /* table index */
    uint32_t kind;            /* SHMC_LOCK_KIND_LOCK or SHMC_LOCK_KIND_FILL */
    uint32_t name_len;        /* full length of the name (a fill's name is its key) */
    uint32_t held;            /* 1: owned now (a lock held, a fill in progress) */
    uint8_t name[SHMC_LOCK_NAME_PREFIX]; /* first min(name_len, 64) bytes, not NUL-terminated */
    uint32_t holder_slot;     /* held: the owner's slot index */
    uint32_t holder_pid, holder_tid;
    uint32_t waiter_queued;   /* 1: a waiter that lost a race has claimed the next turn */
    uint64_t token;           /* held: the owner's fencing token; free: the last one issued */
    uint64_t lease_left_ms;   /* held: ms left of the lease (a lock) or until the fill
                               * deadline (a fill); 0 = over, waiting for a takeover;
                               * SHMC_LEASE_NONE = no lease */
    uint64_t idle_ms;         /* ms since the entry was last claimed or acquired */
} shmc_lock_info;

#define SHMC_LOCK_KIND_LOCK 1u
#define SHMC_LOCK_KIND_FILL 2u

/* Lists the table's entries that name a lock or a key being filled (held,
 * waited on, or idle but not yet recycled; with held_only non-zero, only the
 * held ones): up to `max` into out[], *n = how many matched in all.
 * Errors: SHMC_EINVAL (c or n NULL, or out NULL with max > 0).
 * Never blocks; takes no slot. */
SHMC_API shmc_status shmc_locks_list(shmc_t *c, int held_only, shmc_lock_info *out,
                                     size_t max, size_t *n);

/* Operator override: frees the named lock whatever its holder (alive or
 * not), as if the holder had released it.  The next waiter or caller takes
 * it with a new, higher token; waiters asleep on the old holder notice
 * within a second.  The old holder is not told: its shmc_lock_release or
 * shmc_lock_extend then returns SHMC_ENOTOWNER, and the resource the lock
 * protected must refuse its (older) fencing token.  If *token_out is not
 * NULL it receives the token that was revoked.
 * Returns SHMC_OK, or SHMC_NOT_FOUND (no entry for that name, or not held).
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL, SHMC_EBUSY (the holder kept rewriting
 * its lease through thousands of attempts: try again).  Never sleeps; takes
 * no slot. */
SHMC_API shmc_status shmc_lock_force_release(shmc_t *c, const void *name, size_t nlen,
                                             uint64_t *token_out);

/* One key seen by shmc_keys_iter.  `key` points at a copy valid only during
 * the callback. */
typedef struct shmc_key_info {
    const void *key;
    size_t klen;
    size_t vlen;              /* value bytes */
    uint32_t flags;           /* user flags */
    uint32_t counter;         /* 1: an 8-byte binary counter (SHMC_INCR_BINARY) */
    uint64_t ttl_left_ms;     /* ms until expiry, or SHMC_TTL_NONE */
    uint64_t cas;             /* CAS token (as shmc_gets) */
} shmc_key_info;

/* Callback: return 0 to go on, non-zero to stop the walk. */
typedef int (*shmc_key_fn)(void *ctx, const shmc_key_info *k);

/* Walks the index and calls fn for each present, unexpired key, without
 * stopping readers or writers: keys are copied out in short read sections
 * (a few thousand index slots or 64 KiB of keys at a time) and fn runs
 * outside any read section and holding no lock, so it may use the cache.
 * A key written, moved or deleted during the walk may be seen or missed,
 * and (rarely) seen twice if it moved; a key present and unchanged for the
 * whole walk is seen exactly once.  Order is the index's, not the keys'.
 *
 * cursor (may be NULL: start at 0) is where the walk starts; on return it is
 * where a later call resumes (after fn stopped the walk), or 0 when the walk
 * reached the end.  Returns SHMC_OK either way.
 * Errors: SHMC_EINVAL (c or fn NULL, or called inside a read section /
 * callback of the library), SHMC_ENOSLOTS, SHMC_ESYS (malloc). */
SHMC_API shmc_status shmc_keys_iter(shmc_t *c, uint64_t *cursor, shmc_key_fn fn, void *ctx);

/* --- end of introspection --------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif /* SHMCACHE_H */
