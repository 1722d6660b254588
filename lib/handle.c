/*
 * handle.c — a handle's lifetime (its reference count) and prefaulting of
 * its mapping.  Calls no other lib/ file.
 */
#include "handle.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Drops one reference; the last one unmaps. */
void handle_unref(struct shmc *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    pthread_key_delete(c->tkey);
    munmap(c->base, c->size);
    close(c->fd);
    free(c->pop_bits);
    free(c);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Maps every page of the segment into this process now.  Every process
 * otherwise takes a page fault per page it touches first (a write fault per
 * 4 KiB page): with many processes writing a fresh cache that halved set
 * throughput (bench_core --prefault).  MADV_POPULATE_WRITE faults pages in
 * as writes would, without changing their contents, so it is safe while
 * others write.  Then one byte of each page is read: under a hypervisor that
 * maps a guest's pages into the process lazily (this 2-vCPU VM), the first
 * access to a page still cost 5-7 us after MADV_POPULATE_WRITE, and sets
 * over fresh pages paid it (27 items of 150 B a page); on bare metal the
 * reads cost a TLB miss each.  On kernels without MADV_POPULATE_WRITE the
 * reads alone map the pages (a read fault maps its neighbours too).  Best
 * effort: a failure costs only the faults it would have saved.  fork() does
 * not copy the page tables of a shared mapping, so a child that inherited
 * the handle does this again, on its first operation (slot_get). */
void handle_prefault(struct shmc *c)
{
    if (!c->prefault)
        return;
    int me = (int)getpid();
    int was = atomic_load_explicit(&c->prefaulted_pid, memory_order_relaxed);
    if (was == me || !atomic_compare_exchange_strong(&c->prefaulted_pid, &was, me))
        return;
    (void)madvise(c->base, c->size, MADV_POPULATE_WRITE);
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t step = pg > 0 ? (uint64_t)pg : 4096u;
    /* Relaxed atomic loads: other threads and processes may be writing. */
    for (uint64_t off = 0; off < c->size; off += step)
        (void)__atomic_load_n(c->base + off, __ATOMIC_RELAXED);
}

void handle_populate_segment(struct shmc *c, uint32_t seg)
{
    static _Atomic int unsupported;
    if (seg >= c->nsegs || atomic_load_explicit(&unsupported, memory_order_relaxed))
        return;
    uint8_t *p = c->data + ((uint64_t)seg << c->seg_shift);
    if (madvise(p, c->seg_size, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
        atomic_store_explicit(&unsupported, 1, memory_order_relaxed); /* before Linux 5.14 */
}
