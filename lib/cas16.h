/*
 * cas16.h — the one 16-byte compare-and-swap of lib/, on a 16-byte aligned
 * pair of 64-bit words: a counter's {value, token} cell (index.h) and a
 * segment's {live, life} (layout.h).  Header-only, so that a test can aim at
 * it directly (test_threads).
 *
 * On x86-64 it is written as the instruction.  The compiler would emit the
 * same `lock cmpxchg16b` for the builtin (with -mcx16, which meson checks
 * and adds), but a sanitizer runtime may take the builtin over: gcc 12's
 * ThreadSanitizer runs every 16-byte atomic under a spin lock of its own
 * process, as a read and a plain store.  That is atomic neither against other
 * processes nor against the 8-byte atomics that act on one word of a pair
 * (seg_inc_live's add on `live`, which seg_dec_live_if CASes together with
 * the segment's life).  Under TSan an add that landed between the two was
 * lost, a live count read low, and an eviction retired a segment the index
 * still named (test_threads, about one run in ten).  On x86 every locked
 * access to one cache line is serialised, whatever its width.
 */
#ifndef SHMC_CAS16_H
#define SHMC_CAS16_H

#include <stdint.h>

typedef unsigned __int128 u128;

/* Compares the pair at p (16-byte aligned) with `expect` and, if equal,
 * stores `want`, as one atomic step and a full barrier.  Returns the pair as
 * it was (== expect iff the store happened).  Any context. */
static inline u128 cas16(u128 *p, u128 expect, u128 want)
{
#if defined(__x86_64__)
    uint64_t lo = (uint64_t)expect, hi = (uint64_t)(expect >> 64);
    __asm__ __volatile__("lock cmpxchg16b %0"
                         : "+m"(*p), "+a"(lo), "+d"(hi)
                         : "b"((uint64_t)want), "c"((uint64_t)(want >> 64))
                         : "memory", "cc");
    return ((u128)hi << 64) | lo;
#else
    return __sync_val_compare_and_swap(p, expect, want);
#endif
}

#endif
