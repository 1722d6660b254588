/*
 * testutil.c — shared test helpers (see testutil.h).
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- names, time ---- */

/* Removes the segments of test processes that are gone (killed by a
 * timeout or by hand before their teardown ran): shmct-TAG-PID-N whose PID
 * no longer exists.  Segments of live test processes are left alone. */
static void sweep_dead_tests(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "shmct-", 6) != 0)
            continue;
        const char *last = strrchr(de->d_name, '-');
        const char *p = last;
        while (p > de->d_name && p[-1] != '-')
            p--;
        if (p <= de->d_name + 6 || p == last)
            continue;
        char *end;
        long pid = strtol(p, &end, 10);
        if (end != last || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH && shm_unlink(de->d_name) != 0) {
            char path[300]; /* test_segment's not-a-file case makes a directory */
            snprintf(path, sizeof path, "/dev/shm/%s", de->d_name);
            rmdir(path);
        }
    }
    closedir(d);
}

void tu_name(char *buf, size_t n, const char *tag)
{
    static unsigned counter;
    if (counter == 0)
        sweep_dead_tests();
    snprintf(buf, n, "shmct-%s-%ld-%u", tag, (long)getpid(), counter++);
}

void tu_destroy(const char *name)
{
    (void)shmc_destroy(name);
}

int tu_fx_setup(void **state, const char *tag, const shmc_options *o)
{
    tu_fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    tu_name(f->name, sizeof f->name, tag);
    tu_destroy(f->name);
    if (o) {
        shmc_status s = shmc_open(f->name, o, &f->c);
        if (s != SHMC_OK) {
            fprintf(stderr, "shmc_open(%s): %s\n", f->name, shmc_strerror(s));
            free(f);
            return -1;
        }
    }
    *state = f;
    return 0;
}

int tu_fx_teardown(void **state)
{
    tu_fx *f = *state;
    if (f->c)
        shmc_close(f->c);
    tu_destroy(f->name);
    free(f);
    return 0;
}

int tu_forget_robust_list(void)
{
    static __thread struct robust_list_head empty;
    empty.list.next = &empty.list;
    return (int)syscall(SYS_set_robust_list, &empty, sizeof empty);
}

void tu_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tu_shm_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "/dev/shm/%s", name);
}

/* ---- PRNG ---- */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t tu_rng_next(tu_rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

uint32_t tu_rng_below(tu_rng *r, uint32_t n)
{
    return (uint32_t)(((tu_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

uint32_t tu_rng_range(tu_rng *r, uint32_t lo, uint32_t hi)
{
    return lo + tu_rng_below(r, hi - lo + 1);
}

/* ---- keys ---- */

size_t tu_key(char *buf, const char *prefix, uint32_t id)
{
    int n = snprintf(buf, TU_KEY_MAX, "%s%u", prefix, id);
    return (size_t)n;
}

/* ---- values ---- */

#define TU_VMAGIC 0x31565554u /* "TUV1" */

typedef struct vhdr {
    uint32_t magic, key_id, writer, seq, len, pad;
    uint64_t csum;
} vhdr;
_Static_assert(sizeof(vhdr) == TU_VHDR, "value header size");

static void fill_stream(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    size_t i = 0;
    while (i < n) {
        s += 0x9e3779b97f4a7c15ull;
        uint64_t w = mix64(s);
        for (int b = 0; b < 8 && i < n; b++, i++)
            p[i] = (uint8_t)(w >> (8 * b));
    }
}

static uint64_t fnv64(const uint8_t *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t short_seed(uint32_t key_id, size_t len)
{
    return mix64(((uint64_t)key_id << 20) ^ (uint64_t)len ^ 0x5348524f5254ull);
}

static uint64_t long_seed(uint32_t key_id, uint32_t writer, uint32_t seq)
{
    return mix64(((uint64_t)key_id << 32) ^ ((uint64_t)writer << 24) ^ seq ^ 0x4c4f4e47ull);
}

static uint64_t value_csum(const vhdr *h, const uint8_t *payload, size_t plen)
{
    vhdr t = *h;
    t.csum = 0;
    uint64_t c = fnv64((const uint8_t *)&t, sizeof t, 0xcbf29ce484222325ull);
    return fnv64(payload, plen, c);
}

void tu_value_fill(void *buf, size_t len, uint32_t key_id, uint32_t writer, uint32_t seq)
{
    uint8_t *p = buf;
    if (len < TU_VHDR) {
        fill_stream(p, len, short_seed(key_id, len));
        return;
    }
    vhdr h = {.magic = TU_VMAGIC, .key_id = key_id, .writer = writer, .seq = seq,
              .len = (uint32_t)len, .pad = 0, .csum = 0};
    fill_stream(p + TU_VHDR, len - TU_VHDR, long_seed(key_id, writer, seq));
    h.csum = value_csum(&h, p + TU_VHDR, len - TU_VHDR);
    memcpy(p, &h, sizeof h);
}

uint32_t tu_value_flags(uint32_t key_id, size_t len)
{
    return (uint32_t)mix64(((uint64_t)key_id << 32) ^ (uint64_t)len ^ 0x464c4147ull);
}

int tu_value_check(const void *buf, size_t len, uint32_t flags, uint32_t key_id, char *why,
                   size_t whylen)
{
    const uint8_t *p = buf;
    char tmp[8];
    if (!why) {
        why = tmp;
        whylen = sizeof tmp;
    }
    why[0] = 0;
    if (flags != tu_value_flags(key_id, len)) {
        snprintf(why, whylen, "key %u: flags 0x%08x do not match length %zu", key_id, flags,
                 len);
        return 1;
    }
    if (len < TU_VHDR) {
        uint8_t exp[TU_VHDR];
        fill_stream(exp, len, short_seed(key_id, len));
        if (memcmp(exp, p, len) != 0) {
            snprintf(why, whylen, "key %u: short value (len %zu) content mismatch", key_id, len);
            return 2;
        }
        return 0;
    }
    vhdr h;
    memcpy(&h, p, sizeof h);
    if (h.magic != TU_VMAGIC) {
        snprintf(why, whylen, "key %u: bad value magic 0x%08x (len %zu)", key_id, h.magic, len);
        return 3;
    }
    if (h.key_id != key_id) {
        snprintf(why, whylen, "key %u: foreign value of key %u (len %zu)", key_id, h.key_id, len);
        return 4;
    }
    if (h.len != len) {
        snprintf(why, whylen, "key %u: value length %zu, header says %u", key_id, len, h.len);
        return 5;
    }
    if (h.csum != value_csum(&h, p + TU_VHDR, len - TU_VHDR)) {
        snprintf(why, whylen, "key %u: checksum mismatch (len %zu writer %u seq %u)", key_id,
                 len, h.writer, h.seq);
        return 6;
    }
    /* Regenerate the payload: catches anything the checksum might miss. */
    uint64_t s = long_seed(key_id, h.writer, h.seq);
    size_t i = TU_VHDR;
    while (i < len) {
        s += 0x9e3779b97f4a7c15ull;
        uint64_t w = mix64(s);
        for (int b = 0; b < 8 && i < len; b++, i++) {
            if (p[i] != (uint8_t)(w >> (8 * b))) {
                snprintf(why, whylen, "key %u: payload byte %zu differs (len %zu)", key_id, i,
                         len);
                return 7;
            }
        }
    }
    return 0;
}

bool tu_value_origin(const void *buf, size_t len, uint32_t *writer, uint32_t *seq)
{
    if (len < TU_VHDR)
        return false;
    vhdr h;
    memcpy(&h, buf, sizeof h);
    *writer = h.writer;
    *seq = h.seq;
    return true;
}

/* ---- shared memory, barrier, reports ---- */

void *tu_shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void tu_shared_free(void *p, size_t n)
{
    if (p)
        munmap(p, n);
}

void tu_barrier_init(tu_barrier *b, unsigned count)
{
    pthread_barrierattr_t a;
    pthread_barrierattr_init(&a);
    pthread_barrierattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&b->b, &a, count);
    pthread_barrierattr_destroy(&a);
}

void tu_barrier_wait(tu_barrier *b)
{
    pthread_barrier_wait(&b->b);
}

void tu_barrier_destroy(tu_barrier *b)
{
    pthread_barrier_destroy(&b->b);
}

tu_report *tu_report_new(void)
{
    return tu_shared_alloc(sizeof(tu_report));
}

void tu_report_free(tu_report *r)
{
    tu_shared_free(r, sizeof *r);
}

void tu_report_error(tu_report *r, const char *fmt, ...)
{
    atomic_fetch_add(&r->errors, 1);
    if (atomic_exchange(&r->msg_taken, 1) == 0) {
        int n = snprintf(r->first_error, sizeof r->first_error, "[pid %ld] ", (long)getpid());
        if (n < 0 || (size_t)n >= sizeof r->first_error)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first_error + n, sizeof r->first_error - (size_t)n, fmt, ap);
        va_end(ap);
        atomic_store(&r->msg_ready, 1);
    }
}

const char *tu_report_msg(tu_report *r)
{
    return atomic_load(&r->msg_ready) ? r->first_error : "(no message)";
}

/* ---- fork / wait ---- */

pid_t tu_fork(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* Children must not run the parent's cmocka machinery: default
         * signal dispositions, a watchdog, and _exit with fn's verdict. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGILL, SIG_DFL);
        signal(SIGFPE, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        alarm(TU_CHILD_ALARM_S);
        int rc = fn(arg);
        _exit(rc & 0xff);
    }
    return pid;
}

int tu_wait(pid_t pid, unsigned timeout_ms)
{
    uint64_t deadline = tu_now_ms() + timeout_ms;
    unsigned nap = 1;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            if (WIFSIGNALED(st))
                return TU_SIGNALLED + WTERMSIG(st);
        } else if (r < 0 && errno != EINTR) {
            return -1;
        }
        if (tu_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            return TU_TIMEDOUT;
        }
        tu_sleep_ms(nap);
        if (nap < 20)
            nap *= 2;
    }
}

bool tu_wait_stopped(pid_t pid, unsigned timeout_ms)
{
    uint64_t deadline = tu_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG | WUNTRACED);
        if (r == pid) {
            if (WIFSTOPPED(st))
                return true;
            return false; /* exited or was killed instead (status consumed) */
        }
        if (r < 0 && errno != EINTR)
            return false;
        if (tu_now_ms() >= deadline)
            return false;
        tu_sleep_ms(1);
    }
}

const char *tu_status_str(int st, char *buf, size_t n)
{
    if (st == TU_TIMEDOUT)
        snprintf(buf, n, "timed out (killed)");
    else if (st >= TU_SIGNALLED)
        snprintf(buf, n, "killed by signal %d (%s)", st - TU_SIGNALLED,
                 strsignal(st - TU_SIGNALLED));
    else
        snprintf(buf, n, "exit status %d", st);
    return buf;
}

/* ---- cache helpers ---- */

shmc_status tu_get_check(shmc_t *c, const char *prefix, uint32_t key_id, void *buf,
                         size_t buflen, char *why, size_t whylen)
{
    char key[TU_KEY_MAX];
    size_t klen = tu_key(key, prefix, key_id);
    size_t vlen = (size_t)-1;
    uint32_t flags = 0;
    shmc_status s = shmc_get(c, key, klen, buf, buflen, &vlen, &flags);
    if (s != SHMC_OK)
        return s;
    if (vlen > buflen) {
        if (why)
            snprintf(why, whylen, "key %u: SHMC_OK with vlen %zu > buflen %zu", key_id, vlen,
                     buflen);
        return TU_INVALID;
    }
    if (tu_value_check(buf, vlen, flags, key_id, why, whylen) != 0)
        return TU_INVALID;
    return SHMC_OK;
}

shmc_status tu_set_value(shmc_t *c, const char *prefix, uint32_t key_id, void *buf, size_t len,
                         uint32_t writer, uint32_t seq, uint64_t ttl_ms)
{
    char key[TU_KEY_MAX];
    size_t klen = tu_key(key, prefix, key_id);
    tu_value_fill(buf, len, key_id, writer, seq);
    return shmc_set(c, key, klen, buf, len, tu_value_flags(key_id, len), ttl_ms);
}

/* ---- counters ---- */

uint64_t tu_parse_u64(const void *buf, size_t n)
{
    const char *b = buf;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(b[i] - '0');
    return v;
}

shmc_status tu_cas_incr(shmc_t *c, const char *key, uint64_t *stale)
{
    size_t klen = strlen(key);
    for (;;) {
        char buf[32];
        size_t n;
        uint64_t tok;
        shmc_status s = shmc_gets(c, key, klen, buf, sizeof buf, &n, NULL, &tok);
        if (s != SHMC_OK)
            return s;
        int len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)(tu_parse_u64(buf, n) + 1));
        s = shmc_cas(c, key, klen, buf, (size_t)len, 0, 0, tok, NULL);
        if (s != SHMC_STALE)
            return s;
        if (stale)
            (*stale)++;
    }
}

void *tu_map_segment(const char *name, size_t *size)
{
    char path[256];
    tu_shm_path(path, sizeof path, name);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return NULL;
    struct stat sb;
    void *p = MAP_FAILED;
    if (fstat(fd, &sb) == 0)
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return NULL;
    *size = (size_t)sb.st_size;
    return p;
}

uint64_t tu_load64(const void *p, size_t off)
{
    uint64_t v;
    memcpy(&v, (const uint8_t *)p + off, 8);
    return v;
}
