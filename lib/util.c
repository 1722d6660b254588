/*
 * util.c — the clock, the keyed hash, robust mutex set-up and status strings.
 *
 * One clock (CLOCK_MONOTONIC, shared by every process of the host) serves
 * TTLs and leases, so a wall-clock step never expires or revives entries.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* +1 so that no real time is ever 0, which means "never" in items. */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1u;
}

/* A keyed multiply-fold hash.  Not cryptographic; the per-segment random seed
 * makes it hard for outside input to aim many keys at one bucket. */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#define K0 0x9e3779b97f4a7c15ull
#define K1 0xc2b2ae3d27d4eb4full
#define K2 0x165667b19e3779f9ull
#define K3 0xd6e8feb86659fd93ull

uint64_t hash_key(uint64_t seed, const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = seed ^ fold(len + K0, K1);
    size_t n = len;
    while (n > 16) {
        h = fold(load64(p) ^ K2 ^ h, load64(p + 8) ^ K3 ^ seed);
        p += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        a = load64(p);
        b = load64(p + n - 8);
    } else if (n > 0) {
        /* 1..7 bytes: first, middle and last byte pairs cover them all. */
        a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
        if (n >= 4) {
            uint32_t x, y;
            memcpy(&x, p, 4);
            memcpy(&y, p + n - 4, 4);
            b = ((uint64_t)x << 32) | y;
        }
    }
    h = fold(a ^ K2 ^ h, b ^ K3 ^ (uint64_t)len);
    return fold(h ^ K0, h ^ K1 ^ seed);
}

static int shared_mutex_init(pthread_mutex_t *m, int type)
{
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r)
        return r;
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!r)
        r = pthread_mutexattr_settype(&a, type);
    if (!r)
        r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return r;
}

int robust_mutex_init(pthread_mutex_t *m)
{
    return shared_mutex_init(m, PTHREAD_MUTEX_NORMAL);
}

int hold_mutex_init(pthread_mutex_t *m)
{
    return shared_mutex_init(m, PTHREAD_MUTEX_ERRORCHECK);
}

uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = fold((uint64_t)ts.tv_nsec ^ K0, (uint64_t)getpid() ^ K1);
    }
    return s | 1;
}

static const char *const messages[SHMC_STATUS_COUNT_] = {
    [SHMC_OK] = "success",
    [SHMC_NOT_FOUND] = "key not found (absent or expired)",
    [SHMC_EXISTS] = "key already exists",
    [SHMC_EBUFSIZE] = "buffer too small for the value (needed size returned)",
    [SHMC_EKEYLEN] = "key is empty or longer than the cache's max_key",
    [SHMC_EVALLEN] = "value is longer than the cache's max_value",
    [SHMC_EINVAL] = "invalid argument",
    [SHMC_ENAME] = "invalid cache name (use 1-200 of [A-Za-z0-9._-], not starting with '.')",
    [SHMC_ENOENT] = "no cache of that name exists",
    [SHMC_EEXIST] = "a cache of that name already exists",
    [SHMC_EACCES] = "permission denied on the cache segment",
    [SHMC_EVERSION] = "segment was made by an incompatible shmcache version or layout",
    [SHMC_EMISMATCH] = "segment exists with other creation parameters",
    [SHMC_ECORRUPT] = "segment is corrupt or truncated",
    [SHMC_ENOMEM] = "out of cache memory: retired memory is pinned by a stalled reader",
    [SHMC_ENOSLOTS] = "all participant slots are taken by live threads",
    [SHMC_ENAMESPACE] = "segment belongs to another PID namespace",
    [SHMC_ETIMEDOUT] = "timed out",
    [SHMC_ESYS] = "system call failed (see errno)",
    [SHMC_ETOOSMALL] = "cache size too small for its max_value (raise size or lower max_value)",
    [SHMC_STALE] = "the entry changed since its CAS token was read",
    [SHMC_ENOTNUM] = "the value is not a counter (1-20 decimal digits, or a binary counter)",
    [SHMC_EBUSY] = "the lock is held by another owner",
    [SHMC_ENOTOWNER] = "not the current owner (released already, or the lease or fill deadline passed and another took over)",
    [SHMC_ETABLEFULL] = "the lock and singleflight table is full (raise options.locks)",
    [SHMC_EHOLDS] = "this thread already holds the most locks and fills it may hold at once",
    [SHMC_LEADER] = "you are the leader of this fill: compute the value, then finish or abort",
    [SHMC_EFILL] = "the fill of this key failed (the leader reported an error)",
};

const char *shmc_strerror(shmc_status st)
{
    if ((unsigned)st >= SHMC_STATUS_COUNT_ || !messages[st])
        return "unknown shmcache status";
    return messages[st];
}
