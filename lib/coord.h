/*
 * coord.h — named locks and singleflight (coord.c) on one table of entries.
 *
 * Owns: the lock/flight table (shmc_centry), hdr->token_hi and
 * hdr->coord_mtx, and the hold records of every slot (shmc_hold).
 * Invariants:
 *  - Ownership of an entry changes only by CAS on its state word
 *    (words.h: st_*); its holder keeps the named hold record's mutex locked
 *    while it owns the entry, so waiters sleep on it and the kernel wakes
 *    them on release and on death.
 *  - A hold record names its entry before any CAS can make it an owner or
 *    want-er, so reaping a dead slot finds and frees everything it held.
 *  - The tokens of one name strictly increase, whatever entries it used.
 * Calls cache.c, slots.c and util.c.  Nothing in lib/ below it calls it:
 * slots.c reaches it through the hooks coord_bind installs.
 */
#ifndef SHMC_COORD_H
#define SHMC_COORD_H

#include "handle.h"

/* Installs the lock table's hooks in the handle (c->on_reap, c->on_release):
 * at open, before the handle is used. */
HIDDEN void coord_bind(struct shmc *c);
/* How many entries slot's hold records own now (introspection).  Any context. */
HIDDEN uint32_t coord_holds(struct shmc *c, uint32_t slot);

#endif
