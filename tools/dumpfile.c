/*
 * dumpfile.c — writer and validating parser of the dump format (see
 * dumpfile.h).  The parser is a fuzz target: it must reject any input it
 * does not fully understand, with a message, and never read past the end.
 */
#include "dumpfile.h"

#include <inttypes.h>
#include <string.h>

static const char DUMP_MAGIC[8] = {'S', 'H', 'M', 'C', 'D', 'U', 'M', 'P'};

#define TYPE_ITEM 1u
#define TYPE_END 2u

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A 64-bit checksum, chained over several byte ranges: 8 bytes per step,
 * each range's length mixed in, so moving bytes between ranges changes it.
 * It guards against damage, not against someone forging a file. */
static uint64_t rotl(uint64_t x, int r) { return x << r | x >> (64 - r); }

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v * 0x9e3779b97f4a7c15ull;
    return rotl(h, 29) * 0xbf58476d1ce4e5b9ull;
}

static uint64_t check_step(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        h = mix(h, get64(b + i));
    uint64_t tail = 0;
    for (size_t k = 0; i + k < n; k++)
        tail |= (uint64_t)b[i + k] << (8 * k);
    h = mix(h, tail);
    return mix(h, (uint64_t)n);
}

static uint64_t check_final(uint64_t h)
{
    h ^= h >> 31;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

static uint64_t record_check(const uint8_t *rec32, const void *key, size_t klen,
                             const void *val, size_t vlen)
{
    uint64_t h = check_step(0x53484d4344554d50ull, rec32, 32);
    if (klen)
        h = check_step(h, key, klen);
    if (vlen)
        h = check_step(h, val, vlen);
    return check_final(h);
}

/* ---- writing ---- */

bool dump_write_header(FILE *f, uint64_t dumped_at)
{
    uint8_t h[DUMP_HDR_SIZE] = {0};
    memcpy(h, DUMP_MAGIC, 8);
    put32(h + 8, DUMP_VERSION);
    put32(h + 12, DUMP_HDR_SIZE);
    put64(h + 16, dumped_at);
    return fwrite(h, 1, sizeof h, f) == sizeof h;
}

bool dump_write_item(FILE *f, const dump_item *it)
{
    uint8_t r[DUMP_REC_SIZE] = {0};
    put32(r, TYPE_ITEM);
    put32(r + 4, it->klen);
    put32(r + 8, it->vlen);
    put32(r + 12, it->flags);
    put32(r + 16, it->kind);
    put64(r + 24, it->expires_at);
    put64(r + 32, record_check(r, it->key, it->klen, it->val, it->vlen));
    return fwrite(r, 1, sizeof r, f) == sizeof r &&
           fwrite(it->key, 1, it->klen, f) == it->klen &&
           (!it->vlen || fwrite(it->val, 1, it->vlen, f) == it->vlen);
}

bool dump_write_end(FILE *f, uint64_t items)
{
    uint8_t r[DUMP_REC_SIZE] = {0};
    put32(r, TYPE_END);
    put64(r + 24, items);
    put64(r + 32, record_check(r, NULL, 0, NULL, 0));
    return fwrite(r, 1, sizeof r, f) == sizeof r;
}

/* ---- parsing ---- */

#define BAD(...)                                  \
    do {                                          \
        if (err && errlen)                        \
            snprintf(err, errlen, __VA_ARGS__);   \
        return false;                             \
    } while (0)

/* One pass over the records; calls fn only when fn is not NULL. */
static bool walk(const uint8_t *b, size_t len, dump_item_fn fn, void *ctx, dump_info *info,
                 char *err, size_t errlen)
{
    size_t pos = DUMP_HDR_SIZE;
    uint64_t n = 0, bytes = 0;
    for (;;) {
        if (len - pos < DUMP_REC_SIZE)
            BAD("truncated: the file ends at byte %zu, inside or before record %" PRIu64
                " (no end record)", len, n + 1);
        const uint8_t *r = b + pos;
        uint32_t type = get32(r);
        if (type == TYPE_END) {
            for (size_t i = 4; i < 24; i++)
                if (r[i])
                    BAD("corrupt end record at byte %zu (non-zero reserved bytes)", pos);
            if (get64(r + 32) != record_check(r, NULL, 0, NULL, 0))
                BAD("corrupt end record at byte %zu (checksum mismatch)", pos);
            if (get64(r + 24) != n)
                BAD("the end record at byte %zu counts %" PRIu64 " items, the file has %" PRIu64,
                    pos, get64(r + 24), n);
            if (len - pos != DUMP_REC_SIZE)
                BAD("%zu bytes of trailing garbage after the end record", len - pos - DUMP_REC_SIZE);
            break;
        }
        if (type != TYPE_ITEM)
            BAD("record %" PRIu64 " at byte %zu has an unknown type %" PRIu32, n + 1, pos, type);
        uint32_t klen = get32(r + 4), vlen = get32(r + 8), kind = get32(r + 16);
        if (klen == 0 || klen > DUMP_MAX_KEY)
            BAD("record %" PRIu64 " at byte %zu: bad key length %" PRIu32, n + 1, pos, klen);
        if (vlen > DUMP_MAX_VALUE)
            BAD("record %" PRIu64 " at byte %zu: bad value length %" PRIu32, n + 1, pos, vlen);
        if (kind != DUMP_KIND_BYTES && !(kind == DUMP_KIND_COUNTER && vlen == 8))
            BAD("record %" PRIu64 " at byte %zu: bad kind %" PRIu32, n + 1, pos, kind);
        if (get32(r + 20))
            BAD("record %" PRIu64 " at byte %zu: non-zero reserved field", n + 1, pos);
        size_t body = (size_t)klen + vlen;
        if (len - pos - DUMP_REC_SIZE < body)
            BAD("truncated: record %" PRIu64 " at byte %zu needs %zu bytes of key and value, "
                "the file has %zu", n + 1, pos, body, len - pos - DUMP_REC_SIZE);
        const uint8_t *key = r + DUMP_REC_SIZE, *val = key + klen;
        if (get64(r + 32) != record_check(r, key, klen, val, vlen))
            BAD("record %" PRIu64 " at byte %zu is damaged (checksum mismatch)", n + 1, pos);
        if (fn) {
            dump_item it = {.key = key, .klen = klen, .val = val, .vlen = vlen,
                            .flags = get32(r + 12), .kind = kind, .expires_at = get64(r + 24)};
            if (!fn(ctx, &it))
                BAD("stopped at record %" PRIu64, n + 1);
        }
        n++;
        bytes += body;
        pos += DUMP_REC_SIZE + body;
    }
    if (info) {
        info->dumped_at = get64(b + 16);
        info->items = n;
        info->bytes = bytes;
    }
    return true;
}

bool dump_parse(const void *buf, size_t len, dump_item_fn fn, void *ctx, dump_info *info,
                char *err, size_t errlen)
{
    const uint8_t *b = buf;
    if (!b || len < DUMP_HDR_SIZE)
        BAD("not a shmcache dump (%zu bytes, shorter than its header)", len);
    if (memcmp(b, DUMP_MAGIC, 8) != 0)
        BAD("not a shmcache dump (no SHMCDUMP magic)");
    if (get32(b + 8) != DUMP_VERSION)
        BAD("dump format version %" PRIu32 " (this tool reads version %u)", get32(b + 8),
            DUMP_VERSION);
    if (get32(b + 12) != DUMP_HDR_SIZE || get64(b + 24))
        BAD("corrupt dump header");
    /* Validate everything before the first callback: a corrupt file loads nothing. */
    if (!walk(b, len, NULL, NULL, info, err, errlen))
        return false;
    return !fn || walk(b, len, fn, ctx, info, err, errlen);
}
