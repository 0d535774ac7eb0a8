/* sync --delta (US_F_DELTA): a regular file that exists at the destination
 * is updated by writing only the blocks that differ.
 *
 * Each chunk of the file is half a ring buffer: the source's bytes are read
 * into the first half, the old version's into the second (two READs in
 * flight per chunk, several chunks per file), then compared block by block
 * (us_job.delta_block, XXH3-128 of each side) and every run of differing
 * blocks is one WRITE from the source half.  At the end the file is
 * truncated to the source's size (growth was written as differing blocks).
 *
 * Where the old version is read and the new one written:
 *   atomic (final_name set): dst_name is the temporary, opened O_RDWR; it
 *     becomes a clone of final_name (FICLONE: btrfs, xfs with reflink), so
 *     reading it reads the old version and only the differing blocks take
 *     new extents; the rename over final_name comes after the metadata, as
 *     for any copy, so the old version stays whole until then.  Without a
 *     clone delta_start returns false and the file is copied whole into the
 *     temporary (reading the old version too would only add reads).
 *   in place (no final_name, --inplace): dst_name opened O_RDWR without
 *     O_TRUNC (job.c); a failure leaves it part old, part new: its mtime is
 *     set to 0 so that no quick check takes it for up to date.
 *
 * A big file is split over the workers: us_delta_open opens both ends in
 * the walker (the clone made there), each US_T_RANGE job with US_F_DELTA
 * compares and writes its own range (reading the old version until it
 * ends), and the walker truncates, gives the metadata (us_big_finish) and
 * renames.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_BLOCK (64u << 10)

static uint32_t half(const struct us_ring *r)
{
    return r->cfg.buf_size / 2;
}

static void submit_src(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];

    r->be->read(r, udata(slot_index(r, s), (unsigned)c, T_READ), s->sfd, ch->buf, ch->got,
                ch->len - ch->got, ch->off + ch->got);
    s->pending++;
    ch->reads++;
}

static void submit_base(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];

    r->be->read(r, udata(slot_index(r, s), (unsigned)c, T_BASE_READ), s->dfd, ch->buf,
                half(r) + ch->dgot, ch->dlen - ch->dgot, ch->off + ch->dgot);
    s->pending++;
    ch->reads++;
}

static void submit_put(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];

    r->be->write(r, udata(slot_index(r, s), (unsigned)c, T_WRITE), s->dfd, ch->buf, ch->put,
                 ch->scan - ch->put, ch->off + ch->put);
    s->pending++;
}

static void release(struct us_ring *r, struct slot *s, int c)
{
    /* the slot's first buffer stays: the metadata's xattrs use it */
    if (c > 0 && s->ch[c].buf >= 0) {
        give_buf(r, s->ch[c].buf);
        s->ch[c].buf = -1;
    } else {
        s->ch[c].len = 0;
    }
}

/* Everything read, compared and written (or given up on): the size, then
 * the metadata and, atomic, the rename (meta.c, job.c). */
static void maybe_done(struct us_ring *r, struct slot *s)
{
    if (s->pending)
        return;
    if (s->range) {
        if (s->failed)
            finish(r, s);
        else
            range_complete(r, s);
        return;
    }
    if (!s->failed && s->base_size != s->eof_off && ftruncate(s->dfd, (off_t)s->eof_off) < 0)
        fail(s, US_OP_TRUNCATE, -errno);
    if (s->failed) {
        if (s->delta_in_place) {
            /* part old, part new: never taken for complete by a quick check */
            struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
            (void)futimens(s->dfd, ts);
        }
        finish(r, s);
        return;
    }
    s->written_end = s->eof_off;
    start_meta(r, s);
}

/* Aim chunk `c` at the next part of the file and read both sides of it,
 * or give it back when the file is all asked for. */
static void next(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];
    uint64_t off = s->next_off, len = half(r) / s->block * s->block;

    if (s->failed || off >= s->eof_off) {
        release(r, s, c);
        return;
    }
    if (len > s->eof_off - off)
        len = s->eof_off - off;
    ch->off = off;
    ch->len = (uint32_t)len;
    ch->got = ch->put = ch->scan = ch->dgot = 0;
    ch->dlen =
        off < s->base_size ? (uint32_t)(s->base_size - off < len ? s->base_size - off : len) : 0;
    s->next_off = off + len;
    submit_src(r, s, c);
    if (ch->dlen)
        submit_base(r, s, c);
}

/* Compare on from ch->scan: equal blocks are counted, the next run of
 * differing ones is written (then on here again from on_write). */
static void scan(struct us_ring *r, struct slot *s, int c)
{
    struct chunk *ch = &s->ch[c];
    const char *src = buf_addr(r, ch->buf), *old = src + half(r);
    uint32_t start = UINT32_MAX;

    if (s->failed) { /* another chunk failed: write no more */
        release(r, s, c);
        maybe_done(r, s);
        return;
    }
    while (ch->scan < ch->got) {
        uint32_t b = ch->scan, n = ch->got - b < s->block ? ch->got - b : s->block;
        bool same = b + n <= ch->dgot;
        if (same) {
            XXH128_hash_t a = XXH3_128bits(src + b, n), o = XXH3_128bits(old + b, n);
            same = XXH128_isEqual(a, o);
        }
        if (same && start != UINT32_MAX)
            break; /* the end of a run to write */
        if (same)
            s->matched += n;
        else if (start == UINT32_MAX)
            start = b;
        ch->scan = b + n;
    }
    if (start != UINT32_MAX) {
        ch->put = start;
        submit_put(r, s, c);
        return;
    }
    next(r, s, c);
    maybe_done(r, s);
}

/* Both ends open, s->base_size, next_off and eof_off set: read, compare
 * and write with as many chunks as the file can use, one buffer left per
 * free slot (start_job relies on it). */
static void run(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    int want = MAX_CHUNKS;

    s->delta = true;
    s->block = j->delta_block ? j->delta_block : DEFAULT_BLOCK;
    if (s->block > half(r))
        s->block = half(r);
    j->path = US_PATH_DELTA;
    uint64_t per = half(r) / s->block * s->block, need = (s->eof_off - s->next_off) / per + 1;
    if ((uint64_t)want > need)
        want = (int)need;
    while (s->nchunks < want && r->nfree > r->nfreeslots)
        s->ch[s->nchunks++].buf = take_buf(r);
    for (int c = 0; c < s->nchunks; c++)
        next(r, s, c);
    maybe_done(r, s);
}

void delta_range(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    s->range = true;
    s->sfd = j->src_dirfd;
    s->dfd = j->dst_dirfd;
    /* O_DIRECT (us_delta_open): a short read is the end, never read on
     * from an unaligned offset */
    s->direct = big_direct_bits(s->sfd, s->dfd) != 0;
    /* the old version is read until it ends: other ranges never write in
     * this one, so what is there is the old data or a hole past its end */
    s->base_size = UINT64_MAX;
    s->next_off = j->off;
    s->eof_off = j->off + j->len;
    run(r, s);
}

/* openat, with O_DIRECT where `direct` asks and the file system takes it */
static int open_maybe_direct(int dirfd, const char *name, int flags, bool direct)
{
    int fd = openat(dirfd, name, flags | (direct ? O_DIRECT : 0), 0600);

    if (fd < 0 && direct && errno == EINVAL)
        fd = openat(dirfd, name, flags, 0600);
    return fd;
}

int us_delta_open(int src_dirfd, const char *src_name, int dst_dirfd, const char *dst_name,
                  const char *final_name, struct us_stat *st, int direct, int *fds, int *op)
{
    struct stat sb;
    int sfd, dfd, ret;

    fds[0] = fds[1] = -1;
    sfd = big_open_src(src_dirfd, src_name, st, direct, op);
    if (sfd < 0)
        return sfd;
    *op = US_OP_OPEN_DST;
    if (final_name) {
        dfd = open_maybe_direct(dst_dirfd, dst_name,
                                O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, direct & 2);
        if (dfd < 0) {
            ret = -errno;
            close(sfd);
            return ret;
        }
        int old = openat(dst_dirfd, final_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        bool cloned = old >= 0 && fstat(old, &sb) == 0 && S_ISREG(sb.st_mode) &&
                      ioctl(dfd, FICLONE, old) == 0;
        if (old >= 0)
            close(old);
        if (!cloned) {
            close(dfd);
            close(sfd);
            unlinkat(dst_dirfd, dst_name, 0);
            *op = US_OP_CLONE;
            return -EOPNOTSUPP; /* the caller copies it whole */
        }
    } else {
        dfd = open_maybe_direct(dst_dirfd, dst_name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                                direct & 2);
        ret = dfd < 0 ? -errno : fstat(dfd, &sb) < 0 ? -errno : S_ISREG(sb.st_mode) ? 0 : -EINVAL;
        if (ret < 0) {
            if (dfd >= 0)
                close(dfd);
            close(sfd);
            return ret;
        }
    }
    *op = US_OP_NONE;
    fds[0] = sfd;
    fds[1] = dfd;
    return big_direct_bits(sfd, dfd);
}

bool delta_start(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    struct stat sb;

    if (j->final_name) {
        int old = openat(j->dst_dirfd, j->final_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        bool cloned = old >= 0 && fstat(old, &sb) == 0 && S_ISREG(sb.st_mode) &&
                      ioctl(s->dfd, FICLONE, old) == 0;
        if (old >= 0)
            close(old);
        if (!cloned)
            return false; /* the whole file into the new temporary */
    } else {
        int bad = fstat(s->dfd, &sb) < 0 ? -errno : S_ISREG(sb.st_mode) ? 0 : -EINVAL;
        if (bad) {
            fail(s, US_OP_OPEN_DST, bad);
            finish(r, s);
            return true;
        }
        /* without -p the file keeps its mode (and, as root without -o/-g,
         * its owner), as rsync --inplace leaves them */
        s->replaced = true;
        s->old_mode = sb.st_mode;
        s->old_uid = sb.st_uid;
        s->old_gid = sb.st_gid;
    }
    s->base_size = (uint64_t)sb.st_size;
    s->next_off = 0;
    s->eof_off = s->st.size;
    run(r, s);
    return true;
}

void delta_on_read(struct us_ring *r, struct slot *s, int c, int res, bool base)
{
    struct chunk *ch = &s->ch[c];

    s->pending--;
    ch->reads--;
    if (res < 0) {
        fail(s, US_OP_READ, res);
    } else if (base) {
        ch->dgot += (uint32_t)res;
        if (res == 0 || (s->direct && ch->dgot < ch->dlen))
            ch->dlen = ch->dgot; /* the old version ends here */
        else if (ch->dgot < ch->dlen && !s->failed)
            submit_base(r, s, c);
    } else {
        ch->got += (uint32_t)res;
        if (res == 0 || (s->direct && ch->got < ch->len)) {
            /* the source ends here now: no more chunks past it */
            ch->len = ch->got;
            if (ch->off + ch->got < s->eof_off)
                s->eof_off = ch->off + ch->got;
        } else if (ch->got < ch->len && !s->failed) {
            submit_src(r, s, c);
        }
    }
    if (ch->reads)
        return;
    if (s->failed) {
        release(r, s, c);
        maybe_done(r, s);
        return;
    }
    scan(r, s, c);
}

void delta_on_write(struct us_ring *r, struct slot *s, int c, int res)
{
    struct chunk *ch = &s->ch[c];

    s->pending--;
    if (s->failed || res <= 0) {
        if (!s->failed)
            fail(s, US_OP_WRITE, res < 0 ? res : -EIO);
        release(r, s, c);
        maybe_done(r, s);
        return;
    }
    ch->put += (uint32_t)res;
    s->bytes += (uint64_t)res;
    if (ch->put < ch->scan) {
        submit_put(r, s, c); /* short write: the rest */
        return;
    }
    scan(r, s, c);
}
