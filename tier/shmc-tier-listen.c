/*
 * shmc-tier-listen — the host's Redis invalidation listener as a sidecar.
 *
 *   shmc-tier-listen CACHE REDIS PREFIX [LEASE_MS]
 *
 * CACHE is the host's shmcache cache (opened or created with defaults),
 * REDIS a unix socket path (starting with '/') or HOST:PORT, PREFIX the
 * tracked prefix ("" for every key).  It takes part in the same election as
 * the library's listener threads (workers may then open their tiers with
 * SHMC_TIER_NO_LISTENER), and runs until SIGINT or SIGTERM.
 * Exit status: 0 when stopped by a signal, 2 on bad arguments, 1 on errors.
 */
#include "shmcache_tier.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s CACHE REDIS(/path.sock|host:port) PREFIX [LEASE_MS]\n",
                argv[0]);
        return 2;
    }
    shmc_tier_options o;
    memset(&o, 0, sizeof o);
    char host[256];
    if (argv[2][0] == '/') {
        o.redis_unix = argv[2];
    } else {
        const char *colon = strrchr(argv[2], ':');
        size_t hl = colon ? (size_t)(colon - argv[2]) : strlen(argv[2]);
        if (hl == 0 || hl >= sizeof host) {
            fprintf(stderr, "%s: bad Redis address %s\n", argv[0], argv[2]);
            return 2;
        }
        memcpy(host, argv[2], hl);
        host[hl] = 0;
        o.redis_host = host;
        o.redis_port = colon ? atoi(colon + 1) : 6379;
    }
    o.prefix = argv[3];
    o.prefix_len = strlen(argv[3]);
    if (argc == 5)
        o.lease_ms = strtoull(argv[4], NULL, 10);
    o.flags = SHMC_TIER_NO_LISTENER; /* this thread listens, not a library thread */
    shmc_t *c = NULL;
    shmc_status st = shmc_open(argv[1], NULL, &c);
    if (st != SHMC_OK) {
        fprintf(stderr, "%s: open %s: %s\n", argv[0], argv[1], shmc_strerror(st));
        return 1;
    }
    shmc_tier_t *t = NULL;
    st = shmc_tier_open(c, &o, &t);
    if (st != SHMC_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], shmc_tier_strerror(st));
        shmc_close(c);
        return st == SHMC_EINVAL || st == SHMC_EKEYLEN ? 2 : 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    st = shmc_tier_listen(t, &stop_flag);
    shmc_tier_close(t);
    shmc_close(c);
    return st == SHMC_OK ? 0 : 1;
}
