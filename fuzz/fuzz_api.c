/*
 * fuzz_api.c — every public call, with arguments decoded from the input.
 *
 * Each input makes a fresh small cache (its max_key, max_value, slots and
 * lock table chosen by the first byte), then runs up to 200 calls decoded
 * from the rest: keys and values at, one past and far past their limits
 * (lengths of 0, max, max+1, 2^32+3, SIZE_MAX), NULL pointers where the
 * documentation allows and forbids them, embedded NUL bytes, TTLs and
 * leases of 0, 1 ms and up to UINT64_MAX, counters at 2^64-1, cache names
 * with '/', "..", a leading '.', 200/201/5000 bytes or an embedded NUL,
 * every option field in and out of range, locks, fills, batches, a second
 * handle, introspection, detach.
 *
 * The cache is healthy and this thread is its only user, so the outcome of
 * most calls is determined, and checked:
 *   - an argument error gets the documented status (a NULL where a pointer
 *     is required: SHMC_EINVAL; an empty or over-long key: SHMC_EKEYLEN; an
 *     over-long value: SHMC_EVALLEN; a bad name: SHMC_ENAME; bad options:
 *     SHMC_EINVAL), and an over-long length is refused without reading the
 *     buffer (ASan sees any read past it);
 *   - no call returns a status its documentation does not list;
 *   - what a write stores reads back (value, flags, counter value), a delete
 *     deletes, an add of a present key is refused, lock tokens of a name
 *     strictly increase, a held lock is not re-entered, a fill's error
 *     reaches later callers, the held entries listed are ours;
 *   - shmc_verify finds the cache consistent and stats.items matches it.
 */
#include "fuzz.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPS 200
#define MIB (1ull << 20)

typedef struct cfg {
    uint64_t size;
    uint32_t max_key, max_value, slots, locks;
} cfg;

/* max_key / max_value 0: the defaults (250; max_value fitted to the size). */
static const cfg CFGS[] = {
    {2 * MIB, 0, 64u << 10, 16, 64},
    {MIB, 1, 1, 4, 4},
    {2 * MIB, SHMC_MAX_KEY_LIMIT, 0, 16, 64},
    {4 * MIB, 16, 100, 1, 1},
};

/* ---- per-input state ---- */

#define NAMES 32
typedef struct lockrec {
    uint8_t name[24];
    size_t n;
    uint64_t last_token;     /* highest token seen for the name */
    uint64_t held;           /* our token, 0 = not held */
    uint64_t lease_until;    /* ms (our clock); 0 = no lease */
    int stale;               /* force-released under us: our record is still counted */
    int lingering;           /* we lost it at its lease's end: the table may still show
                              * it held (lease over, waiting for a takeover) */
} lockrec;

typedef struct fillrec {
    uint8_t key[24];
    size_t n;
    shmc_fill f;
    int active;
    int stale;               /* taken over (its fill deadline passed): not ours */
    int maybe_stale;         /* perhaps taken over (by a get_or_fill of ours) */
    uint64_t deadline;       /* ms (our clock) */
} fillrec;

static struct {
    shmc_t *c, *c2;
    shmc_info in;
    char name[64];
    lockrec locks[NAMES];
    fillrec fills[SHMC_MAX_HOLDS];
    unsigned nlocks;
    uint64_t last_cas;
    unsigned seq;
} S;

static int trace = -1; /* SHMC_FUZZ_TRACE=1: print the operations */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned holds_now(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < S.nlocks; i++)
        n += S.locks[i].held != 0;
    for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++)
        n += S.fills[i].active;
    return n;
}

/* ---- argument decoding ---- */

/* A buffer of exactly n bytes (ASan then catches any read past it). */
typedef struct arg {
    void *p;         /* what is passed */
    size_t n;        /* the length passed */
    void *owned;     /* to free */
    int bad_len;     /* the length is out of range for the call */
    int null_bad;    /* NULL with a non-zero length */
} arg;

static void *exact(const void *src, size_t n, uint8_t fill)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        abort();
    if (src)
        memcpy(p, src, n);
    else
        memset(p, fill, n);
    return p;
}

static void arg_free(arg *a)
{
    free(a->owned);
    a->owned = NULL;
}

/* Keys (and lock names): 1..max_key bytes, binary-safe. */
static arg dec_key(fz_in *in)
{
    arg a = {0};
    uint32_t mk = S.in.max_key;
    uint8_t sel = fz_u8(in);
    switch (sel % 12) {
    case 0: /* NULL */
        a.n = (size_t)(sel >> 4);
        a.null_bad = 1;
        break;
    case 1: /* empty */
        a.p = a.owned = exact("", 0, 0);
        a.bad_len = 1;
        break;
    case 2: /* exactly max_key, a few distinct ones */
        a.n = mk;
        a.p = a.owned = exact(NULL, mk, (uint8_t)('A' + (sel >> 4) % 3));
        break;
    case 3: /* one past */
        a.n = (size_t)mk + 1;
        a.p = a.owned = exact(NULL, a.n, 'B');
        a.bad_len = 1;
        break;
    case 4: /* far past, with a 1-byte buffer: must not be read */
        a.n = (sel >> 4) & 1 ? SIZE_MAX : ((size_t)1 << 32) + 1;
        a.p = a.owned = exact("x", 1, 0);
        a.bad_len = 1;
        break;
    case 5: /* 65536 + 1: a 16-bit length would wrap to 1 */
        a.n = 65537;
        a.p = a.owned = exact("y", 1, 0);
        a.bad_len = 1;
        break;
    default: { /* from the input, often short and shared between calls */
        uint8_t b[24];
        size_t n;
        if (sel % 12 < 9) {
            b[0] = 'k';
            b[1] = (uint8_t)('0' + (sel >> 4) % 6);
            b[2] = (uint8_t)((sel >> 4) == 15 ? 0 : 'z'); /* an embedded NUL */
            n = (sel >> 4) >= 12 ? 3 : 2;
        } else {
            n = fz_bytes(in, b, 1 + fz_u8(in) % sizeof b);
        }
        a.n = n;
        a.p = a.owned = exact(b, n, 0);
        a.bad_len = n == 0 || n > mk;
        break;
    }
    }
    return a;
}

/* Values: 0..max_value bytes; NULL is fine with length 0. */
static arg dec_val(fz_in *in)
{
    arg a = {0};
    uint32_t mv = S.in.max_value;
    uint8_t sel = fz_u8(in);
    static const char *const nums[] = {"0", "7", "18446744073709551615", "18446744073709551616",
                                       "007", "-1", "12345678901234567890123", " 5", "1e3"};
    switch (sel % 12) {
    case 0: /* NULL, empty: allowed */
        break;
    case 1: /* NULL with a length */
        a.n = 1 + (sel >> 4);
        a.null_bad = 1;
        break;
    case 2: /* exactly max_value */
        a.n = mv;
        a.p = a.owned = exact(NULL, mv, (uint8_t)sel);
        break;
    case 3:
        a.n = (size_t)mv + 1;
        a.p = a.owned = exact(NULL, a.n, 'V');
        a.bad_len = 1;
        break;
    case 4: /* far past: a 32-bit length would wrap to 3 */
        a.n = (sel >> 4) & 1 ? SIZE_MAX : ((size_t)1 << 32) + 3;
        a.p = a.owned = exact("abc", 3, 0);
        a.bad_len = 1;
        break;
    case 5: /* empty, not NULL */
        a.p = a.owned = exact("", 0, 0);
        break;
    case 6: case 7: { /* a counter-ish string */
        const char *s = nums[(sel >> 3) % (sizeof nums / sizeof nums[0])];
        a.n = strlen(s);
        a.p = a.owned = exact(s, a.n, 0);
        a.bad_len = a.n > mv;
        break;
    }
    default: {
        uint8_t b[64];
        size_t n = fz_bytes(in, b, fz_u8(in) % sizeof b);
        a.n = n;
        a.p = a.owned = exact(b, n, 0);
        a.bad_len = n > mv;
        break;
    }
    }
    return a;
}

static uint64_t dec_ttl(fz_in *in)
{
    static const uint64_t t[] = {0, 0, 0, 1, 1000, 3600000, UINT64_MAX, UINT64_MAX - 1,
                                 1ull << 63, (1ull << 44) + 1};
    uint8_t sel = fz_u8(in);
    return sel < 240 ? t[sel % (sizeof t / sizeof t[0])] : fz_u64(in);
}

/* A TTL after which a value read right away is surely still there. */
static int ttl_lasts(uint64_t ttl) { return ttl == 0 || ttl >= 1000; }

/* The status an argument error must produce: bad = SHMC_EINVAL causes
 * (NULL pointers), klen/vlen = out-of-range lengths.  0 if none. */
static uint64_t arg_errors(int einval, const arg *k, const arg *v)
{
    uint64_t m = 0;
    if (einval || (k && k->null_bad) || (v && v->null_bad))
        m |= FZ_BIT(SHMC_EINVAL);
    if (k && k->bad_len && !k->null_bad)
        m |= FZ_BIT(SHMC_EKEYLEN);
    if (v && v->bad_len)
        m |= FZ_BIT(SHMC_EVALLEN);
    return m;
}

/* The call's status when the arguments are bad (any one of the errors they
 * warrant), else one of `ok`. */
static void expect_args(const char *what, shmc_status got, uint64_t errs, uint64_t ok)
{
    fz_expect(what, got, errs ? errs : ok);
}

static shmc_t *pick_handle(fz_in *in, int *second)
{
    uint8_t b = fz_u8(in);
    *second = 0;
    if ((b & 7) == 7 && S.c2) {
        *second = 1;
        return S.c2;
    }
    return S.c;
}

/* ENOSLOTS: the 1-slot cache, through another handle of this thread. */
static uint64_t slot_errs(int other_handle)
{
    return other_handle && S.in.slots < 2 ? FZ_BIT(SHMC_ENOSLOTS) : 0;
}

/* 1: present for at least a second more; 0: absent; -1: present but about
 * to expire (then either answer of a presence-dependent call is right). */
static int presence(shmc_t *c, const arg *k)
{
    uint64_t ttl = 0;
    shmc_status s = shmc_ttl(c, k->p, k->n, &ttl);
    if (s == SHMC_NOT_FOUND)
        return 0;
    FZ_CHECK(s == SHMC_OK, "ttl: %s", shmc_strerror(s));
    return ttl == SHMC_TTL_NONE || ttl >= 1000 ? 1 : -1;
}

static void check_stored(shmc_t *c, const arg *k, const void *val, size_t vlen, uint32_t flags,
                         int check_flags)
{
    void *got = NULL;
    size_t gl = 0;
    uint32_t gf = 0;
    shmc_status s = shmc_get_alloc(c, k->p, k->n, &got, &gl, &gf);
    FZ_CHECK(s == SHMC_OK, "a value just stored reads back %s", shmc_strerror(s));
    FZ_CHECK(gl == vlen && (!vlen || memcmp(got, val, vlen) == 0),
             "a value just stored reads back different (%zu bytes, wrote %zu)", gl, vlen);
    FZ_CHECK(!check_flags || gf == flags, "flags %u, wrote %u", gf, flags);
    free(got);
}

/* ---- operations ---- */

#define GETS (FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_EBUFSIZE))

static void op_read(fz_in *in)
{
    int second;
    shmc_t *c = pick_handle(in, &second);
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    size_t buflen = fz_u8(in);
    if (buflen == 255)
        buflen = S.in.max_value;
    void *buf = buflen ? exact(NULL, buflen, 0) : NULL;
    int null_buf = (sub >> 3) & 1 && buflen;     /* NULL with a non-zero length */
    int null_vlen = (sub >> 4) == 15;
    size_t vlen = 12345;
    uint32_t flags;
    uint64_t cas = 7, ttl = 7;
    shmc_status s;
    uint64_t se = slot_errs(second);
    switch (sub % 6) {
    case 0:
        s = shmc_get(c, k.p, k.n, null_buf ? NULL : buf, buflen, null_vlen ? NULL : &vlen, &flags);
        expect_args("shmc_get", s, arg_errors(null_buf || null_vlen, &k, NULL), GETS | se);
        if (s == SHMC_EBUFSIZE)
            FZ_CHECK(vlen > buflen, "EBUFSIZE, but %zu bytes fit %zu", vlen, buflen);
        if (s == SHMC_OK)
            FZ_CHECK(vlen <= buflen && vlen <= S.in.max_value, "vlen %zu", vlen);
        break;
    case 1: {
        void *v = (void *)&k;
        s = shmc_get_alloc(c, k.p, k.n, null_vlen ? NULL : &v, &vlen, NULL);
        expect_args("shmc_get_alloc", s, arg_errors(null_vlen, &k, NULL),
                    (GETS & ~FZ_BIT(SHMC_EBUFSIZE)) | se);
        if (s == SHMC_OK) {
            FZ_CHECK(v != NULL && vlen <= S.in.max_value, "get_alloc: %p %zu", v, vlen);
            free(v);
        } else if (!null_vlen) {
            FZ_CHECK(v == NULL, "get_alloc failed but returned a buffer");
        }
        break;
    }
    case 2:
        s = shmc_gets(c, k.p, k.n, null_buf ? NULL : buf, buflen, &vlen, NULL,
                      null_vlen ? NULL : &cas);
        expect_args("shmc_gets", s, arg_errors(null_buf || null_vlen, &k, NULL), GETS | se);
        if (s == SHMC_OK || s == SHMC_EBUFSIZE) {
            FZ_CHECK(cas != 0, "gets: a CAS token of 0");
            S.last_cas = cas;
        }
        break;
    case 3:
        s = shmc_exists(c, k.p, k.n);
        expect_args("shmc_exists", s, arg_errors(0, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | se);
        break;
    case 4:
        s = shmc_ttl(c, k.p, k.n, null_vlen ? NULL : &ttl);
        expect_args("shmc_ttl", s, arg_errors(null_vlen, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | se);
        break;
    default: {
        uint64_t t = 0;
        void *v = NULL;
        s = shmc_get_and_touch(c, k.p, k.n, t, null_vlen ? NULL : &v, &vlen, &flags);
        expect_args("shmc_get_and_touch", s, arg_errors(null_vlen, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | se);
        if (s == SHMC_OK)
            free(v);
        break;
    }
    }
    free(buf);
    arg_free(&k);
}

static void op_write(fz_in *in)
{
    int second;
    shmc_t *c = pick_handle(in, &second);
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    arg v = dec_val(in);
    uint32_t flags = fz_u32(in);
    uint64_t ttl = dec_ttl(in);
    uint64_t se = slot_errs(second);
    uint64_t errs = arg_errors(0, &k, &v);
    shmc_status s;
    const char *what;
    int present_before = errs || slot_errs(second) ? -1 : presence(c, &k);
    switch (sub % 3) {
    case 0:
        what = "shmc_set";
        s = shmc_set(c, k.p, k.n, v.p, v.n, flags, ttl);
        expect_args(what, s, errs, FZ_BIT(SHMC_OK) | se);
        break;
    case 1:
        what = "shmc_add";
        s = shmc_add(c, k.p, k.n, v.p, v.n, flags, ttl);
        expect_args(what, s, errs, FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_EXISTS) | se);
        if (!errs && present_before >= 0)
            FZ_CHECK((s == SHMC_EXISTS) == present_before, "add: %s, present before: %d",
                     shmc_strerror(s), present_before);
        break;
    default:
        what = "shmc_replace";
        s = shmc_replace(c, k.p, k.n, v.p, v.n, flags, ttl);
        expect_args(what, s, errs, FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | se);
        if (!errs && present_before >= 0)
            FZ_CHECK((s == SHMC_OK) == present_before, "replace: %s, present before: %d",
                     shmc_strerror(s), present_before);
        break;
    }
    if (s == SHMC_OK && ttl_lasts(ttl))
        check_stored(c, &k, v.p, v.n, flags, 1);
    arg_free(&k);
    arg_free(&v);
}

static void op_cas(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    arg v = dec_val(in);
    uint64_t ttl = dec_ttl(in);
    shmc_status s;
    if (sub & 1) {
        uint64_t tok = (sub & 6) == 0 ? 0 : (sub & 6) == 2 ? fz_u64(in) : S.last_cas;
        uint64_t out = 99;
        s = shmc_cas(S.c, k.p, k.n, v.p, v.n, 1, ttl, tok, (sub & 8) ? NULL : &out);
        expect_args("shmc_cas", s, arg_errors(tok == 0, &k, &v),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_STALE) | FZ_BIT(SHMC_NOT_FOUND));
        if (!(sub & 8)) {
            if (s == SHMC_OK || s == SHMC_STALE)
                FZ_CHECK(out != 0, "cas: %s with a token of 0", shmc_strerror(s));
            if (s == SHMC_NOT_FOUND)
                FZ_CHECK(out == 0, "cas: not found, token %llu", (unsigned long long)out);
            if (s == SHMC_OK)
                S.last_cas = out;
        }
        if (s == SHMC_OK && ttl_lasts(ttl))
            check_stored(S.c, &k, v.p, v.n, 1, 1);
    } else {
        arg e = (sub & 2) ? dec_val(in) : (arg){0};
        int expect_absent = e.p == NULL; /* NULL expected: "absent" */
        size_t curlen = (sub & 4) ? 0 : fz_u8(in);
        void *cur = curlen || (sub & 8) ? exact(NULL, curlen, 0) : NULL;
        size_t cur_vlen = 5;
        int bad = (cur && (sub & 16)) || (!cur && curlen); /* cur without cur_vlen */
        s = shmc_cas_value(S.c, k.p, k.n, e.p, e.n, v.p, v.n, 2, ttl, cur, curlen,
                           (sub & 16) ? NULL : &cur_vlen);
        expect_args("shmc_cas_value", s,
                    arg_errors(bad || e.null_bad, &k, &v),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_STALE) | FZ_BIT(SHMC_NOT_FOUND) |
                        FZ_BIT(SHMC_EXISTS));
        if (s == SHMC_EXISTS)
            FZ_CHECK(expect_absent, "cas_value: EXISTS with an expected value");
        if (s == SHMC_OK && ttl_lasts(ttl))
            check_stored(S.c, &k, v.p, v.n, 2, 1);
        free(cur);
        arg_free(&e);
    }
    arg_free(&k);
    arg_free(&v);
}

static void op_delete(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    shmc_status s;
    if (sub % 3 == 0) {
        s = shmc_delete(S.c, k.p, k.n);
        expect_args("shmc_delete", s, arg_errors(0, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND));
    } else if (sub % 3 == 1) {
        uint64_t tok = (sub & 4) ? S.last_cas : (sub & 8) ? 0 : fz_u64(in);
        s = shmc_delete_cas(S.c, k.p, k.n, tok);
        expect_args("shmc_delete_cas", s, arg_errors(tok == 0, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_STALE) | FZ_BIT(SHMC_NOT_FOUND));
    } else {
        arg e = dec_val(in);
        s = shmc_delete_value(S.c, k.p, k.n, e.p, e.n);
        /* An over-long expected value cannot match; either answer is fine. */
        expect_args("shmc_delete_value", s, arg_errors(e.null_bad, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_STALE) | FZ_BIT(SHMC_NOT_FOUND) |
                        (e.bad_len ? FZ_BIT(SHMC_EVALLEN) : 0));
        arg_free(&e);
    }
    if (s == SHMC_OK)
        FZ_CHECK(shmc_exists(S.c, k.p, k.n) == SHMC_NOT_FOUND, "deleted, still there");
    arg_free(&k);
}

static int counter_of(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n == 0 || n > 20)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        unsigned d = p[i] - '0';
        if (x > (UINT64_MAX - d) / 10)
            return 0;
        x = x * 10 + d;
    }
    *v = x;
    return 1;
}

static void op_counter(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    static const uint64_t deltas[] = {0, 1, 2, 1000, UINT64_MAX, UINT64_MAX - 1, 1ull << 63};
    uint64_t delta = deltas[fz_u8(in) % (sizeof deltas / sizeof deltas[0])];
    uint64_t initial = (sub & 0x40) ? UINT64_MAX : fz_u8(in);
    uint64_t ttl = dec_ttl(in);
    unsigned opts = (sub >> 1) & 7; /* bit 2 (4) is not an option: SHMC_EINVAL */
    int null_res = (sub >> 4) == 15;
    uint64_t res = 0;
    int down = sub & 1;
    /* what the key holds before, to predict the result */
    void *old = NULL;
    size_t ol = 0;
    int present = 0;
    uint64_t ov = 0;
    int numeric = 0;
    int pr = arg_errors(0, &k, NULL) ? -1 : presence(S.c, &k);
    if (pr == 1 && shmc_get_alloc(S.c, k.p, k.n, &old, &ol, NULL) == SHMC_OK) {
        present = 1;
        numeric = counter_of(old, ol, &ov);
        if (!numeric && ol == 8) {
            /* could be a binary counter: the library knows, we allow it */
            numeric = -1;
        }
    }
    free(old);
    shmc_status s = down ? shmc_decr(S.c, k.p, k.n, delta, initial, ttl, opts, null_res ? NULL : &res)
                         : shmc_incr(S.c, k.p, k.n, delta, initial, ttl, opts, null_res ? NULL : &res);
    uint64_t errs = arg_errors(null_res || (opts & 4), &k, NULL);
    /* A counter's digits (up to 20) may not fit a tiny max_value. */
    uint64_t evallen = S.in.max_value < 20 ? FZ_BIT(SHMC_EVALLEN) : 0;
    expect_args(down ? "shmc_decr" : "shmc_incr", s, errs,
                FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_ENOTNUM) | evallen);
    if (errs || pr < 0 || s == SHMC_EVALLEN)
        goto out;
    if (!present) {
        FZ_CHECK(s == ((opts & SHMC_INCR_CREATE) ? SHMC_OK : SHMC_NOT_FOUND),
                 "incr of an absent key: %s", shmc_strerror(s));
        if (s == SHMC_OK)
            FZ_CHECK(res == initial, "created %llu, not initial %llu", (unsigned long long)res,
                     (unsigned long long)initial);
    } else if (numeric == 1) {
        FZ_CHECK(s == SHMC_OK, "incr of a decimal counter: %s", shmc_strerror(s));
        uint64_t want = down ? (ov > delta ? ov - delta : 0) : ov + delta;
        FZ_CHECK(res == want, "counter %llu, want %llu", (unsigned long long)res,
                 (unsigned long long)want);
    } else if (numeric == 0) {
        FZ_CHECK(s == SHMC_ENOTNUM, "incr of a non-counter: %s", shmc_strerror(s));
    }
    if (s == SHMC_OK && ttl_lasts(ttl)) {
        void *v = NULL;
        size_t vl = 0;
        FZ_CHECK(shmc_get_alloc(S.c, k.p, k.n, &v, &vl, NULL) == SHMC_OK, "counter gone");
        uint64_t x = 0;
        int ok = counter_of(v, vl, &x);
        if (!ok && vl == 8) {
            for (int i = 7; i >= 0; i--)
                x = x << 8 | ((uint8_t *)v)[i];
            ok = 1;
        }
        FZ_CHECK(ok && x == res, "counter reads back %llu, want %llu", (unsigned long long)x,
                 (unsigned long long)res);
        free(v);
    }
out:
    arg_free(&k);
}

static void op_modify(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    shmc_status s;
    if (sub & 1) {
        uint64_t ttl = dec_ttl(in);
        s = shmc_touch(S.c, k.p, k.n, ttl);
        expect_args("shmc_touch", s, arg_errors(0, &k, NULL),
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND));
    } else {
        arg d = dec_val(in);
        void *before = NULL;
        size_t bl = 0;
        int pr = arg_errors(0, &k, NULL) ? -1 : presence(S.c, &k);
        int had = pr == 1 && shmc_get_alloc(S.c, k.p, k.n, &before, &bl, NULL) == SHMC_OK;
        s = (sub & 2) ? shmc_prepend(S.c, k.p, k.n, d.p, d.n) : shmc_append(S.c, k.p, k.n, d.p, d.n);
        /* The result is too long exactly when it would pass max_value, and
         * then the data must not be read (ASan: d.p may be 3 bytes). */
        int too_long = had && (d.n > S.in.max_value || bl + d.n > S.in.max_value);
        uint64_t errs = arg_errors(d.null_bad, &k, NULL);
        expect_args((sub & 2) ? "shmc_prepend" : "shmc_append", s, errs,
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND) | FZ_BIT(SHMC_EVALLEN));
        if (!errs && pr == 0)
            FZ_CHECK(s == SHMC_NOT_FOUND, "append to an absent key: %s", shmc_strerror(s));
        if (!errs && had)
            FZ_CHECK((s == SHMC_EVALLEN) == too_long, "append: %s, too long: %d",
                     shmc_strerror(s), too_long);
        if (s == SHMC_OK && had) {
            uint8_t *want = exact(NULL, bl + d.n, 0);
            memcpy(want + ((sub & 2) ? d.n : 0), before, bl);
            if (d.n)
                memcpy(want + ((sub & 2) ? 0 : bl), d.p, d.n);
            void *got = NULL;
            size_t gl = 0;
            FZ_CHECK(shmc_get_alloc(S.c, k.p, k.n, &got, &gl, NULL) == SHMC_OK, "appended, gone");
            FZ_CHECK(gl == bl + d.n && memcmp(got, want, gl) == 0, "append: wrong result");
            free(got);
            free(want);
        }
        free(before);
        arg_free(&d);
    }
    arg_free(&k);
}

static void op_many(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    size_t n = (sub >> 2) % 7;
    int null_reqs = (sub >> 5) == 7;
    if (sub % 3 == 0) {
        shmc_get_req reqs[6];
        arg ks[6];
        for (size_t i = 0; i < n; i++) {
            ks[i] = dec_key(in);
            size_t bl = fz_u8(in) % 40;
            int nb = bl && (fz_u8(in) & 1);
            reqs[i] = (shmc_get_req){.key = ks[i].p, .klen = ks[i].n,
                                     .buf = nb ? NULL : exact(NULL, bl, 0), .buflen = bl};
        }
        shmc_status s = shmc_get_many(S.c, null_reqs ? NULL : reqs, n);
        fz_expect("shmc_get_many", s, FZ_BIT(null_reqs && n ? SHMC_EINVAL : SHMC_OK));
        for (size_t i = 0; i < n; i++) {
            if (!null_reqs || !n) {
                uint64_t errs = arg_errors(!reqs[i].buf && reqs[i].buflen, &ks[i], NULL);
                expect_args("shmc_get_many (request)", reqs[i].status, errs, GETS);
                if (reqs[i].status == SHMC_EBUFSIZE)
                    FZ_CHECK(reqs[i].vlen > reqs[i].buflen, "get_many: EBUFSIZE but it fits");
            }
            free(reqs[i].buf);
            arg_free(&ks[i]);
        }
    } else if (sub % 3 == 1) {
        shmc_set_req reqs[6];
        arg ks[6], vs[6];
        uint64_t any_err = 0;
        for (size_t i = 0; i < n; i++) {
            ks[i] = dec_key(in);
            vs[i] = dec_val(in);
            reqs[i] = (shmc_set_req){.key = ks[i].p, .klen = ks[i].n, .val = vs[i].p,
                                     .vlen = vs[i].n, .flags = (uint32_t)i, .ttl_ms = dec_ttl(in)};
            any_err |= arg_errors(0, &ks[i], &vs[i]);
        }
        shmc_status s = shmc_set_many(S.c, null_reqs ? NULL : reqs, n);
        if (null_reqs && n) {
            fz_expect("shmc_set_many", s, FZ_BIT(SHMC_EINVAL));
        } else {
            fz_expect("shmc_set_many", s, any_err ? any_err : FZ_BIT(SHMC_OK));
            for (size_t i = 0; i < n; i++)
                expect_args("shmc_set_many (request)", reqs[i].status,
                            arg_errors(0, &ks[i], &vs[i]), FZ_BIT(SHMC_OK));
        }
        for (size_t i = 0; i < n; i++) {
            arg_free(&ks[i]);
            arg_free(&vs[i]);
        }
    } else {
        shmc_key_req reqs[6];
        arg ks[6];
        for (size_t i = 0; i < n; i++) {
            ks[i] = dec_key(in);
            reqs[i] = (shmc_key_req){.key = ks[i].p, .klen = ks[i].n};
        }
        shmc_status s = shmc_delete_many(S.c, null_reqs ? NULL : reqs, n);
        fz_expect("shmc_delete_many", s, FZ_BIT(null_reqs && n ? SHMC_EINVAL : SHMC_OK));
        for (size_t i = 0; i < n; i++) {
            if (!null_reqs || !n)
                expect_args("shmc_delete_many (request)", reqs[i].status,
                            arg_errors(0, &ks[i], NULL), FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND));
            arg_free(&ks[i]);
        }
    }
}

/* ---- locks ---- */

static lockrec *lock_rec(const arg *k)
{
    if (k->null_bad || k->bad_len || k->n > sizeof S.locks[0].name)
        return NULL;
    for (unsigned i = 0; i < S.nlocks; i++)
        if (S.locks[i].n == k->n && memcmp(S.locks[i].name, k->p, k->n) == 0)
            return &S.locks[i];
    if (S.nlocks == NAMES)
        return NULL;
    lockrec *r = &S.locks[S.nlocks++];
    memset(r, 0, sizeof *r);
    memcpy(r->name, k->p, k->n);
    r->n = k->n;
    return r;
}

static void op_lock(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    lockrec *r = lock_rec(&k);
    uint64_t errs = arg_errors(0, &k, NULL);
    static const uint64_t leases[] = {0, 0, 1, 50, 3600000, UINT64_MAX};
    uint64_t lease = leases[fz_u8(in) % (sizeof leases / sizeof leases[0])];
    uint64_t now = mono_ms();
    /* Held by us with no lease, or a lease far from its end: not re-entrant. */
    int held_firmly = r && r->held && !r->stale && (!r->lease_until || r->lease_until > now + 100);
    shmc_status s;
    if (trace)
        fprintf(stderr, "  lock op %u on %.*s, lease %llu (held %llu, stale %d)\n", sub % 5,
                (int)(k.n < 32 ? k.n : 32), k.p ? (const char *)k.p : "", (unsigned long long)lease,
                r ? (unsigned long long)r->held : 0ull, r ? r->stale : -1);
    switch (sub % 5) {
    case 0: case 1: {
        uint64_t timeout = (sub % 5) ? 1 + (sub >> 6) : 0;
        int null_tok = (sub >> 3 & 7) == 7;
        if (!r && !errs)
            timeout = 0; /* untracked: might be held by us; never wait long */
        uint64_t tok = 5;
        unsigned h = holds_now();
        s = shmc_lock_acquire(S.c, k.p, k.n, timeout, lease, null_tok ? NULL : &tok);
        if (trace)
            fprintf(stderr, "    acquire (timeout %llu): %s, token %llu\n",
                    (unsigned long long)timeout, shmc_strerror(s), (unsigned long long)tok);
        errs = arg_errors(null_tok, &k, NULL);
        expect_args("shmc_lock_acquire", s, errs,
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_EBUSY) | FZ_BIT(SHMC_ETIMEDOUT) |
                        FZ_BIT(SHMC_ETABLEFULL) | (h >= SHMC_MAX_HOLDS ? FZ_BIT(SHMC_EHOLDS) : 0));
        if (!errs && held_firmly && h < SHMC_MAX_HOLDS)
            FZ_CHECK(s == (timeout ? SHMC_ETIMEDOUT : SHMC_EBUSY), "re-entered a held lock: %s",
                     shmc_strerror(s));
        if (s == SHMC_EBUSY)
            FZ_CHECK(timeout == 0, "EBUSY with a timeout");
        if (s == SHMC_OK) {
            FZ_CHECK(tok != 0, "lock token 0");
            if (r) {
                FZ_CHECK(tok > r->last_token, "lock tokens went back: %llu after %llu",
                         (unsigned long long)tok, (unsigned long long)r->last_token);
                r->last_token = tok;
                if (r->held && !r->stale) /* took over our own expired lease */
                    r->stale = 1;
                if (r->stale) {
                    /* our old record: drop it the documented way */
                    shmc_status rs = shmc_lock_release(S.c, k.p, k.n, r->held);
                    fz_expect("shmc_lock_release (old token)", rs, FZ_BIT(SHMC_ENOTOWNER));
                }
                r->held = tok;
                r->stale = 0;
                r->lingering = 0;
                r->lease_until = lease ? (lease > (1ull << 40) ? 0 : now + lease) : 0;
            } else {
                shmc_lock_release(S.c, k.p, k.n, tok); /* not tracked: let it go */
            }
        }
        break;
    }
    case 2: { /* release */
        uint64_t tok = (sub & 8) || !r ? fz_u64(in) : r->held;
        s = shmc_lock_release(S.c, k.p, k.n, tok);
        expect_args("shmc_lock_release", s, errs, FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_ENOTOWNER));
        if (r && tok == r->held && tok) {
            if (held_firmly)
                FZ_CHECK(s == SHMC_OK, "release by the owner: %s", shmc_strerror(s));
            if (s == SHMC_ENOTOWNER && !r->stale)
                r->lingering = 1;
            r->held = 0;
            r->stale = 0;
        } else if (!errs) {
            FZ_CHECK(s == SHMC_ENOTOWNER, "release with a wrong token: %s", shmc_strerror(s));
        }
        break;
    }
    case 3: { /* extend */
        uint64_t tok = (sub & 8) || !r ? fz_u64(in) : r->held;
        s = shmc_lock_extend(S.c, k.p, k.n, tok, lease);
        if (trace)
            fprintf(stderr, "    extend(token %llu): %s\n", (unsigned long long)tok,
                    shmc_strerror(s));
        expect_args("shmc_lock_extend", s, errs, FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_ENOTOWNER));
        if (r && tok == r->held && tok) {
            if (held_firmly)
                FZ_CHECK(s == SHMC_OK, "extend by the owner: %s", shmc_strerror(s));
            if (s == SHMC_OK)
                r->lease_until = lease ? (lease > (1ull << 40) ? 0 : mono_ms() + lease) : 0;
            else
                r->held = 0, r->stale = 0; /* the library dropped our record */
            if (s == SHMC_ENOTOWNER && !r->stale)
                r->lingering = 1;
        } else if (!errs) {
            FZ_CHECK(s == SHMC_ENOTOWNER, "extend with a wrong token: %s", shmc_strerror(s));
        }
        break;
    }
    default: { /* operator override */
        uint64_t old = 1;
        s = shmc_lock_force_release(S.c, k.p, k.n, (sub & 8) ? NULL : &old);
        expect_args("shmc_lock_force_release", s, errs,
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_NOT_FOUND));
        if (r && r->held && !r->stale) {
            FZ_CHECK(s == SHMC_OK, "force release of a held lock: %s", shmc_strerror(s));
            if (!(sub & 8))
                FZ_CHECK(old == r->held, "force release revoked %llu, held %llu",
                         (unsigned long long)old, (unsigned long long)r->held);
            r->stale = 1;
        }
        break;
    }
    }
    arg_free(&k);
}

/* ---- fills ---- */

static fillrec *fill_of(const arg *k)
{
    if (k->null_bad || k->bad_len || k->n > sizeof S.fills[0].key)
        return NULL;
    for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++)
        if (S.fills[i].active && !S.fills[i].stale && S.fills[i].n == k->n &&
            memcmp(S.fills[i].key, k->p, k->n) == 0)
            return &S.fills[i];
    return NULL;
}

typedef struct cbctx {
    unsigned how;
    int calls;
} cbctx;

static int32_t fill_cb(void *ctx, const void *key, size_t klen, shmc_fill_out *out)
{
    cbctx *x = ctx;
    x->calls++;
    switch (x->how % 6) {
    case 0: /* fail, with a message filling the whole field (unterminated) */
        memset(out->message, 'm', sizeof out->message);
        return -7;
    case 1: /* an empty value, no buffer */
        return 0;
    case 2: /* a length without a buffer: the library must not trust it */
        out->vlen = 100;
        return 0;
    case 3: /* too long to store */
        out->vlen = (size_t)S.in.max_value + 1;
        out->val = exact(NULL, out->vlen, 'L');
        return 0;
    case 4: { /* uses the cache meanwhile, then returns the key as value */
        size_t vl;
        (void)shmc_get(S.c, key, klen, NULL, 0, &vl, NULL);
        (void)shmc_set(S.c, "cb-side", 7, "s", 1, 0, 0);
        out->val = exact(key, klen, 0);
        out->vlen = klen <= S.in.max_value ? klen : 0;
        out->flags = 77;
        return 0;
    }
    default:
        out->val = exact("v", 1, 0);
        out->vlen = S.in.max_value ? 1 : 0;
        out->ttl_ms = 1;
        return 0;
    }
}

static void op_fill(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    arg k = dec_key(in);
    uint64_t errs = arg_errors(0, &k, NULL);
    fillrec *mine = fill_of(&k);
    shmc_fill_opts o = {
        .ttl_ms = dec_ttl(in),
        .wait_ms = 1 + fz_u8(in) % 3,   /* never 0 (10 s) here: see below */
        .fill_ms = (sub & 0x10) ? 1 : 60000,
        .error_ttl_ms = (sub & 0x20) ? 60000 : 0,
        .refresh_ms = (sub & 0x40) ? UINT64_MAX : 0,
    };
    /* The defaults (wait 10 s) only where nobody, i.e. not this thread,
     * could be leading the key: a known key we do not lead. */
    int can_default = !mine && (k.p && k.n == 2 && ((const uint8_t *)k.p)[0] == 'k');
    const shmc_fill_opts *op = (sub & 0x80) && can_default ? NULL : &o;
    unsigned h = holds_now();
    switch (sub % 4) {
    case 0: case 1: { /* begin */
        void *v = (void *)&o;
        size_t vl = 3;
        fillrec *slot = NULL;
        for (unsigned i = 0; i < SHMC_MAX_HOLDS && !slot; i++)
            if (!S.fills[i].active)
                slot = &S.fills[i];
        shmc_fill tmp;
        shmc_fill *f = slot ? &slot->f : &tmp;
        int null_f = (sub & 0xc) == 0xc;
        uint64_t t0 = mono_ms();
        shmc_status s = shmc_fill_begin(S.c, k.p, k.n, op, &v, &vl, NULL, null_f ? NULL : f);
        if (trace)
            fprintf(stderr, "  fill_begin(%.*s, fill_ms %llu): %s (mine %p)\n", (int)k.n,
                    k.p ? (const char *)k.p : "", (unsigned long long)(op ? o.fill_ms : 0),
                    shmc_strerror(s), (void *)mine);
        errs = arg_errors(null_f, &k, NULL);
        expect_args("shmc_fill_begin", s, errs,
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_LEADER) | FZ_BIT(SHMC_EFILL) |
                        FZ_BIT(SHMC_ETIMEDOUT) | FZ_BIT(SHMC_ETABLEFULL) |
                        (h >= SHMC_MAX_HOLDS ? FZ_BIT(SHMC_EHOLDS) : 0));
        if (s == SHMC_OK) {
            FZ_CHECK(v != NULL, "fill_begin: OK without a value");
            free(v);
        } else if (s != SHMC_EINVAL) { /* (a NULL argument: outputs untouched) */
            FZ_CHECK(v == NULL, "fill_begin: %s with a value", shmc_strerror(s));
        }
        if (s == SHMC_ETIMEDOUT)
            FZ_CHECK(mine != NULL, "fill_begin timed out with no other leader");
        if (s == SHMC_ETIMEDOUT && mine && mono_ms() >= mine->deadline + 50)
            FZ_CHECK(0, "fill_begin waited for a leader past its deadline");
        if (s == SHMC_EFILL)
            FZ_CHECK(memchr(f->message, 0, sizeof f->message) != NULL, "unterminated message");
        if (s == SHMC_LEADER) {
            /* Our own fill again: only once its deadline passed (a takeover). */
            FZ_CHECK(!mine || mono_ms() >= mine->deadline, "led the same key twice");
            if (mine)
                mine->stale = 1;
            FZ_CHECK(slot != NULL, "a ninth fill led");
            if (k.n <= sizeof slot->key) {
                slot->active = 1;
                slot->stale = 0;
                slot->maybe_stale = 0;
                slot->deadline = t0 + (op ? o.fill_ms : 10000);
                memcpy(slot->key, k.p, k.n);
                slot->n = k.n;
            } else { /* too long to track: give it up at once */
                fz_expect("shmc_fill_abort", shmc_fill_abort(S.c, f, 3, "long", 0),
                          FZ_BIT(SHMC_OK));
            }
        }
        break;
    }
    case 2: { /* finish or abort one we lead, or a fill that is not ours */
        fillrec *r = mine;
        for (unsigned i = 0; i < SHMC_MAX_HOLDS && !r; i++)
            if (S.fills[i].active)
                r = &S.fills[i];
        uint64_t done_ok = r && r->stale ? FZ_BIT(SHMC_ENOTOWNER) : FZ_BIT(SHMC_OK);
        if (r && r->maybe_stale)
            done_ok |= FZ_BIT(SHMC_ENOTOWNER);
        if (!r || (sub & 0x40)) {
            shmc_fill f;
            memset(&f, 0, sizeof f);
            if (sub & 8)
                f.cache_ = S.c; /* looks like ours, holds nothing */
            fz_expect("shmc_fill_finish (not a leader)", shmc_fill_finish(S.c, &f, "x", 1, 0, 0),
                      FZ_BIT(SHMC_EINVAL));
            fz_expect("shmc_fill_abort (not a leader)", shmc_fill_abort(S.c, &f, 1, NULL, 0),
                      FZ_BIT(SHMC_EINVAL));
            fz_expect("shmc_fill_abort (NULL)", shmc_fill_abort(S.c, NULL, 1, NULL, 0),
                      FZ_BIT(SHMC_EINVAL));
            break;
        }
        arg rk = {.p = r->key, .n = r->n};
        if (sub & 8) {
            arg v = dec_val(in);
            uint32_t flags = fz_u32(in);
            uint64_t ttl = dec_ttl(in);
            shmc_status s = shmc_fill_finish(S.c, &r->f, v.p, v.n, flags, ttl);
            if (trace)
                fprintf(stderr, "  fill_finish(%.*s, stale %d): %s\n", (int)r->n, r->key,
                        r->stale, shmc_strerror(s));
            if (v.null_bad) {
                fz_expect("shmc_fill_finish", s, FZ_BIT(SHMC_EINVAL)); /* f stays ours */
            } else {
                expect_args("shmc_fill_finish", s,
                            r->stale || (r->maybe_stale && s == SHMC_ENOTOWNER)
                                ? 0 : arg_errors(0, NULL, &v),
                            done_ok);
                r->active = 0;
                if (s == SHMC_OK && ttl_lasts(ttl))
                    check_stored(S.c, &rk, v.p, v.n, flags, 1);
                /* a second finish: not a leader any more */
                fz_expect("shmc_fill_finish (again)", shmc_fill_finish(S.c, &r->f, "x", 1, 0, 0),
                          FZ_BIT(SHMC_EINVAL));
            }
            arg_free(&v);
        } else {
            char msg[300];
            size_t ml = fz_u8(in);
            memset(msg, 'e', ml);
            msg[ml] = 0;
            int32_t code = (int32_t)fz_u32(in);
            shmc_status s = shmc_fill_abort(S.c, &r->f, code, (sub & 0x10) ? NULL : msg,
                                            o.error_ttl_ms);
            if (trace)
                fprintf(stderr, "  fill_abort(%.*s, stale %d): %s\n", (int)r->n, r->key,
                        r->stale, shmc_strerror(s));
            fz_expect("shmc_fill_abort", s, done_ok);
            r->active = 0;
            if (s == SHMC_OK && o.error_ttl_ms) { /* later callers get the same error */
                void *v = NULL;
                size_t vl;
                shmc_fill f2;
                shmc_fill_opts wo = {.wait_ms = 1};
                s = shmc_fill_begin(S.c, rk.p, rk.n, &wo, &v, &vl, NULL, &f2);
                if (s == SHMC_EFILL)
                    FZ_CHECK(f2.error == code, "fill error %d, aborted with %d", f2.error, code);
                else if (s == SHMC_LEADER) /* the key appeared meanwhile? no: it must not */
                    FZ_CHECK(0, "a fresh fill error was not served");
                else
                    fz_expect("shmc_fill_begin (after abort)", s, FZ_BIT(SHMC_OK));
                free(v);
            }
        }
        break;
    }
    default: { /* the callback form */
        cbctx x = {.how = fz_u8(in), .calls = 0};
        void *v = NULL;
        size_t vl = 0;
        uint32_t fl = 0;
        shmc_fill ef;
        int null_fn = (sub & 0x0c) == 0x0c;
        /* ours, and its deadline passes while this call may wait for it */
        int late = mine && mono_ms() + o.wait_ms + 2 >= mine->deadline;
        shmc_status s = shmc_get_or_fill(S.c, k.p, k.n, null_fn ? NULL : fill_cb, &x, op, &v, &vl,
                                         &fl, (sub & 0x10) ? NULL : &ef);
        if (trace)
            fprintf(stderr, "  get_or_fill(%.*s): %s\n", (int)k.n, k.p ? (const char *)k.p : "",
                    shmc_strerror(s));
        errs = arg_errors(null_fn, &k, NULL);
        expect_args("shmc_get_or_fill", s, errs,
                    FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_EFILL) | FZ_BIT(SHMC_ETIMEDOUT) |
                        FZ_BIT(SHMC_ETABLEFULL) | FZ_BIT(SHMC_EVALLEN) |
                        (h >= SHMC_MAX_HOLDS ? FZ_BIT(SHMC_EHOLDS) : 0));
        FZ_CHECK(x.calls <= 1, "the callback ran %d times", x.calls);
        if (late && s != SHMC_ETIMEDOUT)
            mine->maybe_stale = 1; /* it may have taken our fill over */
        if (s == SHMC_OK) {
            FZ_CHECK(v != NULL, "get_or_fill: OK without a buffer");
            free(v);
        }
        if (s == SHMC_EFILL && !(sub & 0x10))
            FZ_CHECK(memchr(ef.message, 0, sizeof ef.message) != NULL, "unterminated message");
        break;
    }
    }
    arg_free(&k);
}

/* ---- names and options ---- */

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SHMC_MAX_NAME || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* A name for open/destroy.  Returns whether it is one of ours (so that
 * nothing else in /dev/shm is ever created or removed). */
static const char *dec_name(fz_in *in, char *buf, size_t cap, int *existing)
{
    uint8_t sel = fz_u8(in);
    char pre[48];
    int pl = snprintf(pre, sizeof pre, "shmcfz-api-%ld-o%u", (long)getpid(), S.seq++);
    *existing = 0;
    switch (sel % 14) {
    case 0: return NULL;
    case 1: return "";
    case 2: return "/";
    case 3: snprintf(buf, cap, "%s/x", pre); return buf;
    case 4: return "..";
    case 5: return ".";
    case 6: snprintf(buf, cap, ".%s", pre); return buf;
    case 7: snprintf(buf, cap, "../%s", pre); return buf;
    case 8: case 9: { /* 200 (ok), 201 or 5000 bytes */
        size_t n = sel % 14 == 8 ? SHMC_MAX_NAME : (sel & 0x10) ? 5000 : SHMC_MAX_NAME + 1;
        if (n >= cap)
            n = cap - 1;
        memset(buf, 'n', n);
        memcpy(buf, pre, (size_t)pl);
        buf[n] = 0;
        return buf;
    }
    case 10: /* an embedded NUL: only the part before it is the name */
        snprintf(buf, cap, "%s", pre);
        memcpy(buf + pl, "\0/../etc", 9);
        return buf;
    case 11: /* the open cache */
        *existing = 1;
        return S.name;
    default: { /* our prefix, then bytes from the input */
        size_t at = (size_t)pl;
        memcpy(buf, pre, at);
        size_t n = fz_u8(in) % 40;
        for (size_t i = 0; i < n && at + 1 < cap; i++) {
            uint8_t b = fz_u8(in);
            if (!b)
                break;
            buf[at++] = (char)b;
        }
        buf[at] = 0;
        return buf;
    }
    }
}

static void dec_opts(fz_in *in, shmc_options *o, int *bad)
{
    static const uint64_t sizes[] = {MIB, 2 * MIB, 2 * MIB + 3, MIB - 1, 1, 8 * MIB,
                                     (1ull << 46) + 1, UINT64_MAX};
    static const uint32_t keys[] = {0, 1, 250, SHMC_MAX_KEY_LIMIT, SHMC_MAX_KEY_LIMIT + 1,
                                    UINT32_MAX};
    static const uint32_t vals[] = {0, 1, 4096, 64u << 10, SHMC_MAX_VALUE_LIMIT,
                                    SHMC_MAX_VALUE_LIMIT + 1, UINT32_MAX};
    static const uint32_t slots[] = {0, 1, 16, 65535, 65536, UINT32_MAX};
    static const uint32_t modes[] = {0, 0600, 0640, 0777, 01000, 0xffffffffu};
    static const uint32_t flags[] = {0, SHMC_OPEN_PREFAULT, SHMC_OPEN_CREATE_ONLY,
                                     SHMC_OPEN_ATTACH_ONLY,
                                     SHMC_OPEN_CREATE_ONLY | SHMC_OPEN_ATTACH_ONLY, 8};
    static const uint32_t locks[] = {0, 1, 64, 1u << 20, (1u << 20) + 1};
    uint8_t a = fz_u8(in), b = fz_u8(in), c = fz_u8(in);
    memset(o, 0, sizeof *o);
    /* Sizes that would really be created stay small (<= 8 MiB). */
    o->size = (a & 0x80) ? 0 : sizes[a % 8];
    if (!o->size && (b & 1))
        o->size = 2 * MIB;
    o->max_key = keys[(a >> 3) % 6];
    o->max_value = vals[b % 7];
    if (!o->max_value && o->size == 0)
        o->max_value = 64u << 10; /* a default 64 MiB cache, but cheap to make */
    o->slots = slots[(b >> 3) % 6];
    if (o->slots == 65535 && (c & 0x40))
        o->slots = 16; /* 65535 slots: a few MB to initialise; not too often */
    o->mode = modes[c % 6];
    o->flags = flags[(c >> 3) % 6];
    o->locks = locks[(b >> 6) % 5];
    o->reserved_ = (c >> 7) & ((a >> 6) & 1);
    *bad = o->reserved_ || (o->flags & ~7u) || (o->flags & 3) == 3 || (o->mode & ~0777u) ||
           o->max_key > SHMC_MAX_KEY_LIMIT || o->max_value > SHMC_MAX_VALUE_LIMIT ||
           o->slots > 65535 || o->locks > (1u << 20) || o->size > (1ull << 46);
    if (o->size == 0 && !*bad) {
        /* the default size is 64 MiB: fine, if nothing makes it large */
        o->slots = o->slots > 1024 ? 1024 : o->slots;
    }
}

static void op_open(fz_in *in)
{
    char buf[6000];
    int existing;
    const char *name = dec_name(in, buf, sizeof buf, &existing);
    shmc_options o;
    int bad;
    dec_opts(in, &o, &bad);
    uint8_t sub = fz_u8(in);
    int valid = name && name_ok(name);
    if (sub % 4 == 3) { /* destroy: only names that cannot be anyone's */
        if (existing)
            return;
        shmc_status s = shmc_destroy(name);
        if (!name)
            fz_expect("shmc_destroy (NULL)", s, FZ_BIT(SHMC_EINVAL) | FZ_BIT(SHMC_ENAME));
        else
            fz_expect("shmc_destroy", s, FZ_BIT(valid ? SHMC_ENOENT : SHMC_ENAME));
        return;
    }
    shmc_t *c = (shmc_t *)&o;
    int null_out = sub % 4 == 2 && (sub & 4);
    shmc_status s = shmc_open(name, (sub & 8) && !existing && !bad && !null_out ? NULL : &o,
                              null_out ? NULL : &c);
    int used_null_opts = (sub & 8) && !existing && !bad && !null_out;
    if (null_out) {
        fz_expect("shmc_open (NULL out)", s, FZ_BIT(SHMC_EINVAL));
        return;
    }
    if (!name) {
        fz_expect("shmc_open (NULL name)", s, FZ_BIT(SHMC_EINVAL));
    } else if (!valid) {
        fz_expect("shmc_open (bad name)", s, FZ_BIT(SHMC_ENAME));
    } else if (bad && !used_null_opts) {
        fz_expect("shmc_open (bad options)", s, FZ_BIT(SHMC_EINVAL));
    } else if (existing) {
        uint64_t ok;
        if (o.flags & SHMC_OPEN_CREATE_ONLY)
            ok = FZ_BIT(SHMC_EEXIST);
        else if ((o.size && o.size != S.in.size) || (o.max_key && o.max_key != S.in.max_key) ||
                 (o.max_value && o.max_value != S.in.max_value) ||
                 (o.slots && o.slots != S.in.slots) || (o.locks && o.locks != S.in.locks))
            ok = FZ_BIT(SHMC_EMISMATCH);
        else
            ok = FZ_BIT(SHMC_OK);
        fz_expect("shmc_open (the open cache)", s, ok);
    } else if (!used_null_opts && (o.flags & SHMC_OPEN_ATTACH_ONLY)) {
        fz_expect("shmc_open (attach-only, absent)", s, FZ_BIT(SHMC_ENOENT));
    } else {
        fz_expect("shmc_open (create)", s,
                  FZ_BIT(SHMC_OK) | FZ_BIT(SHMC_ETOOSMALL) | FZ_BIT(SHMC_ENOSPC));
    }
    if (s != SHMC_OK) {
        FZ_CHECK(c == NULL, "shmc_open failed (%s) but left a handle", shmc_strerror(s));
        char path[300];
        if (valid && !existing && strlen(name) < 250) {
            /* a refused creation leaves nothing behind */
            snprintf(path, sizeof path, "/dev/shm/%s", name);
            struct stat st;
            FZ_CHECK(stat(path, &st) != 0, "shmc_open refused (%s) but left %s",
                     shmc_strerror(s), path);
        }
        return;
    }
    shmc_info ci;
    fz_expect("shmc_info_get", shmc_info_get(c, &ci), FZ_BIT(SHMC_OK));
    if (!existing && !used_null_opts) {
        FZ_CHECK(!o.size || ci.size == o.size, "size %llu, asked %llu",
                 (unsigned long long)ci.size, (unsigned long long)o.size);
        FZ_CHECK(!o.max_key || ci.max_key == o.max_key, "max_key");
        FZ_CHECK(!o.max_value || ci.max_value == o.max_value, "max_value");
        FZ_CHECK(!o.slots || ci.slots == o.slots, "slots");
        FZ_CHECK(!o.locks || ci.locks == o.locks, "locks");
        char path[300];
        snprintf(path, sizeof path, "/dev/shm/%s", name);
        struct stat st;
        FZ_CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == (o.mode ? o.mode : 0600),
                 "mode %o, asked %o", st.st_mode & 0777, o.mode);
    }
    fz_expect("shmc_set (new cache)", shmc_set(c, "k", 1, "v", ci.max_value ? 1 : 0, 0, 0),
              FZ_BIT(SHMC_OK) | (existing ? slot_errs(1) : 0));
    fz_expect("shmc_close", shmc_close(c), FZ_BIT(SHMC_OK));
    if (!existing) {
        char copy[SHMC_MAX_NAME + 1];
        snprintf(copy, sizeof copy, "%s", name);
        fz_expect("shmc_destroy", shmc_destroy(copy), FZ_BIT(SHMC_OK));
        fz_expect("shmc_destroy (again)", shmc_destroy(copy), FZ_BIT(SHMC_ENOENT));
    }
}

/* ---- whole-cache calls ---- */

static int count_keys(void *ctx, const shmc_key_info *k)
{
    size_t *n = ctx;
    FZ_CHECK(k->klen >= 1 && k->klen <= S.in.max_key && k->vlen <= S.in.max_value,
             "keys_iter: klen %zu vlen %zu", k->klen, k->vlen);
    (*n)++;
    return 0;
}

static int stop_soon(void *ctx, const shmc_key_info *k)
{
    (void)k;
    unsigned *left = ctx;
    /* the cache may be used from the callback */
    (void)shmc_exists(S.c, k->key, k->klen);
    return --*left == 0;
}

static void op_whole(fz_in *in)
{
    uint8_t sub = fz_u8(in);
    switch (sub % 8) {
    case 0: {
        shmc_verify_report rep;
        shmc_status s = shmc_verify(S.c, (sub & 8) ? NULL : &rep);
        if (sub & 8) {
            fz_expect("shmc_verify (NULL)", s, FZ_BIT(SHMC_EINVAL));
            break;
        }
        FZ_CHECK(s == SHMC_OK, "verify on a healthy cache: %s: %s", shmc_strerror(s),
                 rep.first_error);
        shmc_stats st;
        fz_expect("shmc_stats_get", shmc_stats_get(S.c, &st), FZ_BIT(SHMC_OK));
        FZ_CHECK(st.items == rep.items, "stats.items %llu, verify counted %llu",
                 (unsigned long long)st.items, (unsigned long long)rep.items);
        FZ_CHECK(st.locks_capacity == S.in.locks, "locks_capacity");
        break;
    }
    case 1:
        fz_expect("shmc_flush", shmc_flush((sub & 8) ? NULL : S.c),
                  FZ_BIT((sub & 8) ? SHMC_EINVAL : SHMC_OK));
        if (!(sub & 8)) {
            size_t n = 0;
            fz_expect("shmc_keys_iter", shmc_keys_iter(S.c, NULL, count_keys, &n), FZ_BIT(SHMC_OK));
            FZ_CHECK(n == 0, "%zu keys after a flush", n);
        }
        break;
    case 2: {
        shmc_proc_info p[3];
        size_t n = 99;
        size_t max = (sub >> 3) % 4;
        int null_out = (sub & 0x80) && max;
        (void)shmc_exists(S.c, "k", 1); /* this thread takes a slot, if it has none */
        shmc_status s = shmc_procs(S.c, sub & 0x20, null_out ? NULL : p, max,
                                   (sub & 0x40) ? NULL : &n);
        fz_expect("shmc_procs", s, FZ_BIT(null_out || (sub & 0x40) ? SHMC_EINVAL : SHMC_OK));
        if (s == SHMC_OK) {
            FZ_CHECK(n >= 1, "procs: this thread is not listed");
            for (size_t i = 0; i < n && i < max; i++)
                FZ_CHECK(p[i].slot < S.in.slots && p[i].holds <= SHMC_MAX_HOLDS, "procs");
        }
        break;
    }
    case 3: {
        shmc_lock_info l[SHMC_MAX_HOLDS + 2];
        size_t n = 99, max = (sub >> 3) % (SHMC_MAX_HOLDS + 3);
        int null_out = (sub & 0x80) && max;
        shmc_status s = shmc_locks_list(S.c, 1, null_out ? NULL : l, max, &n);
        fz_expect("shmc_locks_list", s, FZ_BIT(null_out ? SHMC_EINVAL : SHMC_OK));
        if (s == SHMC_OK) {
            unsigned want = 0, maybe = 0;
            for (unsigned i = 0; i < S.nlocks; i++) {
                want += S.locks[i].held && !S.locks[i].stale;
                maybe += !S.locks[i].held && S.locks[i].lingering;
            }
            for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++) {
                int held = S.fills[i].active && !S.fills[i].stale;
                if (held && S.fills[i].maybe_stale)
                    maybe++;
                else
                    want += held;
            }
            FZ_CHECK(n >= want && n <= want + maybe, "locks_list: %zu held, we hold %u (+%u?)", n,
                     want, maybe);
            for (size_t i = 0; i < n && i < max; i++)
                FZ_CHECK(l[i].held && l[i].entry < S.in.locks && l[i].holder_slot < S.in.slots &&
                             l[i].token,
                         "locks_list: entry %u", l[i].entry);
        }
        break;
    }
    case 4: {
        uint64_t cursor = (sub & 8) ? fz_u64(in) : 0;
        unsigned left = 1 + fz_u8(in) % 4;
        shmc_status s = shmc_keys_iter((sub & 0x10) ? NULL : S.c, (sub & 0x20) ? NULL : &cursor,
                                       (sub & 0x40) ? NULL : stop_soon, &left);
        fz_expect("shmc_keys_iter", s, FZ_BIT((sub & 0x50) ? SHMC_EINVAL : SHMC_OK));
        break;
    }
    case 5: {
        shmc_info i;
        shmc_stats st;
        fz_expect("shmc_info_get (NULL)", shmc_info_get(S.c, NULL), FZ_BIT(SHMC_EINVAL));
        fz_expect("shmc_info_get (NULL c)", shmc_info_get(NULL, &i), FZ_BIT(SHMC_EINVAL));
        fz_expect("shmc_stats_get (NULL)", shmc_stats_get(S.c, NULL), FZ_BIT(SHMC_EINVAL));
        fz_expect("shmc_stats_get (NULL c)", shmc_stats_get(NULL, &st), FZ_BIT(SHMC_EINVAL));
        fz_expect("shmc_close (NULL)", shmc_close(NULL), FZ_BIT(SHMC_OK));
        shmc_thread_detach(NULL);
        int v = (int)fz_u32(in);
        const char *m = shmc_strerror((shmc_status)v);
        FZ_CHECK(m && *m, "strerror(%d)", v);
        for (int st2 = 0; st2 < SHMC_STATUS_COUNT_; st2++)
            FZ_CHECK(strcmp(shmc_strerror((shmc_status)st2), "unknown shmcache status") != 0,
                     "status %d has no message", st2);
        break;
    }
    case 6: /* detach: releases what this thread holds; the next call takes a slot */
        shmc_thread_detach(S.c);
        for (unsigned i = 0; i < S.nlocks; i++)
            S.locks[i].held = 0, S.locks[i].stale = 0;
        for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++)
            if (S.fills[i].active) {
                /* not ours any more: finishing says so and frees the key copy */
                fz_expect("shmc_fill_finish (after detach)",
                          shmc_fill_finish(S.c, &S.fills[i].f, "x", 1, 0, 0),
                          FZ_BIT(SHMC_ENOTOWNER));
                S.fills[i].active = 0;
            }
        break;
    default: /* the second handle */
        if (S.c2) {
            fz_expect("shmc_close (second)", shmc_close(S.c2), FZ_BIT(SHMC_OK));
            S.c2 = NULL;
        } else if (S.in.slots >= 2) { /* (one slot: the handles would compete for it) */
            shmc_options o = {.flags = SHMC_OPEN_ATTACH_ONLY};
            fz_expect("shmc_open (second)", shmc_open(S.name, &o, &S.c2), FZ_BIT(SHMC_OK));
        }
        break;
    }
}

/* ---- driver ---- */

static void begin(uint8_t cfgsel)
{
    const cfg *k = &CFGS[cfgsel % (sizeof CFGS / sizeof CFGS[0])];
    memset(&S.locks, 0, sizeof S.locks);
    memset(&S.fills, 0, sizeof S.fills);
    S.nlocks = 0;
    S.last_cas = 0;
    snprintf(S.name, sizeof S.name, "shmcfz-api-%ld", (long)getpid());
    (void)shmc_destroy(S.name);
    shmc_options o = {.size = k->size, .max_key = k->max_key, .max_value = k->max_value,
                      .slots = k->slots, .locks = k->locks, .flags = SHMC_OPEN_CREATE_ONLY};
    shmc_status s = shmc_open(S.name, &o, &S.c);
    FZ_CHECK(s == SHMC_OK, "creating the cache: %s", shmc_strerror(s));
    fz_expect("shmc_info_get", shmc_info_get(S.c, &S.in), FZ_BIT(SHMC_OK));
}

static void end(void)
{
    for (unsigned i = 0; i < SHMC_MAX_HOLDS; i++)
        if (S.fills[i].active)
            fz_expect("shmc_fill_abort (end)", shmc_fill_abort(S.c, &S.fills[i].f, 1, NULL, 0),
                      FZ_BIT(S.fills[i].stale ? SHMC_ENOTOWNER : SHMC_OK) |
                          (S.fills[i].maybe_stale ? FZ_BIT(SHMC_ENOTOWNER) : 0));
    for (unsigned i = 0; i < S.nlocks; i++)
        if (S.locks[i].held)
            (void)shmc_lock_release(S.c, S.locks[i].name, S.locks[i].n, S.locks[i].held);
    shmc_verify_report rep;
    shmc_status s = shmc_verify(S.c, &rep);
    FZ_CHECK(s == SHMC_OK, "verify at the end: %s: %s", shmc_strerror(s), rep.first_error);
    size_t n = 99;
    fz_expect("shmc_locks_list", shmc_locks_list(S.c, 1, NULL, 0, &n), FZ_BIT(SHMC_OK));
    unsigned lingering = 0;
    for (unsigned i = 0; i < S.nlocks; i++)
        lingering += S.locks[i].lingering && !S.locks[i].held;
    FZ_CHECK(n <= lingering, "%zu entries still held at the end (%u with an ended lease)", n,
             lingering);
    if (S.c2)
        shmc_close(S.c2);
    shmc_close(S.c);
    S.c = S.c2 = NULL;
    fz_expect("shmc_destroy", shmc_destroy(S.name), FZ_BIT(SHMC_OK));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (trace < 0)
        trace = getenv("SHMC_FUZZ_TRACE") != NULL;
    fz_in in;
    fz_init(&in, data, size);
    begin(fz_u8(&in));
    for (int op = 0; op < MAX_OPS && fz_more(&in); op++) {
        uint8_t code = fz_u8(&in);
        if (trace)
            fprintf(stderr, "op %d: %u, then %02x (at byte %zu)\n", op, code % 11u,
                    in.pos < in.n ? in.p[in.pos] : 0, in.pos);
        switch (code % 11) {
        case 0: case 1: op_read(&in); break;
        case 2: op_write(&in); break;
        case 3: op_cas(&in); break;
        case 4: op_delete(&in); break;
        case 5: op_counter(&in); break;
        case 6: op_modify(&in); break;
        case 7: op_many(&in); break;
        case 8: op_lock(&in); break;
        case 9: op_fill(&in); break;
        default:
            if (fz_u8(&in) & 1)
                op_open(&in);
            else
                op_whole(&in);
            break;
        }
    }
    end();
    return 0;
}
