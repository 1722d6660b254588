/*
 * segment.c — create, attach, validate, close and unlink the shm segment.
 *
 * Creation races: whoever holds flock(LOCK_EX) on the segment's fd may
 * initialise it; every user holds LOCK_SH for as long as its handle lives.
 * So a segment that is not READY while we hold LOCK_EX has no user at all:
 * its creator died mid-initialisation and we may initialise it afresh.
 * Attachers re-derive the whole layout from the creation parameters and
 * compare it field by field with the header: after that, the only offsets
 * ever read from shared memory are index words and item headers, and those
 * are bounds-checked at every use.
 */
#include "segment.h"
#include "coord.h"
#include "epoch.h"
#include "index.h"
#include "slots.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_SIZE (64ull << 20)
#define MIN_SIZE (1ull << 20)
#define MIN_DEFAULT_MAX_VALUE (64u << 10)
#define OPEN_DEADLINE_MS BOUND_MS(5000u)

static _Atomic uint64_t next_handle_id = 1;

shmc_status validate_name(const char *name, char *path, size_t pathlen)
{
    if (!name)
        return SHMC_EINVAL;
    size_t n = strnlen(name, SHMC_MAX_NAME + 1);
    if (n == 0 || n > SHMC_MAX_NAME || name[0] == '.')
        return SHMC_ENAME;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return SHMC_ENAME;
    }
    if (pathlen < n + 2)
        return SHMC_ENAME;
    path[0] = '/';
    memcpy(path + 1, name, n + 1);
    return SHMC_OK;
}

static const shmc_field_desc layout_fields[] = {SHMC_LAYOUT_DESCS};
static const uint64_t layout_constants[] = SHMC_LAYOUT_CONSTANTS;

/* Hash of everything whose change would make two builds disagree about the
 * segment: every field of every shared struct (name, type, offset, size),
 * the geometry rules, the packed words' widths, mutex size, byte order. */
uint64_t layout_hash(void)
{
    return shmc_layout_hash_of(layout_fields, sizeof layout_fields / sizeof layout_fields[0],
                               layout_constants,
                               sizeof layout_constants / sizeof layout_constants[0]);
}

/* The geometry of a segment: the header's G rows. */
#define GEOMETRY_FIELD(type, name) type name;
typedef struct layout {
    SHMC_HDR_GEOMETRY(GEOMETRY_FIELD)
} layout;
#undef GEOMETRY_FIELD

#define MAX_LOCKS (1u << 20)
#define MAX_ITEMS_LIMIT (1ull << 40)

/* Index buckets: for max_items items at a load of at most
 * SHMC_INDEX_LOAD_NUM/DEN, or (max_items 0) one way per
 * SHMC_INDEX_BYTES_PER_WAY bytes of storage. */
static uint64_t index_buckets(uint64_t max_items, uint64_t data)
{
    uint64_t ways = max_items ? (max_items * SHMC_INDEX_LOAD_DEN + SHMC_INDEX_LOAD_NUM - 1) /
                                    SHMC_INDEX_LOAD_NUM
                              : data / SHMC_INDEX_BYTES_PER_WAY;
    uint64_t nb = (ways + SHMC_BUCKET_WAYS - 1) / SHMC_BUCKET_WAYS;
    return nb < 2 ? 2 : nb;
}

/* Default lock/flight table: one entry per 64 KiB, within [64, 4096]. */
static uint32_t default_locks(uint64_t size)
{
    uint64_t n = size >> 16;
    return (uint32_t)(n < 64 ? 64 : n > 4096 ? 4096 : n);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

static shmc_status compute_layout(uint64_t size, uint32_t max_key, uint32_t max_value,
                                  uint32_t nslots, uint32_t ncoord, uint64_t max_items,
                                  layout *L)
{
    if (max_key == 0 || max_key > SHMC_MAX_KEY_LIMIT || max_value > SHMC_MAX_VALUE_LIMIT ||
        nslots == 0 || nslots > SHMC_MAX_SLOTS || size > (1ull << 46) || ncoord == 0 ||
        ncoord > MAX_LOCKS || max_items > MAX_ITEMS_LIMIT)
        return SHMC_EINVAL;
    if (size < MIN_SIZE)
        return SHMC_ETOOSMALL;
    memset(L, 0, sizeof *L);
    L->size = size;
    L->max_key = max_key;
    L->max_value = max_value;
    L->nslots = nslots;
    L->ncoord = ncoord;
    L->max_items = max_items;
    /* Segments: the eviction unit.  About size/128 each (fine-grained
     * eviction, cheap segment scans), within [64 KiB, 16 MiB], and never
     * smaller than the largest item. */
    uint64_t item_max = item_size_max(max_key, max_value);
    uint64_t want = size / SHMC_SEGS_TARGET;
    if (want > SHMC_MAX_SEG_SIZE)
        want = SHMC_MAX_SEG_SIZE;
    if (want < item_max)
        want = item_max;
    uint64_t seg = SHMC_MIN_SEG_SIZE;
    uint32_t shift = 16;
    while (seg < want) {
        seg <<= 1;
        shift++;
    }
    L->seg_size = seg;
    L->seg_shift = shift;
    L->off_slots = SHMC_HDR_SIZE;
    L->off_stripes = align_up(L->off_slots + (uint64_t)nslots * sizeof(shmc_slot), SHMC_CL);
    L->off_coord = L->off_stripes + SHMC_STRIPES * sizeof(shmc_stripe);
    L->off_heads = align_up(L->off_coord + (uint64_t)ncoord * sizeof(shmc_centry), SHMC_CL);
    /* A fixed index when sized by max_items, else one that grows with storage. */
    uint64_t fixed = L->off_heads + SHMC_HEAD_SLOTS * sizeof(shmc_head) + 2 * 4096 +
                     (max_items ? index_buckets(max_items, 0) * SHMC_BUCKET_WAYS * 8 : 0);
    if (size <= fixed)
        return SHMC_ETOOSMALL;
    uint64_t per_seg = seg + sizeof(shmc_segmeta) + SHMC_CL +
                       (max_items ? 0 : seg / SHMC_INDEX_BYTES_PER_WAY * 8);
    uint64_t nsegs = (size - fixed) / per_seg;
    for (; nsegs > 0; nsegs--) {
        uint32_t heads = nsegs >= 32 ? SHMC_MAX_HEADS : (nsegs >= 16 ? 2 : 1);
        uint64_t data = nsegs * seg;
        uint64_t nb = index_buckets(max_items, data);
        L->nheads = heads;
        L->off_segs = align_up(L->off_heads + SHMC_HEAD_SLOTS * sizeof(shmc_head), SHMC_CL);
        L->off_index = align_up(L->off_segs + nsegs * sizeof(shmc_segmeta), SHMC_CL);
        L->off_data = align_up(L->off_index + nb * SHMC_BUCKET_WAYS * 8, 4096);
        if (L->off_data + data + ITEM_GUARD <= size) {
            L->nsegs = (uint32_t)nsegs;
            L->nbuckets = nb;
            L->data_bytes = data;
            break;
        }
    }
    /* Enough segments for the open heads (and the main head), a victim and
     * retired memory. */
    if (L->nsegs < L->nheads + 5)
        return SHMC_ETOOSMALL;
    return SHMC_OK;
}

static uint64_t pid_namespace(void)
{
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) != 0)
        return 0;
    return (uint64_t)st.st_ino;
}

static shmc_status errno_status(int e)
{
    switch (e) {
    case ENOENT: return SHMC_ENOENT;
    case EEXIST: return SHMC_EEXIST;
    case EACCES:
    case EPERM: return SHMC_EACCES;
    case ENAMETOOLONG: return SHMC_ENAME;
    /* The name is taken by something that is not a segment: a symbolic
     * link (never followed: O_NOFOLLOW) or a directory. */
    case ELOOP:
    case EISDIR: return SHMC_ECORRUPT;
    case ENOSPC: return SHMC_ENOSPC;
    default: errno = e; return SHMC_ESYS;
    }
}

/* An open of the segment's name failed.  glibc's shm_open reports a
 * directory as EINVAL (the name itself was validated before). */
static shmc_status open_status(int e)
{
    return e == EINVAL ? SHMC_ECORRUPT : errno_status(e);
}

static void bind_handle(struct shmc *c, const layout *L, uint8_t *base)
{
    c->base = base;
    c->size = L->size;
    c->hdr = (shmc_hdr *)base;
    c->slots = (shmc_slot *)(base + L->off_slots);
    c->stripes = (shmc_stripe *)(base + L->off_stripes);
    c->coord = (shmc_centry *)(base + L->off_coord);
    c->heads = (shmc_head *)(base + L->off_heads);
    c->segs = (shmc_segmeta *)(base + L->off_segs);
    c->index = (_Atomic uint64_t *)(base + L->off_index);
    c->data = base + L->off_data;
    c->seg_size = L->seg_size;
    c->seg_shift = L->seg_shift;
    c->data_bytes = L->data_bytes;
    c->nbuckets = L->nbuckets;
    c->nsegs = L->nsegs;
    c->nslots = L->nslots;
    c->nheads = L->nheads;
    c->max_key = L->max_key;
    c->max_value = L->max_value;
    c->ncoord = L->ncoord;
}

/* Initialises a segment we hold LOCK_EX on; nobody else maps it. */
static shmc_status init_segment(int fd, const layout *L, uint32_t mode, uint8_t **basep)
{
    /* Truncating to 0 first discards whatever a dead creator left. */
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)L->size) != 0)
        return errno_status(errno);
    /* Reserve every page now.  A tmpfs with less room than the size (a full
     * /dev/shm, a container's 64 MiB one) would otherwise accept the size
     * and kill with SIGBUS whichever process first touches a page it cannot
     * supply.  Now that is SHMC_ENOSPC here, and no page fault ever fails. */
    int fe = posix_fallocate(fd, 0, (off_t)L->size);
    if (fe != 0)
        return errno_status(fe);
    (void)fchmod(fd, mode);
    uint8_t *base = mmap(NULL, L->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return errno_status(errno);
    shmc_hdr *h = (shmc_hdr *)base;
    atomic_store(&h->state, SHMC_STATE_INIT);
    h->magic = SHMC_MAGIC;
    h->layout_version = SHMC_LAYOUT_VERSION;
    h->hdr_size = SHMC_HDR_SIZE;
    h->layout_hash = layout_hash();
    h->pidns = pid_namespace();
#define STORE(type, name) h->name = L->name;
    SHMC_HDR_GEOMETRY(STORE)
#undef STORE
    h->hash_seed = random_seed();
    h->created_ms = now_ms();
    atomic_store(&h->epoch, 1);
    atomic_store(&h->seal_seq, 1);
    h->membarrier = membarrier_supported();
    int r = 0;
    shmc_slot *slots = (shmc_slot *)(base + L->off_slots);
    for (uint32_t i = 0; i < L->nslots && !r; i++) {
        r = robust_mutex_init(&slots[i].mtx);
        for (uint32_t k = 0; k < SHMC_HOLDS && !r; k++)
            r = hold_mutex_init(&slots[i].hold[k].m);
    }
    if (!r)
        r = robust_mutex_init(&h->coord_mtx);
    shmc_stripe *stripes = (shmc_stripe *)(base + L->off_stripes);
    for (uint32_t i = 0; i < SHMC_STRIPES && !r; i++)
        r = robust_mutex_init(&stripes[i].mtx);
    if (r) {
        munmap(base, L->size);
        errno = r;
        return SHMC_ESYS;
    }
    /* Segment metadata, index, heads and lock table are all-zero: FREE, empty,
     * none, unused. */
    *basep = base;
    return SHMC_OK;
}

/* Validates a READY header against the file and this build. */
static shmc_status check_header(const shmc_hdr *h, uint64_t fsize, layout *L)
{
    if (h->magic != SHMC_MAGIC)
        return SHMC_ECORRUPT;
    if (h->layout_version != SHMC_LAYOUT_VERSION || h->hdr_size != SHMC_HDR_SIZE ||
        h->layout_hash != layout_hash())
        return SHMC_EVERSION;
    if (h->size != fsize)
        return SHMC_ECORRUPT;
    uint64_t ns = pid_namespace();
    if (h->pidns && ns && h->pidns != ns)
        return SHMC_ENAMESPACE;
    if (compute_layout(h->size, h->max_key, h->max_value, h->nslots, h->ncoord, h->max_items,
                       L) != SHMC_OK)
        return SHMC_ECORRUPT;
    /* Every geometry field, re-derived, must match what the header says. */
#define DIFFERS(type, name) || L->name != h->name
    if (0 SHMC_HDR_GEOMETRY(DIFFERS))
        return SHMC_ECORRUPT;
#undef DIFFERS
    return SHMC_OK;
}

static shmc_status check_wanted(const layout *have, const shmc_options *o)
{
    if (o->size && o->size != have->size)
        return SHMC_EMISMATCH;
    if (o->max_key && o->max_key != have->max_key)
        return SHMC_EMISMATCH;
    if (o->max_value && o->max_value != have->max_value)
        return SHMC_EMISMATCH;
    if (o->slots && o->slots != have->nslots)
        return SHMC_EMISMATCH;
    if (o->locks && o->locks != have->ncoord)
        return SHMC_EMISMATCH;
    if (o->max_items && o->max_items != have->max_items)
        return SHMC_EMISMATCH;
    return SHMC_OK;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whether every mutex of a mapped segment is of the kind we initialise:
 * glibc acts on a mutex's kind word, and a damaged one takes it down paths
 * that crash or never return (see mutex_kind_ok). */
static bool mutexes_ok(const uint8_t *base, const layout *L)
{
    const shmc_slot *slots = (const shmc_slot *)(base + L->off_slots);
    for (uint32_t i = 0; i < L->nslots; i++) {
        if (!mutex_kind_ok(&slots[i].mtx, false))
            return false;
        for (uint32_t k = 0; k < SHMC_HOLDS; k++)
            if (!mutex_kind_ok(&slots[i].hold[k].m, true))
                return false;
    }
    const shmc_stripe *stripes = (const shmc_stripe *)(base + L->off_stripes);
    for (uint32_t i = 0; i < SHMC_STRIPES; i++)
        if (!mutex_kind_ok(&stripes[i].mtx, false))
            return false;
    return mutex_kind_ok(&((const shmc_hdr *)base)->coord_mtx, false);
}

/* Maps and validates a segment whose fd we hold LOCK_SH on. */
static shmc_status attach_segment(int fd, const shmc_options *o, layout *L, uint8_t **basep,
                                  bool *not_ready)
{
    struct stat st;
    *not_ready = false;
    if (fstat(fd, &st) != 0)
        return errno_status(errno);
    /* Not a segment (a FIFO, a device...): refused as such, and never taken
     * for an empty file to initialise (which would unlink it on failure). */
    if (!S_ISREG(st.st_mode))
        return SHMC_ECORRUPT;
    /* A creator truncates to 0 and then to the full size, so an empty file
     * is one whose creator died early; any other short file is damage. */
    if (st.st_size == 0) {
        *not_ready = true;
        return SHMC_ECORRUPT;
    }
    if ((uint64_t)st.st_size < SHMC_HDR_SIZE)
        return SHMC_ECORRUPT;
    shmc_hdr *h = mmap(NULL, SHMC_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return errno_status(errno);
    shmc_status s;
    if (atomic_load(&h->state) != SHMC_STATE_READY) {
        *not_ready = true;
        s = SHMC_ECORRUPT;
    } else {
        s = check_header(h, (uint64_t)st.st_size, L);
    }
    munmap(h, SHMC_HDR_SIZE);
    if (s != SHMC_OK)
        return s;
    s = check_wanted(L, o);
    if (s != SHMC_OK)
        return s;
    uint8_t *base = mmap(NULL, L->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return errno_status(errno);
    /* Re-check the header in the real mapping (it cannot change once READY,
     * but the file could have been replaced between the two maps). */
    layout L2;
    s = check_header((shmc_hdr *)base, L->size, &L2);
    if (s == SHMC_OK && !mutexes_ok(base, L))
        s = SHMC_ECORRUPT;
    if (s != SHMC_OK) {
        munmap(base, L->size);
        return s;
    }
    *basep = base;
    return SHMC_OK;
}

/* Checks the caller's options; *o is a copy with the defaults left 0. */
static shmc_status open_options(const shmc_options *opts, shmc_options *o)
{
    memset(o, 0, sizeof *o);
    if (opts)
        *o = *opts;
    if (o->reserved_ ||
        (o->flags & ~(SHMC_OPEN_CREATE_ONLY | SHMC_OPEN_ATTACH_ONLY | SHMC_OPEN_PREFAULT)) ||
        (o->flags & SHMC_OPEN_CREATE_ONLY && o->flags & SHMC_OPEN_ATTACH_ONLY) ||
        (o->mode & ~0777u))
        return SHMC_EINVAL;
    if (o->max_key > SHMC_MAX_KEY_LIMIT || o->max_value > SHMC_MAX_VALUE_LIMIT ||
        o->slots > SHMC_MAX_SLOTS || o->locks > MAX_LOCKS || o->max_items > MAX_ITEMS_LIMIT)
        return SHMC_EINVAL;
    return SHMC_OK;
}

/* The layout we would create.  Only a creator needs it to be valid: an
 * attacher compares its non-zero options with the segment instead. */
static shmc_status wanted_layout(const shmc_options *o, layout *want)
{
    uint32_t mv = o->max_value ? o->max_value : SHMC_DEFAULT_MAX_VALUE;
    uint64_t size = o->size ? o->size : DEFAULT_SIZE;
    for (;;) {
        shmc_status st = compute_layout(size, o->max_key ? o->max_key : SHMC_DEFAULT_MAX_KEY, mv,
                                        o->slots ? o->slots : SHMC_DEFAULT_SLOTS,
                                        o->locks ? o->locks : default_locks(size),
                                        o->max_items, want);
        if (st != SHMC_ETOOSMALL || o->max_value || mv <= MIN_DEFAULT_MAX_VALUE)
            return st;
        mv /= 2; /* a default max_value shrinks to fit a small cache */
    }
}

/* Opens the name's fd (creating the file unless told only to attach).
 * SHMC_OK, or *again when the name vanished between two opens. */
static shmc_status open_fd(const char *path, const shmc_options *o, uint32_t mode, int *fd,
                           bool *again)
{
    *again = false;
    *fd = -1;
    if (!(o->flags & SHMC_OPEN_ATTACH_ONLY)) {
        *fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (*fd < 0 && errno != EEXIST)
            return open_status(errno);
        if (*fd < 0 && (o->flags & SHMC_OPEN_CREATE_ONLY))
            return SHMC_EEXIST;
    }
    if (*fd < 0) {
        *fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
        if (*fd < 0) {
            *again = errno == ENOENT && !(o->flags & SHMC_OPEN_ATTACH_ONLY);
            return open_status(errno); /* again: unlinked between our two opens */
        }
    }
    return SHMC_OK;
}

/* Closes an fd that is given up; -1 in *fd. */
static void drop_fd(int *fd)
{
    flock(*fd, LOCK_UN);
    close(*fd);
    *fd = -1;
}

/* We hold LOCK_EX: nobody else uses the segment.  Attaches if READY, else
 * initialises it (unless told only to attach: then *again while an empty
 * file may still be a creator between its open and its LOCK_EX). */
static shmc_status open_exclusive(int *fd, const char *path, const shmc_options *o,
                                  const layout *want, shmc_status want_st, uint32_t mode,
                                  uint64_t deadline, layout *L, uint8_t **base, bool *again)
{
    bool not_ready;
    *again = false;
    shmc_status s = attach_segment(*fd, o, L, base, &not_ready);
    if (s != SHMC_OK && not_ready && (o->flags & SHMC_OPEN_ATTACH_ONLY)) {
        /* Never create when told only to attach.  Anything not READY but
         * an empty file has no creator left. */
        struct stat sb;
        bool empty = fstat(*fd, &sb) == 0 && sb.st_size == 0;
        drop_fd(fd);
        if (empty && now_ms() <= deadline) {
            sleep_ms(1);
            *again = true;
        }
        return SHMC_ENOENT;
    }
    if (s != SHMC_OK && not_ready) {
        *L = *want;
        s = want_st != SHMC_OK ? want_st : init_segment(*fd, L, mode, base);
        if (s != SHMC_OK)
            (void)shm_unlink(path); /* leave no unusable segment behind */
        if (s == SHMC_OK)
            atomic_store(&((shmc_hdr *)*base)->state, SHMC_STATE_READY);
    }
    if (s == SHMC_OK && flock(*fd, LOCK_SH) != 0)
        s = errno_status(errno);
    return s;
}

/* Opens or creates the segment: on SHMC_OK, *fd holds LOCK_SH and *base
 * maps the validated layout *L. */
static shmc_status open_segment(const char *path, const shmc_options *o, const layout *want,
                                shmc_status want_st, layout *L, uint8_t **base, int *fd)
{
    uint32_t mode = o->mode ? o->mode : 0600;
    uint64_t deadline = now_ms() + OPEN_DEADLINE_MS;
    *L = *want;
    for (;;) {
        bool again;
        shmc_status s = open_fd(path, o, mode, fd, &again);
        if (again)
            continue;
        if (s != SHMC_OK)
            return s;
        if (flock(*fd, LOCK_EX | LOCK_NB) == 0) {
            s = open_exclusive(fd, path, o, want, want_st, mode, deadline, L, base, &again);
            if (again)
                continue;
            return s;
        }
        if (errno != EWOULDBLOCK)
            return errno_status(errno);
        /* In use, or being initialised: LOCK_SH waits for the initialiser. */
        if (flock(*fd, LOCK_SH) != 0)
            return errno_status(errno);
        bool not_ready;
        s = attach_segment(*fd, o, L, base, &not_ready);
        if (s == SHMC_OK || !not_ready)
            return s;
        /* Not ready but we got LOCK_SH: another opener is between its open
         * and its LOCK_EX.  Let it go first. */
        drop_fd(fd);
        if (now_ms() > deadline)
            return SHMC_ETIMEDOUT;
        sleep_ms(1);
    }
}

/* Fills a handle on a mapped, validated segment. */
static shmc_status handle_init(struct shmc *c, const layout *L, uint8_t *base, int fd,
                               const shmc_options *o)
{
    bind_handle(c, L, base);
    c->fd = fd;
    c->hash_seed = c->hdr->hash_seed;
    c->id = atomic_fetch_add(&next_handle_id, 1);
    atomic_store(&c->refs, 1);
    int r = pthread_key_create(&c->tkey, tslot_destructor);
    if (r) {
        errno = r;
        return SHMC_ESYS;
    }
    /* Segments this process has mapped in for writing (alloc.c); NULL: not
     * tracked, each page then faults in on first touch. */
    c->pop_bits = calloc(c->nsegs / 64 + 1, sizeof *c->pop_bits);
    membarrier_setup(c);
    coord_bind(c);
    c->prefault = (o->flags & SHMC_OPEN_PREFAULT) != 0;
    handle_prefault(c);
    return SHMC_OK;
}

shmc_status shmc_open(const char *name, const shmc_options *opts, shmc_t **out)
{
    if (!out)
        return SHMC_EINVAL;
    *out = NULL;
    char path[SHMC_MAX_NAME + 2];
    shmc_status s = validate_name(name, path, sizeof path);
    shmc_options o;
    if (s == SHMC_OK)
        s = open_options(opts, &o);
    if (s != SHMC_OK)
        return s;
    layout want, L;
    shmc_status want_st = wanted_layout(&o, &want);
    if (want_st == SHMC_EINVAL)
        return want_st;
    struct shmc *c = calloc(1, sizeof *c);
    if (!c)
        return SHMC_ESYS;
    uint8_t *base = NULL;
    int fd = -1;
    s = open_segment(path, &o, &want, want_st, &L, &base, &fd);
    if (s == SHMC_OK) {
        s = handle_init(c, &L, base, fd, &o);
        if (s != SHMC_OK)
            munmap(base, L.size);
    }
    if (s != SHMC_OK) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        free(c);
        errno = e;
        return s;
    }
    *out = c;
    return SHMC_OK;
}

shmc_status shmc_close(shmc_t *c)
{
    if (!c)
        return SHMC_OK;
    if (atomic_exchange(&c->closed, 1))
        return SHMC_OK;
    shmc_thread_detach(c);
    handle_unref(c);
    return SHMC_OK;
}

shmc_status shmc_peek(const char *name, shmc_peek_info *out)
{
    if (!out)
        return SHMC_EINVAL;
    memset(out, 0, sizeof *out);
    char path[SHMC_MAX_NAME + 2];
    shmc_status s = validate_name(name, path, sizeof path);
    if (s != SHMC_OK)
        return s;
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    int fd = shm_open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0)
        return open_status(errno);
    struct stat st;
    shmc_hdr h;
    ssize_t n = 0;
    if (fstat(fd, &st) != 0) {
        s = errno_status(errno);
    } else if (!S_ISREG(st.st_mode)) {
        s = SHMC_ECORRUPT;
    } else {
        out->size = (uint64_t)st.st_size;
        n = st.st_size > 0 ? pread(fd, &h, sizeof h, 0) : 0;
        if (n < 0)
            s = errno_status(errno);
    }
    close(fd);
    if (s != SHMC_OK)
        return s;
    if (n == 0)
        return SHMC_OK; /* empty: a creator between open and truncate (or dead there) */
    if ((size_t)n < sizeof h || h.magic != SHMC_MAGIC)
        return SHMC_ECORRUPT;
    out->layout_version = h.layout_version;
    if (atomic_load(&h.state) != SHMC_STATE_READY)
        return SHMC_OK; /* its other fields may be half written */
    if (h.layout_version != SHMC_LAYOUT_VERSION || h.hdr_size != SHMC_HDR_SIZE ||
        h.layout_hash != layout_hash())
        return SHMC_EVERSION;
    /* Creation parameters, as recorded; shmc_open checks them in full. */
    out->ready = 1;
    out->max_key = h.max_key;
    out->max_value = h.max_value;
    out->slots = h.nslots;
    out->locks = h.ncoord;
    return SHMC_OK;
}

shmc_status shmc_destroy(const char *name)
{
    char path[SHMC_MAX_NAME + 2];
    shmc_status s = validate_name(name, path, sizeof path);
    if (s != SHMC_OK)
        return s;
    if (shm_unlink(path) != 0)
        return errno_status(errno);
    return SHMC_OK;
}

shmc_status shmc_info_get(shmc_t *c, shmc_info *info)
{
    if (!c || !info)
        return SHMC_EINVAL;
    memset(info, 0, sizeof *info);
    info->size = c->size;
    info->max_key = c->max_key;
    info->max_value = c->max_value;
    info->slots = c->nslots;
    info->layout_version = SHMC_LAYOUT_VERSION;
    info->data_bytes = c->data_bytes;
    info->segment_bytes = c->seg_size;
    info->segments = c->nsegs;
    info->index_slots = (uint32_t)(c->nbuckets * SHMC_BUCKET_WAYS);
    info->locks = c->ncoord;
    info->max_items = c->hdr->max_items ? c->hdr->max_items
                                        : c->nbuckets * SHMC_BUCKET_WAYS * SHMC_INDEX_LOAD_NUM /
                                              SHMC_INDEX_LOAD_DEN;
    return SHMC_OK;
}
