/*
 * util.h — the truly shared basics of lib/: symbol visibility, the clock,
 * the keyed hash, robust process-shared mutexes and their bounded locking.
 * util.c owns no shared state and calls no other lib/ file.
 * Nothing in lib/ headers is public API; symbols are hidden in the shared library.
 */
#ifndef SHMC_UTIL_H
#define SHMC_UTIL_H

#include "shmcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <urcu/arch.h>
#include <urcu/compiler.h>

#define HIDDEN __attribute__((visibility("hidden")))

/* Fuzz builds (fuzz/meson.build) wait out every bound 50 times sooner, so
 * that an input which makes a call wait its whole bound (a lock that looks
 * held by a live thread, a reader that looks stalled) costs milliseconds,
 * not seconds.  The logic is the same. */
#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#define BOUND_MS(ms) ((ms) / 50u)
#else
#define BOUND_MS(ms) (ms)
#endif
/* How long a per-key (stripe) lock or the lock table's claim lock is waited
 * for: their holders keep them for microseconds, so this is a holder that is
 * stopped (SIGSTOP, a debugger) or a damaged mutex. */
#define LOCK_WAIT_MS BOUND_MS(10000u)
/* A stripe lock still held by the holder a waiter already gave up on (it is
 * stopped): later waiters give up after this, not LOCK_WAIT_MS. */
#define STRIPE_STALLED_WAIT_MS BOUND_MS(50u)
/* How long a read section may hold reclamation back, while a writer needs
 * memory, before that writer ejects it (alloc.c, epoch.c).
 * ThreadSanitizer cannot model neutralisation: an ejected reader reads bytes
 * that a writer is reusing, with no happens-before between them, and throws
 * what it read away afterwards (like a seqlock reader).  Under TSan, whose
 * slowness makes threads miss their time slices for longer than 5 ms, a
 * section is ejected only after 10 s, so that the threaded suites check
 * everything else; the ejection path runs in every other build. */
#if defined(__SANITIZE_THREAD__)
#define SHMC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMC_TSAN 1
#endif
#endif
#ifdef SHMC_TSAN
#define EJECT_MS_DEFAULT 10000u
#else
#define EJECT_MS_DEFAULT 5u
#endif

/* Monotonic milliseconds (+1: never 0, which means "never" in items).  Any context. */
HIDDEN uint64_t now_ms(void);
/* hash_key: a keyed multiply-fold hash.  Not cryptographic; the per-segment
 * random seed makes it hard for outside input to aim many keys at one
 * bucket.  Any context.  Inline: as a call it was an eighth of a get's
 * instructions (callgrind). */
static inline uint64_t hash_fold_(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t hash_load64_(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#define HK0 0x9e3779b97f4a7c15ull
#define HK1 0xc2b2ae3d27d4eb4full
#define HK2 0x165667b19e3779f9ull
#define HK3 0xd6e8feb86659fd93ull

static inline uint64_t hash_key(uint64_t seed, const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = seed ^ hash_fold_(len + HK0, HK1);
    size_t n = len;
    while (n > 16) {
        h = hash_fold_(hash_load64_(p) ^ HK2 ^ h, hash_load64_(p + 8) ^ HK3 ^ seed);
        p += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        a = hash_load64_(p);
        b = hash_load64_(p + n - 8);
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
    h = hash_fold_(a ^ HK2 ^ h, b ^ HK3 ^ (uint64_t)len);
    return hash_fold_(h ^ HK0, h ^ HK1 ^ seed);
}

/* One unaligned 16-byte move (for copy_short). */
static inline void copy16_(uint8_t *d, const uint8_t *s)
{
    struct { uint8_t b[16]; } v;
    memcpy(&v, s, 16);
    memcpy(d, &v, 16);
}
/* Copies n bytes between buffers that do not overlap.  From 16 to 128 bytes
 * it is a few unaligned 16-byte moves from both ends (overlapping in the
 * middle), inline: the call to memcpy for a 100-byte value was about 34 of
 * a get's 303 instructions (callgrind). */
static inline void copy_short(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (caa_likely(n >= 64 && n <= 128)) {
        for (size_t i = 0; i < 64; i += 16) {
            copy16_(d + i, s + i);
            copy16_(d + n - 64 + i, s + n - 64 + i);
        }
    } else if (n >= 16 && n < 64) {
        copy16_(d, s);
        copy16_(d + n - 16, s + n - 16);
        if (n > 32) {
            copy16_(d + 16, s + 16);
            copy16_(d + n - 32, s + n - 32);
        }
    } else if (n) {
        memcpy(d, s, n);
    }
}

HIDDEN uint64_t random_seed(void);

/* Initialise a robust, process-shared mutex (hold: also error-checking, so
 * relocking by its owner fails, not hangs).  Segment creation only. */
HIDDEN int robust_mutex_init(pthread_mutex_t *m);
HIDDEN int hold_mutex_init(pthread_mutex_t *m);
/* Whether a mutex of the segment still has the kind robust_mutex_init
 * (hold = false) or hold_mutex_init (hold = true) gave it (see util.c). */
HIDDEN bool mutex_kind_ok(const pthread_mutex_t *m, bool hold);
/* pthread_mutex_clocklock on CLOCK_MONOTONIC until `deadline` (now_ms()
 * time): 0, EOWNERDEAD, ETIMEDOUT or another error. */
HIDDEN int mutex_lock_until(pthread_mutex_t *m, uint64_t deadline);
/* Locks a robust mutex of the segment, waiting at most wait_ms: another
 * process, or damage, can leave it held for ever, and no call may hang.  A
 * holder that no longer exists is treated as dead (see util.c).  Returns 0,
 * EOWNERDEAD (the caller makes it consistent), ETIMEDOUT or another error. */
HIDDEN int mutex_lock_bounded(pthread_mutex_t *m, uint64_t wait_ms);
/* When m's futex word names a holder thread that no longer exists (and the
 * kernel did not mark it owner-died), marks it as the kernel marks a dead
 * holder's mutex, so the next locker gets EOWNERDEAD.  One kill(tid, 0).
 * Returns whether it marked the mutex (see util.c). */
HIDDEN bool mutex_mark_vanished(pthread_mutex_t *m);
/* The TID in a robust mutex's futex word (its holder), 0 if none or dead. */
HIDDEN uint32_t mutex_owner_tid(pthread_mutex_t *m);
/* The status of a pthread mutex lock result: 0 and EOWNERDEAD -> SHMC_OK,
 * ETIMEDOUT -> SHMC_ETIMEDOUT, ENOTRECOVERABLE (damage) -> SHMC_ECORRUPT,
 * anything else -> SHMC_ESYS with errno set to it. */
HIDDEN shmc_status lock_status(int r);
/* mutex_lock_bounded as a status.  On SHMC_OK the mutex is held and
 * consistent; *died (may be NULL) tells whether its last holder died holding
 * it, so the caller repairs what that holder guarded. */
HIDDEN shmc_status robust_lock(pthread_mutex_t *m, uint64_t wait_ms, bool *died);

#endif
