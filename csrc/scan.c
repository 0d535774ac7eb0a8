/* Scanning: list directories (getdents64, a plain syscall: io_uring has no
 * op for it; in threads when the disk is involved), then lstat every entry
 * (inline when cached, else STATX through the backend, many in flight).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int scan_append(struct us_scan *sc, const char *name, size_t len)
{
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        struct us_entry *e = realloc(sc->ents, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        sc->ents = e;
        sc->cap = cap;
    }
    if (sc->names_len + len + 1 > sc->names_cap) {
        size_t cap = sc->names_cap ? sc->names_cap * 2 : 4096;
        while (cap < sc->names_len + len + 1)
            cap *= 2;
        char *p = realloc(sc->names, cap);
        if (!p)
            return -ENOMEM;
        sc->names = p;
        sc->names_cap = cap;
    }
    struct us_entry *e = &sc->ents[sc->n++];
    memset(e, 0, sizeof *e);
    e->name_off = (uint32_t)sc->names_len;
    e->name_len = (uint32_t)len;
    memcpy(sc->names + sc->names_len, name, len + 1);
    sc->names_len += len + 1;
    return 0;
}

int scan_list(int dirfd, struct us_scan *sc)
{
    char buf[32768] __attribute__((aligned(8)));

    if (lseek(dirfd, 0, SEEK_SET) < 0)
        return -errno;
    for (;;) {
        long nread = syscall(SYS_getdents64, dirfd, buf, sizeof buf);
        if (nread < 0)
            return -errno;
        if (nread == 0)
            return 0;
        for (long pos = 0; pos < nread;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(void *)(buf + pos);
            const char *n = d->d_name;
            pos += d->d_reclen;
            if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
                continue;
            int ret = scan_append(sc, n, strlen(n));
            if (ret < 0)
                return ret;
        }
    }
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A getdents64 that took longer than this read the disk: list the other
 * directories of the call in parallel threads. */
#define COLD_LIST_NS 40000u
/* statx calls averaging less than this hit the cache: make them inline
 * (io_uring punts every STATX to a kernel worker, which costs more). */
#define WARM_STATX_NS 3000u
#define SCAN_THREADS 8

struct list_pool {
    const int *dirfds;
    struct us_scan **scans;
    long *rets;
    size_t n;
    size_t next; /* atomic */
};

static void *list_worker(void *arg)
{
    struct list_pool *p = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n)
            return NULL;
        p->rets[i] = scan_list(p->dirfds[i], p->scans[i]);
    }
}

/* getdents64 of every directory: the first inline; if that one was cold,
 * the rest in up to SCAN_THREADS threads at once (no io_uring op lists a
 * directory, and each cold listing waits on the disk). */
static void list_all(size_t n, const int *dirfds, struct us_scan **scans, long *rets)
{
    struct list_pool p = {dirfds, scans, rets, n, 1};
    pthread_t tid[SCAN_THREADS];
    unsigned started = 0;
    uint64_t t0 = now_ns();

    rets[0] = scan_list(dirfds[0], scans[0]);
    if (n > 1 && now_ns() - t0 > COLD_LIST_NS) {
        unsigned want = n - 1 < SCAN_THREADS ? (unsigned)(n - 1) : SCAN_THREADS;
        for (; started < want; started++)
            if (pthread_create(&tid[started], NULL, list_worker, &p) != 0)
                break;
    }
    list_worker(&p); /* this thread helps (or does it all) */
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

static void stat_entry(int dirfd, struct us_entry *e, const char *name, int follow)
{
    struct statx x;
    int fl = AT_NO_AUTOMOUNT | (follow ? 0 : AT_SYMLINK_NOFOLLOW);
    if (statx(dirfd, name, fl, STATX_BASIC_STATS, &x) < 0)
        e->err = -errno;
    else
        fill_stat(&e->st, &x);
}

void stat_inline(int dirfd, struct us_entry *e, const char *name)
{
    stat_entry(dirfd, e, name, 0);
}

/* The STATX ops of one us_scan_dirs call; udata: directory << 48 | entry
 * << 16 | index into r->sx. */
struct statx_wave {
    struct us_scan **scans;
    unsigned inflight, nfree;
};

static void on_statx(struct us_ring *r, uint64_t d, int res, void *arg)
{
    struct statx_wave *w = arg;
    unsigned s = (unsigned)(d & 0xffff);
    struct us_entry *e = &w->scans[d >> 48]->ents[(d >> 16) & 0xffffffffu];

    if (res < 0)
        e->err = res;
    else
        fill_stat(&e->st, &r->sx[s]);
    r->freesx[w->nfree++] = s;
    w->inflight--;
}

long us_scan_dirs(struct us_ring *r, size_t n, const int *dirfds, struct us_scan **scans,
                  long *rets)
{
    struct statx_wave w = {scans, 0, r->nslots};
    unsigned *freesx = r->freesx;
    size_t k = 0, i = 0; /* the next entry to stat: scans[k]->ents[i] */
    int ret;

    if (r->broken)
        return -EIO;
    if (n == 0)
        return 0;
    if (n > 0xffff)
        return -E2BIG;
    for (unsigned s = 0; s < r->nslots; s++)
        freesx[s] = s;
    for (size_t d = 0; d < n; d++) {
        scans[d]->n = 0;
        scans[d]->names_len = 0;
    }
    list_all(n, dirfds, scans, rets);

    /* Warm or cold?  Time a few statx inline first. */
    {
        unsigned probes = 0;
        uint64_t t0 = now_ns();
        while (k < n && probes < 4) {
            if (rets[k] < 0 || i >= scans[k]->n) {
                k++;
                i = 0;
                continue;
            }
            struct us_entry *e = &scans[k]->ents[i];
            stat_entry(dirfds[k], e, scans[k]->names + e->name_off, r->scan_follow);
            i++;
            probes++;
        }
        if (probes && (now_ns() - t0) / probes < WARM_STATX_NS) {
            for (; k < n; k++, i = 0)
                for (; rets[k] >= 0 && i < scans[k]->n; i++) {
                    struct us_entry *e = &scans[k]->ents[i];
                    stat_entry(dirfds[k], e, scans[k]->names + e->name_off, r->scan_follow);
                }
        }
    }

    /* Cold: every remaining entry of every directory through the backend's
     * STATX, many in flight, so the inode reads queue up at the disk
     * together. */
    while (k < n || w.inflight) {
        if (us_stop_flag)
            k = n; /* submit no more; let those in flight land */
        while (w.nfree && k < n) {
            if (rets[k] < 0 || i >= scans[k]->n) {
                k++;
                i = 0;
                continue;
            }
            unsigned s = r->freesx[--w.nfree];
            struct us_entry *e = &scans[k]->ents[i];
            r->be->statx(r, ((uint64_t)k << 48) | ((uint64_t)i << 16) | s, dirfds[k],
                         scans[k]->names + e->name_off,
                         (r->scan_follow ? 0 : AT_SYMLINK_NOFOLLOW) | AT_NO_AUTOMOUNT,
                         STATX_BASIC_STATS, &r->sx[s]);
            i++;
            w.inflight++;
        }
        if (!w.inflight)
            break;
        ret = r->be->wait(r, on_statx, &w);
        if (ret < 0) {
            r->broken = true; /* statx ops still point into the scans */
            return ret;
        }
    }
    for (size_t d = 0; d < n; d++)
        if (rets[d] >= 0)
            rets[d] = (long)scans[d]->n;
    return us_stop_flag ? -EINTR : (long)n;
}

long us_scan_dir(struct us_ring *r, int dirfd, struct us_scan *sc)
{
    long ret = 0, got = us_scan_dirs(r, 1, &dirfd, &sc, &ret);
    if (got < 0)
        return got;
    return ret < 0 ? ret : (long)sc->n;
}

void us_scan_free(struct us_scan *sc)
{
    free(sc->ents);
    free(sc->names);
    memset(sc, 0, sizeof *sc);
}
