/*
 * shmcache-demo — the README's walk-through: N preforked workers share one
 * cache.
 *
 * The parent opens (creating if needed) a cache with default parameters,
 * forks N workers and releases them at the same moment.  Every worker walks
 * the same key space ("user:0" .. "user:K-1") in its own shuffled order and
 * does what a web worker does with a cache: get; on a miss compute the value
 * (a deterministic function of the key plus ~2 ms of simulated work) and set
 * it with a TTL.  The value records which worker computed it, so a hit shows
 * that the result crossed a process boundary.  Each worker then reads its keys
 * once more to time warm hits.  At the end the parent prints
 * the cache statistics, how many computations the shared cache saved compared
 * with one private cache per worker, checks the segment with shmc_verify and
 * removes the cache (unless --keep).
 *
 * Only the public API (shmcache.h) is used.  Exit status: 0 on success, 1 on
 * any unexpected library error or wrong value, 2 on bad usage.
 */
#include "shmcache.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO_FLAGS      0x44454d4fu   /* "DEMO": tags the values this tool writes */
#define MAX_WORKERS     256
#define MAX_KEYS        1000000
#define WORK_NS         2000000L      /* simulated cost of one computation */

/* Per-worker results, in an anonymous shared mapping the parent reads. */
typedef struct worker_result {
    pid_t pid;
    int failed;
    uint64_t lookups;
    uint64_t hits_other;      /* computed by another worker of this run */
    uint64_t hits_self;       /* computed by this worker (not expected: one pass) */
    uint64_t hits_earlier;    /* computed by a previous run (--keep) */
    uint64_t computed;
    uint64_t fill_waits;      /* misses answered by another worker's fill */
    uint64_t hit_ns;          /* time in shmc_get on hits (but the first lookup) */
    uint64_t hits_timed;
    uint64_t warm_hits, warm_misses;
    uint64_t warm_ns;         /* time in shmc_get on hits of the second pass */
    uint64_t elapsed_ns;
} worker_result;

typedef struct shared_area {
    _Atomic uint32_t *computations;  /* per key: how many times it was computed */
    worker_result *res;
} shared_area;

static struct {
    unsigned workers;
    const char *name;
    unsigned keys;
    unsigned samples;
    uint64_t ttl_ms;
    bool no_singleflight;
    bool keep;
    uint64_t run_id;
} cfg = {
    .workers = 4,
    .name = "shmcache-demo",
    .keys = 200,
    .samples = 3,
    .ttl_ms = 300000,
    .keep = false,
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The "expensive" function whose results the workers cache.  Deterministic,
 * so a hit can be checked against it. */
static uint64_t compute_result(const char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    for (int i = 0; i < 1000; i++)
        h = splitmix64(&h);
    return h;
}

static void simulate_work(void)
{
    struct timespec ts = { 0, WORK_NS };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Value layout (text, so `strings /dev/shm/<name>` shows something legible). */
static int format_value(char *buf, size_t len, unsigned worker, pid_t pid, uint64_t result)
{
    return snprintf(buf, len, "run=%016" PRIx64 " worker=%u pid=%ld result=%016" PRIx64,
                    cfg.run_id, worker, (long)pid, result);
}

static bool parse_value(const char *buf, size_t vlen, uint64_t *run, unsigned *worker,
                        long *pid, uint64_t *result)
{
    char tmp[160];
    if (vlen == 0 || vlen >= sizeof tmp)
        return false;
    memcpy(tmp, buf, vlen);
    tmp[vlen] = '\0';
    int consumed = 0;
    if (sscanf(tmp, "run=%16" SCNx64 " worker=%u pid=%ld result=%16" SCNx64 "%n",
               run, worker, pid, result, &consumed) != 4)
        return false;
    return (size_t)consumed == vlen;
}

static void shuffle(unsigned *order, unsigned n, uint64_t seed)
{
    for (unsigned i = 0; i < n; i++)
        order[i] = i;
    for (unsigned i = n; i > 1; i--) {
        unsigned j = (unsigned)(splitmix64(&seed) % i);
        unsigned t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

static int run_worker(shmc_t *c, unsigned id, int start_fd, shared_area *sh)
{
    worker_result *r = &sh->res[id];
    pid_t me = getpid();
    unsigned *order = malloc(sizeof *order * cfg.keys);
    if (!order) {
        fprintf(stderr, "worker %u: out of memory\n", id);
        return 1;
    }
    shuffle(order, cfg.keys, 0x5eed0000u + id);

    /* Wait for the parent to release every worker at once. */
    char b;
    while (read(start_fd, &b, 1) < 0 && errno == EINTR) {
    }
    close(start_fd);

    unsigned printed_miss = 0, printed_hit = 0;
    uint64_t t_start = now_ns();
    for (unsigned n = 0; n < cfg.keys; n++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "user:%u", order[n]);
        char val[160];
        size_t vlen = 0;
        uint32_t flags = 0;

        uint64_t t0 = now_ns();
        shmc_status st = shmc_get(c, key, (size_t)klen, val, sizeof val, &vlen, &flags);
        uint64_t t1 = now_ns();
        r->lookups++;

        if (st == SHMC_OK) {
            uint64_t run, result;
            unsigned by;
            long by_pid;
            if (flags != DEMO_FLAGS || !parse_value(val, vlen, &run, &by, &by_pid, &result)) {
                fprintf(stderr, "worker %u (pid %ld): key %s: unexpected value (%zu bytes, "
                        "flags 0x%08" PRIx32 ") - is another program using cache '%s'?\n",
                        id, (long)me, key, vlen, flags, cfg.name);
                r->failed = 1;
                break;
            }
            if (result != compute_result(key, (size_t)klen)) {
                fprintf(stderr, "worker %u (pid %ld): key %s: WRONG value %016" PRIx64
                        " (computed by worker %u, pid %ld)\n", id, (long)me, key, result,
                        by, by_pid);
                r->failed = 1;
                break;
            }
            if (n > 0) {
                r->hit_ns += t1 - t0;
                r->hits_timed++;
            }
            const char *note;
            if (run != cfg.run_id) {
                r->hits_earlier++;
                note = " of an earlier run";
            } else if (by == id) {
                r->hits_self++;
                note = " (itself)";
            } else {
                r->hits_other++;
                note = "";
            }
            if (printed_hit < cfg.samples && (run != cfg.run_id || by != id)) {
                printed_hit++;
                printf("worker %u (pid %ld): key %-10s HIT  (computed by worker %u%s, pid %ld)"
                       " in %.1f us\n", id, (long)me, key, by, note, by_pid,
                       (double)(t1 - t0) / 1e3);
            }
        } else if (st == SHMC_NOT_FOUND) {
            /* Singleflight: of the workers that miss this key at once, one
             * computes it and the others wait for its value. */
            shmc_fill fill;
            if (!cfg.no_singleflight) {
                void *got = NULL;
                size_t glen = 0;
                shmc_fill_opts fo = {.wait_ms = 10000, .fill_ms = 10000};
                st = shmc_fill_begin(c, key, (size_t)klen, &fo, &got, &glen, &flags, &fill);
                if (st == SHMC_OK) {
                    /* Another worker computed it while we waited. */
                    uint64_t run, result;
                    unsigned by;
                    long by_pid;
                    bool ok = glen <= sizeof val && flags == DEMO_FLAGS &&
                              parse_value(got, glen, &run, &by, &by_pid, &result) &&
                              result == compute_result(key, (size_t)klen);
                    free(got);
                    if (!ok) {
                        fprintf(stderr, "worker %u (pid %ld): key %s: bad value after a "
                                "fill\n", id, (long)me, key);
                        r->failed = 1;
                        break;
                    }
                    r->fill_waits++;
                    r->hits_other++;
                    continue;
                }
                if (st != SHMC_LEADER) {
                    fprintf(stderr, "worker %u (pid %ld): shmc_fill_begin(%s): %s\n", id,
                            (long)me, key, shmc_strerror(st));
                    r->failed = 1;
                    break;
                }
            }
            uint64_t result = compute_result(key, (size_t)klen);
            simulate_work();
            atomic_fetch_add(&sh->computations[order[n]], 1);
            r->computed++;
            int len = format_value(val, sizeof val, id, me, result);
            if (cfg.no_singleflight)
                st = shmc_set(c, key, (size_t)klen, val, (size_t)len, DEMO_FLAGS, cfg.ttl_ms);
            else
                st = shmc_fill_finish(c, &fill, val, (size_t)len, DEMO_FLAGS, cfg.ttl_ms);
            if (st != SHMC_OK) {
                fprintf(stderr, "worker %u (pid %ld): storing %s: %s\n", id, (long)me,
                        key, shmc_strerror(st));
                r->failed = 1;
                break;
            }
            if (printed_miss < 1 && cfg.samples > 0) {
                printed_miss++;
                printf("worker %u (pid %ld): key %-10s MISS -> computed in %.1f ms, stored "
                       "with TTL %" PRIu64 " s\n", id, (long)me, key,
                       (double)(now_ns() - t1) / 1e6, cfg.ttl_ms / 1000);
            }
        } else {
            fprintf(stderr, "worker %u (pid %ld): shmc_get(%s): %s\n", id, (long)me, key,
                    shmc_strerror(st));
            r->failed = 1;
            break;
        }
    }
    r->elapsed_ns = now_ns() - t_start;

    /* Second pass: what a long-running worker sees once the shared pages are
     * mapped into it (the first pass pays a page fault per newly touched
     * page of the segment, plus taking a participant slot). */
    for (unsigned n = 0; n < cfg.keys && !r->failed; n++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "user:%u", order[n]);
        char val[160];
        size_t vlen = 0;
        uint32_t flags = 0;
        uint64_t t0 = now_ns();
        shmc_status st = shmc_get(c, key, (size_t)klen, val, sizeof val, &vlen, &flags);
        uint64_t t1 = now_ns();
        if (st == SHMC_OK && flags == DEMO_FLAGS) {
            r->warm_hits++;
            r->warm_ns += t1 - t0;
        } else if (st == SHMC_NOT_FOUND) {
            r->warm_misses++;  /* expired (short --ttl) */
        } else {
            fprintf(stderr, "worker %u (pid %ld): shmc_get(%s): %s\n", id, (long)me, key,
                    st == SHMC_OK ? "unexpected flags" : shmc_strerror(st));
            r->failed = 1;
        }
    }
    free(order);
    /* Give the participant slot back now rather than leaving it to be reaped. */
    shmc_close(c);
    return r->failed ? 1 : 0;
}

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--workers N] [--name NAME] [--keys K] [--ttl SECONDS]\n"
            "          [--samples S] [--keep] [--no-singleflight]\n"
            "\n"
            "Forks N worker processes (default 4) that share the cache NAME\n"
            "(default \"shmcache-demo\", created with default parameters: 64 MiB)\n"
            "and each look up the keys user:0 .. user:K-1 (default 200) in their own\n"
            "order, computing and storing a value on a miss.\n"
            "\n"
            "  --workers N    worker processes (1..%d)\n"
            "  --name NAME    cache name (/dev/shm/NAME)\n"
            "  --keys K       size of the shared key space (1..%d)\n"
            "  --ttl SECONDS  time-to-live of stored values (default 300, 0 = none)\n"
            "  --samples S    sample HIT lines printed per worker (default 3)\n"
            "  --keep         leave the cache in place (a second run then hits)\n"
            "  --no-singleflight  on a miss, every worker computes (no waiting for a\n"
            "                 worker already computing that key): shows the duplicates\n",
            argv0, MAX_WORKERS, MAX_KEYS);
}

static bool parse_uint(const char *s, unsigned long long lo, unsigned long long hi,
                       unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "workers", required_argument, NULL, 'w' },
        { "name", required_argument, NULL, 'n' },
        { "keys", required_argument, NULL, 'k' },
        { "ttl", required_argument, NULL, 't' },
        { "samples", required_argument, NULL, 's' },
        { "keep", no_argument, NULL, 'K' },
        { "no-singleflight", no_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;
    unsigned long long v;
    while ((opt = getopt_long(argc, argv, "w:n:k:t:s:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'w':
            if (!parse_uint(optarg, 1, MAX_WORKERS, &v))
                goto bad;
            cfg.workers = (unsigned)v;
            break;
        case 'n':
            cfg.name = optarg;
            break;
        case 'k':
            if (!parse_uint(optarg, 1, MAX_KEYS, &v))
                goto bad;
            cfg.keys = (unsigned)v;
            break;
        case 't':
            if (!parse_uint(optarg, 0, UINT64_MAX / 1000, &v))
                goto bad;
            cfg.ttl_ms = v * 1000;
            break;
        case 's':
            if (!parse_uint(optarg, 0, 1000, &v))
                goto bad;
            cfg.samples = (unsigned)v;
            break;
        case 'K':
            cfg.keep = true;
            break;
        case 'S':
            cfg.no_singleflight = true;
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 0;
        default:
            goto bad;
        }
    }
    if (optind != argc)
        goto bad;

    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        cfg.run_id = splitmix64(&seed);
    }

    /* Shared scratch for results: MAP_SHARED|MAP_ANONYMOUS survives fork. */
    size_t res_bytes = sizeof(worker_result) * cfg.workers;
    size_t cnt_bytes = sizeof(_Atomic uint32_t) * cfg.keys;
    void *area = mmap(NULL, res_bytes + cnt_bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    shared_area sh = { .res = area, .computations = (void *)((char *)area + res_bytes) };

    shmc_t *c = NULL;
    shmc_status st = shmc_open(cfg.name, NULL, &c);
    if (st != SHMC_OK) {
        fprintf(stderr, "shmc_open(\"%s\"): %s%s%s\n", cfg.name, shmc_strerror(st),
                st == SHMC_ESYS ? ": " : "", st == SHMC_ESYS ? strerror(errno) : "");
        return 1;
    }
    shmc_info info;
    st = shmc_info_get(c, &info);
    if (st != SHMC_OK) {
        fprintf(stderr, "shmc_info_get: %s\n", shmc_strerror(st));
        shmc_close(c);
        return 1;
    }
    printf("cache \"%s\" (/dev/shm/%s): %.1f MiB, %u storage segments of %" PRIu64 " KiB, "
           "%u index slots\n", cfg.name, cfg.name, (double)info.size / 1048576.0,
           info.segments, info.segment_bytes / 1024, info.index_slots);
    printf("%u workers, %u keys, ~%ld ms of work per computation\n\n", cfg.workers,
           cfg.keys, WORK_NS / 1000000);

    /* Line-buffered output so workers' lines do not tear or repeat. */
    fflush(stdout);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int start[2];
    if (pipe(start) != 0) {
        perror("pipe");
        shmc_close(c);
        return 1;
    }
    unsigned started = 0;
    for (unsigned i = 0; i < cfg.workers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            break;
        }
        if (pid == 0) {
            close(start[1]);
            _exit(run_worker(c, i, start[0], &sh));
        }
        sh.res[i].pid = pid;
        started++;
    }
    close(start[0]);
    uint64_t t0 = now_ns();
    close(start[1]); /* EOF on the pipe: every worker starts now */

    int rc = started == cfg.workers ? 0 : 1;
    for (unsigned i = 0; i < started; i++) {
        int status;
        while (waitpid(sh.res[i].pid, &status, 0) < 0) {
            if (errno != EINTR) {
                perror("waitpid");
                return 1;
            }
        }
        if (WIFSIGNALED(status)) {
            fprintf(stderr, "worker %u (pid %ld) killed by signal %d\n", i,
                    (long)sh.res[i].pid, WTERMSIG(status));
            sh.res[i].failed = 1;
        } else if (WEXITSTATUS(status) != 0) {
            sh.res[i].failed = 1;
        }
        if (sh.res[i].failed)
            rc = 1;
    }
    uint64_t wall = now_ns() - t0;

    printf("\nper worker:\n");
    uint64_t total_computed = 0, total_earlier = 0;
    for (unsigned i = 0; i < started; i++) {
        const worker_result *r = &sh.res[i];
        uint64_t hits = r->hits_other + r->hits_self + r->hits_earlier;
        printf("  worker %u (pid %ld): %" PRIu64 " lookups, %" PRIu64 " computed, %" PRIu64
               " hits (%" PRIu64 " computed by other workers", i, (long)r->pid, r->lookups,
               r->computed, hits, r->hits_other);
        if (r->hits_earlier)
            printf(", %" PRIu64 " by an earlier run", r->hits_earlier);
        if (r->fill_waits)
            printf(", %" PRIu64 " of them after waiting for that worker's fill", r->fill_waits);
        printf("); hit %.2f us cold, %.2f us warm%s\n",
               r->hits_timed ? (double)r->hit_ns / (double)r->hits_timed / 1e3 : 0.0,
               r->warm_hits ? (double)r->warm_ns / (double)r->warm_hits / 1e3 : 0.0,
               r->failed ? "  FAILED" : "");
        total_computed += r->computed;
        total_earlier += r->hits_earlier;
    }
    printf("  (cold: first pass, in a freshly forked process that page-faults the shared\n"
           "   segment in as it touches it; warm: every worker reads its keys once more)\n");
    uint64_t distinct = 0, duplicates = 0;
    for (unsigned k = 0; k < cfg.keys; k++) {
        uint32_t n = atomic_load(&sh.computations[k]);
        if (n) {
            distinct++;
            duplicates += n - 1;
        }
    }

    /* With one private cache per worker every worker computes every key once. */
    uint64_t private_cost = (uint64_t)started * cfg.keys;
    printf("\ncomputations: %" PRIu64 " with the shared cache vs %" PRIu64
           " with private per-worker caches -> %" PRIu64 " saved (%.0f%%)\n",
           total_computed, private_cost, private_cost - total_computed,
           private_cost ? 100.0 * (double)(private_cost - total_computed) /
                              (double)private_cost
                        : 0.0);
    printf("  %" PRIu64 " distinct keys computed in this run; %" PRIu64
           " duplicate computations (%s)\n", distinct, duplicates,
           cfg.no_singleflight ? "two workers missed the same key at once and both computed it"
                               : "singleflight: workers that miss a key being computed wait"
                                 " for it");
    if (total_earlier)
        printf("  %" PRIu64 " hits were served from values stored by an earlier run (--keep)\n",
               total_earlier);
    printf("  wall time %.0f ms (private caches: ~%.0f ms per worker of computation alone)\n",
           (double)wall / 1e6, (double)cfg.keys * (double)WORK_NS / 1e6);

    shmc_stats s;
    st = shmc_stats_get(c, &s);
    if (st != SHMC_OK) {
        fprintf(stderr, "shmc_stats_get: %s\n", shmc_strerror(st));
        rc = 1;
    } else {
        printf("\nshmc_stats (cumulative for the cache):\n");
        printf("  gets %" PRIu64 ", hits %" PRIu64 ", misses %" PRIu64 ", sets %" PRIu64
               ", deletes %" PRIu64 "\n", s.gets, s.hits, s.misses, s.sets, s.deletes);
        printf("  items %" PRIu64 ", bytes used %" PRIu64 " of %" PRIu64 " (%" PRIu64
               " free), evictions %" PRIu64 ", expirations %" PRIu64 "\n", s.items,
               s.bytes_used, s.bytes_total, s.bytes_free, s.evictions, s.expirations);
        printf("  participant slots live %" PRIu64 ", reaped %" PRIu64 ", writes refused "
               "(ENOMEM) %" PRIu64 "\n", s.slots_live, s.slots_reaped, s.enomem);
        printf("  fills led %" PRIu64 ", callers that waited for a fill %" PRIu64
               ", fill takeovers %" PRIu64 "\n", s.fills, s.fill_waits, s.fill_takeovers);
        if (s.hits + s.misses != s.gets)
            fprintf(stderr, "warning: stats inconsistent: hits + misses != gets\n");
    }

    shmc_verify_report rep;
    memset(&rep, 0, sizeof rep);
    st = shmc_verify(c, &rep);
    if (st == SHMC_OK) {
        printf("shmc_verify: consistent (%" PRIu64 " items)\n", rep.items);
    } else {
        fprintf(stderr, "shmc_verify: %s%s%s\n", shmc_strerror(st),
                rep.first_error[0] ? ": " : "", rep.first_error);
        rc = 1;
    }

    shmc_close(c);
    if (cfg.keep) {
        printf("cache \"%s\" kept (run again to see hits from this run; remove with "
               "rm /dev/shm/%s)\n", cfg.name, cfg.name);
    } else {
        st = shmc_destroy(cfg.name);
        if (st != SHMC_OK) {
            fprintf(stderr, "shmc_destroy(\"%s\"): %s\n", cfg.name, shmc_strerror(st));
            rc = 1;
        } else {
            printf("cache \"%s\" destroyed\n", cfg.name);
        }
    }
    munmap(area, res_bytes + cnt_bytes);
    if (rc)
        fprintf(stderr, "shmcache-demo: FAILED\n");
    return rc;

bad:
    usage(stderr, argv[0]);
    return 2;
}
