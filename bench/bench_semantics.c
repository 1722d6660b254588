/*
 * bench_semantics — atomic read-modify-write across processes, through the
 * public API: what issue-3-style workloads cost.
 *
 *   incr    P processes increment one hot counter for --seconds.
 *   cas     P processes run gets + cas retry loops on one counter.
 *   tasks   --tasks updaters x --loops successful CAS increments each, the
 *           tasks spread over P processes (each runs its share in turn):
 *           end-to-end time.
 *
 * Every run checks that the counter ends at exactly the number of successful
 * updates (no lost update).  Output: one line per run,
 *   shmcache <workload> procs=<P> ops_s=<total> retries=<n> final_ok=<0|1>
 * for bench/semantics.sh to pair with the same runs on a peer.
 */
#include "shmcache.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One per process, in shared memory: a cache line each, or the two
 * processes' `ops++` would share a line and bounce it on every operation
 * (which had cost shmcache's 2-process incr a third of its rate). */
typedef struct res {
    _Alignas(64) uint64_t ops, retries, ns, errors;
} res;

static double seconds = 2.0;
static unsigned tasks = 500, loops = 1000;
static char name[64];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t parse(const char *b, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(b[i] - '0');
    return v;
}

/* One successful gets + cas increment; returns the retries it took. */
static uint64_t cas_increment(shmc_t *c, res *r)
{
    uint64_t retries = 0;
    for (;;) {
        char buf[32];
        size_t n;
        uint64_t tok;
        if (shmc_gets(c, "ctr", 3, buf, sizeof buf, &n, NULL, &tok) != SHMC_OK) {
            r->errors++;
            return retries;
        }
        int len = snprintf(buf, sizeof buf, "%" PRIu64, parse(buf, n) + 1);
        shmc_status s = shmc_cas(c, "ctr", 3, buf, (size_t)len, 0, 0, tok, NULL);
        if (s == SHMC_OK)
            return retries;
        if (s != SHMC_STALE) {
            r->errors++;
            return retries;
        }
        retries++;
    }
}

static void child(shmc_t *c, const char *wl, unsigned idx, unsigned procs, int start_fd, res *r)
{
    char b;
    if (read(start_fd, &b, 1) < 0)
        r->errors++;
    uint64_t t0 = now_ns();
    if (strcmp(wl, "tasks") == 0) {
        for (unsigned task = idx; task < tasks; task += procs)
            for (unsigned i = 0; i < loops; i++) {
                r->retries += cas_increment(c, r);
                r->ops++;
            }
    } else {
        uint64_t end = t0 + (uint64_t)(seconds * 1e9);
        do {
            for (int i = 0; i < 256; i++) {
                if (wl[0] == 'i') {
                    uint64_t v;
                    if (shmc_incr(c, "ctr", 3, 1, 1, 0, SHMC_INCR_CREATE, &v) != SHMC_OK)
                        r->errors++;
                } else {
                    r->retries += cas_increment(c, r);
                }
                r->ops++;
            }
        } while (now_ns() < end);
    }
    r->ns = now_ns() - t0;
}

static int run(shmc_t *c, const char *wl, unsigned procs)
{
    if (shmc_set(c, "ctr", 3, "0", 1, 0, 0) != SHMC_OK)
        return 1;
    res *rs = mmap(NULL, sizeof(res) * procs, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rs == MAP_FAILED)
        return 1;
    memset(rs, 0, sizeof(res) * procs);
    int go[2];
    if (pipe(go) != 0)
        return 1;
    pid_t pids[64];
    for (unsigned p = 0; p < procs; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            close(go[1]);
            child(c, wl, p, procs, go[0], &rs[p]);
            _exit(rs[p].errors ? 1 : 0);
        }
    }
    uint64_t t0 = now_ns();
    close(go[0]);
    close(go[1]);
    int bad = 0;
    for (unsigned p = 0; p < procs; p++) {
        int st;
        waitpid(pids[p], &st, 0);
        bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    uint64_t wall = now_ns() - t0;
    uint64_t ops = 0, retries = 0;
    double ops_s = 0;
    for (unsigned p = 0; p < procs; p++) {
        ops += rs[p].ops;
        retries += rs[p].retries;
        ops_s += rs[p].ns ? (double)rs[p].ops * 1e9 / (double)rs[p].ns : 0;
    }
    char buf[32];
    size_t n = 0;
    uint64_t final = 0;
    if (shmc_get(c, "ctr", 3, buf, sizeof buf, &n, NULL) == SHMC_OK)
        final = parse(buf, n);
    /* incr creates with initial 1 = its first increment, so all count */
    int final_ok = final == ops;
    if (strcmp(wl, "tasks") == 0)
        ops_s = (double)ops * 1e9 / (double)wall;
    printf("shmcache %s procs=%u ops_s=%.0f retries=%" PRIu64 " final_ok=%d wall_ms=%.1f\n", wl,
           procs, ops_s, retries, final_ok, (double)wall / 1e6);
    fflush(stdout);
    munmap(rs, sizeof(res) * procs);
    return bad || !final_ok;
}

int main(int argc, char **argv)
{
    const char *wl = "incr";
    unsigned procs = 1;
    int o;
    while ((o = getopt(argc, argv, "w:p:s:t:l:")) != -1) {
        switch (o) {
        case 'w': wl = optarg; break;
        case 'p': procs = (unsigned)atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 't': tasks = (unsigned)atoi(optarg); break;
        case 'l': loops = (unsigned)atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-w incr|cas|tasks] [-p procs] [-s seconds] "
                            "[-t tasks] [-l loops]\n", argv[0]);
            return 2;
        }
    }
    if (procs < 1 || procs > 64 || (strcmp(wl, "incr") && strcmp(wl, "cas") && strcmp(wl, "tasks"))) {
        fprintf(stderr, "bench_semantics: bad arguments\n");
        return 2;
    }
    snprintf(name, sizeof name, "shmcache-bsem-%ld", (long)getpid());
    shmc_options opt = {.size = 64u << 20};
    shmc_t *c;
    shmc_status s = shmc_open(name, &opt, &c);
    if (s != SHMC_OK) {
        fprintf(stderr, "bench_semantics: open: %s\n", shmc_strerror(s));
        return 1;
    }
    int rc = run(c, wl, procs);
    shmc_close(c);
    shmc_destroy(name);
    return rc;
}
