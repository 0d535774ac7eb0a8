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
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* A pair the descent opens itself: by its path from the directories of
 * the caller's pair it came from, which stay open for the call. */
struct ss_open {
    int root_src, root_dst;
    char *path;
};

struct ss_call {
    struct us_pair **pairs;
    struct ss_tmp *tmp;
    size_t n;
    uint32_t flags, skip_xattr;
    struct ss_unit *units;
    const struct ss_open *open; /* NULL: the caller's pairs, opened by it */
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

/* compare's buffers, per thread, kept for the thread's life and freed when
 * it exits (the walker's scan threads come and go with each sync) */
struct ss_bufs {
    char *xattr;                /* 4 * XATTR_MAX bytes */
    struct content_buf content; /* US_F_CONTENT */
};
static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;
static bool bufs_keyed; /* the key was made (else: out of memory) */

static void bufs_free(void *arg)
{
    struct ss_bufs *b = arg;

    free(b->xattr);
    free(b->content.data);
    XXH3_freeState(b->content.hash);
    free(b);
}

static void bufs_init(void)
{
    bufs_keyed = pthread_key_create(&bufs_key, bufs_free) == 0;
}

/* This thread's buffers (NULL: out of memory) */
static struct ss_bufs *bufs(void)
{
    struct ss_bufs *b;

    pthread_once(&bufs_once, bufs_init);
    if (!bufs_keyed)
        return NULL;
    b = pthread_getspecific(bufs_key);
    if (!b && (b = calloc(1, sizeof *b)) && pthread_setspecific(bufs_key, b)) {
        free(b);
        b = NULL;
    }
    return b;
}

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

static volatile int no_openat2; /* before Linux 5.6, or refused (seccomp) */

/* A directory below `root`, never through a symlink nor out of it. */
static int open_beneath(int root, const char *path)
{
    struct open_how how = {
        .flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    long fd = syscall(SYS_openat2, root, path, &how, sizeof how);

    if (fd < 0 && (errno == ENOSYS || errno == EPERM))
        no_openat2 = 1; /* no descent from now on: the walker lists them */
    return fd < 0 ? -errno : (int)fd;
}

static void list_unit(struct ss_call *c, size_t u)
{
    struct us_pair *p = c->pairs[u / 2];
    const struct ss_open *o = c->open ? &c->open[u / 2] : NULL;

    if (u % 2 == 0) {
        if (o && (p->src_fd = open_beneath(o->root_src, o->path)) < 0) {
            p->src_ret = p->src_fd;
            p->src_fd = -1;
            return;
        }
        p->src_ret = scan_list(p->src_fd, &p->src);
    } else {
        if (o && (p->dst_fd = open_beneath(o->root_dst, o->path)) < 0) {
            p->dst_ret = p->dst_fd;
            p->dst_fd = -1;
            return;
        }
        if (p->dst_fd >= 0)
            p->dst_ret = scan_list(p->dst_fd, &p->dst);
    }
}

static void stat_unit(struct ss_call *c, size_t u)
{
    const struct ss_unit *k = &c->units[u];
    struct us_pair *p = c->pairs[k->pair];
    struct us_scan *sc = k->side ? &p->dst : &p->src;
    int fd = k->side ? p->dst_fd : p->src_fd;

    for (uint32_t i = k->start; i < k->end; i++)
        stat_inline(fd, &sc->ents[i], sc->names + sc->ents[i].name_off);
}

static void match_unit(struct ss_call *c, size_t u)
{
    struct us_pair *p = c->pairs[u];
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
    struct us_pair *p = c->pairs[k->pair];
    struct ss_tmp *t = &c->tmp[k->pair];
    struct ss_bufs *b = c->flags & (US_P_XATTR | US_P_ACL | US_F_CONTENT) ? bufs() : NULL;
    char *buf = NULL;

    if (c->flags & (US_P_XATTR | US_P_ACL)) {
        if (b && !b->xattr)
            b->xattr = malloc(4 * (size_t)XATTR_MAX);
        if (!b || !b->xattr) {
            p->err = -ENOMEM;
            return;
        }
        buf = b->xattr;
    }
    /* without them, the files are left to the walker */
    if ((c->flags & US_F_CONTENT) && b) {
        if (!b->content.data && posix_memalign(&b->content.data, 4096, CONTENT_BUF))
            b->content.data = NULL;
        if (!b->content.hash)
            b->content.hash = XXH3_createState();
    }
    for (uint32_t x = k->start; x < k->end; x++) {
        uint32_t i = t->todo[x];
        p->diff[i] = compare_entry(&p->src, t->dst_st[i], p->src_fd, p->dst_fd, c->flags, i,
                                   p->diff[i], buf, b ? &b->content : NULL);
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

/* The four phases and the pick over c->pairs (their fds open, or opened
 * by list_unit from c->open): 0, -EINTR when stopped, or -ENOMEM. */
static long scan_pairs(struct ss_call *c, const struct us_pick *k)
{
    struct us_pair **pairs = c->pairs;
    size_t n = c->n, total = 0, nu;
    uint32_t per;
    long ret;
    bool cold, disk;

    if (n == 0)
        return 0;
    /* many threads to list if the last call read the disk; then as many as
     * this call's own waits on the disk say */
    cold = run_phase(c, list_unit, 2 * n, __atomic_load_n(&us_sync_cold_flag, __ATOMIC_RELAXED));

    per = cold ? SS_COLD_CHUNK : SS_CHUNK;
    for (size_t i = 0; i < n; i++) {
        if (pairs[i]->src_ret >= 0)
            total += pairs[i]->src.n / per + 1;
        if (pairs[i]->dst_fd >= 0 && pairs[i]->dst_ret >= 0)
            total += pairs[i]->dst.n / per + 1;
    }
    c->tmp = calloc(n, sizeof *c->tmp);
    c->units = malloc((total ? total : 1) * sizeof *c->units);
    if (!c->tmp || !c->units) {
        ret = -ENOMEM;
        goto out;
    }
    nu = 0;
    for (size_t i = 0; i < n; i++) {
        if (pairs[i]->src_ret >= 0)
            nu = chunk(c->units, nu, (uint32_t)i, 0, (uint32_t)pairs[i]->src.n, per);
        if (pairs[i]->dst_fd >= 0 && pairs[i]->dst_ret >= 0)
            nu = chunk(c->units, nu, (uint32_t)i, 1, (uint32_t)pairs[i]->dst.n, per);
    }
    cold |= run_phase(c, stat_unit, nu, cold);
    if (us_stop_flag)
        goto stopped;

    run_phase(c, match_unit, n, false);

    /* reading the twins from the device waits on the disk, cached or not */
    disk = cold || ((c->flags & US_F_CONTENT) && (c->flags & US_F_DEVICE));
    total = 0;
    per = disk ? SS_COLD_CHUNK : SS_CHUNK;
    for (size_t i = 0; i < n; i++)
        total += c->tmp[i].ntodo / per + 1;
    free(c->units);
    c->units = malloc(total * sizeof *c->units);
    if (!c->units) {
        ret = -ENOMEM;
        goto out;
    }
    nu = 0;
    for (size_t i = 0; i < n; i++)
        if (!pairs[i]->err)
            nu = chunk(c->units, nu, (uint32_t)i, 0, c->tmp[i].ntodo, per);
    cold |= run_phase(c, compare_unit, nu, disk);
    __atomic_store_n(&us_sync_cold_flag, cold, __ATOMIC_RELAXED);
    if (us_stop_flag)
        goto stopped;

    for (size_t i = 0; i < n; i++) {
        struct us_pair *p = pairs[i];
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
    if (c->tmp)
        for (size_t i = 0; i < n; i++) {
            free(c->tmp[i].dst_st);
            free(c->tmp[i].todo);
        }
    free(c->tmp);
    free(c->units);
    c->tmp = NULL;
    c->units = NULL;
    return ret;
}

/* ------------------------------------------------------------ the descent
 *
 * After the caller's pairs, the call goes on into their picked
 * subdirectories whose twin is a directory, breadth first, `descend` pairs
 * at a time (each opened by its path from its caller's pair, listed,
 * stat'ed, matched and compared as those were, then closed), until none is
 * left or `budget` entries were listed.  A pair is settled as soon as its
 * children are: found unchanged all through (see struct us_pick), it is
 * folded into its parent (counted there and left out of its picked
 * entries); changed, it is kept in its parent's `sub` for the walker, which
 * then need not list it again; if it could not be opened or listed, it is
 * dropped (the walker opens and lists it itself, and says what failed). */

static struct us_pair folded_mark; /* sub[i]: folded into its parent */
#define FOLDED (&folded_mark)

enum { SS_QUEUED, SS_SCANNED, SS_HELD, SS_SETTLED };

/* A pair the descent queued.  Settled (folded into its parent and freed,
 * handed over in its parent's sub, or freed) as soon as its children are,
 * so that only changed subtrees stay in memory; held to the end when it or
 * a child has linked files, whose groups are known only then. */
struct ss_node {
    struct us_pair *pair, *parent;
    size_t up;        /* the parent's node; NONE: a caller's pair */
    uint32_t idx;     /* the pair's entry in its parent */
    uint32_t pending; /* children queued and not settled */
    int state;        /* SS_* */
    bool hold;        /* linked files in it or below: settled at the end */
    struct ss_open open;
};
#define NONE SIZE_MAX

/* The queue of pairs to go into, shared by the lanes that scan it: the
 * caller, and while the disk is read SS_LANES - 1 threads more, each a
 * chunk of `descend` pairs at a time (the phases of one chunk wait for
 * each other; other chunks' reads fill the disk's queue meanwhile). */
struct ss_descent {
    struct ss_node *nodes;
    size_t n, cap;
    uint64_t listed; /* entries listed so far */
    const struct us_pick *k;
    pthread_mutex_t mu; /* the rest, and nodes, n, cap, listed */
    pthread_cond_t cv;
    size_t head;     /* the next node to scan: those before it were */
    unsigned active; /* lanes scanning a chunk (which may queue more) */
    long ret;        /* the first failure of a chunk */
    bool full;       /* out of memory: nothing more is queued */
    unsigned lanes;  /* lanes there are */
    uint32_t flags, skip_xattr;
};

static void pair_clear(struct us_pair *p)
{
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
    if (p->sub) {
        for (uint32_t i = 0; i < p->nsub; i++)
            if (p->sub[i] && p->sub[i] != FOLDED)
                us_pair_free(p->sub[i]);
        free(p->sub);
        p->sub = NULL;
        p->nsub = 0;
    }
}

void us_pair_free(struct us_pair *p)
{
    if (p) {
        pair_clear(p);
        free(p);
    }
}

/* Both sides listed (a pair the descent made always has a twin to list:
 * dst_ret < 0 when it could not). */
static bool scanned_ok(const struct us_pair *p, bool top)
{
    return p->src_ret >= 0 && !p->err && p->dst_ret >= 0 && (!top || p->dst_fd >= 0);
}

/* Whether the source directory `e` (entry i of p) may be gone into. */
static bool may_descend(const struct us_pair *p, uint32_t i, const struct us_pick *k)
{
    const struct us_entry *e = &p->src.ents[i];

    if ((e->st.type & 7) != US_T_DIR || e->err || p->match[i] < 0 ||
        (p->diff[i] & (US_D_MISSING | US_D_TYPE | US_D_ERR)))
        return false;
    if ((p->dst.ents[p->match[i]].st.type & 7) != US_T_DIR || p->dst.ents[p->match[i]].err)
        return false;
    if (k->xdev && (e->st.dev_major != k->root_major || e->st.dev_minor != k->root_minor))
        return false;
    return !(e->st.ino == k->avoid_ino && e->st.dev_major == k->avoid_major &&
             e->st.dev_minor == k->avoid_minor);
}

/* Queue p's subdirectories to go into (p: a pair of the caller's, or one
 * the descent scanned, with its path); false: out of memory. */
static bool expand(struct ss_descent *ds, struct us_pair *p, const struct ss_open *from, size_t up)
{
    bool top = up == NONE;
    const struct us_pick *k = ds->k;
    size_t plen = strlen(from->path);

    if (!scanned_ok(p, top) || ds->listed >= k->budget || ds->full)
        return true;
    for (uint32_t x = 0; x < p->npicked; x++) {
        uint32_t i = p->picked[x];
        const struct us_entry *e = &p->src.ents[i];
        struct ss_node *nd;
        char *path;

        if (!may_descend(p, i, k) || plen + e->name_len + 2 > PATH_MAX)
            continue;
        if (ds->n >= k->budget)
            break; /* a queue as long as the budget is enough */
        if (!p->sub) {
            p->sub = calloc(p->src.n, sizeof *p->sub);
            if (!p->sub)
                return false;
            p->nsub = p->src.n;
        }
        if (ds->n == ds->cap) {
            size_t cap = ds->cap ? 2 * ds->cap : 64;
            struct ss_node *nodes = realloc(ds->nodes, cap * sizeof *nodes);
            if (!nodes)
                return false;
            ds->nodes = nodes;
            ds->cap = cap;
        }
        path = malloc(plen + e->name_len + 2);
        nd = &ds->nodes[ds->n];
        nd->pair = calloc(1, sizeof *nd->pair);
        if (!path || !nd->pair) {
            free(path);
            free(nd->pair);
            return false;
        }
        if (plen) {
            memcpy(path, from->path, plen);
            path[plen] = '/';
            memcpy(path + plen + 1, p->src.names + e->name_off, e->name_len + 1);
        } else {
            memcpy(path, p->src.names + e->name_off, e->name_len + 1);
        }
        nd->pair->src_fd = nd->pair->dst_fd = -1;
        nd->parent = p;
        nd->up = up;
        nd->idx = i;
        nd->pending = 0;
        nd->state = SS_QUEUED;
        nd->hold = false;
        nd->open = (struct ss_open){from->root_src, from->root_dst, path};
        ds->n++;
        if (!top)
            ds->nodes[up].pending++;
    }
    return true;
}

#define UNPICKED UINT32_MAX /* picked[x]: a linked file found unchanged */

/* Drop the picked entries folded into p, and those unpicked. */
static void compact(struct us_pair *p)
{
    uint32_t np = 0;

    if (p->src_ret < 0 || p->err)
        return;
    for (uint32_t x = 0; x < p->npicked; x++) {
        uint32_t i = p->picked[x];
        if (i == UNPICKED)
            continue;
        if (p->sub && p->sub[i] == FOLDED)
            p->sub[i] = NULL;
        else
            p->picked[np++] = i;
    }
    p->npicked = np;
}

/* -H: a regular file with more than one link is picked for the walker,
 * which gathers the names of each inode.  When all of an inode's names were
 * listed by this call, each unchanged and its twin the same destination
 * inode with as many links, there is nothing to gather: they are unpicked. */
struct ss_link {
    uint64_t ino, dst_ino;
    uint32_t major, minor, dst_major, dst_minor, nlink, dst_nlink;
    struct us_pair *pair;
    uint32_t x; /* its place in pair->picked */
};

static int by_inode(const void *a, const void *b)
{
    const struct ss_link *l = a, *r = b;

    if (l->major != r->major)
        return l->major < r->major ? -1 : 1;
    if (l->minor != r->minor)
        return l->minor < r->minor ? -1 : 1;
    return l->ino < r->ino ? -1 : l->ino > r->ino;
}

static bool same_twin(const struct ss_link *a, const struct ss_link *b)
{
    return a->dst_ino == b->dst_ino && a->dst_major == b->dst_major &&
           a->dst_minor == b->dst_minor && a->dst_nlink == b->dst_nlink;
}

/* Gather (links != NULL) or count p's linked files picked for their links
 * alone; returns the new count. */
static size_t linked_of(struct us_pair *p, const struct us_pick *k, struct ss_link *links,
                        size_t nl)
{
    for (uint32_t x = 0; x < p->npicked; x++) {
        uint32_t i = p->picked[x];
        const struct us_entry *e = &p->src.ents[i], *t;

        if ((e->st.type & 7) != US_T_REG || e->err || e->st.nlink < 2 || p->match[i] < 0 ||
            (p->diff[i] & k->mask[US_T_REG]))
            continue;
        t = &p->dst.ents[p->match[i]];
        if ((t->st.type & 7) != US_T_REG || t->err)
            continue;
        if (links)
            links[nl] = (struct ss_link){e->st.ino,
                                         t->st.ino,
                                         e->st.dev_major,
                                         e->st.dev_minor,
                                         t->st.dev_major,
                                         t->st.dev_minor,
                                         e->st.nlink,
                                         t->st.nlink,
                                         p,
                                         x};
        nl++;
    }
    return nl;
}

/* The linked files of the caller's pairs and of the held ones (the rest
 * have none): gathered into links, or counted (links NULL). */
static size_t all_linked(struct us_pair **tops, size_t ntops, const struct ss_descent *ds,
                         struct ss_link *links)
{
    size_t nl = 0;

    for (size_t i = 0; i < ntops; i++)
        if (scanned_ok(tops[i], true))
            nl = linked_of(tops[i], ds->k, links, nl);
    for (size_t j = 0; j < ds->n; j++)
        if (ds->nodes[j].state == SS_HELD && scanned_ok(ds->nodes[j].pair, false))
            nl = linked_of(ds->nodes[j].pair, ds->k, links, nl);
    return nl;
}

static void unpick_links(struct us_pair **tops, size_t ntops, const struct ss_descent *ds)
{
    const struct us_pick *k = ds->k;
    struct ss_link *links;
    size_t nl;

    if (!k->nlink_reg || (k->always & (1u << US_T_REG)))
        return;
    nl = all_linked(tops, ntops, ds, NULL);
    if (nl < 2 || !(links = malloc(nl * sizeof *links)))
        return; /* (short of memory: they stay picked) */
    all_linked(tops, ntops, ds, links);
    qsort(links, nl, sizeof *links, by_inode);
    for (size_t a = 0, b; a < nl; a = b) {
        bool intact = links[a].dst_nlink == links[a].nlink;
        for (b = a + 1; b < nl && by_inode(&links[a], &links[b]) == 0; b++)
            intact = intact && same_twin(&links[a], &links[b]);
        if (intact && b - a == links[a].nlink)
            for (size_t x = a; x < b; x++)
                links[x].pair->picked[links[x].x] = UNPICKED;
    }
    free(links);
}

static bool unchanged_through(const struct us_pair *p, uint32_t dir_diff, const struct us_pick *k)
{
    if (!scanned_ok(p, false) || p->npicked || (dir_diff & k->dir_mask))
        return false;
    for (uint32_t j = 0; j < p->dst.n; j++)
        if (!p->dst_matched[j])
            return false; /* to delete, or a stale temporary file */
    return true;
}

static char top_path[1]; /* the caller's pairs: "" */

/* A listing kept for the walker, at its size (the listing grows by
 * doubling from 64 entries and 4 KiB of names). */
static void shrink(struct us_scan *sc)
{
    if (sc->n && sc->cap > sc->n) {
        struct us_entry *e = realloc(sc->ents, sc->n * sizeof *e);
        if (e) {
            sc->ents = e;
            sc->cap = sc->n;
        }
    }
    if (sc->names_len && sc->names_cap > sc->names_len) {
        char *names = realloc(sc->names, sc->names_len);
        if (names) {
            sc->names = names;
            sc->names_cap = sc->names_len;
        }
    }
}

/* Node j's pair, all of its children settled (or the descent over): folded
 * into its parent when unchanged all through, else handed over when it was
 * listed, else freed (the walker lists it itself). */
static void resolve(struct ss_descent *ds, size_t j, bool ok)
{
    struct ss_node *nd = &ds->nodes[j];
    struct us_pair *p = nd->pair, *parent = nd->parent;
    bool scanned = nd->state != SS_QUEUED;

    compact(p);
    if (ok && scanned && unchanged_through(p, parent->diff[nd->idx], ds->k)) {
        parent->clean_entries += p->src.n + p->clean_entries;
        parent->clean_dirs += 1 + p->clean_dirs;
        parent->sub[nd->idx] = FOLDED;
        us_pair_free(p);
    } else if (ok && scanned && scanned_ok(p, false)) {
        shrink(&p->src);
        shrink(&p->dst);
        parent->sub[nd->idx] = p;
    } else {
        us_pair_free(p);
    }
    nd->pair = NULL;
    nd->state = SS_SETTLED;
    free(nd->open.path);
    nd->open.path = NULL;
}

/* Under ds->mu: node j was scanned and has no children left to settle:
 * settle it, and its parent if that was the last child, and so on up. */
static void settle(struct ss_descent *ds, size_t j)
{
    const struct us_pick *k = ds->k;

    while (!ds->ret) {
        struct ss_node *nd = &ds->nodes[j];
        size_t up = nd->up;
        bool hold = nd->hold || (k->nlink_reg && scanned_ok(nd->pair, false) &&
                                 linked_of(nd->pair, k, NULL, 0) > 0);

        if (hold)
            nd->state = SS_HELD;
        else
            resolve(ds, j, true);
        if (up == NONE)
            return;
        nd = &ds->nodes[up];
        nd->hold |= hold;
        if (--nd->pending || nd->state != SS_SCANNED)
            return;
        j = up;
    }
}

#define SS_LANES 4 /* lanes while the disk is read */

/* A lane: chunks off the queue until it is empty and no lane can add to
 * it, or the budget is spent, or a chunk failed. */
static void lane(struct ss_descent *ds)
{
    const struct us_pick *k = ds->k;
    struct us_pair **batch = malloc(k->descend * sizeof *batch);
    struct ss_open *opens = malloc(k->descend * sizeof *opens);
    struct ss_node *mine = malloc(k->descend * sizeof *mine);

    pthread_mutex_lock(&ds->mu);
    if (!batch || !opens || !mine) {
        if (!ds->ret)
            ds->ret = -ENOMEM;
        goto out;
    }
    for (;;) {
        size_t m, first;
        uint64_t listed = 0;
        long r;

        while (ds->head == ds->n && ds->active && !ds->ret)
            pthread_cond_wait(&ds->cv, &ds->mu);
        if (ds->head == ds->n || ds->ret || ds->listed >= k->budget || no_openat2 || us_stop_flag)
            break;
        /* a share of what is queued, so that every lane has some */
        m = (ds->n - ds->head + ds->lanes - 1) / ds->lanes;
        m = m < k->descend ? m : k->descend;
        first = ds->head;
        memcpy(mine, &ds->nodes[first], m * sizeof *mine);
        ds->head += m;
        ds->active++;
        pthread_mutex_unlock(&ds->mu);

        for (size_t j = 0; j < m; j++) {
            batch[j] = mine[j].pair;
            opens[j] = mine[j].open;
        }
        struct ss_call c = {batch, NULL, m, ds->flags, ds->skip_xattr, NULL, opens};
        r = scan_pairs(&c, k);
        for (size_t j = 0; j < m; j++) {
            struct us_pair *p = batch[j];
            if (p->src_fd >= 0)
                close(p->src_fd);
            if (p->dst_fd >= 0)
                close(p->dst_fd);
            p->src_fd = p->dst_fd = -1;
            if (scanned_ok(p, false))
                listed += p->src.n;
        }

        pthread_mutex_lock(&ds->mu);
        ds->listed += listed;
        if (r < 0 && !ds->ret)
            ds->ret = r;
        for (size_t j = 0; j < m; j++)
            ds->nodes[first + j].state = SS_SCANNED;
        for (size_t j = 0; j < m && !r && !ds->full; j++)
            if (!expand(ds, mine[j].pair, &mine[j].open, first + j))
                ds->full = true; /* what is queued is scanned, no more */
        for (size_t j = 0; j < m && !r; j++)
            if (ds->nodes[first + j].pending == 0)
                settle(ds, first + j);
        ds->active--;
        pthread_cond_broadcast(&ds->cv);
    }
out:
    pthread_cond_broadcast(&ds->cv); /* the others see why it stopped */
    pthread_mutex_unlock(&ds->mu);
    free(batch);
    free(opens);
    free(mine);
}

static void *lane_thread(void *arg)
{
    lane(arg);
    return NULL;
}

static long descend(struct us_pair **tops, size_t ntops, uint32_t flags, uint32_t skip_xattr,
                    const struct us_pick *k)
{
    struct ss_descent ds = {.k = k, .flags = flags, .skip_xattr = skip_xattr};
    pthread_t extra[SS_LANES - 1];
    unsigned nextra = 0;
    long ret;

    pthread_mutex_init(&ds.mu, NULL);
    pthread_cond_init(&ds.cv, NULL);
    for (size_t i = 0; i < ntops && !ds.full; i++) {
        struct ss_open top = {tops[i]->src_fd, tops[i]->dst_fd, top_path};
        if (!expand(&ds, tops[i], &top, NONE))
            ds.full = true;
    }
    ds.lanes = 1;
    if (ds.n && __atomic_load_n(&us_sync_cold_flag, __ATOMIC_RELAXED)) {
        pthread_attr_t attr;
        sigset_t all, old;

        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, SS_STACK);
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to the callers only */
        pthread_mutex_lock(&ds.mu);             /* (lanes: read by the lanes started) */
        while (nextra < SS_LANES - 1 &&
               pthread_create(&extra[nextra], &attr, lane_thread, &ds) == 0)
            nextra++;
        ds.lanes = 1 + nextra;
        pthread_mutex_unlock(&ds.mu);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    lane(&ds);
    for (unsigned t = 0; t < nextra; t++)
        pthread_join(extra[t], NULL);
    ret = ds.ret;
    if (ret == 0)
        unpick_links(tops, ntops, &ds);
    /* the rest (held, past the budget, or all after a failure), deepest
     * first: a node comes after its parent */
    for (size_t j = ds.n; j-- > 0;)
        if (ds.nodes[j].state != SS_SETTLED)
            resolve(&ds, j, ret == 0);
    for (size_t i = 0; i < ntops; i++)
        compact(tops[i]);
    free(ds.nodes);
    pthread_cond_destroy(&ds.cv);
    pthread_mutex_destroy(&ds.mu);
    if (ret == 0 && us_stop_flag)
        ret = -EINTR;
    return ret == -ENOMEM ? 0 : ret; /* short of memory: less folded */
}

long us_sync_scan(size_t n, struct us_pair *pairs, uint32_t flags, uint32_t skip_xattr,
                  const struct us_pick *k)
{
    struct us_pair **pp;
    struct ss_call c = {NULL, NULL, n, flags, skip_xattr, NULL, NULL};
    long ret;

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        pairs[i].src_ret = pairs[i].dst_ret = 0;
        pairs[i].err = 0;
        pairs[i].sub = NULL;
        pairs[i].nsub = 0;
        pairs[i].clean_entries = pairs[i].clean_dirs = 0;
    }
    pp = malloc(n * sizeof *pp);
    if (!pp)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        pp[i] = &pairs[i];
    c.pairs = pp;
    ret = scan_pairs(&c, k);
    if (ret == 0 && k->descend && !no_openat2)
        ret = descend(pp, n, flags, skip_xattr, k);
    free(pp);
    return ret < 0 ? ret : (long)n;
}

void us_pairs_free(struct us_pair *pairs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pair_clear(&pairs[i]);
}
