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

static uint32_t xattr_diff(int sfd, int dfd, const char *name, uint32_t flags, bool is_dir,
                           char *buf)
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
    if ((flags & US_P_ACL) && match_acls(src, dst, list, n, buf, is_dir, true, &m))
        d |= US_D_ACL;
    if (m.err)
        d |= US_D_ERR;
    return d;
}

/* With -A, a mode's group bits are the ACL's group entry, not its mask. */
static uint32_t perms_with_acls(const struct us_stat *s, const struct us_stat *d, int sfd, int dfd,
                                const char *name, uint32_t diff)
{
    uint32_t sm = s->mode & 07777, dm = d->mode & 07777;
    int sg = acl_group_obj((struct target){sfd, name, false});
    int dg = acl_group_obj((struct target){dfd, name, false});

    if (sg >= 0)
        sm = (sm & ~070u) | ((uint32_t)sg << 3);
    if (dg >= 0)
        dm = (dm & ~070u) | ((uint32_t)dg << 3);
    return sm == dm ? diff & ~(uint32_t)US_D_PERMS : diff;
}

/* US_F_CONTENT: a regular file and its twin of one size */
static bool content_wanted(uint32_t flags, const struct us_stat *st, uint32_t diff)
{
    return (flags & US_F_CONTENT) && st->type == US_T_REG && !(diff & (US_D_TYPE | US_D_SIZE));
}

uint32_t compare_entry(const struct us_scan *src, const struct us_stat *dst_st, int sfd, int dfd,
                       uint32_t flags, uint32_t i, uint32_t diff, char *buf,
                       const struct content_buf *cb)
{
    const char *name = name_at(src, i);
    const struct us_stat *st = &src->ents[i].st;

    if (st->type == US_T_LNK)
        diff |= target_diff(sfd, dfd, name);
    if (buf) /* a directory's default ACL too */
        diff |= xattr_diff(sfd, dfd, name, flags, st->type == US_T_DIR, buf);
    if ((diff & US_D_PERMS) && (flags & US_P_ACL) && !(diff & US_D_TYPE))
        diff = perms_with_acls(st, dst_st, sfd, dfd, name, diff);
    if (content_wanted(flags, st, diff)) /* last: the other bits decide whether to read */
        diff |= content_diff(sfd, dfd, name, st, dst_st, flags, diff, cb);
    return diff;
}

long match_merge(const struct us_scan *src, const struct us_scan *dst, uint32_t flags,
                 uint32_t skip_xattr, int32_t *match, uint32_t *diff, uint8_t *dst_matched,
                 const struct us_stat **dst_st, uint32_t *todo, uint32_t *ntodo)
{
    uint32_t *si = sorted(src), *di = sorted(dst);
    long matched = 0;
    uint32_t a = 0, b = 0, nt = 0;
    bool xattrs = flags & (US_P_XATTR | US_P_ACL);

    if (!si || !di) {
        free(si);
        free(di);
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
            if (!(d & US_D_TYPE) &&
                (se->st.type == US_T_LNK || (xattrs && !(d & skip_xattr)) ||
                 ((d & US_D_PERMS) && (flags & US_P_ACL)) || content_wanted(flags, &se->st, d)))
                todo[nt++] = i;
        }
        diff[i] = d;
        a++;
        b++;
    }
    free(si);
    free(di);
    *ntodo = nt;
    return matched;
}

long us_sync_match(const struct us_scan *src, const struct us_scan *dst, int src_dirfd,
                   int dst_dirfd, uint32_t flags, uint32_t skip_xattr, int32_t *match,
                   uint32_t *diff, uint8_t *dst_matched)
{
    size_t n = src->n ? src->n : 1;
    const struct us_stat **dst_st = malloc(n * sizeof *dst_st);
    uint32_t *todo = malloc(n * sizeof *todo), ntodo = 0;
    char *buf = NULL;
    long matched = -ENOMEM;

    if (flags & (US_P_XATTR | US_P_ACL))
        buf = malloc(4 * (size_t)XATTR_MAX);
    if (!dst_st || !todo || ((flags & (US_P_XATTR | US_P_ACL)) && !buf))
        goto out;
    matched =
        match_merge(src, dst, flags, skip_xattr, match, diff, dst_matched, dst_st, todo, &ntodo);
    for (uint32_t k = 0; matched >= 0 && k < ntodo; k++) {
        uint32_t i = todo[k];
        diff[i] = compare_entry(src, dst_st[i], src_dirfd, dst_dirfd, flags, i, diff[i], buf, NULL);
    }
out:
    free(buf);
    free(todo);
    free(dst_st);
    return matched;
}
