/*
 * bench_tier.c — the Redis tier (include/shmcache_tier.h) against every
 * worker talking to Redis directly, on one machine.
 *
 *   bench_tier --redis /path/redis.sock [--seconds 5] [--warmup 1] [--hosts 3] [--workers 2]
 *              [--keys 10000] [--write-pct 5] [--value 100] [--zipf 0.99]
 *              [--name PREFIX]
 *
 * Hosts are simulated by shmcache caches (one per host) on this machine;
 * each host has `workers` forked worker processes (each a listener
 * candidate).  Every worker runs the same workload for `seconds`: Zipf(s)
 * key choice over `keys` keys that exist in Redis, `write-pct` % writes
 * (SET of a new value), the rest reads; nothing is counted during the
 * first `warmup` seconds (the hosts' caches fill).  Two runs are compared:
 *
 *   tier    reads via shmc_tier_get (host L1, read-through), writes via
 *           shmc_tier_set (write-through, invalidation);
 *   direct  GET/SET on each worker's own Redis connection.
 *
 * Reported per run: requests, requests/s, Redis commands per request (from
 * Redis's own total_commands_processed, so the listeners' commands count
 * too), latency p50/p99/max of a request, and for the tier the L1 hit ratio
 * (reads served from the host's cache, including waits for the host's fill).
 * A third run, the tier workload again, adds a prober that writes a probe
 * key through host 0 every 20 ms, stamped with CLOCK_MONOTONIC (shared by
 * the processes of the machine) just before the write; an observer on
 * every other host polls it every 100 us and records, for each new value,
 * the delay from the stamp to its first read on that host: p50/p99/max.
 * (Their polling takes CPU, so that run's throughput is not reported.)
 * Figures on a shared machine drift: compare the runs of one invocation.
 */
#include "bench_hist.h"
#include "shmcache_tier.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct {
    const char *redis;
    double seconds, warmup;
    int hosts, workers;
    uint32_t keys, write_pct, value;
    double zipf;
    const char *name;
} cfg = {NULL, 5.0, 1.0, 3, 2, 10000, 5, 100, 0.99, "shmc-bench-tier"};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct wstat {
    hist lat;
    uint64_t reads, writes, errors, gets, l1;
} wstat;

typedef struct shared {
    volatile int go, measure, stop, ready;
    wstat w[64];
    hist inval;
    uint64_t probes;
} shared;

static shared *sh;
static double *cdf;
static char cache_names[16][128];

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint32_t zipf_key(uint64_t *s)
{
    double u = (double)(rng_next(s) >> 11) / 9007199254740992.0;
    uint32_t lo = 0, hi = cfg.keys - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static redisContext *connect_redis(void)
{
    struct timeval tv = {5, 0};
    redisContext *rc = redisConnectUnixWithTimeout(cfg.redis, tv);
    if (!rc || rc->err) {
        fprintf(stderr, "bench_tier: cannot connect to %s\n", cfg.redis);
        exit(1);
    }
    return rc;
}

static uint64_t redis_commands(void)
{
    redisContext *rc = connect_redis();
    redisReply *r = redisCommand(rc, "INFO stats");
    uint64_t n = 0;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "total_commands_processed:")
                                                       : NULL;
    if (p)
        n = strtoull(p + 25, NULL, 10);
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    return n;
}

static shmc_tier_t *open_tier(int host, shmc_t **c)
{
    shmc_options so;
    memset(&so, 0, sizeof so);
    so.size = 64ull << 20;
    if (shmc_open(cache_names[host], &so, c) != SHMC_OK) {
        fprintf(stderr, "bench_tier: cannot open %s\n", cache_names[host]);
        _exit(1);
    }
    shmc_tier_options o;
    memset(&o, 0, sizeof o);
    o.redis_unix = cfg.redis;
    o.prefix = "bt:";
    o.prefix_len = 3;
    shmc_tier_t *t = NULL;
    if (shmc_tier_open(*c, &o, &t) != SHMC_OK || shmc_tier_wait_listener(t, 10000) != SHMC_OK) {
        fprintf(stderr, "bench_tier: no tier / listener on %s\n", cache_names[host]);
        _exit(1);
    }
    return t;
}

static void worker(int id, int host, int tiered)
{
    shmc_t *c = NULL;
    shmc_tier_t *t = NULL;
    redisContext *rc = NULL;
    if (tiered)
        t = open_tier(host, &c);
    else
        rc = connect_redis();
    wstat *w = &sh->w[id];
    uint64_t seed = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
    char val[4096];
    memset(val, 'v', sizeof val);
    uint32_t vlen = cfg.value < sizeof val ? cfg.value : sizeof val;
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!sh->go)
        usleep(1000);
    uint64_t seq = 0;
    int measuring = 0;
    shmc_tier_stats base;
    memset(&base, 0, sizeof base);
    while (!sh->stop) {
        if (!measuring && sh->measure) {
            /* the warm-up is over: count from here */
            measuring = 1;
            memset(w, 0, sizeof *w);
            if (tiered)
                shmc_tier_stats_get(t, &base);
        }
        char key[32];
        int kl = snprintf(key, sizeof key, "k%u", zipf_key(&seed));
        int write = (uint32_t)(rng_next(&seed) % 100) < cfg.write_pct;
        uint64_t t0 = now_ns();
        int ok;
        if (write) {
            snprintf(val, sizeof val, "w%d-%llu", id, (unsigned long long)seq++);
            val[strlen(val)] = 'v';
            if (tiered) {
                ok = shmc_tier_set(t, key, (size_t)kl, val, vlen, 0) == SHMC_OK;
            } else {
                char full[40];
                snprintf(full, sizeof full, "bt:%s", key);
                redisReply *r = redisCommand(rc, "SET %s %b", full, val, (size_t)vlen);
                ok = r && r->type == REDIS_REPLY_STATUS;
                if (r)
                    freeReplyObject(r);
            }
            w->writes++;
        } else {
            if (tiered) {
                void *v = NULL;
                size_t n;
                ok = shmc_tier_get(t, key, (size_t)kl, &v, &n) == SHMC_OK;
                free(v);
            } else {
                char full[40];
                snprintf(full, sizeof full, "bt:%s", key);
                redisReply *r = redisCommand(rc, "GET %s", full);
                ok = r && r->type == REDIS_REPLY_STRING;
                if (r)
                    freeReplyObject(r);
            }
            w->reads++;
        }
        hist_add(&w->lat, now_ns() - t0);
        if (!ok)
            w->errors++;
    }
    if (tiered) {
        shmc_tier_stats s;
        shmc_tier_stats_get(t, &s);
        w->gets = s.gets - base.gets;
        w->l1 = s.l1_hits + s.l1_waits - base.l1_hits - base.l1_waits;
        shmc_tier_close(t);
        shmc_close(c);
    } else {
        redisFree(rc);
    }
    _exit(0);
}

/* Writes "probe" through host 0 every 20 ms with its write-return time. */
static void prober(void)
{
    shmc_t *c = NULL;
    shmc_tier_t *t = open_tier(0, &c);
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!sh->go)
        usleep(1000);
    while (!sh->stop) {
        char v[32];
        /* stamped before the write: the figure includes the write itself */
        int n = snprintf(v, sizeof v, "%llu", (unsigned long long)now_ns());
        shmc_tier_set(t, "probe", 5, v, (size_t)n, 0);
        sh->probes++;
        usleep(20000);
    }
    shmc_tier_close(t);
    shmc_close(c);
    _exit(0);
}

static void observer(int host)
{
    shmc_t *c = NULL;
    shmc_tier_t *t = open_tier(host, &c);
    hist h;
    memset(&h, 0, sizeof h);
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!sh->go)
        usleep(1000);
    uint64_t last = 0;
    while (!sh->stop) {
        void *v = NULL;
        size_t n;
        if (shmc_tier_get(t, "probe", 5, &v, &n) == SHMC_OK) {
            char buf[32];
            size_t m = n < sizeof buf - 1 ? n : sizeof buf - 1;
            memcpy(buf, v, m);
            buf[m] = 0;
            uint64_t stamp = strtoull(buf, NULL, 10);
            if (stamp > last) {
                if (last)
                    hist_add(&h, now_ns() - stamp);
                last = stamp;
            }
        }
        free(v);
        usleep(100);
    }
    memcpy(&sh->w[60 + host].lat, &h, sizeof h);
    shmc_tier_close(t);
    shmc_close(c);
    _exit(0);
}

static void populate(void)
{
    redisContext *rc = connect_redis();
    char val[4096];
    memset(val, 'v', sizeof val);
    uint32_t vlen = cfg.value < sizeof val ? cfg.value : sizeof val;
    redisReply *r = redisCommand(rc, "FLUSHALL");
    if (r)
        freeReplyObject(r);
    for (uint32_t i = 0; i < cfg.keys; i++)
        redisAppendCommand(rc, "SET bt:k%u %b", i, val, (size_t)vlen);
    for (uint32_t i = 0; i < cfg.keys; i++) {
        void *rep = NULL;
        if (redisGetReply(rc, &rep) != REDIS_OK) {
            fprintf(stderr, "bench_tier: populate failed\n");
            exit(1);
        }
        freeReplyObject(rep);
    }
    redisFree(rc);
}

/* probe: the tier workload again, with the prober and the observers (their
 * polling takes CPU: the figures of that run are not compared) */
static void run(int tiered, int probe)
{
    memset(sh, 0, sizeof *sh);
    populate();
    for (int h = 0; h < cfg.hosts; h++)
        shmc_destroy(cache_names[h]);
    int nw = cfg.hosts * cfg.workers, extra = 0;
    pid_t pids[80];
    int np = 0;
    for (int i = 0; i < nw; i++) {
        pid_t p = fork();
        if (p == 0)
            worker(i, i / cfg.workers, tiered);
        pids[np++] = p;
    }
    if (probe) {
        pid_t p = fork();
        if (p == 0)
            prober();
        pids[np++] = p;
        extra++;
        for (int h = 1; h < cfg.hosts; h++) {
            p = fork();
            if (p == 0)
                observer(h);
            pids[np++] = p;
            extra++;
        }
    }
    uint64_t wait_until = now_ns() + 30000000000ull;
    while (sh->ready < nw + extra && now_ns() < wait_until)
        usleep(1000);
    if (sh->ready < nw + extra) {
        fprintf(stderr, "bench_tier: workers did not start\n");
        for (int i = 0; i < np; i++)
            kill(pids[i], SIGKILL);
        exit(1);
    }
    sh->go = 1;
    usleep((useconds_t)(cfg.warmup * 1e6));
    uint64_t cmd0 = redis_commands();
    uint64_t t0 = now_ns();
    sh->measure = 1;
    usleep((useconds_t)(cfg.seconds * 1e6));
    sh->stop = 1;
    uint64_t t1 = now_ns();
    for (int i = 0; i < np; i++) {
        int st;
        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR) {
        }
    }
    uint64_t cmds = redis_commands() - cmd0;
    hist lat;
    memset(&lat, 0, sizeof lat);
    uint64_t reads = 0, writes = 0, errors = 0, gets = 0, l1 = 0;
    for (int i = 0; i < nw; i++) {
        hist_merge(&lat, &sh->w[i].lat);
        reads += sh->w[i].reads;
        writes += sh->w[i].writes;
        errors += sh->w[i].errors;
        gets += sh->w[i].gets;
        l1 += sh->w[i].l1;
    }
    uint64_t req = reads + writes;
    double secs = (double)(t1 - t0) / 1e9;
    if (!probe)
        printf("%-7s %10llu %10.0f %12.3f %9.1f %9.1f %10.1f %8s %7llu\n",
               tiered ? "tier" : "direct", (unsigned long long)req, (double)req / secs,
               req ? (double)cmds / (double)req : 0.0, (double)hist_quantile(&lat, 0.5) / 1e3,
               (double)hist_quantile(&lat, 0.99) / 1e3, (double)lat.max / 1e3,
               tiered ? "" : "n/a", (unsigned long long)errors);
    if (tiered && !probe)
        printf("        L1 hit ratio (reads served by the host's cache): %.1f%% of %llu reads\n",
               gets ? 100.0 * (double)l1 / (double)gets : 0.0, (unsigned long long)gets);
    if (probe) {
        hist inv;
        memset(&inv, 0, sizeof inv);
        for (int h = 1; h < cfg.hosts; h++)
            hist_merge(&inv, &sh->w[60 + h].lat);
        printf("tier + probe run: invalidation delay (write on host 0 -> new value read on "
               "hosts 1..%d): n=%llu p50=%.2f ms p99=%.2f ms max=%.2f ms (%llu errors)\n",
               cfg.hosts - 1, (unsigned long long)inv.count,
               (double)hist_quantile(&inv, 0.5) / 1e6, (double)hist_quantile(&inv, 0.99) / 1e6,
               (double)inv.max / 1e6, (unsigned long long)errors);
    }
    for (int h = 0; h < cfg.hosts; h++)
        shmc_destroy(cache_names[h]);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v && strcmp(a, "--help") != 0) {
            fprintf(stderr, "bench_tier: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--redis"))
            cfg.redis = v;
        else if (!strcmp(a, "--seconds"))
            cfg.seconds = atof(v);
        else if (!strcmp(a, "--warmup"))
            cfg.warmup = atof(v);
        else if (!strcmp(a, "--hosts"))
            cfg.hosts = atoi(v);
        else if (!strcmp(a, "--workers"))
            cfg.workers = atoi(v);
        else if (!strcmp(a, "--keys"))
            cfg.keys = (uint32_t)atoi(v);
        else if (!strcmp(a, "--write-pct"))
            cfg.write_pct = (uint32_t)atoi(v);
        else if (!strcmp(a, "--value"))
            cfg.value = (uint32_t)atoi(v);
        else if (!strcmp(a, "--zipf"))
            cfg.zipf = atof(v);
        else if (!strcmp(a, "--name"))
            cfg.name = v;
        else {
            fprintf(stderr, "usage: bench_tier --redis SOCK [--seconds S] [--warmup S] "
                            "[--hosts N] [--workers N] [--keys N] [--write-pct P] [--value B] [--zipf S] "
                            "[--name PREFIX]\n");
            return 2;
        }
    }
    if (!cfg.redis || cfg.hosts < 2 || cfg.hosts > 8 || cfg.workers < 1 ||
        cfg.hosts * cfg.workers > 48 || cfg.keys < 1 || cfg.write_pct > 100 ||
        !(cfg.seconds > 0) || !(cfg.warmup >= 0)) {
        fprintf(stderr, "bench_tier: bad arguments (need --redis; 2..8 hosts; <= 48 workers)\n");
        return 2;
    }
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cdf = malloc(sizeof(double) * cfg.keys);
    if (sh == MAP_FAILED || !cdf)
        return 1;
    double sum = 0, acc = 0;
    for (uint32_t i = 0; i < cfg.keys; i++)
        sum += 1.0 / pow((double)(i + 1), cfg.zipf);
    for (uint32_t i = 0; i < cfg.keys; i++) {
        acc += 1.0 / pow((double)(i + 1), cfg.zipf) / sum;
        cdf[i] = acc;
    }
    cdf[cfg.keys - 1] = 1.0;
    for (int h = 0; h < cfg.hosts; h++)
        snprintf(cache_names[h], sizeof cache_names[h], "%s-%d-h%d", cfg.name, (int)getpid(), h);
    printf("bench_tier: %d hosts x %d workers, %u keys Zipf(%.2f), %u%% writes, %u-byte "
           "values, %.1f s per run after %.1f s of warm-up, %ld CPUs\n",
           cfg.hosts, cfg.workers, cfg.keys, cfg.zipf, cfg.write_pct, cfg.value, cfg.seconds,
           cfg.warmup,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-7s %10s %10s %12s %9s %9s %10s %8s %7s\n", "mode", "requests", "req/s",
           "redis_cmd/req", "p50_us", "p99_us", "max_us", "", "errors");
    run(1, 0);
    run(0, 0);
    run(1, 1);
    return 0;
}
