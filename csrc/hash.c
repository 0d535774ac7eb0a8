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
#include <xxhash.h>

static XXH3_state_t *state_of(struct us_ring *r, struct slot *s)
{
    return r->hstates[slot_index(r, s)];
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

    if (s->sfd >= 0) {
        r->be->close(r, udata(0, 0, T_IGNORE), s->sfd);
        r->closes_pending++;
        s->sfd = -1;
    }
    if (!s->failed) {
        XXH128_hash_t h = XXH3_128bits_digest(state_of(r, s));
        j->hash_lo = h.low64;
        j->hash_hi = h.high64;
    }
    finish(r, s);
}

static void submit_hash_read(struct us_ring *r, struct slot *s)
{
    r->be->read(r, udata(slot_index(r, s), 0, T_HASH_READ), s->sfd, s->ch[0].buf, 0,
                r->cfg.buf_size, s->next_off);
    s->pending++;
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
    if (!s->failed) {
        /* a FIFO would block the open; anything but a file is refused */
        if (fstat(s->sfd, &sb) < 0)
            fail(s, US_OP_STAT, -errno);
        else if (!S_ISREG(sb.st_mode))
            fail(s, US_OP_TYPE, S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL);
    }
    if (!s->failed && (s->job->flags & US_F_DEVICE) && !s->direct) {
        /* plain syscalls: io_uring's FADVISE would only add a round trip */
        int e = fdatasync(s->sfd) < 0 ? errno : posix_fadvise(s->sfd, 0, 0, POSIX_FADV_DONTNEED);
        if (e)
            fail(s, US_OP_READ, -e);
    }
    if (s->failed) {
        hash_done(r, s);
        return;
    }
    s->next_off = 0;
    submit_hash_read(r, s);
}

void on_hash_read(struct us_ring *r, struct slot *s, int res)
{
    s->pending--;
    if (res < 0)
        fail(s, US_OP_READ, res);
    if (s->failed || res == 0) {
        hash_done(r, s);
        return;
    }
    if (XXH3_128bits_update(state_of(r, s), buf_addr(r, s->ch[0].buf), (size_t)res) == XXH_ERROR) {
        fail(s, US_OP_READ, -EINVAL);
        hash_done(r, s);
        return;
    }
    s->bytes += (uint64_t)res;
    s->next_off += (uint64_t)res;
    if (s->direct && (res & 4095)) {
        hash_done(r, s); /* O_DIRECT: a read that ends off a block is EOF */
        return;
    }
    submit_hash_read(r, s);
}
