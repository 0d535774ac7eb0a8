/* A regular file's bytes: FICLONE, copy_file_range (plain syscalls: io_uring
 * has no op for them), or chunks read and written through the backend
 * (several of one file in flight, over the ring's buffers); holes skipped
 * with SEEK_DATA/SEEK_HOLE.  A US_T_RANGE job is a part of a big file.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void submit_read(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];

    r->be->read(r, udata(slot_index(r, s), (unsigned)c, T_READ), s->sfd, ch->buf, 0, ch->len,
                ch->off);
    s->pending++;
}

static void submit_write(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];

    r->be->write(r, udata(slot_index(r, s), (unsigned)c, T_WRITE), s->dfd, ch->buf, ch->put,
                 ch->got - ch->put, ch->off + ch->put);
    s->pending++;
}

static bool copy_range_fallback(int e)
{
    return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == EBADF ||
           e == ETXTBSY;
}

/* copy_file_range over [off, end) (end UINT64_MAX: to EOF).  Returns 1 when
 * the caller must use the read/write path instead (nothing copied yet), 0
 * done, <0 -errno. */
static int copy_span(struct slot *s, loff_t off, uint64_t end)
{
    loff_t out = off;

    while ((uint64_t)off < end) {
        uint64_t want = end - (uint64_t)off;
        ssize_t n =
            copy_file_range(s->sfd, &off, s->dfd, &out, want > (1u << 30) ? (1u << 30) : want, 0);
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

/* Data is all written: a copy that ends in a hole gets its size, then the
 * metadata (meta.c). */
static void finish_data(struct us_ring *r, struct slot *s)
{
    if (s->size_end > s->written_end && ftruncate(s->dfd, (off_t)s->size_end) < 0) {
        fail(s, US_OP_TRUNCATE, -errno);
        finish(r, s);
        return;
    }
    if (hashing(s))
        verify_source_done(r, s, s->size_end > s->written_end ? s->size_end : s->written_end);
    if (s->job->flags & US_F_VERIFY) {
        start_readback(r, s); /* then start_meta */
        return;
    }
    start_meta(r, s);
}

/* Every chunk still in use has an op in flight, so once nothing is pending
 * the data is either all written or given up on. */
static void maybe_done(struct us_ring *r, struct slot *s)
{
    if (s->pending)
        return;
    if (s->range && !s->failed && (s->job->flags & US_F_VERIFY)) {
        verify_source_done(r, s, s->hashed);
        start_readback(r, s); /* then range_complete */
        return;
    }
    if (s->range && !s->failed)
        range_complete(r, s);
    else if (s->failed || s->range)
        finish(r, s);
    else
        finish_data(r, s);
}

void range_complete(struct us_ring *r, struct slot *s)
{
    if (!s->failed && (s->job->flags & US_F_RESUME)) {
        int op = US_OP_NONE, ret = record_range(s->dfd, s->job->rec_fd, s->job->rec_idx, &op);
        if (ret < 0)
            fail(s, op, ret);
    }
    finish(r, s);
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
    if (hashing(s))
        want = 1; /* the hash takes the bytes in order */
    /* Leave one buffer for every slot that is free, so a job can always
     * start: start_job relies on it. */
    while ((uint64_t)s->nchunks < want && r->nfree > r->nfreeslots)
        s->ch[s->nchunks++].buf = take_buf(r);
    for (int c = 0; c < s->nchunks; c++)
        read_next(r, s, c);
    maybe_done(r, s);
}

void start_data(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    const struct us_stat *st = &s->st;

    s->sparse = (j->flags & US_F_SPARSE_ALWAYS) ||
                ((j->flags & US_F_SPARSE_AUTO) && st->blocks * 512 < st->size);
    s->zero_holes = (j->flags & US_F_SPARSE_ALWAYS) != 0;
    /* the size the copy must reach even if it ends in a hole */
    s->size_end = s->sparse ? st->size : 0;
    /* --inplace --delta: the old file is the destination, never emptied
     * (nor cloned onto: FICLONE would not shrink it; the walker gives no
     * US_F_VERIFY or US_F_DIGEST with it) */
    if (s->delta_in_place) {
        (void)delta_start(r, s);
        return;
    }
    if (hashing(s)) {
        /* the data must pass the hash: the buffers, not the kernel's copy */
        verify_begin(r, s);
        j->path = US_PATH_URING;
        s->eof_off = UINT64_MAX;
        s->next_off = 0;
        read_chunks(r, s, st->size);
        return;
    }
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
    /* a clone of the source is cheaper still; else the old version's clone,
     * and only what differs written (delta.c) */
    if ((j->flags & US_F_DELTA) && delta_start(r, s))
        return;
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
void start_range(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    if (j->flags & US_F_DELTA) {
        delta_range(r, s);
        return;
    }
    s->range = true;
    s->sfd = j->src_dirfd;
    s->dfd = j->dst_dirfd;
    j->path = US_PATH_URING;
    s->next_off = j->off;
    s->eof_off = j->off + j->len;
    if (hashing(s)) {
        verify_begin(r, s);
        s->hashed = j->off; /* the range's digest: its bytes from here */
    }
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

void on_read(struct us_ring *r, struct slot *s, int c, int res)
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
    if (hashing(s))
        verify_feed(r, s, ch->off, buf_addr(r, ch->buf), ch->got);
    if (s->zero_holes && all_zero(buf_addr(r, ch->buf), ch->got)) {
        /* --sparse=always: a run of zeros stays a hole */
        ch->put = ch->got;
        s->bytes += ch->got;
        chunk_done(r, s, c);
        return;
    }
    submit_write(r, s, c);
}

void on_write(struct us_ring *r, struct slot *s, int c, int res)
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
