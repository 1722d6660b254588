/*
 * shmcache_tier.h — shmcache as the per-host L1 in front of Redis.
 *
 * Optional part of shmcache (library libshmcache_tier, built when hiredis is
 * found; meson option -Dredis=auto|enabled|disabled).  It is built only on
 * the public API of shmcache.h; the core library has no Redis dependency.
 *
 * Model.  Redis is the source of truth.  Every host runs one shmcache cache
 * that all its worker processes share; a tier handle puts it in front of
 * Redis for the keys that start with one prefix (the "tracked prefix"):
 *
 *   - Read-through: shmc_tier_get looks in the host's cache; on a miss exactly
 *     one worker of the host (shmcache's singleflight) reads Redis (GET and
 *     PTTL, pipelined: one round trip) and stores the value, or the fact that
 *     the key is absent, with an L1 TTL of min(the key's remaining Redis TTL,
 *     max_stale_ms); the other workers of the host wait for it.
 *   - Write-through: set/add/delete/incr/touch go to Redis first, then
 *     invalidate the host's copy (the next read fetches the new value).  A
 *     failed Redis write is returned to the caller and still invalidates the
 *     host's copy: the host never keeps a copy newer than Redis, nor an older
 *     one that it knows about.
 *   - Invalidation across hosts: per host, exactly one listener holds
 *     Redis's server-assisted client-side caching in broadcasting mode
 *     (CLIENT TRACKING on REDIRECT <id> BCAST PREFIX <prefix>, the
 *     invalidations arriving on the __redis__:invalidate channel of a RESP2
 *     subscriber connection) and applies every invalidation to the host's
 *     cache.  The listener is a library thread in whichever process of the
 *     host holds the named lock "shmc-tier:<prefix>" (with a lease it renews);
 *     when that process dies another one's thread takes the lock at once (a
 *     SIGKILLed holder's lock is freed by the kernel), or when the lease
 *     ends (a stopped holder).  shmc-tier-listen (tier/) is the same listener
 *     as a sidecar process.
 *   - Liveness: the listener keeps a heartbeat record in the host's cache
 *     (key "\0shmc-tier\0<prefix>\0hb": listener epoch, deadline).  While no
 *     listener has a live record (none elected yet, its Redis connection
 *     lost, its lease over), every read bypasses the host's copy and goes to
 *     Redis, and nothing is stored.  A listener that (re)connects starts a
 *     new epoch, which invalidates every copy stored before, and deletes the
 *     tracked prefix's keys from the host's cache (invalidations may have
 *     been missed while it was away).
 *
 * Consistency (what a reader on host B may see once a write on host A has
 * returned, A and B being any hosts, possibly the same):
 *   - same host (A == B): the new value or a newer one, at once
 *     (read-your-writes across the host's processes);
 *   - another host, normal case: the old value until B's listener applies
 *     the invalidation (Redis's push delay: typically under a millisecond on
 *     a LAN), then the new value or a newer one;
 *   - another host, while B's listener is stopped but its lease runs: old
 *     values for at most the heartbeat deadline (lease_ms) after its last
 *     heartbeat; then reads go to Redis;
 *   - every copy is at most max_stale_ms old whatever happens (it was read
 *     from Redis at most that long ago), and never outlives the key's TTL in
 *     Redis;
 *   - never: a value older than one that a reader of the same host already
 *     got after the listener applied its invalidation.  Every copy carries
 *     the listener epoch and its key's invalidation generation (a counter
 *     per key in the host's cache), both read *before* its Redis read; an invalidation (or a local
 *     write) increments that generation before anything else, and a copy
 *     whose tags are not current is never returned.  So a fill that raced
 *     with an invalidation can store its older value, but no reader uses it.
 *   - not provided: atomicity across keys; monotonic reads across hosts;
 *     values lost by Redis itself (a restart without persistence) — after
 *     such a restart the listener reconnects, the host's copies are dropped
 *     and reads return what Redis has.
 *
 * Keys.  The API takes keys without the prefix; the tier adds it: Redis key
 * and host-cache key are both <prefix><key> (1..max_key bytes in all, binary
 * safe).  Values are plain bytes in Redis (no header), so other Redis
 * clients can read and write the same keys (their writes are invalidated
 * like any other).  The host's copy carries a 24-byte header: a value of
 * the cache's max_value - 24 bytes at most is cached; larger values are
 * served from Redis on every read (still correct).  Flags are not stored.
 * Each key read or written through the tier also has an 8-byte generation
 * counter item in the host's cache (evicted like any item; a new one never
 * repeats an old value).
 *
 * Redis: 6.0 or later (CLIENT TRACKING); unix socket or TCP, AUTH and
 * SELECT; no TLS.  The tier adds no Redis keys of its own except the fill
 * locks of shmc_tier_get_or_fill ("shmc-fill:<prefix><key>", with a lease).
 *
 * Thread and process safety: a handle may be used by every thread of the
 * process that opened it (Redis commands of one process are serialised on
 * one connection); after fork() the child may go on using the handle (it
 * opens its own Redis connection and takes part in the listener election on
 * its first call).  Many handles (in any processes) may share one cache,
 * with the same or different prefixes.  Nothing here prints, exits or
 * aborts.
 *
 * Errors: functions return shmc_status values (shmcache.h), plus the codes
 * below; shmc_tier_strerror() describes both.
 */
#ifndef SHMCACHE_TIER_H
#define SHMCACHE_TIER_H

#include "shmcache.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(SHMC_BUILDING_TIER)
#define SHMC_TIER_API __attribute__((visibility("default")))
#else
#define SHMC_TIER_API
#endif

/* Status codes of the tier, beyond shmc_status. */
#define SHMC_TIER_EREDIS  ((shmc_status)100) /* Redis unreachable, timed out, or the
                                               * connection broke (the command may or may
                                               * not have been applied) */
#define SHMC_TIER_EREPLY  ((shmc_status)101) /* Redis answered with an error (e.g. WRONGTYPE,
                                               * NOAUTH) or an unexpected reply */

/* Options of shmc_tier_open.  Zero-initialise, then set what you need. */
typedef struct shmc_tier_options {
    const char *redis_unix;   /* path of Redis's unix socket, or NULL to use TCP */
    const char *redis_host;   /* TCP host (default "127.0.0.1") */
    int redis_port;           /* TCP port (default 6379) */
    int redis_db;             /* SELECT this database (default 0) */
    const char *redis_password; /* AUTH with it when not NULL */
    const void *prefix;       /* the tracked prefix (binary safe; may be empty: every
                               * key is tracked), prepended to every key */
    size_t prefix_len;
    uint64_t max_stale_ms;    /* longest life of a host copy (default 60000) */
    uint64_t lease_ms;        /* listener lease and heartbeat deadline (default 2000,
                               * at least 300): bounds staleness while a listener is
                               * stopped; a dead listener is replaced at once */
    uint64_t timeout_ms;      /* Redis connect and command timeout (default 1000) */
    uint64_t fill_wait_ms;    /* longest wait for the host's leader of a fill (default
                               * timeout_ms + 1000); after it, read Redis directly */
    uint32_t flags;           /* SHMC_TIER_* below */
    uint32_t reserved_;       /* must be 0 */
} shmc_tier_options;

#define SHMC_TIER_NO_LISTENER 0x1u  /* this handle never runs the listener (another
                                     * process, e.g. shmc-tier-listen, does) */

/* A tier handle (opaque). */
typedef struct shmc_tier shmc_tier_t;

/* Opens a tier on the open cache `c` (which must stay open until
 * shmc_tier_close).  Connects nothing yet: the Redis connection is opened on
 * the first command, and the listener thread is started on the first call
 * (or by shmc_tier_listen).
 * Errors: SHMC_EINVAL (NULL c or out, reserved_ or unknown flags, prefix NULL
 *   with prefix_len > 0, lease_ms < 300), SHMC_EKEYLEN (prefix leaves no room
 *   for a key within max_key), SHMC_ESYS (malloc).  Thread-safe. */
SHMC_TIER_API shmc_status shmc_tier_open(shmc_t *c, const shmc_tier_options *o,
                                         shmc_tier_t **out);

/* Stops this process's listener thread (releasing the listener lock, so that
 * another process takes over at once; this may wait up to timeout_ms for a
 * Redis call of that thread to end), closes the Redis connection and frees
 * the handle.  Other threads must not use it any more.  NULL is accepted.
 * A child that inherited the handle over fork() may close it too (it closes
 * only its own connection).  Returns SHMC_OK. */
SHMC_TIER_API shmc_status shmc_tier_close(shmc_tier_t *t);

/* Reads key: from the host's cache when a current copy is there, else from
 * Redis (read-through, one fill per host).  On SHMC_OK *val is a malloc()ed
 * copy (free() it; non-NULL even for an empty value) and *vlen its length.
 * Returns SHMC_OK or SHMC_NOT_FOUND (absent in Redis).
 * Errors: SHMC_EKEYLEN, SHMC_EINVAL, SHMC_TIER_EREDIS, SHMC_TIER_EREPLY (e.g.
 *   the key holds a Redis list), SHMC_ESYS; errors of the host cache
 *   (SHMC_ENOSLOTS, SHMC_ENOMEM...) are not returned: the read then goes to
 *   Redis.  May block for timeout_ms (Redis) or fill_wait_ms. */
SHMC_TIER_API shmc_status shmc_tier_get(shmc_tier_t *t, const void *key, size_t klen,
                                        void **val, size_t *vlen);

/* Writes key -> val in Redis (SET, with PX ttl_ms when ttl_ms > 0; 0 = no
 * expiry), then invalidates the host's copy.
 * Returns SHMC_OK.  Errors: SHMC_EKEYLEN, SHMC_EINVAL, SHMC_TIER_EREDIS,
 *   SHMC_TIER_EREPLY (the host's copy is invalidated in every case). */
SHMC_TIER_API shmc_status shmc_tier_set(shmc_tier_t *t, const void *key, size_t klen,
                                        const void *val, size_t vlen, uint64_t ttl_ms);

/* Like shmc_tier_set, but only if the key is absent in Redis (SET NX).
 * Returns SHMC_OK or SHMC_EXISTS.  Errors: as shmc_tier_set. */
SHMC_TIER_API shmc_status shmc_tier_add(shmc_tier_t *t, const void *key, size_t klen,
                                        const void *val, size_t vlen, uint64_t ttl_ms);

/* Deletes key in Redis (DEL), then invalidates the host's copy.
 * Returns SHMC_OK (it existed) or SHMC_NOT_FOUND.  Errors: as shmc_tier_set. */
SHMC_TIER_API shmc_status shmc_tier_delete(shmc_tier_t *t, const void *key, size_t klen);

/* Adds delta to the integer in key (INCRBY, atomic in Redis), then
 * invalidates the host's copy; *result = the new value.  With
 * SHMC_TIER_INCR_CREATE a missing key counts as 0 (Redis's INCRBY); without
 * it a missing key is SHMC_NOT_FOUND and nothing is created (checked and
 * incremented atomically, in one script).
 * Returns SHMC_OK or SHMC_NOT_FOUND.  Errors: as shmc_tier_set;
 *   SHMC_ENOTNUM (not an integer, or the result would overflow int64),
 *   SHMC_EINVAL (result NULL, unknown opts). */
#define SHMC_TIER_INCR_CREATE 0x1u
SHMC_TIER_API shmc_status shmc_tier_incr(shmc_tier_t *t, const void *key, size_t klen,
                                         int64_t delta, unsigned opts, int64_t *result);

/* Gives key a new TTL in Redis (PEXPIRE ttl_ms; ttl_ms 0 = PERSIST: never
 * expires), then invalidates the host's copy.
 * Returns SHMC_OK or SHMC_NOT_FOUND.  Errors: as shmc_tier_set. */
SHMC_TIER_API shmc_status shmc_tier_touch(shmc_tier_t *t, const void *key, size_t klen,
                                          uint64_t ttl_ms);

/* Deletes every key of the tracked prefix in Redis (SCAN MATCH + UNLINK, in
 * batches: keys written meanwhile may survive), then drops the prefix from
 * the host's cache.  An empty prefix deletes the whole Redis database.
 * Errors: SHMC_TIER_EREDIS, SHMC_TIER_EREPLY, SHMC_ESYS. */
SHMC_TIER_API shmc_status shmc_tier_clear(shmc_tier_t *t);

/* Cluster-wide singleflight: one computation per cluster, not per host. */
typedef struct shmc_tier_fill_opts {
    uint64_t ttl_ms;   /* TTL of the computed value in Redis (0 = no expiry) */
    uint64_t fill_ms;  /* lease of the cluster fill lock: after it another caller
                        * anywhere computes (default 10000) */
    uint64_t wait_ms;  /* longest wait for another caller's computation
                        * (default 10000) */
} shmc_tier_fill_opts;

/* Returns the value of key (as shmc_tier_get); when Redis has none, exactly
 * one caller in the whole cluster computes it with fn while the others wait:
 * the caller that takes the fill lock "shmc-fill:<prefix><key>" in Redis
 * (SET NX PX fill_ms with a random owner token) re-reads Redis, calls
 * fn (with no lock of this library held), writes the value through
 * (shmc_tier_set with ttl_ms) and releases the lock only if it still owns
 * it (compare-and-delete in one EVAL).  The other callers, on every host,
 * poll the key through their host's cache every 5 ms (a cached "absent"
 * costs no Redis command until the write's invalidation arrives) and try to
 * take the lock every 50 ms, so that a lock whose owner died is taken over
 * when its lease ends.  fn returns 0 with out->val (malloc()ed; the library
 * frees it) or an error code (and out->message): that call then returns
 * SHMC_EFILL with the error in *f (f may be NULL), the lock is released, and
 * the waiting callers go on (one of them computes next).
 * On SHMC_OK *val is malloc()ed (free() it), *vlen its length.
 * Errors: as shmc_tier_get and shmc_tier_set; SHMC_EFILL; SHMC_ETIMEDOUT (no
 *   value after wait_ms); SHMC_EINVAL (fn NULL).  Thread-safe; may sleep up
 *   to wait_ms. */
SHMC_TIER_API shmc_status shmc_tier_get_or_fill(shmc_tier_t *t, const void *key, size_t klen,
                                                shmc_fill_fn fn, void *ctx,
                                                const shmc_tier_fill_opts *opts, void **val,
                                                size_t *vlen, shmc_fill *f);

/* Drops every copy of the tracked prefix from the host's cache (Redis is not
 * changed): the next reads fetch from Redis.  Errors: SHMC_ENOSLOTS,
 * SHMC_ESYS. */
SHMC_TIER_API shmc_status shmc_tier_flush_local(shmc_tier_t *t);

/* Runs the listener in the calling thread until *stop becomes non-zero
 * (checked every 100 ms): waits for the listener lock, then listens while it
 * holds it, reconnecting to Redis as needed (the sidecar's loop; the
 * library's own listener thread runs the same).  Returns SHMC_OK when
 * stopped.  Errors: SHMC_EINVAL (NULL). */
SHMC_TIER_API shmc_status shmc_tier_listen(shmc_tier_t *t, volatile int *stop);

/* The tier's counters (this process) and state (this host). */
typedef struct shmc_tier_stats {
    uint64_t gets;            /* shmc_tier_get calls */
    uint64_t l1_hits;         /* served from the host's cache */
    uint64_t l1_waits;        /* served by another worker's fill */
    uint64_t fills;           /* fills led: a Redis read stored for the host */
    uint64_t bypass;          /* reads sent to Redis with no listener live (or a copy
                               * too large, or a fill not finished in time) */
    uint64_t redis_cmds;      /* Redis commands this process sent (not the listener's) */
    uint64_t redis_errors;    /* commands that failed (connection or timeout) */
    uint64_t invalidations;   /* keys invalidated by this process's listener */
    uint64_t listener_epochs; /* times this process's listener (re)started an epoch */
    uint32_t listener_live;   /* 1: the host has a live listener now */
    uint32_t listener_here;   /* 1: it is this process */
    uint32_t listener_pid;    /* the live listener's pid (0 if none) */
    uint32_t reserved_;
    uint64_t epoch;           /* the host's current listener epoch */
} shmc_tier_stats;

/* Fills *st.  Errors: SHMC_EINVAL.  Thread-safe. */
SHMC_TIER_API shmc_status shmc_tier_stats_get(shmc_tier_t *t, shmc_tier_stats *st);

/* Waits up to timeout_ms for a live listener on this host (for start-up and
 * tests).  Returns SHMC_OK or SHMC_ETIMEDOUT.  Errors: SHMC_EINVAL. */
SHMC_TIER_API shmc_status shmc_tier_wait_listener(shmc_tier_t *t, uint64_t timeout_ms);

/* A sentence for any shmc_status, including the SHMC_TIER_* codes. */
SHMC_TIER_API const char *shmc_tier_strerror(shmc_status st);

#ifdef __cplusplus
}
#endif
#endif /* SHMCACHE_TIER_H */
