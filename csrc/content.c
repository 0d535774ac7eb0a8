/* US_F_CONTENT: sync -c's and verify's comparison of a regular file with
 * its twin of the same size, made inside us_sync_scan (compare phase, in
 * its pool of threads) so that files found equal never reach the walker:
 * before this, every such pair cost the walker two hash jobs, a task and a
 * decision in Python, which bounded `uringsync verify` warm and cold.
 *
 * Each side is read whole with pread into the thread's buffer and hashed
 * (XXH3-128, the digest rsync -c's counterpart compares); the twin, with
 * US_F_DEVICE, from the device: O_DIRECT, or where the file system refuses
 * it, flushed and its cached pages dropped first (as a US_T_HASH job).
 * Plain syscalls: the scan's threads give the concurrency (many of them
 * while the disk is read), as they do for the stat phase.
 *
 * Only what is cheap to decide here is decided here.  A file with more
 * than one link (its group's leader decides, in the walker), over
 * US_CONTENT_MAX bytes (the engine reads it with many buffers in flight),
 * with another difference the walker looks at anyway, or whose read fails
 * (the walker reads it again and reports the failure with its path and
 * step) is US_D_DATA unread: the walker hashes it as before. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONTENT_OTHER                                                                              \
    (US_D_MTIME | US_D_PERMS | US_D_UID | US_D_GID | US_D_ERR | US_D_XATTR | US_D_ACL)

/* An open regular file of `size` bytes, or -errno (-ESTALE: another file
 * than the scan saw, or one that changed size since). */
static int open_file(int dirfd, const char *name, bool device, bool *direct, uint64_t size)
{
    int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    int fd = openat(dirfd, name, flags | (device ? O_DIRECT : 0));
    struct stat sb;

    *direct = device;
    if (fd < 0 && device && errno == EINVAL) {
        *direct = false;
        fd = openat(dirfd, name, flags);
    }
    if (fd < 0)
        return -errno;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size) {
        close(fd);
        return -ESTALE;
    }
    if (device && !*direct && uncache(fd) < 0) {
        close(fd);
        return -EIO;
    }
    return fd;
}

/* The digest of fd's `size` bytes; false when a read failed, the scan was
 * stopped, or the file ended before.  Each read asks for no more than is
 * left (rounded up to a block under O_DIRECT): a direct read past the end
 * zeroes the rest of the buffer in the kernel, 250 KiB of zeros for a
 * small file. */
static bool digest(XXH3_state_t *st, int fd, bool direct, uint64_t size, void *buf,
                   XXH128_hash_t *out)
{
    uint64_t off = 0;

    if (XXH3_128bits_reset(st) == XXH_ERROR)
        return false;
    while (off < size) {
        uint64_t want = size - off;
        ssize_t n;

        if (us_stop_flag)
            return false;
        if (direct)
            want = (want + 4095) & ~(uint64_t)4095;
        if (want > CONTENT_BUF)
            want = CONTENT_BUF;
        n = pread(fd, buf, (size_t)want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (uint64_t)n > size - off)
            return false; /* shorter or longer than the scan saw: the walker's */
        XXH3_128bits_update(st, buf, (size_t)n);
        off += (uint64_t)n;
        if (direct && n % 4096 && off < size)
            return false; /* a short direct read inside the file */
    }
    *out = XXH3_128bits_digest(st);
    return true;
}

static bool hash_of(XXH3_state_t *st, int dirfd, const char *name, bool device, uint64_t size,
                    void *buf, XXH128_hash_t *out)
{
    bool direct, ok;
    int fd = open_file(dirfd, name, device, &direct, size);

    if (fd < 0)
        return false;
    ok = digest(st, fd, direct, size, buf, out);
    close(fd);
    return ok;
}

uint32_t content_diff(int sfd, int dfd, const char *name, const struct us_stat *src,
                      const struct us_stat *dst_st, uint32_t flags, uint32_t diff,
                      const struct content_buf *cb)
{
    XXH128_hash_t a, b;

    if (src->size == 0)
        return 0; /* one size: both empty */
    if (!cb || !cb->data || !cb->hash || (diff & CONTENT_OTHER) || src->nlink > 1 ||
        dst_st->nlink > 1 || src->size > US_CONTENT_MAX)
        return US_D_DATA;
    if (!hash_of(cb->hash, sfd, name, false, src->size, cb->data, &a) ||
        !hash_of(cb->hash, dfd, name, (flags & US_F_DEVICE) != 0, src->size, cb->data, &b))
        return US_D_DATA;
    return XXH128_isEqual(a, b) ? 0 : US_D_DATA;
}
