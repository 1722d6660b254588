/*
 * testutil.h — helpers shared by the shmcache test programs: unique segment
 * names, a fixed-seed PRNG, self-validating values, fork/wait helpers with
 * bounded waits, and a small block of process-shared memory that children use
 * to report errors (a child killed by SIGKILL cannot report by exit status).
 *
 * Only the public API (shmcache.h) is used here, so every test can link it.
 */
#ifndef SHMC_TESTUTIL_H
#define SHMC_TESTUTIL_H

#include "shmcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every forked child arms alarm() with this many seconds, so no child can
 * outlive a broken test for long (SIGALRM kills it; the parent sees that). */
#define TU_CHILD_ALARM_S 120u

/* The small cache the tests use for eviction pressure (with max_value
 * 16 KiB). */
#define TU_SMALL_SIZE (8ull << 20)

/* ---- names, time ---- */

/* "shmct-<tag>-<pid>-<n>", unique per call within a test run.  The first
 * call also removes segments left by test processes that are gone. */
void tu_name(char *buf, size_t n, const char *tag);
/* Removes the segment (ignores SHMC_ENOENT). */
void tu_destroy(const char *name);
void tu_sleep_ms(unsigned ms);
uint64_t tu_now_ms(void);
/* Path of the segment file: /dev/shm/<name>. */
void tu_shm_path(char *buf, size_t n, const char *name);

/* ---- the common cmocka fixture ----
 * A fresh cache per test: tu_fx_setup() names it after `tag`, removes any
 * leftover of that name, and (with o non-NULL) creates it with options o
 * (o NULL: f->c stays NULL, for tests that open their own).  Returns 0, or
 * -1 after printing why (cmocka then fails the test).  tu_fx_teardown()
 * closes the handle, if any, and removes the segment.  Tests that need more
 * state keep a struct of their own. */
typedef struct tu_fx {
    char name[96];
    shmc_t *c;
} tu_fx;
int tu_fx_setup(void **state, const char *tag, const shmc_options *o);
int tu_fx_teardown(void **state);

/* ---- raw access to a segment (white-box tests that damage it) ---- */
/* Maps the whole segment file read-write (a second mapping beside any
 * handle); NULL on failure.  *size gets its length; munmap it. */
void *tu_map_segment(const char *name, size_t *size);
/* The 8 bytes at p + off (unaligned safe). */
uint64_t tu_load64(const void *p, size_t off);

/* ---- PRNG (splitmix64; deterministic for a given seed) ---- */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
void tu_rng_seed(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);
/* Uniform in [0, n) (n > 0). */
uint32_t tu_rng_below(tu_rng *r, uint32_t n);
/* Uniform in [lo, hi]. */
uint32_t tu_rng_range(tu_rng *r, uint32_t lo, uint32_t hi);

/* ---- keys ---- */
#define TU_KEY_MAX 64
/* Writes "<prefix><id>" (no NUL counted) and returns its length. */
size_t tu_key(char *buf, const char *prefix, uint32_t id);

/* ---- self-validating values ----
 * A value of length >= TU_VHDR starts with a header (magic, key id, writer,
 * sequence, length, checksum) followed by bytes derived from (key, writer,
 * seq); a shorter value is bytes derived from (key, length).  Either way the
 * value validates only for its own key and its exact length, so a torn,
 * truncated, foreign or stale-offset read is detected.  The user flags stored
 * with a value are derived from (key, length) too. */
#define TU_VHDR 32u
void tu_value_fill(void *buf, size_t len, uint32_t key_id, uint32_t writer, uint32_t seq);
uint32_t tu_value_flags(uint32_t key_id, size_t len);
/* 0 if buf[0..len) with `flags` is a valid value of key_id; otherwise non-zero
 * and a description in why (if not NULL). */
int tu_value_check(const void *buf, size_t len, uint32_t flags, uint32_t key_id, char *why,
                   size_t whylen);
/* The writer and seq that tu_value_fill recorded in a value of length >=
 * TU_VHDR (a shorter value records neither: returns false).  Meaningful
 * only for a value that tu_value_check accepts. */
bool tu_value_origin(const void *buf, size_t len, uint32_t *writer, uint32_t *seq);

/* ---- counters ---- */
/* The number in buf[0..n) of ASCII decimal digits (no checks). */
uint64_t tu_parse_u64(const void *buf, size_t n);
/* Adds 1 to the decimal counter at `key` with a gets + cas retry loop.
 * Returns SHMC_OK once stored, or the first status other than SHMC_STALE;
 * *stale (may be NULL) is increased by the number of lost races. */
shmc_status tu_cas_incr(shmc_t *c, const char *key, uint64_t *stale);

/* ---- process-shared memory, barrier, error reports ---- */
void *tu_shared_alloc(size_t n);      /* zeroed MAP_SHARED|MAP_ANONYMOUS */
void tu_shared_free(void *p, size_t n);

typedef struct tu_barrier {
    pthread_barrier_t b;
} tu_barrier;
void tu_barrier_init(tu_barrier *b, unsigned count);
void tu_barrier_wait(tu_barrier *b);
void tu_barrier_destroy(tu_barrier *b);

/* A report block that lives in shared memory. */
typedef struct tu_report {
    _Atomic int stop;                /* set by the parent to stop workers */
    _Atomic uint64_t errors;         /* validation/API errors seen by children */
    _Atomic uint64_t ops;            /* operations done (progress) */
    _Atomic uint64_t hits;           /* validated hits */
    _Atomic uint64_t enomem;         /* SHMC_ENOMEM seen by children */
    _Atomic int msg_taken;
    _Atomic int msg_ready;
    char first_error[512];
} tu_report;
tu_report *tu_report_new(void);
void tu_report_free(tu_report *r);
/* Counts an error and keeps the first message.  Async-signal-unsafe but
 * only called from normal code of children. */
void tu_report_error(tu_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *tu_report_msg(tu_report *r);

/* Unregisters the calling thread's robust-mutex list from the kernel, so
 * that when it exits the mutexes it holds keep naming it, without the
 * owner-died mark: a holder that "vanished" (as after damage, or in a
 * segment restored with its locks held).  0, or -1 with errno. */
int tu_forget_robust_list(void);

/* ---- fork / wait ---- */
/* Forks; the child arms alarm(TU_CHILD_ALARM_S), runs fn(arg) and _exit()s
 * with its return value.  Returns the child's pid (or -1). */
pid_t tu_fork(int (*fn)(void *), void *arg);

/* Waits for `pid` at most timeout_ms.  Returns its exit status (0..255),
 * TU_SIGNALLED + signal number if a signal killed it, or TU_TIMEDOUT after
 * SIGKILLing and reaping it when it did not end in time. */
#define TU_SIGNALLED 1000
#define TU_TIMEDOUT  2000
int tu_wait(pid_t pid, unsigned timeout_ms);
/* Waits until `pid` is stopped (WUNTRACED).  true when stopped in time. */
bool tu_wait_stopped(pid_t pid, unsigned timeout_ms);
/* "exit 3" / "killed by signal 9" / "timed out" */
const char *tu_status_str(int st, char *buf, size_t n);

/* ---- cache helpers ---- */
/* Item size a value of vlen with a klen key, written by tu_set_value (with
 * flags, no TTL), takes in storage (lib/item.h: a 12-byte narrow or 16-byte
 * wide header, 4 bytes of flags, key, value, rounded to 8). */
static inline uint64_t tu_item_bytes(size_t klen, size_t vlen)
{
    uint64_t hdr = (klen > 255 || vlen > 65535 ? 16u : 12u) + 4u;
    return (hdr + (uint64_t)klen + vlen + 7u) & ~7ull;
}

/* Returned by tu_get_check when shmc_get said SHMC_OK but the value does
 * not validate (not a shmc_status). */
#define TU_INVALID ((shmc_status)SHMC_STATUS_COUNT_)

/* Gets key_id under `prefix` and validates it.  Returns SHMC_OK (valid),
 * SHMC_NOT_FOUND, the shmc error, or TU_INVALID with `why` filled when the
 * value returned does not validate. */
shmc_status tu_get_check(shmc_t *c, const char *prefix, uint32_t key_id, void *buf,
                         size_t buflen, char *why, size_t whylen);
/* Sets key_id under `prefix` to a value of length len. */
shmc_status tu_set_value(shmc_t *c, const char *prefix, uint32_t key_id, void *buf, size_t len,
                         uint32_t writer, uint32_t seq, uint64_t ttl_ms);

#endif
