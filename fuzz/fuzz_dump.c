/*
 * fuzz_dump.c — the dump-file parser of shmcache-cli load (tools/dumpfile.c).
 *
 * Input byte 0 picks a mode:
 *   even: the rest is a dump file as is;
 *   odd:  the rest describes items (lengths, flags, expiry, bytes) that are
 *         written as a valid dump (with correct checksums, which random
 *         bytes almost never have), then damaged by a few flips, a cut or
 *         appended bytes also taken from the input.
 * Checks: the parser never crashes or reads out of bounds (ASan), and a file
 * it accepts is canonical: writing its items back gives the same bytes.  In
 * the odd mode an undamaged file must be accepted with every item.
 */
#include "fuzz.h"
#include "dumpfile.h"

typedef struct sink {
    FILE *f;
    uint64_t n;
} sink;

static bool rewrite(void *ctx, const dump_item *it)
{
    sink *s = ctx;
    FZ_CHECK(it->klen >= 1 && it->klen <= DUMP_MAX_KEY, "klen %u", it->klen);
    FZ_CHECK(it->vlen <= DUMP_MAX_VALUE, "vlen %u", it->vlen);
    FZ_CHECK(dump_write_item(s->f, it), "write");
    s->n++;
    return true;
}

/* Parses buf; if accepted, checks that it is canonical. */
static bool parse_and_check(const uint8_t *buf, size_t len)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    FZ_CHECK(f != NULL, "open_memstream");
    dump_info info;
    char err[256];
    sink s = {.f = f};
    uint64_t dumped_at = 0; /* the header field the rewrite must keep */
    for (int i = 7; len >= 24 && i >= 0; i--)
        dumped_at = dumped_at << 8 | buf[16 + i];
    FZ_CHECK(dump_write_header(f, dumped_at), "header");
    bool ok = dump_parse(buf, len, rewrite, &s, &info, err, sizeof err);
    if (ok) {
        FZ_CHECK(info.items == s.n, "items %llu vs %llu", (unsigned long long)info.items,
                 (unsigned long long)s.n);
        FZ_CHECK(dump_write_end(f, s.n), "end");
        FZ_CHECK(fflush(f) == 0, "flush");
        FZ_CHECK(outlen == len && memcmp(out, buf, len) == 0,
                 "accepted a non-canonical file (%zu bytes, rewritten %zu)", len, outlen);
    } else {
        FZ_CHECK(err[0] != '\0', "rejected without a message");
    }
    fclose(f);
    free(out);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fz_in in;
    fz_init(&in, data + 1, size - 1);
    if (!(data[0] & 1)) {
        parse_and_check(data + 1, size - 1);
        return 0;
    }
    /* Build a valid dump from the input. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    FZ_CHECK(f != NULL, "open_memstream");
    FZ_CHECK(dump_write_header(f, fz_u64(&in)), "header");
    unsigned nitems = fz_u8(&in) % 8;
    static uint8_t bytes[2 * DUMP_MAX_KEY + 64];
    for (unsigned i = 0; i < nitems; i++) {
        uint32_t klen = 1 + fz_u16(&in) % DUMP_MAX_KEY;
        uint32_t vlen = fz_u16(&in) % (DUMP_MAX_KEY + 64);
        bool counter = fz_u8(&in) & 1;
        if (counter)
            vlen = 8;
        dump_item it = {.key = bytes, .klen = klen, .val = bytes + klen, .vlen = vlen,
                        .flags = fz_u32(&in), .kind = counter ? DUMP_KIND_COUNTER : DUMP_KIND_BYTES,
                        .expires_at = fz_u64(&in)};
        size_t got = fz_bytes(&in, bytes, klen + vlen);
        memset(bytes + got, 0x61, klen + vlen - got);
        FZ_CHECK(dump_write_item(f, &it), "item");
    }
    FZ_CHECK(dump_write_end(f, nitems), "end");
    fclose(f);
    /* Damage it (maybe). */
    unsigned nflips = fz_u8(&in) % 4;
    bool damaged = false;
    for (unsigned i = 0; i < nflips && len; i++) {
        size_t at = fz_u32(&in) % len;
        uint8_t x = fz_u8(&in);
        buf[at] ^= (char)x;
        damaged |= x != 0;
    }
    uint8_t cut = fz_u8(&in);
    if (cut & 1) {
        size_t to = fz_u32(&in) % (len + 1);
        damaged |= to != len;
        len = to;
    } else if (cut & 2) {
        char *nb = realloc(buf, len + 16);
        FZ_CHECK(nb != NULL, "realloc");
        buf = nb;
        memset(buf + len, 0, 16);
        len += fz_bytes(&in, buf + len, 16) + 1; /* at least one extra byte */
        damaged = true;
    }
    bool ok = parse_and_check((const uint8_t *)buf, len);
    FZ_CHECK(ok || damaged, "rejected an undamaged dump of %u items", nitems);
    free(buf);
    return 0;
}
