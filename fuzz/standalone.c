/*
 * standalone.c — runs a libFuzzer-style target (LLVMFuzzerTestOneInput)
 * without libFuzzer, so that the fuzz targets build with any compiler and
 * run as ordinary tests (meson suite 'fuzz', in every build, including the
 * ASan+UBSan one).
 *
 *   fuzz_<target>-standalone [options] PATH...
 *
 * Every file named (or found in a directory named) is run once, in name
 * order; then inputs made by deterministic pseudo-random mutation of those
 * files (bit flips, interesting bytes and integers, inserted, erased and
 * copied blocks, splices) are run until --runs of them have run or
 * --seconds have passed.  The same seed gives the same inputs.
 *
 * A crash, an abort (a failed check, a sanitizer report) or an input that
 * runs longer than --timeout seconds prints the input in hex and writes it
 * to crash-<target>-<pid> in the current directory, then dies.  Give that
 * file back as a PATH to reproduce.
 *
 * Options: --seconds S (default 10), --runs N (default unlimited), --seed X
 * (default 1), --timeout S (default 30), --max-len N (default 4096).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FUZZ_TARGET_NAME
#define FUZZ_TARGET_NAME "target"
#endif

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob *corpus;
static size_t ncorpus, capcorpus;

/* The input running now, for the death report. */
static const uint8_t *cur_data;
static size_t cur_size;
static volatile sig_atomic_t reporting;

/* ---- death report (async-signal-safe: write(2) only) ---- */

static void put(int fd, const char *s) { (void)!write(fd, s, strlen(s)); }

static void report_input(void)
{
    if (reporting++)
        return;
    char name[96] = "crash-" FUZZ_TARGET_NAME "-";
    char num[24];
    int k = 0;
    for (long pid = (long)getpid(); pid; pid /= 10)
        num[k++] = (char)('0' + pid % 10);
    size_t at = strlen(name);
    while (k)
        name[at++] = num[--k];
    name[at] = 0;
    put(2, "\n==== fuzz standalone: the input that failed (");
    put(2, name);
    put(2, "):\n");
    static const char hex[] = "0123456789abcdef";
    char line[80];
    size_t l = 0;
    for (size_t i = 0; i < cur_size; i++) {
        line[l++] = hex[cur_data[i] >> 4];
        line[l++] = hex[cur_data[i] & 15];
        if (l >= 64 || i + 1 == cur_size) {
            line[l++] = '\n';
            (void)!write(2, line, l);
            l = 0;
        }
    }
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        (void)!write(fd, cur_data, cur_size);
        close(fd);
    }
}

static void on_signal(int sig)
{
    if (sig == SIGALRM) {
        put(2, "\n==== fuzz standalone: an input ran longer than --timeout (a hang?)\n");
    } else {
        char msg[] = "\n==== fuzz standalone: signal   \n";
        msg[30] = (char)('0' + sig / 10);
        msg[31] = (char)('0' + sig % 10);
        put(2, msg);
    }
    report_input();
    signal(sig == SIGALRM ? SIGABRT : sig, SIG_DFL);
    raise(sig == SIGALRM ? SIGABRT : sig);
}

/* Sanitizers exit without raising a signal: they call this first. */
extern void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

/* ---- corpus ---- */

static void add_blob(uint8_t *p, size_t n)
{
    if (ncorpus == capcorpus) {
        capcorpus = capcorpus ? capcorpus * 2 : 64;
        corpus = realloc(corpus, capcorpus * sizeof *corpus);
        if (!corpus) {
            perror("realloc");
            exit(2);
        }
    }
    corpus[ncorpus++] = (blob){p, n};
}

static int load_file(const char *path, size_t max_len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = (size_t)st.st_size < max_len ? (size_t)st.st_size : max_len;
    uint8_t *p = malloc(n ? n : 1);
    if (!p || (n && read(fd, p, n) != (ssize_t)n)) {
        fprintf(stderr, "%s: short read\n", path);
        close(fd);
        return -1;
    }
    close(fd);
    add_blob(p, n);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_path(const char *path, size_t max_len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return load_file(path, max_len);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = realloc(names, cap * sizeof *names);
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        snprintf(names[n], len, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat fs;
        if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode) && load_file(names[i], max_len))
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- mutation (splitmix64; deterministic) ---- */

static uint64_t rng_s;
static uint64_t rnd(void)
{
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static const uint64_t interesting[] = {
    0, 1, 2, 7, 8, 16, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
    0x7fffffff, 0x80000000u, 0xffffffffu, 0x100000000ull, 0x7fffffffffffffffull,
    0x8000000000000000ull, 0xffffffffffffffffull, 4096, 4097, 250, 251, 4095,
};

/* Mutates buf[0..*n) in place (capacity cap). */
static void mutate(uint8_t *buf, size_t *n, size_t cap)
{
    int rounds = 1 + (int)below(6);
    for (int r = 0; r < rounds; r++) {
        size_t len = *n;
        switch (below(10)) {
        case 0: /* flip a bit */
            if (len)
                buf[below(len)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* a random byte */
            if (len)
                buf[below(len)] = (uint8_t)rnd();
            break;
        case 2: { /* an interesting integer, 1/2/4/8 bytes, either byte order */
            size_t w = (size_t)1 << below(4);
            if (len < w)
                break;
            uint64_t v = interesting[below(sizeof interesting / sizeof interesting[0])];
            if (rnd() & 1)
                v = 0 - v; /* (unsigned: wraps, no overflow) */
            size_t at = below(len - w + 1);
            for (size_t i = 0; i < w; i++)
                buf[at + i] = (uint8_t)(v >> (8 * ((rnd() & 8) ? w - 1 - i : i)));
            break;
        }
        case 3: /* add or subtract a little */
            if (len)
                buf[below(len)] += (uint8_t)(below(35) - 17);
            break;
        case 4: { /* insert random bytes */
            size_t k = 1 + below(16);
            if (len + k > cap)
                break;
            size_t at = below(len + 1);
            memmove(buf + at + k, buf + at, len - at);
            for (size_t i = 0; i < k; i++)
                buf[at + i] = (uint8_t)rnd();
            *n = len + k;
            break;
        }
        case 5: { /* erase bytes */
            if (!len)
                break;
            size_t at = below(len), k = 1 + below(len - at < 16 ? len - at : 16);
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
            break;
        }
        case 6: { /* copy a block within */
            if (len < 2)
                break;
            size_t k = 1 + below(len / 2), from = below(len - k + 1), to = below(len - k + 1);
            memmove(buf + to, buf + from, k);
            break;
        }
        case 7: { /* splice in part of another corpus input */
            const blob *o = &corpus[below(ncorpus)];
            if (!o->n)
                break;
            size_t from = below(o->n), k = 1 + below(o->n - from);
            size_t to = below(len + 1);
            if (to + k > cap)
                k = cap - to;
            memcpy(buf + to, o->p + from, k);
            if (to + k > len)
                *n = to + k;
            break;
        }
        case 8: /* the same byte repeated */
            if (len) {
                size_t at = below(len), k = 1 + below(len - at);
                memset(buf + at, (int)(uint8_t)rnd(), k < 64 ? k : 64);
            }
            break;
        default: /* truncate or extend */
            if (rnd() & 1)
                *n = below(len + 1);
            else if (len < cap)
                buf[(*n)++] = (uint8_t)rnd();
            break;
        }
    }
}

/* ---- main ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_s(void);
static double slowest;          /* seconds of the slowest input */
static unsigned long long slow_runs;

/* Runs the target on a copy of exactly n bytes, so that ASan catches a read
 * one byte past the input as libFuzzer would. */
static void run_one(const uint8_t *p, size_t n, unsigned timeout_s)
{
    double t = now_s();
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, p, n);
    cur_data = copy;
    cur_size = n;
    alarm(timeout_s);
    LLVMFuzzerTestOneInput(copy, n);
    alarm(0);
    cur_data = NULL;
    cur_size = 0;
    t = now_s() - t;
    if (t > 0.5)
        slow_runs++;
    if (t > slowest) {
        slowest = t;
        if (getenv("FUZZ_SAVE_SLOWEST")) { /* for looking into slow inputs */
            FILE *f = fopen(getenv("FUZZ_SAVE_SLOWEST"), "wb");
            if (f) {
                fwrite(copy, 1, n, f);
                fclose(f);
            }
        }
    }
    free(copy);
}

int main(int argc, char **argv)
{
    double seconds = 10;
    unsigned long long runs = ~0ull, seed = 1;
    unsigned timeout_s = 30;
    size_t max_len = 4096;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--seconds") && v) {
            seconds = atof(v);
        } else if (!strcmp(a, "--runs") && v) {
            runs = strtoull(v, NULL, 0);
        } else if (!strcmp(a, "--seed") && v) {
            seed = strtoull(v, NULL, 0);
        } else if (!strcmp(a, "--timeout") && v) {
            timeout_s = (unsigned)strtoul(v, NULL, 0);
        } else if (!strcmp(a, "--max-len") && v) {
            max_len = strtoul(v, NULL, 0);
        } else {
            fprintf(stderr, "usage: %s [--seconds S] [--runs N] [--seed X] [--timeout S] "
                            "[--max-len N] PATH...\n", argv[0]);
            return 2;
        }
        i += 2;
    }
    int first_path = i;
    for (int p = first_path; p < argc; p++)
        if (load_path(argv[p], max_len) != 0)
            return 2;
    if (!ncorpus)
        add_blob(calloc(1, 1), 0);

    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], on_signal);
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(report_input);

    double t0 = now_s();
    for (size_t i = 0; i < ncorpus; i++)
        run_one(corpus[i].p, corpus[i].n, timeout_s);
    double t1 = now_s();
    fprintf(stderr, "%s: %zu corpus inputs in %.2f s\n", FUZZ_TARGET_NAME, ncorpus, t1 - t0);

    rng_s = seed;
    uint8_t *buf = malloc(max_len ? max_len : 1);
    unsigned long long done = 0;
    while (done < runs && now_s() - t0 < seconds) {
        const blob *b = &corpus[below(ncorpus)];
        size_t n = b->n < max_len ? b->n : max_len;
        memcpy(buf, b->p, n);
        mutate(buf, &n, max_len);
        run_one(buf, n, timeout_s);
        done++;
    }
    fprintf(stderr, "%s: %llu mutated inputs in %.2f s (seed %llu): no failure\n",
            FUZZ_TARGET_NAME, done, now_s() - t1, seed);
    fprintf(stderr, "%s: slowest input %.3f s; %llu inputs over 0.5 s\n", FUZZ_TARGET_NAME,
            slowest, slow_runs);
    free(buf);
    for (size_t i = 0; i < ncorpus; i++)
        free(corpus[i].p);
    free(corpus);
    return 0;
}
