/*
 * shmcache-cli — inspect and operate a live shmcache from the shell.
 *
 * Uses only the public API (shmcache.h), including its read-only
 * introspection calls.  See `shmcache-cli --help` and tools/README-cli.md.
 *
 * Exit status: 0 success; 1 the operation failed (cache or key not found,
 * library error, corruption found by verify); 2 usage error.
 */
#include "shmcache.h"
#include "dumpfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EX_OK 0
#define EX_FAIL 1
#define EX_USAGE 2

static const char *prog = "shmcache-cli";

/* ---- small helpers ---- */

static int fail(const char *name, const char *what, shmc_status st)
{
    if (st == SHMC_ESYS)
        fprintf(stderr, "%s: cache '%s': %s: %s (%s)\n", prog, name, what, shmc_strerror(st),
                strerror(errno));
    else
        fprintf(stderr, "%s: cache '%s': %s: %s\n", prog, name, what, shmc_strerror(st));
    return EX_FAIL;
}

static int usage_err(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s %s: ", prog, cmd);
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\n(try '%s %s --help')\n", prog, cmd);
    return EX_USAGE;
}

/* 256M, 1G, 4096, 64k ... */
static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1ull << 10; end++; break;
    case 'm': case 'M': mul = 1ull << 20; end++; break;
    case 'g': case 'G': mul = 1ull << 30; end++; break;
    case 't': case 'T': mul = 1ull << 40; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end || (v && mul > UINT64_MAX / v))
        return false;
    *out = v * mul;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || s[0] == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* TTL: plain number = seconds; suffixes ms, s, m, h, d. */
static bool parse_ttl(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    if (!*s || s[0] == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    uint64_t mul;
    if (!*end || !strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else if (!strcmp(end, "d"))
        mul = 86400000;
    else
        return false;
    if (v && mul > UINT64_MAX / v)
        return false;
    *ms = v * mul;
    return true;
}

/* Prints bytes as a double-quoted string with C/JSON-compatible escapes
 * (printable ASCII as is; others \xHH, or \u00HH when json). */
static void put_escaped(FILE *f, const void *p, size_t n, bool json)
{
    const unsigned char *b = p;
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = b[i];
        if (ch == '"' || ch == '\\') {
            fputc('\\', f);
            fputc(ch, f);
        } else if (ch == '\n') {
            fputs("\\n", f);
        } else if (ch == '\t') {
            fputs("\\t", f);
        } else if (ch >= 0x20 && ch < 0x7f) {
            fputc(ch, f);
        } else if (json) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fprintf(f, "\\x%02x", ch);
        }
    }
    fputc('"', f);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Undoes put_escaped, in place (the result is never longer): \\ \" \n \t
 * \xHH and \u00HH, within optional surrounding double quotes, so that a key
 * copied from `keys` output names that key.  Returns the length, or -1 for
 * a malformed escape.  A first pass (write = false) only checks, so that a
 * bad argument is left as it was for the error message. */
static long unescape_pass(char *s, bool write)
{
    char dummy;
    size_t n = strlen(s);
    char *in = s, *end = s + n, *out = s;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        in++;
        end--;
    }
    while (in < end) {
        char *o = write ? out++ : &dummy;
        if (*in != '\\') {
            *o = *in++;
            continue;
        }
        if (++in == end)
            return -1;
        char e = *in++;
        int hi, lo;
        switch (e) {
        case '\\': case '"': *o = e; break;
        case 'n': *o = '\n'; break;
        case 't': *o = '\t'; break;
        case 'x':
        case 'u':
            if (e == 'u') { /* JSON output: \u00HH only */
                if (end - in < 2 || in[0] != '0' || in[1] != '0')
                    return -1;
                in += 2;
            }
            if (end - in < 2 || (hi = hexval(in[0])) < 0 || (lo = hexval(in[1])) < 0)
                return -1;
            *o = (char)(hi << 4 | lo);
            in += 2;
            break;
        default: return -1;
        }
    }
    return write ? (long)(out - s) : 0;
}

static long unescape(char *s)
{
    return unescape_pass(s, false) < 0 ? -1 : unescape_pass(s, true);
}

/* The bytes that the argument `what` (KEY, LOCK, --prefix) names: arg
 * itself, or with `escaped` arg decoded in place.  Sets *len and returns 0,
 * or returns the exit status of a usage error naming the bad argument. */
static int arg_bytes(const char *cmdname, const char *what, char *arg, bool escaped, size_t *len)
{
    long n = escaped ? unescape(arg) : (long)strlen(arg);
    if (n < 0) {
        char fmt[128];
        snprintf(fmt, sizeof fmt, "bad escape in %s '%%s' (\\xHH, \\\\, \\\", \\n, \\t)",
                 what);
        return usage_err(cmdname, fmt, arg);
    }
    *len = (size_t)n;
    return 0;
}

static void fmt_ttl(char *buf, size_t n, uint64_t ms)
{
    if (ms == SHMC_TTL_NONE)
        snprintf(buf, n, "never");
    else if (ms >= 10000)
        snprintf(buf, n, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, n, "%" PRIu64 "ms", ms);
}

static void fmt_bytes(char *buf, size_t n, uint64_t b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, n, "%" PRIu64 " B", b);
    else
        snprintf(buf, n, "%.1f %s", v, u[i]);
}

static int open_cache(const char *name, shmc_t **c)
{
    shmc_options o = {0};
    o.flags = SHMC_OPEN_ATTACH_ONLY;
    shmc_status st = shmc_open(name, &o, c);
    if (st != SHMC_OK)
        return fail(name, "open", st);
    return EX_OK;
}

/* Reads all of stdin or a file. */
static bool slurp(FILE *f, char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b)
        return false;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return false;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                free(b);
                return false;
            }
            break;
        }
    }
    *out = b;
    *len = n;
    return true;
}

/* ---- command table ---- */

typedef int (*cmd_fn)(int argc, char **argv);

typedef struct cmd {
    const char *name;
    cmd_fn fn;
    const char *synopsis;
    const char *help;
} cmd;

static const cmd *find_cmd(const char *name);

static bool want_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    }
    return false;
}

static int cmd_help(const char *name)
{
    const cmd *c = find_cmd(name);
    printf("usage: %s %s\n\n%s", prog, c->synopsis, c->help);
    printf("\nExit status: 0 ok, 1 failed (not found, library error, corruption), 2 usage.\n");
    return EX_OK;
}

/* ---- create / destroy / list ---- */

static int cmd_create(int argc, char **argv)
{
    static const struct option lo[] = {
        {"size", required_argument, 0, 's'},      {"max-key", required_argument, 0, 'k'},
        {"max-value", required_argument, 0, 'v'}, {"slots", required_argument, 0, 'p'},
        {"locks", required_argument, 0, 'l'},     {"mode", required_argument, 0, 'm'},
        {"max-items", required_argument, 0, 'i'}, {0, 0, 0, 0}};
    shmc_options o = {0};
    o.flags = SHMC_OPEN_CREATE_ONLY;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "s:", lo, NULL)) != -1) {
        uint64_t v;
        switch (ch) {
        case 's':
            if (!parse_size(optarg, &o.size))
                return usage_err("create", "bad --size '%s'", optarg);
            break;
        case 'k':
            if (!parse_size(optarg, &v) || v > UINT32_MAX)
                return usage_err("create", "bad --max-key '%s'", optarg);
            o.max_key = (uint32_t)v;
            break;
        case 'v':
            if (!parse_size(optarg, &v) || v > UINT32_MAX)
                return usage_err("create", "bad --max-value '%s'", optarg);
            o.max_value = (uint32_t)v;
            break;
        case 'p':
            if (!parse_u32(optarg, &o.slots))
                return usage_err("create", "bad --slots '%s'", optarg);
            break;
        case 'l':
            if (!parse_u32(optarg, &o.locks))
                return usage_err("create", "bad --locks '%s'", optarg);
            break;
        case 'i':
            if (!parse_u64(optarg, &o.max_items) || o.max_items == 0)
                return usage_err("create", "bad --max-items '%s'", optarg);
            break;
        case 'm': {
            char *end;
            unsigned long m = strtoul(optarg, &end, 8);
            if (*end || !*optarg || m > 0777)
                return usage_err("create", "bad --mode '%s' (octal, e.g. 0600)", optarg);
            o.mode = (uint32_t)m;
            break;
        }
        default:
            return usage_err("create", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return usage_err("create", "expects exactly one NAME%s", "");
    const char *name = argv[optind];
    shmc_t *c;
    shmc_status st = shmc_open(name, &o, &c);
    if (st != SHMC_OK)
        return fail(name, "create", st);
    shmc_info in;
    shmc_info_get(c, &in);
    char sz[32];
    fmt_bytes(sz, sizeof sz, in.size);
    printf("created cache '%s': %s, max_key %u, max_value %u, slots %u, locks %u, "
           "max_items %" PRIu64 "\n", name, sz, in.max_key, in.max_value, in.slots, in.locks,
           in.max_items);
    shmc_close(c);
    return EX_OK;
}

static int cmd_destroy(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return usage_err("destroy", "expects exactly one NAME%s", "");
    shmc_status st = shmc_destroy(argv[1]);
    if (st != SHMC_OK)
        return fail(argv[1], "destroy", st);
    printf("destroyed cache '%s'\n", argv[1]);
    return EX_OK;
}

/* Options of a command whose options are flags only (--json, --force...):
 * flag, and flag2 unless it is NULL; sets *set / *set2 for those given.
 * Returns optind, or -1 with *rc set (usage error). */
static int flag_opts(const char *cmdname, const char *flag, bool *set, const char *flag2,
                     bool *set2, int argc, char **argv, int *rc)
{
    const struct option lo[] = {{flag, no_argument, 0, '1'},
                                {flag2 ? flag2 : flag, no_argument, 0, '2'},
                                {0, 0, 0, 0}};
    int ch;
    *set = false;
    if (set2)
        *set2 = false;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == '1') {
            *set = true;
        } else if (ch == '2' && set2) {
            *set2 = true;
        } else {
            *rc = usage_err(cmdname, "unknown option '%s'", argv[optind - 1]);
            return -1;
        }
    }
    return optind;
}

static int flag_opt(const char *cmdname, const char *flag, int argc, char **argv, bool *set,
                    int *rc)
{
    return flag_opts(cmdname, flag, set, NULL, NULL, argc, argv, rc);
}

static int cmd_list(int argc, char **argv)
{
    bool json;
    int rc, i = flag_opt("list", "json", argc, argv, &json, &rc);
    if (i < 0)
        return rc;
    if (i != argc)
        return usage_err("list", "takes no arguments%s", "");
    DIR *d = opendir("/dev/shm");
    if (!d) {
        fprintf(stderr, "%s: cannot read /dev/shm: %s\n", prog, strerror(errno));
        return EX_FAIL;
    }
    if (json)
        printf("[");
    else
        printf("%-32s %10s %10s %10s %10s %6s  %s\n", "NAME", "SIZE", "USED", "FREE", "ITEMS",
               "SLOTS", "STATUS");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        /* Only files with a shmcache header; an unready one (being created,
         * or its creator died) is listed but never opened. */
        shmc_peek_info pk;
        shmc_status st = shmc_peek(de->d_name, &pk);
        if (st == SHMC_ENAME || st == SHMC_ENOENT || st == SHMC_ECORRUPT)
            continue; /* not a cache name, gone, or not a cache */
        const char *why = NULL;
        char vbuf[64];
        if (st == SHMC_EVERSION) {
            snprintf(vbuf, sizeof vbuf, "layout version %u (this tool: %u)", pk.layout_version,
                     SHMC_LAYOUT_VERSION);
            why = vbuf;
        } else if (st == SHMC_OK && !pk.ready) {
            why = "not initialised (being created, or its creator died)";
        } else if (st != SHMC_OK) {
            why = shmc_strerror(st);
        }
        shmc_t *c = NULL;
        shmc_options o = {0};
        o.flags = SHMC_OPEN_ATTACH_ONLY;
        if (!why && (st = shmc_open(de->d_name, &o, &c)) != SHMC_OK)
            why = shmc_strerror(st);
        shmc_stats s = {0};
        shmc_info in = {0};
        size_t np = 0;
        if (!why) {
            shmc_info_get(c, &in);
            shmc_stats_get(c, &s);
            shmc_procs(c, 0, NULL, 0, &np); /* live participant slots (threads) */
            shmc_close(c);
        }
        if (json) {
            printf("%s{\"name\":", n ? "," : "");
            put_escaped(stdout, de->d_name, strlen(de->d_name), true);
            if (!why)
                printf(",\"ok\":true,\"size\":%" PRIu64 ",\"bytes_used\":%" PRIu64
                       ",\"bytes_free\":%" PRIu64 ",\"items\":%" PRIu64 ",\"slots_live\":%zu}",
                       in.size, s.bytes_used, s.bytes_free, s.items, np);
            else
                printf(",\"ok\":false,\"error\":\"%s\"}", why);
        } else if (!why) {
            char a[32], b[32], f[32];
            fmt_bytes(a, sizeof a, in.size);
            fmt_bytes(b, sizeof b, s.bytes_used);
            fmt_bytes(f, sizeof f, s.bytes_free);
            printf("%-32s %10s %10s %10s %10" PRIu64 " %6zu  ok\n", de->d_name, a, b, f, s.items,
                   np);
        } else {
            printf("%-32s %10s %10s %10s %10s %6s  %s\n", de->d_name, "-", "-", "-", "-", "-",
                   why);
        }
        n++;
    }
    closedir(d);
    if (json)
        printf("]\n");
    return EX_OK;
}

/* ---- stats ---- */

static volatile sig_atomic_t stop_flag;
static void on_sigint(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static double ratio(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

static uint64_t garbage_bytes(const shmc_stats *s)
{
    uint64_t x = s->bytes_used + s->bytes_free;
    return s->bytes_total > x ? s->bytes_total - x : 0;
}

/* Every statistic comes from shmcache.h's SHMC_STATS_FIELDS:
 * X(name, prometheus type ("counter" / "gauge"), source, help). */

/* The cache's shmc_info.max_items (a creation parameter, not a statistic). */
static uint64_t stats_max_items;

static void stats_json(const char *name, const shmc_stats *s)
{
    printf("{\"cache\":");
    put_escaped(stdout, name, strlen(name), true);
#define J(f, t, src, h) printf(",\"%s\":%" PRIu64, #f, s->f);
    SHMC_STATS_FIELDS(J)
#undef J
    printf(",\"bytes_garbage\":%" PRIu64, garbage_bytes(s));
    printf(",\"max_items\":%" PRIu64, stats_max_items);
    printf(",\"hit_ratio\":%.6f", ratio(s->hits, s->gets));
    printf(",\"bytes_per_item\":%.1f", ratio(s->bytes_used, s->items));
    printf("}\n");
}

static void stats_prom(const char *name, const shmc_stats *s)
{
    char lbl[300];
    size_t k = 0;
    for (const char *p = name; *p && k + 2 < sizeof lbl; p++)
        lbl[k++] = *p; /* cache names are [A-Za-z0-9._-]: nothing to escape */
    lbl[k] = 0;
#define P(f, t, src, h) \
    printf("# HELP shmcache_%s%s %s\n# TYPE shmcache_%s%s %s\nshmcache_%s%s{cache=\"%s\"} %" PRIu64 "\n", \
           #f, !strcmp(#t, "counter") ? "_total" : "", h, #f, \
           !strcmp(#t, "counter") ? "_total" : "", #t, #f, \
           !strcmp(#t, "counter") ? "_total" : "", lbl, s->f);
    SHMC_STATS_FIELDS(P)
#undef P
    printf("# HELP shmcache_bytes_garbage bytes of dead items in sealed segments\n"
           "# TYPE shmcache_bytes_garbage gauge\nshmcache_bytes_garbage{cache=\"%s\"} %" PRIu64 "\n",
           lbl, garbage_bytes(s));
    printf("# HELP shmcache_max_items items the index holds (creation parameter)\n"
           "# TYPE shmcache_max_items gauge\nshmcache_max_items{cache=\"%s\"} %" PRIu64 "\n",
           lbl, stats_max_items);
    printf("# HELP shmcache_hit_ratio hits / gets since creation\n"
           "# TYPE shmcache_hit_ratio gauge\nshmcache_hit_ratio{cache=\"%s\"} %.6f\n", lbl,
           ratio(s->hits, s->gets));
}

static void stats_text(const char *name, const shmc_stats *s, const shmc_stats *prev,
                       double dt)
{
    char u[32], f[32], t[32], g[32], d[32];
    fmt_bytes(d, sizeof d, s->bytes_dead);
    fmt_bytes(u, sizeof u, s->bytes_used);
    fmt_bytes(f, sizeof f, s->bytes_free);
    fmt_bytes(t, sizeof t, s->bytes_total);
    fmt_bytes(g, sizeof g, garbage_bytes(s));
    printf("cache '%s'\n", name);
    printf("  hit ratio     %.2f%%  (%" PRIu64 " hits / %" PRIu64 " gets)\n",
           100.0 * ratio(s->hits, s->gets), s->hits, s->gets);
    printf("  ops           gets %" PRIu64 "  sets %" PRIu64 "  deletes %" PRIu64 "\n", s->gets,
           s->sets, s->deletes);
    if (prev && dt > 0)
        printf("  rate          gets %.0f/s  sets %.0f/s  deletes %.0f/s\n",
               (double)(s->gets - prev->gets) / dt, (double)(s->sets - prev->sets) / dt,
               (double)(s->deletes - prev->deletes) / dt);
    printf("  removed       evictions %" PRIu64 "  expirations %" PRIu64 "  rescued %" PRIu64
           "  enomem %" PRIu64 "\n",
           s->evictions, s->expirations, s->rescued, s->enomem);
    printf("  compacted     %" PRIu64 " live items moved, %" PRIu64 " segments\n", s->compacted,
           s->compactions);
    printf("  memory        used (live) %s  dead %s  free %s  garbage %s  of %s\n", u, d, f, g,
           t);
    printf("  items         %" PRIu64 " of max_items %" PRIu64 " (index %" PRIu64
           " slots, %.1f%% full; %.1f bytes/item)\n",
           s->items, stats_max_items, s->index_capacity,
           100.0 * ratio(s->items, s->index_capacity), ratio(s->bytes_used, s->items));
    printf("  segments      free %" PRIu64 "  open %" PRIu64 "  sealed %" PRIu64
           "  retired %" PRIu64 "\n",
           s->segments_free, s->segments_open, s->segments_sealed, s->segments_retired);
    printf("  slots         live %" PRIu64 "  reaped %" PRIu64 "  ejections %" PRIu64 "\n",
           s->slots_live, s->slots_reaped, s->ejections);
    printf("  locks         acquires %" PRIu64 "  waits %" PRIu64 "  timeouts %" PRIu64
           "  takeovers %" PRIu64 "  held %" PRIu64 "/%" PRIu64 "\n",
           s->lock_acquires, s->lock_waits, s->lock_timeouts, s->lock_takeovers, s->locks_used,
           s->locks_capacity);
    printf("  singleflight  fills %" PRIu64 "  waits %" PRIu64 "  takeovers %" PRIu64
           "  errors %" PRIu64 "\n",
           s->fills, s->fill_waits, s->fill_takeovers, s->fill_errors);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmd_stats(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"prometheus", no_argument, 0, 'P'},
                                       {"watch", required_argument, 0, 'w'},
                                       {"count", required_argument, 0, 'n'},
                                       {0, 0, 0, 0}};
    bool json = false, prom = false;
    uint64_t watch = 0, count = 0;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'P': prom = true; break;
        case 'w':
            if (!parse_u64(optarg, &watch) || watch == 0 || watch > 86400)
                return usage_err("stats", "bad --watch '%s' (seconds, 1..86400)", optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, &count) || count == 0)
                return usage_err("stats", "bad --count '%s'", optarg);
            break;
        default:
            return usage_err("stats", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (json && prom)
        return usage_err("stats", "--json and --prometheus exclude each other%s", "");
    if (argc - optind != 1)
        return usage_err("stats", "expects exactly one NAME%s", "");
    const char *name = argv[optind];
    shmc_t *c;
    int rc = open_cache(name, &c);
    if (rc)
        return rc;
    shmc_stats s, prev;
    bool have_prev = false;
    double tprev = 0;
    bool tty = isatty(STDOUT_FILENO);
    shmc_info info;
    stats_max_items = shmc_info_get(c, &info) == SHMC_OK ? info.max_items : 0;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    for (uint64_t iter = 1;; iter++) {
        shmc_status st = shmc_stats_get(c, &s);
        if (st != SHMC_OK) {
            shmc_close(c);
            return fail(name, "stats", st);
        }
        double now = mono_s();
        if (watch && tty && !json && !prom)
            printf("\033[H\033[2J");
        if (json)
            stats_json(name, &s);
        else if (prom)
            stats_prom(name, &s);
        else
            stats_text(name, &s, have_prev ? &prev : NULL, now - tprev);
        fflush(stdout);
        if (!watch || (count && iter >= count) || stop_flag)
            break;
        prev = s;
        tprev = now;
        have_prev = true;
        struct timespec ts = {.tv_sec = (time_t)watch};
        while (!stop_flag && nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
        if (stop_flag)
            break;
        if (!json && !prom && !tty)
            printf("\n");
    }
    shmc_close(c);
    return EX_OK;
}

/* ---- key operations ---- */

/* Parses options for a key command: NAME KEY [VALUE].  Returns argc index of
 * NAME or -1 after printing the usage error (*rc set). */
typedef struct kopts {
    uint64_t ttl;
    bool has_ttl;
    uint32_t flags;
    bool raw;
    const char *file;
    uint64_t delta, initial;
    bool create, decr;
    bool escaped;
    const char *key; /* KEY, decoded when escaped */
    size_t klen;
} kopts;

static int parse_kopts(const char *cmdname, int argc, char **argv, kopts *k, int *rc)
{
    static const struct option lo[] = {
        {"ttl", required_argument, 0, 't'},   {"flags", required_argument, 0, 'f'},
        {"raw", no_argument, 0, 'r'},         {"file", required_argument, 0, 'F'},
        {"create", required_argument, 0, 'c'}, {"decr", no_argument, 0, 'd'},
        {"escaped", no_argument, 0, 'e'},     {0, 0, 0, 0}};
    memset(k, 0, sizeof *k);
    int ch;
    optind = 1;
    opterr = 0;
    /* "-" alone (stdin) is an operand, which getopt leaves alone. */
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            if (!parse_ttl(optarg, &k->ttl)) {
                *rc = usage_err(cmdname, "bad --ttl '%s' (e.g. 30, 30s, 500ms, 2h, 0 = never)",
                                optarg);
                return -1;
            }
            k->has_ttl = true;
            break;
        case 'f':
            if (!parse_u32(optarg, &k->flags)) {
                *rc = usage_err(cmdname, "bad --flags '%s'", optarg);
                return -1;
            }
            break;
        case 'r': k->raw = true; break;
        case 'F': k->file = optarg; break;
        case 'c':
            if (!parse_u64(optarg, &k->initial)) {
                *rc = usage_err(cmdname, "bad --create '%s'", optarg);
                return -1;
            }
            k->create = true;
            break;
        case 'd': k->decr = true; break;
        case 'e': k->escaped = true; break;
        default:
            *rc = usage_err(cmdname, "unknown or incomplete option '%s'", argv[optind - 1]);
            return -1;
        }
    }
    return optind;
}

/* Takes KEY from argv (decoding it with --escaped) into k->key/klen.
 * Returns 0, or the exit status of a usage error. */
static int take_key(const char *cmdname, char *arg, kopts *k)
{
    k->key = arg;
    return arg_bytes(cmdname, "KEY", arg, k->escaped, &k->klen);
}

/* "key K not found" on stderr, K escaped when it is not plain text. */
static int key_not_found(const char *name, const kopts *k, const char *hint)
{
    fprintf(stderr, "%s: cache '%s': key ", prog, name);
    put_escaped(stderr, k->key, k->klen, false);
    fprintf(stderr, " not found%s\n", hint);
    return EX_FAIL;
}

/* The start of every key command: options, then NAME KEY and up to `extra`
 * more operands (`usage` says which), then opens NAME.  Returns the index
 * of NAME in argv, or -1 with *rc set (a usage error, or the open failed). */
static int key_cmd_open(const char *cmdname, const char *usage, int extra, int argc,
                        char **argv, kopts *k, shmc_t **c, int *rc)
{
    int i = parse_kopts(cmdname, argc, argv, k, rc);
    if (i < 0)
        return -1;
    if (argc - i < 2 || argc - i > 2 + extra) {
        *rc = usage_err(cmdname, "expects %s", usage);
        return -1;
    }
    if ((*rc = take_key(cmdname, argv[i + 1], k)) || (*rc = open_cache(argv[i], c)))
        return -1;
    return i;
}

static int cmd_get(int argc, char **argv)
{
    kopts k;
    shmc_t *c;
    int rc, i = key_cmd_open("get", "NAME KEY", 0, argc, argv, &k, &c, &rc);
    if (i < 0)
        return rc;
    const char *name = argv[i];
    void *val;
    size_t vlen;
    uint32_t flags;
    shmc_status st = shmc_get_alloc(c, k.key, k.klen, &val, &vlen, &flags);
    if (st == SHMC_NOT_FOUND) {
        shmc_close(c);
        return key_not_found(name, &k, "");
    }
    if (st != SHMC_OK) {
        shmc_close(c);
        return fail(name, "get", st);
    }
    if (k.raw) {
        fwrite(val, 1, vlen, stdout);
    } else {
        put_escaped(stdout, val, vlen, false);
        uint64_t ttl = 0;
        char tb[32] = "?";
        if (shmc_ttl(c, k.key, k.klen, &ttl) == SHMC_OK)
            fmt_ttl(tb, sizeof tb, ttl);
        printf("  (%zu bytes, flags %u, ttl %s)\n", vlen, flags, tb);
    }
    free(val);
    shmc_close(c);
    return fflush(stdout) == 0 ? EX_OK : EX_FAIL;
}

static int cmd_set(int argc, char **argv)
{
    kopts k;
    int rc = 0, i = parse_kopts("set", argc, argv, &k, &rc);
    if (i < 0)
        return rc;
    int nargs = argc - i;
    if (nargs != 3 && !(nargs == 2 && k.file))
        return usage_err("set", "expects NAME KEY VALUE, NAME KEY - (stdin) or NAME KEY --file F%s",
                         "");
    if (nargs == 3 && k.file)
        return usage_err("set", "give the value either as an argument or with --file%s", "");
    const char *name = argv[i];
    if ((rc = take_key("set", argv[i + 1], &k)))
        return rc;
    char *val = NULL;
    size_t vlen = 0;
    bool own = false;
    if (k.file || !strcmp(argv[i + 2], "-")) {
        FILE *f = k.file ? fopen(k.file, "rb") : stdin;
        if (!f) {
            fprintf(stderr, "%s: cannot open '%s': %s\n", prog, k.file, strerror(errno));
            return EX_FAIL;
        }
        bool ok = slurp(f, &val, &vlen);
        if (k.file)
            fclose(f);
        if (!ok) {
            fprintf(stderr, "%s: cannot read the value from %s: %s\n", prog,
                    k.file ? k.file : "stdin", strerror(errno));
            return EX_FAIL;
        }
        own = true;
    } else {
        val = argv[i + 2];
        vlen = strlen(val);
    }
    shmc_t *c;
    if ((rc = open_cache(name, &c))) {
        if (own)
            free(val);
        return rc;
    }
    shmc_status st = shmc_set(c, k.key, k.klen, val, vlen, k.flags, k.ttl);
    if (own)
        free(val);
    shmc_close(c);
    if (st != SHMC_OK)
        return fail(name, "set", st);
    return EX_OK;
}

static int cmd_del(int argc, char **argv)
{
    kopts k;
    shmc_t *c;
    int rc, i = key_cmd_open("del", "NAME KEY", 0, argc, argv, &k, &c, &rc);
    if (i < 0)
        return rc;
    const char *name = argv[i];
    shmc_status st = shmc_delete(c, k.key, k.klen);
    shmc_close(c);
    if (st == SHMC_NOT_FOUND)
        return key_not_found(name, &k, "");
    return st == SHMC_OK ? EX_OK : fail(name, "del", st);
}

static int cmd_incr(int argc, char **argv)
{
    kopts k;
    shmc_t *c;
    int rc, i = key_cmd_open("incr", "NAME KEY [DELTA]", 1, argc, argv, &k, &c, &rc);
    if (i < 0)
        return rc;
    const char *name = argv[i];
    uint64_t delta = 1;
    if (argc - i == 3 && !parse_u64(argv[i + 2], &delta)) {
        shmc_close(c);
        return usage_err("incr", "bad DELTA '%s' (an unsigned number)", argv[i + 2]);
    }
    uint64_t res;
    unsigned opts = k.create ? SHMC_INCR_CREATE : 0;
    shmc_status st = k.decr ? shmc_decr(c, k.key, k.klen, delta, k.initial, k.ttl, opts, &res)
                            : shmc_incr(c, k.key, k.klen, delta, k.initial, k.ttl, opts, &res);
    shmc_close(c);
    if (st == SHMC_NOT_FOUND)
        return key_not_found(name, &k, " (use --create INITIAL)");
    if (st != SHMC_OK)
        return fail(name, k.decr ? "decr" : "incr", st);
    printf("%" PRIu64 "\n", res);
    return EX_OK;
}

static int cmd_touch(int argc, char **argv)
{
    kopts k;
    shmc_t *c;
    int rc, i = key_cmd_open("touch", "NAME KEY --ttl TTL", 0, argc, argv, &k, &c, &rc);
    if (i < 0)
        return rc;
    if (!k.has_ttl) {
        shmc_close(c);
        return usage_err("touch", "expects NAME KEY --ttl TTL%s", "");
    }
    const char *name = argv[i];
    shmc_status st = shmc_touch(c, k.key, k.klen, k.ttl);
    shmc_close(c);
    if (st == SHMC_NOT_FOUND)
        return key_not_found(name, &k, "");
    return st == SHMC_OK ? EX_OK : fail(name, "touch", st);
}

static int cmd_flush(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return usage_err("flush", "expects exactly one NAME%s", "");
    shmc_t *c;
    int rc = open_cache(argv[1], &c);
    if (rc)
        return rc;
    shmc_status st = shmc_flush(c);
    shmc_close(c);
    return st == SHMC_OK ? EX_OK : fail(argv[1], "flush", st);
}

/* ---- keys ---- */

typedef struct keys_ctx {
    const char *prefix;
    size_t plen;
    uint64_t limit, n;
    bool json;
} keys_ctx;

static int keys_cb(void *ctx, const shmc_key_info *k)
{
    keys_ctx *x = ctx;
    if (x->plen && (k->klen < x->plen || memcmp(k->key, x->prefix, x->plen) != 0))
        return 0;
    char tb[32];
    fmt_ttl(tb, sizeof tb, k->ttl_left_ms);
    if (x->json) {
        printf("%s{\"key\":", x->n ? ",\n " : "");
        put_escaped(stdout, k->key, k->klen, true);
        printf(",\"size\":%zu,\"flags\":%u,\"ttl_ms\":", k->vlen, k->flags);
        if (k->ttl_left_ms == SHMC_TTL_NONE)
            printf("null");
        else
            printf("%" PRIu64, k->ttl_left_ms);
        printf(",\"cas\":%" PRIu64 "}", k->cas);
    } else {
        printf("%10s %10zu %10u  ", tb, k->vlen, k->flags);
        put_escaped(stdout, k->key, k->klen, false);
        printf("\n");
    }
    x->n++;
    return x->limit && x->n >= x->limit;
}

static int cmd_keys(int argc, char **argv)
{
    static const struct option lo[] = {{"prefix", required_argument, 0, 'p'},
                                       {"limit", required_argument, 0, 'l'},
                                       {"json", no_argument, 0, 'j'},
                                       {"escaped", no_argument, 0, 'e'},
                                       {0, 0, 0, 0}};
    keys_ctx x = {0};
    char *prefix = NULL;
    bool escaped = false;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': prefix = optarg; break;
        case 'e': escaped = true; break;
        case 'l':
            if (!parse_u64(optarg, &x.limit))
                return usage_err("keys", "bad --limit '%s'", optarg);
            break;
        case 'j': x.json = true; break;
        default:
            return usage_err("keys", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return usage_err("keys", "expects exactly one NAME%s", "");
    if (prefix) {
        x.prefix = prefix;
        int e = arg_bytes("keys", "--prefix", prefix, escaped, &x.plen);
        if (e)
            return e;
    }
    const char *name = argv[optind];
    shmc_t *c;
    int rc = open_cache(name, &c);
    if (rc)
        return rc;
    if (x.json)
        printf("[");
    else
        printf("%10s %10s %10s  %s\n", "TTL", "SIZE", "FLAGS", "KEY");
    shmc_status st = shmc_keys_iter(c, NULL, keys_cb, &x);
    shmc_close(c);
    if (x.json)
        printf("]\n");
    if (st != SHMC_OK)
        return fail(name, "keys", st);
    return EX_OK;
}

/* ---- procs / locks / flights ---- */

static int list_args(const char *cmdname, int argc, char **argv, bool *json, bool *all)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"all", no_argument, 0, 'a'},
                                       {0, 0, 0, 0}};
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'j')
            *json = true;
        else if (ch == 'a' && all)
            *all = true;
        else
            return -usage_err(cmdname, "unknown option '%s'", argv[optind - 1]);
    }
    if (argc - optind != 1)
        return -usage_err(cmdname, "expects exactly one NAME%s", "");
    return optind;
}

static int cmd_procs(int argc, char **argv)
{
    bool json = false, all = false;
    int i = list_args("procs", argc, argv, &json, &all);
    if (i < 0)
        return -i;
    const char *name = argv[i];
    shmc_t *c;
    int rc = open_cache(name, &c);
    if (rc)
        return rc;
    shmc_info in;
    shmc_info_get(c, &in);
    shmc_proc_info *p = calloc(in.slots ? in.slots : 1, sizeof *p);
    size_t n = 0;
    shmc_status st = p ? shmc_procs(c, all, p, in.slots, &n) : SHMC_ESYS;
    shmc_close(c);
    if (st != SHMC_OK) {
        free(p);
        return fail(name, "procs", st);
    }
    if (n > in.slots)
        n = in.slots;
    if (json)
        printf("[");
    else
        printf("%6s %8s %8s %6s %8s %12s %6s %9s %9s %12s\n", "SLOT", "PID", "TID", "ALIVE",
               "READING", "EPOCHS-BEHIND", "HOLDS", "EJECTED", "EJECTIONS", "LAST-STALL-MS");
    for (size_t k = 0; k < n; k++) {
        if (json)
            printf("%s{\"slot\":%u,\"pid\":%u,\"tid\":%u,\"alive\":%s,\"reading\":%s,"
                   "\"epochs_behind\":%" PRIu64 ",\"holds\":%u,\"ejected\":%s,"
                   "\"ejections\":%" PRIu64 ",\"eject_stall_ms\":%" PRIu64
                   ",\"eject_ago_ms\":%" PRIu64 "}",
                   k ? "," : "", p[k].slot, p[k].pid, p[k].tid, p[k].alive ? "true" : "false",
                   p[k].reading ? "true" : "false", p[k].epochs_behind, p[k].holds,
                   p[k].ejected ? "true" : "false", p[k].ejections, p[k].eject_stall_ms,
                   p[k].eject_ago_ms);
        else
            printf("%6u %8u %8u %6s %8s %12" PRIu64 " %6u %9s %9" PRIu64 " %12" PRIu64 "\n",
                   p[k].slot, p[k].pid, p[k].tid, p[k].alive ? "yes" : "no",
                   p[k].reading ? "yes" : "no", p[k].epochs_behind, p[k].holds,
                   p[k].ejected ? "yes" : "no", p[k].ejections, p[k].eject_stall_ms);
    }
    if (json)
        printf("]\n");
    free(p);
    return EX_OK;
}

static int show_table(const char *cmdname, int argc, char **argv, uint32_t kind)
{
    bool json = false, all = false;
    int i = list_args(cmdname, argc, argv, &json, &all);
    if (i < 0)
        return -i;
    const char *name = argv[i];
    shmc_t *c;
    int rc = open_cache(name, &c);
    if (rc)
        return rc;
    shmc_info in;
    shmc_info_get(c, &in);
    shmc_lock_info *l = calloc(in.locks ? in.locks : 1, sizeof *l);
    size_t n = 0;
    /* flights: only fills in progress; locks: every named lock, held first */
    shmc_status st = l ? shmc_locks_list(c, kind == SHMC_LOCK_KIND_FILL && !all, l, in.locks, &n)
                       : SHMC_ESYS;
    shmc_close(c);
    if (st != SHMC_OK) {
        free(l);
        return fail(name, cmdname, st);
    }
    if (n > in.locks)
        n = in.locks;
    if (json)
        printf("[");
    else
        printf("%6s %-5s %8s %8s %20s %10s %6s  %s\n", "ENTRY", "HELD", "PID", "TID", "TOKEN",
               kind == SHMC_LOCK_KIND_FILL ? "DEADLINE" : "LEASE", "WAITER", "NAME");
    size_t shown = 0;
    for (size_t k = 0; k < n; k++) {
        if (l[k].kind != kind)
            continue;
        size_t nl = l[k].name_len < SHMC_LOCK_NAME_PREFIX ? l[k].name_len : SHMC_LOCK_NAME_PREFIX;
        char lb[32] = "-";
        if (l[k].held)
            fmt_ttl(lb, sizeof lb, l[k].lease_left_ms);
        if (json) {
            printf("%s{\"entry\":%u,\"name\":", shown ? "," : "", l[k].entry);
            put_escaped(stdout, l[k].name, nl, true);
            printf(",\"name_len\":%u,\"held\":%s,\"holder_pid\":%u,\"holder_tid\":%u,"
                   "\"token\":%" PRIu64 ",\"lease_left_ms\":",
                   l[k].name_len, l[k].held ? "true" : "false", l[k].holder_pid,
                   l[k].holder_tid, l[k].token);
            if (!l[k].held || l[k].lease_left_ms == SHMC_LEASE_NONE)
                printf("null");
            else
                printf("%" PRIu64, l[k].lease_left_ms);
            printf(",\"waiter_queued\":%s}", l[k].waiter_queued ? "true" : "false");
        } else {
            char pid[16] = "-", tid[16] = "-";
            if (l[k].held) {
                snprintf(pid, sizeof pid, "%u", l[k].holder_pid);
                snprintf(tid, sizeof tid, "%u", l[k].holder_tid);
            }
            printf("%6u %-5s %8s %8s %20" PRIu64 " %10s %6s  ", l[k].entry,
                   l[k].held ? "yes" : "no", pid, tid, l[k].token, lb,
                   l[k].waiter_queued ? "yes" : "no");
            put_escaped(stdout, l[k].name, nl, false);
            if (l[k].name_len > nl)
                printf("... (%u bytes)", l[k].name_len);
            printf("\n");
        }
        shown++;
    }
    if (json)
        printf("]\n");
    free(l);
    return EX_OK;
}

static int cmd_locks(int argc, char **argv) { return show_table("locks", argc, argv, SHMC_LOCK_KIND_LOCK); }
static int cmd_flights(int argc, char **argv) { return show_table("flights", argc, argv, SHMC_LOCK_KIND_FILL); }

static int cmd_lock_release(int argc, char **argv)
{
    bool force, escaped;
    int rc, i = flag_opts("lock-release", "force", &force, "escaped", &escaped, argc, argv, &rc);
    if (i < 0)
        return rc;
    if (argc - i != 2)
        return usage_err("lock-release", "expects NAME LOCK --force%s", "");
    if (!force)
        return usage_err("lock-release",
                         "refusing without --force: the holder is not told and may still be "
                         "working under the lock%s", "");
    const char *name = argv[i];
    char *lock = argv[i + 1];
    size_t llen;
    if ((rc = arg_bytes("lock-release", "LOCK", lock, escaped, &llen)))
        return rc;
    shmc_t *c;
    rc = open_cache(name, &c);
    if (rc)
        return rc;
    uint64_t tok = 0;
    shmc_status st = shmc_lock_force_release(c, lock, llen, &tok);
    shmc_close(c);
    if (st == SHMC_NOT_FOUND) {
        fprintf(stderr, "%s: cache '%s': lock ", prog, name);
        put_escaped(stderr, lock, llen, false);
        fprintf(stderr, " is not held\n");
        return EX_FAIL;
    }
    if (st != SHMC_OK)
        return fail(name, "lock-release", st);
    printf("released lock ");
    put_escaped(stdout, lock, llen, false);
    printf(" (revoked token %" PRIu64 ")\n", tok);
    return EX_OK;
}

/* ---- verify ---- */

static int cmd_verify(int argc, char **argv)
{
    bool json = false;
    int i = list_args("verify", argc, argv, &json, NULL);
    if (i < 0)
        return -i;
    const char *name = argv[i];
    shmc_t *c;
    int rc = open_cache(name, &c);
    if (rc)
        return rc;
    shmc_verify_report r;
    shmc_status st = shmc_verify(c, &r);
    shmc_close(c);
    if (st != SHMC_OK && st != SHMC_ECORRUPT)
        return fail(name, "verify", st);
    if (json) {
        printf("{\"cache\":");
        put_escaped(stdout, name, strlen(name), true);
        printf(",\"ok\":%s,\"items\":%" PRIu64 ",\"bad_offsets\":%" PRIu64
               ",\"bad_items\":%" PRIu64 ",\"misplaced\":%" PRIu64
               ",\"in_dead_segments\":%" PRIu64 ",\"duplicates\":%" PRIu64
               ",\"segment_errors\":%" PRIu64 ",\"orphan_segments\":%" PRIu64 ",\"first_error\":",
               st == SHMC_OK ? "true" : "false", r.items, r.bad_offsets, r.bad_items, r.misplaced,
               r.in_dead_segments, r.duplicates, r.segment_errors, r.orphan_segments);
        put_escaped(stdout, r.first_error, strlen(r.first_error), true);
        printf("}\n");
    } else {
        printf("cache '%s': %s\n", name, st == SHMC_OK ? "OK" : "CORRUPT");
        printf("  items %" PRIu64 "\n", r.items);
#define V(f) if (r.f) printf("  %-17s %" PRIu64 "\n", #f, r.f);
        V(bad_offsets) V(bad_items) V(misplaced) V(in_dead_segments) V(duplicates)
        V(segment_errors) V(orphan_segments)
#undef V
        if (r.first_error[0])
            printf("  first problem: %s\n", r.first_error);
    }
    if (st == SHMC_ECORRUPT) {
        fprintf(stderr, "%s: cache '%s': verify: %s (%s)\n", prog, name,
                shmc_strerror(st), r.first_error);
        return EX_FAIL;
    }
    return EX_OK;
}

/* ---- dump / load ---- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct dump_ctx {
    shmc_t *c;
    FILE *f;
    uint64_t items, bytes, gone;
    shmc_status st;  /* a library error that stopped the walk */
    bool werr;       /* a write error that stopped the walk */
} dump_ctx;

static int dump_cb(void *ctx, const shmc_key_info *k)
{
    dump_ctx *d = ctx;
    void *val;
    size_t vlen;
    uint32_t flags;
    shmc_status st = shmc_get_alloc(d->c, k->key, k->klen, &val, &vlen, &flags);
    if (st == SHMC_NOT_FOUND) {
        d->gone++; /* deleted or expired since the walk saw it */
        return 0;
    }
    if (st != SHMC_OK) {
        d->st = st;
        return 1;
    }
    uint64_t ttl = k->ttl_left_ms;
    (void)shmc_ttl(d->c, k->key, k->klen, &ttl); /* the TTL of the value just read */
    uint64_t now = wall_ms();
    dump_item it = {.key = k->key, .klen = (uint32_t)k->klen, .val = val, .vlen = (uint32_t)vlen,
                    .flags = flags,
                    .kind = k->counter && vlen == 8 ? DUMP_KIND_COUNTER : DUMP_KIND_BYTES,
                    .expires_at = ttl == SHMC_TTL_NONE ? 0 : now + ttl};
    bool ok = dump_write_item(d->f, &it);
    free(val);
    if (!ok) {
        d->werr = true;
        return 1;
    }
    d->items++;
    d->bytes += k->klen + vlen;
    return 0;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc != 3 || argv[1][0] == '-')
        return usage_err("dump", "expects NAME FILE (FILE '-' = stdout)%s", "");
    const char *name = argv[1], *file = argv[2];
    bool to_stdout = !strcmp(file, "-");
    if (to_stdout && isatty(STDOUT_FILENO))
        return usage_err("dump", "refusing to write a binary dump to a terminal%s", "");
    shmc_t *c;
    int rc = open_cache(name, &c);
    if (rc)
        return rc;
    /* Write a temporary file and rename it over FILE only once complete, so
     * FILE is never a half-written dump. */
    char tmp[4096];
    FILE *f = stdout;
    if (!to_stdout) {
        int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", file, (long)getpid());
        if (n < 0 || (size_t)n >= sizeof tmp) {
            shmc_close(c);
            return usage_err("dump", "FILE name too long%s", "");
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || !(f = fdopen(fd, "wb"))) {
            fprintf(stderr, "%s: cannot create '%s': %s\n", prog, tmp, strerror(errno));
            if (fd >= 0)
                close(fd);
            shmc_close(c);
            return EX_FAIL;
        }
    }
    dump_ctx d = {.c = c, .f = f};
    bool ok = dump_write_header(f, wall_ms());
    shmc_status st = ok ? shmc_keys_iter(c, NULL, dump_cb, &d) : SHMC_OK;
    shmc_close(c);
    ok = ok && !d.werr && dump_write_end(f, d.items) && fflush(f) == 0;
    if (!to_stdout) {
        ok = ok && fsync(fileno(f)) == 0;
        ok = (fclose(f) == 0) && ok;
    }
    int e = errno;
    if (st == SHMC_OK)
        st = d.st;
    if (!to_stdout && (!ok || st != SHMC_OK || rename(tmp, file) != 0)) {
        if (ok && st == SHMC_OK)
            e = errno; /* the rename failed */
        unlink(tmp);
    }
    if (st != SHMC_OK)
        return fail(name, "dump", st);
    if (!ok) {
        fprintf(stderr, "%s: cache '%s': dump: cannot write '%s': %s\n", prog, name, file,
                strerror(e));
        return EX_FAIL;
    }
    FILE *msg = to_stdout ? stderr : stdout;
    char b[32];
    fmt_bytes(b, sizeof b, d.bytes);
    fprintf(msg, "dumped %" PRIu64 " items (%s of keys and values) from cache '%s' to %s\n",
            d.items, b, name, to_stdout ? "stdout" : file);
    return EX_OK;
}

typedef struct load_ctx {
    shmc_t *c;
    uint64_t now;
    uint64_t loaded, expired, too_big;
    shmc_status st;   /* the error that stopped the load */
} load_ctx;

static bool load_item(void *ctx, const dump_item *it)
{
    load_ctx *l = ctx;
    if (it->expires_at && it->expires_at <= l->now) {
        l->expired++;
        return true;
    }
    uint64_t ttl = it->expires_at ? it->expires_at - l->now : 0;
    shmc_status st;
    if (it->kind == DUMP_KIND_COUNTER) {
        /* Re-create the binary counter (only shmc_incr makes one). */
        uint64_t v = 0, res;
        const uint8_t *b = it->val;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | b[i];
        st = shmc_delete(l->c, it->key, it->klen);
        if (st == SHMC_OK || st == SHMC_NOT_FOUND)
            st = shmc_incr(l->c, it->key, it->klen, 0, v, ttl,
                           SHMC_INCR_CREATE | SHMC_INCR_BINARY, &res);
    } else {
        st = shmc_set(l->c, it->key, it->klen, it->val, it->vlen, it->flags, ttl);
    }
    if (st == SHMC_EKEYLEN || st == SHMC_EVALLEN) {
        l->too_big++; /* a cache with smaller limits than the dumped one */
        return true;
    }
    if (st != SHMC_OK) {
        l->st = st;
        return false;
    }
    l->loaded++;
    return true;
}

/* The whole of a file (mapped) or of stdin (read). */
typedef struct blob {
    void *p;
    size_t n;
    bool mapped;
} blob;

static bool blob_read(const char *file, blob *b)
{
    memset(b, 0, sizeof *b);
    if (!strcmp(file, "-"))
        return slurp(stdin, (char **)&b->p, &b->n);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat sb;
    bool ok = fstat(fd, &sb) == 0;
    if (ok && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        b->n = (size_t)sb.st_size;
        b->p = mmap(NULL, b->n, PROT_READ, MAP_PRIVATE, fd, 0);
        ok = b->p != MAP_FAILED;
        b->mapped = ok;
        if (!ok)
            b->p = NULL;
    } else if (ok) {
        FILE *f = fdopen(fd, "rb"); /* empty, a pipe or a device */
        if (f) {
            ok = slurp(f, (char **)&b->p, &b->n);
            fclose(f);
            return ok;
        }
        ok = false;
    }
    int e = errno;
    close(fd);
    errno = e;
    return ok;
}

static void blob_free(blob *b)
{
    if (b->mapped)
        munmap(b->p, b->n);
    else
        free(b->p);
}

static int cmd_load(int argc, char **argv)
{
    bool check;
    int rc, i = flag_opt("load", "check", argc, argv, &check, &rc);
    if (i < 0)
        return rc;
    if (argc - i != 2)
        return usage_err("load", "expects NAME FILE (FILE '-' = stdin)%s", "");
    const char *name = argv[i], *file = argv[i + 1];
    blob b;
    if (!blob_read(file, &b)) {
        fprintf(stderr, "%s: cannot read '%s': %s\n", prog, file, strerror(errno));
        return EX_FAIL;
    }
    char err[256];
    dump_info info;
    if (!dump_parse(b.p, b.n, NULL, NULL, &info, err, sizeof err)) {
        fprintf(stderr, "%s: '%s' is not a valid dump: %s; nothing loaded\n", prog, file, err);
        blob_free(&b);
        return EX_FAIL;
    }
    if (check) {
        blob_free(&b);
        printf("'%s': a valid dump of %" PRIu64 " items\n", file, info.items);
        return EX_OK;
    }
    shmc_t *c;
    rc = open_cache(name, &c);
    if (rc) {
        blob_free(&b);
        return rc;
    }
    load_ctx l = {.c = c, .now = wall_ms()};
    bool ok = dump_parse(b.p, b.n, load_item, &l, NULL, err, sizeof err);
    shmc_close(c);
    blob_free(&b);
    if (!ok) /* the file was validated: only a library error stops a load */
        return fail(name, "load", l.st);
    printf("loaded %" PRIu64 " items into cache '%s' (skipped %" PRIu64
           " that expired since the dump)\n", l.loaded, name, l.expired);
    if (l.too_big) {
        fprintf(stderr, "%s: cache '%s': load: %" PRIu64 " items not loaded: key or value "
                "longer than this cache's max_key/max_value\n", prog, name, l.too_big);
        return EX_FAIL;
    }
    return EX_OK;
}

/* ---- table ---- */

static const cmd cmds[] = {
    {"create", cmd_create,
     "create NAME [--size SIZE] [--max-key N] [--max-value SIZE] [--slots N] [--locks N]\n"
     "       [--max-items N] [--mode OCTAL]",
     "Creates a new cache (fails if NAME exists).  SIZE takes K/M/G suffixes\n"
     "(powers of 1024), e.g. --size 256M.  Unset parameters get the library's\n"
     "defaults (64M, max-key 250, max-value 1M, 1024 slots, mode 0600).\n"
     "--max-items sizes the key index to hold N items (default: by SIZE, one\n"
     "slot per 80 bytes); more items than that are evicted, oldest first.\n"},
    {"destroy", cmd_destroy, "destroy NAME",
     "Removes the cache's name.  Processes that have it open keep using it; the\n"
     "memory is freed when the last one closes.\n"},
    {"list", cmd_list, "list [--json]",
     "Lists the caches in /dev/shm (files starting with a shmcache header),\n"
     "with size, bytes used and free, items and live participant slots (threads\n"
     "attached).  A cache that cannot be attached is listed with the reason.\n"},
    {"stats", cmd_stats, "stats NAME [--json | --prometheus] [--watch SECONDS [--count N]]",
     "Prints the cache's counters: hit ratio, operations, evictions and\n"
     "expirations, memory used/free/garbage (dead bytes in sealed segments),\n"
     "items, segments, slots, lock and singleflight counts.\n"
     "  --json        one JSON object per sample\n"
     "  --prometheus  Prometheus text exposition format (cache=\"NAME\" label)\n"
     "  --watch S     refresh every S seconds until interrupted (like top)\n"
     "  --count N     with --watch: stop after N samples\n"},
    {"get", cmd_get, "get NAME KEY [--raw] [--escaped]",
     "Prints the value of KEY: quoted with escapes, then its size, flags and TTL;\n"
     "with --raw, the exact value bytes and nothing else (binary-safe).\n"
     "Exit 1 if the key is absent.\n"
     "  --escaped  KEY is written as `keys` prints it: \\xHH, \\\\, \\\", \\n, \\t\n"
     "             (within optional double quotes), so a key may hold any byte,\n"
     "             NUL included.  The other key commands take it too.\n"},
    {"set", cmd_set, "set NAME KEY (VALUE | - | --file FILE) [--ttl TTL] [--flags N] [--escaped]",
     "Stores KEY.  The value is the VALUE argument, stdin for '-', or the bytes\n"
     "of FILE (binary-safe).  TTL: seconds, or with a unit: 500ms, 30s, 5m, 2h,\n"
     "1d; 0 or absent = never expires.  Use '--' before a VALUE starting with '-'.\n"},
    {"del", cmd_del, "del NAME KEY [--escaped]", "Deletes KEY.  Exit 1 if it was absent.\n"},
    {"incr", cmd_incr, "incr NAME KEY [DELTA] [--decr] [--create INITIAL] [--ttl TTL] [--escaped]",
     "Adds DELTA (default 1) to a counter and prints the new value; --decr\n"
     "subtracts (stopping at 0).  With --create a missing key is created holding\n"
     "INITIAL (with --ttl).  Exit 1 if absent or not a counter.\n"},
    {"touch", cmd_touch, "touch NAME KEY --ttl TTL [--escaped]",
     "Gives KEY a new TTL (0 = never expires), keeping its value.\n"},
    {"flush", cmd_flush, "flush NAME", "Removes every item (other processes carry on).\n"},
    {"keys", cmd_keys, "keys NAME [--prefix P [--escaped]] [--limit N] [--json]",
     "Lists keys with TTL left, value size and flags, walking the index in short\n"
     "read sections without stopping writers (keys changed during the walk may\n"
     "be seen or missed).  --limit stops after N matching keys.  Keys are quoted\n"
     "with escapes (\\xHH for bytes outside printable ASCII); --escaped reads P\n"
     "the same way, and so do the key commands.\n"},
    {"procs", cmd_procs, "procs NAME [--all] [--json]",
     "Lists participant slots held by live threads (--all: every slot ever\n"
     "used): pid, tid, whether it is inside a read section and how many grace\n"
     "periods behind it is (a reader stuck > 1 behind stalls reclamation), and\n"
     "the locks/fills it holds.  Slots of dead processes are reaped on the way.\n"},
    {"locks", cmd_locks, "locks NAME [--json]",
     "Lists named locks in the lock table: holder pid/tid, fencing token, lease\n"
     "left, whether a waiter has claimed the next turn.  Names are shown up to\n"
     "64 bytes.\n"},
    {"flights", cmd_flights, "flights NAME [--all] [--json]",
     "Lists singleflight fills in progress (--all: also finished ones whose\n"
     "entries are not recycled yet): leader pid/tid, token, deadline left, key.\n"},
    {"lock-release", cmd_lock_release, "lock-release NAME LOCK --force [--escaped]",
     "Operator override: frees LOCK whatever its holder.  The holder is not told;\n"
     "its release/extend then fail with 'not the owner', and the protected\n"
     "resource should refuse its (revoked, printed) fencing token.\n"
     "  --escaped  LOCK is written as `locks` prints it (\\xHH ... escapes).\n"},
    {"dump", cmd_dump, "dump NAME FILE",
     "Writes every live item (key, value, flags, expiry, binary counters) to\n"
     "FILE ('-': stdout), walking the cache without stopping writers: an item\n"
     "changed during the walk is dumped as it was at one moment or the next.\n"
     "The file is written aside and renamed into place when complete.  Expiry\n"
     "is stored as wall-clock time, so TTLs keep running while it is on disk.\n"},
    {"load", cmd_load, "load NAME FILE [--check]",
     "Stores every item of a dump ('-': stdin) into NAME, replacing keys that\n"
     "exist; items expired since the dump are skipped.  The whole file is\n"
     "validated first: a damaged or truncated file loads nothing.  --check\n"
     "only validates FILE.  Exit 1 if some item was too long for this cache.\n"},
    {"verify", cmd_verify, "verify NAME [--json]",
     "Checks the index and storage metadata of a live or idle cache (after the\n"
     "recovery any operation would do).  Prints a report; exit 1 on corruption.\n"},
};

static const cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmds[i].name, name))
            return &cmds[i];
    return NULL;
}

static void main_help(FILE *f)
{
    fprintf(f,
            "usage: %s COMMAND [ARGS...]      (%s COMMAND --help for details)\n\n"
            "Inspect and operate a live shmcache on this host.\n\nCommands:\n",
            prog, prog);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %s\n", cmds[i].synopsis);
    fprintf(f, "\nKEY and LOCK arguments are used as their exact bytes.  Values are\n"
               "binary-safe (set from a file or stdin, get --raw).\n"
               "\nExit status:\n"
               "  0  success\n"
               "  1  the operation failed: cache or key not found, a library error\n"
               "     (named, with its cause, on stderr), or verify found corruption\n"
               "  2  usage error (unknown command or option, missing argument)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return EX_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2 && find_cmd(argv[2]))
            return cmd_help(argv[2]);
        main_help(stdout);
        return EX_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("shmcache-cli %d.%d.%d\n", SHMC_VERSION_MAJOR, SHMC_VERSION_MINOR,
               SHMC_VERSION_PATCH);
        return EX_OK;
    }
    const cmd *c = find_cmd(argv[1]);
    if (!c) {
        fprintf(stderr, "%s: unknown command '%s'\n\n", prog, argv[1]);
        main_help(stderr);
        return EX_USAGE;
    }
    if (want_help(argc - 1, argv + 1))
        return cmd_help(c->name);
    return c->fn(argc - 1, argv + 1);
}
