/*
 * segment.h — create, attach, validate, close and unlink the shm segment
 * (segment.c: shmc_open/close/peek/destroy/info of shmcache.h).
 *
 * Owns: the header (layout.h: shmc_hdr) and the segment's geometry.
 * Invariants:
 *  - A header is READY only once fully initialised; after that its
 *    geometry never changes, and an attacher re-derives it from the creation
 *    parameters and compares every field (SHMC_HDR_GEOMETRY) before use.
 *  - Only the holder of flock(LOCK_EX) initialises; every user holds LOCK_SH.
 * Calls coord.c (to bind its hooks), epoch.c (membarrier), slots.c, handle.c,
 * util.c.
 */
#ifndef SHMC_SEGMENT_H
#define SHMC_SEGMENT_H

#include "handle.h"

/* Checks a segment name and makes its shm path ("/" + name).  Any context. */
HIDDEN shmc_status validate_name(const char *name, char *path, size_t pathlen);
/* This build's layout hash (layout.h: shmc_layout_hash_of the tables). */
HIDDEN uint64_t layout_hash(void);

#endif
