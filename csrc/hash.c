/* A file's XXH3-128 digest (US_T_HASH), for sync -c and verify: the source
 * is opened and read through the backend, one buf_size chunk in flight at
 * a time (a streaming hash needs the bytes in order; many files in flight
 * give the concurrency), each chunk fed to the hash in its completion.
 *
 *   OPENAT src (O_NOFOLLOW) -> fstat: a regular file
 *   READ chunk, XXH3_128bits_update, READ the next ... until a read returns 0
 *   CLOSE src (fire and forget); the digest in job->hash_hi/hash_lo
 *
 * US_F_DEVICE (verify's destination side): what the device holds, not what
 * the page cache does.  The open adds O_DIRECT (the kernel writes back any
 * dirty pages of the range, then reads the disk; the ring's buffers are
 * page-aligned, buf_size a multiple of 4096).  A read that ends off a 4096
 * boundary is the end of the file (another read there would be EINVAL).
 * Where the file system refuses O_DIRECT (EINVAL), the file is opened again
 * without it, flushed and its cached pages dropped before the first read.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include "xxh.h"

static XXH3_state_t *state_of(struct us_ring *r, struct slot *s)
{
    return r->hstates[slot_index(r, s)];
}

/* io_uring's FADVISE would only add a round trip: plain syscalls */
int uncache(int fd)
{
    int e = fdatasync(fd) < 0 ? errno : posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

    return -e;
}

/* An fd of the slot closed through the backend, not waited for. */
static void close_behind(struct us_ring *r, int *fd)
{
    if (*fd >= 0) {
        r->be->close(r, udata(0, 0, T_IGNORE), *fd);
        r->closes_pending++;
        *fd = -1;
    }
}

static void submit_hash_open(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    int flags = O_RDONLY | O_CLOEXEC | ((j->flags & US_F_FOLLOW_SRC) ? 0 : O_NOFOLLOW);

    r->be->openat(r, udata(slot_index(r, s), 0, T_HASH_OPEN), j->src_dirfd, j->src_name,
                  flags | (s->direct ? O_DIRECT : 0), 0, 0);
    s->pending++;
}

void start_hash(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    if (XXH3_128bits_reset(state_of(r, s)) == XXH_ERROR) {
        fail(s, US_OP_READ, -EINVAL);
        finish(r, s);
        return;
    }
    s->direct = (j->flags & US_F_DEVICE) != 0;
    submit_hash_open(r, s);
}

/* The end, either way: the fd closed through the backend, the digest kept. */
static void hash_done(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    close_behind(r, &s->sfd);
    if (!s->failed) {
        XXH128_hash_t h = XXH3_128bits_digest(state_of(r, s));
        j->hash_lo = h.low64;
        j->hash_hi = h.high64;
    }
    finish(r, s);
}

/* ---- reading a file in order, several buffers in flight (a hash job, a
 * read-back).  Reads of buf_size go ahead at next_off on up to
 * chunks_per_file buffers (the slot's own and what is free); each is hashed
 * in file order once it and those before it are in (s->hashed: the next
 * offset to hash).  A read of 0 bytes is the end, and so is one that ends off
 * a block under O_DIRECT; a short read elsewhere is read on from where it
 * ended. */

static void ord_submit(struct us_ring *r, struct slot *s, int fd, enum tag t, int c)
{
    struct chunk *ch = &s->ch[c];

    ch->put = 0; /* in flight */
    r->be->read(r, udata(slot_index(r, s), (unsigned)c, t), fd, ch->buf, 0, ch->len, ch->off);
    s->pending++;
}

/* The next buf_size at next_off (whole blocks, also for a range that
 * ends inside one: O_DIRECT reads whole blocks; what lies past rb_end is
 * not hashed); a chunk with nothing left to read is parked.  A direct read
 * asks for no more blocks than the data should have: past the end of the
 * file the kernel zeroes the rest of the buffer (most of a buffer, for a
 * small file's read-back). */
static void ord_next(struct us_ring *r, struct slot *s, int fd, enum tag t, int c)
{
    struct chunk *ch = &s->ch[c];

    if (s->next_off >= s->rb_end) {
        ch->off = UINT64_MAX;
        ch->put = 0;
        return;
    }
    ch->off = s->next_off;
    ch->len = r->cfg.buf_size;
    if (s->direct && s->next_off < s->rb_size && s->rb_size - s->next_off < ch->len)
        ch->len = (uint32_t)((s->rb_size - s->next_off + 4095) & ~(uint64_t)4095);
    ch->got = 0;
    s->next_off += ch->len;
    ord_submit(r, s, fd, t, c);
}

/* Read [start, rb_end) in order.  `size`: what it should hold; no more
 * buffers than it fills (a small file's read-ahead would be reads of
 * nothing) */
static void ord_start(struct us_ring *r, struct slot *s, int fd, enum tag t, uint64_t start,
                      uint64_t size)
{
    uint64_t want = size / r->cfg.buf_size + 1;

    s->next_off = s->hashed = start;
    s->rb_size = start + size;
    s->eof = false;
    if (want > r->cfg.chunks_per_file)
        want = r->cfg.chunks_per_file;
    while ((uint64_t)s->nchunks < want && r->nfree > r->nfreeslots)
        s->ch[s->nchunks++].buf = take_buf(r);
    for (int c = 0; c < s->nchunks; c++)
        ord_next(r, s, fd, t, c);
}

/* Chunk c's read is back (res); what is now in order is hashed.  True when
 * the reader is done: the end or a failure (op), and nothing in flight. */
static bool ord_done(struct us_ring *r, struct slot *s, int fd, enum tag t, int c, int res, int op)
{
    s->pending--;
    if (res < 0)
        fail(s, op, res);
    s->ch[c].got = res > 0 ? (uint32_t)res : 0;
    s->ch[c].put = 1; /* in */
    while (!s->failed && !s->eof) {
        struct chunk *h = NULL;
        int k;
        for (k = 0; k < s->nchunks; k++)
            if (s->ch[k].put && s->ch[k].off == s->hashed) {
                h = &s->ch[k];
                break;
            }
        if (!h)
            break;
        if (h->got > s->rb_end - h->off)
            h->got = (uint32_t)(s->rb_end - h->off); /* the next range's bytes */
        XXH3_128bits_update(state_of(r, s), buf_addr(r, h->buf), h->got);
        s->hashed += h->got;
        if (t == T_HASH_READ)
            s->bytes += h->got; /* a hash job's bytes are those read */
        if (h->got == 0 || (s->direct && (h->got & 4095)) || s->hashed >= s->rb_end) {
            s->eof = true;
        } else if (h->got < h->len) { /* the rest of this chunk */
            h->off += h->got;
            h->len -= h->got;
            h->got = 0;
            ord_submit(r, s, fd, t, k);
        } else {
            ord_next(r, s, fd, t, k);
        }
    }
    return (s->failed || s->eof) && s->pending == 0;
}

void on_hash_open(struct us_ring *r, struct slot *s, int res)
{
    struct stat sb;

    s->pending--;
    if (res >= 0) {
        s->sfd = res;
    } else if (res == -EINVAL && s->direct) {
        /* no O_DIRECT here: flushed and uncached instead, once open */
        s->direct = false;
        submit_hash_open(r, s);
        return;
    } else if ((res == -EMFILE || res == -ENFILE) && !s->failed &&
               (r->inflight > 1 || s->job->tries < EMFILE_TRIES)) {
        /* other files in flight hold fds: try again later with fewer */
        requeue(r, s);
        return;
    } else {
        fail(s, US_OP_OPEN_SRC, res);
    }
    sb.st_size = 0;
    if (!s->failed) {
        /* a FIFO would block the open; anything but a file is refused */
        if (fstat(s->sfd, &sb) < 0)
            fail(s, US_OP_STAT, -errno);
        else if (!S_ISREG(sb.st_mode))
            fail(s, US_OP_TYPE, S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL);
    }
    if (!s->failed && (s->job->flags & US_F_DEVICE) && !s->direct) {
        int e = uncache(s->sfd);
        if (e)
            fail(s, US_OP_READ, e);
    }
    if (s->failed) {
        hash_done(r, s);
        return;
    }
    s->rb_end = UINT64_MAX;
    ord_start(r, s, s->sfd, T_HASH_READ, 0, (uint64_t)sb.st_size);
}

void on_hash_read(struct us_ring *r, struct slot *s, int c, int res)
{
    if (ord_done(r, s, s->sfd, T_HASH_READ, c, res, US_OP_READ))
        hash_done(r, s);
}

/* ------------------------------ US_F_VERIFY, US_F_DIGEST: a copy's data */

void verify_begin(struct us_ring *r, struct slot *s)
{
    XXH3_128bits_reset(state_of(r, s));
    s->hashed = 0;
}

/* A hole between the bytes fed so far and `to`: zeros, as it reads. */
static void feed_zeros(struct us_ring *r, struct slot *s, uint64_t to)
{
    static const char zeros[1 << 16];

    while (s->hashed < to) {
        uint64_t n = to - s->hashed > sizeof zeros ? sizeof zeros : to - s->hashed;
        XXH3_128bits_update(state_of(r, s), zeros, (size_t)n);
        s->hashed += n;
    }
}

void verify_feed(struct us_ring *r, struct slot *s, uint64_t off, const void *p, size_t n)
{
    feed_zeros(r, s, off);
    XXH3_128bits_update(state_of(r, s), p, n);
    s->hashed = off + n;
}

void verify_source_done(struct us_ring *r, struct slot *s, uint64_t size)
{
    XXH128_hash_t h;

    feed_zeros(r, s, size);
    h = XXH3_128bits_digest(state_of(r, s));
    s->job->hash_lo = h.low64;
    s->job->hash_hi = h.high64;
}

/* The read-back, once the data is written and before the metadata: the
 * destination opened again by name (O_DIRECT: the kernel writes its dirty
 * pages back first, then reads the disk), read from 0 to EOF one buffer at
 * a time into the slot's own, hashed, compared. */
static void submit_readback_open(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    r->be->openat(r, udata(slot_index(r, s), 0, T_VERIFY_OPEN), j->dst_dirfd, j->dst_name,
                  O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (s->direct ? O_DIRECT : 0), 0, 0);
    s->pending++;
}

void start_readback(struct us_ring *r, struct slot *s)
{
    XXH3_128bits_reset(state_of(r, s));
    s->direct = true;
    s->vfd = -1;
    s->rb_end = UINT64_MAX;
    if (s->range) {
        /* a range's file is open, not named: opened again through /proc
         * (a plain open, then as if the ring had made it) */
        int fd = open_again(s->dfd, O_DIRECT);

        if (fd == -EINVAL) {
            s->direct = false;
            fd = open_again(s->dfd, 0);
        }
        s->rb_end = s->hashed;
        s->pending++;
        on_readback_open(r, s, fd);
        return;
    }
    submit_readback_open(r, s);
}

/* Read back (or given up on): the verdict, then the metadata (or the end:
 * finish removes a file that failed). */
static void readback_done(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    close_behind(r, &s->vfd);
    if (!s->failed) {
        XXH128_hash_t h = XXH3_128bits_digest(state_of(r, s));
        if (h.low64 != j->hash_lo || h.high64 != j->hash_hi)
            fail(s, US_OP_VERIFY, -EBADMSG);
    }
    if (s->range)
        range_complete(r, s);
    else if (s->failed)
        finish(r, s);
    else
        start_meta(r, s);
}

void on_readback_open(struct us_ring *r, struct slot *s, int res)
{
    s->pending--;
    if (res == -EINVAL && s->direct && !s->failed) {
        s->direct = false; /* no O_DIRECT here: flushed and uncached instead */
        submit_readback_open(r, s);
        return;
    }
    if (res < 0) {
        fail(s, US_OP_VERIFY, res);
        readback_done(r, s);
        return;
    }
    s->vfd = res;
    if (!s->failed && !s->direct) {
        int e = uncache(s->vfd);
        if (e)
            fail(s, US_OP_VERIFY, e);
    }
    if (s->failed) {
        readback_done(r, s);
        return;
    }
    /* what the source's hash covered: the file (from 0), or the range */
    if (s->range)
        ord_start(r, s, s->vfd, T_VERIFY_READ, s->job->off, s->rb_end - s->job->off);
    else
        ord_start(r, s, s->vfd, T_VERIFY_READ, 0, s->hashed);
    if (s->pending == 0) /* an empty range: nothing to read */
        readback_done(r, s);
}

void on_readback_read(struct us_ring *r, struct slot *s, int c, int res)
{
    if (ord_done(r, s, s->vfd, T_VERIFY_READ, c, res, US_OP_VERIFY))
        readback_done(r, s);
}
