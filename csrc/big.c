/* Big files.  A big file is split into US_T_RANGE jobs that several workers
 * copy at once.  The walker opens both ends here, hands the fds to the
 * workers, and completes the file with us_big_finish once every range is
 * in: the unaligned tail, then the metadata in cp's order (meta.c).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The source of a big file, checked to be the file `st` describes (whose
 * size, mode, owner and times it refreshes): its fd, or -errno with *op. */
int big_open_src(int src_dirfd, const char *src_name, struct us_stat *st, int direct, int *op)
{
    int sflag = (direct & 1) ? O_DIRECT : 0, sfd, ret;
    struct stat sb;

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
        close(sfd);
        return ret;
    }
    if (!same_inode(&sb, st)) {
        *op = US_OP_SRC_CHANGED;
        close(sfd);
        return -ESTALE;
    }
    stat_from(st, &sb);
    return sfd;
}

/* Create a big file's destination (O_EXCL, never following; O_DIRECT with
 * direct & 2 where the file system takes it): its fd, or -errno. */
int big_create(int dst_dirfd, const char *dst_name, int direct)
{
    int dflag = (direct & 2) ? O_DIRECT : 0,
        fl = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int dfd = openat(dst_dirfd, dst_name, fl | dflag, 0600);

    if (dfd < 0 && dflag && errno == EINVAL)
        dfd = openat(dst_dirfd, dst_name, fl, 0600);
    return dfd < 0 ? -errno : dfd;
}

/* 1|2: which of the two fds has O_DIRECT */
int big_direct_bits(int sfd, int dfd)
{
    return ((fcntl(sfd, F_GETFL) & O_DIRECT) ? 1 : 0) | ((fcntl(dfd, F_GETFL) & O_DIRECT) ? 2 : 0);
}

int us_big_open(int src_dirfd, const char *src_name, int dst_dirfd, const char *dst_name,
                struct us_stat *st, int direct, int *fds, int *op)
{
    int sfd, dfd;

    fds[0] = fds[1] = -1;
    sfd = big_open_src(src_dirfd, src_name, st, direct, op);
    if (sfd < 0)
        return sfd;
    dfd = big_create(dst_dirfd, dst_name, direct);
    if (dfd < 0) {
        *op = US_OP_OPEN_DST;
        close(sfd);
        return dfd;
    }
    fds[0] = sfd;
    fds[1] = dfd;
    return big_direct_bits(sfd, dfd);
}

int open_again(int fd, int flags)
{
    char path[32];

    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    return fd < 0 ? -errno : fd;
}

static int clear_direct(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || ((fl & O_DIRECT) && fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0))
        return -errno;
    return 0;
}

/* US_F_VERIFY: the tail [off, size) (under a block: the ranges' O_DIRECT
 * left it) read back from the disk (flushed, its cached pages dropped) and
 * compared with the source's.  buf: 2 * XATTR_MAX bytes. */
static int verify_tail(int sfd, int dfd, uint64_t off, uint64_t size, char *buf)
{
    size_t n = (size_t)(size - off);
    int e;

    if (n > XATTR_MAX)
        return -EFBIG;
    if (fdatasync(dfd) < 0)
        return -errno;
    if ((e = posix_fadvise(dfd, (off_t)off, (off_t)n, POSIX_FADV_DONTNEED)))
        return -e;
    int rfd = open_again(dfd, 0);
    if (rfd < 0)
        return rfd;
    ssize_t a = pread(sfd, buf, n, (off_t)off), b = pread(rfd, buf + XATTR_MAX, n, (off_t)off);
    e = a < 0 || b < 0 ? -errno : 0;
    close(rfd);
    if (e)
        return e;
    return a == (ssize_t)n && b == (ssize_t)n && !memcmp(buf, buf + XATTR_MAX, n) ? 0 : -EBADMSG;
}

int us_big_finish(int sfd, int dfd, uint64_t tail_off, const struct us_stat *st, uint32_t flags,
                  uint32_t mode_mask, int *op)
{
    struct target src = {sfd, NULL, false}, dst = {dfd, NULL, false};
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
        if ((flags & US_F_VERIFY) && (ret = verify_tail(sfd, dfd, tail_off, st->size, buf)) < 0) {
            *op = US_OP_VERIFY;
            goto out;
        }
    }
    m = meta_sync(src, dst, st, flags, mode_mask, buf, false);
    ret = m.err;
    *op = m.op;
    if (ret == 0 && (flags & US_F_FSYNC) && fsync(dfd) < 0) {
        ret = -errno;
        *op = US_OP_FSYNC;
    }
out:
    free(buf);
    return ret;
}
