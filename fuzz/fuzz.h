/*
 * fuzz.h — helpers shared by the fuzz targets: an input reader that never
 * runs out (missing bytes read as 0, so every prefix of an input is itself
 * a valid input), a check that aborts with a message (libFuzzer and the
 * standalone driver both report an abort as a failure, with the input), and
 * the status sets the public header documents.
 *
 * Each target defines LLVMFuzzerTestOneInput (libFuzzer's entry point); the
 * same source builds into a real libFuzzer binary (clang, -Dfuzz=true) and,
 * linked with standalone.c, into an ordinary test program (any compiler).
 */
#ifndef SHMC_FUZZ_H
#define SHMC_FUZZ_H

#include "shmcache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- input reader ---- */
typedef struct fz_in {
    const uint8_t *p;
    size_t n, pos;
} fz_in;

static inline void fz_init(fz_in *in, const uint8_t *p, size_t n)
{
    in->p = p;
    in->n = n;
    in->pos = 0;
}

static inline bool fz_more(const fz_in *in) { return in->pos < in->n; }
static inline size_t fz_left(const fz_in *in) { return in->n - in->pos; }

static inline uint8_t fz_u8(fz_in *in) { return in->pos < in->n ? in->p[in->pos++] : 0; }

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t v = fz_u8(in);
    return (uint16_t)(v | (uint16_t)fz_u8(in) << 8);
}

static inline uint32_t fz_u24(fz_in *in)
{
    uint32_t v = fz_u16(in);
    return v | (uint32_t)fz_u8(in) << 16;
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t v = fz_u16(in);
    return v | (uint32_t)fz_u16(in) << 16;
}

static inline uint64_t fz_u64(fz_in *in)
{
    uint64_t v = fz_u32(in);
    return v | (uint64_t)fz_u32(in) << 32;
}

/* Up to `max` bytes of the input, copied to out; returns how many. */
static inline size_t fz_bytes(fz_in *in, void *out, size_t max)
{
    size_t k = fz_left(in) < max ? fz_left(in) : max;
    memcpy(out, in->p + in->pos, k);
    in->pos += k;
    return k;
}

/* ---- checks ---- */
#define FZ_CHECK(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
            abort(); \
        } \
    } while (0)

#define FZ_BIT(s) (1ull << (unsigned)(s))

/* A status the call is documented to return (mask of FZ_BIT(status)). */
static inline void fz_expect(const char *what, shmc_status got, uint64_t allowed)
{
    if ((unsigned)got < 64 && (allowed & FZ_BIT(got)))
        return;
    fprintf(stderr, "%s returned %d (%s), which its documentation does not allow\n", what,
            (int)got, shmc_strerror(got));
    abort();
}

/* Outcomes any operation may have on a segment whose shared memory is
 * damaged: a failed validation, a system call that refused a damaged mutex,
 * a bounded wait that ran out, a slot table that looks full of live
 * participants, or storage that looks pinned by stalled readers. */
#define FZ_DAMAGE (FZ_BIT(SHMC_ECORRUPT) | FZ_BIT(SHMC_ESYS) | FZ_BIT(SHMC_ETIMEDOUT) | \
                   FZ_BIT(SHMC_ENOSLOTS) | FZ_BIT(SHMC_ENOMEM))

#endif
