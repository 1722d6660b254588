/*
 * peer_client.c — minimal blocking memcached (text) and Redis (RESP2)
 * clients for the comparison benchmark.  See peer_client.h.
 */
#include "peer_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PC_RBUF_INIT (64u << 10)
#define PC_WBUF_INIT (64u << 10)
#define PC_PIPE_SEND (256u << 10)   /* pipelined preload: send when this much is queued */

/* ---- connection and buffers ---- */

int pc_connect_unix(pconn *pc, const char *path, unsigned wait_ms)
{
    memset(pc, 0, sizeof *pc);
    pc->fd = -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (unsigned waited = 0;; waited += 10) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            pc->fd = fd;
            break;
        }
        int e = errno;
        close(fd);
        if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) || waited >= wait_ms) {
            errno = e;
            return -1;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    pc->rcap = PC_RBUF_INIT;
    pc->wcap = PC_WBUF_INIT;
    pc->rbuf = malloc(pc->rcap);
    pc->wbuf = malloc(pc->wcap);
    if (!pc->rbuf || !pc->wbuf) {
        pc_close(pc);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void pc_close(pconn *pc)
{
    if (pc->fd >= 0)
        close(pc->fd);
    free(pc->rbuf);
    free(pc->wbuf);
    memset(pc, 0, sizeof *pc);
    pc->fd = -1;
}

static int pc_put(pconn *pc, const void *p, size_t n)
{
    if (pc->wlen + n > pc->wcap) {
        size_t cap = pc->wcap ? pc->wcap : PC_WBUF_INIT;
        while (cap < pc->wlen + n)
            cap *= 2;
        char *nb = realloc(pc->wbuf, cap);
        if (!nb)
            return -1;
        pc->wbuf = nb;
        pc->wcap = cap;
    }
    memcpy(pc->wbuf + pc->wlen, p, n);
    pc->wlen += n;
    return 0;
}

static int pc_send(pconn *pc);

int pc_queue(pconn *pc, const void *p, size_t n)
{
    if (pc_put(pc, p, n) != 0)
        return -1;
    return pc->wlen >= PC_PIPE_SEND ? pc_send(pc) : 0;
}

static int pc_puts(pconn *pc, const char *s)
{
    return pc_put(pc, s, strlen(s));
}

static int pc_send(pconn *pc)
{
    size_t off = 0;
    while (off < pc->wlen) {
        ssize_t n = write(pc->fd, pc->wbuf + off, pc->wlen - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)n;
    }
    pc->wlen = 0;
    return 0;
}

/* Reads more bytes into the read buffer, first moving the unread part to
 * its start and growing it if it is full.  0 or -1 (error or EOF). */
static int pc_fill(pconn *pc)
{
    if (pc->rpos > 0) {
        memmove(pc->rbuf, pc->rbuf + pc->rpos, pc->rlen - pc->rpos);
        pc->rlen -= pc->rpos;
        pc->rpos = 0;
    }
    if (pc->rlen == pc->rcap) {
        char *nb = realloc(pc->rbuf, pc->rcap * 2);
        if (!nb)
            return -1;
        pc->rbuf = nb;
        pc->rcap *= 2;
    }
    for (;;) {
        ssize_t n = read(pc->fd, pc->rbuf + pc->rlen, pc->rcap - pc->rlen);
        if (n > 0) {
            pc->rlen += (size_t)n;
            return 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = ECONNRESET;
        return -1;
    }
}

/* Next CRLF-terminated line, without the CRLF.  The pointer is valid until
 * the next read from pc. */
static int pc_line(pconn *pc, const char **line, size_t *len)
{
    size_t scanned = pc->rpos;
    for (;;) {
        for (size_t i = scanned; i + 1 < pc->rlen; i++) {
            if (pc->rbuf[i] == '\r' && pc->rbuf[i + 1] == '\n') {
                *line = pc->rbuf + pc->rpos;
                *len = i - pc->rpos;
                pc->rpos = i + 2;
                return 0;
            }
        }
        size_t done = pc->rlen > pc->rpos ? pc->rlen - pc->rpos : 0;
        if (pc_fill(pc) != 0)
            return -1;
        scanned = done ? done - 1 : 0;  /* pc_fill moved the unread bytes to 0 */
    }
}

/* Reads exactly n bytes into dst (NULL: discard them). */
static int pc_read_exact(pconn *pc, void *dst, size_t n)
{
    char *d = dst;
    while (n > 0) {
        if (pc->rpos == pc->rlen) {
            pc->rpos = pc->rlen = 0;
            if (pc_fill(pc) != 0)
                return -1;
        }
        size_t avail = pc->rlen - pc->rpos;
        size_t take = avail < n ? avail : n;
        if (d) {
            memcpy(d, pc->rbuf + pc->rpos, take);
            d += take;
        }
        pc->rpos += take;
        n -= take;
    }
    return 0;
}

static int pc_expect_crlf(pconn *pc)
{
    char crlf[2];
    if (pc_read_exact(pc, crlf, 2) != 0)
        return -1;
    return crlf[0] == '\r' && crlf[1] == '\n' ? 0 : -1;
}

static int parse_ll(const char *s, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (n > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n)
        return -1;
    long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static int line_is(const char *line, size_t len, const char *word)
{
    size_t wl = strlen(word);
    return len == wl && memcmp(line, word, wl) == 0;
}

static int pc_put_u64(pconn *pc, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    return pc_put(pc, tmp, (size_t)n);
}

/* ---- memcached ---- */

/* Splits a line (not NUL-terminated) into at most max space-separated tokens. */
static int split_tokens(const char *line, size_t len, const char **tok, size_t *tlen, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len && n < max) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        tok[n] = line + start;
        tlen[n] = i - start;
        n++;
    }
    return n;
}

int mc_get(pconn *pc, const void *key, size_t klen, void *buf, size_t buflen, size_t *vlen,
           uint64_t *cas)
{
    if (pc_puts(pc, cas ? "gets " : "get ") || pc_put(pc, key, klen) || pc_puts(pc, "\r\n") ||
        pc_send(pc))
        return -1;
    const char *line;
    size_t len;
    if (pc_line(pc, &line, &len) != 0)
        return -1;
    if (line_is(line, len, "END"))
        return 0;
    const char *tok[6];
    size_t tl[6];
    int nt = split_tokens(line, len, tok, tl, 6);
    long long bytes, cv = 0;
    if (nt < 4 || !line_is(tok[0], tl[0], "VALUE") || parse_ll(tok[3], tl[3], &bytes) != 0 ||
        bytes < 0 || (cas && (nt < 5 || parse_ll(tok[4], tl[4], &cv) != 0)))
        return -1;
    size_t n = (size_t)bytes;
    if (vlen)
        *vlen = n;
    if (cas)
        *cas = (uint64_t)cv;
    if (pc_read_exact(pc, n <= buflen ? buf : NULL, n) != 0 || pc_expect_crlf(pc) != 0)
        return -1;
    if (pc_line(pc, &line, &len) != 0 || !line_is(line, len, "END"))
        return -1;
    return 1;
}

int mc_store(pconn *pc, const char *cmd, const void *key, size_t klen, const void *val,
             size_t vlen, uint32_t flags, uint32_t exptime, uint64_t cas_unique)
{
    int is_cas = strcmp(cmd, "cas") == 0;
    if (pc_puts(pc, cmd) || pc_puts(pc, " ") || pc_put(pc, key, klen) || pc_puts(pc, " ") ||
        pc_put_u64(pc, flags) || pc_puts(pc, " ") || pc_put_u64(pc, exptime) ||
        pc_puts(pc, " ") || pc_put_u64(pc, vlen))
        return -1;
    if (is_cas && (pc_puts(pc, " ") || pc_put_u64(pc, cas_unique)))
        return -1;
    if (pc_puts(pc, "\r\n") || pc_put(pc, val, vlen) || pc_puts(pc, "\r\n") || pc_send(pc))
        return -1;
    const char *line;
    size_t len;
    if (pc_line(pc, &line, &len) != 0)
        return -1;
    if (line_is(line, len, "STORED"))
        return MC_STORED;
    if (line_is(line, len, "NOT_STORED"))
        return MC_NOT_STORED;
    if (line_is(line, len, "EXISTS"))
        return MC_EXISTS;
    if (line_is(line, len, "NOT_FOUND"))
        return MC_NOT_FOUND;
    return -1;
}

int mc_delete(pconn *pc, const void *key, size_t klen)
{
    if (pc_puts(pc, "delete ") || pc_put(pc, key, klen) || pc_puts(pc, "\r\n") || pc_send(pc))
        return -1;
    const char *line;
    size_t len;
    if (pc_line(pc, &line, &len) != 0)
        return -1;
    if (line_is(line, len, "DELETED"))
        return 1;
    if (line_is(line, len, "NOT_FOUND"))
        return 0;
    return -1;
}

int mc_flush_all(pconn *pc)
{
    if (pc_puts(pc, "flush_all\r\n") || pc_send(pc))
        return -1;
    const char *line;
    size_t len;
    if (pc_line(pc, &line, &len) != 0 || !line_is(line, len, "OK"))
        return -1;
    return 0;
}

int mc_stat(pconn *pc, const char *group, const char *name, uint64_t *out)
{
    if (pc_puts(pc, "stats") || (group && (pc_puts(pc, " ") || pc_puts(pc, group))) ||
        pc_puts(pc, "\r\n") || pc_send(pc))
        return -1;
    int found = 0;
    size_t nl = strlen(name);
    for (;;) {
        const char *line;
        size_t len;
        if (pc_line(pc, &line, &len) != 0)
            return -1;
        if (line_is(line, len, "END"))
            break;
        const char *tok[3];
        size_t tl[3];
        int nt = split_tokens(line, len, tok, tl, 3);
        if (nt < 3 || !line_is(tok[0], tl[0], "STAT"))
            return -1;
        long long v;
        if (tl[1] == nl && memcmp(tok[1], name, nl) == 0 && parse_ll(tok[2], tl[2], &v) == 0) {
            *out = (uint64_t)v;
            found = 1;
        }
    }
    return found ? 0 : 1;
}

int mc_set_pipelined(pconn *pc, const void *key, size_t klen, const void *val, size_t vlen,
                     uint32_t exptime)
{
    if (pc_puts(pc, "set ") || pc_put(pc, key, klen) || pc_puts(pc, " 0 ") ||
        pc_put_u64(pc, exptime) || pc_puts(pc, " ") || pc_put_u64(pc, vlen) ||
        pc_puts(pc, " noreply\r\n") || pc_put(pc, val, vlen) || pc_puts(pc, "\r\n"))
        return -1;
    if (pc->wlen >= PC_PIPE_SEND)
        return pc_send(pc);
    return 0;
}

int mc_sync(pconn *pc)
{
    if (pc_puts(pc, "version\r\n") || pc_send(pc))
        return -1;
    for (;;) {
        const char *line;
        size_t len;
        if (pc_line(pc, &line, &len) != 0)
            return -1;
        if (len >= 8 && memcmp(line, "VERSION ", 8) == 0)
            return 0;
        /* anything else is the reply to a failed noreply command */
        return -1;
    }
}

/* ---- Redis ---- */

int rd_append(pconn *pc, int argc, const void *const *argv, const size_t *lens)
{
    if (pc_puts(pc, "*") || pc_put_u64(pc, (uint64_t)argc) || pc_puts(pc, "\r\n"))
        return -1;
    for (int i = 0; i < argc; i++) {
        if (pc_puts(pc, "$") || pc_put_u64(pc, lens[i]) || pc_puts(pc, "\r\n") ||
            pc_put(pc, argv[i], lens[i]) || pc_puts(pc, "\r\n"))
            return -1;
    }
    return 0;
}

int rd_flush(pconn *pc)
{
    return pc_send(pc);
}

int rd_read(pconn *pc, rreply *r, void *buf, size_t cap)
{
    const char *line;
    size_t len;
    memset(r, 0, sizeof *r);
    if (pc_line(pc, &line, &len) != 0 || len < 1)
        return -1;
    r->type = line[0];
    switch (line[0]) {
    case RD_STATUS:
    case RD_ERROR:
        r->len = len - 1;
        if (buf && r->len <= cap) {
            memcpy(buf, line + 1, r->len);
            r->copied = 1;
        }
        return 0;
    case RD_INT:
        return parse_ll(line + 1, len - 1, &r->integer);
    case RD_BULK: {
        long long n;
        if (parse_ll(line + 1, len - 1, &n) != 0)
            return -1;
        if (n < 0) {
            r->type = RD_NIL;
            return 0;
        }
        r->len = (size_t)n;
        r->copied = buf && r->len <= cap;
        if (pc_read_exact(pc, r->copied ? buf : NULL, r->len) != 0)
            return -1;
        return pc_expect_crlf(pc);
    }
    case RD_ARRAY: {
        long long n;
        if (parse_ll(line + 1, len - 1, &n) != 0)
            return -1;
        if (n < 0) {
            r->type = RD_NIL;
            return 0;
        }
        r->integer = n;
        for (long long i = 0; i < n; i++) {
            rreply sub;
            if (rd_read(pc, &sub, i == 0 ? buf : NULL, i == 0 ? cap : 0) != 0)
                return -1;
            if (i == 0) {
                r->len = sub.len;
                r->copied = sub.copied;
            }
        }
        return 0;
    }
    default:
        return -1;
    }
}

int rd_cmd(pconn *pc, rreply *r, void *buf, size_t cap, int argc, const void *const *argv,
           const size_t *lens)
{
    if (rd_append(pc, argc, argv, lens) != 0 || pc_send(pc) != 0)
        return -1;
    return rd_read(pc, r, buf, cap);
}

int rd_cmds(pconn *pc, rreply *r, void *buf, size_t cap, ...)
{
    const void *argv[16];
    size_t lens[16];
    int argc = 0;
    va_list ap;
    va_start(ap, cap);
    for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *)) {
        if (argc == 16) {
            va_end(ap);
            return -1;
        }
        argv[argc] = a;
        lens[argc] = strlen(a);
        argc++;
    }
    va_end(ap);
    return rd_cmd(pc, r, buf, cap, argc, argv, lens);
}

long rd_pipe_drain(pconn *pc, unsigned n)
{
    if (pc_send(pc) != 0)
        return -1;
    long errors = 0;
    for (unsigned i = 0; i < n; i++) {
        rreply r;
        if (rd_read(pc, &r, NULL, 0) != 0)
            return -1;
        if (r.type == RD_ERROR)
            errors++;
    }
    return errors;
}
