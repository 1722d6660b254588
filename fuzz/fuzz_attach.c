/*
 * fuzz_attach.c — attach to a damaged segment file and use it.
 *
 * Once per process a small template cache is built for real: items of many
 * shapes (expired, with TTLs, counters, a key and a value at the limits,
 * overwritten and deleted ones), enough writes that storage segments go
 * through sealing, eviction and retirement, a lock and a fill held by a
 * thread that looks alive, and a lock and a fill held by a process that
 * died holding them (its robust mutexes marked OWNER_DIED by the kernel).
 * The file is copied into memory and the cache removed.
 *
 * Each input then describes a file derived from that image, written to
 * /dev/shm under a name of this process:
 *   data[0] & 7 in 0..5  patch mode: the rest of the input is a list of
 *                        patches (region, offset, bytes or a chosen word)
 *                        applied to the template image, so that mutations
 *                        reach the header, the slot table, the stripe
 *                        locks, the lock table, the heads, the segment
 *                        table, the index and the items alike;
 *   6                    header mode: the input overlays the first bytes of
 *                        the image (the header page);
 *   7                    raw mode: the input is the whole file.
 * data[1] picks the open options and how much the run writes.
 *
 * shmc_open must refuse the file with one of its documented statuses or
 * attach; when it attaches, every public call is made on the damaged cache
 * (reads, writes, counters, conditional writes, batches, locks, fills,
 * introspection, verify, flush, eviction-heavy writes).  None may crash,
 * hang, read or write out of bounds (ASan) or return a status its
 * documentation does not allow (FZ_DAMAGE aside, see fuzz.h).
 *
 * White-box: lib/layout.h is included only to aim patches at regions.
 */
#include "fuzz.h"
#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_MAX_KEY 100u
#define T_MAX_VALUE (16u << 10)
static const shmc_options T_OPTS = {
    .size = 1u << 20, .max_key = T_MAX_KEY, .max_value = T_MAX_VALUE, .slots = 8, .locks = 16,
};

enum { R_FILE, R_HDR, R_SLOTS, R_STRIPES, R_COORD, R_HEADS, R_SEGS, R_INDEX, R_DATA, R_COUNT };

static struct {
    bool ready;
    uint8_t *img;           /* the template file */
    size_t size;
    uint64_t start[R_COUNT], len[R_COUNT];
    uint8_t *work;          /* the image being patched */
    char name[64];          /* this process's segment name */
    char path[96];
} T;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_attach: %s (errno %d)\n", what, errno);
    abort();
}

/* ---- the template ---- */

static void pattern(uint8_t *buf, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(seed * 31u + i * 7u);
}

static void populate(shmc_t *c)
{
    static uint8_t buf[T_MAX_VALUE];
    char k[64];
    /* More than the storage holds: segments are sealed, evicted, retired. */
    for (uint32_t i = 0; i < 500; i++) {
        int kl = snprintf(k, sizeof k, "sweep%u", i);
        pattern(buf, 2000, i);
        if (shmc_set(c, k, (size_t)kl, buf, 2000, i, i % 3 ? 0 : 3600000) != SHMC_OK)
            die("template: sweep set");
        if (i % 7 == 0) { /* read: a second chance at eviction */
            size_t vl;
            (void)shmc_get(c, k, (size_t)kl, buf, sizeof buf, &vl, NULL);
        }
    }
    for (uint32_t i = 0; i < 300; i++) {
        int kl = snprintf(k, sizeof k, "k%u", i);
        size_t vl = (i * 37u) % 700u;
        pattern(buf, vl, i);
        uint64_t ttl = i % 5 == 0 ? 1 : i % 5 == 1 ? 3600000 : 0;
        if (shmc_set(c, k, (size_t)kl, buf, vl, i, ttl) != SHMC_OK)
            die("template: set");
    }
    for (uint32_t i = 0; i < 60; i++) { /* dead bytes */
        int kl = snprintf(k, sizeof k, "k%u", i);
        (void)shmc_set(c, k, (size_t)kl, "over", 4, 7, 0);
        kl = snprintf(k, sizeof k, "k%u", 100 + i);
        (void)shmc_delete(c, k, (size_t)kl);
    }
    uint64_t r;
    if (shmc_incr(c, "ctr", 3, 1, 41, 0, SHMC_INCR_CREATE, &r) != SHMC_OK ||
        shmc_incr(c, "ctr", 3, 1, 0, 0, 0, &r) != SHMC_OK ||
        shmc_incr(c, "bctr", 4, 5, 7, 0, SHMC_INCR_CREATE | SHMC_INCR_BINARY, &r) != SHMC_OK ||
        shmc_set(c, "num", 3, "18446744073709551615", 20, 0, 0) != SHMC_OK ||
        shmc_set(c, "n\0ul", 4, "\0\0", 2, 0, 0) != SHMC_OK ||
        shmc_set(c, "e", 1, "", 0, 0, 0) != SHMC_OK)
        die("template: counters");
    static uint8_t key[T_MAX_KEY];
    memset(key, 'M', sizeof key);
    pattern(buf, T_MAX_VALUE, 99);
    if (shmc_set(c, key, T_MAX_KEY, buf, T_MAX_VALUE, 0xffffffffu, 0) != SHMC_OK)
        die("template: limits");
}

typedef struct tmpl_sync {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int phase;              /* 1: the live holder holds; 2: the snapshot is taken */
    int err;
} tmpl_sync;

static void sync_set(tmpl_sync *s, int phase)
{
    pthread_mutex_lock(&s->m);
    s->phase = phase;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
}

static void sync_wait(tmpl_sync *s, int phase)
{
    pthread_mutex_lock(&s->m);
    while (s->phase < phase)
        pthread_cond_wait(&s->cv, &s->m);
    pthread_mutex_unlock(&s->m);
}

/* A thread that builds the cache, then holds a lock and leads a fill while
 * the snapshot is taken: in every copy they look held by a live thread. */
static void *live_holder(void *p)
{
    tmpl_sync *s = p;
    shmc_t *c = NULL;
    shmc_options o = T_OPTS;
    o.flags = SHMC_OPEN_CREATE_ONLY;
    if (shmc_open(T.name, &o, &c) != SHMC_OK)
        die("template: shmc_open");
    populate(c);
    uint64_t tok;
    void *v = NULL;
    size_t vl;
    shmc_fill f;
    shmc_fill_opts fo = {.fill_ms = 3600000};
    if (shmc_lock_acquire(c, "lock-live", 9, 0, 3600000, &tok) != SHMC_OK ||
        shmc_lock_acquire(c, "lock-live-nolease", 17, 0, 0, &tok) != SHMC_OK ||
        shmc_fill_begin(c, "fill-live", 9, &fo, &v, &vl, NULL, &f) != SHMC_LEADER)
        die("template: live holds");
    /* a failed fill whose error is still served to callers */
    shmc_fill fe;
    shmc_fill_opts eo = {.fill_ms = 3600000};
    if (shmc_fill_begin(c, "fill-err", 8, &eo, &v, &vl, NULL, &fe) != SHMC_LEADER ||
        shmc_fill_abort(c, &fe, 42, "template failure", 3600000) != SHMC_OK)
        die("template: fill error");
    sync_set(s, 1);
    sync_wait(s, 2);
    shmc_fill_abort(c, &f, 1, NULL, 0);
    shmc_close(c);
    return NULL;
}

/* A process that takes locks and leads a fill, then dies holding them. */
static void dead_holder(void)
{
    shmc_t *c = NULL;
    if (shmc_open(T.name, NULL, &c) != SHMC_OK)
        _exit(2);
    uint64_t tok;
    void *v = NULL;
    size_t vl;
    shmc_fill f;
    shmc_fill_opts fo = {.fill_ms = 3600000};
    if (shmc_set(c, "child-key", 9, "from the dead", 13, 1, 0) != SHMC_OK ||
        shmc_lock_acquire(c, "lock-dead", 9, 0, 0, &tok) != SHMC_OK ||
        shmc_lock_acquire(c, "lock-dead-lease", 15, 0, 3600000, &tok) != SHMC_OK ||
        shmc_fill_begin(c, "fill-dead", 9, &fo, &v, &vl, NULL, &f) != SHMC_LEADER)
        _exit(3);
    raise(SIGKILL);
    _exit(4);
}

static void build_template(void)
{
    snprintf(T.name, sizeof T.name, "shmcfz-attach-%ld", (long)getpid());
    snprintf(T.path, sizeof T.path, "/dev/shm/%s", T.name);
    (void)shmc_destroy(T.name);
    tmpl_sync s = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    if (pthread_create(&th, NULL, live_holder, &s) != 0)
        die("pthread_create");
    sync_wait(&s, 1);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        dead_holder();
    int ws;
    if (waitpid(pid, &ws, 0) != pid || !WIFSIGNALED(ws))
        die("template: the dead holder did not die as planned");
    int fd = open(T.path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die("template: open");
    T.size = (size_t)st.st_size;
    T.img = malloc(T.size);
    T.work = malloc(T.size);
    if (!T.img || !T.work || pread(fd, T.img, T.size, 0) != (ssize_t)T.size)
        die("template: read");
    close(fd);
    sync_set(&s, 2);
    pthread_join(th, NULL);
    (void)shmc_destroy(T.name);

    shmc_hdr h;
    memcpy(&h, T.img, sizeof h);
    const uint64_t starts[R_COUNT] = {0, 0, h.off_slots, h.off_stripes, h.off_coord,
                                      h.off_heads, h.off_segs, h.off_index, h.off_data};
    for (int r = 0; r < R_COUNT; r++)
        T.start[r] = starts[r];
    T.len[R_FILE] = T.size;
    T.len[R_HDR] = SHMC_HDR_SIZE;
    for (int r = R_SLOTS; r < R_DATA; r++)
        T.len[r] = T.start[r + 1] - T.start[r];
    T.len[R_DATA] = h.data_bytes;
    if (getenv("SHMC_FUZZ_VERBOSE")) {
        fprintf(stderr, "template: %zu bytes, %u segments of %llu bytes\n", T.size, h.nsegs,
                (unsigned long long)h.seg_size);
        for (uint32_t i = 0; i < h.nsegs; i++) {
            shmc_segmeta m;
            memcpy(&m, T.img + h.off_segs + i * sizeof m, sizeof m);
            fprintf(stderr, "  seg %u: state %u wpos %llu\n", i,
                    (unsigned)sw_state(atomic_load(&m.state)),
                    (unsigned long long)atomic_load(&m.wpos));
        }
    }
    T.ready = true;
}

/* ---- writing the file ---- */

static void write_file(const uint8_t *buf, size_t n)
{
    (void)unlink(T.path);
    int fd = open(T.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)n) != 0)
        die("write_file: create");
    /* Only the pages that hold something: most of the image is zero. */
    static const uint8_t zero[4096];
    for (size_t off = 0; off < n; off += sizeof zero) {
        size_t k = n - off < sizeof zero ? n - off : sizeof zero;
        if (memcmp(buf + off, zero, k) != 0 && pwrite(fd, buf + off, k, (off_t)off) != (ssize_t)k)
            die("write_file: pwrite");
    }
    close(fd);
}

/* Words worth trying anywhere: limits, sizes of this layout, item headers,
 * state words, index words, robust-futex bits. */
static uint64_t interesting(uint8_t sel)
{
    const shmc_hdr *h = (const shmc_hdr *)T.img;
    switch (sel % 32) {
    case 0: return 0;
    case 1: return 1;
    case 2: return UINT64_MAX;
    case 3: return UINT64_MAX - 7;
    case 4: return 1ull << 63;
    case 5: return INT64_MAX;
    case 6: return h->seg_size;
    case 7: return h->seg_size - 8;
    case 8: return h->data_bytes;
    case 9: return h->data_bytes / 8 + 1;       /* index loc just past storage */
    case 10: return h->data_bytes / 8;          /* the last loc inside */
    case 11: return h->nsegs;
    case 12: return h->nsegs + 1ull;
    case 13: return h->nslots;
    case 14: return h->nslots + 1ull;
    case 15: return h->ncoord;
    case 16: return h->ncoord + 1ull;
    /* item headers (layout.h, item.h): fmt, then klen and vlen */
    case 17: return ITEM_FMT_MARK | (uint64_t)T_MAX_KEY << 8;   /* narrow: fmt + klen */
    case 18: return ITEM_FMT_MARK | ITEM_FMT_WIDE | (uint64_t)T_MAX_KEY << 16 |
                    (uint64_t)T_MAX_VALUE << 32;                /* wide: fmt, klen, vlen */
    case 19: return ITEM_FMT_MARK | ITEM_FMT_WIDE | (uint64_t)(T_MAX_KEY + 1) << 16;
    case 20: return sw_make(SEG_OPEN, 0);
    case 21: return sw_make(SEG_EVICTING, owner_make(1, 0));      /* owner: slot 0, gen 1 */
    case 22: return sw_make(SEG_RESERVED, 0xffff);
    case 23: return sw_make(SEG_SEALING, 1);
    case 24: return 0x40000000u;                 /* FUTEX_OWNER_DIED */
    case 25: return 0x80000000u;                 /* FUTEX_WAITERS */
    case 26: return 0xc0000000u | 1;
    case 27: return 0xffffull;                   /* a holder slot out of range */
    case 28: return (uint64_t)T_MAX_VALUE;
    case 29: return (uint64_t)T_MAX_VALUE + 1;
    case 30: return iw_make(0xffff, 0);          /* index word: any tag, loc 1 */
    default: return 1ull << 44;
    }
}

/* Applies the patch list in `in` to T.work. */
static void apply_patches(fz_in *in)
{
    unsigned n = 0;
    while (fz_more(in) && n++ < 64) {
        uint8_t region = fz_u8(in) % R_COUNT;
        uint32_t rel = fz_u24(in);
        uint8_t lk = fz_u8(in);
        uint64_t len = T.len[region];
        if (!len)
            continue;
        uint64_t off = T.start[region] + rel % len;
        unsigned kind = lk >> 4, k = (lk & 15u) + 1;
        if (kind <= 9) {                        /* raw bytes */
            uint8_t b[16];
            size_t got = fz_bytes(in, b, k);
            for (size_t i = 0; i < got && off + i < T.size; i++)
                T.work[off + i] = b[i];
        } else if (kind <= 13) {                /* a word, 8-aligned */
            off &= ~7ull;
            uint64_t v = kind <= 11 ? interesting(fz_u8(in)) : fz_u64(in);
            if (kind == 11)
                v += k - 8;                     /* near the interesting value */
            if (off + 8 <= T.size)
                memcpy(T.work + off, &v, 8);
        } else if (kind == 14) {                /* copy bytes from elsewhere */
            uint64_t src = fz_u24(in) % T.size;
            for (unsigned i = 0; i < k && off + i < T.size && src + i < T.size; i++)
                T.work[off + i] = T.img[src + i];
        } else {                                /* flip a bit */
            T.work[off] ^= (uint8_t)(1u << (k & 7));
        }
    }
}

/* ---- using the attached cache ---- */

/* The attached cache's parameters.  A damaged header can describe another
 * cache that still matches the file (other max_key or max_value), and a
 * segment that was not READY is rebuilt with the opener's options: then the
 * template's keys and values may be over the limits, and EKEYLEN / EVALLEN
 * are right answers too. */
static shmc_info CI;
static uint64_t LIMITS;

#define ALL_GET (FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_EBUFSIZE) | FZ_DAMAGE | \
                 LIMITS)
#define ALL_SET (FZ_BIT(SHMC_OK) | FZ_DAMAGE | LIMITS)
#define ALL_COND (ALL_SET | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_EXISTS) | FZ_BIT(SHMC_STALE))
#define ALL_NUM (ALL_SET | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_ENOTNUM))
#define ALL_LOCK (FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_EBUSY) | FZ_BIT(SHMC_ETIMEDOUT) | \
                  FZ_BIT(SHMC_ETABLEFULL) | FZ_BIT(SHMC_EHOLDS) | FZ_DAMAGE | LIMITS)
#define ALL_OWNER (FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_ENOTOWNER) | FZ_DAMAGE | LIMITS)
#define ALL_FILL (FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_LEADER) | FZ_BIT(SHMC_EFILL) | ALL_LOCK)

typedef struct tkey {
    const char *k;
    size_t n;
} tkey;

static const tkey KEYS[] = {
    {"k1", 2}, {"k2", 2}, {"k5", 2}, {"k7", 2}, {"k99", 3}, {"k120", 4}, {"k250", 4},
    {"k299", 4}, {"sweep499", 8}, {"sweep3", 6}, {"ctr", 3}, {"bctr", 4}, {"num", 3},
    {"n\0ul", 4}, {"e", 1}, {"child-key", 9}, {"fill-live", 9}, {"fill-dead", 9},
    {"fill-err", 8}, {"absent", 6},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

static const tkey LOCKS[] = {
    {"lock-live", 9}, {"lock-live-nolease", 17}, {"lock-dead", 9}, {"lock-dead-lease", 15},
    {"lock-new", 8},
};
#define NLOCKS (sizeof LOCKS / sizeof LOCKS[0])

static int32_t fill_cb(void *ctx, const void *key, size_t klen, shmc_fill_out *out)
{
    (void)key;
    unsigned how = *(unsigned *)ctx;
    if (how % 3 == 0) {
        snprintf(out->message, sizeof out->message, "callback fails");
        return 5;
    }
    out->vlen = how % 3 == 1 ? klen : T_MAX_VALUE + 1; /* the second: too long to store */
    out->val = malloc(out->vlen);
    if (!out->val)
        return 6;
    memset(out->val, 'f', out->vlen);
    return 0;
}

static int keys_cb(void *ctx, const shmc_key_info *k)
{
    unsigned *left = ctx;
    FZ_CHECK(k->klen >= 1 && k->klen <= CI.max_key && k->vlen <= CI.max_value,
             "keys_iter: klen %zu vlen %zu", k->klen, k->vlen);
    /* Touch every byte of the copy handed to us (ASan checks the bounds). */
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < k->klen; i++)
        sum ^= ((const uint8_t *)k->key)[i];
    (void)sum;
    return --*left == 0;
}

static void check_info(shmc_t *c)
{
    shmc_info in;
    fz_expect("shmc_info_get", shmc_info_get(c, &in), FZ_BIT(SHMC_OK));
    FZ_CHECK(memcmp(&in, &CI, sizeof in) == 0, "the cache's parameters changed");
    shmc_stats st;
    fz_expect("shmc_stats_get", shmc_stats_get(c, &st), FZ_BIT(SHMC_OK));
}

static void reads(shmc_t *c, unsigned seed)
{
    static uint8_t buf[T_MAX_VALUE];
    for (size_t i = 0; i < NKEYS; i++) {
        const tkey *k = &KEYS[(i + seed) % NKEYS];
        size_t vl = 0;
        uint32_t fl;
        shmc_status s = shmc_get(c, k->k, k->n, buf, sizeof buf, &vl, &fl);
        fz_expect("shmc_get", s, ALL_GET);
        /* on a cache whose max_value the header could have raised, the
         * value still fits what the library reports */
        FZ_CHECK(s != SHMC_OK || (vl <= sizeof buf && vl <= CI.max_value), "get: %zu bytes", vl);
        s = shmc_get(c, k->k, k->n, buf, 3, &vl, NULL);
        fz_expect("shmc_get (small buffer)", s, ALL_GET);
        s = shmc_get(c, k->k, k->n, NULL, 0, &vl, NULL);
        fz_expect("shmc_get (size query)", s, ALL_GET);
        void *v = NULL;
        s = shmc_get_alloc(c, k->k, k->n, &v, &vl, &fl);
        fz_expect("shmc_get_alloc", s, ALL_GET & ~FZ_BIT(SHMC_EBUFSIZE));
        if (s == SHMC_OK) {
            volatile uint8_t x = 0;
            for (size_t j = 0; j < vl; j++)
                x ^= ((uint8_t *)v)[j];
            (void)x;
        }
        free(v);
        uint64_t cas, ttl;
        fz_expect("shmc_gets", shmc_gets(c, k->k, k->n, buf, sizeof buf, &vl, NULL, &cas), ALL_GET);
        fz_expect("shmc_exists", shmc_exists(c, k->k, k->n), ALL_GET);
        fz_expect("shmc_ttl", shmc_ttl(c, k->k, k->n, &ttl), ALL_GET);
    }
    shmc_get_req reqs[8];
    static uint8_t bufs[8][64];
    for (unsigned i = 0; i < 8; i++) {
        const tkey *k = &KEYS[(i * 3 + seed) % NKEYS];
        reqs[i] = (shmc_get_req){.key = k->k, .klen = k->n, .buf = bufs[i], .buflen = 64};
    }
    fz_expect("shmc_get_many", shmc_get_many(c, reqs, 8), FZ_BIT(SHMC_OK) | FZ_DAMAGE);
    for (unsigned i = 0; i < 8; i++)
        fz_expect("shmc_get_many (request)", reqs[i].status, ALL_GET);
}

static void writes(shmc_t *c, unsigned seed)
{
    static uint8_t buf[T_MAX_VALUE];
    pattern(buf, sizeof buf, seed);
    uint64_t r, cas = 0, tok;
    size_t vl, cur_vl;
    uint8_t cur[32];
    const tkey *k = &KEYS[seed % NKEYS];
    fz_expect("shmc_set", shmc_set(c, "new", 3, buf, 10, 1, 0), ALL_SET);
    fz_expect("shmc_set (max)", shmc_set(c, buf, T_MAX_KEY, buf, T_MAX_VALUE, 2, 5000), ALL_SET);
    fz_expect("shmc_set", shmc_set(c, k->k, k->n, buf, seed % 900, 3, seed & 1), ALL_SET);
    fz_expect("shmc_add", shmc_add(c, k->k, k->n, "a", 1, 0, 0), ALL_COND);
    fz_expect("shmc_replace", shmc_replace(c, "k2", 2, "r", 1, 0, 0), ALL_COND);
    shmc_status s = shmc_gets(c, "k7", 2, buf, sizeof buf, &vl, NULL, &cas);
    fz_expect("shmc_gets", s, ALL_GET);
    if (s == SHMC_OK && cas)
        fz_expect("shmc_cas", shmc_cas(c, "k7", 2, "c", 1, 0, 0, cas, &tok), ALL_COND);
    fz_expect("shmc_cas (stale)", shmc_cas(c, "k5", 2, "c", 1, 0, 0, 12345, &tok), ALL_COND);
    fz_expect("shmc_cas_value",
              shmc_cas_value(c, "k1", 2, "over", 4, "x", 1, 0, 0, cur, sizeof cur, &cur_vl),
              ALL_COND);
    fz_expect("shmc_cas_value (absent)",
              shmc_cas_value(c, "k99", 3, NULL, 0, "y", 1, 0, 0, cur, sizeof cur, &cur_vl),
              ALL_COND);
    fz_expect("shmc_append", shmc_append(c, "k250", 4, "++", 2), ALL_COND);
    fz_expect("shmc_prepend", shmc_prepend(c, "num", 3, "--", 2), ALL_COND | FZ_BIT(SHMC_EVALLEN));
    fz_expect("shmc_append (to max)", shmc_append(c, buf, T_MAX_KEY, "+", 1),
              ALL_COND | FZ_BIT(SHMC_EVALLEN));
    fz_expect("shmc_incr", shmc_incr(c, "ctr", 3, 1, 0, 0, 0, &r), ALL_NUM);
    fz_expect("shmc_decr", shmc_decr(c, "bctr", 4, 9, 0, 0, 0, &r), ALL_NUM);
    fz_expect("shmc_incr (num)", shmc_incr(c, "num", 3, 1, 0, 0, 0, &r), ALL_NUM);
    fz_expect("shmc_incr (create)",
              shmc_incr(c, "fresh-ctr", 9, 1, 5, 60000, SHMC_INCR_CREATE | (seed & 2), &r), ALL_NUM);
    fz_expect("shmc_incr (plain)", shmc_incr(c, k->k, k->n, 1, 0, 0, 0, &r), ALL_NUM);
    fz_expect("shmc_touch", shmc_touch(c, "k3", 2, 100000), ALL_COND);
    void *v = NULL;
    s = shmc_get_and_touch(c, "k8", 2, 0, &v, &vl, NULL);
    fz_expect("shmc_get_and_touch", s, ALL_COND);
    free(v);
    fz_expect("shmc_delete", shmc_delete(c, "k9", 2), ALL_COND);
    s = shmc_gets(c, "k11", 3, NULL, 0, &vl, NULL, &cas);
    if (s == SHMC_OK && cas)
        fz_expect("shmc_delete_cas", shmc_delete_cas(c, "k11", 3, cas), ALL_COND);
    fz_expect("shmc_delete_value", shmc_delete_value(c, "k1", 2, "over", 4), ALL_COND);
    shmc_set_req sr[4];
    shmc_key_req dr[4];
    for (unsigned i = 0; i < 4; i++) {
        const tkey *kk = &KEYS[(seed + i * 5) % NKEYS];
        sr[i] = (shmc_set_req){.key = kk->k, .klen = kk->n, .val = buf, .vlen = 100 * i};
        dr[i] = (shmc_key_req){.key = KEYS[(seed + i * 7) % NKEYS].k,
                               .klen = KEYS[(seed + i * 7) % NKEYS].n};
    }
    fz_expect("shmc_set_many", shmc_set_many(c, sr, 4), ALL_SET);
    fz_expect("shmc_delete_many", shmc_delete_many(c, dr, 4), FZ_BIT(SHMC_OK) | FZ_DAMAGE);
    for (unsigned i = 0; i < 4; i++)
        fz_expect("shmc_delete_many (request)", dr[i].status, ALL_COND);
}

static void locks_and_fills(shmc_t *c, unsigned seed)
{
    uint64_t tok[NLOCKS] = {0};
    for (size_t i = 0; i < NLOCKS; i++) {
        const tkey *l = &LOCKS[(i + seed) % NLOCKS];
        shmc_status s = (seed >> i) & 1 ? shmc_lock_try(c, l->k, l->n, 1000, &tok[i])
                                        : shmc_lock_acquire(c, l->k, l->n, 2, 0, &tok[i]);
        fz_expect("shmc_lock_acquire", s, ALL_LOCK);
        if (s == SHMC_OK) {
            FZ_CHECK(tok[i] != 0, "a lock token of 0");
            fz_expect("shmc_lock_extend", shmc_lock_extend(c, l->k, l->n, tok[i], 500), ALL_OWNER);
        }
    }
    for (size_t i = 0; i < NLOCKS; i++) {
        const tkey *l = &LOCKS[(i + seed) % NLOCKS];
        if (tok[i] && (seed + i) % 3)
            fz_expect("shmc_lock_release", shmc_lock_release(c, l->k, l->n, tok[i]), ALL_OWNER);
    }
    uint64_t old;
    fz_expect("shmc_lock_force_release", shmc_lock_force_release(c, "lock-live", 9, &old),
              FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_EBUSY) | FZ_DAMAGE);
    fz_expect("shmc_lock_try (after force)", shmc_lock_try(c, "lock-live", 9, 0, &old), ALL_LOCK);

    static const tkey fills[] = {{"fill-live", 9}, {"fill-dead", 9}, {"fill-err", 8},
                                 {"fill-new", 8}, {"k4", 2}};
    for (size_t i = 0; i < sizeof fills / sizeof fills[0]; i++) {
        const tkey *k = &fills[(i + seed) % (sizeof fills / sizeof fills[0])];
        shmc_fill f;
        shmc_fill_opts fo = {.wait_ms = 2, .fill_ms = 1000, .refresh_ms = (seed & 4) ? 1000000 : 0};
        void *v = NULL;
        size_t vl = 0;
        shmc_status s = shmc_fill_begin(c, k->k, k->n, &fo, &v, &vl, NULL, &f);
        fz_expect("shmc_fill_begin", s, ALL_FILL);
        if (s == SHMC_LEADER) {
            FZ_CHECK(v == NULL, "a leader got a value");
            if ((seed + i) & 1)
                fz_expect("shmc_fill_finish", shmc_fill_finish(c, &f, "filled", 6, 0, 0),
                          ALL_OWNER);
            else
                fz_expect("shmc_fill_abort", shmc_fill_abort(c, &f, 9, "no", 10), ALL_OWNER);
        }
        free(v);
        unsigned how = (unsigned)(seed + i);
        shmc_fill ef;
        s = shmc_get_or_fill(c, k->k, k->n, fill_cb, &how, &fo, &v, &vl, NULL, &ef);
        fz_expect("shmc_get_or_fill", s, (ALL_FILL & ~FZ_BIT(SHMC_LEADER)) | FZ_BIT(SHMC_EVALLEN));
        if (s == SHMC_OK)
            free(v);
    }
}

static void introspect(shmc_t *c, unsigned seed)
{
    shmc_proc_info procs[4];
    shmc_lock_info locks[4];
    size_t n;
    fz_expect("shmc_procs", shmc_procs(c, (int)(seed & 1), procs, 4, &n), FZ_BIT(SHMC_OK));
    for (size_t i = 0; i < n && i < 4; i++)
        FZ_CHECK(procs[i].slot < CI.slots && procs[i].holds <= SHMC_MAX_HOLDS, "procs: slot %u holds %u",
                 procs[i].slot, procs[i].holds);
    fz_expect("shmc_locks_list", shmc_locks_list(c, (int)(seed & 2), locks, 4, &n), FZ_BIT(SHMC_OK));
    for (size_t i = 0; i < n && i < 4; i++)
        FZ_CHECK(locks[i].entry < CI.locks && (!locks[i].held || locks[i].holder_slot < CI.slots),
                 "locks: entry %u holder %u", locks[i].entry, locks[i].holder_slot);
    uint64_t cursor = 0;
    for (int round = 0; round < 4; round++) {
        unsigned left = 40;
        fz_expect("shmc_keys_iter", shmc_keys_iter(c, &cursor, keys_cb, &left),
                  FZ_BIT(SHMC_OK) | FZ_DAMAGE);
        if (!cursor)
            break;
    }
}

static void verify(shmc_t *c)
{
    shmc_verify_report rep;
    shmc_status s = shmc_verify(c, &rep);
    /* Never EINVAL here: that would mean an earlier call left this thread
     * inside a read section. */
    fz_expect("shmc_verify", s, FZ_BIT(SHMC_OK) | FZ_DAMAGE);
    FZ_CHECK(memchr(rep.first_error, 0, sizeof rep.first_error) != NULL, "unterminated report");
}

/* Enough writes to fill storage `rounds` times over: allocation, sealing,
 * eviction and reclamation all run over whatever the damage left. */
static void churn(shmc_t *c, unsigned rounds, unsigned seed)
{
    static uint8_t buf[4096];
    pattern(buf, sizeof buf, seed);
    unsigned n = rounds * 300;
    for (unsigned i = 0; i < n; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "churn%u", (i * 7u + seed) % 500u);
        shmc_status s = shmc_set(c, k, (size_t)kl, buf, 1000 + (i % 5) * 600, 0, i % 4 ? 0 : 1);
        fz_expect("shmc_set (churn)", s, ALL_SET);
        if (s != SHMC_OK)
            break; /* the damage stops writes (e.g. no usable segment): once is enough */
        if (i % 16 == 0) {
            size_t vl;
            fz_expect("shmc_get (churn)", shmc_get(c, k, (size_t)kl, buf, sizeof buf, &vl, NULL),
                      ALL_GET);
        }
    }
}

static void use_cache(shmc_t *c, uint8_t ctl, unsigned seed)
{
    fz_expect("shmc_info_get", shmc_info_get(c, &CI), FZ_BIT(SHMC_OK));
    LIMITS = CI.max_key == T_MAX_KEY && CI.max_value == T_MAX_VALUE
                 ? 0 : FZ_BIT(SHMC_EKEYLEN) | FZ_BIT(SHMC_EVALLEN);
    check_info(c);
    reads(c, seed);
    writes(c, seed);
    locks_and_fills(c, seed);
    introspect(c, seed);
    verify(c);
    churn(c, ctl >> 6, seed);
    if (ctl & 0x20)
        fz_expect("shmc_flush", shmc_flush(c), FZ_BIT(SHMC_OK) | FZ_DAMAGE);
    reads(c, seed + 1);
    verify(c);
    check_info(c);
}

#define OPEN_ERRORS (FZ_BIT(SHMC_EINVAL) | FZ_BIT(SHMC_ETOOSMALL) | FZ_BIT(SHMC_ENOENT) | \
                     FZ_BIT(SHMC_EACCES) | FZ_BIT(SHMC_EVERSION) | FZ_BIT(SHMC_EMISMATCH) | \
                     FZ_BIT(SHMC_ECORRUPT) | FZ_BIT(SHMC_ENAMESPACE) | \
                     FZ_BIT(SHMC_ETIMEDOUT) | FZ_BIT(SHMC_ESYS))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!T.ready)
        build_template();
    fz_in in;
    fz_init(&in, data, size);
    uint8_t mode = fz_u8(&in) & 7;
    uint8_t ctl = fz_u8(&in);
    unsigned seed = fz_u8(&in);
    size_t raw_len = fz_left(&in);
    if (mode == 7) {
        write_file(data + in.pos, raw_len);
    } else {
        memcpy(T.work, T.img, T.size);
        if (mode == 6)
            fz_bytes(&in, T.work, SHMC_HDR_SIZE);
        else
            apply_patches(&in);
        write_file(T.work, T.size);
    }

    /* shmc_peek reads the header without attaching. */
    shmc_peek_info pk;
    fz_expect("shmc_peek", shmc_peek(T.name, &pk),
              FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_EVERSION) | FZ_BIT(SHMC_ECORRUPT));

    /* The template's own parameters (so that a segment that is not READY
     * is rebuilt small), attach-only, or whatever the segment has. */
    shmc_options o = T_OPTS;
    switch (ctl & 3) {
    case 1:
        /* (Not on an empty file: attach-only gives a creator that may be
         * between its open and its truncate 5 s, by design.) */
        if (mode != 7 || raw_len > 0)
            o.flags = SHMC_OPEN_ATTACH_ONLY;
        break;
    case 2: o.size = 0, o.max_key = 0, o.slots = 0, o.locks = 0; break;
    case 3: o.max_key = T_MAX_KEY - 1; break; /* a mismatch, unless the header agrees */
    default: break;
    }
    shmc_t *c = (shmc_t *)&o;
    shmc_status s = shmc_open(T.name, &o, &c);
    if (s == SHMC_OK) {
        FZ_CHECK(c != NULL, "shmc_open succeeded without a handle");
        use_cache(c, ctl, seed);
        fz_expect("shmc_close", shmc_close(c), FZ_BIT(SHMC_OK));
    } else {
        fz_expect("shmc_open", s, OPEN_ERRORS);
        FZ_CHECK(c == NULL, "shmc_open failed but left a handle");
    }
    (void)shmc_destroy(T.name);
    (void)unlink(T.path);
    return 0;
}
