/* The io_uring backend: every op of the seam (internal.h) as an SQE on one
 * ring; the ops the kernel's probe lacks run as plain syscalls and complete
 * through the ring's completion queue (us_cq_push), so callers never see
 * the difference.  Also the ring's set-up: flags, the opcode probe, and the
 * registered buffers.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

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

static inline struct io_uring *ring_of(struct us_ring *r)
{
    return r->be_state;
}

static struct io_uring_sqe *get_sqe(struct us_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring_of(r));
    while (!sqe) {
        io_uring_submit(ring_of(r));
        sqe = io_uring_get_sqe(ring_of(r));
    }
    return sqe;
}

/* Make room for `n` SQEs that must go to the kernel in one submission
 * (a linked chain). */
static void reserve_sqes(struct us_ring *r, unsigned n)
{
    if (io_uring_sq_space_left(ring_of(r)) < n)
        io_uring_submit(ring_of(r));
}

/* ------------------------------------------------------------- set-up */

static int ring_init(struct io_uring *ring, unsigned entries)
{
    /* Newest, cheapest mode first; older kernels refuse unknown flags. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;

    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = flag_sets[i] | IORING_SETUP_CLAMP;
        ret = io_uring_queue_init_params(entries, ring, &p);
        if (ret != -EINVAL)
            break;
    }
    return ret;
}

/* Whether pinning `bytes` of buffers is for this process to do.  Without
 * CAP_IPC_LOCK the kernel charges every ring and pinned page to the uid,
 * summed over all its processes, against RLIMIT_MEMLOCK, and it charges a
 * registration page by page before it gives up: an attempt that cannot fit
 * holds the whole limit for a moment, and a ring set up meanwhile by another
 * process of the user (this copy's walker, another worker) fails with
 * ENOMEM.  So: only when the buffers take at most a quarter of the limit,
 * leaving the rest to the user's other rings. */
static bool may_pin(size_t bytes)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    struct rlimit rl;

    if (syscall(SYS_capget, &hdr, data) == 0 && (data[0].effective & (1u << CAP_IPC_LOCK)))
        return true;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
        return false;
    return rl.rlim_cur == RLIM_INFINITY || bytes <= rl.rlim_cur / 4;
}

static int ur_init(struct us_ring *r, unsigned entries)
{
    struct io_uring *ring = calloc(1, sizeof *ring);
    struct io_uring_probe *probe;
    struct iovec *iov;
    int ret;

    if (!ring)
        return -ENOMEM;
    ret = ring_init(ring, entries);
    if (ret < 0) {
        free(ring);
        return ret;
    }
    r->be_state = ring;

    probe = io_uring_get_probe_ring(ring);
    if (!probe)
        return -ENOSYS;
    for (int op = 0; op < IORING_OP_LAST && op < 256; op++) {
        r->ops[op] = (uint8_t)io_uring_opcode_supported(probe, op);
        r->nops += r->ops[op];
    }
    io_uring_free_probe(probe);
    if (!r->ops[IORING_OP_OPENAT] || !r->ops[IORING_OP_READ] || !r->ops[IORING_OP_WRITE] ||
        !r->ops[IORING_OP_CLOSE] || !r->ops[IORING_OP_STATX])
        return -ENOSYS;
    r->sq_entries = ring->sq.ring_entries;

    iov = calloc(r->cfg.nbufs, sizeof *iov);
    if (!iov)
        return -ENOMEM;
    for (unsigned i = 0; i < r->cfg.nbufs; i++) {
        iov[i].iov_base = buf_addr(r, (int)i);
        iov[i].iov_len = r->cfg.buf_size;
    }
    /* Registration pins the pages; without it (RLIMIT_MEMLOCK) plain
     * READ/WRITE on the same buffers still work. */
    r->fixed = r->ops[IORING_OP_READ_FIXED] && r->ops[IORING_OP_WRITE_FIXED] &&
               may_pin(r->bufmem_len) && io_uring_register_buffers(ring, iov, r->cfg.nbufs) == 0;
    free(iov);
    return 0;
}

static void ur_fini(struct us_ring *r)
{
    io_uring_queue_exit(ring_of(r));
    free(r->be_state);
    r->be_state = NULL;
}

/* ---------------------------------------------------------------- ops */

static void ur_openat(struct us_ring *r, uint64_t ud, int dirfd, const char *name, int flags,
                      mode_t mode, unsigned link)
{
    struct io_uring_sqe *sqe;

    if (link)
        reserve_sqes(r, 2);
    sqe = get_sqe(r);
    io_uring_prep_openat(sqe, dirfd, name, flags, mode);
    if (link)
        sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_read(struct us_ring *r, uint64_t ud, int fd, int buf, uint32_t boff, uint32_t len,
                    uint64_t off)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    char *addr = buf_addr(r, buf) + boff;

    if (r->fixed)
        io_uring_prep_read_fixed(sqe, fd, addr, len, off, buf);
    else
        io_uring_prep_read(sqe, fd, addr, len, off);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_write(struct us_ring *r, uint64_t ud, int fd, int buf, uint32_t boff, uint32_t len,
                     uint64_t off)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    char *addr = buf_addr(r, buf) + boff;

    if (r->fixed)
        io_uring_prep_write_fixed(sqe, fd, addr, len, off, buf);
    else
        io_uring_prep_write(sqe, fd, addr, len, off);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_statx(struct us_ring *r, uint64_t ud, int dirfd, const char *name, int flags,
                     unsigned mask, struct statx *out)
{
    struct io_uring_sqe *sqe = get_sqe(r);

    io_uring_prep_statx(sqe, dirfd, name, flags, mask, out);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_symlinkat(struct us_ring *r, uint64_t ud, const char *target, int dirfd,
                         const char *name)
{
    struct io_uring_sqe *sqe;

    if (!r->ops[IORING_OP_SYMLINKAT]) {
        /* old kernel: the same step as a plain syscall */
        us_cq_push(r, ud, symlinkat(target, dirfd, name) < 0 ? -errno : 0);
        return;
    }
    sqe = get_sqe(r);
    io_uring_prep_symlinkat(sqe, target, dirfd, name);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_linkat(struct us_ring *r, uint64_t ud, int olddirfd, const char *oldname,
                      int newdirfd, const char *newname, int flags)
{
    struct io_uring_sqe *sqe;

    if (!r->ops[IORING_OP_LINKAT]) {
        us_cq_push(r, ud, linkat(olddirfd, oldname, newdirfd, newname, flags) < 0 ? -errno : 0);
        return;
    }
    sqe = get_sqe(r);
    io_uring_prep_linkat(sqe, olddirfd, oldname, newdirfd, newname, flags);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_fgetxattr(struct us_ring *r, uint64_t ud, int fd, const char *name, void *value,
                         size_t len)
{
    struct io_uring_sqe *sqe;

    if (!r->ops[IORING_OP_FGETXATTR] || !r->ops[IORING_OP_FSETXATTR]) {
        ssize_t n = fgetxattr(fd, name, value, len);
        us_cq_push(r, ud, n < 0 ? -errno : (int)n);
        return;
    }
    sqe = get_sqe(r);
    io_uring_prep_fgetxattr(sqe, fd, name, value, (unsigned)len);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_fsetxattr(struct us_ring *r, uint64_t ud, int fd, const char *name,
                         const void *value, size_t len, int flags)
{
    struct io_uring_sqe *sqe;

    if (!r->ops[IORING_OP_FGETXATTR] || !r->ops[IORING_OP_FSETXATTR]) {
        us_cq_push(r, ud, fsetxattr(fd, name, value, len, flags) < 0 ? -errno : 0);
        return;
    }
    sqe = get_sqe(r);
    io_uring_prep_fsetxattr(sqe, fd, name, value, flags, (unsigned)len);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_close(struct us_ring *r, uint64_t ud, int fd)
{
    struct io_uring_sqe *sqe = get_sqe(r);

    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_renameat(struct us_ring *r, uint64_t ud, int olddirfd, const char *oldname,
                        int newdirfd, const char *newname)
{
    struct io_uring_sqe *sqe;

    if (!r->ops[IORING_OP_RENAMEAT]) {
        us_cq_push(r, ud, renameat(olddirfd, oldname, newdirfd, newname) < 0 ? -errno : 0);
        return;
    }
    sqe = get_sqe(r);
    io_uring_prep_renameat(sqe, olddirfd, oldname, newdirfd, newname, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

static void ur_unlinkat(struct us_ring *r, uint64_t ud, int dirfd, const char *name, int flags)
{
    struct io_uring_sqe *sqe;

    if (!r->ops[IORING_OP_UNLINKAT]) {
        us_cq_push(r, ud, unlinkat(dirfd, name, flags) < 0 ? -errno : 0);
        return;
    }
    sqe = get_sqe(r);
    io_uring_prep_unlinkat(sqe, dirfd, name, flags);
    io_uring_sqe_set_data64(sqe, ud);
}

/* Submit what is queued, wait for at least one completion (none when some
 * are already in hand), hand them all to fn. */
static int ur_wait(struct us_ring *r, us_complete_fn *fn, void *arg)
{
    struct io_uring *ring = ring_of(r);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0, local = r->done_tail - r->done_head;
    int ret = local ? io_uring_submit(ring) : io_uring_submit_and_wait(ring, 1);

    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;
    if (local)
        us_cq_drain(r, local, fn, arg);
    io_uring_for_each_cqe(ring, head, cqe) {
        fn(r, io_uring_cqe_get_data64(cqe), cqe->res, arg);
        seen++;
    }
    io_uring_cq_advance(ring, seen);
    return 0;
}

const struct us_backend us_backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .openat = ur_openat,
    .read = ur_read,
    .write = ur_write,
    .statx = ur_statx,
    .symlinkat = ur_symlinkat,
    .linkat = ur_linkat,
    .fgetxattr = ur_fgetxattr,
    .fsetxattr = ur_fsetxattr,
    .close = ur_close,
    .renameat = ur_renameat,
    .unlinkat = ur_unlinkat,
    .wait = ur_wait,
};
