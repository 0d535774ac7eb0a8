/* The threads backend: every op of the seam (internal.h) as a plain
 * syscall on a small pool of threads, for when io_uring cannot be used
 * (seccomp, kernel.io_uring_disabled, a kernel without it, a low
 * RLIMIT_MEMLOCK).  The state machine in job.c is the same; only how a
 * step is issued differs.
 *
 * Ops issued between two waits are kept on the issuing thread's list and
 * handed to the threads at wait() (as io_uring_submit would); the threads
 * put what they ran on a done list that wait() hands to its fn.  An openat
 * issued with US_BE_LINK takes the next op along: the same thread runs it
 * right after, only if the open succeeded (else it completes with
 * -ECANCELED), so the pair keeps its order.  Each op is a struct top from a
 * fixed pool (one per op a ring can have in flight); should the pool run
 * dry the op runs at once on the issuing thread and completes at the next
 * wait, like a fallback op of the io_uring backend.
 *
 * Stops: a thread blocked in a syscall is not interrupted, so wait() wakes
 * at least every STOP_POLL_MS to see us_stop_flag and returns (as io_uring
 * returns EINTR); us_run then fails what is in flight and waits for it.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define STOP_POLL_MS 50
#define DEFAULT_THREADS 8u
#define MAX_THREADS 256u

/* The default, or URINGSYNC_THREADS from the environment: a hidden knob
 * for measuring (docs/benchmarks.md), not an option. */
static unsigned default_threads(void)
{
    const char *s = getenv("URINGSYNC_THREADS");
    char *end;
    unsigned long n;

    if (!s || !*s)
        return DEFAULT_THREADS;
    n = strtoul(s, &end, 10);
    return *end || n == 0 || n > MAX_THREADS ? DEFAULT_THREADS : (unsigned)n;
}

enum top_kind {
    K_OPENAT,
    K_READ,
    K_WRITE,
    K_STATX,
    K_SYMLINKAT,
    K_LINKAT,
    K_FGETXATTR,
    K_FSETXATTR,
    K_CLOSE,
    K_RENAMEAT,
    K_UNLINKAT,
};

/* One op: its arguments, then its result. */
struct top {
    struct top *next;   /* on a list: issued, queued, done or free */
    struct top *linked; /* runs after this one, only if it succeeds */
    uint64_t udata;
    enum top_kind kind;
    int fd, fd2, flags;
    unsigned mask;
    mode_t mode;
    const char *s1, *s2;
    void *p;
    size_t len;
    uint64_t off;
    int res;
};

struct list {
    struct top *head, *tail;
};

struct tstate {
    pthread_mutex_t mu;
    pthread_cond_t work; /* threads: queue not empty, or quit */
    pthread_cond_t done; /* wait(): done not empty */
    struct list queue;   /* handed to the threads (mu) */
    struct list dlist;   /* run, not yet handed to fn (mu) */
    bool quit;           /* (mu) */
    /* the issuing thread's own */
    struct list issued; /* not yet handed to the threads */
    struct top *free;
    struct top *pool;
    unsigned npool;
    struct top spare;
    struct top *link_head; /* an openat issued with US_BE_LINK */
    bool cancel_next;      /* ... that ran here and failed: its linked op won't run */
    bool no_cached_open;   /* openat2 RESOLVE_CACHED unknown (before 5.12) */
    unsigned inflight;     /* issued and not yet handed to fn */
    pthread_t *th;
    unsigned nth;
    bool mu_ok, work_ok, done_ok;
};

static inline struct tstate *st_of(struct us_ring *r)
{
    return r->be_state;
}

static void push(struct list *l, struct top *t)
{
    t->next = NULL;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
}

static void append(struct list *l, struct list *more)
{
    if (!more->head)
        return;
    if (l->tail)
        l->tail->next = more->head;
    else
        l->head = more->head;
    l->tail = more->tail;
    more->head = more->tail = NULL;
}

static int ret0(int ret)
{
    return ret < 0 ? -errno : ret;
}

/* Opens of existing files add O_NONBLOCK: a FIFO put where a file was
 * scanned must not block a thread forever (the caller's fstat refuses it,
 * as after io_uring's OPENAT); reads of regular files ignore the flag. */
static int open_flags(int flags)
{
    return (flags & O_CREAT) ? flags : flags | O_NONBLOCK;
}

static int run_op(struct top *t)
{
    switch (t->kind) {
    case K_OPENAT: return ret0(openat(t->fd, t->s1, open_flags(t->flags), t->mode));
    case K_READ: {
        ssize_t n = pread(t->fd, t->p, t->len, (off_t)t->off);
        return n < 0 ? -errno : (int)n;
    }
    case K_WRITE: {
        ssize_t n = pwrite(t->fd, t->p, t->len, (off_t)t->off);
        return n < 0 ? -errno : (int)n;
    }
    case K_STATX: return ret0(statx(t->fd, t->s1, t->flags, t->mask, t->p));
    case K_SYMLINKAT: return ret0(symlinkat(t->s1, t->fd, t->s2));
    case K_LINKAT: return ret0(linkat(t->fd, t->s1, t->fd2, t->s2, t->flags));
    case K_FGETXATTR: {
        ssize_t n = fgetxattr(t->fd, t->s1, t->p, t->len);
        return n < 0 ? -errno : (int)n;
    }
    case K_FSETXATTR: return ret0(fsetxattr(t->fd, t->s1, t->p, t->len, t->flags));
    case K_CLOSE: return ret0(close(t->fd));
    case K_RENAMEAT: return ret0(renameat(t->fd, t->s1, t->fd2, t->s2));
    case K_UNLINKAT: return ret0(unlinkat(t->fd, t->s1, t->flags));
    }
    return -EINVAL;
}

/* Run an op and its linked one; the results go on `out`, in order. */
static void run_chain(struct top *t, struct list *out)
{
    struct top *l = t->linked;

    t->res = run_op(t);
    push(out, t);
    if (l) {
        l->res = t->res < 0 ? -ECANCELED : run_op(l);
        push(out, l);
    }
}

static void *thread_main(void *arg)
{
    struct tstate *ts = arg;

    pthread_mutex_lock(&ts->mu);
    for (;;) {
        while (!ts->queue.head && !ts->quit)
            pthread_cond_wait(&ts->work, &ts->mu);
        if (!ts->queue.head)
            break; /* quit, and nothing left */
        struct top *t = ts->queue.head;
        ts->queue.head = t->next;
        if (!ts->queue.head)
            ts->queue.tail = NULL;
        pthread_mutex_unlock(&ts->mu);

        struct list out = {NULL, NULL};
        run_chain(t, &out);

        pthread_mutex_lock(&ts->mu);
        bool was_empty = !ts->dlist.head;
        append(&ts->dlist, &out);
        if (was_empty)
            pthread_cond_signal(&ts->done);
    }
    pthread_mutex_unlock(&ts->mu);
    return NULL;
}

/* ------------------------------------------------------------- set-up */

static void th_fini(struct us_ring *r)
{
    struct tstate *ts = st_of(r);

    if (!ts)
        return;
    if (ts->mu_ok) {
        pthread_mutex_lock(&ts->mu);
        ts->quit = true;
        if (ts->work_ok)
            pthread_cond_broadcast(&ts->work);
        pthread_mutex_unlock(&ts->mu);
    }
    for (unsigned i = 0; i < ts->nth; i++)
        pthread_join(ts->th[i], NULL);
    if (ts->done_ok)
        pthread_cond_destroy(&ts->done);
    if (ts->work_ok)
        pthread_cond_destroy(&ts->work);
    if (ts->mu_ok)
        pthread_mutex_destroy(&ts->mu);
    free(ts->th);
    free(ts->pool);
    free(ts);
    r->be_state = NULL;
}

static int th_init(struct us_ring *r, unsigned entries)
{
    struct tstate *ts = calloc(1, sizeof *ts);
    unsigned nth = r->cfg.threads ? r->cfg.threads : default_threads();
    sigset_t all, old;
    int ret;

    (void)entries;
    if (!ts)
        return -ENOMEM;
    r->be_state = ts;
    if (nth > MAX_THREADS)
        nth = MAX_THREADS;
    if (nth > r->nslots * 2)
        nth = r->nslots * 2; /* more could never be busy */
    /* every op a ring's slots can have in flight, and a scan's statx */
    ts->npool = r->done_cap + r->nslots;
    ts->pool = calloc(ts->npool, sizeof *ts->pool);
    ts->th = calloc(nth, sizeof *ts->th);
    if (!ts->pool || !ts->th)
        return -ENOMEM;
    for (unsigned i = 0; i < ts->npool; i++) {
        ts->pool[i].next = ts->free;
        ts->free = &ts->pool[i];
    }
    if ((ret = pthread_mutex_init(&ts->mu, NULL)) != 0)
        return -ret;
    ts->mu_ok = true;
    if ((ret = pthread_cond_init(&ts->work, NULL)) != 0)
        return -ret;
    ts->work_ok = true;
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        ret = pthread_cond_init(&ts->done, &ca);
        pthread_condattr_destroy(&ca);
        if (ret != 0)
            return -ret;
    }
    ts->done_ok = true;

    /* signals are the issuing thread's business (stop.c) */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (; ts->nth < nth; ts->nth++) {
        ret = pthread_create(&ts->th[ts->nth], NULL, thread_main, ts);
        if (ret != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ts->nth == 0)
        return -ret;

    /* every step is native here: no op needs a plain-syscall fallback */
    memset(r->ops, 0, sizeof r->ops);
    r->nops = 0;
    r->sq_entries = ts->nth;
    r->fixed = false;
    return 0;
}

/* ---------------------------------------------------------------- ops */

static struct top *new_op(struct us_ring *r, uint64_t ud, enum top_kind kind)
{
    struct tstate *ts = st_of(r);
    struct top *t = ts->free;

    if (t)
        ts->free = t->next;
    else
        t = &ts->spare; /* the pool ran dry: run at once (issue) */
    memset(t, 0, sizeof *t);
    t->udata = ud;
    t->kind = kind;
    return t;
}

/* Run the op on the issuing thread if it will not wait on the disk, as
 * io_uring first tries an op inline and punts it to a worker only when it
 * would block: a read of cached data (RWF_NOWAIT), an open whose path is
 * all in the dentry cache (RESOLVE_CACHED), a buffered write, a close.
 * Saves two hand-offs per op on a warm tree.  true: done, t->res set; false: for a thread. */
static bool try_here(struct tstate *ts, struct top *t)
{
    switch (t->kind) {
    case K_READ: {
        struct iovec iov = {t->p, t->len};
        ssize_t n = preadv2(t->fd, &iov, 1, (off_t)t->off, RWF_NOWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EOPNOTSUPP || errno == EINVAL))
            return false; /* not cached (or no NOWAIT here): a thread reads it */
        t->res = n < 0 ? -errno : (int)n;
        return true;
    }
    case K_OPENAT: {
        struct open_how how = {.flags = (uint64_t)open_flags(t->flags), .resolve = RESOLVE_CACHED};
        long fd;
        if (ts->no_cached_open || (t->flags & (O_CREAT | O_TRUNC)))
            return false;
        fd = syscall(SYS_openat2, t->fd, t->s1, &how, sizeof how);
        if (fd >= 0) {
            t->res = (int)fd;
            return true;
        }
        /* EAGAIN: not all cached.  Any other failure is retried by a
         * thread with plain openat: openat2 may be what failed (ENOSYS
         * before 5.6, EINVAL for RESOLVE_CACHED before 5.12, EPERM from a
         * seccomp filter that predates it), and then it is not tried
         * again. */
        if (errno == ENOSYS || errno == EINVAL || errno == E2BIG || errno == EPERM)
            ts->no_cached_open = true;
        return false;
    }
    case K_WRITE: /* buffered: into the page cache, as cp's (NOWAIT is
                     EOPNOTSUPP for them on ext4); a thread would only add
                     a hand-off (measured: docs/benchmarks.md) */
    case K_CLOSE: t->res = run_op(t); return true;
    default: return false;
    }
}

/* Hand the op on: to the pending link, to the issued list, or, off the
 * pool, run it now. */
static void issue(struct us_ring *r, struct top *t, bool link)
{
    struct tstate *ts = st_of(r);

    if (ts->cancel_next) {
        /* linked to an open that ran here and failed */
        ts->cancel_next = false;
        us_cq_push(r, t->udata, -ECANCELED);
        if (t != &ts->spare) {
            t->next = ts->free;
            ts->free = t;
        }
        return;
    }
    if (!ts->link_head && try_here(ts, t)) {
        us_cq_push(r, t->udata, t->res);
        if (link && t->res < 0)
            ts->cancel_next = true;
        if (t != &ts->spare) {
            t->next = ts->free;
            ts->free = t;
        }
        return;
    }
    if (t == &ts->spare) {
        /* the pool ran dry (never with the slots' op budget): a plain
         * syscall on this thread, completed at the next wait; a pending
         * link head has not run yet, so it cannot gate this op */
        us_cq_push(r, t->udata, run_op(t));
        return;
    }
    ts->inflight++;
    if (ts->link_head) {
        ts->link_head->linked = t;
        ts->link_head = NULL;
        return; /* travels with its head, already on the issued list */
    }
    push(&ts->issued, t);
    if (link)
        ts->link_head = t;
}

static void th_openat(struct us_ring *r, uint64_t ud, int dirfd, const char *name, int flags,
                      mode_t mode, unsigned link)
{
    struct top *t = new_op(r, ud, K_OPENAT);

    t->fd = dirfd;
    t->s1 = name;
    t->flags = flags;
    t->mode = mode;
    issue(r, t, link != 0);
}

static void rw_op(struct us_ring *r, uint64_t ud, enum top_kind kind, int fd, int buf,
                  uint32_t boff, uint32_t len, uint64_t off)
{
    struct top *t = new_op(r, ud, kind);

    t->fd = fd;
    t->p = buf_addr(r, buf) + boff;
    t->len = len;
    t->off = off;
    issue(r, t, false);
}

static void th_read(struct us_ring *r, uint64_t ud, int fd, int buf, uint32_t boff, uint32_t len,
                    uint64_t off)
{
    rw_op(r, ud, K_READ, fd, buf, boff, len, off);
}

static void th_write(struct us_ring *r, uint64_t ud, int fd, int buf, uint32_t boff, uint32_t len,
                     uint64_t off)
{
    rw_op(r, ud, K_WRITE, fd, buf, boff, len, off);
}

static void th_statx(struct us_ring *r, uint64_t ud, int dirfd, const char *name, int flags,
                     unsigned mask, struct statx *out)
{
    struct top *t = new_op(r, ud, K_STATX);

    t->fd = dirfd;
    t->s1 = name;
    t->flags = flags;
    t->mask = mask;
    t->p = out;
    issue(r, t, false);
}

static void th_symlinkat(struct us_ring *r, uint64_t ud, const char *target, int dirfd,
                         const char *name)
{
    struct top *t = new_op(r, ud, K_SYMLINKAT);

    t->s1 = target;
    t->fd = dirfd;
    t->s2 = name;
    issue(r, t, false);
}

static void th_linkat(struct us_ring *r, uint64_t ud, int olddirfd, const char *oldname,
                      int newdirfd, const char *newname, int flags)
{
    struct top *t = new_op(r, ud, K_LINKAT);

    t->fd = olddirfd;
    t->s1 = oldname;
    t->fd2 = newdirfd;
    t->s2 = newname;
    t->flags = flags;
    issue(r, t, false);
}

static void th_fgetxattr(struct us_ring *r, uint64_t ud, int fd, const char *name, void *value,
                         size_t len)
{
    struct top *t = new_op(r, ud, K_FGETXATTR);

    t->fd = fd;
    t->s1 = name;
    t->p = value;
    t->len = len;
    issue(r, t, false);
}

static void th_fsetxattr(struct us_ring *r, uint64_t ud, int fd, const char *name,
                         const void *value, size_t len, int flags)
{
    struct top *t = new_op(r, ud, K_FSETXATTR);

    t->fd = fd;
    t->s1 = name;
    t->p = (void *)value;
    t->len = len;
    t->flags = flags;
    issue(r, t, false);
}

static void th_close(struct us_ring *r, uint64_t ud, int fd)
{
    struct top *t = new_op(r, ud, K_CLOSE);

    t->fd = fd;
    issue(r, t, false);
}

static void th_renameat(struct us_ring *r, uint64_t ud, int olddirfd, const char *oldname,
                        int newdirfd, const char *newname)
{
    struct top *t = new_op(r, ud, K_RENAMEAT);

    t->fd = olddirfd;
    t->s1 = oldname;
    t->fd2 = newdirfd;
    t->s2 = newname;
    issue(r, t, false);
}

static void th_unlinkat(struct us_ring *r, uint64_t ud, int dirfd, const char *name, int flags)
{
    struct top *t = new_op(r, ud, K_UNLINKAT);

    t->fd = dirfd;
    t->s1 = name;
    t->flags = flags;
    issue(r, t, false);
}

/* Hand what was issued to the threads, wait until something completed (or
 * a stop was asked for), hand every completion to fn. */
static int th_wait(struct us_ring *r, us_complete_fn *fn, void *arg)
{
    struct tstate *ts = st_of(r);
    unsigned local = r->done_tail - r->done_head;
    struct list got;

    ts->link_head = NULL; /* a link reaches only the next op issued before a wait */
    ts->cancel_next = false;
    pthread_mutex_lock(&ts->mu);
    if (ts->issued.head) {
        append(&ts->queue, &ts->issued);
        pthread_cond_broadcast(&ts->work);
    }
    /* a stop returns after one poll at most, with or without completions */
    for (int polls = 0; !ts->dlist.head && !local && ts->inflight; polls++) {
        struct timespec until;
        if (us_stop_flag && polls)
            break;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += STOP_POLL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ts->done, &ts->mu, &until);
    }
    got = ts->dlist;
    ts->dlist.head = ts->dlist.tail = NULL;
    pthread_mutex_unlock(&ts->mu);

    if (local)
        us_cq_drain(r, local, fn, arg);
    for (struct top *t = got.head; t;) {
        struct top *next = t->next;
        uint64_t ud = t->udata;
        int res = t->res;
        /* back to the pool before fn, which may issue more */
        t->next = ts->free;
        ts->free = t;
        ts->inflight--;
        fn(r, ud, res, arg);
        t = next;
    }
    return 0;
}

const struct us_backend us_backend_threads = {
    .name = "threads",
    .init = th_init,
    .fini = th_fini,
    .openat = th_openat,
    .read = th_read,
    .write = th_write,
    .statx = th_statx,
    .symlinkat = th_symlinkat,
    .linkat = th_linkat,
    .fgetxattr = th_fgetxattr,
    .fsetxattr = th_fsetxattr,
    .close = th_close,
    .renameat = th_renameat,
    .unlinkat = th_unlinkat,
    .wait = th_wait,
};
