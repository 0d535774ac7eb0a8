/* Metadata in cp's order, for every kind of entry:
 *
 *   owner     fchown first: it clears set-id bits
 *   xattrs    all names but ACLs, before the mode (a read-only mode would
 *             refuse user.* names even to the owner)
 *   mode      fchmod (not on a symlink)
 *   ACLs      after the mode: a chmod rewrites an ACL's mask
 *   times     futimens last
 *
 * The order is written down once, in meta_first / meta_next_xattr /
 * meta_xattr_done / meta_last.  meta_sync runs it with plain syscalls
 * (directories, big files, symlinks, special files, us_set_meta_fd); a
 * regular file copied by a job runs the same steps, its plain xattrs going
 * through the backend (start_meta .. finish_meta below).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool chown_failure_ok(uint32_t flags, int e)
{
    /* cp -a as a non-root user: not being allowed to give a file away is
     * not an error; cp then keeps the group if it can and drops set-id bits. */
    return !(flags & US_F_STRICT_OWNER) && (e == EPERM || e == EINVAL);
}

/* by name: never follow (a `follow` target is a /proc/self/fd link) */
static int nofollow(struct target t)
{
    return t.follow ? 0 : AT_SYMLINK_NOFOLLOW;
}

static int t_chown(struct target t, uid_t uid, gid_t gid)
{
    int r = t.name ? fchownat(t.fd, t.name, uid, gid, nofollow(t)) : fchown(t.fd, uid, gid);
    return r < 0 ? -errno : 0;
}

/* Owner first (it clears set-id bits).  Returns the mode to apply later:
 * without the right to give the file away, as cp -a, no set-id bits, and
 * no sticky bit on a non-directory. */
static uint32_t do_owner(struct target t, const struct us_stat *st, uint32_t flags, uint32_t mode,
                         struct meta *m)
{
    int ret;

    if (!(flags & US_P_OWNER) || (ret = t_chown(t, st->uid, st->gid)) == 0)
        return mode;
    if (!chown_failure_ok(flags, -ret)) {
        note(m, ret, US_OP_CHOWN);
        return mode;
    }
    (void)t_chown(t, (uid_t)-1, st->gid);
    mode &= ~(uint32_t)(S_ISUID | S_ISGID);
    if (!S_ISDIR(st->mode))
        mode &= ~(uint32_t)S_ISVTX;
    return mode;
}

static void do_mode(struct target t, uint32_t mode, struct meta *m)
{
    /* by name: never follow, even if the node we made was swapped meanwhile */
    int r = t.name ? fchmodat(t.fd, t.name, mode, nofollow(t)) : fchmod(t.fd, mode);
    if (r < 0)
        note(m, -errno, US_OP_CHMOD);
}

static void times_of(const struct us_stat *st, struct timespec ts[2])
{
    ts[0].tv_sec = st->atime_sec;
    ts[0].tv_nsec = st->atime_nsec;
    ts[1].tv_sec = st->mtime_sec;
    ts[1].tv_nsec = st->mtime_nsec;
}

static void do_times(struct target t, const struct us_stat *st, uint32_t flags, struct meta *m)
{
    struct timespec ts[2];
    int r;

    if (!(flags & US_P_TIMES))
        return;
    times_of(st, ts);
    r = t.name ? utimensat(t.fd, t.name, ts, nofollow(t)) : futimens(t.fd, ts);
    if (r < 0)
        note(m, -errno, US_OP_UTIMES);
}

/* ------------------------------------------------------ cp's order */

void meta_init(struct meta_seq *q, struct target src, struct target dst, const struct us_stat *st,
               uint32_t flags, uint32_t mode_mask, char *buf, bool is_dir)
{
    q->src = src;
    q->dst = dst;
    q->st = st;
    q->flags = flags;
    q->mode = st->mode & mode_mask & 07777;
    q->link = S_ISLNK(st->mode);
    q->is_dir = is_dir;
    q->keep_mode = false;
    q->list = buf;
    q->val = buf ? buf + XATTR_MAX : NULL;
    q->n = q->pos = 0;
    q->m.err = q->xm.err = 0;
    q->m.op = q->xm.op = US_OP_NONE;
}

/* owner, then the names of the source's xattrs */
void meta_first(struct meta_seq *q)
{
    q->mode = do_owner(q->dst, q->st, q->flags, q->mode, &q->m);
    q->n = q->pos = 0;
    if (q->src.fd >= 0 && (q->flags & (US_P_XATTR | US_P_ACL)))
        q->n = (uint32_t)list_xattrs(q->src, q->list, &q->m);
}

/* The next plain (non-ACL) xattr to copy (US_P_XATTR), or NULL when none is
 * left; the caller copies it and reports with meta_xattr_done. */
const char *meta_next_xattr(struct meta_seq *q)
{
    while ((q->flags & US_P_XATTR) && q->pos < q->n) {
        const char *key = q->list + q->pos;
        if (!is_acl(key))
            return key;
        q->pos += (uint32_t)strlen(key) + 1;
    }
    return NULL;
}

void meta_xattr_done(struct meta_seq *q, int err, int op)
{
    note(&q->xm, err, op);
    q->pos += (uint32_t)strlen(q->list + q->pos) + 1;
}

/* mode, ACLs, times */
void meta_last(struct meta_seq *q)
{
    /* Linux refuses user.* on symlinks, so the source has none either */
    if (!(q->link && q->xm.err == -EPERM))
        note(&q->m, q->xm.err, q->xm.op);
    if (!q->link && !q->keep_mode)
        do_mode(q->dst, q->mode, &q->m);
    if ((q->flags & US_P_ACL) && !q->link)
        copy_acls(q->src, q->dst, q->list, (ssize_t)q->n, q->val, q->is_dir,
                  (q->flags & US_F_CLEAR_ACL) != 0, &q->m);
    do_times(q->dst, q->st, q->flags, &q->m);
}

static struct meta meta_run(struct meta_seq *q)
{
    const char *key;

    meta_first(q);
    while ((key = meta_next_xattr(q))) {
        struct meta one = {0, US_OP_NONE};
        copy_one_xattr(q->src, q->dst, key, q->val, &one);
        meta_xattr_done(q, one.err, one.op);
    }
    meta_last(q);
    return q->m;
}

/* The whole sequence with plain syscalls.  `buf` holds 2 * XATTR_MAX
 * bytes; src.fd < 0: the source is unreadable and has no xattrs to give. */
struct meta meta_sync(struct target src, struct target dst, const struct us_stat *st,
                      uint32_t flags, uint32_t mode_mask, char *buf, bool is_dir)
{
    struct meta_seq q;

    meta_init(&q, src, dst, st, flags, mode_mask, buf, is_dir);
    return meta_run(&q);
}

int us_set_meta_fd(int fd, const struct us_stat *st, uint32_t flags, uint32_t mode_mask, int *op)
{
    struct target src = {-1, NULL, false}, dst = {fd, NULL, false};
    struct meta_seq q;

    /* owner, mode, times only: no xattrs, and a mode whatever st says */
    meta_init(&q, src, dst, st, flags & ~(uint32_t)(US_P_XATTR | US_P_ACL), mode_mask, NULL, false);
    q.link = false;
    meta_run(&q);
    *op = q.m.op;
    return q.m.err;
}

int us_dir_meta(int src_fd, int dst_fd, const struct us_stat *st, uint32_t flags,
                uint32_t mode_mask, int *op)
{
    struct target src = {src_fd, NULL, false}, dst = {dst_fd, NULL, false};
    char *buf = malloc(2 * XATTR_MAX);
    struct meta m;

    if (!buf) {
        *op = US_OP_XATTR_LIST;
        return -ENOMEM;
    }
    /* a directory may have inherited default ACLs: always clear, it is one
     * syscall per directory */
    m = meta_sync(src, dst, st, flags | US_F_CLEAR_ACL, mode_mask, buf, true);
    free(buf);
    *op = m.op;
    return m.err;
}

/* Metadata by (dirfd, name) for symlinks and special files, never
 * following; `buf` holds 2 * XATTR_MAX bytes. */
int meta_at(const struct us_job *j, char *buf, int *op)
{
    struct target src = {j->src_dirfd, j->src_name, false},
                  dst = {j->dst_dirfd, j->dst_name, false};
    struct meta m = meta_sync(src, dst, j->st, j->flags, j->mode_mask, buf, false);

    *op = m.op;
    return m.err;
}

/* ------------------------------------------- making dst match: US_T_META
 * The same order on an existing entry: owner, mode and times are applied
 * as st says (the caller compared them), xattrs and ACLs are compared with
 * the source's and made equal (match_xattrs, match_acls); US_F_DRY writes
 * nothing.  buf: 4 * XATTR_MAX bytes, or NULL when neither is asked. */
static struct meta meta_match(struct target src, struct target dst, const struct us_stat *st,
                              uint32_t flags, uint32_t mode_mask, char *buf, bool is_dir,
                              uint32_t *changed)
{
    bool dry = (flags & US_F_DRY) != 0;
    bool link = S_ISLNK(st->mode);
    bool with_src = src.fd >= 0 && buf;
    char *rest = buf ? buf + XATTR_MAX : NULL; /* after the source's names */
    struct meta_seq q;

    *changed = 0;
    if (!with_src)
        flags &= ~(uint32_t)(US_P_XATTR | US_P_ACL);
    if (dry)
        flags &= ~(uint32_t)(US_P_OWNER | US_P_MODE | US_P_TIMES);
    meta_init(&q, src, dst, st, flags, mode_mask, buf, is_dir);
    meta_first(&q); /* owner; the source's names */
    if (q.m.op == US_OP_XATTR_LIST)
        flags &= ~(uint32_t)(US_P_XATTR | US_P_ACL); /* unknown: leave dst's alone */
    if ((flags & US_P_XATTR) && match_xattrs(src, dst, q.list, q.n, rest, dry, &q.m))
        *changed |= US_CH_XATTR;
    if ((flags & US_P_MODE) && !link)
        do_mode(dst, q.mode, &q.m);
    if ((flags & US_P_ACL) && !link && match_acls(src, dst, q.list, q.n, rest, is_dir, dry, &q.m)) {
        *changed |= US_CH_ACL;
        /* a removed access ACL leaves its mask in the group bits: the mode
         * again (harmless after a set one: st's group bits are its mask;
         * -A implies -p, so the mode is the source's) */
        if (!dry)
            do_mode(dst, q.mode, &q.m);
    }
    do_times(dst, st, flags, &q.m);
    return q.m;
}

int us_meta_sync_fd(int src_fd, int dst_fd, const struct us_stat *st, uint32_t flags,
                    uint32_t mode_mask, uint32_t *changed, int *op)
{
    struct target src = {src_fd, NULL, false}, dst = {dst_fd, NULL, false};
    char *buf = NULL;
    struct meta m;

    *changed = 0;
    if (src_fd >= 0 && (flags & (US_P_XATTR | US_P_ACL)) && !(buf = malloc(4 * XATTR_MAX))) {
        *op = US_OP_XATTR_LIST;
        return -ENOMEM;
    }
    m = meta_match(src, dst, st, flags, mode_mask, buf, S_ISDIR(st->mode), changed);
    free(buf);
    *op = m.op;
    return m.err;
}

/* A symlink by name (after checking it is one); anything else through an
 * O_PATH|O_NOFOLLOW fd of the type st says, reached as /proc/self/fd/N by
 * the calls that take no O_PATH fd: opening it for real could block (a
 * FIFO), act (a device) or be refused (mode 0000). */
int meta_job(struct us_job *j, char *buf, int *op)
{
    struct target src = {j->src_dirfd, j->src_name, false};
    struct target dst = {j->dst_dirfd, j->dst_name, false};
    char path[32];
    struct stat sb;
    struct meta m = {0, US_OP_NONE};
    int fd = -1;

    j->changed = 0;
    if (!S_ISLNK(j->st->mode)) {
        fd = openat(j->dst_dirfd, j->dst_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            *op = US_OP_OPEN_DST;
            return -errno;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        dst = (struct target){AT_FDCWD, path, true};
    }
    if ((fd >= 0 ? fstat(fd, &sb) : fstatat(j->dst_dirfd, j->dst_name, &sb, AT_SYMLINK_NOFOLLOW)) <
        0)
        note(&m, -errno, US_OP_OPEN_DST);
    else if ((sb.st_mode & S_IFMT) != (j->st->mode & S_IFMT))
        note(&m,
             S_ISDIR(sb.st_mode)    ? -EISDIR
             : S_ISDIR(j->st->mode) ? -ENOTDIR
                                    : -EINVAL,
             US_OP_TYPE);
    else
        m = meta_match(src, dst, j->st, j->flags, j->mode_mask, buf, S_ISDIR(sb.st_mode),
                       &j->changed);
    if (fd >= 0)
        close(fd);
    *op = m.op;
    return m.err;
}

/* ------------------------------------------- a job's regular file
 * The same order, driven by completions: the plain xattrs go through the
 * backend (FGETXATTR on the source, FSETXATTR on the destination), one
 * name at a time, in the slot's first buffer. */

static void finish_meta(struct us_ring *r, struct slot *s);

static void next_xattr(struct us_ring *r, struct slot *s)
{
    const char *key = meta_next_xattr(&s->meta);

    if (!key) {
        finish_meta(r, s);
        return;
    }
    r->be->fgetxattr(r, udata(slot_index(r, s), 0, T_XGET), s->sfd, key, s->meta.val, XATTR_MAX);
    s->pending++;
}

void on_xattr(struct us_ring *r, struct slot *s, enum tag t, int res)
{
    struct meta_seq *q = &s->meta;

    s->pending--;
    if (t == T_XGET && res >= 0) {
        r->be->fsetxattr(r, udata(slot_index(r, s), 0, T_XSET), s->dfd, q->list + q->pos, q->val,
                         (size_t)res, 0);
        s->pending++;
        return;
    }
    if (t == T_XGET && res == -ENODATA) /* removed meanwhile */
        res = 0;
    meta_xattr_done(q, res, t == T_XGET ? US_OP_XATTR_GET : US_OP_XATTR_SET);
    next_xattr(r, s);
}

/* The data is in: the metadata, then close (the destination's close is
 * waited for). */
void start_meta(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    uint32_t flags = j->flags, mask = j->mode_mask;
    struct target src = {s->sfd, NULL, false}, dst = {s->dfd, NULL, false};

    /* from here s->st is what the destination gets */
    if (s->replaced && !(flags & US_P_MODE)) {
        s->st.mode = s->old_mode;
        mask = 07777;
    }
    if (s->replaced && !(flags & US_P_OWNER) && geteuid() == 0) {
        s->st.uid = s->old_uid;
        s->st.gid = s->old_gid;
        flags |= US_P_OWNER;
    }
    if (s->in_place) {
        /* cp: an existing file keeps its ACLs, and its mode without -p */
        flags &= ~(uint32_t)US_F_CLEAR_ACL;
    }
    meta_init(&s->meta, src, dst, &s->st, flags, mask, buf_addr(r, s->ch[0].buf), false);
    s->meta.keep_mode = s->in_place && !(flags & US_P_MODE);
    meta_first(&s->meta);
    next_xattr(r, s);
}

static void finish_meta(struct us_ring *r, struct slot *s)
{
    meta_last(&s->meta);
    record(s->job, s->meta.m.err, s->meta.m.op);
    /* plain syscall: flushed before the close, as the rename waits for it */
    if ((s->job->flags & US_F_FSYNC) && !s->failed && fsync(s->dfd) < 0)
        fail(s, US_OP_FSYNC, -errno);
    r->be->close(r, udata(0, 0, T_IGNORE), s->sfd);
    r->closes_pending++;
    s->sfd = -1;
    r->be->close(r, udata(slot_index(r, s), 0, T_CLOSE_DST), s->dfd);
    s->pending++;
}
