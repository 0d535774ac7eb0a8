/* us_sync_scan: the sync walk's work on a group of directory pairs (a
 * source directory and its destination twin), in four phases run by a pool
 * of threads the process keeps:
 *
 *   1. list: getdents64 of every directory, one unit per directory;
 *   2. stat: statx of every entry, in chunks of SS_CHUNK entries;
 *   3. match: per pair, both listings sorted and merged by name;
 *   4. compare: symlink values, xattrs and ACLs of the entries that need
 *      it, in chunks; then, per pair, the entries the walker must see.
 *
 * Plain syscalls throughout: io_uring has no op to list a directory, and
 * its STATX (like the xattr reads) always runs in its kernel workers, which
 * costs more than the syscall when the inode is cached.  The pool has one
 * thread per CPU (the caller's included) while everything is cached and
 * SS_COLD_THREADS while the disk is read (a thread waiting on the disk
 * costs nothing but its slot in the disk's queue, which is what makes a
 * cold scan fast); a phase counts as cold when one of its threads did
 * block reads or slept (getrusage's ru_inblock, ru_nvcsw: a busy CPU's
 * preemption, ru_nivcsw, does not count).
 * Threads are made once per process, wait on a semaphore between phases,
 * and serve every call in flight (the walker keeps several groups in
 * flight while the disk is read); a forked child starts with none. */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SS_CHUNK 32        /* entries per stat or compare unit */
#define SS_COLD_CHUNK 2    /* ... while the disk is read: each may wait on it */
#define SS_COLD_NS 40000u  /* a thread's phase this long may have read the disk */
#define SS_COLD_WAITS 2    /* ... and it slept or read blocks this often */
#define SS_COLD_THREADS 32 /* threads while the disk is read */
#define SS_STACK (512u << 10)

struct ss_unit {
    uint32_t pair, side, start, end;
};

struct ss_tmp {
    const struct us_stat **dst_st;
    uint32_t *todo, ntodo;
};

struct ss_call {
    struct us_pair *pairs;
    struct ss_tmp *tmp;
    size_t n;
    uint32_t flags, skip_xattr;
    struct ss_unit *units;
};

typedef void ss_fn(struct ss_call *c, size_t unit);

/* One phase of one call: its caller runs units and so do the helpers it
 * was given (tokens), each taking the next unit until none is left. */
struct phase {
    ss_fn *fn;
    struct ss_call *call;
    size_t nunits;
    size_t next;     /* atomic: the next unit to take */
    unsigned tokens; /* under pool.mu: helpers still to join */
    unsigned busy;   /* atomic: helpers that have not finished */
    int io;          /* atomic: a unit read the disk or waited long */
    sem_t done;      /* posted when busy drops to 0 */
    struct phase *link;
};

/* The helpers, shared by every call of the process (calls may overlap:
 * the walker scans several groups at once while the disk is read). */
static struct {
    pid_t pid; /* the process whose threads these are (0: none yet) */
    pthread_mutex_t mu;
    sem_t go; /* a post per token */
    unsigned nthreads;
    struct phase *head; /* phases with tokens left */
} pool = {0, PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, NULL};

volatile int us_sync_cold_flag; /* atomic: the last call read the disk */

static __thread char *t_buf; /* compare's 4 * XATTR_MAX bytes, per thread */

/* What the thread waited on so far: block reads it issued, and the times
 * it slept (a read of the disk, or of a network file system, that another
 * thread issued; being preempted is not counted). */
static long waits(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_inblock + ru.ru_nvcsw : 0;
}

static void run_units(struct phase *ph)
{
    long w0 = waits(), done = 0;
    uint64_t t0 = now_ns();

    for (;; done++) {
        size_t u = __atomic_fetch_add(&ph->next, 1, __ATOMIC_RELAXED);
        if (u >= ph->nunits)
            break;
        if (us_stop_flag) {
            __atomic_store_n(&ph->next, ph->nunits, __ATOMIC_RELAXED);
            break;
        }
        ph->fn(ph->call, u);
    }
    /* sleeps or block reads: cached data takes none (but for the odd lock
     * or page, hence a few allowed), reading the disk about one a unit */
    if (now_ns() - t0 > SS_COLD_NS && waits() - w0 >= SS_COLD_WAITS + done / 8)
        __atomic_store_n(&ph->io, 1, __ATOMIC_RELAXED);
}

static void *helper(void *arg)
{
    (void)arg;
    for (;;) {
        struct phase *ph;

        while (sem_wait(&pool.go) < 0)
            ; /* EINTR */
        pthread_mutex_lock(&pool.mu);
        ph = pool.head; /* a post per token: there is one */
        if (--ph->tokens == 0)
            pool.head = ph->link;
        pthread_mutex_unlock(&pool.mu);
        run_units(ph);
        if (__atomic_sub_fetch(&ph->busy, 1, __ATOMIC_ACQ_REL) == 0)
            sem_post(&ph->done);
    }
    return NULL;
}

static void pool_lock(void)
{
    pthread_mutex_lock(&pool.mu);
}

static void pool_unlock(void)
{
    pthread_mutex_unlock(&pool.mu);
}

/* A fork waits while another thread holds pool.mu (briefly: a phase's
 * tokens), so a child never starts with it held and no helper to free it. */
static void pool_atfork(void)
{
    pthread_atfork(pool_lock, pool_unlock, pool_unlock);
}

/* Under pool.mu: the pool of this process (a forked child starts with no
 * threads), grown to `want` helpers; signals go to the callers only. */
static unsigned pool_grow(unsigned want)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pid_t me = getpid();

    if (pool.pid != me) {
        if (sem_init(&pool.go, 0, 0) < 0)
            return 0;
        pool.nthreads = 0;
        pool.head = NULL;
        pool.pid = me;
    }
    if (pool.nthreads >= want)
        return want;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SS_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    while (pool.nthreads < want) {
        pthread_t t;
        if (pthread_create(&t, &attr, helper, NULL) != 0)
            break; /* fewer threads: slower, not wrong */
        pool.nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return pool.nthreads < want ? pool.nthreads : want;
}

static unsigned cpus(void)
{
    static unsigned n;

    if (!n) {
        cpu_set_t set;
        int k = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        n = k > 0 ? (unsigned)k : 1;
    }
    return n;
}

/* Run fn over units [0, nunits) on this thread and as many helpers as are
 * worth waking (`many`: the disk is read); returns when all are done, with
 * whether a unit read the disk. */
static bool run_phase(struct ss_call *c, ss_fn *fn, size_t nunits, bool many)
{
    struct phase ph = {fn, c, nunits, 0, 0, 0, 0, {{0}}, NULL};
    unsigned want = many ? SS_COLD_THREADS : cpus() - 1;

    if (nunits == 0)
        return false;
    if (want > nunits - 1)
        want = (unsigned)(nunits - 1);
    if (want) {
        if (sem_init(&ph.done, 0, 0) < 0) {
            want = 0;
        } else {
            static pthread_once_t atfork = PTHREAD_ONCE_INIT;
            pthread_once(&atfork, pool_atfork);
            pthread_mutex_lock(&pool.mu);
            want = pool_grow(want);
            ph.tokens = ph.busy = want;
            if (want) {
                struct phase **p = &pool.head;
                while (*p)
                    p = &(*p)->link;
                *p = &ph;
            }
            pthread_mutex_unlock(&pool.mu);
            for (unsigned t = 0; t < want; t++)
                sem_post(&pool.go);
        }
    }
    run_units(&ph);
    if (want) {
        while (sem_wait(&ph.done) < 0)
            ; /* EINTR: the helpers are still on it */
        sem_destroy(&ph.done);
    }
    return __atomic_load_n(&ph.io, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ the phases */

static void list_unit(struct ss_call *c, size_t u)
{
    struct us_pair *p = &c->pairs[u / 2];

    if (u % 2 == 0)
        p->src_ret = scan_list(p->src_fd, &p->src);
    else if (p->dst_fd >= 0)
        p->dst_ret = scan_list(p->dst_fd, &p->dst);
}

static void stat_unit(struct ss_call *c, size_t u)
{
    const struct ss_unit *k = &c->units[u];
    struct us_pair *p = &c->pairs[k->pair];
    struct us_scan *sc = k->side ? &p->dst : &p->src;
    int fd = k->side ? p->dst_fd : p->src_fd;

    for (uint32_t i = k->start; i < k->end; i++)
        stat_inline(fd, &sc->ents[i], sc->names + sc->ents[i].name_off);
}

static void match_unit(struct ss_call *c, size_t u)
{
    struct us_pair *p = &c->pairs[u];
    struct ss_tmp *t = &c->tmp[u];
    size_t n = p->src.n ? p->src.n : 1, m = p->dst.n ? p->dst.n : 1;
    long r;

    if (p->src_ret < 0)
        return;
    p->match = malloc(n * sizeof *p->match);
    p->diff = malloc(n * sizeof *p->diff);
    p->picked = malloc(n * sizeof *p->picked);
    p->dst_matched = calloc(m, 1);
    if (!p->match || !p->diff || !p->picked || !p->dst_matched) {
        p->err = -ENOMEM;
        return;
    }
    if (p->dst_fd < 0 || p->dst_ret < 0) {
        for (size_t i = 0; i < p->src.n; i++) {
            p->match[i] = -1;
            p->diff[i] = US_D_MISSING;
        }
        return;
    }
    t->dst_st = malloc(n * sizeof *t->dst_st);
    t->todo = malloc(n * sizeof *t->todo);
    if (!t->dst_st || !t->todo) {
        p->err = -ENOMEM;
        return;
    }
    r = match_merge(&p->src, &p->dst, c->flags, c->skip_xattr, p->match, p->diff, p->dst_matched,
                    t->dst_st, t->todo, &t->ntodo);
    if (r < 0)
        p->err = (int32_t)r;
}

static void compare_unit(struct ss_call *c, size_t u)
{
    const struct ss_unit *k = &c->units[u];
    struct us_pair *p = &c->pairs[k->pair];
    struct ss_tmp *t = &c->tmp[k->pair];
    char *buf = NULL;

    if (c->flags & (US_P_XATTR | US_P_ACL)) {
        if (!t_buf)
            t_buf = malloc(4 * (size_t)XATTR_MAX); /* kept for the thread's life */
        if (!t_buf) {
            p->err = -ENOMEM;
            return;
        }
        buf = t_buf;
    }
    for (uint32_t x = k->start; x < k->end; x++) {
        uint32_t i = t->todo[x];
        p->diff[i] = compare_entry(&p->src, t->dst_st[i], p->src_fd, p->dst_fd, c->flags, i,
                                   p->diff[i], buf);
    }
}

static void pick(struct us_pair *p, const struct us_pick *k)
{
    uint32_t np = 0;

    for (uint32_t i = 0; i < p->src.n; i++) {
        const struct us_entry *e = &p->src.ents[i];
        uint32_t t = e->st.type & 7;

        if (k->all || e->err || (k->always & (1u << t)) || (p->diff[i] & k->mask[t]) ||
            (k->nlink_reg && t == US_T_REG && e->st.nlink > 1))
            p->picked[np++] = i;
    }
    p->npicked = np;
}

/* Units of `per` entries over [0, count) of each pair or side. */
static size_t chunk(struct ss_unit *units, size_t nu, uint32_t pair, uint32_t side, uint32_t count,
                    uint32_t per)
{
    for (uint32_t s = 0; s < count; s += per)
        units[nu++] = (struct ss_unit){pair, side, s, count - s > per ? s + per : count};
    return nu;
}

long us_sync_scan(size_t n, struct us_pair *pairs, uint32_t flags, uint32_t skip_xattr,
                  const struct us_pick *k)
{
    struct ss_call c = {pairs, NULL, n, flags, skip_xattr, NULL};
    size_t total = 0, nu;
    uint32_t per;
    int ret;
    bool cold;

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        pairs[i].src_ret = pairs[i].dst_ret = 0;
        pairs[i].err = 0;
    }
    /* many threads to list if the last call read the disk; then as many as
     * this call's own waits on the disk say */
    cold = run_phase(&c, list_unit, 2 * n, __atomic_load_n(&us_sync_cold_flag, __ATOMIC_RELAXED));

    per = cold ? SS_COLD_CHUNK : SS_CHUNK;
    for (size_t i = 0; i < n; i++) {
        if (pairs[i].src_ret >= 0)
            total += pairs[i].src.n / per + 1;
        if (pairs[i].dst_fd >= 0 && pairs[i].dst_ret >= 0)
            total += pairs[i].dst.n / per + 1;
    }
    c.tmp = calloc(n, sizeof *c.tmp);
    c.units = malloc((total ? total : 1) * sizeof *c.units);
    if (!c.tmp || !c.units) {
        ret = -ENOMEM;
        goto out;
    }
    nu = 0;
    for (size_t i = 0; i < n; i++) {
        if (pairs[i].src_ret >= 0)
            nu = chunk(c.units, nu, (uint32_t)i, 0, (uint32_t)pairs[i].src.n, per);
        if (pairs[i].dst_fd >= 0 && pairs[i].dst_ret >= 0)
            nu = chunk(c.units, nu, (uint32_t)i, 1, (uint32_t)pairs[i].dst.n, per);
    }
    cold |= run_phase(&c, stat_unit, nu, cold);
    if (us_stop_flag)
        goto stopped;

    run_phase(&c, match_unit, n, false);

    total = 0;
    per = cold ? SS_COLD_CHUNK : SS_CHUNK;
    for (size_t i = 0; i < n; i++)
        total += c.tmp[i].ntodo / per + 1;
    free(c.units);
    c.units = malloc(total * sizeof *c.units);
    if (!c.units) {
        ret = -ENOMEM;
        goto out;
    }
    nu = 0;
    for (size_t i = 0; i < n; i++)
        if (!pairs[i].err)
            nu = chunk(c.units, nu, (uint32_t)i, 0, c.tmp[i].ntodo, per);
    cold |= run_phase(&c, compare_unit, nu, cold);
    __atomic_store_n(&us_sync_cold_flag, cold, __ATOMIC_RELAXED);
    if (us_stop_flag)
        goto stopped;

    for (size_t i = 0; i < n; i++) {
        struct us_pair *p = &pairs[i];
        if (p->src_ret >= 0 && !p->err) {
            pick(p, k);
            p->src_ret = (int64_t)p->src.n;
        }
        if (p->dst_fd >= 0 && p->dst_ret >= 0)
            p->dst_ret = (int64_t)p->dst.n;
    }
    ret = 0;
    goto out;
stopped:
    ret = -EINTR;
out:
    if (c.tmp)
        for (size_t i = 0; i < n; i++) {
            free(c.tmp[i].dst_st);
            free(c.tmp[i].todo);
        }
    free(c.tmp);
    free(c.units);
    return ret < 0 ? ret : (long)n;
}

void us_pairs_free(struct us_pair *pairs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct us_pair *p = &pairs[i];
        us_scan_free(&p->src);
        us_scan_free(&p->dst);
        free(p->match);
        free(p->diff);
        free(p->dst_matched);
        free(p->picked);
        p->match = NULL;
        p->diff = NULL;
        p->dst_matched = NULL;
        p->picked = NULL;
    }
}
