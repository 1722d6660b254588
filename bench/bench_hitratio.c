/*
 * bench_hitratio — hit ratio of shmcache against memcached given the same
 * memory, and against an exact LRU holding as many items as shmcache held.
 *
 * Each trace is a deterministic sequence of requests on 16-byte keys with
 * 100-byte values, replayed the way a cache is used (cache-aside): a get,
 * and on a miss a set of the key; "set" requests overwrite unconditionally.
 *   zipf       gets of keys drawn from Zipf(--alpha, default 0.99) over
 *              --keys keys (default 1 M);
 *   scan       the same, plus every --scan-every requests a scan: --scan-len
 *              one-off keys (never requested again), each a get and a set;
 *   overwrite  half the requests are sets of a Zipf key (an overwrite when it
 *              is present), half are gets (miss -> set).
 * The first half of each trace warms the caches up (fills them); the hit
 * ratio is that of the gets in the second half.  The same trace goes to a fresh
 * shmcache of --mib MiB (all-in: header, index and tables included), to a
 * memcached started with -m <same MiB> (run.sh starts it on a unix socket and
 * passes --memcached; its -m counts item memory only, not its hash table),
 * and to an exact LRU simulated in process with a capacity of the items
 * shmcache held at the end of the trace.  Reported: hit ratios side by side
 * and the items each held.
 */
#include "peer_client.h"
#include "shmcache.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_LEN   16
#define VALUE_LEN 100

enum trace_kind { TR_ZIPF, TR_SCAN, TR_OVERWRITE, TR_COUNT };
static const char *const tr_name[TR_COUNT] = {"zipf", "scan", "overwrite"};

static struct {
    uint64_t mib, keys, requests, scan_every, scan_len;
    double alpha;
    const char *mc_sock, *json, *only;
    char name[SHMC_MAX_NAME + 1];
} cfg = {
    .mib = 32,
    .keys = 1000000,
    .requests = 2000000,
    .scan_every = 200000,
    .scan_len = 100000,
    .alpha = 0.99,
};

/* ---- the trace ---- */

typedef struct req {
    uint64_t key;       /* key id */
    bool set;           /* an unconditional set (else get, miss -> set) */
} req;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Zipf by inverse CDF over ranks 1..n (a table of n doubles). */
static double *zipf_cdf(uint64_t n, double alpha)
{
    double *cdf = malloc(n * sizeof *cdf), sum = 0;
    if (!cdf)
        return NULL;
    for (uint64_t i = 0; i < n; i++)
        cdf[i] = (sum += 1.0 / pow((double)(i + 1), alpha));
    for (uint64_t i = 0; i < n; i++)
        cdf[i] /= sum;
    return cdf;
}

static uint64_t zipf_draw(const double *cdf, uint64_t n, uint64_t *rng)
{
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0;
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Scatter ranks over the key ids, so that hot keys are not neighbours. */
    return (lo * 0x9e3779b97f4a7c15ull) % n;
}

static req *make_trace(enum trace_kind k, const double *cdf)
{
    req *t = malloc(cfg.requests * sizeof *t);
    if (!t)
        return NULL;
    uint64_t rng = 0x5eed0000u + (uint64_t)k, scan_next = cfg.keys;
    for (uint64_t i = 0; i < cfg.requests;) {
        if (k == TR_SCAN && i && i % cfg.scan_every == 0) {
            for (uint64_t j = 0; j < cfg.scan_len && i < cfg.requests; j++, i++)
                t[i] = (req){scan_next++, false}; /* one-off keys */
            continue;
        }
        t[i].key = zipf_draw(cdf, cfg.keys, &rng);
        t[i].set = k == TR_OVERWRITE && (rng_next(&rng) & 1);
        i++;
    }
    return t;
}

static void format_key(char out[KEY_LEN], uint64_t id)
{
    char tmp[KEY_LEN + 8];
    snprintf(tmp, sizeof tmp, "h%015" PRIu64, (uint64_t)(id % 1000000000000000ull));
    memcpy(out, tmp, KEY_LEN);
}

/* ---- results ---- */

typedef struct result {
    bool ok;
    uint64_t gets, hits, items;
    double secs;
} result;

static double ratio(const result *r)
{
    return r->gets ? (double)r->hits / (double)r->gets : 0.0;
}

static void count(result *r, uint64_t i, bool hit)
{
    if (i < cfg.requests / 2)
        return; /* warm-up */
    r->gets++;
    r->hits += hit;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- shmcache ---- */

static result run_shmcache(const req *t, shmc_stats *st)
{
    result r = {0};
    shmc_options o = {.size = cfg.mib << 20, .flags = SHMC_OPEN_CREATE_ONLY};
    shmc_t *c;
    (void)shmc_destroy(cfg.name);
    shmc_status s = shmc_open(cfg.name, &o, &c);
    if (s != SHMC_OK) {
        fprintf(stderr, "bench_hitratio: shmc_open: %s\n", shmc_strerror(s));
        return r;
    }
    char key[KEY_LEN];
    unsigned char val[VALUE_LEN], buf[VALUE_LEN];
    memset(val, 'v', sizeof val);
    double t0 = now_s();
    for (uint64_t i = 0; i < cfg.requests; i++) {
        format_key(key, t[i].key);
        if (!t[i].set) {
            size_t vl;
            s = shmc_get(c, key, KEY_LEN, buf, sizeof buf, &vl, NULL);
            count(&r, i, s == SHMC_OK);
            if (s == SHMC_OK)
                continue;
        }
        s = shmc_set(c, key, KEY_LEN, val, VALUE_LEN, 0, 0);
        if (s != SHMC_OK) {
            fprintf(stderr, "bench_hitratio: shmc_set: %s\n", shmc_strerror(s));
            goto out;
        }
    }
    r.secs = now_s() - t0;
    if (shmc_stats_get(c, st) == SHMC_OK) {
        r.items = st->items;
        r.ok = true;
    }
out:
    shmc_close(c);
    (void)shmc_destroy(cfg.name);
    return r;
}

/* ---- memcached ---- */

static result run_memcached(const req *t)
{
    result r = {0};
    pconn pc;
    if (!cfg.mc_sock)
        return r;
    if (pc_connect_unix(&pc, cfg.mc_sock, 5000) != 0) {
        fprintf(stderr, "bench_hitratio: cannot connect to memcached at %s\n", cfg.mc_sock);
        return r;
    }
    char key[KEY_LEN];
    unsigned char val[VALUE_LEN], buf[VALUE_LEN];
    memset(val, 'v', sizeof val);
    double t0 = now_s();
    if (mc_flush_all(&pc) != 0)
        goto out;
    for (uint64_t i = 0; i < cfg.requests; i++) {
        format_key(key, t[i].key);
        if (!t[i].set) {
            size_t vl;
            int g = mc_get(&pc, key, KEY_LEN, buf, sizeof buf, &vl, NULL);
            if (g < 0)
                goto out;
            count(&r, i, g == 1);
            if (g == 1)
                continue;
        }
        /* noreply: sent ahead of the next get, in order (one round trip
         * per get, as a client that does not wait for its sets) */
        if (mc_set_pipelined(&pc, key, KEY_LEN, val, VALUE_LEN, 0) < 0)
            goto out;
    }
    if (mc_sync(&pc) != 0)
        goto out;
    r.secs = now_s() - t0;
    r.ok = mc_stat(&pc, NULL, "curr_items", &r.items) == 0;
out:
    if (!r.ok)
        fprintf(stderr, "bench_hitratio: memcached at %s: I/O or protocol error\n",
                cfg.mc_sock);
    pc_close(&pc);
    return r;
}

/* ---- exact LRU: an open-addressing table of key -> node, and a doubly
 * linked list of nodes in recency order ---- */

typedef struct lru {
    uint64_t cap, n, mask;
    uint64_t *tab;          /* node + 1, 0 = empty (linear probing) */
    uint64_t *key;
    uint32_t *prev, *next;  /* node links; UINT32_MAX = none */
    uint32_t head, tail;    /* most / least recent */
} lru;

static uint64_t lru_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
}

static bool lru_init(lru *l, uint64_t cap)
{
    memset(l, 0, sizeof *l);
    l->cap = cap ? cap : 1;
    uint64_t sz = 1;
    while (sz < 2 * l->cap)
        sz <<= 1;
    l->mask = sz - 1;
    l->tab = calloc(sz, sizeof *l->tab);
    l->key = malloc(l->cap * sizeof *l->key);
    l->prev = malloc(l->cap * sizeof *l->prev);
    l->next = malloc(l->cap * sizeof *l->next);
    l->head = l->tail = UINT32_MAX;
    return l->tab && l->key && l->prev && l->next;
}

static void lru_free(lru *l)
{
    free(l->tab);
    free(l->key);
    free(l->prev);
    free(l->next);
}

static uint64_t *lru_slot(lru *l, uint64_t k)
{
    uint64_t h = lru_hash(k) & l->mask;
    while (l->tab[h] && l->key[l->tab[h] - 1] != k)
        h = (h + 1) & l->mask;
    return &l->tab[h];
}

static void lru_unlink(lru *l, uint32_t x)
{
    if (l->prev[x] != UINT32_MAX)
        l->next[l->prev[x]] = l->next[x];
    else
        l->head = l->next[x];
    if (l->next[x] != UINT32_MAX)
        l->prev[l->next[x]] = l->prev[x];
    else
        l->tail = l->prev[x];
}

static void lru_push(lru *l, uint32_t x)
{
    l->prev[x] = UINT32_MAX;
    l->next[x] = l->head;
    if (l->head != UINT32_MAX)
        l->prev[l->head] = x;
    l->head = x;
    if (l->tail == UINT32_MAX)
        l->tail = x;
}

/* Removes the table entry at slot p, re-placing the run after it. */
static void lru_erase(lru *l, uint64_t *p)
{
    uint64_t i = (uint64_t)(p - l->tab);
    l->tab[i] = 0;
    for (uint64_t j = (i + 1) & l->mask; l->tab[j]; j = (j + 1) & l->mask) {
        uint64_t v = l->tab[j];
        l->tab[j] = 0;
        *lru_slot(l, l->key[v - 1]) = v;
    }
}

/* Touches key k (get or set); returns whether it was present. */
static bool lru_access(lru *l, uint64_t k)
{
    uint64_t *p = lru_slot(l, k);
    if (*p) {
        uint32_t x = (uint32_t)(*p - 1);
        lru_unlink(l, x);
        lru_push(l, x);
        return true;
    }
    uint32_t x;
    if (l->n < l->cap) {
        x = (uint32_t)l->n++;
    } else {
        x = l->tail;
        lru_unlink(l, x);
        lru_erase(l, lru_slot(l, l->key[x]));
        p = lru_slot(l, k);
    }
    l->key[x] = k;
    *p = (uint64_t)x + 1;
    lru_push(l, x);
    return false;
}

static result run_lru(const req *t, uint64_t cap)
{
    result r = {0};
    lru l;
    if (!lru_init(&l, cap)) {
        lru_free(&l);
        return r;
    }
    for (uint64_t i = 0; i < cfg.requests; i++) {
        bool hit = lru_access(&l, t[i].key);
        if (!t[i].set)
            count(&r, i, hit);
    }
    r.items = l.n;
    r.ok = true;
    lru_free(&l);
    return r;
}

/* ---- main ---- */

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--mib M] [--keys N] [--requests N] [--alpha A] [--scan-every N]\n"
            "          [--scan-len N] [--only zipf,scan,overwrite] [--memcached SOCK]\n"
            "          [--name NAME] [--json FILE]\n"
            "  --mib M         memory of each cache (default 32): shmcache's whole segment,\n"
            "                  memcached's -m (run.sh starts it with the same M)\n"
            "  --keys N        Zipf key space (default 1000000)\n"
            "  --requests N    requests per trace (default 2000000; the first half warms up)\n"
            "  --alpha A       Zipf exponent (default 0.99)\n"
            "  --scan-every N  scan trace: a scan every N requests (default 200000)\n"
            "  --scan-len N    scan trace: one-off keys per scan (default 100000)\n"
            "  --memcached S   memcached unix socket (else its column is n/a)\n",
            argv0);
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || *s == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void print_row(FILE *json, enum trace_kind k, const result *s, const result *m,
                      const result *l)
{
    char mh[16] = "n/a", mi[24] = "n/a", vs[16] = "";
    if (m->ok) {
        snprintf(mh, sizeof mh, "%.4f", ratio(m));
        snprintf(mi, sizeof mi, "%" PRIu64, m->items);
        snprintf(vs, sizeof vs, "%+.4f", ratio(s) - ratio(m));
    }
    printf("%-10s %9.4f %10s %9.4f %9s %12" PRIu64 " %12s %12" PRIu64 "\n", tr_name[k],
           ratio(s), mh, ratio(l), vs, s->items, mi, l->items);
    if (!json)
        return;
    fprintf(json, "%s\n    {\"trace\": \"%s\", \"shmcache\": {\"hit_ratio\": %.6f, \"items\": %"
                  PRIu64 "}, \"memcached\": ", k ? "," : "", tr_name[k], ratio(s), s->items);
    if (m->ok)
        fprintf(json, "{\"hit_ratio\": %.6f, \"items\": %" PRIu64 "}", ratio(m), m->items);
    else
        fprintf(json, "null");
    fprintf(json, ", \"lru\": {\"hit_ratio\": %.6f, \"items\": %" PRIu64 "}}", ratio(l),
            l->items);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"mib", required_argument, NULL, 'm'},     {"keys", required_argument, NULL, 'k'},
        {"requests", required_argument, NULL, 'r'}, {"alpha", required_argument, NULL, 'a'},
        {"scan-every", required_argument, NULL, 'e'}, {"scan-len", required_argument, NULL, 'l'},
        {"only", required_argument, NULL, 'o'},   {"memcached", required_argument, NULL, 'M'},
        {"name", required_argument, NULL, 'n'},   {"json", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    snprintf(cfg.name, sizeof cfg.name, "shmcache-hitratio-%ld", (long)getpid());
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'm': ok = parse_u64(optarg, 2, 1u << 20, &cfg.mib); break;
        case 'k': ok = parse_u64(optarg, 1, 1ull << 30, &cfg.keys); break;
        case 'r': ok = parse_u64(optarg, 4, 1ull << 32, &cfg.requests); break;
        case 'e': ok = parse_u64(optarg, 1, 1ull << 40, &cfg.scan_every); break;
        case 'l': ok = parse_u64(optarg, 1, 1ull << 30, &cfg.scan_len); break;
        case 'a': cfg.alpha = strtod(optarg, NULL); ok = cfg.alpha > 0 && cfg.alpha < 10; break;
        case 'o': cfg.only = optarg; break;
        case 'M': cfg.mc_sock = optarg; break;
        case 'n': snprintf(cfg.name, sizeof cfg.name, "%s", optarg); break;
        case 'j': cfg.json = optarg; break;
        case 'h': usage(stdout, argv[0]); return 0;
        default: ok = false; break;
        }
        if (!ok) {
            usage(stderr, argv[0]);
            return 2;
        }
    }
    double *cdf = zipf_cdf(cfg.keys, cfg.alpha);
    if (!cdf)
        return 1;
    FILE *json = cfg.json ? fopen(cfg.json, "w") : NULL;
    if (cfg.json && !json) {
        fprintf(stderr, "bench_hitratio: %s: %s\n", cfg.json, strerror(errno));
        return 1;
    }
    if (json)
        fprintf(json, "{\"mib\": %" PRIu64 ", \"keys\": %" PRIu64 ", \"requests\": %" PRIu64
                      ", \"alpha\": %.3f, \"traces\": [", cfg.mib, cfg.keys, cfg.requests,
                cfg.alpha);
    printf("hit ratio, cache-aside (get, miss -> set), %" PRIu64 " MiB each, Zipf %.2f over %"
           PRIu64 " keys of %d B / %d B, %" PRIu64 " requests per trace (first half warm-up)\n",
           cfg.mib, cfg.alpha, cfg.keys, KEY_LEN, VALUE_LEN, cfg.requests);
    printf("%-10s %9s %10s %9s %9s %12s %12s %12s\n", "trace", "shmcache", "memcached",
           "exact LRU", "shm-mc", "shm items", "mc items", "LRU items");
    int rc = 0;
    for (int k = 0; k < TR_COUNT; k++) {
        if (cfg.only && !strstr(cfg.only, tr_name[k]))
            continue;
        req *t = make_trace((enum trace_kind)k, cdf);
        if (!t)
            return 1;
        shmc_stats st;
        result s = run_shmcache(t, &st), m = run_memcached(t);
        result l = s.ok ? run_lru(t, s.items) : (result){0};
        if (!s.ok || (cfg.mc_sock && !m.ok))
            rc = 1;
        print_row(json, (enum trace_kind)k, &s, &m, &l);
        fprintf(stderr, "  %s: shmcache %.1f s (evictions %" PRIu64 ", compacted %" PRIu64
                        ", rescued %" PRIu64 "), memcached %.1f s\n",
                tr_name[k], s.secs, st.evictions, st.compacted, st.rescued, m.secs);
        free(t);
    }
    if (json) {
        fprintf(json, "\n]}\n");
        fclose(json);
    }
    free(cdf);
    return rc;
}
