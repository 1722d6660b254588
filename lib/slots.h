/*
 * slots.h — participant slots (slots.c).
 *
 * Owns: the slot array of the segment (shmc_slot: mutex, gen, pid/tid,
 * epoch word's reset on take/reap) and each thread's tslot record.
 * Invariants:
 *  - A slot's mutex is held by its owning thread for the slot's whole life;
 *    EBUSY on trylock = a live owner, EOWNERDEAD = the owner died.
 *  - gen is bumped on every take and every reap, so an owner id
 *    (words.h: owner_make(gen, idx)) of a former tenure reads as dead.
 *  - A reaped slot's reader epoch is 0 and its lock-table holds are freed
 *    (through c->on_reap) before the slot can be taken again.
 * Calls only util.c and handle.c; the lock table is reached through the
 * hooks in struct shmc, never by a call.
 */
#ifndef SHMC_SLOTS_H
#define SHMC_SLOTS_H

#include "handle.h"

/* The calling thread's participant record on c (taking a slot on first
 * use).  Any context; SHMC_ENOSLOTS when every slot is live.
 * The fast path is inline: the record this thread used last, if it is for
 * c and was taken in this process (a fork child's records are its
 * parent's).  Initial-exec TLS: the default model for a shared library
 * calls __tls_get_addr on every access (a twentieth of a get). */
extern HIDDEN __thread tslot *shmc__tl_last __attribute__((tls_model("initial-exec")));
extern HIDDEN _Atomic uint64_t shmc__fork_gen;
HIDDEN shmc_status slot_get_slow(struct shmc *c, tslot **out);
static inline shmc_status slot_get(struct shmc *c, tslot **out)
{
    tslot *t = shmc__tl_last;
    if (caa_likely(t && t->c == c &&
                   t->fork_gen == atomic_load_explicit(&shmc__fork_gen, memory_order_relaxed))) {
        *out = t;
        return SHMC_OK;
    }
    return slot_get_slow(c, out);
}
/* slot_get for calls that open read sections of their own (whole-cache
 * walks): SHMC_EINVAL when called from inside one (a callback). */
HIDDEN shmc_status slot_get_outside(struct shmc *c, tslot **out);
/* Gives the thread's slot up (thread exit, detach): releases its lock-table
 * holds (c->on_release), clears its epoch, unlocks it.  Outside any read
 * section. */
HIDDEN void slot_release(tslot *t);
/* pthread key destructor of c->tkey: slot_release at thread exit. */
HIDDEN void tslot_destructor(void *p);
/* Whether slot i is owned by a live thread; reaps it if its owner died.
 * Any context (a trylock, never waits). */
HIDDEN bool slot_check_live(struct shmc *c, uint32_t i);
/* slot_check_live that also looks whether the owner thread named in the
 * slot's mutex still exists (a syscall): for the rare paths that ask about a
 * slot that holds things back for long (a stalled reader) and for
 * introspection, never for every scan. */
HIDDEN bool slot_check_live_thorough(struct shmc *c, uint32_t i);
/* Owner id of a participant (words.h: owner_make). */
HIDDEN uint64_t slot_owner(const tslot *t);
/* Whether the tenure an owner id names is still live (reaping if dead). */
HIDDEN bool owner_is_live(struct shmc *c, uint64_t owner);

#endif
