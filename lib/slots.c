/*
 * slots.c — per-thread participant slots.
 *
 * A thread takes a slot in the segment on its first operation by trylocking
 * the slot's robust mutex, and holds that mutex until the thread exits or
 * detaches.  Liveness is therefore a trylock away: EBUSY means a live owner,
 * EOWNERDEAD means the kernel saw the owner die.  A dead slot is "reaped":
 * its reader epoch is cleared so reclamation can go on.  Storage segments a
 * dead participant held are taken over lazily by whoever scans them (see
 * alloc.c), keyed by the owner id that packs the slot index and generation.
 */
#include "slots.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic uint64_t shmc__fork_gen = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
__thread tslot *shmc__tl_last;

static void on_fork_child(void)
{
    /* The child owns none of the parent's slot mutexes: forget them all. */
    atomic_fetch_add(&shmc__fork_gen, 1);
    shmc__tl_last = NULL;
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

uint64_t slot_owner(const tslot *t)
{
    return owner_make(t->gen, t->idx);
}

static void reap_slot(struct shmc *c, uint32_t i)
{
    atomic_store_explicit(&c->slots[i].epoch, 0, memory_order_release);
    atomic_store_explicit(&c->slots[i].wseg, 0, memory_order_release); /* unpins its segment */
    c->on_reap(c, i); /* frees its lock-table holds (coord.c) */
    atomic_fetch_add_explicit(&c->hdr->slots_reaped, 1, memory_order_relaxed);
}

bool slot_check_live(struct shmc *c, uint32_t i)
{
    shmc_slot *s = &c->slots[i];
    int r = pthread_mutex_trylock(&s->mtx);
    if (r == EBUSY)
        return true;
    if (r == EOWNERDEAD) {
        reap_slot(c, i);
        /* Bump the generation so owner ids of the dead holder read as dead. */
        atomic_fetch_add(&s->gen, 1);
        pthread_mutex_consistent(&s->mtx);
        pthread_mutex_unlock(&s->mtx);
        return false;
    }
    if (r == 0) {
        /* Free slot: a free slot never has a reader epoch. */
        atomic_store_explicit(&s->epoch, 0, memory_order_relaxed);
        pthread_mutex_unlock(&s->mtx);
    }
    return false;
}

bool slot_check_live_thorough(struct shmc *c, uint32_t i)
{
    if (!slot_check_live(c, i))
        return false;
    /* EBUSY: a live owner, or (after damage, or in a segment copied or
     * restored with its slots held) a word naming a thread that is gone and
     * that the kernel will never mark: mark it, and ask again. */
    return !mutex_mark_vanished(&c->slots[i].mtx) || slot_check_live(c, i);
}

bool owner_is_live(struct shmc *c, uint64_t owner)
{
    uint64_t idx1 = slot1_of(owner);
    if (idx1 == 0 || idx1 > c->nslots)
        return false;
    uint32_t i = (uint32_t)(idx1 - 1);
    if (owner_make(atomic_load(&c->slots[i].gen), i) != owner)
        return false; /* slot was released or retaken since */
    return slot_check_live(c, i);
}

static shmc_status slot_acquire(struct shmc *c, tslot *t)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    /* Round-robin starts: consecutive participants get consecutive slots,
     * and so different append heads (slot % heads). */
    uint32_t start = (uint32_t)(atomic_fetch_add_explicit(&c->hdr->slot_hint, 1,
                                                          memory_order_relaxed) % c->nslots);
    /* Two passes: the second, when every slot looked taken, first marks
     * the slots whose owner thread vanished without the kernel's mark
     * (damage, a segment restored with its slots held), so that they are
     * reaped rather than lost for good. */
    for (uint32_t k = 0; k < 2 * c->nslots; k++) {
        uint32_t i = (start + k) % c->nslots;
        shmc_slot *s = &c->slots[i];
        if (k >= c->nslots)
            mutex_mark_vanished(&s->mtx);
        int r = pthread_mutex_trylock(&s->mtx);
        if (r == EOWNERDEAD) {
            reap_slot(c, i);
            pthread_mutex_consistent(&s->mtx);
        } else if (r != 0) {
            continue;
        }
        t->idx = i;
        t->s = s;
        t->gen = atomic_fetch_add(&s->gen, 1) + 1;
        atomic_store_explicit(&s->epoch, 0, memory_order_relaxed);
        atomic_store_explicit(&s->wseg, 0, memory_order_relaxed);
        atomic_store_explicit(&s->pid, (uint32_t)getpid(), memory_order_relaxed);
        atomic_store_explicit(&s->tid, (uint32_t)tid, memory_order_relaxed);
        return SHMC_OK;
    }
    return SHMC_ENOSLOTS;
}

shmc_status slot_get_slow(struct shmc *c, tslot **out)
{
    uint64_t fg = atomic_load_explicit(&shmc__fork_gen, memory_order_relaxed);
    tslot *t = pthread_getspecific(c->tkey);
    if (t && t->fork_gen == fg) {
        shmc__tl_last = t;
        *out = t;
        return SHMC_OK;
    }
    pthread_once(&atfork_once, register_atfork);
    handle_prefault(c); /* a child that inherited a SHMC_OPEN_PREFAULT handle */
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return SHMC_ESYS;
        atomic_fetch_add(&c->refs, 1);
    }
    /* else: a record inherited across fork; the slot it names is the parent's. */
    t->c = c;
    t->fork_gen = fg;
    t->depth = 0;
    t->hold_mask = 0; /* an inherited record's holds are the parent thread's */
    shmc_status st = slot_acquire(c, t);
    if (st != SHMC_OK) {
        pthread_setspecific(c->tkey, NULL);
        free(t->stall_seen);
        free(t);
        handle_unref(c);
        return st;
    }
    pthread_setspecific(c->tkey, t);
    shmc__tl_last = t;
    *out = t;
    return SHMC_OK;
}

shmc_status slot_get_outside(struct shmc *c, tslot **out)
{
    shmc_status st = slot_get(c, out);
    if (st == SHMC_OK && (*out)->depth)
        return SHMC_EINVAL;
    return st;
}

void slot_release(tslot *t)
{
    struct shmc *c = t->c;
    if (shmc__tl_last == t)
        shmc__tl_last = NULL;
    if (t->fork_gen == atomic_load(&shmc__fork_gen)) {
        c->on_release(c, t); /* its locks and fills (coord.c) */
        atomic_store_explicit(&t->s->epoch, 0, memory_order_release);
        atomic_store_explicit(&t->s->wseg, 0, memory_order_release);
        pthread_mutex_unlock(&t->s->mtx);
    }
    free(t->stall_seen);
    free(t);
    handle_unref(c);
}

void tslot_destructor(void *p)
{
    if (p)
        slot_release(p);
}

void shmc_thread_detach(shmc_t *c)
{
    if (!c)
        return;
    tslot *t = pthread_getspecific(c->tkey);
    if (!t)
        return;
    pthread_setspecific(c->tkey, NULL);
    slot_release(t);
}

