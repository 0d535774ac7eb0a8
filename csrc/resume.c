/* Resumable big files (sync).  A big file that sync splits into ranges is
 * written under a temporary name (.NAME.uringsync-resume) with a record
 * beside it (.NAME.uringsync-record): a header that says which source and
 * which temporary it belongs to, then one byte per range, 1 once the range
 * is complete.  A worker sets a range's byte only after the temporary's
 * data is flushed (fdatasync), and writes it with RWF_DSYNC, so a range
 * recorded is a range on disk; a range written but not yet recorded is
 * written again by the next run (at most one per worker: a resumable big
 * file goes to the workers one range per batch).
 *
 * The header is written and flushed before any range is recorded.  Should a
 * crash lose it or the temporary's name, the record no longer matches and
 * the copy starts over: a mismatch never resumes.  The record is in the
 * machine's byte order (it is only ever read where it was written; another
 * machine reading it finds no match and starts over).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define REC_MAGIC "uringsync resume 1\n"
#define REC_HEAD 4096 /* the range bytes start here */
#define REC_NAME_MAX 255

struct rec_head {
    char magic[24];
    uint64_t src_ino, src_size;
    int64_t mtime_sec, ctime_sec;
    uint32_t mtime_nsec, ctime_nsec;
    uint64_t range_size, body_end, nranges;
    uint64_t tmp_ino;
    uint32_t name_len, pad;
    char name[REC_NAME_MAX + 1];
};

_Static_assert(sizeof(struct rec_head) <= REC_HEAD, "the header fits its block");

static void head_of(struct rec_head *h, const struct us_stat *st, const char *name,
                    uint64_t range_size, uint64_t body_end, uint64_t tmp_ino)
{
    size_t n = strlen(name);

    memset(h, 0, sizeof *h);
    memcpy(h->magic, REC_MAGIC, sizeof REC_MAGIC);
    h->src_ino = st->ino;
    h->src_size = st->size;
    h->mtime_sec = st->mtime_sec;
    h->mtime_nsec = st->mtime_nsec;
    h->ctime_sec = st->ctime_sec;
    h->ctime_nsec = st->ctime_nsec;
    h->range_size = range_size;
    h->body_end = body_end;
    h->nranges = (body_end + range_size - 1) / range_size;
    h->tmp_ino = tmp_ino;
    h->name_len = (uint32_t)(n > REC_NAME_MAX ? REC_NAME_MAX : n);
    memcpy(h->name, name, h->name_len);
}

/* A regular file of dst_dirfd opened without following and without
 * blocking on a FIFO put there; O_NONBLOCK is cleared again (io_uring
 * would answer EAGAIN on a non-blocking regular file).  fd or -errno. */
static int open_regular(int dst_dirfd, const char *name, int flags, struct stat *sb)
{
    int fd = openat(dst_dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK), ret;

    if (fd < 0 && (flags & O_DIRECT) && errno == EINVAL)
        fd = openat(dst_dirfd, name, (flags & ~O_DIRECT) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, sb) < 0 || !S_ISREG(sb->st_mode) ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        ret = S_ISREG(sb->st_mode) ? -errno : -EINVAL;
        close(fd);
        return ret;
    }
    return fd;
}

static uint64_t body_end_of(int dfd, uint64_t size)
{
    return (fcntl(dfd, F_GETFL) & O_DIRECT) ? size & ~(uint64_t)(DIRECT_BLOCK - 1) : size;
}

/* The record `rec` and temporary `tmp` an earlier run left for this source:
 * 1 with fds[1], fds[2] open and done[] filled when they match, else 0. */
static int try_resume(int dst_dirfd, const char *tmp, const char *rec, const char *name,
                      const struct us_stat *st, int direct, uint64_t range_size, uint8_t *done,
                      size_t ndone, int *fds, uint64_t *body_end)
{
    struct rec_head want, got;
    struct stat rsb, tsb;
    int rfd, tfd;
    uint64_t end;

    rfd = open_regular(dst_dirfd, rec, O_RDWR, &rsb);
    if (rfd < 0)
        return 0;
    tfd = open_regular(dst_dirfd, tmp, O_WRONLY | ((direct & 2) ? O_DIRECT : 0), &tsb);
    if (tfd == -EINVAL && (direct & 2)) /* no O_DIRECT here: as big_create */
        tfd = open_regular(dst_dirfd, tmp, O_WRONLY, &tsb);
    if (tfd < 0)
        goto no;
    end = body_end_of(tfd, st->size);
    head_of(&want, st, name, range_size, end, tsb.st_ino);
    if (want.nranges > ndone || tsb.st_nlink != 1 ||
        (uint64_t)rsb.st_size < REC_HEAD + want.nranges ||
        pread(rfd, &got, sizeof got, 0) != (ssize_t)sizeof got || memcmp(&got, &want, sizeof got) ||
        pread(rfd, done, want.nranges, REC_HEAD) != (ssize_t)want.nranges)
        goto no;
    for (uint64_t k = 0; k < want.nranges; k++)
        done[k] = done[k] == 1;
    fds[1] = tfd;
    fds[2] = rfd;
    *body_end = end;
    return 1;
no:
    if (tfd >= 0)
        close(tfd);
    close(rfd);
    return 0;
}

/* Remove what is under `tmp` and `rec`, create both, write the header and
 * the range bytes (all 0: their blocks are allocated now, so recording a
 * range never needs space) and flush them.  0, or -errno with *op. */
static int start_afresh(int dst_dirfd, const char *tmp, const char *rec, const char *name,
                        const struct us_stat *st, int direct, uint64_t range_size, int *fds,
                        uint64_t *body_end, int *op)
{
    struct rec_head h;
    struct stat tsb;
    uint64_t end;
    size_t len;
    char *buf;
    int tfd, rfd, ret;

    unlinkat(dst_dirfd, tmp, 0); /* a name in the way: ours (never followed) */
    unlinkat(dst_dirfd, rec, 0);
    *op = US_OP_OPEN_DST;
    tfd = big_create(dst_dirfd, tmp, direct);
    if (tfd < 0)
        return tfd;
    rfd = openat(dst_dirfd, rec, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (rfd < 0 || fstat(tfd, &tsb) < 0) {
        ret = -errno;
        goto fail;
    }
    end = body_end_of(tfd, st->size);
    head_of(&h, st, name, range_size, end, tsb.st_ino);
    len = REC_HEAD + h.nranges;
    *op = US_OP_RECORD;
    if (!(buf = calloc(1, len))) {
        ret = -ENOMEM;
        goto fail;
    }
    memcpy(buf, &h, sizeof h);
    {
        ssize_t n = pwrite(rfd, buf, len, 0);
        ret = n == (ssize_t)len ? 0 : n < 0 ? -errno : -ENOSPC;
    }
    free(buf);
    if (ret == 0 && fdatasync(rfd) < 0)
        ret = -errno;
    if (ret < 0)
        goto fail;
    fds[1] = tfd;
    fds[2] = rfd;
    *body_end = end;
    return 0;
fail:
    close(tfd);
    if (rfd >= 0)
        close(rfd);
    unlinkat(dst_dirfd, tmp, 0);
    unlinkat(dst_dirfd, rec, 0);
    return ret;
}

int us_big_resume(int src_dirfd, const char *src_name, int dst_dirfd, const char *tmp,
                  const char *rec, const char *name, struct us_stat *st, int direct,
                  uint64_t range_size, uint8_t *done, size_t ndone, int *fds, uint64_t *body_end,
                  int *op)
{
    int sfd, ret, resumed;

    fds[0] = fds[1] = fds[2] = -1;
    *op = US_OP_NONE;
    if (range_size == 0 || range_size % DIRECT_BLOCK || st->size / range_size + 1 > ndone)
        return -EINVAL;
    memset(done, 0, ndone);
    sfd = big_open_src(src_dirfd, src_name, st, direct, op);
    if (sfd < 0)
        return sfd;
    resumed =
        try_resume(dst_dirfd, tmp, rec, name, st, direct, range_size, done, ndone, fds, body_end);
    if (!resumed) {
        memset(done, 0, ndone);
        ret = start_afresh(dst_dirfd, tmp, rec, name, st, direct, range_size, fds, body_end, op);
        if (ret < 0) {
            close(sfd);
            return ret;
        }
    }
    fds[0] = sfd;
    return big_direct_bits(sfd, fds[1]) | (resumed ? 4 : 0);
}

int record_range(int dfd, int rec_fd, uint32_t idx, int *op)
{
    static const uint8_t one = 1;
    struct iovec v = {(void *)&one, 1};
    ssize_t n;

    if (fdatasync(dfd) < 0) {
        *op = US_OP_FSYNC;
        return -errno;
    }
    do
        n = pwritev2(rec_fd, &v, 1, (off_t)REC_HEAD + idx, RWF_DSYNC);
    while (n < 0 && errno == EINTR);
    if (n != 1) {
        *op = US_OP_RECORD;
        return n < 0 ? -errno : -EIO;
    }
    return 0;
}

int us_big_commit(int dst_dirfd, const char *tmp, const char *final, const char *rec, int *op)
{
    *op = US_OP_NONE;
    if (renameat(dst_dirfd, tmp, dst_dirfd, final) < 0) {
        *op = US_OP_RENAME;
        return -errno;
    }
    unlinkat(dst_dirfd, rec, 0); /* left behind, it matches no temporary: removed next time */
    return 0;
}
