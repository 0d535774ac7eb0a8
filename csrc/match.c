/* us_sync_match: one directory of the source against its destination twin,
 * for `uringsync sync`.  The names of both scans are sorted and merged (no
 * map of anything bigger than the directory), and each source entry gets
 * what differs at its destination twin as US_D_* bits, so the walker looks
 * in Python only at the entries where something differs.  The symlink
 * targets (readlinkat) and, when asked, the xattrs and ACLs (listxattrat /
 * getxattrat, or l*xattr through /proc/self/fd) of both sides are compared
 * here too: plain syscalls, nothing is written. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct order {
    const struct us_scan *sc;
    uint32_t *idx;
};

static const char *name_at(const struct us_scan *sc, uint32_t i)
{
    return sc->names + sc->ents[i].name_off;
}

/* qsort_r's comparison: entries by name, as bytes */
static int by_name(const void *a, const void *b, void *arg)
{
    const struct us_scan *sc = arg;

    return strcmp(name_at(sc, *(const uint32_t *)a), name_at(sc, *(const uint32_t *)b));
}

static uint32_t *sorted(const struct us_scan *sc)
{
    uint32_t *idx = malloc((sc->n ? sc->n : 1) * sizeof *idx);

    if (!idx)
        return NULL;
    for (uint32_t i = 0; i < sc->n; i++)
        idx[i] = i;
    qsort_r(idx, sc->n, sizeof *idx, by_name, (void *)sc);
    return idx;
}

static uint32_t attr_diff(const struct us_stat *a, const struct us_stat *b)
{
    uint32_t d = 0;

    if (a->type != b->type)
        return US_D_TYPE;
    if (a->type == US_T_REG && a->size != b->size)
        d |= US_D_SIZE;
    if (a->mtime_sec != b->mtime_sec)
        d |= US_D_MTIME;
    if ((a->mode & 07777) != (b->mode & 07777))
        d |= US_D_PERMS;
    if (a->uid != b->uid)
        d |= US_D_UID;
    if (a->gid != b->gid)
        d |= US_D_GID;
    if ((a->type == US_T_CHR || a->type == US_T_BLK) &&
        (a->rdev_major != b->rdev_major || a->rdev_minor != b->rdev_minor))
        d |= US_D_RDEV;
    return d;
}

static uint32_t target_diff(int sfd, int dfd, const char *name)
{
    char a[PATH_MAX], b[PATH_MAX];
    ssize_t n = readlinkat(sfd, name, a, sizeof a);
    ssize_t m = readlinkat(dfd, name, b, sizeof b);

    if (n < 0 || m < 0)
        return US_D_TARGET | US_D_ERR;
    return (n != m || memcmp(a, b, (size_t)n) != 0) ? US_D_TARGET : 0;
}

static uint32_t xattr_diff(int sfd, int dfd, const char *name, uint32_t flags, char *buf)
{
    struct target src = {sfd, name, false}, dst = {dfd, name, false};
    struct meta m = {0, US_OP_NONE};
    char *list = buf + 3 * XATTR_MAX;
    ssize_t n = list_xattrs(src, list, &m);
    uint32_t d = 0;

    /* the common case: no xattrs (and no ACLs) on either side */
    if (n == 0 && !m.err && list_xattrs(dst, buf, &m) == 0 && !m.err)
        return 0;
    m.err = 0;

    if ((flags & US_P_XATTR) && match_xattrs(src, dst, list, n, buf, true, &m))
        d |= US_D_XATTR;
    if ((flags & US_P_ACL) && match_acls(src, dst, list, n, buf, false, true, &m))
        d |= US_D_ACL;
    if (m.err)
        d |= US_D_ERR;
    return d;
}

/* Entries whose symlink value or xattrs are compared: plain syscalls, a few
 * per entry, spread over threads when there are many (the walker's only
 * other work meanwhile is waiting for them). */
#define MATCH_THREADS 8
#define MATCH_PER_THREAD 64 /* entries a thread is worth starting for */

struct cmp_job {
    const struct us_scan *src;
    int sfd, dfd;
    uint32_t flags;
    const uint32_t *todo;          /* source indices */
    const struct us_stat **dst_st; /* per source index: its twin's stat */
    uint32_t n, stride, first;
    uint32_t *diff;
    int err;
};

/* With -A, a mode's group bits are the ACL's group entry, not its mask. */
static uint32_t perms_with_acls(const struct cmp_job *c, uint32_t i, const char *name)
{
    const struct us_stat *s = &c->src->ents[i].st, *d = c->dst_st[i];
    uint32_t sm = s->mode & 07777, dm = d->mode & 07777;
    int sg = acl_group_obj((struct target){c->sfd, name, false});
    int dg = acl_group_obj((struct target){c->dfd, name, false});

    if (sg >= 0)
        sm = (sm & ~070u) | ((uint32_t)sg << 3);
    if (dg >= 0)
        dm = (dm & ~070u) | ((uint32_t)dg << 3);
    return sm == dm ? c->diff[i] & ~(uint32_t)US_D_PERMS : c->diff[i];
}

static void *cmp_worker(void *arg)
{
    struct cmp_job *c = arg;
    char *buf = NULL;

    if (c->flags & (US_P_XATTR | US_P_ACL)) {
        buf = malloc(4 * (size_t)XATTR_MAX);
        if (!buf) {
            c->err = -ENOMEM;
            return NULL;
        }
    }
    for (uint32_t k = c->first; k < c->n; k += c->stride) {
        uint32_t i = c->todo[k];
        const char *name = name_at(c->src, i);

        if (c->src->ents[i].st.type == US_T_LNK)
            c->diff[i] |= target_diff(c->sfd, c->dfd, name);
        if (buf && c->src->ents[i].st.type != US_T_DIR) /* a directory's: at its end */
            c->diff[i] |= xattr_diff(c->sfd, c->dfd, name, c->flags, buf);
        if ((c->diff[i] & US_D_PERMS) && (c->flags & US_P_ACL) && !(c->diff[i] & US_D_TYPE))
            c->diff[i] = perms_with_acls(c, i, name);
    }
    free(buf);
    return NULL;
}

static int compare_all(const struct us_scan *src, const struct us_stat **dst_st, int sfd, int dfd,
                       uint32_t flags, const uint32_t *todo, uint32_t n, uint32_t *diff)
{
    struct cmp_job jobs[MATCH_THREADS];
    pthread_t tid[MATCH_THREADS];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t want = n / MATCH_PER_THREAD, nt = 1, started = 0;
    int err = 0;

    if (want > 1)
        nt = (uint32_t)(cpus > 1 ? cpus : 1) < want ? (uint32_t)(cpus > 1 ? cpus : 1) : want;
    if (nt > MATCH_THREADS)
        nt = MATCH_THREADS;
    for (uint32_t t = 0; t < nt; t++)
        jobs[t] = (struct cmp_job){src, sfd, dfd, flags, todo, dst_st, n, nt, t, diff, 0};
    for (uint32_t t = 1; t < nt; t++) {
        if (pthread_create(&tid[t], NULL, cmp_worker, &jobs[t]) != 0)
            break;
        started = t;
    }
    /* this thread takes its share, and that of any thread not started */
    for (uint32_t t = 0; t < nt; t++)
        if (t == 0 || t > started)
            cmp_worker(&jobs[t]);
    for (uint32_t t = 1; t <= started; t++)
        pthread_join(tid[t], NULL);
    for (uint32_t t = 0; t < nt; t++)
        if (jobs[t].err)
            err = jobs[t].err;
    return err;
}

long us_sync_match(const struct us_scan *src, const struct us_scan *dst, int src_dirfd,
                   int dst_dirfd, uint32_t flags, uint32_t skip_xattr, int32_t *match,
                   uint32_t *diff, uint8_t *dst_matched)
{
    uint32_t *si = sorted(src), *di = sorted(dst);
    long matched = 0;
    uint32_t a = 0, b = 0, ntodo = 0;
    bool xattrs = flags & (US_P_XATTR | US_P_ACL);
    int err;

    const struct us_stat **dst_st = malloc((src->n ? src->n : 1) * sizeof *dst_st);

    if (!si || !di || !dst_st) {
        free(si);
        free(di);
        free(dst_st);
        return -ENOMEM;
    }
    memset(dst_matched, 0, dst->n);
    while (a < src->n) {
        uint32_t i = si[a];
        int c = b < dst->n ? strcmp(name_at(src, i), name_at(dst, di[b])) : -1;

        if (c > 0) {
            b++;
            continue;
        }
        if (c < 0) {
            match[i] = -1;
            diff[i] = US_D_MISSING;
            a++;
            continue;
        }
        uint32_t j = di[b];
        const struct us_entry *se = &src->ents[i], *de = &dst->ents[j];
        uint32_t d;

        match[i] = (int32_t)j;
        dst_st[i] = &de->st;
        dst_matched[j] = 1;
        matched++;
        if (se->err || de->err) {
            d = US_D_ERR;
        } else {
            d = attr_diff(&se->st, &de->st);
            /* to compare in compare_all: si is done with, its slots reused */
            if (!(d & US_D_TYPE) && (se->st.type == US_T_LNK || (xattrs && !(d & skip_xattr)) ||
                                     ((d & US_D_PERMS) && (flags & US_P_ACL))))
                si[ntodo++] = i;
        }
        diff[i] = d;
        a++;
        b++;
    }
    err = ntodo ? compare_all(src, dst_st, src_dirfd, dst_dirfd, flags, si, ntodo, diff) : 0;
    free(dst_st);
    free(si);
    free(di);
    return err < 0 ? err : matched;
}
