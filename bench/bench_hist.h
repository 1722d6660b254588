/*
 * bench_hist.h — a log-linear latency histogram (HDR-like) for the
 * comparison benchmark.
 *
 * Values are nanoseconds.  0..63 ns have one bucket each; above that every
 * power of two is split into 32 buckets, so a bucket spans at most 1/32 of
 * its value (about 3 % precision) up to 2^64 ns.  Each worker process fills
 * its own histogram in shared memory and the parent merges them; the exact
 * maximum is kept beside the buckets.  A percentile is reported as the upper
 * bound of the bucket it falls in (never above the exact maximum).
 */
#ifndef SHMC_BENCH_HIST_H
#define SHMC_BENCH_HIST_H

#include <stdint.h>
#include <string.h>

#define HIST_LINEAR  64u                      /* values 0..63 exactly */
#define HIST_SUB     32u                      /* buckets per power of two above */
#define HIST_BUCKETS (HIST_LINEAR + 58u * HIST_SUB)

typedef struct hist {
    uint64_t count, max, sum;
    uint64_t b[HIST_BUCKETS];
} hist;

static inline unsigned hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);          /* m >= 6 */
    return HIST_LINEAR + (m - 6u) * HIST_SUB + (unsigned)((v >> (m - 5u)) - HIST_SUB);
}

/* The largest value that falls in bucket i. */
static inline uint64_t hist_upper(unsigned i)
{
    if (i < HIST_LINEAR)
        return i;
    unsigned m = (i - HIST_LINEAR) / HIST_SUB + 6u;
    uint64_t top = (i - HIST_LINEAR) % HIST_SUB + HIST_SUB;   /* 32..63 */
    if (m == 63u && top == 63u)
        return UINT64_MAX;
    return ((top + 1u) << (m - 5u)) - 1u;
}

static inline void hist_add(hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static inline void hist_merge(hist *dst, const hist *src)
{
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
}

/* The q-quantile (0 < q <= 1); 0 for an empty histogram. */
static inline uint64_t hist_quantile(const hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

#endif
