/*
 * peer_client.h — minimal blocking clients for the benchmark's peers:
 * memcached (text protocol) and Redis (RESP2), over a unix socket.
 *
 * One connection per process, one request per round trip: a call writes its
 * request and reads the whole reply before returning, which is what a web
 * worker using a synchronous client does.  The only batched paths are the
 * explicit pipelined preload helpers (mc_set_pipelined / rd_pipe_*), used to
 * fill a server before a measurement, never inside one.
 *
 * Written for the benchmark only: no reconnects, no timeouts; every function
 * returns a negative value on an I/O or protocol error and leaves the
 * connection unusable.
 */
#ifndef SHMC_BENCH_PEER_CLIENT_H
#define SHMC_BENCH_PEER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct pconn {
    int fd;
    char *rbuf;          /* read buffer: bytes [rpos, rlen) are unread */
    size_t rcap, rpos, rlen;
    char *wbuf;          /* write buffer: bytes [0, wlen) are unsent */
    size_t wcap, wlen;
} pconn;

/* Connects to the unix socket `path`; retries for up to wait_ms while the
 * socket does not accept yet (a server that is starting).  0 or -1. */
int pc_connect_unix(pconn *pc, const char *path, unsigned wait_ms);
void pc_close(pconn *pc);

/* Queues raw protocol bytes for a pipelined preload; sends them once enough
 * are queued (mc_sync / rd_pipe_drain send the rest).  0 or -1. */
int pc_queue(pconn *pc, const void *p, size_t n);

/* ---- memcached (text protocol) ---- */

enum { MC_STORED = 0, MC_NOT_STORED, MC_EXISTS, MC_NOT_FOUND };

/* get (cas == NULL) or gets (cas != NULL).  1 = hit (value copied when it
 * fits in buflen, *vlen = its length either way), 0 = miss, -1 = error. */
int mc_get(pconn *pc, const void *key, size_t klen, void *buf, size_t buflen, size_t *vlen,
           uint64_t *cas);

/* cmd is "set", "add", "replace" or "cas" (then cas_unique is used).
 * Returns MC_STORED, MC_NOT_STORED, MC_EXISTS, MC_NOT_FOUND or -1. */
int mc_store(pconn *pc, const char *cmd, const void *key, size_t klen, const void *val,
             size_t vlen, uint32_t flags, uint32_t exptime, uint64_t cas_unique);

/* 1 = deleted, 0 = not found, -1 = error. */
int mc_delete(pconn *pc, const void *key, size_t klen);

/* flush_all: 0 or -1. */
int mc_flush_all(pconn *pc);

/* Reads one counter of `stats` (group NULL) or `stats <group>`: 0 (found),
 * 1 (no such stat), -1 (error). */
int mc_stat(pconn *pc, const char *group, const char *name, uint64_t *out);

/* Queues "set ... noreply" without waiting (pipelined preload); the buffer is
 * sent when it grows large.  mc_sync sends what is queued and waits for the
 * server to have processed all of it.  0 or -1. */
int mc_set_pipelined(pconn *pc, const void *key, size_t klen, const void *val, size_t vlen,
                     uint32_t exptime);
int mc_sync(pconn *pc);

/* ---- Redis (RESP2) ---- */

enum {
    RD_STATUS = '+',
    RD_ERROR = '-',
    RD_INT = ':',
    RD_BULK = '$',
    RD_ARRAY = '*',
    RD_NIL = 'n',     /* $-1 or *-1 */
};

typedef struct rreply {
    int type;          /* RD_* */
    long long integer; /* RD_INT: the value; RD_ARRAY: the element count */
    size_t len;        /* RD_STATUS/RD_ERROR/RD_BULK: the string's length */
    /* The string (or, for an array, its first element if that is a string)
     * is copied into the caller's buffer when it fits; copied says so. */
    int copied;
} rreply;

/* Queues one command (argc arguments given as pointer + length). 0 or -1. */
int rd_append(pconn *pc, int argc, const void *const *argv, const size_t *lens);

/* Sends what is queued. 0 or -1. */
int rd_flush(pconn *pc);

/* Reads one reply; strings are copied into buf[0..cap) when they fit.
 * 0 or -1. */
int rd_read(pconn *pc, rreply *r, void *buf, size_t cap);

/* One round trip: queue, send, read. 0 or -1 (a Redis error reply is not a
 * failure here: r->type == RD_ERROR). */
int rd_cmd(pconn *pc, rreply *r, void *buf, size_t cap, int argc, const void *const *argv,
           const size_t *lens);

/* Convenience for NUL-terminated arguments: rd_cmds(pc, r, buf, cap, "SET", "k", "v", NULL). */
int rd_cmds(pconn *pc, rreply *r, void *buf, size_t cap, ...);

/* Pipelined preload: queue commands with rd_append, then rd_pipe_drain reads
 * n replies and counts those that are errors.  Returns the error count or
 * -1. */
long rd_pipe_drain(pconn *pc, unsigned n);

#endif
