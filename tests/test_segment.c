/*
 * test_segment.c — the segment layer seen through the public API: name
 * validation, open flags, parameter mismatch, destroy, corrupt or foreign
 * segment files (written directly into /dev/shm), half-initialised segments,
 * racing creators (forked processes) and handles inherited across fork();
 * hostile names, segments of another user (a child that drops root), and
 * names taken by something that is not a segment (directory, FIFO, symlink).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmcache.h"
#include "testutil.h"

/* Small caches for these tests; an explicit max_value keeps the creation
 * parameters independent of the default-max_value fitting rules. */
#define SMALL_SIZE (16ull << 20)
#define SMALL_MAXV (64u << 10)

/* Header field offsets (lib/layout.h); the public API does not expose them,
 * and these tests deliberately write raw bytes the way a foreign or broken
 * process would. */
#define OFF_MAGIC          0
#define OFF_LAYOUT_VERSION 8
#define OFF_HDR_SIZE       12
#define OFF_LAYOUT_HASH    16
#define OFF_STATE          24
#define OFF_OFF_SLOTS      96
#define OFF_OFF_STRIPES    104
#define OFF_COORD_MTX      328   /* shmc_hdr.coord_mtx */
#define SLOT_HOLD0         1152  /* shmc_slot.hold[0].m, in slot 0 */
#define MUTEX_KIND         16    /* glibc's pthread_mutex_t: __data.__kind */
#define OFF_PIDNS          32
#define OFF_SIZE           40
#define OFF_MAX_KEY        48
#define OFF_NSEGS          76
#define OFF_INDEX          128
#define OFF_DATA           136
#define STATE_INIT         0x494e4954u

typedef tu_fx fx;

/* The tests open (or fail to open) their own caches. */
static int setup(void **state) { return tu_fx_setup(state, "seg", NULL); }
#define teardown tu_fx_teardown

static char status_buf[128];
static const char *st_name(int st)
{
    return tu_status_str(st, status_buf, sizeof status_buf);
}

/* ---- names and flags ---- */

static void test_bad_names(void **state)
{
    (void)state;
    char long201[202], long200[201];
    memset(long201, 'n', 201);
    long201[201] = 0;
    memset(long200, 'n', 200);
    long200[200] = 0;
    /* make the 200-byte name unique to this run */
    char uniq[64];
    tu_name(uniq, sizeof uniq, "len200");
    memcpy(long200, uniq, strlen(uniq));

    const char *bad[] = {"", "a/b", "..", ".hidden", long201, "with space",
                         "/abs", "a\nb", "tab\t", "semi;colon", "\xc3\xa4", ".", "a/../b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmc_t *c = (shmc_t *)0x1;
        shmc_status s = shmc_open(bad[i], NULL, &c);
        if (s != SHMC_ENAME)
            fail_msg("shmc_open(bad name #%zu \"%s\") = %s, want SHMC_ENAME", i, bad[i],
                     shmc_strerror(s));
        assert_null(c);
        s = shmc_destroy(bad[i]);
        if (s != SHMC_ENAME)
            fail_msg("shmc_destroy(bad name #%zu \"%s\") = %s, want SHMC_ENAME", i, bad[i],
                     shmc_strerror(s));
    }

    /* The boundary: exactly SHMC_MAX_NAME bytes, and every allowed character. */
    shmc_t *c = NULL;
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    assert_int_equal(shmc_open(long200, &o, &c), SHMC_OK);
    assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), SHMC_OK);
    shmc_close(c);
    assert_int_equal(shmc_destroy(long200), SHMC_OK);

    char odd[96];
    tu_name(odd, sizeof odd, "Az09._-x");
    assert_int_equal(shmc_open(odd, &o, &c), SHMC_OK);
    shmc_close(c);
    assert_int_equal(shmc_destroy(odd), SHMC_OK);
}

/* What test_bad_names leaves out: NULL, names that climb out of /dev/shm
 * or name a path, names far over the limit, and every call that takes a
 * name (open with each flag, destroy, peek).  A bad name must never reach
 * the file system: nothing is created anywhere. */
static void test_hostile_names(void **state)
{
    (void)state;
    char uniq[64], climb[96], path[160];
    tu_name(uniq, sizeof uniq, "evil");
    snprintf(climb, sizeof climb, "../%s", uniq);
    char *huge = malloc(100001);
    assert_non_null(huge);
    memset(huge, 'h', 100000);
    huge[100000] = 0;
    char n4096[4097];
    memset(n4096, 'a', 4096);
    n4096[4096] = 0;
    const char *bad[] = {climb, "x/..", "abc/", "a//b", "./a", "\\", "a\\b", "~root", "*",
                         "%s%n", "/dev/shm/x", "a:b", "a\"b", "-\x7f", n4096, huge};
    const shmc_options flags[3] = {{0}, {.flags = SHMC_OPEN_ATTACH_ONLY},
                                   {.flags = SHMC_OPEN_CREATE_ONLY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int f = 0; f < 3; f++) {
            shmc_t *c = (shmc_t *)0x1;
            shmc_status s = shmc_open(bad[i], &flags[f], &c);
            if (s != SHMC_ENAME)
                fail_msg("shmc_open(bad name #%zu, flags %u) = %s, want SHMC_ENAME", i,
                         flags[f].flags, shmc_strerror(s));
            assert_null(c);
        }
        assert_int_equal(shmc_destroy(bad[i]), SHMC_ENAME);
        shmc_peek_info pi;
        assert_int_equal(shmc_peek(bad[i], &pi), SHMC_ENAME);
    }
    /* "../<name>" created nothing next to /dev/shm either. */
    struct stat st;
    snprintf(path, sizeof path, "/dev/%s", uniq);
    assert_int_not_equal(stat(path, &st), 0);
    tu_shm_path(path, sizeof path, uniq);
    assert_int_not_equal(stat(path, &st), 0);
    free(huge);

    /* NULL: an invalid argument, for every call that takes a name. */
    shmc_t *c = (shmc_t *)0x1;
    assert_int_equal(shmc_open(NULL, NULL, &c), SHMC_EINVAL);
    assert_null(c);
    assert_int_equal(shmc_destroy(NULL), SHMC_EINVAL);
    shmc_peek_info pi;
    assert_int_equal(shmc_peek(NULL, &pi), SHMC_EINVAL);
    assert_int_equal(shmc_open(uniq, NULL, NULL), SHMC_EINVAL);
    assert_int_equal(shmc_peek(uniq, NULL), SHMC_EINVAL);

    /* A name is a C string: what follows an embedded NUL is not part of it
     * (so "ok\0/../../etc/passwd" names the cache "ok"). */
    char with_nul[128];
    size_t ul = strlen(uniq);
    memcpy(with_nul, uniq, ul);
    memcpy(with_nul + ul, "\0/../../etc/passwd", 19);
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    assert_int_equal(shmc_open(with_nul, &o, &c), SHMC_OK);
    assert_int_equal(stat(path, &st), 0);
    shmc_close(c);
    assert_int_equal(shmc_destroy(with_nul), SHMC_OK);
    assert_int_not_equal(stat(path, &st), 0);

    /* Allowed anywhere but first: '.'; allowed first: '-', '_', digits. */
    const char *lead[] = {"-", "_", "0"};
    for (size_t i = 0; i < 3; i++) {
        char n[96];
        snprintf(n, sizeof n, "%s%s.x", lead[i], uniq);
        assert_int_equal(shmc_open(n, &o, &c), SHMC_OK);
        shmc_close(c);
        assert_int_equal(shmc_destroy(n), SHMC_OK);
    }
}

static void test_attach_only_missing(void **state)
{
    fx *f = *state;
    shmc_options o = {.flags = SHMC_OPEN_ATTACH_ONLY};
    shmc_t *c = (shmc_t *)0x1;
    assert_int_equal(shmc_open(f->name, &o, &c), SHMC_ENOENT);
    assert_null(c);
    char path[256];
    struct stat st;
    tu_shm_path(path, sizeof path, f->name);
    assert_int_not_equal(stat(path, &st), 0); /* nothing was created */
}

static void test_create_only(void **state)
{
    fx *f = *state;
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV, .flags = SHMC_OPEN_CREATE_ONLY};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "k", 1, "v", 1, 0, 0), SHMC_OK);
    shmc_t *c2 = (shmc_t *)0x1;
    assert_int_equal(shmc_open(f->name, &o, &c2), SHMC_EEXIST);
    assert_null(c2);
    /* Still EEXIST once no handle is open. */
    shmc_close(f->c);
    f->c = NULL;
    assert_int_equal(shmc_open(f->name, &o, &c2), SHMC_EEXIST);
    /* The existing cache was not touched. */
    shmc_options a = {.flags = SHMC_OPEN_ATTACH_ONLY};
    assert_int_equal(shmc_open(f->name, &a, &f->c), SHMC_OK);
    assert_int_equal(shmc_exists(f->c, "k", 1), SHMC_OK);
}

static void test_attach_mismatch(void **state)
{
    fx *f = *state;
    shmc_options o = {.size = SMALL_SIZE, .max_key = 100, .max_value = 64u << 10, .slots = 64};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "k", 1, "v", 1, 0, 0), SHMC_OK);
    shmc_info want;
    assert_int_equal(shmc_info_get(f->c, &want), SHMC_OK);

    const shmc_options bad[] = {
        {.size = 32ull << 20},
        {.max_key = 200},
        {.max_key = 250}, /* the default, but not this segment's value */
        {.max_value = 32u << 10},
        {.slots = 128},
        {.size = SMALL_SIZE, .max_key = 101},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmc_t *c = (shmc_t *)0x1;
        shmc_status s = shmc_open(f->name, &bad[i], &c);
        if (s != SHMC_EMISMATCH)
            fail_msg("mismatching options #%zu: %s, want SHMC_EMISMATCH", i, shmc_strerror(s));
        assert_null(c);
    }

    /* zero options: attach to whatever is there */
    shmc_t *c = NULL;
    shmc_options zero = {0};
    assert_int_equal(shmc_open(f->name, &zero, &c), SHMC_OK);
    shmc_info got;
    assert_int_equal(shmc_info_get(c, &got), SHMC_OK);
    assert_memory_equal(&got, &want, sizeof got);
    assert_int_equal(shmc_exists(c, "k", 1), SHMC_OK);
    shmc_close(c);
    /* NULL options too, and the exact same options */
    assert_int_equal(shmc_open(f->name, NULL, &c), SHMC_OK);
    assert_int_equal(shmc_info_get(c, &got), SHMC_OK);
    assert_memory_equal(&got, &want, sizeof got);
    shmc_close(c);
    assert_int_equal(shmc_open(f->name, &o, &c), SHMC_OK);
    shmc_close(c);
    /* The mismatching attempts left the cache intact. */
    assert_int_equal(shmc_exists(f->c, "k", 1), SHMC_OK);
}

/* Zero fields mean "whatever the segment has": an attacher's options need
 * not describe a layout that could be created (here: 16 MiB with the default
 * 1 MiB max_value would not be what the segment has). */
static void test_attach_partial_options(void **state)
{
    fx *f = *state;
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV, .max_key = 32};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    const shmc_options ok[] = {
        {.size = SMALL_SIZE},
        {.max_key = 32},
        {.max_value = SMALL_MAXV},
        {.size = SMALL_SIZE, .max_key = 32},
        {.flags = SHMC_OPEN_ATTACH_ONLY, .size = SMALL_SIZE},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        shmc_t *c = NULL;
        shmc_status s = shmc_open(f->name, &ok[i], &c);
        if (s != SHMC_OK)
            fail_msg("attach with partial options #%zu: %s, want SHMC_OK", i, shmc_strerror(s));
        shmc_info in;
        assert_int_equal(shmc_info_get(c, &in), SHMC_OK);
        assert_int_equal(in.size, SMALL_SIZE);
        assert_int_equal(in.max_key, 32);
        assert_int_equal(in.max_value, SMALL_MAXV);
        shmc_close(c);
    }
}

static void test_destroy_missing(void **state)
{
    fx *f = *state;
    assert_int_equal(shmc_destroy(f->name), SHMC_ENOENT);
}

static void test_open_mode(void **state)
{
    fx *f = *state;
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV, .mode = 0640};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    char path[256];
    struct stat st;
    tu_shm_path(path, sizeof path, f->name);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal((uint64_t)st.st_size, SMALL_SIZE);
}

/* ---- corrupt segment files ---- */

/* Creates a small cache with a few keys and closes every handle. */
static void make_closed_cache(const char *name)
{
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    shmc_t *c = NULL;
    assert_int_equal(shmc_open(name, &o, &c), SHMC_OK);
    for (int i = 0; i < 10; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(shmc_set(c, k, (size_t)kl, "value", 5, 0, 0), SHMC_OK);
    }
    assert_int_equal(shmc_close(c), SHMC_OK);
}

static void poke(const char *name, off_t off, const void *p, size_t n)
{
    char path[256];
    tu_shm_path(path, sizeof path, name);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, off), (ssize_t)n);
    close(fd);
}

static uint64_t peek64(const char *name, off_t off)
{
    char path[256];
    tu_shm_path(path, sizeof path, name);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint64_t v = 0;
    assert_int_equal(pread(fd, &v, sizeof v, off), (ssize_t)sizeof v);
    close(fd);
    return v;
}

static void poke64(const char *name, off_t off, uint64_t v) { poke(name, off, &v, 8); }
static void poke32(const char *name, off_t off, uint32_t v) { poke(name, off, &v, 4); }

static void truncate_to(const char *name, off_t size)
{
    char path[256];
    tu_shm_path(path, sizeof path, name);
    assert_int_equal(truncate(path, size), 0);
}

/* Opens (default flags and attach-only) and expects `want` both times; then
 * checks the name can still be destroyed. */
static void expect_open_fails(const char *name, shmc_status want, const char *what)
{
    shmc_options variants[2] = {{0}, {.flags = SHMC_OPEN_ATTACH_ONLY}};
    for (int v = 0; v < 2; v++) {
        shmc_t *c = (shmc_t *)0x1;
        shmc_status s = shmc_open(name, &variants[v], &c);
        if (s != want) {
            if (s == SHMC_OK)
                shmc_close(c);
            fail_msg("%s (%s): shmc_open = %s, want %s", what,
                     v ? "attach-only" : "default flags", shmc_strerror(s), shmc_strerror(want));
        }
        assert_null(c);
    }
    assert_int_equal(shmc_destroy(name), SHMC_OK);
}

static void test_corrupt_magic(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    poke64(f->name, OFF_MAGIC, 0x0123456789abcdefull);
    expect_open_fails(f->name, SHMC_ECORRUPT, "wrong magic");
}

static void test_corrupt_layout_version(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    uint64_t v = peek64(f->name, OFF_LAYOUT_VERSION) & 0xffffffffu;
    poke32(f->name, OFF_LAYOUT_VERSION, (uint32_t)v + 1);
    expect_open_fails(f->name, SHMC_EVERSION, "layout_version + 1");
    make_closed_cache(f->name);
    poke32(f->name, OFF_LAYOUT_VERSION, 0);
    expect_open_fails(f->name, SHMC_EVERSION, "layout_version 0");
}

static void test_corrupt_layout_hash(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    uint64_t h = peek64(f->name, OFF_LAYOUT_HASH);
    poke64(f->name, OFF_LAYOUT_HASH, h ^ 0x10);
    expect_open_fails(f->name, SHMC_EVERSION, "layout_hash changed");
}

static void test_truncated_half(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    truncate_to(f->name, (off_t)(SMALL_SIZE / 2));
    expect_open_fails(f->name, SHMC_ECORRUPT, "truncated to half");
}

static void test_truncated_100_bytes(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    truncate_to(f->name, 100);
    expect_open_fails(f->name, SHMC_ECORRUPT, "truncated to 100 bytes");
}

static void test_corrupt_offsets(void **state)
{
    fx *f = *state;
    static const struct {
        off_t off;
        int width;
        uint64_t val;
        const char *what;
    } cases[] = {
        {OFF_INDEX, 8, 0x7fffffffffff0000ull, "off_index huge"},
        {OFF_INDEX, 8, 8, "off_index inside header"},
        {OFF_DATA, 8, 0xffffffffffffffffull, "off_data huge"},
        {OFF_DATA, 8, 4096, "off_data overlaps slots"},
        {OFF_SIZE, 8, SMALL_SIZE * 2, "size field larger than file"},
        {OFF_MAX_KEY, 4, 0xffffffffu, "max_key out of range"},
        {OFF_NSEGS, 4, 100000, "nsegs too many"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_closed_cache(f->name);
        if (cases[i].width == 8)
            poke64(f->name, cases[i].off, cases[i].val);
        else
            poke32(f->name, cases[i].off, (uint32_t)cases[i].val);
        expect_open_fails(f->name, SHMC_ECORRUPT, cases[i].what);
    }
}

static void test_garbage_file(void **state)
{
    fx *f = *state;
    /* A file that was never a shmcache segment: random bytes, 1 MiB. */
    char path[256];
    tu_shm_path(path, sizeof path, f->name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(1u << 20);
    tu_rng r;
    tu_rng_seed(&r, 99);
    for (size_t i = 0; i < (1u << 20); i++)
        buf[i] = (uint8_t)tu_rng_next(&r);
    /* keep the state word "READY" so it is not mistaken for a half-init */
    uint32_t ready = 0x52454459u;
    memcpy(buf + OFF_STATE, &ready, 4);
    assert_int_equal(write(fd, buf, 1u << 20), 1 << 20);
    close(fd);
    free(buf);
    expect_open_fails(f->name, SHMC_ECORRUPT, "random bytes");
}

/* ---- segments of another user, and names that are not segments ---- */

typedef struct perm_arg {
    const char *name;
    shmc_status want_open;   /* with default flags and attach-only */
    shmc_status want_peek;
} perm_arg;

/* In a child: become nobody (65534), then try the cache. */
static int as_nobody(void *p)
{
    const perm_arg *a = p;
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
        return 90;
    if (geteuid() != 65534)
        return 91;
    const shmc_options variants[2] = {{0}, {.flags = SHMC_OPEN_ATTACH_ONLY}};
    for (int v = 0; v < 2; v++) {
        shmc_t *c = (shmc_t *)0x1;
        shmc_status s = shmc_open(a->name, &variants[v], &c);
        if (s != a->want_open) {
            fprintf(stderr, "as nobody: shmc_open (%s) = %s, want %s\n",
                    v ? "attach-only" : "default", shmc_strerror(s), shmc_strerror(a->want_open));
            return 10 + v;
        }
        if (s != SHMC_OK) {
            if (c != NULL)
                return 12;
            continue;
        }
        /* Allowed in: the cache works for this user too. */
        uint8_t buf[16];
        size_t vl = 0;
        if (shmc_get(c, "k", 1, buf, sizeof buf, &vl, NULL) != SHMC_OK || vl != 5 ||
            shmc_set(c, "nobody", 6, "was here", 8, 0, 0) != SHMC_OK)
            return 13;
        shmc_close(c);
    }
    /* Create-only: the name is taken, whoever may open it. */
    shmc_options co = {.flags = SHMC_OPEN_CREATE_ONLY};
    shmc_t *c = NULL;
    shmc_status s = shmc_open(a->name, &co, &c);
    if (s != SHMC_EEXIST) {
        fprintf(stderr, "as nobody: create-only = %s\n", shmc_strerror(s));
        return 20;
    }
    shmc_peek_info pi;
    s = shmc_peek(a->name, &pi);
    if (s != a->want_peek) {
        fprintf(stderr, "as nobody: shmc_peek = %s, want %s\n", shmc_strerror(s),
                shmc_strerror(a->want_peek));
        return 30;
    }
    /* /dev/shm is sticky: only the owner removes a segment. */
    s = shmc_destroy(a->name);
    if (s != SHMC_EACCES) {
        fprintf(stderr, "as nobody: shmc_destroy = %s\n", shmc_strerror(s));
        return 40;
    }
    return 0;
}

static void run_as_nobody(const char *name, shmc_status want_open, shmc_status want_peek)
{
    perm_arg a = {name, want_open, want_peek};
    pid_t pid = tu_fork(as_nobody, &a);
    assert_true(pid > 0);
    int st = tu_wait(pid, 60000);
    if (st != 0)
        fail_msg("child as nobody (want %s): %s", shmc_strerror(want_open), st_name(st));
}

/* A root-owned cache: 0600 refuses another user with SHMC_EACCES (not a
 * generic system error), read-only permission is not enough to attach
 * (attaching writes: slots, locks), and 0666 lets any user in.  Tests run as
 * root in CI, and root bypasses file permissions, so a child drops to
 * nobody first; skipped when not run as root. */
static void test_other_user_permissions(void **state)
{
    fx *f = *state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    struct stat dst;
    if (stat("/dev/shm", &dst) != 0 || (dst.st_mode & 01777) != 01777) {
        skip(); /* needs the usual sticky, world-writable /dev/shm */
        return;
    }
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV}; /* mode: default 0600 */
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    assert_int_equal(shmc_set(f->c, "k", 1, "value", 5, 0, 0), SHMC_OK);
    char path[256];
    tu_shm_path(path, sizeof path, f->name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    run_as_nobody(f->name, SHMC_EACCES, SHMC_EACCES);
    assert_int_equal(chmod(path, 0644), 0);
    run_as_nobody(f->name, SHMC_EACCES, SHMC_OK);
    assert_int_equal(chmod(path, 0666), 0);
    run_as_nobody(f->name, SHMC_OK, SHMC_OK);

    /* The owner's cache is intact, and has what the other user wrote. */
    uint8_t buf[16];
    size_t vl = 0;
    assert_int_equal(shmc_get(f->c, "nobody", 6, buf, sizeof buf, &vl, NULL), SHMC_OK);
    assert_int_equal(vl, 8);
    shmc_verify_report rep;
    assert_int_equal(shmc_verify(f->c, &rep), SHMC_OK);
}

/* Runs shmc_peek in a child with an alarm: a peek that blocks (as an open
 * of a FIFO for reading would) fails the test instead of hanging it. */
static int peek_child(void *p)
{
    alarm(10);
    shmc_peek_info pi;
    return (int)shmc_peek(p, &pi);
}

static void expect_not_a_segment(const char *name, const char *what)
{
    const shmc_options variants[3] = {{0}, {.flags = SHMC_OPEN_ATTACH_ONLY},
                                      {.size = SMALL_SIZE, .max_value = SMALL_MAXV}};
    for (int v = 0; v < 3; v++) {
        shmc_t *c = (shmc_t *)0x1;
        uint64_t t0 = tu_now_ms();
        shmc_status s = shmc_open(name, &variants[v], &c);
        if (s != SHMC_ECORRUPT)
            fail_msg("%s (variant %d): shmc_open = %s, want SHMC_ECORRUPT", what, v,
                     shmc_strerror(s));
        assert_null(c);
        assert_true(tu_now_ms() - t0 < 1000); /* refused at once, not after a wait */
    }
    pid_t pid = tu_fork(peek_child, (void *)name);
    assert_true(pid > 0);
    int st = tu_wait(pid, 30000);
    if (st != SHMC_ECORRUPT)
        fail_msg("%s: shmc_peek: %s (want exit %d: SHMC_ECORRUPT)", what, st_name(st),
                 SHMC_ECORRUPT);
}

/* The name is taken by something that is not a segment: refused with
 * SHMC_ECORRUPT, left as it was (never truncated, unlinked or followed),
 * and shmc_peek neither blocks nor follows it either. */
static void test_not_a_regular_file(void **state)
{
    fx *f = *state;
    char path[256], tpath[256], target[96];
    struct stat st;
    tu_shm_path(path, sizeof path, f->name);

    assert_int_equal(mkdir(path, 0700), 0);
    expect_not_a_segment(f->name, "a directory");
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(rmdir(path), 0);

    assert_int_equal(mkfifo(path, 0600), 0);
    expect_not_a_segment(f->name, "a FIFO");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(unlink(path), 0);

    /* A symlink to a real cache: never followed, the cache is untouched. */
    tu_name(target, sizeof target, "target");
    make_closed_cache(target);
    tu_shm_path(tpath, sizeof tpath, target);
    assert_int_equal(symlink(tpath, path), 0);
    expect_not_a_segment(f->name, "a symlink to a cache");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(unlink(path), 0);
    shmc_t *c = NULL;
    shmc_options a = {.flags = SHMC_OPEN_ATTACH_ONLY};
    assert_int_equal(shmc_open(target, &a, &c), SHMC_OK);
    assert_int_equal(shmc_exists(c, "k3", 2), SHMC_OK);
    shmc_close(c);
    tu_destroy(target);

    /* A dangling symlink: its target is not created. */
    snprintf(tpath, sizeof tpath, "/tmp/%s-dangling", target);
    assert_int_equal(symlink(tpath, path), 0);
    expect_not_a_segment(f->name, "a dangling symlink");
    assert_int_not_equal(stat(tpath, &st), 0);
    assert_int_equal(unlink(path), 0);
}

/* A segment file longer than its header says (grown by someone's
 * ftruncate): the size no longer matches; refused as damaged. */
static void test_grown_file(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    truncate_to(f->name, (off_t)(SMALL_SIZE + 4096));
    expect_open_fails(f->name, SHMC_ECORRUPT, "grown by a page");
}

/* A segment made in another PID namespace (robust mutexes and liveness
 * checks cannot work across them): SHMC_ENAMESPACE. */
static void test_other_pid_namespace(void **state)
{
    fx *f = *state;
    make_closed_cache(f->name);
    uint64_t ns = peek64(f->name, OFF_PIDNS);
    assert_true(ns != 0);
    poke64(f->name, OFF_PIDNS, ns ^ 0x5a5a);
    expect_open_fails(f->name, SHMC_ENAMESPACE, "another PID namespace");
}

/* glibc takes a mutex's code paths from its kind word on every call: lock
 * elision executes TSX instructions (SIGILL on CPUs without them; the
 * fuzzer found this one), priority inheritance asserts on kernel answers,
 * a process-private mutex never wakes other processes.  Every mutex of a
 * segment has a known kind, so a damaged one is refused at attach. */
static void test_corrupt_mutex_kind(void **state)
{
    fx *f = *state;
    static const struct {
        int where;            /* 0 a stripe, 1 slot 0's mutex, 2 a hold record, 3 the table's */
        uint32_t index;
        uint32_t or_bits, and_bits;
        const char *what;
    } cases[] = {
        {0, 0, 256, ~0u, "stripe 0: lock elision"},
        {0, 1023, 32, ~0u, "stripe 1023: priority inheritance"},
        {0, 77, 0, 0, "stripe 77: a plain private mutex"},
        {1, 0, 0, ~128u, "slot mutex: process-private"},
        {2, 0, 0, ~16u, "hold record: not robust"},
        {3, 0, 64, ~0u, "lock table mutex: priority protect"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_closed_cache(f->name);
        off_t at;
        switch (cases[i].where) {
        case 0: at = (off_t)peek64(f->name, OFF_OFF_STRIPES) + 64 * cases[i].index; break;
        case 1: at = (off_t)peek64(f->name, OFF_OFF_SLOTS); break;
        case 2: at = (off_t)peek64(f->name, OFF_OFF_SLOTS) + SLOT_HOLD0; break;
        default: at = OFF_COORD_MTX; break;
        }
        at += MUTEX_KIND;
        uint32_t kind = (uint32_t)peek64(f->name, at);
        assert_true(kind & 16); /* robust, as the library makes them */
        poke32(f->name, at, (kind | cases[i].or_bits) & cases[i].and_bits);
        expect_open_fails(f->name, SHMC_ECORRUPT, cases[i].what);
    }
}

/* ---- half-initialised segment ---- */

static void make_half_init(const char *name, uint64_t size, bool junk)
{
    char path[256];
    tu_shm_path(path, sizeof path, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    if (junk) {
        /* A creator that died half-way: some header fields written. */
        uint64_t v = 0x31454843414d4853ull;
        assert_int_equal(pwrite(fd, &v, 8, OFF_MAGIC), 8);
        v = 0xdeadbeefdeadbeefull;
        assert_int_equal(pwrite(fd, &v, 8, OFF_INDEX), 8);
        assert_int_equal(pwrite(fd, &v, 8, 4096 + 64), 8); /* junk in the slot table */
    }
    uint32_t st = STATE_INIT;
    assert_int_equal(pwrite(fd, &st, 4, OFF_STATE), 4);
    close(fd);
}

static void check_cache_works(shmc_t *c)
{
    uint8_t buf[4096];
    char why[200];
    for (uint32_t i = 0; i < 300; i++)
        assert_int_equal(tu_set_value(c, "hi-", i, buf, 100 + i * 10, 0, i, 0), SHMC_OK);
    for (uint32_t i = 0; i < 300; i++) {
        shmc_status s = tu_get_check(c, "hi-", i, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("key %u: %s %s", i, s == TU_INVALID ? "invalid" : shmc_strerror(s), why);
    }
    shmc_verify_report rep;
    shmc_status v = shmc_verify(c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
    assert_int_equal(rep.items, 300);
}

static void test_half_initialised_reinit(void **state)
{
    fx *f = *state;
    make_half_init(f->name, 64ull << 20, false);
    assert_int_equal(shmc_open(f->name, NULL, &f->c), SHMC_OK);
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    assert_int_equal(in.size, 64ull << 20);
    check_cache_works(f->c);
    /* A second opener now attaches to the re-initialised cache. */
    shmc_t *c2 = NULL;
    shmc_options a = {.flags = SHMC_OPEN_ATTACH_ONLY};
    assert_int_equal(shmc_open(f->name, &a, &c2), SHMC_OK);
    assert_int_equal(shmc_exists(c2, "hi-7", 4), SHMC_OK);
    shmc_close(c2);
}

/* A creator killed between shm_open(O_CREAT) and ftruncate leaves an empty
 * file: the next opener initialises it. */
static void test_empty_file_reinit(void **state)
{
    fx *f = *state;
    char path[256];
    tu_shm_path(path, sizeof path, f->name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    check_cache_works(f->c);
}

static void test_half_initialised_junk_other_size(void **state)
{
    fx *f = *state;
    /* Junk in the header and a size different from what we ask for: the
     * opener's parameters win, nothing of the dead creator is trusted. */
    make_half_init(f->name, 64ull << 20, true);
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    shmc_info in;
    assert_int_equal(shmc_info_get(f->c, &in), SHMC_OK);
    assert_int_equal(in.size, SMALL_SIZE);
    check_cache_works(f->c);
}

/* ---- concurrent creation ---- */

enum { NCREATORS = 8, CREATE_ROUNDS = 5 };

typedef struct creator_arg {
    const char *name;
    tu_barrier *bar;
    uint32_t id;
} creator_arg;

static int creator_child(void *p)
{
    creator_arg *a = p;
    alarm(30);
    int err = 0;
    uint8_t buf[2048];
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    shmc_t *c = NULL;
    tu_barrier_wait(a->bar);
    shmc_status s = shmc_open(a->name, &o, &c);
    if (s != SHMC_OK) {
        fprintf(stderr, "creator %u: shmc_open: %s\n", a->id, shmc_strerror(s));
        err |= 1;
    } else if (tu_set_value(c, "creator-", a->id, buf, 64 + a->id * 100, a->id, 0, 0) !=
               SHMC_OK) {
        err |= 2;
    }
    tu_barrier_wait(a->bar);
    if (c) {
        for (uint32_t j = 0; j < NCREATORS; j++) {
            char why[200];
            s = tu_get_check(c, "creator-", j, buf, sizeof buf, why, sizeof why);
            if (s != SHMC_OK) {
                fprintf(stderr, "creator %u: key of %u: %s %s\n", a->id, j,
                        s == TU_INVALID ? "invalid" : shmc_strerror(s), why);
                err |= 4;
            }
        }
        shmc_close(c);
    }
    return err;
}

static void test_concurrent_creation(void **state)
{
    fx *f = *state;
    tu_barrier *bar = tu_shared_alloc(sizeof *bar);
    assert_non_null(bar);
    for (int round = 0; round < CREATE_ROUNDS; round++) {
        /* a fresh name per round; teardown removes the last one */
        char *name = f->name;
        tu_destroy(name);
        tu_name(name, sizeof f->name, "race");
        tu_barrier_init(bar, NCREATORS);
        pid_t pids[NCREATORS];
        creator_arg args[NCREATORS];
        for (uint32_t i = 0; i < NCREATORS; i++) {
            args[i] = (creator_arg){.name = name, .bar = bar, .id = i};
            pids[i] = tu_fork(creator_child, &args[i]);
            assert_true(pids[i] > 0);
        }
        int failed = 0;
        for (uint32_t i = 0; i < NCREATORS; i++) {
            int st = tu_wait(pids[i], 60000);
            if (st != 0) {
                fprintf(stderr, "round %d creator %u: %s\n", round, i, st_name(st));
                failed++;
            }
        }
        tu_barrier_destroy(bar);
        /* The segment is a proper cache holding every child's key. */
        shmc_t *c = NULL;
        shmc_options a = {.flags = SHMC_OPEN_ATTACH_ONLY};
        assert_int_equal(shmc_open(name, &a, &c), SHMC_OK);
        shmc_stats st;
        assert_int_equal(shmc_stats_get(c, &st), SHMC_OK);
        shmc_verify_report rep;
        shmc_status v = shmc_verify(c, &rep);
        shmc_close(c);
        tu_destroy(name);
        if (failed)
            fail_msg("round %d: %d of %d concurrent openers failed", round, failed, NCREATORS);
        assert_int_equal(v, SHMC_OK);
        assert_int_equal(rep.items, NCREATORS);
        assert_int_equal(st.items, NCREATORS);
    }
    tu_shared_free(bar, sizeof *bar);
}

/* ---- fork inheritance ---- */

typedef struct inherit_arg {
    shmc_t *c;
    uint32_t id;
    bool grandchild;
} inherit_arg;

static int inherit_child(void *p)
{
    inherit_arg *a = p;
    uint8_t buf[4096];
    char why[200];
    /* The parent's key is visible through the inherited handle. */
    if (tu_get_check(a->c, "parent-", 0, buf, sizeof buf, why, sizeof why) != SHMC_OK)
        return 10;
    if (tu_set_value(a->c, "child-", a->id, buf, 500 + a->id, a->id, 1, 0) != SHMC_OK)
        return 11;
    if (tu_get_check(a->c, "child-", a->id, buf, sizeof buf, why, sizeof why) != SHMC_OK)
        return 12;
    if (a->grandchild) {
        inherit_arg g = {.c = a->c, .id = a->id + 100, .grandchild = false};
        pid_t pid = tu_fork(inherit_child, &g);
        if (pid < 0)
            return 13;
        int st = tu_wait(pid, 30000);
        if (st != 0)
            return 14;
        if (tu_get_check(a->c, "child-", g.id, buf, sizeof buf, why, sizeof why) != SHMC_OK)
            return 15;
    }
    for (uint32_t i = 0; i < 200; i++)
        if (tu_set_value(a->c, "bulk-", a->id * 1000 + i, buf, 300, a->id, i, 0) != SHMC_OK)
            return 16;
    if (shmc_close(a->c) != SHMC_OK)
        return 17;
    return 0;
}

static void run_inherit(fx *f, bool parent_used_handle)
{
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    uint8_t buf[4096];
    char why[200];
    /* Write the parent's key from another handle if this one must stay unused. */
    if (parent_used_handle) {
        assert_int_equal(tu_set_value(f->c, "parent-", 0, buf, 700, 0, 0, 0), SHMC_OK);
    } else {
        shmc_t *c2 = NULL;
        assert_int_equal(shmc_open(f->name, NULL, &c2), SHMC_OK);
        assert_int_equal(tu_set_value(c2, "parent-", 0, buf, 700, 0, 0, 0), SHMC_OK);
        shmc_close(c2);
    }
    enum { NCH = 3 };
    inherit_arg args[NCH];
    pid_t pids[NCH];
    for (uint32_t i = 0; i < NCH; i++) {
        args[i] = (inherit_arg){.c = f->c, .id = i + 1, .grandchild = (i == 0)};
        pids[i] = tu_fork(inherit_child, &args[i]);
        assert_true(pids[i] > 0);
    }
    /* The parent keeps using its handle while the children run. */
    for (uint32_t i = 0; i < 300; i++)
        assert_int_equal(tu_set_value(f->c, "pbulk-", i, buf, 200, 0, i, 0), SHMC_OK);
    for (uint32_t i = 0; i < NCH; i++) {
        int st = tu_wait(pids[i], 60000);
        if (st != 0)
            fail_msg("inheriting child %u: %s", i + 1, st_name(st));
    }
    for (uint32_t i = 0; i < NCH; i++) {
        shmc_status s = tu_get_check(f->c, "child-", i + 1, buf, sizeof buf, why, sizeof why);
        if (s != SHMC_OK)
            fail_msg("child %u's key: %s %s", i + 1, shmc_strerror(s), why);
    }
    assert_int_equal(tu_get_check(f->c, "child-", 101, buf, sizeof buf, why, sizeof why),
                     SHMC_OK);
    for (uint32_t i = 0; i < 300; i++)
        assert_int_equal(tu_get_check(f->c, "pbulk-", i, buf, sizeof buf, why, sizeof why),
                         SHMC_OK);
    shmc_verify_report rep;
    shmc_status v = shmc_verify(f->c, &rep);
    if (v != SHMC_OK)
        fail_msg("verify: %s: %s", shmc_strerror(v), rep.first_error);
}

static void test_fork_inherits_handle(void **state)
{
    run_inherit(*state, true);
}

static void test_fork_inherits_unused_handle(void **state)
{
    run_inherit(*state, false);
}

/* ---- slots come back ---- */

static int exit_without_close(void *p)
{
    const char *name = p;
    shmc_t *c = NULL;
    if (shmc_open(name, NULL, &c) != SHMC_OK)
        return 1;
    if (shmc_set(c, "x", 1, "y", 1, 0, 0) != SHMC_OK)
        return 2;
    return 0; /* _exit with the slot still held: the process dies owning it */
}

static void test_slots_reused(void **state)
{
    fx *f = *state;
    shmc_options o = {.size = SMALL_SIZE, .max_value = SMALL_MAXV, .slots = 4};
    assert_int_equal(shmc_open(f->name, &o, &f->c), SHMC_OK);
    /* Open/use/close many more times than there are slots. */
    for (int i = 0; i < 40; i++) {
        shmc_t *c = NULL;
        assert_int_equal(shmc_open(f->name, NULL, &c), SHMC_OK);
        assert_int_equal(shmc_set(c, "k", 1, "v", 1, 0, 0), SHMC_OK);
        assert_int_equal(shmc_close(c), SHMC_OK);
    }
    /* Processes that exit without closing leave slots their death releases. */
    for (int i = 0; i < 12; i++) {
        pid_t pid = tu_fork(exit_without_close, f->name);
        assert_true(pid > 0);
        int st = tu_wait(pid, 30000);
        if (st != 0)
            fail_msg("child %d (of 12, 4 slots): %s", i, st_name(st));
    }
    assert_int_equal(shmc_set(f->c, "k", 1, "w", 1, 0, 0), SHMC_OK);
    shmc_stats st;
    assert_int_equal(shmc_stats_get(f->c, &st), SHMC_OK);
    assert_true(st.slots_live <= 4);
}

/* Bytes of this process's mappings of /dev/shm/<name> that its page
 * tables map (the Rss of smaps), summed over every mapping of it. */
static uint64_t mapped_bytes(const char *name)
{
    char want[300], line[512];
    snprintf(want, sizeof want, "/dev/shm/%s\n", name);
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    uint64_t kb = 0, v;
    bool ours = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) { /* a mapping's first line */
            size_t n = strlen(line), w = strlen(want);
            ours = n >= w && strcmp(line + n - w, want) == 0;
        } else if (ours && sscanf(line, "Rss: %" SCNu64 " kB", &v) == 1) {
            kb += v;
        }
    }
    fclose(f);
    return kb << 10;
}

static int prefault_child(void *arg)
{
    fx *f = arg;
    char v[8];
    size_t l;
    if (shmc_get(f->c, "k", 1, v, sizeof v, &l, NULL) != SHMC_OK || l != 5)
        return 1;
    /* fork() copied no page tables of the shared mapping: the first call
     * mapped the whole segment again */
    return mapped_bytes(f->name) >= (16u << 20) ? 0 : 2;
}

/* SHMC_OPEN_PREFAULT maps every page into the opening process (and into a
 * child that inherited the handle, on its first call), changing no data. */
static void test_prefault(void **state)
{
    fx *f = *state;
    const uint64_t size = 16u << 20;
    shmc_t *plain;
    assert_int_equal(shmc_open(f->name,
                               &(shmc_options){.size = size, .max_value = 64u << 10,
                                               .slots = 16},
                               &plain),
                     SHMC_OK);
    assert_int_equal(shmc_set(plain, "k", 1, "value", 5, 0, 0), SHMC_OK);
    uint64_t before = mapped_bytes(f->name);
    assert_true(before > 0 && before < size / 2);
    assert_int_equal(shmc_open(f->name, &(shmc_options){.flags = SHMC_OPEN_PREFAULT}, &f->c),
                     SHMC_OK);
    assert_true(mapped_bytes(f->name) >= size);
    char v[8];
    size_t l;
    assert_int_equal(shmc_get(f->c, "k", 1, v, sizeof v, &l, NULL), SHMC_OK);
    assert_memory_equal(v, "value", 5);
    pid_t p = tu_fork(prefault_child, f);
    assert_true(p > 0);
    int st = tu_wait(p, 30000);
    if (st != 0)
        fail_msg("child: %s", st_name(st));
    assert_int_equal(shmc_close(plain), SHMC_OK);
    /* flags are checked */
    shmc_t *x = NULL;
    assert_int_equal(shmc_open(f->name, &(shmc_options){.flags = 8}, &x), SHMC_EINVAL);
    assert_null(x);
}

/* In a child with its own mount namespace and a 6 MiB tmpfs on /dev/shm
 * (a container's small /dev/shm): a cache larger than the room left is
 * refused at creation with SHMC_ENOSPC and leaves nothing behind; one that
 * fits is written all over, evicting, without a SIGBUS.  Exit 77: the
 * namespace or mount is not allowed here (not root). */
static int small_dev_shm(void *arg)
{
    const char *name = arg;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=6m") != 0)
        return 77;
    shmc_t *c = NULL;
    shmc_status st = shmc_open(name, &(shmc_options){.size = 64u << 20}, &c);
    if (st != SHMC_ENOSPC || c)
        return 1;
    struct stat sb;
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    if (stat(path, &sb) == 0)
        return 2; /* a refused creation leaves nothing */
    /* 8 MiB: more than the 6 MiB tmpfs holds, though it is sparse at first */
    st = shmc_open(name, &(shmc_options){.size = 8u << 20, .max_value = 64u << 10, .slots = 16},
                   &c);
    if (st != SHMC_ENOSPC)
        return 3;
    st = shmc_open(name, &(shmc_options){.size = 5u << 20, .max_value = 16u << 10, .slots = 16},
                   &c);
    if (st != SHMC_OK)
        return 4;
    static uint8_t buf[16u << 10];
    for (uint32_t i = 0; i < 2000; i++) /* ~16 MiB written into 5 */
        if (tu_set_value(c, "f-", i, buf, 8000, 0, i, 0) != SHMC_OK)
            return 5;
    shmc_close(c);
    return shmc_destroy(name) == SHMC_OK ? 0 : 6;
}

static void test_no_room_in_dev_shm(void **state)
{
    fx *f = *state;
    pid_t p = tu_fork(small_dev_shm, f->name);
    assert_true(p > 0);
    int st = tu_wait(p, 60000);
    if (st == 77)
        skip(); /* needs CAP_SYS_ADMIN (CI runs as root) */
    if (st != 0)
        fail_msg("child: %s", st_name(st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_hostile_names),
        cmocka_unit_test_setup_teardown(test_attach_only_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_partial_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_layout_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_layout_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_half, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_100_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_user_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grown_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_pid_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_mutex_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_initialised_reinit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_reinit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_initialised_junk_other_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_inherits_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_inherits_unused_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_room_in_dev_shm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefault, setup, teardown),
    };
    return cmocka_run_group_tests_name("shmcache segments", tests, NULL, NULL);
}
