/* uringsync engine: many files in flight on one io_uring.
 *
 * Each file being copied owns a slot that moves through a small state
 * machine driven by completions:
 *
 *   OPENAT src --link--> OPENAT dst (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600)
 *   data:  copy_file_range (plain syscall; io_uring has no op for it) for big
 *          files, or READ(_FIXED)/WRITE(_FIXED) over registered buffers with
 *          several chunks of one file in flight
 *   meta:  fchown, fchmod, futimens (plain syscalls: no io_uring ops)
 *   CLOSE dst (waited for: a close error means lost data), CLOSE src
 *
 * A destination that could not be written completely is unlinked, so nothing
 * is left that looks complete.  Every failure is kept in the job as -errno and
 * the step (US_OP_*), and the run goes on with the other jobs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

_Static_assert(US_IORING_OP_READ_FIXED == IORING_OP_READ_FIXED, "opcode READ_FIXED");
_Static_assert(US_IORING_OP_WRITE_FIXED == IORING_OP_WRITE_FIXED, "opcode WRITE_FIXED");
_Static_assert(US_IORING_OP_FALLOCATE == IORING_OP_FALLOCATE, "opcode FALLOCATE");
_Static_assert(US_IORING_OP_OPENAT == IORING_OP_OPENAT, "opcode OPENAT");
_Static_assert(US_IORING_OP_CLOSE == IORING_OP_CLOSE, "opcode CLOSE");
_Static_assert(US_IORING_OP_STATX == IORING_OP_STATX, "opcode STATX");
_Static_assert(US_IORING_OP_READ == IORING_OP_READ, "opcode READ");
_Static_assert(US_IORING_OP_WRITE == IORING_OP_WRITE, "opcode WRITE");
_Static_assert(US_IORING_OP_FADVISE == IORING_OP_FADVISE, "opcode FADVISE");
_Static_assert(US_IORING_OP_SPLICE == IORING_OP_SPLICE, "opcode SPLICE");
_Static_assert(US_IORING_OP_RENAMEAT == IORING_OP_RENAMEAT, "opcode RENAMEAT");
_Static_assert(US_IORING_OP_UNLINKAT == IORING_OP_UNLINKAT, "opcode UNLINKAT");
_Static_assert(US_IORING_OP_MKDIRAT == IORING_OP_MKDIRAT, "opcode MKDIRAT");
_Static_assert(US_IORING_OP_SYMLINKAT == IORING_OP_SYMLINKAT, "opcode SYMLINKAT");
_Static_assert(US_IORING_OP_LINKAT == IORING_OP_LINKAT, "opcode LINKAT");
_Static_assert(US_IORING_OP_FSETXATTR == IORING_OP_FSETXATTR, "opcode FSETXATTR");
_Static_assert(US_IORING_OP_FGETXATTR == IORING_OP_FGETXATTR, "opcode FGETXATTR");

#define MAX_CHUNKS 8
#define EMFILE_TRIES 4
/* a buffer holds an xattr name list (64 KiB max) and a value (64 KiB max) */
#define MIN_BUF (128u * 1024u)
#define XATTR_MAX (64u * 1024u)

enum tag {
    T_OPEN_SRC = 1,
    T_OPEN_DST,
    T_READ,
    T_WRITE,
    T_SYMLINK,
    T_CLOSE_DST,
    T_IGNORE,
    T_XGET,
    T_XSET,
    T_LINK,
};

struct chunk {
    int buf;       /* index into the buffer pool, -1 when not held */
    uint64_t off;  /* file offset of this chunk */
    uint32_t len;  /* bytes asked for */
    uint32_t got;  /* bytes read */
    uint32_t put;  /* bytes written so far */
};

struct slot {
    struct us_job *job;
    int sfd, dfd;
    int pending; /* SQEs of this slot not yet completed */
    bool failed, dst_created, dst_retried, need_replace, emfile;
    bool replaced;           /* an existing file was replaced: old_* are its */
    bool sparse, zero_holes; /* seek over the source's holes; skip zero runs */
    bool range;              /* US_T_RANGE: the fds are the caller's */
    uint32_t old_mode, old_uid, old_gid;
    uint64_t written_end;    /* end of the last byte written */
    uint64_t size_end;       /* the size the copy must have (holes at the end) */
    uint32_t xa_len, xa_pos; /* xattr name list in the buffer, and the cursor */
    uint32_t mode;           /* to apply after the plain xattrs */
    struct us_stat st;       /* the source as fstat saw it once open */
    int fail_op, fail_err;
    uint64_t next_off, eof_off, bytes;
    int nchunks;
    struct chunk ch[MAX_CHUNKS];
};

struct us_ring {
    struct io_uring ring;
    struct us_config cfg;
    uint8_t ops[256];
    unsigned nops;
    bool fixed;
    char *bufmem;
    size_t bufmem_len;
    int *freebufs;
    unsigned nfree;
    struct slot *slots;
    unsigned nslots;
    unsigned *freeslots;
    unsigned nfreeslots;
    unsigned inflight, max_inflight, cap_inflight;
    unsigned ok_since_emfile; /* finished jobs since the last EMFILE */
    struct us_job **retry;
    unsigned nretry;
    long failed_jobs;
    unsigned closes_pending; /* fire-and-forget CLOSEs not yet reaped */
    bool broken;             /* a ring-level failure left work in flight */
    struct statx *sx;
    unsigned *freesx;
};

/* ------------------------------------------------------------------ utils */

static uint32_t type_of(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return US_T_REG;
    case S_IFDIR: return US_T_DIR;
    case S_IFLNK: return US_T_LNK;
    case S_IFIFO: return US_T_FIFO;
    case S_IFCHR: return US_T_CHR;
    case S_IFBLK: return US_T_BLK;
    case S_IFSOCK: return US_T_SOCK;
    default: return US_T_UNKNOWN;
    }
}

static void fill_stat(struct us_stat *o, const struct statx *x)
{
    o->ino = x->stx_ino;
    o->size = x->stx_size;
    o->blocks = x->stx_blocks;
    o->dev_major = x->stx_dev_major;
    o->dev_minor = x->stx_dev_minor;
    o->rdev_major = x->stx_rdev_major;
    o->rdev_minor = x->stx_rdev_minor;
    o->mode = x->stx_mode;
    o->uid = x->stx_uid;
    o->gid = x->stx_gid;
    o->nlink = x->stx_nlink;
    o->atime_sec = x->stx_atime.tv_sec;
    o->atime_nsec = x->stx_atime.tv_nsec;
    o->mtime_sec = x->stx_mtime.tv_sec;
    o->mtime_nsec = x->stx_mtime.tv_nsec;
    o->ctime_sec = x->stx_ctime.tv_sec;
    o->ctime_nsec = x->stx_ctime.tv_nsec;
    o->type = type_of(x->stx_mode);
}

static void times_of(const struct us_stat *st, struct timespec ts[2])
{
    ts[0].tv_sec = st->atime_sec;
    ts[0].tv_nsec = st->atime_nsec;
    ts[1].tv_sec = st->mtime_sec;
    ts[1].tv_nsec = st->mtime_nsec;
}

static inline uint64_t udata(unsigned slot, unsigned chunk, enum tag t)
{
    return ((uint64_t)slot << 32) | ((uint64_t)chunk << 8) | (uint64_t)t;
}

static struct io_uring_sqe *get_sqe(struct us_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    while (!sqe) {
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

/* Make room for `n` SQEs that must go to the kernel in one submission
 * (a linked chain). */
static void reserve_sqes(struct us_ring *r, unsigned n)
{
    if (io_uring_sq_space_left(&r->ring) < n)
        io_uring_submit(&r->ring);
}

static int take_buf(struct us_ring *r)
{
    return r->nfree ? r->freebufs[--r->nfree] : -1;
}

static void give_buf(struct us_ring *r, int b)
{
    r->freebufs[r->nfree++] = b;
}

static inline char *buf_addr(struct us_ring *r, int b)
{
    return r->bufmem + (size_t)b * r->cfg.buf_size;
}

/* ------------------------------------------------------------- metadata */

static bool chown_failure_ok(uint32_t flags, int e)
{
    /* cp -a as a non-root user: not being allowed to give a file away is
     * not an error; cp then keeps the group if it can and drops set-id bits. */
    return !(flags & US_F_STRICT_OWNER) && (e == EPERM || e == EINVAL);
}

/* Where metadata goes or comes from: an open fd (name == NULL), or
 * (dirfd, name) never following a symlink. */
struct target {
    int fd;
    const char *name;
};

/* The first failure of a sequence of metadata steps. */
struct meta {
    int err;
    int op;
};

static void note(struct meta *m, int err, int op)
{
    if (err < 0 && !m->err) {
        m->err = err;
        m->op = op;
    }
}

static int t_chown(struct target t, uid_t uid, gid_t gid)
{
    int r = t.name ? fchownat(t.fd, t.name, uid, gid, AT_SYMLINK_NOFOLLOW) : fchown(t.fd, uid, gid);
    return r < 0 ? -errno : 0;
}

/* Owner first (it clears set-id bits).  Returns the mode to apply later:
 * without the right to give the file away, as cp -a, no set-id bits, and
 * no sticky bit on a non-directory. */
static uint32_t do_owner(struct target t, const struct us_stat *st, uint32_t flags,
                         uint32_t mode, struct meta *m)
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
    int r = t.name ? fchmodat(t.fd, t.name, mode, AT_SYMLINK_NOFOLLOW) : fchmod(t.fd, mode);
    if (r < 0)
        note(m, -errno, US_OP_CHMOD);
}

static void do_times(struct target t, const struct us_stat *st, uint32_t flags, struct meta *m)
{
    struct timespec ts[2];
    int r;

    if (!(flags & US_P_TIMES))
        return;
    times_of(st, ts);
    r = t.name ? utimensat(t.fd, t.name, ts, AT_SYMLINK_NOFOLLOW) : futimens(t.fd, ts);
    if (r < 0)
        note(m, -errno, US_OP_UTIMES);
}

int us_set_meta_fd(int fd, const struct us_stat *st, uint32_t flags,
                   uint32_t mode_mask, int *op)
{
    struct target t = {fd, NULL};
    struct meta m = {0, US_OP_NONE};
    uint32_t mode = do_owner(t, st, flags, st->mode & mode_mask & 07777, &m);

    do_mode(t, mode, &m);
    do_times(t, st, flags, &m);
    *op = m.op;
    return m.err;
}

/* ------------------------------------------------------------- xattrs */

/* The *xattrat syscalls (Linux 6.13) reach symlinks and special files by
 * (dirfd, name) without opening them; older kernels answer ENOSYS and such
 * entries then keep no xattrs. */
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#endif
#ifndef SYS_getxattrat
#define SYS_getxattrat 464
#endif
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
#ifndef SYS_removexattrat
#define SYS_removexattrat 466
#endif

struct us_xattr_args {
    uint64_t value;
    uint32_t size;
    uint32_t flags;
};

static const char ACL_PREFIX[] = "system.posix_acl_";
static const char *const ACL_NAMES[2] = {"system.posix_acl_access", "system.posix_acl_default"};

static bool is_acl(const char *name)
{
    return strncmp(name, ACL_PREFIX, sizeof ACL_PREFIX - 1) == 0;
}

static ssize_t x_list(struct target t, char *buf, size_t n)
{
    if (!t.name)
        return flistxattr(t.fd, buf, n);
    return syscall(SYS_listxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, buf, n);
}

static ssize_t x_get(struct target t, const char *key, char *buf, size_t n)
{
    struct us_xattr_args a = {(uint64_t)(uintptr_t)buf, (uint32_t)n, 0};

    if (!t.name)
        return fgetxattr(t.fd, key, buf, n);
    return syscall(SYS_getxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key, &a, sizeof a);
}

static int x_set(struct target t, const char *key, const char *val, size_t n)
{
    struct us_xattr_args a = {(uint64_t)(uintptr_t)val, (uint32_t)n, 0};

    if (!t.name)
        return fsetxattr(t.fd, key, val, n, 0);
    return (int)syscall(SYS_setxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key, &a, sizeof a);
}

static int x_remove(struct target t, const char *key)
{
    if (!t.name)
        return fremovexattr(t.fd, key);
    return (int)syscall(SYS_removexattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key);
}

static bool no_xattr_support(int e)
{
    return e == ENOTSUP || e == ENOSYS;
}

/* List the source's xattr names into buf (XATTR_MAX bytes); 0 when the
 * source's file system has none. */
static ssize_t list_xattrs(struct target src, char *buf, struct meta *m)
{
    ssize_t n = x_list(src, buf, XATTR_MAX);

    if (n < 0) {
        if (!no_xattr_support(errno))
            note(m, -errno, US_OP_XATTR_LIST);
        return 0;
    }
    return n;
}

static void copy_one_xattr(struct target src, struct target dst, const char *key, char *val,
                           struct meta *m)
{
    ssize_t v = x_get(src, key, val, XATTR_MAX);

    if (v < 0) {
        if (errno != ENODATA) /* ENODATA: removed meanwhile */
            note(m, -errno, US_OP_XATTR_GET);
        return;
    }
    if (x_set(dst, key, val, (size_t)v) < 0)
        note(m, -errno, US_OP_XATTR_SET);
}

/* Every name but the ACLs (US_P_XATTR), with plain syscalls: before the
 * mode, as cp (a read-only mode would refuse user.* names to their owner). */
static void copy_plain_xattrs(struct target src, struct target dst, const char *list, ssize_t n,
                              char *val, struct meta *m)
{
    for (ssize_t pos = 0; pos < n; pos += (ssize_t)strlen(list + pos) + 1)
        if (!is_acl(list + pos))
            copy_one_xattr(src, dst, list + pos, val, m);
}

static bool list_has(const char *list, ssize_t n, const char *name)
{
    for (ssize_t pos = 0; pos < n; pos += (ssize_t)strlen(list + pos) + 1)
        if (strcmp(list + pos, name) == 0)
            return true;
    return false;
}

/* POSIX ACLs (US_P_ACL), after the mode (a chmod rewrites an ACL's mask).
 * With `clear`, ACLs the destination inherited and the source lacks go. */
static void copy_acls(struct target src, struct target dst, const char *list, ssize_t n,
                      char *val, bool is_dir, bool clear, struct meta *m)
{
    for (int k = 0; k < (is_dir ? 2 : 1); k++) {
        if (list_has(list, n, ACL_NAMES[k]))
            copy_one_xattr(src, dst, ACL_NAMES[k], val, m);
        else if (clear && x_remove(dst, ACL_NAMES[k]) < 0 && errno != ENODATA &&
                 !no_xattr_support(errno))
            note(m, -errno, US_OP_XATTR_SET);
    }
}

/* The whole sequence with plain syscalls, in cp's order: owner, xattrs,
 * mode, ACLs, times.  `buf` holds 2 * XATTR_MAX bytes; src.fd < 0: the
 * source is unreadable and has no xattrs to give. */
static struct meta meta_sync(struct target src, struct target dst, const struct us_stat *st,
                             uint32_t flags, uint32_t mode_mask, char *buf, bool is_dir,
                             bool clear_acls)
{
    struct meta m = {0, US_OP_NONE};
    bool link = S_ISLNK(st->mode);
    uint32_t mode = do_owner(dst, st, flags, st->mode & mode_mask & 07777, &m);
    ssize_t n = 0;

    if (src.fd >= 0 && (flags & (US_P_XATTR | US_P_ACL)))
        n = list_xattrs(src, buf, &m);
    if (flags & US_P_XATTR) {
        struct meta xm = {0, US_OP_NONE};
        copy_plain_xattrs(src, dst, buf, n, buf + XATTR_MAX, &xm);
        /* Linux refuses user.* on symlinks, so the source has none either */
        if (!(link && xm.err == -EPERM))
            note(&m, xm.err, xm.op);
    }
    if (!link)
        do_mode(dst, mode, &m);
    if ((flags & US_P_ACL) && !link)
        copy_acls(src, dst, buf, n, buf + XATTR_MAX, is_dir, clear_acls, &m);
    do_times(dst, st, flags, &m);
    return m;
}

int us_dir_meta(int src_fd, int dst_fd, const struct us_stat *st, uint32_t flags,
                uint32_t mode_mask, int *op)
{
    struct target src = {src_fd, NULL}, dst = {dst_fd, NULL};
    char *buf = malloc(2 * XATTR_MAX);
    struct meta m;

    if (!buf) {
        *op = US_OP_XATTR_LIST;
        return -ENOMEM;
    }
    /* a directory may have inherited default ACLs: always clear, it is one
     * syscall per directory */
    m = meta_sync(src, dst, st, flags, mode_mask, buf, true, true);
    free(buf);
    *op = m.op;
    return m.err;
}

int us_stat_at(int dirfd, const char *name, int follow, struct us_stat *st)
{
    struct statx x;
    int fl = AT_NO_AUTOMOUNT | (follow ? 0 : AT_SYMLINK_NOFOLLOW);

    if (name[0] == '\0')
        fl |= AT_EMPTY_PATH;
    if (statx(dirfd, name, fl, STATX_BASIC_STATS, &x) < 0)
        return -errno;
    fill_stat(st, &x);
    return 0;
}

/* Metadata by (dirfd, name) for symlinks and special files, never
 * following; `buf` holds 2 * XATTR_MAX bytes. */
static int meta_at(const struct us_job *j, char *buf, int *op)
{
    struct target src = {j->src_dirfd, j->src_name}, dst = {j->dst_dirfd, j->dst_name};
    struct meta m = meta_sync(src, dst, j->st, j->flags, j->mode_mask, buf, false,
                              (j->flags & US_F_CLEAR_ACL) != 0);

    *op = m.op;
    return m.err;
}

/* ------------------------------------------------------------ big files
 * A big file is split into US_T_RANGE jobs that several workers copy at
 * once.  The walker opens both ends here, hands the fds to the workers, and
 * completes the file with us_big_finish once every range is in. */

static void stat_from(struct us_stat *st, const struct stat *sb)
{
    st->size = (uint64_t)sb->st_size;
    st->blocks = (uint64_t)sb->st_blocks;
    st->mode = sb->st_mode;
    st->uid = sb->st_uid;
    st->gid = sb->st_gid;
    st->nlink = (uint32_t)sb->st_nlink;
    st->atime_sec = sb->st_atim.tv_sec;
    st->atime_nsec = (uint32_t)sb->st_atim.tv_nsec;
    st->mtime_sec = sb->st_mtim.tv_sec;
    st->mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
}

int us_big_open(int src_dirfd, const char *src_name, int dst_dirfd, const char *dst_name,
                struct us_stat *st, int direct, int *fds, int *op)
{
    int sflag = (direct & 1) ? O_DIRECT : 0, dflag = (direct & 2) ? O_DIRECT : 0, sfd, dfd,
        ret = 0;
    struct stat sb;

    fds[0] = fds[1] = -1;
    sfd = openat(src_dirfd, src_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | sflag);
    if (sfd < 0 && sflag && errno == EINVAL) /* no O_DIRECT on this fs */
        sfd = openat(src_dirfd, src_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0) {
        *op = US_OP_OPEN_SRC;
        return -errno;
    }
    if (fstat(sfd, &sb) < 0) {
        *op = US_OP_STAT;
        ret = -errno;
        goto fail;
    }
    if (sb.st_ino != st->ino || major(sb.st_dev) != st->dev_major ||
        minor(sb.st_dev) != st->dev_minor || !S_ISREG(sb.st_mode)) {
        *op = US_OP_SRC_CHANGED;
        ret = -ESTALE;
        goto fail;
    }
    stat_from(st, &sb);
    dfd = openat(dst_dirfd, dst_name,
                 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | dflag, 0600);
    if (dfd < 0 && dflag && errno == EINVAL)
        dfd = openat(dst_dirfd, dst_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600);
    if (dfd < 0) {
        *op = US_OP_OPEN_DST;
        ret = -errno;
        goto fail;
    }
    fds[0] = sfd;
    fds[1] = dfd;
    return ((fcntl(sfd, F_GETFL) & O_DIRECT) ? 1 : 0) | ((fcntl(dfd, F_GETFL) & O_DIRECT) ? 2 : 0);
fail:
    close(sfd);
    return ret;
}

static int clear_direct(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || ((fl & O_DIRECT) && fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0))
        return -errno;
    return 0;
}

int us_big_finish(int sfd, int dfd, uint64_t tail_off, const struct us_stat *st,
                  uint32_t flags, uint32_t mode_mask, int *op)
{
    struct target src = {sfd, NULL}, dst = {dfd, NULL};
    char *buf = malloc(2 * XATTR_MAX);
    struct meta m;
    int ret;

    *op = US_OP_NONE;
    if (!buf) {
        *op = US_OP_XATTR_LIST;
        return -ENOMEM;
    }
    /* the unaligned tail that O_DIRECT could not take */
    if (tail_off < st->size) {
        if ((ret = clear_direct(sfd)) < 0 || (ret = clear_direct(dfd)) < 0) {
            *op = US_OP_WRITE;
            goto out;
        }
        uint64_t off = tail_off;
        while (off < st->size) {
            size_t want = st->size - off > 2 * XATTR_MAX ? 2 * XATTR_MAX : st->size - off;
            ssize_t n = pread(sfd, buf, want, (off_t)off), w = 0;
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                *op = US_OP_READ;
                ret = n < 0 ? -errno : -ESTALE; /* shrank while copied */
                goto out;
            }
            while (w < n) {
                ssize_t k = pwrite(dfd, buf + w, (size_t)(n - w), (off_t)(off + (uint64_t)w));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0) {
                    *op = US_OP_WRITE;
                    ret = k < 0 ? -errno : -EIO;
                    goto out;
                }
                w += k;
            }
            off += (uint64_t)n;
        }
    }
    m = meta_sync(src, dst, st, flags, mode_mask, buf, false, (flags & US_F_CLEAR_ACL) != 0);
    ret = m.err;
    *op = m.op;
out:
    free(buf);
    return ret;
}

/* ------------------------------------------------------------- the ring */

static int ring_init(struct us_ring *r, unsigned entries)
{
    /* Newest, cheapest mode first; older kernels refuse unknown flags. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;

    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = flag_sets[i] | IORING_SETUP_CLAMP;
        ret = io_uring_queue_init_params(entries, &r->ring, &p);
        if (ret != -EINVAL)
            break;
    }
    return ret;
}

void us_ring_free(struct us_ring *r)
{
    if (!r)
        return;
    if (r->ring.ring_fd >= 0)
        io_uring_queue_exit(&r->ring);
    if (r->bufmem)
        munmap(r->bufmem, r->bufmem_len);
    free(r->freebufs);
    free(r->slots);
    free(r->freeslots);
    free(r->retry);
    free(r->sx);
    free(r->freesx);
    free(r);
}

struct us_ring *us_ring_new(const struct us_config *cfg, int *err)
{
    struct us_ring *r = calloc(1, sizeof *r);
    struct io_uring_probe *probe;
    struct iovec *iov;
    unsigned entries;
    int ret;

    if (!r) {
        *err = -ENOMEM;
        return NULL;
    }
    r->cfg = *cfg;
    if (r->cfg.queue_depth == 0)
        r->cfg.queue_depth = 64;
    if (r->cfg.queue_depth > 1024)
        r->cfg.queue_depth = 1024;
    if (r->cfg.buf_size < MIN_BUF)
        r->cfg.buf_size = MIN_BUF;
    r->cfg.buf_size = (r->cfg.buf_size + 4095u) & ~4095u;
    if (r->cfg.chunks_per_file == 0)
        r->cfg.chunks_per_file = 4;
    if (r->cfg.chunks_per_file > MAX_CHUNKS)
        r->cfg.chunks_per_file = MAX_CHUNKS;
    /* Every file in flight holds one buffer; the rest serve extra chunks. */
    if (r->cfg.nbufs < r->cfg.queue_depth)
        r->cfg.nbufs = r->cfg.queue_depth;

    r->nslots = r->cfg.queue_depth;
    r->max_inflight = r->cap_inflight = r->nslots;
    entries = r->nslots * (r->cfg.chunks_per_file + 2);
    if (entries > 4096)
        entries = 4096;

    ret = ring_init(r, entries);
    if (ret < 0) {
        r->ring.ring_fd = -1;
        goto fail;
    }

    probe = io_uring_get_probe_ring(&r->ring);
    if (!probe) {
        ret = -ENOSYS;
        goto fail;
    }
    for (int op = 0; op < IORING_OP_LAST && op < 256; op++) {
        r->ops[op] = (uint8_t)io_uring_opcode_supported(probe, op);
        r->nops += r->ops[op];
    }
    io_uring_free_probe(probe);
    if (!r->ops[IORING_OP_OPENAT] || !r->ops[IORING_OP_READ] ||
        !r->ops[IORING_OP_WRITE] || !r->ops[IORING_OP_CLOSE] ||
        !r->ops[IORING_OP_STATX]) {
        ret = -ENOSYS;
        goto fail;
    }

    r->bufmem_len = (size_t)r->cfg.nbufs * r->cfg.buf_size;
    r->bufmem = mmap(NULL, r->bufmem_len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->bufmem == MAP_FAILED) {
        r->bufmem = NULL;
        ret = -errno;
        goto fail;
    }
    iov = calloc(r->cfg.nbufs, sizeof *iov);
    r->freebufs = calloc(r->cfg.nbufs, sizeof *r->freebufs);
    r->slots = calloc(r->nslots, sizeof *r->slots);
    r->freeslots = calloc(r->nslots, sizeof *r->freeslots);
    r->retry = calloc(r->nslots, sizeof *r->retry);
    r->sx = calloc(r->nslots, sizeof *r->sx);
    r->freesx = calloc(r->nslots, sizeof *r->freesx);
    if (!iov || !r->freebufs || !r->slots || !r->freeslots || !r->retry || !r->sx ||
        !r->freesx) {
        free(iov);
        ret = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < r->cfg.nbufs; i++) {
        iov[i].iov_base = buf_addr(r, (int)i);
        iov[i].iov_len = r->cfg.buf_size;
        r->freebufs[i] = (int)(r->cfg.nbufs - 1 - i);
    }
    r->nfree = r->cfg.nbufs;
    /* Registration pins the pages; without it (RLIMIT_MEMLOCK) plain
     * READ/WRITE on the same buffers still work. */
    r->fixed = r->ops[IORING_OP_READ_FIXED] && r->ops[IORING_OP_WRITE_FIXED] &&
               io_uring_register_buffers(&r->ring, iov, r->cfg.nbufs) == 0;
    free(iov);
    for (unsigned i = 0; i < r->nslots; i++)
        r->freeslots[i] = r->nslots - 1 - i;
    r->nfreeslots = r->nslots;
    *err = 0;
    return r;

fail:
    us_ring_free(r);
    *err = ret;
    return NULL;
}

void us_ring_get_info(struct us_ring *r, struct us_ring_info *info)
{
    info->sq_entries = r->ring.sq.ring_entries;
    info->fixed_buffers = r->fixed;
    info->nops = r->nops;
    info->max_inflight = r->max_inflight;
}

int us_ring_has_op(struct us_ring *r, int op)
{
    return op >= 0 && op < 256 && r->ops[op];
}

void us_ring_set_copy_range_min(struct us_ring *r, uint64_t n)
{
    r->cfg.copy_range_min = n;
}

int us_fs_type(int fd, uint64_t *magic)
{
    struct statfs sf;

    if (fstatfs(fd, &sf) < 0)
        return -errno;
    *magic = (uint64_t)sf.f_type;
    return 0;
}

void us_ring_set_max_inflight(struct us_ring *r, uint32_t n)
{
    if (n < 1)
        n = 1;
    r->max_inflight = r->cap_inflight = n < r->nslots ? n : r->nslots;
}

/* ------------------------------------------------------------- scanning */

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

static int scan_list(int dirfd, struct us_scan *sc)
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

static uint64_t now_ns(void)
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

static void stat_inline(int dirfd, struct us_entry *e, const char *name)
{
    struct statx x;
    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &x) < 0)
        e->err = -errno;
    else
        fill_stat(&e->st, &x);
}

long us_scan_dirs(struct us_ring *r, size_t n, const int *dirfds, struct us_scan **scans,
                  long *rets)
{
    unsigned inflight = 0, nfree = r->nslots;
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
            stat_inline(dirfds[k], e, scans[k]->names + e->name_off);
            i++;
            probes++;
        }
        if (probes && (now_ns() - t0) / probes < WARM_STATX_NS) {
            for (; k < n; k++, i = 0)
                for (; rets[k] >= 0 && i < scans[k]->n; i++) {
                    struct us_entry *e = &scans[k]->ents[i];
                    stat_inline(dirfds[k], e, scans[k]->names + e->name_off);
                }
        }
    }

    /* Cold: every remaining entry of every directory through io_uring STATX,
     * many in flight, so the inode reads queue up at the disk together. */
    while (k < n || inflight) {
        if (us_stop_flag)
            k = n; /* submit no more; let those in flight land */
        while (nfree && k < n) {
            if (rets[k] < 0 || i >= scans[k]->n) {
                k++;
                i = 0;
                continue;
            }
            unsigned s = freesx[--nfree];
            struct us_entry *e = &scans[k]->ents[i];
            struct io_uring_sqe *sqe = get_sqe(r);
            io_uring_prep_statx(sqe, dirfds[k], scans[k]->names + e->name_off,
                                AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS,
                                &r->sx[s]);
            io_uring_sqe_set_data64(sqe, ((uint64_t)k << 48) | ((uint64_t)i << 16) | s);
            i++;
            inflight++;
        }
        if (!inflight)
            break;
        ret = io_uring_submit_and_wait(&r->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            r->broken = true; /* statx SQEs still point into the scans */
            return ret;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&r->ring, head, cqe) {
            uint64_t d = io_uring_cqe_get_data64(cqe);
            unsigned s = (unsigned)(d & 0xffff);
            struct us_entry *e = &scans[d >> 48]->ents[(d >> 16) & 0xffffffffu];
            if (cqe->res < 0)
                e->err = cqe->res;
            else
                fill_stat(&e->st, &r->sx[s]);
            freesx[nfree++] = s;
            inflight--;
            seen++;
        }
        io_uring_cq_advance(&r->ring, seen);
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

/* ------------------------------------------------------------- copying */

static inline unsigned slot_index(struct us_ring *r, struct slot *s)
{
    return (unsigned)(s - r->slots);
}

static void fail(struct slot *s, int op, int err)
{
    if (!s->failed) {
        s->failed = true;
        s->fail_op = op;
        s->fail_err = err;
    }
}

static void release_slot(struct us_ring *r, struct slot *s)
{
    for (int c = 0; c < s->nchunks; c++)
        if (s->ch[c].buf >= 0)
            give_buf(r, s->ch[c].buf);
    s->nchunks = 0;
    s->job = NULL;
    r->freeslots[r->nfreeslots++] = slot_index(r, s);
    r->inflight--;
}

/* The job is over, one way or the other. */
static void finish(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    if (s->failed) {
        if (s->sfd >= 0 && !s->range)
            close(s->sfd);
        if (s->dfd >= 0 && !s->range)
            close(s->dfd);
        /* Never leave a partial file behind under the final name. */
        if (s->dst_created)
            unlinkat(j->dst_dirfd, j->dst_name, 0);
        j->err = s->fail_err;
        j->op = s->fail_op;
        r->failed_jobs++;
    } else if (j->err) {
        r->failed_jobs++; /* complete data, but metadata not kept */
    }
    /* after EMFILE, grow back one slot per window of finished jobs */
    if (r->max_inflight < r->cap_inflight && ++r->ok_since_emfile >= r->max_inflight) {
        r->max_inflight++;
        r->ok_since_emfile = 0;
    }
    j->bytes = s->failed ? 0 : (int64_t)s->bytes;
    j->state = US_JOB_DONE;
    release_slot(r, s);
}

/* Too many open files: put the job back and keep fewer in flight. */
static void requeue(struct us_ring *r, struct slot *s)
{
    if (s->sfd >= 0)
        close(s->sfd);
    if (s->dfd >= 0)
        close(s->dfd);
    if (s->dst_created)
        unlinkat(s->job->dst_dirfd, s->job->dst_name, 0);
    s->job->tries++;
    s->job->state = US_JOB_QUEUED;
    r->retry[r->nretry++] = s->job;
    r->max_inflight = r->inflight > 1 ? r->inflight - 1 : 1;
    r->ok_since_emfile = 0;
    release_slot(r, s);
}

static void submit_close_src(struct us_ring *r, struct slot *s)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_close(sqe, s->sfd);
    io_uring_sqe_set_data64(sqe, udata(0, 0, T_IGNORE));
    r->closes_pending++;
    s->sfd = -1;
}

static void submit_read(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];
    struct io_uring_sqe *sqe = get_sqe(r);
    char *addr = buf_addr(r, ch->buf);

    if (r->fixed)
        io_uring_prep_read_fixed(sqe, s->sfd, addr, ch->len, ch->off, ch->buf);
    else
        io_uring_prep_read(sqe, s->sfd, addr, ch->len, ch->off);
    io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), (unsigned)c, T_READ));
    s->pending++;
}

static void submit_write(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];
    struct io_uring_sqe *sqe = get_sqe(r);
    char *addr = buf_addr(r, ch->buf) + ch->put;
    uint32_t len = ch->got - ch->put;

    if (r->fixed)
        io_uring_prep_write_fixed(sqe, s->dfd, addr, len, ch->off + ch->put, ch->buf);
    else
        io_uring_prep_write(sqe, s->dfd, addr, len, ch->off + ch->put);
    io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), (unsigned)c, T_WRITE));
    s->pending++;
}

static void record(struct us_job *j, int err, int op)
{
    if (err < 0 && !j->err) {
        j->err = err;
        j->op = op;
    }
}

static char *xa_list(struct us_ring *r, struct slot *s)
{
    return buf_addr(r, s->ch[0].buf);
}

static char *xa_value(struct us_ring *r, struct slot *s)
{
    return buf_addr(r, s->ch[0].buf) + XATTR_MAX;
}

/* After the plain xattrs: mode, ACLs, times, then close (waited for). */
static void finish_meta(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    struct target src = {s->sfd, NULL}, dst = {s->dfd, NULL};
    struct meta m = {0, US_OP_NONE};
    struct io_uring_sqe *sqe;

    do_mode(dst, s->mode, &m);
    if (j->flags & US_P_ACL)
        copy_acls(src, dst, xa_list(r, s), (ssize_t)s->xa_len, xa_value(r, s), false,
                  (j->flags & US_F_CLEAR_ACL) != 0, &m);
    do_times(dst, &s->st, j->flags, &m);
    record(j, m.err, m.op);
    submit_close_src(r, s);
    sqe = get_sqe(r);
    io_uring_prep_close(sqe, s->dfd);
    io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), 0, T_CLOSE_DST));
    s->pending++;
}

/* Next plain (non-ACL) xattr name: io_uring FGETXATTR it, then FSETXATTR;
 * when none is left, go on to the mode. */
static void next_xattr(struct us_ring *r, struct slot *s)
{
    char *list = xa_list(r, s);
    bool uring = r->ops[IORING_OP_FGETXATTR] && r->ops[IORING_OP_FSETXATTR];

    while ((s->job->flags & US_P_XATTR) && s->xa_pos < s->xa_len) {
        const char *key = list + s->xa_pos;
        if (is_acl(key)) {
            s->xa_pos += (uint32_t)strlen(key) + 1;
            continue;
        }
        if (!uring) {
            struct meta m = {0, US_OP_NONE};
            struct target src = {s->sfd, NULL}, dst = {s->dfd, NULL};
            copy_one_xattr(src, dst, key, xa_value(r, s), &m);
            record(s->job, m.err, m.op);
            s->xa_pos += (uint32_t)strlen(key) + 1;
            continue;
        }
        struct io_uring_sqe *sqe = get_sqe(r);
        io_uring_prep_fgetxattr(sqe, s->sfd, key, xa_value(r, s), XATTR_MAX);
        io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), 0, T_XGET));
        s->pending++;
        return;
    }
    finish_meta(r, s);
}

static void on_xattr(struct us_ring *r, struct slot *s, enum tag t, int res)
{
    char *key = xa_list(r, s) + s->xa_pos;

    s->pending--;
    if (t == T_XGET && res >= 0) {
        struct io_uring_sqe *sqe = get_sqe(r);
        io_uring_prep_fsetxattr(sqe, s->dfd, key, xa_value(r, s), 0, (unsigned)res);
        io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), 0, T_XSET));
        s->pending++;
        return;
    }
    if (res < 0 && !(t == T_XGET && res == -ENODATA))
        record(s->job, res, t == T_XGET ? US_OP_XATTR_GET : US_OP_XATTR_SET);
    s->xa_pos += (uint32_t)strlen(key) + 1;
    next_xattr(r, s);
}

/* Data is all written: size, then cp's order: owner, xattrs, mode, ACLs,
 * times, close. */
static void finish_data(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    struct us_stat want = s->st;
    uint32_t flags = j->flags, mask = j->mode_mask;
    struct target src = {s->sfd, NULL}, dst = {s->dfd, NULL};
    struct meta m = {0, US_OP_NONE};

    /* a copy that ends in a hole gets its size here */
    if (s->size_end > s->written_end && ftruncate(s->dfd, (off_t)s->size_end) < 0) {
        fail(s, US_OP_TRUNCATE, -errno);
        finish(r, s);
        return;
    }
    if (s->replaced && !(flags & US_P_MODE)) {
        want.mode = s->old_mode;
        mask = 07777;
    }
    if (s->replaced && !(flags & US_P_OWNER) && geteuid() == 0) {
        want.uid = s->old_uid;
        want.gid = s->old_gid;
        flags |= US_P_OWNER;
    }
    s->mode = do_owner(dst, &want, flags, want.mode & mask & 07777, &m);
    record(j, m.err, m.op);
    s->xa_len = s->xa_pos = 0;
    if (flags & (US_P_XATTR | US_P_ACL)) {
        m.err = 0;
        s->xa_len = (uint32_t)list_xattrs(src, xa_list(r, s), &m);
        record(j, m.err, m.op);
    }
    next_xattr(r, s);
}

static bool copy_range_fallback(int e)
{
    return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP ||
           e == EBADF || e == ETXTBSY;
}

/* copy_file_range over [off, end) (end UINT64_MAX: to EOF).  Returns 1 when
 * the caller must use the read/write path instead (nothing copied yet), 0
 * done, <0 -errno. */
static int copy_span(struct slot *s, loff_t off, uint64_t end)
{
    loff_t out = off;

    while ((uint64_t)off < end) {
        uint64_t want = end - (uint64_t)off;
        ssize_t n = copy_file_range(s->sfd, &off, s->dfd, &out,
                                    want > (1u << 30) ? (1u << 30) : want, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (s->bytes == 0 && copy_range_fallback(errno))
                return 1;
            return -errno;
        }
        if (n == 0)
            break;
        s->bytes += (uint64_t)n;
        s->written_end = (uint64_t)out;
    }
    return 0;
}

/* In-kernel copy; a sparse file goes extent by extent, holes skipped. */
static int copy_range(struct slot *s)
{
    loff_t off = 0;

    if (!s->sparse)
        return copy_span(s, 0, UINT64_MAX);
    for (;;) {
        loff_t d = lseek(s->sfd, off, SEEK_DATA), h;
        if (d < 0)
            return errno == ENXIO ? 0 : -errno;
        h = lseek(s->sfd, d, SEEK_HOLE);
        if (h < 0)
            return -errno;
        int ret = copy_span(s, d, (uint64_t)h);
        if (ret)
            return ret;
        off = h;
    }
}

/* Every chunk still in use has an op in flight, so once nothing is pending
 * the data is either all written or given up on. */
static void maybe_done(struct us_ring *r, struct slot *s)
{
    if (s->pending)
        return;
    if (s->failed || s->range)
        finish(r, s);
    else
        finish_data(r, s);
}

/* Aim chunk `ch` at the next data to read: 1 yes, 0 none left, <0 -errno.
 * A sparse file skips its holes (SEEK_DATA) and a chunk stops at the next
 * hole (SEEK_HOLE), so holes are never read and never written. */
static int next_chunk(struct us_ring *r, struct slot *s, struct chunk *ch)
{
    uint64_t off = s->next_off, len = r->cfg.buf_size;

    if (off >= s->eof_off)
        return 0;
    if (s->sparse) {
        off_t d = lseek(s->sfd, (off_t)off, SEEK_DATA), h;
        if (d < 0) {
            if (errno != ENXIO)
                return -errno;
            /* only a hole is left: it ends at the size */
            s->eof_off = off;
            return 0;
        }
        h = lseek(s->sfd, d, SEEK_HOLE);
        if (h < 0)
            return -errno;
        off = (uint64_t)d;
        if ((uint64_t)(h - d) < len)
            len = (uint64_t)(h - d);
    }
    /* a range ends where its job says (O_DIRECT: on a block boundary) */
    if (s->range && off + len > s->eof_off)
        len = s->eof_off - off;
    ch->off = off;
    ch->len = (uint32_t)len;
    ch->got = ch->put = 0;
    s->next_off = off + len;
    return 1;
}

static void release_chunk(struct us_ring *r, struct slot *s, int c)
{
    /* Keep the slot's first buffer (xattrs use it after the data); give
     * the others back at once. */
    if (c > 0 && s->ch[c].buf >= 0) {
        give_buf(r, s->ch[c].buf);
        s->ch[c].buf = -1;
    } else {
        s->ch[c].len = 0;
    }
}

/* Read the next chunk into `c`, or give the chunk back when none is left. */
static void read_next(struct us_ring *r, struct slot *s, int c)
{
    int k = next_chunk(r, s, &s->ch[c]);

    if (k > 0) {
        submit_read(r, s, c);
        return;
    }
    if (k < 0)
        fail(s, US_OP_SEEK, k);
    release_chunk(r, s, c);
}

/* Start reading `bytes` with as many chunks in flight as the file can use
 * (up to chunks_per_file), the slot's own buffer plus what is free. */
static void read_chunks(struct us_ring *r, struct slot *s, uint64_t bytes)
{
    uint64_t bs = r->cfg.buf_size, want = bytes / bs + (bytes % bs ? 1 : 0);

    if (want < 1)
        want = 1;
    if (want > r->cfg.chunks_per_file)
        want = r->cfg.chunks_per_file;
    /* Leave one buffer for every slot that is free, so a job can always
     * start: start_job relies on it. */
    while ((uint64_t)s->nchunks < want && r->nfree > r->nfreeslots)
        s->ch[s->nchunks++].buf = take_buf(r);
    for (int c = 0; c < s->nchunks; c++)
        read_next(r, s, c);
    maybe_done(r, s);
}

static void start_data(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    const struct us_stat *st = &s->st;

    s->sparse = (j->flags & US_F_SPARSE_ALWAYS) ||
                ((j->flags & US_F_SPARSE_AUTO) && st->blocks * 512 < st->size);
    s->zero_holes = (j->flags & US_F_SPARSE_ALWAYS) != 0;
    /* the size the copy must reach even if it ends in a hole */
    s->size_end = s->sparse ? st->size : 0;
    if (j->flags & (US_F_REFLINK_TRY | US_F_REFLINK_REQUIRE)) {
        if (ioctl(s->dfd, FICLONE, s->sfd) == 0) {
            j->path = US_PATH_CLONE;
            s->bytes = st->size;
            s->written_end = st->size;
            finish_data(r, s);
            return;
        }
        if (j->flags & US_F_REFLINK_REQUIRE) {
            fail(s, US_OP_CLONE, -errno);
            finish(r, s);
            return;
        }
    }
    if (st->size >= r->cfg.copy_range_min && !s->zero_holes) {
        int ret = copy_range(s);
        if (ret == 0) {
            j->path = US_PATH_COPY_RANGE;
            finish_data(r, s);
            return;
        }
        if (ret < 0) {
            fail(s, US_OP_COPY_RANGE, ret);
            finish(r, s);
            return;
        }
    }
    j->path = US_PATH_URING;
    s->eof_off = UINT64_MAX;
    s->next_off = 0;
    read_chunks(r, s, st->size);
}

/* A range of a big file: the walker opened both files (maybe O_DIRECT:
 * buffers and chunks are page-aligned, and it keeps ranges aligned). */
static void start_range(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    s->range = true;
    s->sfd = j->src_dirfd;
    s->dfd = j->dst_dirfd;
    j->path = US_PATH_URING;
    s->next_off = j->off;
    s->eof_off = j->off + j->len;
    read_chunks(r, s, j->len);
}

static bool all_zero(const char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* A chunk's data is at the destination: read on, or give the chunk back. */
static void chunk_done(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];

    if (ch->got < ch->len && ch->off + ch->got < s->eof_off) {
        /* Short read not known to be the end: read the rest of this chunk. */
        ch->off += ch->got;
        ch->len -= ch->got;
        ch->got = ch->put = 0;
        submit_read(r, s, c);
        return;
    }
    read_next(r, s, c);
    maybe_done(r, s);
}

static void on_read(struct us_ring *r, struct slot *s, int c, int res)
{
    struct chunk *ch = &s->ch[c];
    uint64_t end;

    s->pending--;
    if (res < 0)
        fail(s, US_OP_READ, res);
    if (s->failed || res == 0) {
        if (res == 0 && ch->off < s->eof_off)
            s->eof_off = ch->off;
        release_chunk(r, s, c);
        maybe_done(r, s);
        return;
    }
    ch->got = (uint32_t)res;
    ch->put = 0;
    /* Reaching the size statx saw is the end: saves a read that would
     * return 0.  A file that grew past it is read on until EOF. */
    end = ch->off + (uint64_t)res;
    if (end == s->st.size && end < s->eof_off)
        s->eof_off = end;
    if (end > s->size_end)
        s->size_end = end;
    if (s->zero_holes && all_zero(buf_addr(r, ch->buf), ch->got)) {
        /* --sparse=always: a run of zeros stays a hole */
        ch->put = ch->got;
        s->bytes += ch->got;
        chunk_done(r, s, c);
        return;
    }
    submit_write(r, s, c);
}

static void on_write(struct us_ring *r, struct slot *s, int c, int res)
{
    struct chunk *ch = &s->ch[c];

    s->pending--;
    if (s->failed || res <= 0) {
        if (!s->failed)
            fail(s, US_OP_WRITE, res < 0 ? res : -EIO);
        release_chunk(r, s, c);
        maybe_done(r, s);
        return;
    }
    ch->put += (uint32_t)res;
    s->bytes += (uint64_t)res;
    if (ch->off + ch->put > s->written_end)
        s->written_end = ch->off + ch->put;
    if (ch->put < ch->got) {
        submit_write(r, s, c); /* short write: the rest */
        return;
    }
    chunk_done(r, s, c);
}

/* The scan's lstat may be stale by now.  As cp does, check the open file is
 * the one listed (else skip it: it was replaced), and take its size, blocks,
 * owner, mode and times now, so a file that grew or shrank is copied as it
 * is and keeps matching times. */
static int refresh_stat(struct slot *s)
{
    struct stat sb;

    if (fstat(s->sfd, &sb) < 0) {
        fail(s, US_OP_STAT, -errno);
        return -1;
    }
    if (sb.st_ino != s->st.ino || major(sb.st_dev) != s->st.dev_major ||
        minor(sb.st_dev) != s->st.dev_minor || !S_ISREG(sb.st_mode)) {
        fail(s, US_OP_SRC_CHANGED, -ESTALE);
        return -1;
    }
    s->st.size = (uint64_t)sb.st_size;
    s->st.blocks = (uint64_t)sb.st_blocks;
    s->st.mode = sb.st_mode;
    s->st.uid = sb.st_uid;
    s->st.gid = sb.st_gid;
    s->st.nlink = (uint32_t)sb.st_nlink;
    s->st.atime_sec = sb.st_atim.tv_sec;
    s->st.atime_nsec = (uint32_t)sb.st_atim.tv_nsec;
    s->st.mtime_sec = sb.st_mtim.tv_sec;
    s->st.mtime_nsec = (uint32_t)sb.st_mtim.tv_nsec;
    return 0;
}

static bool is_emfile(int res)
{
    return res == -EMFILE || res == -ENFILE;
}

/* Replace what is in the way at the destination name, never following it:
 * a symlink or file there is unlinked, a directory is an error. */
static int clear_dst(struct slot *s)
{
    struct us_job *j = s->job;
    struct stat sb;

    if (fstatat(j->dst_dirfd, j->dst_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(sb.st_mode))
            return -EISDIR;
        if (S_ISREG(sb.st_mode)) {
            /* cp without -p overwrites in place and so keeps these */
            s->replaced = true;
            s->old_mode = sb.st_mode;
            s->old_uid = sb.st_uid;
            s->old_gid = sb.st_gid;
        }
    }
    if (unlinkat(j->dst_dirfd, j->dst_name, 0) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static void submit_open_dst(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    struct io_uring_sqe *sqe = get_sqe(r);

    io_uring_prep_openat(sqe, j->dst_dirfd, j->dst_name,
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), 0, T_OPEN_DST));
    s->pending++;
}

static void after_open(struct us_ring *r, struct slot *s)
{
    if (s->pending)
        return;
    /* Other files in flight (or closes still landing) hold fds: wait for
     * them.  Alone and still out of fds after a few tries is an error. */
    if (s->emfile && !s->failed && (r->inflight > 1 || s->job->tries < EMFILE_TRIES)) {
        requeue(r, s);
        return;
    }
    if (s->emfile)
        fail(s, s->sfd < 0 ? US_OP_OPEN_SRC : US_OP_OPEN_DST, -EMFILE);
    if (s->failed) {
        finish(r, s);
        return;
    }
    if (s->need_replace) {
        int ret = clear_dst(s);
        s->need_replace = false;
        s->dst_retried = true;
        if (ret < 0) {
            fail(s, ret == -EISDIR ? US_OP_OPEN_DST : US_OP_UNLINK, ret);
            finish(r, s);
            return;
        }
        submit_open_dst(r, s);
        return;
    }
    if (refresh_stat(s) < 0) {
        finish(r, s);
        return;
    }
    start_data(r, s);
}

static void on_open(struct us_ring *r, struct slot *s, enum tag t, int res)
{
    s->pending--;
    if (t == T_OPEN_SRC) {
        if (res >= 0)
            s->sfd = res;
        else if (is_emfile(res))
            s->emfile = true;
        else
            fail(s, US_OP_OPEN_SRC, res);
    } else {
        if (res >= 0) {
            s->dfd = res;
            s->dst_created = true;
        } else if (res == -ECANCELED) {
            /* the source open failed and took the linked open with it */
        } else if (is_emfile(res)) {
            s->emfile = true;
        } else if (res == -EEXIST && !s->dst_retried) {
            s->need_replace = true;
        } else {
            fail(s, US_OP_OPEN_DST, res);
        }
    }
    after_open(r, s);
}

static void submit_symlink(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    struct io_uring_sqe *sqe = get_sqe(r);

    io_uring_prep_symlinkat(sqe, buf_addr(r, s->ch[0].buf), j->dst_dirfd, j->dst_name);
    io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), 0, T_SYMLINK));
    s->pending++;
}

static void on_symlink(struct us_ring *r, struct slot *s, int res);
static void on_link(struct us_ring *r, struct slot *s, int res);

static void start_symlink(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    char *target = buf_addr(r, s->ch[0].buf);
    ssize_t n = readlinkat(j->src_dirfd, j->src_name, target, r->cfg.buf_size - 1);

    if (n < 0 || (size_t)n >= r->cfg.buf_size - 1) {
        fail(s, US_OP_READLINK, n < 0 ? -errno : -ENAMETOOLONG);
        finish(r, s);
        return;
    }
    target[n] = '\0';
    if (!r->ops[IORING_OP_SYMLINKAT]) {
        /* old kernel: the same steps as plain syscalls */
        s->pending = 1;
        on_symlink(r, s, symlinkat(target, j->dst_dirfd, j->dst_name) < 0 ? -errno : 0);
        return;
    }
    submit_symlink(r, s);
}

static void on_symlink(struct us_ring *r, struct slot *s, int res)
{
    struct us_job *j = s->job;

    s->pending--;
    if (res == -EEXIST && !s->dst_retried) {
        int ret = clear_dst(s);
        s->dst_retried = true;
        if (ret == 0) {
            if (r->ops[IORING_OP_SYMLINKAT]) {
                submit_symlink(r, s);
                return;
            }
            s->pending = 1;
            ret = symlinkat(buf_addr(r, s->ch[0].buf), j->dst_dirfd, j->dst_name) < 0 ? -errno : 0;
            on_symlink(r, s, ret);
            return;
        }
        res = ret;
    }
    if (res < 0) {
        fail(s, res == -EISDIR ? US_OP_OPEN_DST : US_OP_SYMLINK, res);
    } else {
        int op = US_OP_NONE;
        record(j, meta_at(j, buf_addr(r, s->ch[0].buf), &op), op);
    }
    finish(r, s);
}

/* FIFOs, devices, sockets: mknodat (no io_uring op), then metadata. */
static void do_special(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    const struct us_stat *st = j->st;
    mode_t mode = (mode_t)((st->mode & S_IFMT) | 0600);
    dev_t dev = makedev(st->rdev_major, st->rdev_minor);
    int op = US_OP_NONE;
    int ret = mknodat(j->dst_dirfd, j->dst_name, mode, dev) < 0 ? -errno : 0;

    if (ret == -EEXIST && (ret = clear_dst(s)) == 0)
        ret = mknodat(j->dst_dirfd, j->dst_name, mode, dev) < 0 ? -errno : 0;
    if (ret < 0) {
        fail(s, ret == -EISDIR ? US_OP_OPEN_DST : US_OP_MKNOD, ret);
    } else {
        s->dst_created = true;
        record(j, meta_at(j, buf_addr(r, s->ch[0].buf), &op), op);
    }
    finish(r, s);
}

/* A hard link to the copy already made of the same source inode. */
static void submit_link(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    if (!r->ops[IORING_OP_LINKAT]) {
        s->pending++;
        on_link(r, s, linkat(j->src_dirfd, j->src_name, j->dst_dirfd, j->dst_name, 0) < 0
                          ? -errno : 0);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_linkat(sqe, j->src_dirfd, j->src_name, j->dst_dirfd, j->dst_name, 0);
    io_uring_sqe_set_data64(sqe, udata(slot_index(r, s), 0, T_LINK));
    s->pending++;
}

static void on_link(struct us_ring *r, struct slot *s, int res)
{
    s->pending--;
    if (res == -EEXIST && !s->dst_retried) {
        s->dst_retried = true;
        res = clear_dst(s);
        if (res == 0) {
            submit_link(r, s);
            return;
        }
    }
    if (res < 0)
        fail(s, res == -EISDIR ? US_OP_OPEN_DST : US_OP_LINK, res);
    finish(r, s);
}

static void start_job(struct us_ring *r, struct us_job *j)
{
    unsigned idx = r->freeslots[--r->nfreeslots];
    struct slot *s = &r->slots[idx];

    memset(s, 0, sizeof *s);
    s->job = j;
    s->st = *j->st;
    s->sfd = s->dfd = -1;
    s->ch[0].buf = take_buf(r); /* never -1: start_data keeps one per free slot */
    s->nchunks = 1;
    for (int c = 1; c < MAX_CHUNKS; c++)
        s->ch[c].buf = -1;
    j->err = 0;
    j->op = US_OP_NONE;
    j->bytes = 0;
    j->path = US_PATH_NONE;
    j->state = US_JOB_STARTED;
    r->inflight++;

    switch (j->type) {
    case US_T_RANGE:
        start_range(r, s);
        break;
    case US_T_REG: {
        struct io_uring_sqe *sqe;
        reserve_sqes(r, 2);
        sqe = get_sqe(r);
        io_uring_prep_openat(sqe, j->src_dirfd, j->src_name,
                             O_RDONLY | O_CLOEXEC |
                                 ((j->flags & US_F_FOLLOW_SRC) ? 0 : O_NOFOLLOW),
                             0);
        sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, udata(idx, 0, T_OPEN_SRC));
        s->pending = 1;
        submit_open_dst(r, s);
        break;
    }
    case US_T_LNK:
        start_symlink(r, s);
        break;
    case US_T_FIFO:
    case US_T_CHR:
    case US_T_BLK:
    case US_T_SOCK:
        do_special(r, s);
        break;
    case US_T_HARDLINK:
        submit_link(r, s);
        break;
    default:
        fail(s, US_OP_TYPE, -EOPNOTSUPP);
        finish(r, s);
    }
}

static void on_cqe(struct us_ring *r, uint64_t d, int res)
{
    enum tag t = (enum tag)(d & 0xff);
    int c = (int)((d >> 8) & 0xff);
    struct slot *s = &r->slots[d >> 32];

    switch (t) {
    case T_OPEN_SRC:
    case T_OPEN_DST:
        on_open(r, s, t, res);
        break;
    case T_READ:
        on_read(r, s, c, res);
        break;
    case T_WRITE:
        on_write(r, s, c, res);
        break;
    case T_SYMLINK:
        on_symlink(r, s, res);
        break;
    case T_CLOSE_DST:
        s->pending--;
        s->dfd = -1;
        if (res < 0)
            fail(s, US_OP_CLOSE, res);
        finish(r, s);
        break;
    case T_IGNORE:
        r->closes_pending--;
        break;
    case T_XGET:
    case T_XSET:
        on_xattr(r, s, t, res);
        break;
    case T_LINK:
        on_link(r, s, res);
        break;
    }
}

/* Submit what is queued, wait for at least one completion, handle all. */
static int wait_and_dispatch(struct us_ring *r)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int ret = io_uring_submit_and_wait(&r->ring, 1);

    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        /* in-flight slots point into the caller's jobs: refuse further use */
        r->broken = true;
        return ret;
    }
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        on_cqe(r, io_uring_cqe_get_data64(cqe), cqe->res);
        seen++;
    }
    io_uring_cq_advance(&r->ring, seen);
    return 0;
}

long us_run(struct us_ring *r, struct us_job *jobs, size_t n)
{
    size_t next = 0;

    if (r->broken)
        return -EIO;
    r->failed_jobs = 0;
    r->nretry = 0;
    for (size_t i = 0; i < n; i++)
        jobs[i].tries = 0;
    bool stopping = false;
    for (;;) {
        if (us_stop_flag && !stopping) {
            /* Fail what is in flight (each unlinks its partial copy as its
             * last ops land) and start nothing more. */
            stopping = true;
            for (unsigned i = 0; i < r->nslots; i++)
                if (r->slots[i].job)
                    fail(&r->slots[i], US_OP_STOPPED, -EINTR);
        }
        if (stopping) {
            if (r->inflight == 0)
                break;
            int ret = wait_and_dispatch(r);
            if (ret < 0)
                return ret;
            continue;
        }
        while (r->inflight < r->max_inflight && r->nfreeslots) {
            struct us_job *j;
            if (r->nretry)
                j = r->retry[--r->nretry];
            else if (next < n)
                j = &jobs[next++];
            else
                break;
            start_job(r, j);
        }
        if (r->inflight == 0 && next >= n && r->nretry == 0)
            break;
        int ret = wait_and_dispatch(r);
        if (ret < 0)
            return ret;
    }
    /* Let the fire-and-forget closes land before the caller closes the
     * directory fds or counts its open files. */
    while (r->closes_pending) {
        int ret = wait_and_dispatch(r);
        if (ret < 0)
            return ret;
    }
    return stopping ? -EINTR : r->failed_jobs;
}
