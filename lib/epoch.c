/*
 * epoch.c — cross-process RCU: read-side sections and grace-period detection.
 *
 * A reader publishes the global epoch it saw in its own slot, then reads.
 * Whoever unlinks memory bumps the global epoch to t and may reuse the memory
 * once every live reader shows an epoch >= t (or none).  The store/load
 * ordering a reader needs (slot store before index loads) comes either from a
 * seq_cst fence on every entry, or — when the segment runs in membarrier mode
 * and this process registered — from one membarrier(GLOBAL_EXPEDITED) that
 * the reclaimer issues per grace period, leaving readers with a compiler
 * barrier only.  Readers of a process whose registration failed use fences.
 */
#include "epoch.h"
#include "slots.h"

#include <fcntl.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_membarrier(int cmd)
{
    return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

uint32_t membarrier_supported(void)
{
    int q = sys_membarrier(MEMBARRIER_CMD_QUERY);
    if (q < 0 || !(q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
        !(q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
        return 0;
    return sys_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0 ? 1 : 0;
}

void membarrier_setup(struct shmc *c)
{
    c->seg_membarrier = c->hdr->membarrier != 0;
    c->membarrier = c->seg_membarrier &&
                    sys_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
}

void read_enter(struct shmc *c, tslot *t)
{
    if (t->depth++)
        return;
    uint64_t e = atomic_load_explicit(&c->hdr->epoch, memory_order_acquire);
    atomic_store_explicit(&t->s->epoch, e, memory_order_relaxed);
    if (caa_likely(c->membarrier))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

void read_exit(struct shmc *c, tslot *t)
{
    (void)c;
    if (--t->depth)
        return;
    atomic_store_explicit(&t->s->epoch, 0, memory_order_release);
}

bool heavy_barrier(struct shmc *c)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (c->seg_membarrier && sys_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0)
        return false;
    atomic_thread_fence(memory_order_seq_cst);
    return true;
}

uint64_t min_reader_epoch(struct shmc *c, const tslot *self)
{
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < c->nslots; i++) {
        if (self && i == self->idx)
            continue;
        uint64_t e = atomic_load_explicit(&c->slots[i].epoch, memory_order_acquire);
        if (e == 0 || e >= min)
            continue;
        /* Only an epoch that holds us back is worth a liveness check. */
        if (!slot_check_live(c, i))
            continue;
        e = atomic_load_explicit(&c->slots[i].epoch, memory_order_acquire);
        if (e != 0 && e < min)
            min = e;
    }
    return min;
}

/* The scheduler state of a participant's thread, from /proc: 'R', 'S',
 * 'D', 'T' (stopped), 't' (stopped by a debugger), ..., or 0 when it
 * cannot be read (gone, or another PID namespace).  pid and tid come from
 * shared memory and are only used to name a /proc file. */
static char thread_state(uint32_t pid, uint32_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%u/task/%u/stat", pid, tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (!p || p[1] != ' ' || !p[2])
        return 0;
    return p[2];
}

bool readers_stalled(struct shmc *c, const tslot *self, uint64_t horizon)
{
    for (uint32_t i = 0; i < c->nslots; i++) {
        if (self && i == self->idx)
            continue;
        uint64_t e = atomic_load_explicit(&c->slots[i].epoch, memory_order_acquire);
        if (e == 0 || e > horizon || !slot_check_live_thorough(c, i))
            continue;
        char st = thread_state(atomic_load_explicit(&c->slots[i].pid, memory_order_relaxed),
                               atomic_load_explicit(&c->slots[i].tid, memory_order_relaxed));
        if (st == 0 || st == 'T' || st == 't')
            return true;
    }
    return false;
}

#ifdef SHMC_TESTING
shmc_status shmc__test_read_enter(struct shmc *c)
{
    tslot *t;
    shmc_status s = slot_get(c, &t);
    if (s == SHMC_OK)
        read_enter(c, t);
    return s;
}

void shmc__test_read_exit(struct shmc *c)
{
    tslot *t;
    if (slot_get(c, &t) == SHMC_OK && t->depth)
        read_exit(c, t);
}
#endif
