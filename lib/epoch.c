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
 *
 * Neutralisation: a section that holds reclamation back for EJECT_MS (a
 * stopped or descheduled participant) is ejected by one CAS on its epoch
 * word (e -> e | EPOCH_EJECTED), and grace periods are computed without it.
 * Its owner validates after every copy (read_section_valid) and retries from
 * the index, so it never returns bytes copied from memory reused under it.
 * See docs/design.md, "Reads and reclamation".
 */
#include "epoch.h"
#include "slots.h"

#include <linux/membarrier.h>
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

void read_renew(struct shmc *c, tslot *t)
{
    uint32_t depth = t->depth;
    t->depth = 1;
    read_exit(c, t);
    read_enter(c, t);
    t->depth = depth;
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
        if (e == 0 || (e & EPOCH_EJECTED) || e >= min)
            continue;
        /* Only an epoch that holds us back is worth a liveness check. */
        if (!slot_check_live(c, i))
            continue;
        e = atomic_load_explicit(&c->slots[i].epoch, memory_order_acquire);
        if (e != 0 && !(e & EPOCH_EJECTED) && e < min)
            min = e;
    }
    return min;
}

void stall_snapshot(struct shmc *c, const tslot *self, uint64_t *seen)
{
    for (uint32_t i = 0; i < c->nslots; i++)
        seen[i] = self && i == self->idx
                      ? 0
                      : atomic_load_explicit(&c->slots[i].epoch, memory_order_acquire);
}

/* A section whose epoch word is unchanged since the snapshot and below the
 * global epoch of that time has not exited nor re-entered since (a fresh
 * entry would have read a larger epoch): it has lasted at least stalled_ms.
 * The CAS fails if it exited or re-entered meanwhile, so a section is never
 * ejected for its predecessor's time.  A dead owner is reaped instead. */
uint32_t eject_stalled(struct shmc *c, tslot *self, const uint64_t *seen, uint64_t below,
                       uint64_t stalled_ms)
{
    uint32_t n = 0;
    uint64_t now = now_ms();
    for (uint32_t i = 0; i < c->nslots; i++) {
        uint64_t e = seen[i];
        if (e == 0 || (e & EPOCH_EJECTED) || e >= below || (self && i == self->idx))
            continue;
        /* The thorough check: a slot whose owner thread vanished without
         * the kernel's mark (damage, a restored segment) is reaped, not
         * ejected, so that it is also reused. */
        if (atomic_load_explicit(&c->slots[i].epoch, memory_order_relaxed) != e ||
            !slot_check_live_thorough(c, i))
            continue;
        if (!atomic_compare_exchange_strong_explicit(&c->slots[i].epoch, &e, e | EPOCH_EJECTED,
                                                     memory_order_acq_rel,
                                                     memory_order_relaxed))
            continue;
        shmc_slot *s = &c->slots[i];
        atomic_fetch_add_explicit(&s->eject_count, 1, memory_order_relaxed);
        atomic_store_explicit(&s->eject_stall_ms, stalled_ms, memory_order_relaxed);
        atomic_store_explicit(&s->eject_at_ms, now, memory_order_relaxed);
        n++;
    }
    /* The ejection is published before any reuse it allows (read_section_valid
     * pairs with this). */
    atomic_thread_fence(memory_order_seq_cst);
    if (self)
        STAT_ADD(self, ejections, n);
    return n;
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
