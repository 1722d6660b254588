/*
 * bench_compare — shmcache against memcached and Redis on the same machine,
 * in the same run, so that the figures can be read as ratios on a noisy host.
 *
 * Every measurement forks worker processes (what a preforked server does).
 * shmcache workers share one cache opened by the parent; memcached and Redis
 * workers each open their own unix-socket connection and make one request
 * per round trip through the small blocking clients of peer_client.c.  The
 * same workload code runs for every system; only the few calls of the
 * `backend` differ.  Runs of the different systems follow each other
 * directly, so that each ratio compares figures taken a few seconds apart.
 *
 * Sections (--only to pick some):
 *   kv    key/value workload: K keys, key and value sizes, get/set mix,
 *         uniform or Zipf keys, TTL; for 1, 2, 4, 8 processes (scaling) and a
 *         Zipf run.  ops/s (total, per process), latency p50/p99/p99.9/max
 *         from merged per-process histograms, hit ratio.
 *   s1    5 writers + 5 readers x 10,000 ops on distinct keys.
 *   s2    one named lock, acquire+release cycles in 10 s by 1, 2, 5, 10
 *         processes: shmc_lock_acquire/release vs Redis SET NX PX + a
 *         compare-and-delete script; a counter incremented non-atomically in
 *         the critical section must equal the cycles (mutual exclusion).
 *   s3    500 concurrent updater processes x 1000 compare-and-set increments
 *         of one key: shmcache gets/cas, memcached gets/cas, Redis Lua CAS,
 *         Redis WATCH/MULTI/EXEC (time-capped; the counter must equal the
 *         successful updates).
 *   s4    10 processes miss one key whose fill takes 100 ms: fills performed
 *         and each caller's latency over one fill, with shmc_get_or_fill and
 *         with plain get-miss-compute-set (and a Redis lock + poll variant).
 *   s5    gets/cas retry loops from 2 processes updating one 100 B record.
 *   mem   16 B key / 100 B value items held per GiB before the first
 *         eviction: shmcache vs memcached (-m) vs Redis (maxmemory).
 *
 * Output: the per-run figures as they come, then a summary table of ratios
 * shmcache/peer on stdout; with --out DIR also DIR/summary.csv,
 * DIR/results.csv (every figure, long format), DIR/results.json, and
 * DIR/scaling.dat + DIR/latency.dat for bench/plot.gp.  bench/run.sh starts
 * the servers and does all of this with one command.
 *
 * Exit status: 0, or 1 if a correctness check failed (lost update, broken
 * mutual exclusion, wrong value) or a call failed unexpectedly.  Features
 * the library reports as not implemented (SHMC_EINVAL from a valid call) are
 * shown as "n/a" and are not failures.
 */
#include "shmcache.h"
#include "bench_hist.h"
#include "peer_client.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

enum { SYS_SHMC, SYS_MC, SYS_REDIS, NSYS };
static const char *const sys_name[NSYS] = { "shmcache", "memcached", "redis" };

#define MAX_KV_PROCS 64
#define MAX_PROCS    2000
#define LOCK_NAME    "bench:lock"
#define LEASE_MS     10000u

/* ------------------------------------------------------------------------ */
/* configuration                                                            */

static struct {
    bool quick;
    char name[128];               /* shmcache segment name (unique per run) */
    const char *out;              /* output directory (NULL: stdout only) */
    const char *mc_sock, *mc_cap_sock, *rd_sock;
    long mc_cap_pid;
    unsigned sections;            /* bit per section */
    uint64_t seed;
    /* kv */
    double kv_seconds;
    unsigned keys, key_size, value_size;
    double get_ratio;
    double zipf_s;
    uint64_t ttl_ms;
    unsigned procs[8], nprocs;
    unsigned main_procs;
    uint64_t cache_mib;
    bool prefault;         /* open the cache with SHMC_OPEN_PREFAULT */
    /* scenarios */
    unsigned s1_ops;
    double lock_seconds;
    unsigned lock_procs[8], nlock_procs;
    unsigned redis_lock_retry_us;
    unsigned s3_updaters, s3_loops;
    double s3_cap_seconds;
    unsigned s4_procs, s4_rounds, s4_fill_ms, s4_poll_ms;
    double s5_seconds;
    unsigned s5_record;
    uint64_t cap_mib;
} cfg;

enum { SEC_KV = 1, SEC_S1 = 2, SEC_S2 = 4, SEC_S3 = 8, SEC_S4 = 16, SEC_S5 = 32, SEC_MEM = 64 };
static const char *const sec_names[] = { "kv", "s1", "s2", "s3", "s4", "s5", "mem" };

static void cfg_defaults(bool quick)
{
    cfg.quick = quick;
    cfg.sections = 0x7f;
    cfg.seed = 20240601;
    cfg.kv_seconds = quick ? 0.3 : 2.0;
    cfg.keys = quick ? 20000 : 100000;
    cfg.key_size = 16;
    cfg.value_size = 100;
    cfg.get_ratio = 0.9;
    cfg.zipf_s = 0.99;
    cfg.ttl_ms = 300000;
    unsigned p[] = { 1, 2, 4, 8 };
    memcpy(cfg.procs, p, sizeof p);
    cfg.nprocs = 4;
    cfg.main_procs = 2;
    cfg.cache_mib = 256;
    cfg.s1_ops = quick ? 2000 : 10000;
    cfg.lock_seconds = quick ? 0.5 : 10.0;
    unsigned lp[] = { 1, 2, 5, 10 };
    memcpy(cfg.lock_procs, lp, sizeof lp);
    cfg.nlock_procs = 4;
    cfg.redis_lock_retry_us = 0;
    cfg.s3_updaters = quick ? 20 : 500;
    cfg.s3_loops = quick ? 100 : 1000;
    cfg.s3_cap_seconds = quick ? 1.0 : 8.0;
    cfg.s4_procs = 10;
    cfg.s4_rounds = quick ? 2 : 5;
    cfg.s4_fill_ms = 100;
    cfg.s4_poll_ms = 5;
    cfg.s5_seconds = quick ? 0.3 : 2.0;
    cfg.s5_record = 100;
    cfg.cap_mib = quick ? 64 : 1024;
}

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static int failures;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void sleep_us(unsigned us)
{
    struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* A fixed seed per (run, worker): runs are repeatable. */
static uint64_t worker_seed(unsigned salt, unsigned idx)
{
    uint64_t s = cfg.seed ^ ((uint64_t)salt << 32) ^ ((uint64_t)idx * 0x100000001b3ull);
    return splitmix64(&s) | 1;
}

static const char *human(double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "n/a");
    else if (fabs(v) >= 1e6)
        snprintf(buf, len, "%.2f M", v / 1e6);
    else if (fabs(v) >= 1e4)
        snprintf(buf, len, "%.1f k", v / 1e3);
    else if (fabs(v) >= 100 || v == floor(v))
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%.2f", v);
    return buf;
}

static const char *fmt_us(double ns, char *buf, size_t len)
{
    double us = ns / 1e3;
    if (isnan(ns))
        snprintf(buf, len, "n/a");
    else if (us < 10)
        snprintf(buf, len, "%.2f", us);
    else if (us < 1000)
        snprintf(buf, len, "%.1f", us);
    else
        snprintf(buf, len, "%.0f", us);
    return buf;
}

/* Keys: "<tag><index>", the index zero-padded to fill key_size bytes (no
 * NUL); an index too long for the size keeps its low digits. */
static void make_key(char *out, unsigned size, char tag, uint64_t i)
{
    for (unsigned p = size; p > 1; p--) {
        out[p - 1] = (char)('0' + i % 10);
        i /= 10;
    }
    out[0] = tag;
}

/* Records of the CAS scenarios: a 20-digit counter, then filler. */
#define REC_DIGITS 20
static void make_rec(char *out, size_t size, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%020" PRIu64, v);
    memcpy(out, tmp, REC_DIGITS);
    for (size_t i = REC_DIGITS; i < size; i++)
        out[i] = (char)('a' + i % 26);
}

static bool parse_rec(const char *buf, size_t len, uint64_t *v)
{
    if (len < REC_DIGITS)
        return false;
    uint64_t x = 0;
    for (int i = 0; i < REC_DIGITS; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(buf[i] - '0');
    }
    *v = x;
    return true;
}

/* ------------------------------------------------------------------------ */
/* machine                                                                  */

static struct {
    char cpu[128];
    long nproc;
    char kernel[200];
    char date[64];
} machine;

static void machine_info(void)
{
    machine.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(machine.cpu, sizeof machine.cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) != 0)
                continue;
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
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(machine.kernel, sizeof machine.kernel, "%s %s %s", u.sysname, u.release,
                 u.machine);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(machine.date, sizeof machine.date, "%Y-%m-%d %H:%M UTC", &tm);
}

/* VmRSS of a process in bytes, 0 if unknown. */
static uint64_t proc_rss(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %" SCNu64, &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* ------------------------------------------------------------------------ */
/* results: a growable text buffer for the CSV and JSON records             */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            perror("bench_compare: realloc");
            exit(1);
        }
        b->p = np;
        b->cap = cap;
    }
}

static sbuf csv_long, json_runs;
static unsigned json_nruns;

static void json_num(sbuf *b, double v)
{
    if (isnan(v) || isinf(v))
        sb_printf(b, "null");
    else if (v == floor(v) && fabs(v) < 1e15)
        sb_printf(b, "%.0f", v);
    else
        sb_printf(b, "%.6g", v);
}

typedef struct metric {
    const char *name;
    double v;
} metric;

/* One run's figures, into results.csv and results.json. */
static void record(const char *section, const char *variant, int sys, unsigned procs,
                   const metric *m, int nm)
{
    sb_printf(&json_runs, "%s\n    {\"section\": \"%s\", \"variant\": \"%s\", \"system\": \"%s\", "
                          "\"procs\": %u, \"metrics\": {",
              json_nruns++ ? "," : "", section, variant, sys_name[sys], procs);
    for (int i = 0; i < nm; i++) {
        sb_printf(&json_runs, "%s\"%s\": ", i ? ", " : "", m[i].name);
        json_num(&json_runs, m[i].v);
        sb_printf(&csv_long, "%s,%s,%s,%u,%s,", section, variant, sys_name[sys], procs,
                  m[i].name);
        if (isnan(m[i].v))
            sb_printf(&csv_long, "\n");
        else
            sb_printf(&csv_long, "%.10g\n", m[i].v);
    }
    sb_printf(&json_runs, "}}");
}

/* The summary: one row per comparison, with a value per system. */
typedef struct srow {
    char section[8];
    char label[112];
    char metric[40];
    int better;                 /* +1: higher is better, -1: lower, 0: neither */
    double v[NSYS];             /* NAN: not measured / not available */
} srow;

static srow rows[160];
static int nrows;

static srow *row_add(const char *section, const char *metric_name, int better, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));
static srow *row_add(const char *section, const char *metric_name, int better, const char *fmt,
                     ...)
{
    static srow scratch;
    srow *r = nrows < (int)(sizeof rows / sizeof rows[0]) ? &rows[nrows++] : &scratch;
    memset(r, 0, sizeof *r);
    snprintf(r->section, sizeof r->section, "%s", section);
    snprintf(r->metric, sizeof r->metric, "%s", metric_name);
    r->better = better;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->label, sizeof r->label, fmt, ap);
    va_end(ap);
    for (int i = 0; i < NSYS; i++)
        r->v[i] = NAN;
    return r;
}

/* ------------------------------------------------------------------------ */
/* systems                                                                  */

static shmc_t *g_cache;                 /* opened by the parent, shared by the children */
static bool have[NSYS];                 /* the system is available in this run */
static pconn g_ctl[NSYS];               /* the parent's control connections */
static char g_sha_unlock[48], g_sha_cas[48];

static const char lua_unlock[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
    "else return 0 end";
/* Compare-and-set by value; on a lost race it returns the current value so
 * that the caller can retry without another GET (nil if the key is gone). */
static const char lua_cas[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end "
    "return v";

typedef struct backend {
    int sys;
    shmc_t *c;
    pconn pc;
} backend;

static const char *sock_of(int sys)
{
    return sys == SYS_MC ? cfg.mc_sock : cfg.rd_sock;
}

static int be_open(backend *b, int sys)
{
    memset(b, 0, sizeof *b);
    b->sys = sys;
    b->pc.fd = -1;
    if (sys == SYS_SHMC) {
        b->c = g_cache;
        /* shmcache's "connect": a first call takes this process's participant
         * slot (and with --prefault maps the whole cache, which a forked child
         * does on its first call), so that it is not timed, as a peer's
         * connect is not. */
        char buf[8];
        size_t l;
        return shmc_get(b->c, "#warm-up", 8, buf, sizeof buf, &l, NULL) == SHMC_NOT_FOUND ? 0 : -1;
    }
    return pc_connect_unix(&b->pc, sock_of(sys), 5000);
}

static void be_close(backend *b)
{
    if (b->sys != SYS_SHMC)
        pc_close(&b->pc);
}

static uint32_t mc_exptime(uint64_t ttl_ms)
{
    return ttl_ms ? (uint32_t)((ttl_ms + 999) / 1000) : 0;
}

/* 1 hit, 0 miss, -1 error. */
static int be_get(backend *b, const void *k, size_t kl, void *buf, size_t cap, size_t *vlen)
{
    switch (b->sys) {
    case SYS_SHMC: {
        shmc_status st = shmc_get(b->c, k, kl, buf, cap, vlen, NULL);
        return st == SHMC_OK ? 1 : st == SHMC_NOT_FOUND ? 0 : -1;
    }
    case SYS_MC:
        return mc_get(&b->pc, k, kl, buf, cap, vlen, NULL);
    default: {
        const void *argv[2] = { "GET", k };
        size_t lens[2] = { 3, kl };
        rreply r;
        if (rd_cmd(&b->pc, &r, buf, cap, 2, argv, lens) != 0)
            return -1;
        if (r.type == RD_NIL)
            return 0;
        if (r.type != RD_BULK)
            return -1;
        *vlen = r.len;
        return 1;
    }
    }
}

/* 0, 1 (shmcache: SHMC_ENOMEM, the write was not made) or -1. */
static int be_set(backend *b, const void *k, size_t kl, const void *v, size_t vl, uint64_t ttl)
{
    switch (b->sys) {
    case SYS_SHMC: {
        shmc_status st = shmc_set(b->c, k, kl, v, vl, 0, ttl);
        return st == SHMC_OK ? 0 : st == SHMC_ENOMEM ? 1 : -1;
    }
    case SYS_MC:
        return mc_store(&b->pc, "set", k, kl, v, vl, 0, mc_exptime(ttl), 0) == MC_STORED ? 0
                                                                                        : -1;
    default: {
        char ttls[24];
        int tn = snprintf(ttls, sizeof ttls, "%" PRIu64, ttl);
        const void *argv[5] = { "SET", k, v, "PX", ttls };
        size_t lens[5] = { 3, kl, vl, 2, (size_t)tn };
        rreply r;
        if (rd_cmd(&b->pc, &r, NULL, 0, ttl ? 5 : 3, argv, lens) != 0)
            return -1;
        return r.type == RD_STATUS ? 0 : -1;
    }
    }
}

/* Empties the system (parent, control connection). 0 or -1. */
static int sys_flush(int sys)
{
    if (sys == SYS_SHMC)
        return shmc_flush(g_cache) == SHMC_OK ? 0 : -1;
    if (sys == SYS_MC)
        return mc_flush_all(&g_ctl[SYS_MC]);
    rreply r;
    if (rd_cmds(&g_ctl[SYS_REDIS], &r, NULL, 0, "FLUSHALL", NULL) != 0)
        return -1;
    return r.type == RD_STATUS ? 0 : -1;
}

/* Sets key (pad-free string) to a value from the parent. 0 or -1. */
static int sys_set(int sys, const void *k, size_t kl, const void *v, size_t vl)
{
    backend b;
    memset(&b, 0, sizeof b);
    b.sys = sys;
    b.c = g_cache;
    if (sys != SYS_SHMC)
        b.pc = g_ctl[sys];
    int rc = be_set(&b, k, kl, v, vl, 0);
    if (sys != SYS_SHMC)
        g_ctl[sys] = b.pc;   /* the buffers may have been reallocated */
    return rc;
}

static int sys_get(int sys, const void *k, size_t kl, void *buf, size_t cap, size_t *vlen)
{
    backend b;
    memset(&b, 0, sizeof b);
    b.sys = sys;
    b.c = g_cache;
    if (sys != SYS_SHMC)
        b.pc = g_ctl[sys];
    int rc = be_get(&b, k, kl, buf, cap, vlen);
    if (sys != SYS_SHMC)
        g_ctl[sys] = b.pc;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* worker processes                                                         */

typedef struct wres {
    uint64_t ops, gets, hits, sets, retries, errors;
    uint64_t enomem;       /* shmcache writes refused with SHMC_ENOMEM (retried/skipped) */
    uint64_t t_start, t_end, lat_ns;
    int unsupported;       /* a shmcache call returned SHMC_EINVAL: not implemented */
    int filled;            /* s4: this caller computed the value */
    char err[160];
    hist h;
} wres;

/* State shared by the parent and every worker of a run. */
typedef struct shared_state {
    volatile uint64_t counter;     /* s2: incremented non-atomically under the lock */
    uint64_t fills;                /* s4: fills performed (atomic) */
} shared_state;

static shared_state *g_sh;

static void werr(wres *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void werr(wres *r, const char *fmt, ...)
{
    r->errors++;
    if (r->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

typedef void (*worker_fn)(backend *b, unsigned idx, unsigned np, wres *r, const void *arg);

static size_t g_wres_bytes;

/* Forks np workers on system sys; each connects, then all start at once.
 * Returns the workers' results (munmap with free_results), NULL on failure. */
static wres *run_procs(int sys, unsigned np, worker_fn fn, const void *arg)
{
    g_wres_bytes = sizeof(wres) * np;
    wres *rs = mmap(NULL, g_wres_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    if (rs == MAP_FAILED) {
        perror("bench_compare: mmap");
        failures++;
        return NULL;
    }
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) {
        perror("bench_compare: pipe");
        exit(1);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t *pids = calloc(np, sizeof *pids);
    if (!pids) {
        perror("bench_compare: calloc");
        exit(1);
    }
    unsigned n = 0;
    for (; n < np; n++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_compare: fork");
            break;
        }
        if (pid == 0) {
            close(ready[0]);
            close(go[1]);
            backend b;
            bool ok = be_open(&b, sys) == 0;
            if (!ok && sys == SYS_SHMC)
                werr(&rs[n], "shmcache: first call failed");
            else if (!ok)
                werr(&rs[n], "connect %s: %s", sock_of(sys), strerror(errno));
            char x = 'r';
            if (write(ready[1], &x, 1) != 1)
                _exit(3);
            close(ready[1]);
            while (read(go[0], &x, 1) < 0 && errno == EINTR) {
            }
            if (ok) {
                fn(&b, n, np, &rs[n], arg);
                be_close(&b);
            }
            _exit(rs[n].errors ? 1 : 0);
        }
        pids[n] = pid;
    }
    close(ready[1]);
    close(go[0]);
    for (unsigned got = 0; got < n;) {
        char buf[256];
        ssize_t k = read(ready[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (unsigned)k;
    }
    close(ready[0]);
    close(go[1]);   /* every worker starts now */
    bool bad = n < np;
    for (unsigned i = 0; i < n; i++) {
        int status;
        while (waitpid(pids[i], &status, 0) < 0) {
            if (errno != EINTR) {
                perror("bench_compare: waitpid");
                exit(1);
            }
        }
        if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 1)) {
            fprintf(stderr, "bench_compare: worker %u of %s died (status 0x%x)\n", i,
                    sys_name[sys], status);
            rs[i].errors++;
            bad = true;
        }
    }
    free(pids);
    if (bad)
        failures++;
    return rs;
}

static void free_results(wres *rs)
{
    if (rs)
        munmap(rs, g_wres_bytes);
}

/* Sums of a run; prints the first worker error. */
typedef struct agg {
    uint64_t ops, gets, hits, sets, retries, errors, enomem;
    uint64_t t_first, t_last;     /* earliest start, latest end */
    double ops_s;                 /* sum over workers of ops / own elapsed */
    bool unsupported;
    hist h;
} agg;

static void aggregate(const wres *rs, unsigned np, agg *a, const char *what)
{
    memset(a, 0, sizeof *a);
    a->t_first = UINT64_MAX;
    bool printed = false;
    for (unsigned i = 0; i < np; i++) {
        const wres *r = &rs[i];
        a->ops += r->ops;
        a->gets += r->gets;
        a->hits += r->hits;
        a->sets += r->sets;
        a->retries += r->retries;
        a->errors += r->errors;
        a->enomem += r->enomem;
        a->unsupported |= r->unsupported != 0;
        if (r->t_start && r->t_start < a->t_first)
            a->t_first = r->t_start;
        if (r->t_end > a->t_last)
            a->t_last = r->t_end;
        if (r->t_end > r->t_start)
            a->ops_s += (double)r->ops * 1e9 / (double)(r->t_end - r->t_start);
        hist_merge(&a->h, &r->h);
        if (r->err[0] && !printed && !r->unsupported) {
            fprintf(stderr, "bench_compare: %s: worker %u: %s\n", what, i, r->err);
            printed = true;
        }
    }
    if (a->t_first == UINT64_MAX)
        a->t_first = a->t_last;
    if (a->enomem)
        printf("  !! %s: %" PRIu64 " shmcache writes were refused with SHMC_ENOMEM (\"%s\"); "
               "counted, not failed\n", what, a->enomem, shmc_strerror(SHMC_ENOMEM));
}

static double wall_s(const agg *a)
{
    return a->t_last > a->t_first ? (double)(a->t_last - a->t_first) / 1e9 : NAN;
}

/* ------------------------------------------------------------------------ */
/* kv: the key/value workload                                               */

static char *g_keys;        /* keys x key_size bytes */
static char *g_value;       /* value_size bytes */
static double *g_zipf_cdf;  /* keys entries: P(rank <= i) */

static void kv_setup(void)
{
    g_keys = malloc((size_t)cfg.keys * cfg.key_size);
    g_value = malloc(cfg.value_size + 1);
    g_zipf_cdf = malloc(sizeof(double) * cfg.keys);
    if (!g_keys || !g_value || !g_zipf_cdf) {
        fprintf(stderr, "bench_compare: out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < cfg.keys; i++)
        make_key(g_keys + (size_t)i * cfg.key_size, cfg.key_size, 'k', i);
    for (unsigned i = 0; i < cfg.value_size; i++)
        g_value[i] = (char)('a' + i % 26);
    double sum = 0;
    for (unsigned i = 0; i < cfg.keys; i++)
        sum += 1.0 / pow((double)(i + 1), cfg.zipf_s);
    double acc = 0;
    for (unsigned i = 0; i < cfg.keys; i++) {
        acc += 1.0 / pow((double)(i + 1), cfg.zipf_s) / sum;
        g_zipf_cdf[i] = acc;
    }
    g_zipf_cdf[cfg.keys - 1] = 1.0;
}

/* Zipf rank for a uniform u in [0,1): binary search of the CDF. */
static inline unsigned zipf_pick(uint64_t x)
{
    double u = (double)(x >> 11) * (1.0 / 9007199254740992.0);
    unsigned lo = 0, hi = cfg.keys - 1;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (g_zipf_cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

typedef struct kv_arg {
    bool zipf;
    double get_ratio;
    double seconds;
    uint64_t ttl_ms;
    unsigned salt;
} kv_arg;

static void kv_worker(backend *b, unsigned idx, unsigned np, wres *r, const void *argp)
{
    (void)np;
    const kv_arg *a = argp;
    uint64_t rng = worker_seed(a->salt, idx);
    size_t ks = cfg.key_size, vs = cfg.value_size, cap = vs + 64;
    char *val = malloc(vs + 8), *buf = malloc(cap);
    if (!val || !buf) {
        werr(r, "out of memory");
        free(val);
        free(buf);
        return;
    }
    memcpy(val, g_value, vs);
    uint64_t get_thr = (uint64_t)(a->get_ratio * 4294967296.0);
    uint64_t t = now_ns(), deadline = t + (uint64_t)(a->seconds * 1e9);
    r->t_start = t;
    for (;;) {
        uint64_t x = rng_next(&rng);
        unsigned k = a->zipf ? zipf_pick(rng_next(&rng))
                             : (unsigned)(((x >> 32) * (uint64_t)cfg.keys) >> 32);
        const char *key = g_keys + (size_t)k * ks;
        int rc;
        if ((x & 0xffffffffu) < get_thr) {
            size_t vl = 0;
            rc = be_get(b, key, ks, buf, cap, &vl);
            r->gets++;
            if (rc == 1) {
                r->hits++;
                if (vl != vs) {
                    werr(r, "get returned %zu bytes, expected %zu", vl, vs);
                    break;
                }
            }
        } else {
            if (vs >= 8)
                memcpy(val, &r->ops, 8);   /* the values change, their size does not */
            rc = be_set(b, key, ks, val, vs, a->ttl_ms);
            r->sets++;
            if (rc == 1) {
                r->enomem++;
                rc = 0;
            }
        }
        if (rc < 0) {
            werr(r, "%s failed", (x & 0xffffffffu) < get_thr ? "get" : "set");
            break;
        }
        r->ops++;
        /* one clock read per op: the latency of op i runs from the end of
         * op i-1 (includes the key choice, a few ns) */
        uint64_t t2 = now_ns();
        hist_add(&r->h, t2 - t);
        t = t2;
        if (t >= deadline)
            break;
    }
    r->t_end = t;
    free(val);
    free(buf);
}

/* Preloads every key (parent): shmcache directly, the peers pipelined. */
static int kv_preload(int sys, uint64_t ttl_ms)
{
    if (sys_flush(sys) != 0)
        return -1;
    size_t ks = cfg.key_size, vs = cfg.value_size;
    if (sys == SYS_SHMC) {
        for (unsigned i = 0; i < cfg.keys; i++)
            if (shmc_set(g_cache, g_keys + (size_t)i * ks, ks, g_value, vs, 0, ttl_ms) !=
                SHMC_OK)
                return -1;
        return 0;
    }
    pconn *pc = &g_ctl[sys];
    if (sys == SYS_MC) {
        for (unsigned i = 0; i < cfg.keys; i++)
            if (mc_set_pipelined(pc, g_keys + (size_t)i * ks, ks, g_value, vs,
                                 mc_exptime(ttl_ms)) != 0)
                return -1;
        return mc_sync(pc);
    }
    char ttls[24];
    int tn = snprintf(ttls, sizeof ttls, "%" PRIu64, ttl_ms);
    unsigned queued = 0;
    for (unsigned i = 0; i < cfg.keys; i++) {
        const void *argv[5] = { "SET", g_keys + (size_t)i * ks, g_value, "PX", ttls };
        size_t lens[5] = { 3, ks, vs, 2, (size_t)tn };
        if (rd_append(pc, ttl_ms ? 5 : 3, argv, lens) != 0)
            return -1;
        if (++queued == 1000 || i + 1 == cfg.keys) {
            if (rd_pipe_drain(pc, queued) != 0)
                return -1;
            queued = 0;
        }
    }
    return 0;
}

typedef struct kv_result {
    bool ok;
    double ops_s, per_proc[MAX_KV_PROCS];
    double p50, p99, p999, max, hit;
} kv_result;

static void kv_run(int sys, unsigned np, const kv_arg *a, const char *variant, kv_result *out)
{
    memset(out, 0, sizeof *out);
    out->ops_s = out->p50 = out->p99 = out->p999 = out->max = out->hit = NAN;
    if (!have[sys])
        return;
    if (kv_preload(sys, a->ttl_ms) != 0) {
        fprintf(stderr, "bench_compare: kv preload on %s failed\n", sys_name[sys]);
        failures++;
        return;
    }
    wres *rs = run_procs(sys, np, kv_worker, a);
    if (!rs)
        return;
    agg g;
    aggregate(rs, np, &g, variant);
    for (unsigned i = 0; i < np && i < MAX_KV_PROCS; i++)
        out->per_proc[i] = rs[i].t_end > rs[i].t_start
                               ? (double)rs[i].ops * 1e9 / (double)(rs[i].t_end - rs[i].t_start)
                               : 0;
    free_results(rs);
    if (g.errors) {
        failures++;
        return;
    }
    double mn = INFINITY, mx = 0;
    for (unsigned i = 0; i < np && i < MAX_KV_PROCS; i++) {
        mn = out->per_proc[i] < mn ? out->per_proc[i] : mn;
        mx = out->per_proc[i] > mx ? out->per_proc[i] : mx;
    }
    out->ok = true;
    out->ops_s = g.ops_s;
    out->p50 = (double)hist_quantile(&g.h, 0.50);
    out->p99 = (double)hist_quantile(&g.h, 0.99);
    out->p999 = (double)hist_quantile(&g.h, 0.999);
    out->max = (double)g.h.max;
    out->hit = g.gets ? (double)g.hits / (double)g.gets : NAN;

    char a1[32], a2[32], l1[16], l2[16], l3[16], l4[16], per[160] = "";
    size_t used = 0;
    for (unsigned i = 0; i < np && i < 8; i++)
        used += (size_t)snprintf(per + used, sizeof per - used, "%s%s", i ? " " : "",
                                 human(out->per_proc[i], a2, sizeof a2));
    if (np > 8)
        snprintf(per + used, sizeof per - used, " ...");
    printf("  %-9s P=%-2u %10s ops/s  per proc [%s]  p50 %s p99 %s p99.9 %s max %s us  "
           "hits %.1f%%\n", sys_name[sys], np, human(out->ops_s, a1, sizeof a1), per,
           fmt_us(out->p50, l1, sizeof l1), fmt_us(out->p99, l2, sizeof l2),
           fmt_us(out->p999, l3, sizeof l3), fmt_us(out->max, l4, sizeof l4),
           out->hit * 100.0);
    metric m[] = {
        { "ops_per_s", out->ops_s },
        { "ops_per_s_per_proc", out->ops_s / np },
        { "min_proc_ops_per_s", mn },
        { "max_proc_ops_per_s", mx },
        { "p50_us", out->p50 / 1e3 },
        { "p99_us", out->p99 / 1e3 },
        { "p999_us", out->p999 / 1e3 },
        { "max_us", out->max / 1e3 },
        { "hit_ratio", out->hit },
        { "ops", (double)g.ops },
        { "gets", (double)g.gets },
        { "sets", (double)g.sets },
    };
    record("kv", variant, sys, np, m, (int)(sizeof m / sizeof m[0]));
}

static FILE *dat_scaling, *dat_latency;

static void section_kv(void)
{
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%" PRIu64 " ms", cfg.ttl_ms);
    printf("\n== kv: %u keys, %u B keys, %u B values, %.0f%% gets / %.0f%% sets, TTL %s, "
           "%.1f s per run; one request per round trip for the peers ==\n",
           cfg.keys, cfg.key_size, cfg.value_size, cfg.get_ratio * 100,
           (1 - cfg.get_ratio) * 100, cfg.ttl_ms ? ttl : "none", cfg.kv_seconds);
    if (machine.nproc > 0)
        printf("  note: %ld CPUs; with more processes than CPUs (and the server on the same "
               "CPUs) the runs measure time-sharing\n", machine.nproc);

    kv_arg uni = { false, cfg.get_ratio, cfg.kv_seconds, cfg.ttl_ms, 1 };
    kv_arg zipf = { true, cfg.get_ratio, cfg.kv_seconds, cfg.ttl_ms, 2 };
    kv_result res[8][NSYS], zres[NSYS];
    unsigned main_i = 0;

    printf(" uniform keys:\n");
    for (unsigned i = 0; i < cfg.nprocs; i++) {
        for (int s = 0; s < NSYS; s++)
            kv_run(s, cfg.procs[i], &uni, "uniform", &res[i][s]);
        if (cfg.procs[i] == cfg.main_procs)
            main_i = i;
    }
    printf(" zipf keys (s = %.2f):\n", cfg.zipf_s);
    for (int s = 0; s < NSYS; s++)
        kv_run(s, cfg.main_procs, &zipf, "zipf", &zres[s]);

    for (unsigned i = 0; i < cfg.nprocs; i++) {
        srow *r = row_add("kv", "ops/s", +1, "uniform %.0f/%.0f get/set, %u proc%s%s",
                          cfg.get_ratio * 100, (1 - cfg.get_ratio) * 100, cfg.procs[i],
                          cfg.procs[i] > 1 ? "s" : "",
                          (long)cfg.procs[i] > machine.nproc ? " (> CPUs)" : "");
        for (int s = 0; s < NSYS; s++)
            r->v[s] = res[i][s].ops_s;
    }
    const char *qn[4] = { "p50 us", "p99 us", "p99.9 us", "max us" };
    for (int q = 0; q < 4; q++) {
        srow *r = row_add("kv", qn[q], -1, "uniform, %u procs: latency", cfg.main_procs);
        for (int s = 0; s < NSYS; s++) {
            const kv_result *k = &res[main_i][s];
            double v = q == 0 ? k->p50 : q == 1 ? k->p99 : q == 2 ? k->p999 : k->max;
            r->v[s] = v / 1e3;
        }
    }
    srow *r = row_add("kv", "ops/s", +1, "zipf %.2f, %u procs", cfg.zipf_s, cfg.main_procs);
    for (int s = 0; s < NSYS; s++)
        r->v[s] = zres[s].ops_s;
    r = row_add("kv", "p99 us", -1, "zipf %.2f, %u procs: latency", cfg.zipf_s, cfg.main_procs);
    for (int s = 0; s < NSYS; s++)
        r->v[s] = zres[s].p99 / 1e3;
    r = row_add("kv", "hit ratio", 0, "zipf %.2f, %u procs: gets that hit", cfg.zipf_s,
                cfg.main_procs);
    for (int s = 0; s < NSYS; s++)
        r->v[s] = zres[s].hit;

    if (dat_scaling) {
        fprintf(dat_scaling, "# procs shmcache memcached redis (ops/s, uniform %.0f/%.0f)\n",
                cfg.get_ratio * 100, (1 - cfg.get_ratio) * 100);
        for (unsigned i = 0; i < cfg.nprocs; i++) {
            fprintf(dat_scaling, "%u", cfg.procs[i]);
            for (int s = 0; s < NSYS; s++)
                fprintf(dat_scaling, isnan(res[i][s].ops_s) ? " NaN" : " %.0f",
                        res[i][s].ops_s);
            fprintf(dat_scaling, "\n");
        }
    }
    if (dat_latency) {
        fprintf(dat_latency, "# system p50 p99 p99.9 max (us; uniform, %u procs)\n",
                cfg.main_procs);
        for (int s = 0; s < NSYS; s++) {
            const kv_result *k = &res[main_i][s];
            if (!k->ok)
                continue;
            fprintf(dat_latency, "%s %.3f %.3f %.3f %.3f\n", sys_name[s], k->p50 / 1e3,
                    k->p99 / 1e3, k->p999 / 1e3, k->max / 1e3);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* s1: 5 writers + 5 readers x N ops on distinct keys                        */

static char *g_s1_keys;   /* writers x s1_ops keys */
#define S1_WRITERS 5

static void s1_worker(backend *b, unsigned idx, unsigned np, wres *r, const void *arg)
{
    (void)arg;
    unsigned half = np / 2;
    bool writer = idx < half;
    unsigned w = writer ? idx : idx - half;
    size_t ks = cfg.key_size, vs = cfg.value_size, cap = vs + 64;
    char *buf = malloc(cap);
    if (!buf) {
        werr(r, "out of memory");
        return;
    }
    uint64_t t = now_ns();
    r->t_start = t;
    for (unsigned j = 0; j < cfg.s1_ops; j++) {
        const char *key = g_s1_keys + ((size_t)w * cfg.s1_ops + j) * ks;
        int rc;
        if (writer) {
            rc = be_set(b, key, ks, g_value, vs, cfg.ttl_ms);
            r->sets++;
            if (rc == 1) {
                r->enomem++;
                rc = 0;
            }
        } else {
            size_t vl;
            rc = be_get(b, key, ks, buf, cap, &vl);
            r->gets++;
            if (rc == 1)
                r->hits++;
        }
        if (rc < 0) {
            werr(r, "%s failed", writer ? "set" : "get");
            break;
        }
        r->ops++;
        uint64_t t2 = now_ns();
        hist_add(&r->h, t2 - t);
        t = t2;
    }
    r->t_end = t;
    free(buf);
}

static void section_s1(void)
{
    unsigned np = 2 * S1_WRITERS;
    printf("\n== s1: %u writers + %u readers x %u ops on distinct keys (reader i reads "
           "writer i's keys as they are written) ==\n", S1_WRITERS, S1_WRITERS, cfg.s1_ops);
    g_s1_keys = malloc((size_t)S1_WRITERS * cfg.s1_ops * cfg.key_size);
    if (!g_s1_keys)
        exit(1);
    for (unsigned w = 0; w < S1_WRITERS; w++)
        for (unsigned j = 0; j < cfg.s1_ops; j++)
            make_key(g_s1_keys + ((size_t)w * cfg.s1_ops + j) * cfg.key_size, cfg.key_size,
                     (char)('A' + w), j);
    double wall[NSYS], ops_s[NSYS], p99[NSYS], p50[NSYS];
    for (int s = 0; s < NSYS; s++) {
        wall[s] = ops_s[s] = p99[s] = p50[s] = NAN;
        if (!have[s])
            continue;
        if (sys_flush(s) != 0) {
            failures++;
            continue;
        }
        wres *rs = run_procs(s, np, s1_worker, NULL);
        if (!rs)
            continue;
        agg g;
        aggregate(rs, np, &g, "s1");
        free_results(rs);
        if (g.errors) {
            failures++;
            continue;
        }
        wall[s] = wall_s(&g);
        ops_s[s] = (double)g.ops / wall[s];
        p50[s] = (double)hist_quantile(&g.h, 0.5);
        p99[s] = (double)hist_quantile(&g.h, 0.99);
        double hit = g.gets ? (double)g.hits / (double)g.gets : NAN;
        char a[32], l1[16], l2[16], l3[16];
        printf("  %-9s %7.1f ms for %" PRIu64 " ops = %10s ops/s  p50 %s p99 %s max %s us  "
               "reader hits %.1f%%\n", sys_name[s], wall[s] * 1e3, g.ops,
               human(ops_s[s], a, sizeof a), fmt_us(p50[s], l1, sizeof l1),
               fmt_us(p99[s], l2, sizeof l2), fmt_us((double)g.h.max, l3, sizeof l3),
               hit * 100);
        metric m[] = {
            { "wall_ms", wall[s] * 1e3 },
            { "ops_per_s", ops_s[s] },
            { "p50_us", p50[s] / 1e3 },
            { "p99_us", p99[s] / 1e3 },
            { "p999_us", (double)hist_quantile(&g.h, 0.999) / 1e3 },
            { "max_us", (double)g.h.max / 1e3 },
            { "reader_hit_ratio", hit },
        };
        record("s1", "5w5r", s, np, m, (int)(sizeof m / sizeof m[0]));
    }
    srow *r = row_add("s1", "wall ms", -1, "5 writers + 5 readers x %u ops, distinct keys",
                      cfg.s1_ops);
    for (int s = 0; s < NSYS; s++)
        r->v[s] = wall[s] * 1e3;
    r = row_add("s1", "ops/s", +1, "5 writers + 5 readers: throughput");
    memcpy(r->v, ops_s, sizeof ops_s);
    r = row_add("s1", "p99 us", -1, "5 writers + 5 readers: latency");
    for (int s = 0; s < NSYS; s++)
        r->v[s] = p99[s] / 1e3;
    free(g_s1_keys);
}

/* ------------------------------------------------------------------------ */
/* s2: one named lock, acquire+release cycles                                */

typedef struct lock_arg {
    double seconds;
} lock_arg;

static void lock_worker(backend *b, unsigned idx, unsigned np, wres *r, const void *argp)
{
    (void)idx;
    (void)np;
    const lock_arg *a = argp;
    uint64_t t = now_ns(), deadline = t + (uint64_t)(a->seconds * 1e9);
    r->t_start = t;
    char tok[48];
    while (t < deadline) {
        uint64_t token = 0;
        size_t tl = 0;
        if (b->sys == SYS_SHMC) {
            shmc_status st = shmc_lock_acquire(b->c, LOCK_NAME, strlen(LOCK_NAME), LEASE_MS,
                                               LEASE_MS, &token);
            if (st == SHMC_ETIMEDOUT) {
                r->retries++;
                t = now_ns();
                continue;
            }
            if (st != SHMC_OK) {
                if (st == SHMC_EINVAL)
                    r->unsupported = 1;
                werr(r, "shmc_lock_acquire: %s", shmc_strerror(st));
                break;
            }
        } else {
            tl = (size_t)snprintf(tok, sizeof tok, "%ld:%" PRIu64, (long)getpid(), r->ops);
            for (;;) {
                const void *argv[6] = { "SET", LOCK_NAME, tok, "NX", "PX", "10000" };
                size_t lens[6] = { 3, strlen(LOCK_NAME), tl, 2, 2, 5 };
                rreply rr;
                if (rd_cmd(&b->pc, &rr, NULL, 0, 6, argv, lens) != 0) {
                    werr(r, "redis SET NX: I/O error");
                    goto out;
                }
                if (rr.type == RD_STATUS)
                    break;
                if (rr.type != RD_NIL) {
                    werr(r, "redis SET NX: unexpected reply '%c'", rr.type);
                    goto out;
                }
                r->retries++;   /* held by another: try again */
                if (cfg.redis_lock_retry_us)
                    sleep_us(cfg.redis_lock_retry_us);
            }
        }
        /* critical section: a non-atomic increment of a shared counter */
        uint64_t v = g_sh->counter;
        __asm__ __volatile__("" ::: "memory");
        g_sh->counter = v + 1;

        if (b->sys == SYS_SHMC) {
            shmc_status st = shmc_lock_release(b->c, LOCK_NAME, strlen(LOCK_NAME), token);
            if (st != SHMC_OK) {
                werr(r, "shmc_lock_release: %s", shmc_strerror(st));
                break;
            }
        } else {
            const void *argv[5] = { "EVALSHA", g_sha_unlock, "1", LOCK_NAME, tok };
            size_t lens[5] = { 7, strlen(g_sha_unlock), 1, strlen(LOCK_NAME), tl };
            rreply rr;
            if (rd_cmd(&b->pc, &rr, NULL, 0, 5, argv, lens) != 0 || rr.type != RD_INT ||
                rr.integer != 1) {
                werr(r, "redis compare-and-delete did not delete our lock");
                break;
            }
        }
        r->ops++;
        uint64_t t2 = now_ns();
        hist_add(&r->h, t2 - t);
        t = t2;
    }
out:
    r->t_end = t;
}

static bool shmc_locks_supported(void)
{
    uint64_t tok;
    shmc_status st = shmc_lock_try(g_cache, "bench:probe", 11, 1000, &tok);
    if (st == SHMC_OK) {
        (void)shmc_lock_release(g_cache, "bench:probe", 11, tok);
        return true;
    }
    printf("  shmcache: shmc_lock_try returns \"%s\": locks not available in this build "
           "(n/a)\n", shmc_strerror(st));
    return false;
}

static void section_s2(void)
{
    printf("\n== s2: one lock name, acquire+release cycles in %.1f s; shmcache "
           "shmc_lock_acquire/release vs Redis SET NX PX %u + EVALSHA compare-and-delete "
           "(retried at once when busy%s) ==\n", cfg.lock_seconds, LEASE_MS,
           cfg.redis_lock_retry_us ? ", after a pause" : "");
    bool shm_ok = have[SYS_SHMC] && shmc_locks_supported();
    lock_arg a = { cfg.lock_seconds };
    for (unsigned i = 0; i < cfg.nlock_procs; i++) {
        unsigned np = cfg.lock_procs[i];
        srow *r = row_add("s2", "cycles", +1, "lock acquire+release cycles in %g s, %u proc%s",
                          cfg.lock_seconds, np, np > 1 ? "s" : "");
        srow *rl = row_add("s2", "p99 us", -1, "lock cycle latency, %u proc%s", np,
                           np > 1 ? "s" : "");
        for (int s = 0; s < NSYS; s++) {
            if (s == SYS_MC || !have[s] || (s == SYS_SHMC && !shm_ok))
                continue;
            g_sh->counter = 0;
            if (s == SYS_REDIS) {
                rreply rr;
                rd_cmds(&g_ctl[SYS_REDIS], &rr, NULL, 0, "DEL", LOCK_NAME, NULL);
            }
            wres *rs = run_procs(s, np, lock_worker, &a);
            if (!rs)
                continue;
            agg g;
            aggregate(rs, np, &g, "s2");
            uint64_t mn = UINT64_MAX, mx = 0;
            for (unsigned p = 0; p < np; p++) {
                mn = rs[p].ops < mn ? rs[p].ops : mn;
                mx = rs[p].ops > mx ? rs[p].ops : mx;
            }
            free_results(rs);
            if (g.unsupported) {
                printf("  %-9s P=%-2u n/a (not implemented in this build)\n", sys_name[s], np);
                continue;
            }
            bool excl = g_sh->counter == g.ops;
            if (!excl || g.errors)
                failures++;
            if (g.errors)
                continue;
            double secs = wall_s(&g);
            char l1[16], l2[16], l3[16];
            printf("  %-9s P=%-2u %9" PRIu64 " cycles (%.0f/s)  per proc min %" PRIu64
                   " max %" PRIu64 "  busy retries %" PRIu64 "  p50 %s p99 %s max %s us  "
                   "mutual exclusion %s\n", sys_name[s], np, g.ops, (double)g.ops / secs, mn,
                   mx, g.retries, fmt_us((double)hist_quantile(&g.h, 0.5), l1, sizeof l1),
                   fmt_us((double)hist_quantile(&g.h, 0.99), l2, sizeof l2),
                   fmt_us((double)g.h.max, l3, sizeof l3),
                   excl ? "ok" : "VIOLATED");
            if (!excl)
                printf("  !! counter %" PRIu64 " != cycles %" PRIu64 "\n", g_sh->counter,
                       g.ops);
            r->v[s] = (double)g.ops;
            rl->v[s] = (double)hist_quantile(&g.h, 0.99) / 1e3;
            metric m[] = {
                { "cycles", (double)g.ops },
                { "cycles_per_s", (double)g.ops / secs },
                { "min_proc_cycles", (double)mn },
                { "max_proc_cycles", (double)mx },
                { "retries", (double)g.retries },
                { "p50_us", (double)hist_quantile(&g.h, 0.5) / 1e3 },
                { "p99_us", (double)hist_quantile(&g.h, 0.99) / 1e3 },
                { "p999_us", (double)hist_quantile(&g.h, 0.999) / 1e3 },
                { "max_us", (double)g.h.max / 1e3 },
                { "mutual_exclusion_ok", excl ? 1 : 0 },
            };
            record("s2", "lock", s, np, m, (int)(sizeof m / sizeof m[0]));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* s3 + s5: compare-and-set loops on one key                                 */

enum { CAS_SHMC, CAS_MC, CAS_RD_LUA, CAS_RD_WATCH, NCAS };
static const char *const cas_name[NCAS] = { "shmcache gets/cas", "memcached gets/cas",
                                             "redis Lua CAS", "redis WATCH/MULTI/EXEC" };
static const int cas_sys[NCAS] = { SYS_SHMC, SYS_MC, SYS_REDIS, SYS_REDIS };
static const char *const cas_id[NCAS] = { "gets_cas", "gets_cas", "lua_cas", "watch_multi_exec" };

typedef struct cas_arg {
    int variant;
    unsigned loops;         /* successful updates per worker; 0 = until the deadline */
    double cap_seconds;
    size_t rec;
    const char *key;
} cas_arg;

/* One successful read-modify-write: returns 0, 1 if the deadline passed
 * first (nothing written), or -1 after werr. */
static int cas_update(backend *b, const cas_arg *a, wres *r, char *buf, size_t cap, char *nv,
                      uint64_t deadline)
{
    size_t kl = strlen(a->key), vl = 0;
    uint64_t v;
    switch (a->variant) {
    case CAS_SHMC:
        for (;;) {
            uint64_t tok;
            shmc_status st = shmc_gets(b->c, a->key, kl, buf, cap, &vl, NULL, &tok);
            if (st != SHMC_OK || !parse_rec(buf, vl, &v)) {
                werr(r, "shmc_gets: %s", shmc_strerror(st));
                return -1;
            }
            make_rec(nv, a->rec, v + 1);
            st = shmc_cas(b->c, a->key, kl, nv, a->rec, 0, 0, tok, NULL);
            if (st == SHMC_OK)
                return 0;
            if (st == SHMC_ENOMEM)
                r->enomem++;
            else if (st != SHMC_STALE) {
                werr(r, "shmc_cas: %s", shmc_strerror(st));
                return -1;
            }
            r->retries++;
            if (now_ns() >= deadline)
                return 1;
        }
    case CAS_MC:
        for (;;) {
            uint64_t cas;
            if (mc_get(&b->pc, a->key, kl, buf, cap, &vl, &cas) != 1 || !parse_rec(buf, vl, &v)) {
                werr(r, "memcached gets failed");
                return -1;
            }
            make_rec(nv, a->rec, v + 1);
            int rc = mc_store(&b->pc, "cas", a->key, kl, nv, a->rec, 0, 0, cas);
            if (rc == MC_STORED)
                return 0;
            if (rc != MC_EXISTS) {
                werr(r, "memcached cas: %d", rc);
                return -1;
            }
            r->retries++;
            if (now_ns() >= deadline)
                return 1;
        }
    case CAS_RD_LUA: {
        const void *gargv[2] = { "GET", a->key };
        size_t glens[2] = { 3, kl };
        rreply rr;
        if (rd_cmd(&b->pc, &rr, buf, cap, 2, gargv, glens) != 0 || rr.type != RD_BULK ||
            !rr.copied) {
            werr(r, "redis GET failed");
            return -1;
        }
        vl = rr.len;
        for (;;) {
            if (!parse_rec(buf, vl, &v)) {
                werr(r, "redis: bad record");
                return -1;
            }
            make_rec(nv, a->rec, v + 1);
            const void *argv[6] = { "EVALSHA", g_sha_cas, "1", a->key, buf, nv };
            size_t lens[6] = { 7, strlen(g_sha_cas), 1, kl, vl, a->rec };
            char cur[256];
            if (rd_cmd(&b->pc, &rr, cur, sizeof cur, 6, argv, lens) != 0) {
                werr(r, "redis EVALSHA: I/O error");
                return -1;
            }
            if (rr.type == RD_INT && rr.integer == 1)
                return 0;
            if (rr.type != RD_BULK || !rr.copied || rr.len > cap) {
                werr(r, "redis CAS script: unexpected reply '%c'", rr.type);
                return -1;
            }
            memcpy(buf, cur, rr.len);   /* lost: the reply is the current value */
            vl = rr.len;
            r->retries++;
            if (now_ns() >= deadline)
                return 1;
        }
    }
    default:   /* CAS_RD_WATCH */
        for (;;) {
            rreply rr;
            const void *wargv[2] = { "WATCH", a->key };
            size_t wlens[2] = { 5, kl };
            if (rd_cmd(&b->pc, &rr, NULL, 0, 2, wargv, wlens) != 0 || rr.type != RD_STATUS) {
                werr(r, "redis WATCH failed");
                return -1;
            }
            const void *gargv[2] = { "GET", a->key };
            size_t glens[2] = { 3, kl };
            if (rd_cmd(&b->pc, &rr, buf, cap, 2, gargv, glens) != 0 || rr.type != RD_BULK ||
                !rr.copied || !parse_rec(buf, rr.len, &v)) {
                werr(r, "redis GET failed");
                return -1;
            }
            make_rec(nv, a->rec, v + 1);
            /* MULTI + SET + EXEC: one transaction, sent in one write as every
             * client library does (one round trip) */
            const void *m1[1] = { "MULTI" }, *m3[1] = { "EXEC" };
            size_t l1[1] = { 5 }, l3[1] = { 4 };
            const void *sargv[3] = { "SET", a->key, nv };
            size_t slens[3] = { 3, kl, a->rec };
            rreply r1, r2, r3;
            if (rd_append(&b->pc, 1, m1, l1) != 0 || rd_append(&b->pc, 3, sargv, slens) != 0 ||
                rd_append(&b->pc, 1, m3, l3) != 0 || rd_flush(&b->pc) != 0 ||
                rd_read(&b->pc, &r1, NULL, 0) != 0 || rd_read(&b->pc, &r2, NULL, 0) != 0 ||
                rd_read(&b->pc, &r3, NULL, 0) != 0 || r1.type != RD_STATUS ||
                r2.type != RD_STATUS) {
                werr(r, "redis MULTI/SET/EXEC failed");
                return -1;
            }
            if (r3.type == RD_ARRAY)
                return 0;
            if (r3.type != RD_NIL) {
                werr(r, "redis EXEC: unexpected reply '%c'", r3.type);
                return -1;
            }
            r->retries++;
            if (now_ns() >= deadline)
                return 1;
        }
    }
}

static void cas_worker(backend *b, unsigned idx, unsigned np, wres *r, const void *argp)
{
    (void)idx;
    (void)np;
    const cas_arg *a = argp;
    size_t cap = a->rec + 64;
    char *buf = malloc(cap), *nv = malloc(a->rec + 1);
    if (!buf || !nv) {
        werr(r, "out of memory");
        free(buf);
        free(nv);
        return;
    }
    uint64_t t = now_ns(), deadline = t + (uint64_t)(a->cap_seconds * 1e9);
    r->t_start = t;
    while (a->loops == 0 || r->ops < a->loops) {
        if (cas_update(b, a, r, buf, cap, nv, deadline) != 0)
            break;
        r->ops++;
        uint64_t t2 = now_ns();
        hist_add(&r->h, t2 - t);
        t = t2;
        if (t >= deadline)
            break;
    }
    r->t_end = t;
    free(buf);
    free(nv);
}

typedef struct cas_result {
    double ok_s, retries_per_ok, done_frac, p50, p99, max, wall;
    bool final_ok;
} cas_result;

static void cas_run(const char *section, int variant, unsigned np, unsigned loops,
                    double cap_s, size_t rec, cas_result *out)
{
    for (double *d = &out->ok_s; d <= &out->wall; d++)
        *d = NAN;
    out->final_ok = false;
    int sys = cas_sys[variant];
    if (!have[sys])
        return;
    char key[32];
    snprintf(key, sizeof key, "%s:rec", section);
    char *init = malloc(rec + 1), buf[512];
    if (!init)
        exit(1);
    make_rec(init, rec, 0);
    if (sys_flush(sys) != 0 || sys_set(sys, key, strlen(key), init, rec) != 0) {
        fprintf(stderr, "bench_compare: %s: cannot initialise the record on %s\n", section,
                sys_name[sys]);
        failures++;
        free(init);
        return;
    }
    free(init);
    cas_arg a = { variant, loops, cap_s, rec, key };
    wres *rs = run_procs(sys, np, cas_worker, &a);
    if (!rs)
        return;
    agg g;
    aggregate(rs, np, &g, section);
    free_results(rs);
    size_t vl = 0;
    uint64_t final = 0;
    bool got = sys_get(sys, key, strlen(key), buf, sizeof buf, &vl) == 1 &&
               parse_rec(buf, vl, &final);
    out->final_ok = got && final == g.ops;
    if (g.errors || !out->final_ok)
        failures++;
    if (g.errors)
        return;
    out->wall = wall_s(&g);
    out->ok_s = (double)g.ops / out->wall;
    out->retries_per_ok = g.ops ? (double)g.retries / (double)g.ops : NAN;
    out->done_frac = loops ? (double)g.ops / ((double)loops * np) : NAN;
    out->p50 = (double)hist_quantile(&g.h, 0.5);
    out->p99 = (double)hist_quantile(&g.h, 0.99);
    out->max = (double)g.h.max;
    char a1[32], l1[16], l2[16], l3[16], done[48] = "";
    if (loops)
        snprintf(done, sizeof done, "  done %.1f%%%s", out->done_frac * 100,
                 out->done_frac < 1 ? " (time cap)" : "");
    printf("  %-24s %9" PRIu64 " ok in %6.2f s = %10s ok/s  retries/ok %.2f%s  p50 %s p99 "
           "%s max %s us  final %s\n", cas_name[variant], g.ops, out->wall,
           human(out->ok_s, a1, sizeof a1), out->retries_per_ok, done,
           fmt_us(out->p50, l1, sizeof l1), fmt_us(out->p99, l2, sizeof l2),
           fmt_us(out->max, l3, sizeof l3), out->final_ok ? "ok" : "LOST UPDATES");
    if (!out->final_ok)
        printf("  !! final counter %" PRIu64 " != successful updates %" PRIu64 "\n", final,
               g.ops);
    metric m[] = {
        { "ok_updates", (double)g.ops },
        { "ok_per_s", out->ok_s },
        { "retries_per_ok", out->retries_per_ok },
        { "done_fraction", out->done_frac },
        { "wall_s", out->wall },
        { "p50_us", out->p50 / 1e3 },
        { "p99_us", out->p99 / 1e3 },
        { "max_us", out->max / 1e3 },
        { "final_ok", out->final_ok ? 1 : 0 },
    };
    record(section, cas_id[variant], sys, np, m, (int)(sizeof m / sizeof m[0]));
}

static void cas_rows(const char *section, const char *what, const cas_result *res)
{
    /* row 1: shmcache vs memcached gets/cas and Redis Lua; row 2: vs WATCH */
    const char *names[2] = { "redis: Lua CAS script", "redis: WATCH/MULTI/EXEC" };
    for (int k = 0; k < 2; k++) {
        int rv = k == 0 ? CAS_RD_LUA : CAS_RD_WATCH;
        srow *r = row_add(section, "ok updates/s", +1, "%s (%s)", what, names[k]);
        r->v[SYS_SHMC] = res[CAS_SHMC].ok_s;
        if (k == 0)
            r->v[SYS_MC] = res[CAS_MC].ok_s;
        r->v[SYS_REDIS] = res[rv].ok_s;
        r = row_add(section, "retries/update", -1, "%s (%s)", what, names[k]);
        r->v[SYS_SHMC] = res[CAS_SHMC].retries_per_ok;
        if (k == 0)
            r->v[SYS_MC] = res[CAS_MC].retries_per_ok;
        r->v[SYS_REDIS] = res[rv].retries_per_ok;
    }
}

static void section_s3(void)
{
    printf("\n== s3: %u concurrent updater processes x %u compare-and-set increments of one "
           "key (each system capped at %.0f s) ==\n", cfg.s3_updaters, cfg.s3_loops,
           cfg.s3_cap_seconds);
    cas_result res[NCAS];
    for (int v = 0; v < NCAS; v++)
        cas_run("s3", v, cfg.s3_updaters, cfg.s3_loops, cfg.s3_cap_seconds, REC_DIGITS,
                &res[v]);
    char what[64];
    snprintf(what, sizeof what, "%u updaters x %u CAS", cfg.s3_updaters, cfg.s3_loops);
    cas_rows("s3", what, res);
}

static void section_s5(void)
{
    printf("\n== s5: gets/cas retry loops from 2 processes updating one %u B record for "
           "%.1f s ==\n", cfg.s5_record, cfg.s5_seconds);
    cas_result res[NCAS];
    for (int v = 0; v < NCAS; v++)
        cas_run("s5", v, 2, 0, cfg.s5_seconds, cfg.s5_record, &res[v]);
    cas_rows("s5", "2 procs, one record", res);
}

/* ------------------------------------------------------------------------ */
/* s4: 10 processes miss one key at once                                    */

enum { SF_SHMC_FILL, SF_SHMC_PLAIN, SF_MC_PLAIN, SF_RD_PLAIN, SF_RD_LOCKPOLL, NSF };
static const char *const sf_name[NSF] = { "shmcache get_or_fill", "shmcache get+set",
                                           "memcached get+set", "redis get+set",
                                           "redis SET NX + poll" };
static const char *const sf_id[NSF] = { "get_or_fill", "plain", "plain", "plain",
                                         "lock_poll" };
static const int sf_sys[NSF] = { SYS_SHMC, SYS_SHMC, SYS_MC, SYS_REDIS, SYS_REDIS };

typedef struct sf_arg {
    int variant;
    char key[64];
} sf_arg;

static void sf_compute(void)
{
    __atomic_add_fetch(&g_sh->fills, 1, __ATOMIC_SEQ_CST);
    sleep_ms(cfg.s4_fill_ms);   /* the expensive part: a 100 ms query */
}

static int32_t sf_fill_fn(void *ctx, const void *key, size_t klen, shmc_fill_out *out)
{
    (void)key;
    (void)klen;
    wres *r = ctx;
    sf_compute();
    r->filled = 1;
    out->val = malloc(cfg.value_size);
    if (!out->val)
        return 1;
    memcpy(out->val, g_value, cfg.value_size);
    out->vlen = cfg.value_size;
    return 0;
}

static void sf_worker(backend *b, unsigned idx, unsigned np, wres *r, const void *argp)
{
    (void)idx;
    (void)np;
    const sf_arg *a = argp;
    size_t kl = strlen(a->key), vs = cfg.value_size, cap = vs + 64;
    char *buf = malloc(cap);
    if (!buf) {
        werr(r, "out of memory");
        return;
    }
    uint64_t t0 = now_ns();
    r->t_start = t0;
    switch (a->variant) {
    case SF_SHMC_FILL: {
        shmc_fill_opts o;
        memset(&o, 0, sizeof o);
        o.ttl_ms = 60000;
        shmc_fill f;
        memset(&f, 0, sizeof f);
        void *val = NULL;
        size_t vl = 0;
        shmc_status st = shmc_get_or_fill(b->c, a->key, kl, sf_fill_fn, r, &o, &val, &vl,
                                          NULL, &f);
        if (st == SHMC_OK) {
            if (vl != vs || memcmp(val, g_value, vs) != 0)
                werr(r, "get_or_fill returned a wrong value");
            free(val);
        } else {
            if (st == SHMC_EINVAL)
                r->unsupported = 1;
            werr(r, "shmc_get_or_fill: %s", shmc_strerror(st));
        }
        break;
    }
    case SF_SHMC_PLAIN:
    case SF_MC_PLAIN:
    case SF_RD_PLAIN: {
        size_t vl;
        int rc = be_get(b, a->key, kl, buf, cap, &vl);
        if (rc == 0) {
            sf_compute();
            r->filled = 1;
            rc = be_set(b, a->key, kl, g_value, vs, 60000);
            if (rc == 1) {
                r->enomem++;
                rc = 0;
            }
        } else if (rc == 1 && (vl != vs || memcmp(buf, g_value, vs) != 0)) {
            werr(r, "wrong value");
        }
        if (rc < 0)
            werr(r, "get/set failed");
        break;
    }
    default: {   /* SF_RD_LOCKPOLL: SET lock NX PX, the winner fills, the others poll */
        char lock[80], tok[32];
        snprintf(lock, sizeof lock, "%s:lock", a->key);
        size_t tl = (size_t)snprintf(tok, sizeof tok, "%ld", (long)getpid());
        for (;;) {
            size_t vl;
            int rc = be_get(b, a->key, kl, buf, cap, &vl);
            if (rc == 1)
                break;
            if (rc < 0) {
                werr(r, "redis GET failed");
                break;
            }
            const void *argv[6] = { "SET", lock, tok, "NX", "PX", "10000" };
            size_t lens[6] = { 3, strlen(lock), tl, 2, 2, 5 };
            rreply rr;
            if (rd_cmd(&b->pc, &rr, NULL, 0, 6, argv, lens) != 0) {
                werr(r, "redis SET NX failed");
                break;
            }
            if (rr.type == RD_STATUS) {
                /* the usual double check: filled while we took the lock? */
                rc = be_get(b, a->key, kl, buf, cap, &vl);
                if (rc == 0) {
                    sf_compute();
                    r->filled = 1;
                    if (be_set(b, a->key, kl, g_value, vs, 60000) != 0)
                        werr(r, "redis SET failed");
                } else if (rc < 0) {
                    werr(r, "redis GET failed");
                }
                const void *dargv[5] = { "EVALSHA", g_sha_unlock, "1", lock, tok };
                size_t dlens[5] = { 7, strlen(g_sha_unlock), 1, strlen(lock), tl };
                if (rd_cmd(&b->pc, &rr, NULL, 0, 5, dargv, dlens) != 0)
                    werr(r, "redis unlock failed");
                break;
            }
            sleep_ms(cfg.s4_poll_ms);
            r->retries++;
        }
        break;
    }
    }
    r->t_end = now_ns();
    r->lat_ns = r->t_end - t0;
    free(buf);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void section_s4(void)
{
    unsigned np = cfg.s4_procs;
    printf("\n== s4: %u processes miss one key at once, the fill takes %u ms (a sleep); %u "
           "rounds; extra latency = a caller's latency minus one fill ==\n", np,
           cfg.s4_fill_ms, cfg.s4_rounds);
    double fills[NSF], ex50[NSF], exmax[NSF], wex50[NSF];
    uint64_t *ex = calloc((size_t)np * cfg.s4_rounds, sizeof *ex);
    uint64_t *wex = calloc((size_t)np * cfg.s4_rounds, sizeof *wex);
    if (!ex || !wex)
        exit(1);
    for (int v = 0; v < NSF; v++) {
        fills[v] = ex50[v] = exmax[v] = wex50[v] = NAN;
        int sys = sf_sys[v];
        if (!have[sys])
            continue;
        uint64_t total_fills = 0;
        unsigned n = 0, nw = 0;
        bool unsupported = false, bad = false;
        if (sys_flush(sys) != 0) {
            failures++;
            continue;
        }
        for (unsigned round = 0; round < cfg.s4_rounds && !unsupported; round++) {
            sf_arg a;
            a.variant = v;
            snprintf(a.key, sizeof a.key, "s4:%d:%u", v, round);
            g_sh->fills = 0;
            wres *rs = run_procs(sys, np, sf_worker, &a);
            if (!rs) {
                bad = true;
                break;
            }
            agg g;
            aggregate(rs, np, &g, "s4");
            if (g.unsupported) {
                unsupported = true;
            } else if (g.errors) {
                bad = true;
            } else {
                total_fills += g_sh->fills;
                for (unsigned p = 0; p < np; p++) {
                    uint64_t fill_ns = (uint64_t)cfg.s4_fill_ms * 1000000u;
                    uint64_t e = rs[p].lat_ns > fill_ns ? rs[p].lat_ns - fill_ns : 0;
                    ex[n++] = e;
                    if (!rs[p].filled)
                        wex[nw++] = e;
                }
            }
            free_results(rs);
        }
        if (unsupported) {
            printf("  %-22s n/a (not implemented in this build)\n", sf_name[v]);
            continue;
        }
        if (bad) {
            failures++;
            continue;
        }
        qsort(ex, n, sizeof *ex, cmp_u64);
        qsort(wex, nw, sizeof *wex, cmp_u64);
        fills[v] = (double)total_fills / cfg.s4_rounds;
        ex50[v] = (double)ex[(n - 1) / 2];
        exmax[v] = (double)ex[n - 1];
        wex50[v] = nw ? (double)wex[(nw - 1) / 2] : NAN;
        char wbuf[32] = "-";
        if (nw)
            snprintf(wbuf, sizeof wbuf, "%.2f ms", wex50[v] / 1e6);
        printf("  %-22s fills per storm %4.1f  extra latency over one fill: p50 %6.2f ms, "
               "max %6.2f ms (%u callers); callers that did not fill: %u, their p50 %s\n",
               sf_name[v], fills[v], ex50[v] / 1e6, exmax[v] / 1e6, n, nw, wbuf);
        metric m[] = {
            { "fills_per_storm", fills[v] },
            { "extra_p50_ms", ex50[v] / 1e6 },
            { "extra_max_ms", exmax[v] / 1e6 },
            { "waiters", (double)nw },
            { "waiter_extra_p50_ms", wex50[v] / 1e6 },
        };
        record("s4", sf_id[v], sys, np, m, (int)(sizeof m / sizeof m[0]));
    }
    free(ex);
    free(wex);
    struct {
        const char *label;
        int shm, mc, rd;
    } cmp[3] = {
        { "get_or_fill vs peers' get+miss+set", SF_SHMC_FILL, SF_MC_PLAIN, SF_RD_PLAIN },
        { "get+miss+set everywhere (no singleflight)", SF_SHMC_PLAIN, SF_MC_PLAIN,
          SF_RD_PLAIN },
        { "get_or_fill vs redis SET NX + 5 ms poll", SF_SHMC_FILL, -1, SF_RD_LOCKPOLL },
    };
    for (int i = 0; i < 3; i++) {
        const char *mname[3] = { "fills", "extra p50 ms", "extra max ms" };
        const double *src[3] = { fills, ex50, exmax };
        for (int k = 0; k < 3; k++) {
            srow *r = row_add("s4", mname[k], -1, "%u procs miss 1 key: %s", np,
                              cmp[i].label);
            double scale = k == 0 ? 1 : 1e-6;
            r->v[SYS_SHMC] = src[k][cmp[i].shm] * scale;
            if (cmp[i].mc >= 0)
                r->v[SYS_MC] = src[k][cmp[i].mc] * scale;
            r->v[SYS_REDIS] = src[k][cmp[i].rd] * scale;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* mem: items per GiB before the first eviction                              */

static void section_mem(void)
{
    uint64_t bytes = cfg.cap_mib << 20;
    double per_gib = (double)(1ull << 30) / (double)bytes;
    printf("\n== mem: distinct %u B key / %u B value items held before the first eviction, "
           "%" PRIu64 " MiB of cache (scaled to 1 GiB) ==\n", cfg.key_size, cfg.value_size,
           cfg.cap_mib);
    double items[NSYS], rss_items[NSYS];
    for (int s = 0; s < NSYS; s++)
        items[s] = rss_items[s] = NAN;
    char key[64];
    size_t ks = cfg.key_size, vs = cfg.value_size;

    /* shmcache: a fresh cache of that size */
    if (have[SYS_SHMC]) {
        char name[160];
        snprintf(name, sizeof name, "%s-cap", cfg.name);
        shmc_options o;
        memset(&o, 0, sizeof o);
        o.size = bytes;
        o.flags = SHMC_OPEN_CREATE_ONLY;
        shmc_t *c = NULL;
        shmc_status st = shmc_open(name, &o, &c);
        if (st != SHMC_OK) {
            fprintf(stderr, "bench_compare: mem: shmc_open: %s\n", shmc_strerror(st));
            failures++;
        } else {
            shmc_info info;
            shmc_info_get(c, &info);
            /* Sample the stats rarely while the free space is large and after
             * every set near the end: no set can evict while more than a
             * storage segment plus the next step's items is free (an index
             * bucket pair that fills up could, and is caught at the next
             * sample, one item off at most per step). */
            uint64_t slack = 2 * info.segment_bytes + (1u << 20);
            uint64_t per_item = 2 * (ks + vs + 64);
            shmc_stats sst;
            uint64_t i = 0, prev_items = 0, t0 = now_ns();
            unsigned step = 0;
            for (;;) {
                if (shmc_stats_get(c, &sst) != SHMC_OK)
                    break;
                if (sst.evictions > 0) {
                    /* a segment eviction drops many items at once: count
                     * what was held just before the set that evicted */
                    items[SYS_SHMC] = step == 1 ? (double)prev_items : (double)sst.items;
                    break;
                }
                prev_items = sst.items;
                step = sst.bytes_free > slack + 64 * per_item
                           ? (unsigned)((sst.bytes_free - slack) / per_item)
                           : 1;
                for (unsigned j = 0; j < step; j++, i++) {
                    make_key(key, cfg.key_size, 'm', i);
                    memcpy(g_value, &i, sizeof i < vs ? sizeof i : vs);
                    if (shmc_set(c, key, ks, g_value, vs, 0, 0) != SHMC_OK) {
                        failures++;
                        goto shm_done;
                    }
                }
            }
shm_done:
            rss_items[SYS_SHMC] = items[SYS_SHMC];   /* the segment is all of it */
            printf("  %-9s %10.0f items in a %" PRIu64 " MiB segment (everything included) "
                   "-> %.2f M per GiB; %" PRIu64 " sets in %.1f s\n", "shmcache",
                   items[SYS_SHMC], cfg.cap_mib, items[SYS_SHMC] * per_gib / 1e6, i,
                   (double)(now_ns() - t0) / 1e9);
            shmc_close(c);
            shmc_destroy(name);
        }
    }

    /* memcached: a dedicated instance started with -m cap_mib */
    if (cfg.mc_cap_sock) {
        pconn pc;
        if (pc_connect_unix(&pc, cfg.mc_cap_sock, 5000) != 0) {
            fprintf(stderr, "bench_compare: mem: connect %s: %s\n", cfg.mc_cap_sock,
                    strerror(errno));
            failures++;
        } else {
            uint64_t limit = 0, ev = 0, cur = 0, i = 0, t0 = now_ns();
            mc_stat(&pc, NULL, "limit_maxbytes", &limit);
            if (limit != bytes)
                printf("  note: the memcached capacity instance has -m %" PRIu64 " MiB, "
                       "expected %" PRIu64 "\n", limit >> 20, cfg.cap_mib);
            bool ok = true;
            /* "set <key> 0 0 <vs> noreply\r\n<value>\r\n", built once */
            char *cmd = malloc(ks + vs + 64);
            if (!cmd)
                exit(1);
            memcpy(cmd, "set ", 4);
            int hl = 4 + (int)ks + snprintf(cmd + 4 + ks, 48, " 0 0 %u noreply\r\n", cfg.value_size);
            memcpy(cmd + hl, g_value, vs);
            memcpy(cmd + hl + vs, "\r\n", 2);
            for (;;) {
                for (unsigned j = 0; j < 10000 && ok; j++, i++) {
                    make_key(cmd + 4, cfg.key_size, 'm', i);
                    ok = pc_queue(&pc, cmd, (size_t)hl + vs + 2) == 0;
                }
                if (!ok || mc_sync(&pc) != 0 || mc_stat(&pc, NULL, "evictions", &ev) < 0 ||
                    mc_stat(&pc, NULL, "curr_items", &cur) < 0) {
                    ok = false;
                    break;
                }
                if (ev > 0)
                    break;
                if (i > 4 * bytes / (ks + vs)) {
                    ok = false;
                    break;
                }
            }
            free(cmd);
            if (ok) {
                uint64_t rss = cfg.mc_cap_pid ? proc_rss(cfg.mc_cap_pid) : 0;
                items[SYS_MC] = (double)cur;
                rss_items[SYS_MC] = rss ? (double)cur * (double)bytes / (double)rss : NAN;
                printf("  %-9s %10" PRIu64 " items with -m %" PRIu64 " (item memory only) -> "
                       "%.2f M per GiB; server RSS %.0f MiB -> %.2f M per GiB of RSS; %" PRIu64
                       " sets in %.1f s (pipelined)\n", "memcached", cur, limit >> 20,
                       (double)cur * per_gib / 1e6, (double)rss / 1048576.0,
                       rss ? (double)cur * (double)(1ull << 30) / (double)rss / 1e6 : NAN, i,
                       (double)(now_ns() - t0) / 1e9);
            } else {
                fprintf(stderr, "bench_compare: mem: memcached fill failed\n");
                failures++;
            }
            pc_close(&pc);
        }
    }

    /* Redis: the main instance with maxmemory = cap and allkeys-lru */
    if (have[SYS_REDIS]) {
        pconn *pc = &g_ctl[SYS_REDIS];
        rreply rr;
        char mm[32], info[8192];
        snprintf(mm, sizeof mm, "%" PRIu64, bytes);
        bool ok = sys_flush(SYS_REDIS) == 0 &&
                  rd_cmds(pc, &rr, NULL, 0, "CONFIG", "SET", "maxmemory-policy",
                          "allkeys-lru", NULL) == 0 && rr.type == RD_STATUS &&
                  rd_cmds(pc, &rr, NULL, 0, "CONFIG", "SET", "maxmemory", mm, NULL) == 0 &&
                  rr.type == RD_STATUS;
        uint64_t i = 0, ev = 0, dbsize = 0, t0 = now_ns();
        /* "*3\r\n$3\r\nSET\r\n$<ks>\r\n<key>\r\n$<vs>\r\n<value>\r\n", built once */
        char *cmd = malloc(ks + vs + 64);
        if (!cmd)
            exit(1);
        int kp = snprintf(cmd, 64, "*3\r\n$3\r\nSET\r\n$%u\r\n", cfg.key_size);
        int vp = kp + (int)ks + snprintf(cmd + kp + ks, 32, "\r\n$%u\r\n", cfg.value_size);
        memcpy(cmd + vp, g_value, vs);
        memcpy(cmd + vp + vs, "\r\n", 2);
        while (ok) {
            for (unsigned j = 0; j < 10000; j++, i++) {
                make_key(cmd + kp, cfg.key_size, 'm', i);
                if (pc_queue(pc, cmd, (size_t)vp + vs + 2) != 0)
                    ok = false;
            }
            if (!ok || rd_pipe_drain(pc, 10000) != 0 ||
                rd_cmds(pc, &rr, info, sizeof info - 1, "INFO", "stats", NULL) != 0 ||
                rr.type != RD_BULK || !rr.copied) {
                ok = false;
                break;
            }
            info[rr.len] = '\0';
            char *p = strstr(info, "evicted_keys:");
            ev = p ? strtoull(p + 13, NULL, 10) : 0;
            if (ev > 0) {
                if (rd_cmds(pc, &rr, NULL, 0, "DBSIZE", NULL) != 0 || rr.type != RD_INT)
                    ok = false;
                dbsize = (uint64_t)rr.integer;
                break;
            }
            if (i > 4 * bytes / (ks + vs))
                ok = false;
        }
        free(cmd);
        uint64_t rss = 0;
        if (ok && rd_cmds(pc, &rr, info, sizeof info - 1, "INFO", "memory", NULL) == 0 &&
            rr.type == RD_BULK && rr.copied) {
            info[rr.len] = '\0';
            char *p = strstr(info, "used_memory_rss:");
            rss = p ? strtoull(p + 16, NULL, 10) : 0;
        }
        if (ok) {
            items[SYS_REDIS] = (double)dbsize;
            rss_items[SYS_REDIS] = rss ? (double)dbsize * (double)bytes / (double)rss : NAN;
            printf("  %-9s %10" PRIu64 " items with maxmemory %" PRIu64 " MiB -> %.2f M per "
                   "GiB; RSS %.0f MiB -> %.2f M per GiB of RSS; %" PRIu64 " sets in %.1f s "
                   "(pipelined)\n", "redis", dbsize, cfg.cap_mib,
                   (double)dbsize * per_gib / 1e6, (double)rss / 1048576.0,
                   rss ? (double)dbsize * (double)(1ull << 30) / (double)rss / 1e6 : NAN, i,
                   (double)(now_ns() - t0) / 1e9);
        } else {
            fprintf(stderr, "bench_compare: mem: redis fill failed\n");
            failures++;
        }
        sys_flush(SYS_REDIS);
        rd_cmds(pc, &rr, NULL, 0, "CONFIG", "SET", "maxmemory", "0", NULL);
    }
    memcpy(g_value, "abcdefgh", vs < 8 ? vs : 8);  /* undo the fills' stamps */

    srow *r = row_add("mem", "items/GiB", +1, "items (%u B key, %u B value) per GiB before the "
                      "1st eviction", cfg.key_size, cfg.value_size);
    for (int s = 0; s < NSYS; s++)
        r->v[s] = items[s] * per_gib;
    r = row_add("mem", "items/GiB RSS", +1, "the same, per GiB of resident memory (RSS)");
    for (int s = 0; s < NSYS; s++)
        r->v[s] = rss_items[s] * per_gib;
    for (int s = 0; s < NSYS; s++) {
        if (isnan(items[s]))
            continue;
        metric m[] = {
            { "items_held", items[s] },
            { "items_per_gib", items[s] * per_gib },
            { "items_per_gib_rss", rss_items[s] * per_gib },
            { "cache_mib", (double)cfg.cap_mib },
        };
        record("mem", "first_eviction", s, 1, m, (int)(sizeof m / sizeof m[0]));
    }
}

/* ------------------------------------------------------------------------ */
/* output                                                                   */

static const char *fmt_val(const srow *r, double v, char *buf, size_t len)
{
    if (isnan(v))
        return snprintf(buf, len, "n/a"), buf;
    if (strstr(r->metric, "ratio"))
        snprintf(buf, len, "%.1f%%", v * 100);
    else if (strstr(r->metric, " ms") || strstr(r->metric, " us") ||
             strstr(r->metric, "retries"))
        snprintf(buf, len, v < 10 ? "%.2f" : v < 1000 ? "%.1f" : "%.0f", v);
    else
        human(v, buf, len);
    return buf;
}

static double ratio(const srow *r, int peer)
{
    double a = r->v[SYS_SHMC], b = r->v[peer];
    if (isnan(a) || isnan(b) || b == 0)
        return NAN;
    return a / b;
}

static void print_summary(void)
{
    printf("\n== summary: shmcache / peer, measured in the same run (%s, %ld CPUs, %s) ==\n",
           machine.cpu, machine.nproc, machine.date);
    printf("(for rows marked '+' higher is better, for '-' lower is better; a ratio > 1 on a "
           "'+' row or < 1 on a '-' row favours shmcache)\n\n");
    printf("%-3s %-5s %-62s %-15s %10s %10s %10s %9s %9s\n", "", "sect", "row", "metric",
           "shmcache", "memcached", "redis", "shm/mc", "shm/redis");
    for (int i = 0; i < nrows; i++) {
        const srow *r = &rows[i];
        char v[NSYS][32], q[2][32];
        for (int s = 0; s < NSYS; s++)
            fmt_val(r, r->v[s], v[s], sizeof v[s]);
        for (int k = 0; k < 2; k++) {
            double x = ratio(r, k ? SYS_REDIS : SYS_MC);
            if (isnan(x) || r->better == 0)
                snprintf(q[k], sizeof q[k], "-");
            else if (x > 0 && x < 0.001)
                snprintf(q[k], sizeof q[k], "<0.001x");
            else
                snprintf(q[k], sizeof q[k], x >= 100 ? "%.0fx" : x >= 10 ? "%.1fx"
                                            : x >= 0.01 || x == 0 ? "%.2fx" : "%.3fx", x);
        }
        printf("%-3s %-5s %-62.62s %-15s %10s %10s %10s %9s %9s\n",
               r->better > 0 ? "+" : r->better < 0 ? "-" : "", r->section, r->label, r->metric,
               v[0], v[1], v[2], q[0], q[1]);
    }
}

static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_val(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fprintf(f, "null");
    else
        fprintf(f, "%.6g", v);
}

static int write_outputs(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.csv", cfg.out);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "section,row,metric,better,shmcache,memcached,redis,shmcache_per_memcached,"
               "shmcache_per_redis\n");
    for (int i = 0; i < nrows; i++) {
        const srow *r = &rows[i];
        fprintf(f, "%s,", r->section);
        csv_field(f, r->label);
        fprintf(f, ",");
        csv_field(f, r->metric);
        fprintf(f, ",%s", r->better > 0 ? "higher" : r->better < 0 ? "lower" : "");
        for (int s = 0; s < NSYS; s++)
            fprintf(f, isnan(r->v[s]) ? "," : ",%.10g", r->v[s]);
        for (int k = 0; k < 2; k++) {
            double x = ratio(r, k ? SYS_REDIS : SYS_MC);
            fprintf(f, isnan(x) ? "," : ",%.4f", x);
        }
        fprintf(f, "\n");
    }
    if (fclose(f) != 0)
        return -1;

    snprintf(path, sizeof path, "%s/results.csv", cfg.out);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "section,variant,system,procs,metric,value\n");
    if (csv_long.p)
        fwrite(csv_long.p, 1, csv_long.len, f);
    if (fclose(f) != 0)
        return -1;

    snprintf(path, sizeof path, "%s/results.json", cfg.out);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"tool\": \"bench_compare\",\n  \"shmcache_version\": \"%d.%d.%d\",\n"
               "  \"date\": ", SHMC_VERSION_MAJOR, SHMC_VERSION_MINOR, SHMC_VERSION_PATCH);
    json_str(f, machine.date);
    fprintf(f, ",\n  \"machine\": {\"cpu\": ");
    json_str(f, machine.cpu);
    fprintf(f, ", \"nproc\": %ld, \"kernel\": ", machine.nproc);
    json_str(f, machine.kernel);
    fprintf(f, "},\n  \"build\": {\"buildtype\": ");
    json_str(f, BENCH_BUILDTYPE);
    fprintf(f, ", \"sanitize\": ");
    json_str(f, BENCH_SANITIZE);
    fprintf(f, "},\n  \"config\": {\"quick\": %s, \"kv_seconds\": %g, \"keys\": %u, "
               "\"key_bytes\": %u, \"value_bytes\": %u, \"get_ratio\": %g, \"zipf_s\": %g, "
               "\"ttl_ms\": %" PRIu64 ", \"main_procs\": %u, \"cache_mib\": %" PRIu64
               ", \"prefault\": %s, \"s1_ops\": %u, \"lock_seconds\": %g, \"s3_updaters\": %u, \"s3_loops\": %u, "
               "\"s3_cap_seconds\": %g, \"s4_procs\": %u, \"s4_rounds\": %u, \"s4_fill_ms\": %u, "
               "\"s5_seconds\": %g, \"s5_record\": %u, \"capacity_mib\": %" PRIu64
               ", \"seed\": %" PRIu64 "},\n",
            cfg.quick ? "true" : "false", cfg.kv_seconds, cfg.keys, cfg.key_size,
            cfg.value_size, cfg.get_ratio, cfg.zipf_s, cfg.ttl_ms, cfg.main_procs,
            cfg.cache_mib, cfg.prefault ? "true" : "false", cfg.s1_ops, cfg.lock_seconds, cfg.s3_updaters, cfg.s3_loops,
            cfg.s3_cap_seconds, cfg.s4_procs, cfg.s4_rounds, cfg.s4_fill_ms, cfg.s5_seconds,
            cfg.s5_record, cfg.cap_mib, cfg.seed);
    fprintf(f, "  \"summary\": [");
    for (int i = 0; i < nrows; i++) {
        const srow *r = &rows[i];
        fprintf(f, "%s\n    {\"section\": ", i ? "," : "");
        json_str(f, r->section);
        fprintf(f, ", \"row\": ");
        json_str(f, r->label);
        fprintf(f, ", \"metric\": ");
        json_str(f, r->metric);
        fprintf(f, ", \"better\": %s", r->better > 0 ? "\"higher\"" : r->better < 0 ? "\"lower\""
                                                                                  : "null");
        for (int s = 0; s < NSYS; s++) {
            fprintf(f, ", \"%s\": ", sys_name[s]);
            json_val(f, r->v[s]);
        }
        fprintf(f, ", \"shmcache_per_memcached\": ");
        json_val(f, ratio(r, SYS_MC));
        fprintf(f, ", \"shmcache_per_redis\": ");
        json_val(f, ratio(r, SYS_REDIS));
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"runs\": [");
    if (json_runs.p)
        fwrite(json_runs.p, 1, json_runs.len, f);
    fprintf(f, "\n  ]\n}\n");
    return fclose(f) != 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
"usage: %s [options]   (bench/run.sh starts the servers and runs this)\n"
"  --memcached SOCK       memcached unix socket (peer; omitted: no memcached columns)\n"
"  --memcached-cap SOCK   memcached started with -m <capacity-mib> for the mem row\n"
"  --memcached-cap-pid P  its PID (to read its RSS)\n"
"  --redis SOCK           redis unix socket (peer; omitted: no redis columns)\n"
"  --out DIR              write summary.csv, results.csv, results.json, *.dat there\n"
"  --name NAME            shmcache segment name (default shmcache-cmp-<pid>)\n"
"  --only LIST            sections to run: kv,s1,s2,s3,s4,s5,mem (default all)\n"
"  --quick                short runs for a smoke test (well under a minute)\n"
"  --seconds S            kv: seconds per run (default 2)\n"
"  --keys N               kv: keys (default 100000)\n"
"  --key-size B           key bytes (default 16)\n"
"  --value-size B         value bytes (default 100)\n"
"  --get-ratio R          kv: fraction of gets, the rest are sets (default 0.9)\n"
"  --zipf S               kv: exponent of the Zipf run (default 0.99)\n"
"  --ttl-ms MS            TTL of every set (default 300000; 0 = none)\n"
"  --procs LIST           kv: process counts (default 1,2,4,8)\n"
"  --main-procs N         kv: processes of the latency and Zipf rows (default 2)\n"
"  --cache-mib M          shmcache size for kv/s1..s5 (default 256)\n"
"  --prefault             open that cache with SHMC_OPEN_PREFAULT: each worker maps\n"
"                         every page before the start (not timed)\n"
"  --s1-ops N             s1: ops per worker (default 10000)\n"
"  --lock-seconds S       s2: seconds per run (default 10)\n"
"  --lock-procs LIST      s2: process counts (default 1,2,5,10)\n"
"  --redis-lock-retry-us U  s2: pause before retrying a busy Redis lock (default 0)\n"
"  --s3-updaters N        s3: updater processes (default 500)\n"
"  --s3-loops N           s3: successful updates per updater (default 1000)\n"
"  --s3-cap S             s3: time cap per system (default 8)\n"
"  --s4-rounds N          s4: miss storms per variant (default 5)\n"
"  --s4-fill-ms MS        s4: fill time (default 100)\n"
"  --s5-seconds S         s5: seconds per system (default 2)\n"
"  --capacity-mib M       mem: cache size for the items-per-GiB fill (default 1024)\n"
"  --seed N               base seed of the workers' PRNGs (default fixed)\n",
            argv0);
}

static bool parse_list(const char *s, unsigned *out, unsigned *n, unsigned max_v)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        unsigned long v = strtoul(t, &end, 10);
        if (*end || v < 1 || v > max_v || *n == 8)
            return false;
        out[(*n)++] = (unsigned)v;
    }
    return *n > 0;
}

static bool parse_sections(const char *s)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    cfg.sections = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned i = 0;
        for (; i < sizeof sec_names / sizeof sec_names[0]; i++)
            if (strcmp(t, sec_names[i]) == 0)
                break;
        if (i == sizeof sec_names / sizeof sec_names[0])
            return false;
        cfg.sections |= 1u << i;
    }
    return cfg.sections != 0;
}

static int redis_setup(void)
{
    pconn *pc = &g_ctl[SYS_REDIS];
    rreply r;
    if (rd_cmds(pc, &r, g_sha_unlock, 40, "SCRIPT", "LOAD", lua_unlock, NULL) != 0 ||
        r.type != RD_BULK || r.len != 40)
        return -1;
    g_sha_unlock[40] = '\0';
    if (rd_cmds(pc, &r, g_sha_cas, 40, "SCRIPT", "LOAD", lua_cas, NULL) != 0 ||
        r.type != RD_BULK || r.len != 40)
        return -1;
    g_sha_cas[40] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    bool quick = false;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
    cfg_defaults(quick);
    snprintf(cfg.name, sizeof cfg.name, "shmcache-cmp-%ld", (long)getpid());

    enum {
        O_MC = 256, O_MCCAP, O_MCCAPPID, O_RD, O_OUT, O_NAME, O_ONLY, O_QUICK, O_SECONDS,
        O_KEYS, O_KSIZE, O_VSIZE, O_GETR, O_ZIPF, O_TTL, O_PROCS, O_MAINP, O_CACHE, O_PREFAULT, O_S1,
        O_LOCKS, O_LOCKP, O_RLRETRY, O_S3U, O_S3L, O_S3C, O_S4R, O_S4F, O_S5S, O_CAP, O_SEED,
    };
    static const struct option lo[] = {
        { "memcached", required_argument, NULL, O_MC },
        { "memcached-cap", required_argument, NULL, O_MCCAP },
        { "memcached-cap-pid", required_argument, NULL, O_MCCAPPID },
        { "redis", required_argument, NULL, O_RD },
        { "out", required_argument, NULL, O_OUT },
        { "name", required_argument, NULL, O_NAME },
        { "only", required_argument, NULL, O_ONLY },
        { "quick", no_argument, NULL, O_QUICK },
        { "seconds", required_argument, NULL, O_SECONDS },
        { "keys", required_argument, NULL, O_KEYS },
        { "key-size", required_argument, NULL, O_KSIZE },
        { "value-size", required_argument, NULL, O_VSIZE },
        { "get-ratio", required_argument, NULL, O_GETR },
        { "zipf", required_argument, NULL, O_ZIPF },
        { "ttl-ms", required_argument, NULL, O_TTL },
        { "procs", required_argument, NULL, O_PROCS },
        { "main-procs", required_argument, NULL, O_MAINP },
        { "cache-mib", required_argument, NULL, O_CACHE },
        { "prefault", no_argument, NULL, O_PREFAULT },
        { "s1-ops", required_argument, NULL, O_S1 },
        { "lock-seconds", required_argument, NULL, O_LOCKS },
        { "lock-procs", required_argument, NULL, O_LOCKP },
        { "redis-lock-retry-us", required_argument, NULL, O_RLRETRY },
        { "s3-updaters", required_argument, NULL, O_S3U },
        { "s3-loops", required_argument, NULL, O_S3L },
        { "s3-cap", required_argument, NULL, O_S3C },
        { "s4-rounds", required_argument, NULL, O_S4R },
        { "s4-fill-ms", required_argument, NULL, O_S4F },
        { "s5-seconds", required_argument, NULL, O_S5S },
        { "capacity-mib", required_argument, NULL, O_CAP },
        { "seed", required_argument, NULL, O_SEED },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        double d = 0;
        unsigned long long u = 0;
        if (optarg) {
            errno = 0;
            d = strtod(optarg, &end);
            u = strtoull(optarg, NULL, 10);
        }
        bool num_ok = optarg && !errno && end && *end == '\0' && d >= 0;
        switch (o) {
        case O_MC: cfg.mc_sock = optarg; break;
        case O_MCCAP: cfg.mc_cap_sock = optarg; break;
        case O_MCCAPPID: if (!num_ok) goto bad; cfg.mc_cap_pid = (long)u; break;
        case O_RD: cfg.rd_sock = optarg; break;
        case O_OUT: cfg.out = optarg; break;
        case O_NAME:
            if (strlen(optarg) > 100)
                goto bad;
            snprintf(cfg.name, sizeof cfg.name, "%s", optarg);
            break;
        case O_ONLY: if (!parse_sections(optarg)) goto bad; break;
        case O_QUICK: break;
        case O_SECONDS: if (!num_ok || d <= 0) goto bad; cfg.kv_seconds = d; break;
        case O_KEYS: if (!num_ok || u < 1 || u > 50000000) goto bad; cfg.keys = (unsigned)u; break;
        case O_KSIZE: if (!num_ok || u < 8 || u > 250) goto bad; cfg.key_size = (unsigned)u; break;
        case O_VSIZE: if (!num_ok || u < 8 || u > 65536) goto bad; cfg.value_size = (unsigned)u; break;
        case O_GETR: if (!num_ok || d > 1) goto bad; cfg.get_ratio = d; break;
        case O_ZIPF: if (!num_ok || d <= 0) goto bad; cfg.zipf_s = d; break;
        case O_TTL: if (!num_ok) goto bad; cfg.ttl_ms = u; break;
        case O_PROCS: if (!parse_list(optarg, cfg.procs, &cfg.nprocs, MAX_KV_PROCS)) goto bad; break;
        case O_MAINP: if (!num_ok || u < 1 || u > MAX_KV_PROCS) goto bad; cfg.main_procs = (unsigned)u; break;
        case O_CACHE: if (!num_ok || u < 8) goto bad; cfg.cache_mib = u; break;
        case O_PREFAULT: cfg.prefault = true; break;
        case O_S1: if (!num_ok || u < 1) goto bad; cfg.s1_ops = (unsigned)u; break;
        case O_LOCKS: if (!num_ok || d <= 0) goto bad; cfg.lock_seconds = d; break;
        case O_LOCKP: if (!parse_list(optarg, cfg.lock_procs, &cfg.nlock_procs, 100)) goto bad; break;
        case O_RLRETRY: if (!num_ok) goto bad; cfg.redis_lock_retry_us = (unsigned)u; break;
        case O_S3U: if (!num_ok || u < 1 || u > MAX_PROCS) goto bad; cfg.s3_updaters = (unsigned)u; break;
        case O_S3L: if (!num_ok || u < 1) goto bad; cfg.s3_loops = (unsigned)u; break;
        case O_S3C: if (!num_ok || d <= 0) goto bad; cfg.s3_cap_seconds = d; break;
        case O_S4R: if (!num_ok || u < 1) goto bad; cfg.s4_rounds = (unsigned)u; break;
        case O_S4F: if (!num_ok || u < 1) goto bad; cfg.s4_fill_ms = (unsigned)u; break;
        case O_S5S: if (!num_ok || d <= 0) goto bad; cfg.s5_seconds = d; break;
        case O_CAP: if (!num_ok || u < 8) goto bad; cfg.cap_mib = u; break;
        case O_SEED: if (!num_ok) goto bad; cfg.seed = u; break;
        case 'h': usage(stdout, argv[0]); return 0;
        default: goto bad;
        }
    }
    if (optind != argc)
        goto bad;
    bool main_in_list = false;
    for (unsigned i = 0; i < cfg.nprocs; i++)
        main_in_list |= cfg.procs[i] == cfg.main_procs;
    if (!main_in_list) {
        fprintf(stderr, "bench_compare: --main-procs must be one of --procs\n");
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    machine_info();
    uint64_t t_begin = now_ns();
    printf("shmcache %d.%d.%d bench_compare (build: %s, sanitize: %s)%s\n", SHMC_VERSION_MAJOR,
           SHMC_VERSION_MINOR, SHMC_VERSION_PATCH, BENCH_BUILDTYPE, BENCH_SANITIZE,
           cfg.quick ? "  [--quick: short runs, figures are a smoke test only]" : "");
    printf("machine: %s, %ld CPUs online, %s; %s\n", machine.cpu, machine.nproc,
           machine.kernel, machine.date);
    if (strcmp(BENCH_SANITIZE, "none") != 0 || strcmp(BENCH_BUILDTYPE, "debug") == 0)
        printf("WARNING: not an optimised, uninstrumented build: figures are not "
               "representative\n");

    g_sh = mmap(NULL, sizeof *g_sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_sh == MAP_FAILED) {
        perror("bench_compare: mmap");
        return 1;
    }
    shmc_options opt;
    memset(&opt, 0, sizeof opt);
    opt.size = cfg.cache_mib << 20;
    opt.flags = SHMC_OPEN_CREATE_ONLY | (cfg.prefault ? SHMC_OPEN_PREFAULT : 0);
    shmc_status st = shmc_open(cfg.name, &opt, &g_cache);
    if (st != SHMC_OK) {
        fprintf(stderr, "bench_compare: shmc_open(%s): %s\n", cfg.name, shmc_strerror(st));
        return 1;
    }
    have[SYS_SHMC] = true;
    const char *socks[NSYS] = { NULL, cfg.mc_sock, cfg.rd_sock };
    for (int s = 1; s < NSYS; s++) {
        if (!socks[s]) {
            printf("%s: no socket given, its columns are n/a\n", sys_name[s]);
            continue;
        }
        if (pc_connect_unix(&g_ctl[s], socks[s], 10000) != 0) {
            fprintf(stderr, "bench_compare: cannot connect to %s at %s: %s\n", sys_name[s],
                    socks[s], strerror(errno));
            failures++;
            continue;
        }
        have[s] = true;
    }
    if (have[SYS_REDIS] && redis_setup() != 0) {
        fprintf(stderr, "bench_compare: redis SCRIPT LOAD failed\n");
        failures++;
        have[SYS_REDIS] = false;
    }
    printf("shmcache: %" PRIu64 " MiB cache%s\n", cfg.cache_mib,
           cfg.prefault ? ", SHMC_OPEN_PREFAULT (each worker maps it before the start)" : "");
    printf("peers: memcached %s, redis %s (unix sockets, one blocking request per round trip)\n",
           have[SYS_MC] ? cfg.mc_sock : "-", have[SYS_REDIS] ? cfg.rd_sock : "-");
    kv_setup();

    if (cfg.out) {
        mkdir(cfg.out, 0755);
        char path[4096];
        snprintf(path, sizeof path, "%s/scaling.dat", cfg.out);
        dat_scaling = fopen(path, "w");
        snprintf(path, sizeof path, "%s/latency.dat", cfg.out);
        dat_latency = fopen(path, "w");
        if (!dat_scaling || !dat_latency) {
            fprintf(stderr, "bench_compare: cannot write to %s: %s\n", cfg.out, strerror(errno));
            return 1;
        }
    }

    if (cfg.sections & SEC_KV)
        section_kv();
    if (cfg.sections & SEC_S1)
        section_s1();
    if (cfg.sections & SEC_S2)
        section_s2();
    if (cfg.sections & SEC_S3)
        section_s3();
    if (cfg.sections & SEC_S4)
        section_s4();
    if (cfg.sections & SEC_S5)
        section_s5();
    if (cfg.sections & SEC_MEM)
        section_mem();

    shmc_close(g_cache);
    shmc_destroy(cfg.name);
    for (int s = 1; s < NSYS; s++)
        if (have[s])
            pc_close(&g_ctl[s]);

    print_summary();
    if (dat_scaling)
        fclose(dat_scaling);
    if (dat_latency)
        fclose(dat_latency);
    if (cfg.out) {
        if (write_outputs() != 0) {
            fprintf(stderr, "bench_compare: writing %s: %s\n", cfg.out, strerror(errno));
            failures++;
        } else {
            printf("\nwritten: %s/{summary.csv,results.csv,results.json,scaling.dat,"
                   "latency.dat}\n", cfg.out);
        }
    }
    printf("bench_compare: %.0f s in all%s\n", (double)(now_ns() - t_begin) / 1e9,
           failures ? "" : ", all checks passed");
    if (failures)
        fprintf(stderr, "bench_compare: %d failure(s)\n", failures);
    free(g_keys);
    free(g_value);
    free(g_zipf_cdf);
    free(csv_long.p);
    free(json_runs.p);
    return failures ? 1 : 0;

bad:
    usage(stderr, argv[0]);
    return 2;
}
