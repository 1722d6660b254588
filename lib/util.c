/*
 * util.c — the clock, the keyed hash, robust mutex set-up and status strings.
 *
 * One clock (CLOCK_MONOTONIC, shared by every process of the host) serves
 * TTLs and leases, so a wall-clock step never expires or revives entries.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* +1 so that no real time is ever 0, which means "never" in items. */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1u;
}

static int shared_mutex_init(pthread_mutex_t *m, int type)
{
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r)
        return r;
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!r)
        r = pthread_mutexattr_settype(&a, type);
    if (!r)
        r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return r;
}

int robust_mutex_init(pthread_mutex_t *m)
{
    return shared_mutex_init(m, PTHREAD_MUTEX_NORMAL);
}

int hold_mutex_init(pthread_mutex_t *m)
{
    return shared_mutex_init(m, PTHREAD_MUTEX_ERRORCHECK);
}

/* glibc keeps a mutex's type and attributes in its __kind word and takes
 * its code paths from it on every call: robust or not, process-shared or
 * not, priority inheritance (where it asserts on kernel answers), lock
 * elision (the fuzzer got a SIGILL there from a damaged kind).  Every mutex
 * of a segment comes from robust_mutex_init or hold_mutex_init, whose kind
 * never changes afterwards, so an attacher can check them all. */
#if defined(__GLIBC__)
static int mutex_kinds[2];
static pthread_once_t mutex_kinds_once = PTHREAD_ONCE_INIT;

static void init_mutex_kinds(void)
{
    pthread_mutex_t m;
    if (robust_mutex_init(&m) == 0) {
        mutex_kinds[0] = m.__data.__kind;
        pthread_mutex_destroy(&m);
    }
    if (hold_mutex_init(&m) == 0) {
        mutex_kinds[1] = m.__data.__kind;
        pthread_mutex_destroy(&m);
    }
}
#endif

bool mutex_kind_ok(const pthread_mutex_t *m, bool hold)
{
#if defined(__GLIBC__)
    pthread_once(&mutex_kinds_once, init_mutex_kinds);
    return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == mutex_kinds[hold];
#else
    (void)m, (void)hold;
    return true;
#endif
}

int mutex_lock_until(pthread_mutex_t *m, uint64_t deadline)
{
#if defined(__SANITIZE_THREAD__)
    /* TSan (gcc 12) does not intercept pthread_mutex_clocklock and would not
     * see the lock taken: convert to CLOCK_REALTIME for timedlock there. */
    uint64_t now = now_ms();
    uint64_t left = deadline > now ? deadline - now : 0;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t ns = (uint64_t)rt.tv_nsec + (left % 1000) * 1000000u;
    rt.tv_sec += (time_t)(left / 1000 + ns / 1000000000u);
    rt.tv_nsec = (long)(ns % 1000000000u);
    return pthread_mutex_timedlock(m, &rt);
#else
    uint64_t ms = deadline - 1; /* now_ms() is CLOCK_MONOTONIC + 1 ms */
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#endif
}

/* A mutex in the segment whose futex word names a holder that no longer
 * exists, without the kernel's FUTEX_OWNER_DIED mark, would make every
 * locker wait forever: the kernel marks a robust mutex when its holder dies
 * holding it (before the holder's TID disappears), so such a word was never
 * left by a holder that died.  It comes from damage, or from a segment
 * copied or restored with its locks held.  Marks it as the kernel marks a
 * dead holder's mutex (and wakes a waiter), so that the next locker gets
 * EOWNERDEAD and recovers as from any dead holder.  One CAS from the exact
 * word read, so a mutex that changed meanwhile is left alone.  Returns
 * whether it marked the mutex. */
bool mutex_mark_vanished(pthread_mutex_t *m)
{
#if defined(__GLIBC__)
    /* The futex word (kernel robust-futex ABI): holder TID | FUTEX_WAITERS
     * | FUTEX_OWNER_DIED.  glibc keeps it as the mutex's first int. */
    int *word = &m->__data.__lock;
    int v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    pid_t tid = (pid_t)((unsigned)v & FUTEX_TID_MASK);
    if (!tid || ((unsigned)v & FUTEX_OWNER_DIED) || tid == (pid_t)syscall(SYS_gettid))
        return false;
    if (kill(tid, 0) == 0 || errno != ESRCH)
        return false; /* a live holder (or one we may not signal: alive) */
    int want = (int)((unsigned)v | FUTEX_OWNER_DIED);
    if (!__atomic_compare_exchange_n(word, &v, want, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return false;
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
    return true;
#else
    (void)m;
    return false;
#endif
}

uint32_t mutex_owner_tid(pthread_mutex_t *m)
{
#if defined(__GLIBC__)
    unsigned v = (unsigned)__atomic_load_n(&m->__data.__lock, __ATOMIC_ACQUIRE);
    return (v & FUTEX_OWNER_DIED) ? 0 : v & FUTEX_TID_MASK;
#else
    (void)m;
    return 0;
#endif
}

int mutex_lock_bounded(pthread_mutex_t *m, uint64_t wait_ms)
{
    uint64_t deadline = now_ms() + wait_ms;
    mutex_mark_vanished(m); /* (one kill(tid, 0) before the first sleep) */
    for (;;) {
        /* Wake up now and then to look at the holder. */
        uint64_t now = now_ms();
        uint64_t slice = now + 50 < deadline ? now + 50 : deadline;
        int r = mutex_lock_until(m, slice);
        if (r != ETIMEDOUT)
            return r;
        if (!mutex_mark_vanished(m) && now_ms() >= deadline)
            return ETIMEDOUT;
    }
}

shmc_status lock_status(int r)
{
    if (r == 0 || r == EOWNERDEAD)
        return SHMC_OK;
    if (r == ETIMEDOUT)
        return SHMC_ETIMEDOUT;
    errno = r;
    return r == ENOTRECOVERABLE ? SHMC_ECORRUPT : SHMC_ESYS;
}

shmc_status robust_lock(pthread_mutex_t *m, uint64_t wait_ms, bool *died)
{
    int r = mutex_lock_bounded(m, wait_ms);
    if (died)
        *died = r == EOWNERDEAD;
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(m);
    return lock_status(r);
}

uint64_t random_seed(void)
{
#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
    /* Fuzz builds (fuzz/meson.build): one hash seed in every run, so that an
     * input which made a run fail makes the next one fail the same way (the
     * seed decides which index bucket and stripe lock a key uses). */
    return 0x5eed5eed5eed5eedull;
#endif
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = hash_fold_((uint64_t)ts.tv_nsec ^ HK0, (uint64_t)getpid() ^ HK1);
    }
    return s | 1;
}

static const char *const messages[SHMC_STATUS_COUNT_] = {
    [SHMC_OK] = "success",
    [SHMC_NOT_FOUND] = "key not found (absent or expired)",
    [SHMC_EXISTS] = "key already exists",
    [SHMC_EBUFSIZE] = "buffer too small for the value (needed size returned)",
    [SHMC_EKEYLEN] = "key is empty or longer than the cache's max_key",
    [SHMC_EVALLEN] = "value is longer than the cache's max_value",
    [SHMC_EINVAL] = "invalid argument",
    [SHMC_ENAME] = "invalid cache name (use 1-200 of [A-Za-z0-9._-], not starting with '.')",
    [SHMC_ENOENT] = "no cache of that name exists",
    [SHMC_EEXIST] = "a cache of that name already exists",
    [SHMC_EACCES] = "permission denied on the cache segment",
    [SHMC_EVERSION] = "segment was made by an incompatible shmcache version or layout",
    [SHMC_EMISMATCH] = "segment exists with other creation parameters",
    [SHMC_ECORRUPT] = "segment is corrupt or truncated",
    [SHMC_ENOMEM] = "out of cache memory: every storage segment is pinned",
    [SHMC_ENOSLOTS] = "all participant slots are taken by live threads",
    [SHMC_ENAMESPACE] = "segment belongs to another PID namespace",
    [SHMC_ETIMEDOUT] = "timed out",
    [SHMC_ESYS] = "system call failed (see errno)",
    [SHMC_ETOOSMALL] = "cache size too small for its tables and max_value (raise size, or lower max_value or slots)",
    [SHMC_STALE] = "the entry changed since its CAS token was read",
    [SHMC_ENOTNUM] = "the value is not a counter (1-20 decimal digits, or a binary counter)",
    [SHMC_EBUSY] = "the lock is held by another owner",
    [SHMC_ENOTOWNER] = "not the current owner (released already, or the lease or fill deadline passed and another took over)",
    [SHMC_ETABLEFULL] = "the lock and singleflight table is full (raise options.locks)",
    [SHMC_EHOLDS] = "this thread already holds the most locks and fills it may hold at once",
    [SHMC_LEADER] = "you are the leader of this fill: compute the value, then finish or abort",
    [SHMC_EFILL] = "the fill of this key failed (the leader reported an error)",
    [SHMC_ENOSPC] = "not enough free space in /dev/shm for a cache of this size (lower the size, or enlarge the tmpfs)",
};

const char *shmc_strerror(shmc_status st)
{
    if ((unsigned)st >= SHMC_STATUS_COUNT_ || !messages[st])
        return "unknown shmcache status";
    return messages[st];
}
