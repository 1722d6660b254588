/*
 * bench_core — the core measurements of shmcache, through the public API only.
 *
 * Throughput: a cache is preloaded with --keys (default 100k) items of 16-byte
 * keys and 100-byte values; then 1 and 2 forked processes (--procs) each run
 * a workload for --seconds (default 2) choosing keys uniformly with their own
 * PRNG: all gets, all sets, and a 90/10 get/set mix.  Reported: total ops/s
 * (sum over processes of ops / own elapsed time) and ops/s per process.
 *
 * Capacity ("items per GiB"): a 1 GiB cache is filled with distinct 16 B key /
 * 100 B value items.  Reported twice: when stats.evictions first becomes
 * non-zero (whatever the cause; a full pair of index buckets evicts a single
 * item), and when storage is full (the first set that evicts a whole storage
 * segment).  Bytes per item = cache size / items held, so every overhead is
 * included (header, slot table, index, item headers, padding, segment slack).
 *
 * Overwrite churn (--churn): --churn-keys (default 100k) keys of 16 B / 100 B
 * in a --churn-mib (default 64) MiB cache, then --churn-sets (default 10 M)
 * overwrites of keys chosen uniformly, no reads; then every key is read back.
 * Reported: live keys lost (absent, or not holding their last value), items
 * evicted and compacted, bytes dead at the end, sets/s.  The live data fits
 * (about a quarter of the storage), so a cache should lose none.
 *
 * Output: a plain table on stdout; --json FILE also writes the figures as
 * JSON.  Exit status is non-zero if any library call failed unexpectedly.
 */
#include "shmcache.h"
#include "bench_hist.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_BUILDTYPE
#define BENCH_BUILDTYPE "unknown"
#endif
#ifndef BENCH_SANITIZE
#define BENCH_SANITIZE "none"
#endif
#ifndef BENCH_COMPILER
#define BENCH_COMPILER "unknown"
#endif

#define KEY_LEN    16
#define VALUE_LEN  100
#define MAX_PROCS  64
#define BATCH      256       /* ops between clock reads */

enum workload { WL_GET, WL_MIXED, WL_SET, WL_COUNT };
static const char *const wl_name[WL_COUNT] = { "get", "mixed 90/10", "set" };
static const char *const wl_id[WL_COUNT] = { "get", "mixed_90_10", "set" };

typedef struct proc_result {
    uint64_t ops, gets, hits, sets, enomem, errors;
    uint64_t elapsed_ns;
    hist set_ns;              /* latency of each shmc_set (shmcache runs) */
} proc_result;

typedef struct run_result {
    enum workload wl;
    unsigned procs;
    double total_ops_s;
    double per_proc_ops_s[MAX_PROCS];
    double hit_rate;          /* of the gets, -1 when there were none */
    uint64_t ops, enomem, errors;
    uint64_t set_p50, set_p99, set_p999, set_max; /* ns; 0 without sets */
    uint64_t ejections;       /* stats.ejections during the run */
} run_result;

static struct {
    double seconds;
    const char *json;
    char name[SHMC_MAX_NAME + 1];
    unsigned nprocs_list[8];
    unsigned nprocs_count;
    unsigned keys;
    uint64_t size;
    uint64_t capacity_size;
    bool skip_capacity;
    bool skip_throughput;
    bool prefault;          /* throughput cache opened with SHMC_OPEN_PREFAULT */
    bool warm;              /* storage written over twice before the timed runs */
    bool hugepages;         /* private tables on huge pages too (madvise) */
    bool churn;             /* run the overwrite-churn row */
    unsigned churn_keys;
    uint64_t churn_size, churn_sets;
    uint64_t max_items;     /* options.max_items of the throughput cache (0: default) */
    unsigned wl_mask;       /* workloads to run (bit per enum workload) */
} cfg = {
    .seconds = 2.0,
    .nprocs_list = { 1, 2 },
    .nprocs_count = 2,
    .keys = 100000,
    .size = 256ull << 20,
    .capacity_size = 1ull << 30,
    .churn_keys = 100000,
    .churn_size = 64ull << 20,
    .churn_sets = 10000000,
    .wl_mask = (1u << WL_COUNT) - 1,
};

static char (*keys)[KEY_LEN];   /* preformatted keys, not NUL-terminated */
static int failures;

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

/* xorshift64*: cheap enough not to show in the figures. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void format_key(char out[KEY_LEN], char prefix, uint64_t i)
{
    char tmp[KEY_LEN + 8];
    snprintf(tmp, sizeof tmp, "%c%015" PRIu64, prefix, (uint64_t)(i % 1000000000000000ull));
    memcpy(out, tmp, KEY_LEN);
}

static void fill_value(unsigned char *v, uint64_t seed)
{
    for (int i = 0; i < VALUE_LEN; i++)
        v[i] = (unsigned char)('a' + (seed + (uint64_t)i) % 26);
}

/* ---- machine description ---- */

static struct {
    char cpu[128];
    long nproc;
    char kernel[200];
} machine;

static void machine_info(void)
{
    machine.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(machine.cpu, sizeof machine.cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0 || strncmp(line, "Processor", 9) == 0 ||
                strncmp(line, "cpu model", 9) == 0) {
                char *p = strchr(line, ':');
                if (!p)
                    continue;
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                p[strcspn(p, "\n")] = '\0';
                snprintf(machine.cpu, sizeof machine.cpu, "%s", p);
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(machine.kernel, sizeof machine.kernel, "%s %s %s", u.sysname, u.release,
                 u.machine);
    else
        snprintf(machine.kernel, sizeof machine.kernel, "unknown");
}

/* ---- helpers ---- */

static bool check(shmc_status st, const char *what)
{
    if (st == SHMC_OK)
        return true;
    fprintf(stderr, "bench_core: %s: %s%s%s\n", what, shmc_strerror(st),
            st == SHMC_ESYS ? ": " : "", st == SHMC_ESYS ? strerror(errno) : "");
    failures++;
    return false;
}

/* Opens a fresh cache of `size` bytes (removing a stale one of that name). */
static shmc_t *open_fresh(const char *name, uint64_t size, uint64_t max_items, unsigned flags)
{
    shmc_options o;
    memset(&o, 0, sizeof o);
    o.size = size;
    o.max_items = max_items;
    o.flags = SHMC_OPEN_CREATE_ONLY | flags;
    shmc_t *c = NULL;
    shmc_status st = shmc_open(name, &o, &c);
    if (st == SHMC_EEXIST) {
        (void)shmc_destroy(name);
        st = shmc_open(name, &o, &c);
    }
    if (!check(st, "shmc_open"))
        return NULL;
    return c;
}

static const char *human(double v, char *buf, size_t len)
{
    if (v >= 1e6)
        snprintf(buf, len, "%.2f M", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, len, "%.1f k", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
    return buf;
}

/* ---- the floor: a private, in-process hash table ----
 * What a worker's own cache would cost: the same keys, values, key choice
 * and copy-out, in process-private memory (each forked process builds its
 * own), with no sharing, no concurrency control and no TTL/eviction logic.
 * shmcache's ratio to it is what sharing costs over local memory. */
typedef struct lentry {
    char key[KEY_LEN];
    uint32_t vlen;
    unsigned char val[VALUE_LEN];
} lentry;

static lentry *lents;
static uint32_t *ltab;   /* entry index + 1; 0 = empty */
static uint64_t lmask;

static inline uint64_t lhash(const char *k)
{
    uint64_t a, b;
    memcpy(&a, k, 8);
    memcpy(&b, k + 8, 8);
    __uint128_t r = (__uint128_t)(a ^ 0x9e3779b97f4a7c15ull) * (b ^ 0xc2b2ae3d27d4eb4full);
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static lentry *local_find(const char *k)
{
    for (uint64_t h = lhash(k) & lmask;; h = (h + 1) & lmask) {
        uint32_t e = ltab[h];
        if (!e)
            return NULL;
        if (memcmp(lents[e - 1].key, k, KEY_LEN) == 0)
            return &lents[e - 1];
    }
}

/* ShmemHugePages of /proc/meminfo in bytes, read once the throughput cache
 * exists (system-wide: on a quiet machine, the cache's share on huge pages;
 * tmpfs gives them only where the mount or shmem_enabled allows). */
static uint64_t shmem_huge_bytes;

static uint64_t read_shmem_huge(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "ShmemHugePages: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb << 10;
}

/* The private table's memory: malloc's, or with --hugepages 2 MiB aligned
 * and advised for transparent huge pages, so that a cache on huge pages
 * (README, "Huge pages") is compared with a table that has them too. */
static void *private_alloc(size_t n)
{
    if (!cfg.hugepages)
        return malloc(n);
    size_t huge = 2u << 20, len = (n + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, len);
    if (p)
        (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

static void local_build(void)
{
    uint64_t cap = 1;
    while (cap < 2ull * cfg.keys)
        cap <<= 1;
    lmask = cap - 1;
    ltab = private_alloc(cap * sizeof *ltab);
    lents = private_alloc(sizeof *lents * cfg.keys);
    if (!ltab || !lents) {
        perror("bench_core: local table");
        exit(1);
    }
    memset(ltab, 0, cap * sizeof *ltab);
    for (uint32_t i = 0; i < cfg.keys; i++) {
        memcpy(lents[i].key, keys[i], KEY_LEN);
        lents[i].vlen = VALUE_LEN;
        fill_value(lents[i].val, 0);
        uint64_t h = lhash(keys[i]) & lmask;
        while (ltab[h])
            h = (h + 1) & lmask;
        ltab[h] = i + 1;
    }
}

/* ---- throughput ---- */

/* The key a random word picks, uniformly among the cfg.keys preloaded. */
static inline uint32_t key_of(uint64_t x)
{
    return (uint32_t)(((x >> 32) * (uint64_t)cfg.keys) >> 32);
}

/* --warm: random overwrites of the preloaded keys until the storage has been
 * written over twice (the first pass fills it, the second reuses every
 * segment).  A fresh cache's first pass over its storage touches
 * every page for the first time, which on a VM costs microseconds a page
 * even after MADV_POPULATE_WRITE, and finds the preloaded items packed
 * together; a server's cache spends its life with its segments reused and
 * its live items spread through them (README, "Steady state, and huge
 * pages", has both sets of figures). */
static bool warm_up(shmc_t *c, const shmc_info *info)
{
    unsigned char val[VALUE_LEN];
    fill_value(val, 0);
    uint64_t seed = 0x5eed5eed5eedull, rng = splitmix64(&seed) | 1;
    /* An item of a 16 B key and a 100 B value takes 128 bytes (a 12-byte
     * header, padded to 8: docs/design.md, "Items"). */
    uint64_t n = 2 * (info->data_bytes / 128) + 1, t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint32_t k = key_of(rng_next(&rng));
        if (!check(shmc_set(c, keys[k], KEY_LEN, val, VALUE_LEN, 0, 0), "warm-up shmc_set"))
            return false;
    }
    shmc_stats s;
    if (!check(shmc_stats_get(c, &s), "shmc_stats_get"))
        return false;
    printf("warm-up: %" PRIu64 " overwrites in %.1f s (the storage written over twice); "
           "items %" PRIu64 ", evictions %" PRIu64 ", compacted %" PRIu64 "\n", n,
           (double)(now_ns() - t0) / 1e9, s.items, s.evictions, s.compacted);
    return true;
}

static void run_proc(shmc_t *c, enum workload wl, unsigned idx, int start_fd, proc_result *r)
{
    if (!c)
        local_build(); /* private memory of this process, before the start */
    uint64_t seed = 0x243f6a8885a308d3ull ^ ((uint64_t)(wl + 1) << 40) ^ ((uint64_t)idx << 20) ^
                    (uint64_t)getpid();
    uint64_t rng = splitmix64(&seed) | 1;
    unsigned char val[VALUE_LEN], buf[VALUE_LEN + 28];
    fill_value(val, idx);
    if (c) {
        /* Take this process's slot before the start (and with --prefault
         * map the cache, which a forked child does on its first call). */
        size_t l;
        (void)shmc_get(c, keys[0], KEY_LEN, buf, sizeof buf, &l, NULL);
    }

    char b;
    while (read(start_fd, &b, 1) < 0 && errno == EINTR) {
    }
    close(start_fd);

    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(cfg.seconds * 1e9);
    uint64_t t = t0;
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            uint64_t x = rng_next(&rng);
            uint32_t k = key_of(x);
            bool do_set = wl == WL_SET || (wl == WL_MIXED && (x & 0xffff) % 10 == 0);
            shmc_status st;
            if (do_set) {
                memcpy(val, &r->ops, sizeof r->ops);  /* values change, sizes do not */
                if (c) {
                    uint64_t ts = now_ns();
                    st = shmc_set(c, keys[k], KEY_LEN, val, VALUE_LEN, 0, 0);
                    hist_add(&r->set_ns, now_ns() - ts);
                } else {
                    lentry *e = local_find(keys[k]);
                    st = e ? SHMC_OK : SHMC_NOT_FOUND;
                    if (e)
                        memcpy(e->val, val, VALUE_LEN);
                }
                r->sets++;
                if (st == SHMC_ENOMEM) {
                    r->enomem++;
                    st = SHMC_OK;
                }
            } else {
                size_t vlen = 0;
                if (c) {
                    st = shmc_get(c, keys[k], KEY_LEN, buf, sizeof buf, &vlen, NULL);
                } else {
                    lentry *e = local_find(keys[k]);
                    st = e ? SHMC_OK : SHMC_NOT_FOUND;
                    if (e) {
                        vlen = e->vlen;
                        memcpy(buf, e->val, vlen);
                    }
                }
                r->gets++;
                if (st == SHMC_OK) {
                    r->hits++;
                    if (vlen != VALUE_LEN) {
                        fprintf(stderr, "bench_core: get returned %zu bytes, expected %d\n",
                                vlen, VALUE_LEN);
                        r->errors++;
                    }
                } else if (st == SHMC_NOT_FOUND) {
                    st = SHMC_OK;
                }
            }
            if (st != SHMC_OK) {
                fprintf(stderr, "bench_core: process %u: %s: %s\n", idx,
                        do_set ? "shmc_set" : "shmc_get", shmc_strerror(st));
                r->errors++;
                r->elapsed_ns = now_ns() - t0;
                return;
            }
            r->ops++;
        }
        t = now_ns();
        if (t >= deadline)
            break;
    }
    r->elapsed_ns = t - t0;
}

static void run_workload(shmc_t *c, enum workload wl, unsigned procs, proc_result *shared,
                         run_result *out)
{
    memset(shared, 0, sizeof *shared * procs);
    uint64_t ej0 = 0;
#if SHMC_LAYOUT_VERSION >= 3
    shmc_stats s0;
    if (c && shmc_stats_get(c, &s0) == SHMC_OK)
        ej0 = s0.ejections;
#endif
    fflush(stdout);
    fflush(stderr);
    int start[2];
    if (pipe(start) != 0) {
        perror("pipe");
        exit(1);
    }
    pid_t pids[MAX_PROCS];
    unsigned n = 0;
    for (; n < procs; n++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            break;
        }
        if (pid == 0) {
            close(start[1]);
            run_proc(c, wl, n, start[0], &shared[n]);
            if (c)
                shmc_close(c);
            _exit(shared[n].errors ? 1 : 0);
        }
        pids[n] = pid;
    }
    close(start[0]);
    close(start[1]); /* every process starts now */
    if (n < procs)
        failures++;
    for (unsigned i = 0; i < n; i++) {
        int status;
        while (waitpid(pids[i], &status, 0) < 0) {
            if (errno != EINTR) {
                perror("waitpid");
                exit(1);
            }
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_core: process %u failed\n", i);
            failures++;
        }
    }

    memset(out, 0, sizeof *out);
    out->wl = wl;
    out->procs = procs;
    uint64_t gets = 0, hits = 0;
    for (unsigned i = 0; i < n; i++) {
        const proc_result *r = &shared[i];
        double ops_s = r->elapsed_ns ? (double)r->ops * 1e9 / (double)r->elapsed_ns : 0.0;
        out->per_proc_ops_s[i] = ops_s;
        out->total_ops_s += ops_s;
        out->ops += r->ops;
        out->enomem += r->enomem;
        out->errors += r->errors;
        gets += r->gets;
        hits += r->hits;
    }
    out->hit_rate = gets ? (double)hits / (double)gets : -1.0;
    static hist h;
    memset(&h, 0, sizeof h);
    for (unsigned i = 0; i < n; i++)
        hist_merge(&h, &shared[i].set_ns);
    out->set_p50 = hist_quantile(&h, 0.5);
    out->set_p99 = hist_quantile(&h, 0.99);
    out->set_p999 = hist_quantile(&h, 0.999);
    out->set_max = h.max;
#if SHMC_LAYOUT_VERSION >= 3
    shmc_stats s1;
    if (c && shmc_stats_get(c, &s1) == SHMC_OK)
        out->ejections = s1.ejections - ej0;
#else
    (void)ej0;
#endif
}

/* ---- capacity ---- */

typedef struct capacity_result {
    bool done;
    shmc_info info;
    /* At the first eviction of any kind (the headline figure). */
    uint64_t inserted;           /* sets issued when evictions first became > 0 */
    uint64_t items_held;         /* stats.items at that moment */
    uint64_t evictions;
    double bytes_per_item;       /* capacity size / items_held */
    /* When storage is full: the first set that evicted a whole storage
     * segment (evictions grew by more than the one index entry a set can
     * displace).  Evictions before it came from full index bucket pairs. */
    bool full_done;
    bool full_exact;             /* stats were sampled after every set */
    uint64_t full_inserted;
    uint64_t full_items;         /* stats.items just before that set */
    uint64_t full_index_evictions;
    double full_bytes_per_item;
    double insert_rate;          /* sets/s during the fill (stats calls included) */
    bool verified;
    uint64_t verify_items;
} capacity_result;

static void run_capacity(capacity_result *cr)
{
    memset(cr, 0, sizeof *cr);
    char name[SHMC_MAX_NAME + 1];
    snprintf(name, sizeof name, "%.*s-cap", (int)(SHMC_MAX_NAME - 4), cfg.name);
    shmc_t *c = open_fresh(name, cfg.capacity_size, 0, 0);
    if (!c)
        return;
    if (!check(shmc_info_get(c, &cr->info), "shmc_info_get"))
        goto out;

    unsigned char val[VALUE_LEN];
    fill_value(val, 7);
    char key[KEY_LEN];
    shmc_stats s;
    uint64_t i = 0, prev_ev = 0, prev_items = 0, step = 0;
    /* Far from full, sample the stats rarely; near the end, after every set,
     * so that the counts are exact to the item. */
    uint64_t near = 4 * cr->info.segment_bytes + (1u << 20);
    uint64_t limit = cfg.capacity_size / (KEY_LEN + VALUE_LEN) + 1; /* can never hold more */
    uint64_t t0 = now_ns();
    for (;;) {
        if (!check(shmc_stats_get(c, &s), "shmc_stats_get"))
            goto out;
        if (!cr->done && s.evictions > 0) {
            cr->done = true;
            cr->inserted = i;
            cr->items_held = s.items;
            cr->evictions = s.evictions;
            cr->bytes_per_item = s.items ? (double)cfg.capacity_size / (double)s.items : 0.0;
        }
        if (s.evictions > prev_ev + step) {
            /* More evictions than sets since the last sample: a storage
             * segment was evicted. */
            cr->full_done = true;
            cr->full_exact = step == 1;
            cr->full_inserted = i - 1;
            cr->full_items = prev_items;
            cr->full_index_evictions = prev_ev;
            cr->full_bytes_per_item =
                prev_items ? (double)cfg.capacity_size / (double)prev_items : 0.0;
            break;
        }
        if (i > limit) {
            fprintf(stderr, "bench_core: capacity: %" PRIu64 " sets and storage never "
                    "filled; stats.evictions not counted?\n", i);
            failures++;
            break;
        }
        prev_ev = s.evictions;
        prev_items = s.items;
        step = s.bytes_free > near ? 4096 : 1;
        for (uint64_t j = 0; j < step; j++, i++) {
            format_key(key, 'c', i);
            memcpy(val, &i, sizeof i);
            shmc_status st = shmc_set(c, key, KEY_LEN, val, VALUE_LEN, 0, 0);
            if (!check(st, "shmc_set (capacity)"))
                goto out;
        }
    }
    cr->insert_rate = (double)i * 1e9 / (double)(now_ns() - t0);

    shmc_verify_report rep;
    memset(&rep, 0, sizeof rep);
    shmc_status st = shmc_verify(c, &rep);
    if (st == SHMC_OK) {
        cr->verified = true;
        cr->verify_items = rep.items;
        if (rep.items != s.items)
            fprintf(stderr, "bench_core: capacity: note: shmc_verify counts %" PRIu64
                    " items, stats.items %" PRIu64 "\n", rep.items, s.items);
    } else {
        fprintf(stderr, "bench_core: capacity: shmc_verify: %s: %s\n", shmc_strerror(st),
                rep.first_error);
        failures++;
    }
out:
    shmc_close(c);
    (void)shmc_destroy(name);
}

/* ---- overwrite churn ---- */

typedef struct churn_result {
    bool done;
    uint64_t lost, stale, sets;
    shmc_stats st;
    double sets_per_s;
} churn_result;

static churn_result churn;

static void run_churn(void)
{
    char name[SHMC_MAX_NAME + 1];
    snprintf(name, sizeof name, "%.*s-churn", (int)(SHMC_MAX_NAME - 6), cfg.name);
    shmc_t *c = open_fresh(name, cfg.churn_size, 0, 0);
    if (!c)
        return;
    uint64_t n = cfg.churn_keys, *last = calloc(n, sizeof *last), rng = 0x18181818;
    unsigned char val[VALUE_LEN];
    char key[KEY_LEN];
    fill_value(val, 3);
    if (!last)
        goto out;
    for (uint64_t i = 0; i < n; i++) {
        format_key(key, 'w', i);
        memcpy(val, &last[i], sizeof last[i]);
        if (!check(shmc_set(c, key, KEY_LEN, val, VALUE_LEN, 0, 0), "shmc_set (churn)"))
            goto out;
    }
    uint64_t t0 = now_ns();
    for (uint64_t k = 1; k <= cfg.churn_sets; k++) {
        uint64_t i = rng_next(&rng) % n;
        format_key(key, 'w', i);
        last[i] = k;
        memcpy(val, &k, sizeof k);
        if (!check(shmc_set(c, key, KEY_LEN, val, VALUE_LEN, 0, 0), "shmc_set (churn)"))
            goto out;
    }
    churn.sets_per_s = (double)cfg.churn_sets * 1e9 / (double)(now_ns() - t0);
    for (uint64_t i = 0; i < n; i++) {
        size_t vl;
        uint64_t q;
        format_key(key, 'w', i);
        shmc_status st = shmc_get(c, key, KEY_LEN, val, sizeof val, &vl, NULL);
        if (st == SHMC_NOT_FOUND) {
            churn.lost++;
            continue;
        }
        if (!check(st, "shmc_get (churn)"))
            goto out;
        memcpy(&q, val, sizeof q);
        if (vl != VALUE_LEN || q != last[i])
            churn.stale++;
    }
    churn.sets = cfg.churn_sets;
    churn.done = check(shmc_stats_get(c, &churn.st), "shmc_stats_get");
out:
    free(last);
    shmc_close(c);
    (void)shmc_destroy(name);
}

/* ---- output ---- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int write_json(const char *path, const run_result *runs, const run_result *local_runs,
                      unsigned nruns, const capacity_result *cr, double preload_rate)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_core: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"shmcache_version\": \"%d.%d.%d\",\n", SHMC_VERSION_MAJOR,
            SHMC_VERSION_MINOR, SHMC_VERSION_PATCH);
    fprintf(f, "  \"machine\": {\"cpu\": ");
    json_string(f, machine.cpu);
    fprintf(f, ", \"nproc\": %ld, \"kernel\": ", machine.nproc);
    json_string(f, machine.kernel);
    fprintf(f, "},\n  \"build\": {\"buildtype\": ");
    json_string(f, BENCH_BUILDTYPE);
    fprintf(f, ", \"sanitize\": ");
    json_string(f, BENCH_SANITIZE);
    fprintf(f, ", \"compiler\": ");
    json_string(f, BENCH_COMPILER);
    fprintf(f, "},\n  \"config\": {\"seconds\": %.3f, \"keys\": %u, \"key_bytes\": %d, "
               "\"value_bytes\": %d, \"cache_bytes\": %" PRIu64 ", \"max_items\": %" PRIu64
               ", \"prefault\": %s, \"warm\": %s, \"hugepages\": %s, "
               "\"shmem_huge_bytes\": %" PRIu64 "},\n",
            cfg.seconds, cfg.keys, KEY_LEN, VALUE_LEN, cfg.size, cfg.max_items,
            cfg.prefault ? "true" : "false", cfg.warm ? "true" : "false",
            cfg.hugepages ? "true" : "false", shmem_huge_bytes);
    fprintf(f, "  \"preload_sets_per_sec\": %.0f,\n", preload_rate);
    fprintf(f, "  \"throughput\": [");
    for (unsigned i = 0; i < nruns; i++) {
        const run_result *r = &runs[i];
        fprintf(f, "%s\n    {\"workload\": \"%s\", \"procs\": %u, \"total_ops_per_sec\": %.0f, "
                   "\"private_ops_per_sec\": %.0f, \"per_process_ops_per_sec\": [",
                i ? "," : "", wl_id[r->wl], r->procs, r->total_ops_s, local_runs[i].total_ops_s);
        for (unsigned p = 0; p < r->procs; p++)
            fprintf(f, "%s%.0f", p ? ", " : "", r->per_proc_ops_s[p]);
        fprintf(f, "], \"ops\": %" PRIu64 ", ", r->ops);
        if (r->hit_rate >= 0)
            fprintf(f, "\"get_hit_rate\": %.6f, ", r->hit_rate);
        else
            fprintf(f, "\"get_hit_rate\": null, ");
        fprintf(f, "\"enomem\": %" PRIu64 ", \"errors\": %" PRIu64 "}", r->enomem, r->errors);
    }
    fprintf(f, "%s],\n", nruns ? "\n  " : "");
    if (cr && cr->done) {
        fprintf(f, "  \"capacity\": {\"cache_bytes\": %" PRIu64 ", \"data_bytes\": %" PRIu64
                   ", \"storage_segments\": %u, \"storage_segment_bytes\": %" PRIu64
                   ", \"index_slots\": %u,\n", cfg.capacity_size, cr->info.data_bytes,
                cr->info.segments, cr->info.segment_bytes, cr->info.index_slots);
        fprintf(f, "    \"first_eviction\": {\"inserted\": %" PRIu64 ", \"items_held\": %"
                   PRIu64 ", \"evictions\": %" PRIu64 ", \"bytes_per_item\": %.2f},\n",
                cr->inserted, cr->items_held, cr->evictions, cr->bytes_per_item);
        if (cr->full_done)
            fprintf(f, "    \"storage_full\": {\"inserted\": %" PRIu64 ", \"items_held\": %"
                       PRIu64 ", \"index_evictions_before\": %" PRIu64
                       ", \"bytes_per_item\": %.2f, \"exact\": %s},\n",
                    cr->full_inserted, cr->full_items, cr->full_index_evictions,
                    cr->full_bytes_per_item, cr->full_exact ? "true" : "false");
        else
            fprintf(f, "    \"storage_full\": null,\n");
        fprintf(f, "    \"insert_sets_per_sec\": %.0f}%s\n", cr->insert_rate,
                churn.done ? "," : "");
    } else {
        fprintf(f, "  \"capacity\": null%s\n", churn.done ? "," : "");
    }
    if (churn.done)
        fprintf(f, "  \"churn\": {\"keys\": %u, \"cache_bytes\": %" PRIu64 ", \"sets\": %" PRIu64
                   ", \"keys_lost\": %" PRIu64 ", \"keys_stale\": %" PRIu64
                   ", \"evictions\": %" PRIu64 ", \"compacted\": %" PRIu64
                   ", \"compactions\": %" PRIu64 ", \"bytes_live\": %" PRIu64
                   ", \"bytes_dead\": %" PRIu64 ", \"sets_per_sec\": %.0f}\n",
                cfg.churn_keys, cfg.churn_size, churn.sets, churn.lost, churn.stale,
                churn.st.evictions, churn.st.compacted, churn.st.compactions,
                churn.st.bytes_used, churn.st.bytes_dead, churn.sets_per_s);
    fprintf(f, "}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "bench_core: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- main ---- */

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--seconds S] [--procs LIST] [--keys N] [--size-mib M]\n"
            "          [--capacity-mib M] [--skip-capacity] [--skip-throughput]\n"
            "          [--prefault] [--max-items N] [--workloads LIST] [--churn]\n"
            "          [--churn-keys N] [--churn-mib M] [--churn-sets N] [--name NAME]\n"
            "          [--json FILE]\n"
            "\n"
            "  --seconds S        duration of each throughput run per process (default 2)\n"
            "  --procs LIST       comma-separated process counts (default 1,2)\n"
            "  --keys N           preloaded keys (default 100000)\n"
            "  --size-mib M       cache size for the throughput runs (default 256)\n"
            "  --capacity-mib M   cache size for the items-per-GiB fill (default 1024)\n"
            "  --skip-capacity    do not run the capacity fill\n"
            "  --skip-throughput  do not run the throughput runs\n"
            "  --prefault         open the throughput cache with SHMC_OPEN_PREFAULT: every\n"
            "                     worker maps the whole segment before its run\n"
            "  --warm             before the timed runs, overwrite the preloaded keys until\n"
            "                     the storage has been written over twice, so that the runs\n"
            "                     see a cache in its steady state (segments reused, live\n"
            "                     items spread over the storage) rather than storage being\n"
            "                     touched for the first time\n"
            "  --hugepages        put the private tables on transparent huge pages too\n"
            "                     (madvise), for a cache whose /dev/shm gives it huge\n"
            "                     pages (README, \"Huge pages\"); the header line says\n"
            "                     how much of the cache is on huge pages\n"
            "  --churn            also run the overwrite churn: --churn-keys keys in a\n"
            "                     --churn-mib cache, --churn-sets random overwrites, no\n"
            "                     reads; reports the live keys lost (defaults 100000,\n"
            "                     64, 10000000)\n"
            "  --max-items N      options.max_items of the throughput cache: its index\n"
            "                     holds N items (default 0: sized by the cache size)\n"
            "  --workloads LIST   comma-separated subset of get,mixed,set (default all)\n"
            "  --name NAME        cache name prefix (default shmcache-bench-<pid>)\n"
            "  --json FILE        also write the results as JSON to FILE\n",
            argv0);
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
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

static bool parse_procs(const char *s)
{
    cfg.nprocs_count = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (cfg.nprocs_count == sizeof cfg.nprocs_list / sizeof cfg.nprocs_list[0] ||
            !parse_u64(tok, 1, MAX_PROCS, &v))
            return false;
        cfg.nprocs_list[cfg.nprocs_count++] = (unsigned)v;
    }
    return cfg.nprocs_count > 0;
}

static bool parse_workloads(const char *s)
{
    cfg.wl_mask = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int wl = strcmp(tok, "get") == 0     ? WL_GET
                 : strcmp(tok, "mixed") == 0 ? WL_MIXED
                 : strcmp(tok, "set") == 0   ? WL_SET
                                             : -1;
        if (wl < 0)
            return false;
        cfg.wl_mask |= 1u << wl;
    }
    return cfg.wl_mask != 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "seconds", required_argument, NULL, 's' },
        { "procs", required_argument, NULL, 'p' },
        { "keys", required_argument, NULL, 'k' },
        { "size-mib", required_argument, NULL, 'S' },
        { "capacity-mib", required_argument, NULL, 'C' },
        { "skip-capacity", no_argument, NULL, 'c' },
        { "skip-throughput", no_argument, NULL, 't' },
        { "prefault", no_argument, NULL, 'P' },
        { "warm", no_argument, NULL, 'A' },
        { "hugepages", no_argument, NULL, 'H' },
        { "churn", no_argument, NULL, 'W' },
        { "churn-keys", required_argument, NULL, 'K' },
        { "churn-mib", required_argument, NULL, 'M' },
        { "churn-sets", required_argument, NULL, 'N' },
        { "max-items", required_argument, NULL, 'm' },
        { "workloads", required_argument, NULL, 'w' },
        { "name", required_argument, NULL, 'n' },
        { "json", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    snprintf(cfg.name, sizeof cfg.name, "shmcache-bench-%ld", (long)getpid());
    int opt;
    uint64_t v;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': {
            char *end;
            errno = 0;
            cfg.seconds = strtod(optarg, &end);
            if (errno || *end || !(cfg.seconds > 0 && cfg.seconds <= 3600))
                goto bad;
            break;
        }
        case 'p':
            if (!parse_procs(optarg))
                goto bad;
            break;
        case 'k':
            if (!parse_u64(optarg, 1, 100000000, &v))
                goto bad;
            cfg.keys = (unsigned)v;
            break;
        case 'S':
            if (!parse_u64(optarg, 1, 1u << 20, &v))
                goto bad;
            cfg.size = v << 20;
            break;
        case 'C':
            if (!parse_u64(optarg, 1, 1u << 20, &v))
                goto bad;
            cfg.capacity_size = v << 20;
            break;
        case 'c':
            cfg.skip_capacity = true;
            break;
        case 't':
            cfg.skip_throughput = true;
            break;
        case 'P':
            cfg.prefault = true;
            break;
        case 'A':
            cfg.warm = true;
            break;
        case 'H':
            cfg.hugepages = true;
            break;
        case 'W':
            cfg.churn = true;
            break;
        case 'K':
            if (!parse_u64(optarg, 1, 100000000, &v))
                goto bad;
            cfg.churn_keys = (unsigned)v;
            break;
        case 'M':
            if (!parse_u64(optarg, 2, 1u << 20, &v))
                goto bad;
            cfg.churn_size = v << 20;
            break;
        case 'N':
            if (!parse_u64(optarg, 1, 1000000000000ull, &v))
                goto bad;
            cfg.churn_sets = v;
            break;
        case 'm':
            if (!parse_u64(optarg, 1, 1ull << 40, &v))
                goto bad;
            cfg.max_items = v;
            break;
        case 'w':
            if (!parse_workloads(optarg))
                goto bad;
            break;
        case 'n':
            if (strlen(optarg) > SHMC_MAX_NAME - 4)
                goto bad;
            snprintf(cfg.name, sizeof cfg.name, "%s", optarg);
            break;
        case 'j':
            cfg.json = optarg;
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

    machine_info();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("shmcache %d.%d.%d bench_core (build: %s, sanitize: %s, %s)\n", SHMC_VERSION_MAJOR,
           SHMC_VERSION_MINOR, SHMC_VERSION_PATCH, BENCH_BUILDTYPE, BENCH_SANITIZE,
           BENCH_COMPILER);
    printf("machine: %s, %ld CPUs online, %s\n", machine.cpu, machine.nproc, machine.kernel);
    if (strcmp(BENCH_SANITIZE, "none") != 0 || strcmp(BENCH_BUILDTYPE, "debug") == 0)
        printf("WARNING: not an optimised, uninstrumented build: figures are not "
               "representative\n");

    run_result runs[WL_COUNT * 8], local_runs[WL_COUNT * 8];
    unsigned nruns = 0;
    double preload_rate = 0;

    if (!cfg.skip_throughput) {
        unsigned maxp = 0;
        for (unsigned i = 0; i < cfg.nprocs_count; i++)
            if (cfg.nprocs_list[i] > maxp)
                maxp = cfg.nprocs_list[i];
        if ((long)maxp > machine.nproc)
            printf("note: %u processes on %ld CPUs: runs with more processes than CPUs "
                   "measure time-sharing\n", maxp, machine.nproc);

        keys = malloc(sizeof *keys * cfg.keys);
        proc_result *shared = mmap(NULL, sizeof(proc_result) * MAX_PROCS,
                                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (!keys || shared == MAP_FAILED) {
            fprintf(stderr, "bench_core: out of memory\n");
            return 1;
        }
        for (unsigned i = 0; i < cfg.keys; i++)
            format_key(keys[i], 'k', i);

        shmc_t *c = open_fresh(cfg.name, cfg.size, cfg.max_items, cfg.prefault ? SHMC_OPEN_PREFAULT : 0);
        if (!c)
            return 1;
        shmc_info info;
        if (!check(shmc_info_get(c, &info), "shmc_info_get"))
            return 1;
        printf("workload: %u keys of %d B, values of %d B, uniform key choice, %.1f s per "
               "process per run%s\n", cfg.keys, KEY_LEN, VALUE_LEN, cfg.seconds,
               cfg.prefault ? "; SHMC_OPEN_PREFAULT (each worker maps the whole cache first)"
                            : "");
        printf("cache: %" PRIu64 " MiB (%u storage segments of %" PRIu64 " KiB, %u index "
               "slots, max_items %" PRIu64 ")\n", info.size >> 20, info.segments,
               info.segment_bytes >> 10, info.index_slots, info.max_items);
        shmem_huge_bytes = read_shmem_huge();
        printf("huge pages: %" PRIu64 " MiB of shared memory on huge pages (system-wide); "
               "private tables %s\n", shmem_huge_bytes >> 20,
               cfg.hugepages ? "advised huge pages (--hugepages)" : "on malloc's pages");

        unsigned char val[VALUE_LEN];
        fill_value(val, 0);
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < cfg.keys; i++) {
            if (!check(shmc_set(c, keys[i], KEY_LEN, val, VALUE_LEN, 0, 0), "preload shmc_set"))
                return 1;
        }
        preload_rate = (double)cfg.keys * 1e9 / (double)(now_ns() - t0);
        shmc_stats s;
        if (check(shmc_stats_get(c, &s), "shmc_stats_get")) {
            printf("preload: %u sets in one process at %.2f M sets/s; items %" PRIu64
                   ", evictions %" PRIu64 "\n", cfg.keys, preload_rate / 1e6, s.items,
                   s.evictions);
        }
        if (cfg.warm && !warm_up(c, &info))
            return 1;

        /* gets first so that their hit rate reflects the preload alone; each
         * shmcache run is followed at once by the same run on private tables,
         * so that both see the same machine state */
        for (int wl = 0; wl < WL_COUNT; wl++) {
            if (!(cfg.wl_mask & (1u << wl)))
                continue;
            for (unsigned i = 0; i < cfg.nprocs_count; i++) {
                run_workload(c, (enum workload)wl, cfg.nprocs_list[i], shared, &runs[nruns]);
                run_workload(NULL, (enum workload)wl, cfg.nprocs_list[i], shared,
                             &local_runs[nruns]);
                nruns++;
            }
        }
        if (check(shmc_stats_get(c, &s), "shmc_stats_get"))
            printf("after the runs: items %" PRIu64 ", evictions %" PRIu64 ", writes "
                   "refused (ENOMEM) %" PRIu64 ", slots reaped %" PRIu64 "\n", s.items,
                   s.evictions, s.enomem, s.slots_reaped);
        shmc_close(c);
        (void)shmc_destroy(cfg.name);

        printf("\n%-12s %5s %15s   %-30s %9s\n", "workload", "procs", "total ops/s",
               "per process ops/s", "get hits");
        for (unsigned i = 0; i < nruns; i++) {
            const run_result *r = &runs[i];
            char tot[32], per[128] = "", one[32], hit[16] = "-";
            size_t used = 0;
            for (unsigned p = 0; p < r->procs && used < sizeof per - 32; p++)
                used += (size_t)snprintf(per + used, sizeof per - used, "%s%s",
                                         p ? " / " : "",
                                         human(r->per_proc_ops_s[p], one, sizeof one));
            if (r->hit_rate >= 0)
                snprintf(hit, sizeof hit, "%.1f%%", r->hit_rate * 100.0);
            printf("%-12s %5u %15s   %-30s %9s", wl_name[r->wl], r->procs,
                   human(r->total_ops_s, tot, sizeof tot), per, hit);
            if (r->enomem)
                printf("  (ENOMEM %" PRIu64 ")", r->enomem);
            if (r->errors)
                printf("  (ERRORS %" PRIu64 ")", r->errors);
            printf("\n");
        }
        printf("\nshmc_set latency (each set timed; us):\n%-12s %5s %9s %9s %9s %9s %10s\n",
               "workload", "procs", "p50", "p99", "p99.9", "max", "ejections");
        for (unsigned i = 0; i < nruns; i++) {
            const run_result *r = &runs[i];
            if (r->wl == WL_GET)
                continue;
            printf("%-12s %5u %9.2f %9.2f %9.2f %9.1f %10" PRIu64 "\n", wl_name[r->wl],
                   r->procs, r->set_p50 / 1e3, r->set_p99 / 1e3, r->set_p999 / 1e3,
                   r->set_max / 1e3, r->ejections);
        }
        printf("\nthe same runs on a private in-process hash table per process (local memory,\n"
               "no sharing; run right after each shmcache run):\n");
        printf("%-12s %5s %15s %15s %18s\n", "workload", "procs", "shmcache ops/s",
               "private ops/s", "shmcache/private");
        for (unsigned i = 0; i < nruns; i++) {
            char a[32], b[32];
            double ratio = local_runs[i].total_ops_s > 0
                               ? runs[i].total_ops_s / local_runs[i].total_ops_s : 0.0;
            printf("%-12s %5u %15s %15s %17.2fx\n", wl_name[runs[i].wl], runs[i].procs,
                   human(runs[i].total_ops_s, a, sizeof a),
                   human(local_runs[i].total_ops_s, b, sizeof b), ratio);
        }
        munmap(shared, sizeof(proc_result) * MAX_PROCS);
        free(keys);
    }

    capacity_result cr;
    memset(&cr, 0, sizeof cr);
    if (!cfg.skip_capacity) {
        printf("\nitems per GiB: filling a %" PRIu64 " MiB cache with distinct %d B key / "
               "%d B value items until storage is full...\n", cfg.capacity_size >> 20,
               KEY_LEN, VALUE_LEN);
        run_capacity(&cr);
        if (cr.done) {
            double scale = (double)(1ull << 30) / (double)cfg.capacity_size;
            printf("  cache: %" PRIu64 " MiB of item storage in %u segments of %" PRIu64
                   " KiB, %u index slots; fill rate %.2f M sets/s (incl. stats polling)\n",
                   cr.info.data_bytes >> 20, cr.info.segments, cr.info.segment_bytes >> 10,
                   cr.info.index_slots, cr.insert_rate / 1e6);
            printf("  %-34s %12s %14s %16s\n", "", "sets", "items held", "bytes per item");
            printf("  %-34s %12" PRIu64 " %14" PRIu64 " %16.1f\n",
                   "at the first eviction (any cause)", cr.inserted, cr.items_held,
                   cr.bytes_per_item);
            if (cr.full_done)
                printf("  %-34s %12" PRIu64 " %14" PRIu64 " %16.1f%s\n",
                       "when storage is full", cr.full_inserted, cr.full_items,
                       cr.full_bytes_per_item, cr.full_exact ? "" : " (approx.)");
            printf("  items per GiB: %.0f at the first eviction", (double)cr.items_held * scale);
            if (cr.full_done)
                printf(", %.0f when storage is full (%" PRIu64 " single items were evicted "
                       "before, by full index bucket pairs)",
                       (double)cr.full_items * scale, cr.full_index_evictions);
            printf("\n  payload per item: %d B; all overheads included (header, slot table, "
                   "index, item headers, padding, segment slack)\n", KEY_LEN + VALUE_LEN);
            if (cr.verified)
                printf("  shmc_verify: consistent, %" PRIu64 " items\n", cr.verify_items);
        }
    }

    if (cfg.churn) {
        printf("\noverwrite churn: %u keys of %d B / %d B in a %" PRIu64 " MiB cache, %" PRIu64
               " random overwrites, no reads...\n", cfg.churn_keys, KEY_LEN, VALUE_LEN,
               cfg.churn_size >> 20, cfg.churn_sets);
        run_churn();
        if (churn.done)
            printf("  live keys lost %" PRIu64 " (absent) + %" PRIu64 " (stale value) of %u; "
                   "evictions %" PRIu64 ", compacted %" PRIu64 " items in %" PRIu64
                   " segments; at the end %.1f MiB live, %.1f MiB dead; %.2f M sets/s\n",
                   churn.lost, churn.stale, cfg.churn_keys, churn.st.evictions,
                   churn.st.compacted, churn.st.compactions,
                   (double)churn.st.bytes_used / 1048576.0,
                   (double)churn.st.bytes_dead / 1048576.0, churn.sets_per_s / 1e6);
    }

    if (cfg.json && write_json(cfg.json, runs, local_runs, nruns, cfg.skip_capacity ? NULL : &cr,
                               preload_rate) == 0)
        printf("\nJSON written to %s\n", cfg.json);
    if (failures)
        fprintf(stderr, "bench_core: %d failure(s)\n", failures);
    return failures ? 1 : 0;

bad:
    usage(stderr, argv[0]);
    return 2;
}
