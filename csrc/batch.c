/* Batches of jobs in shared memory, and their fds by index, for the
 * worker pool.
 *
 * Nothing here touches a ring: the walker fills a batch, the worker binds
 * the fds it received and hands the batch to us_run (job.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "engine.h"

#define ALIGN8(x) (((x) + 7u) & ~(size_t)7u)

size_t us_batch_size(uint32_t cap, uint64_t names_cap)
{
    return ALIGN8(sizeof(struct us_batch)) + ALIGN8((size_t)cap * sizeof(struct us_job)) +
           ALIGN8((size_t)cap * sizeof(struct us_stat)) + (size_t)names_cap;
}

struct us_batch *us_batch_init(void *mem, uint32_t cap, uint64_t names_cap)
{
    char *p = mem;
    struct us_batch *b = mem;

    memset(b, 0, sizeof *b);
    p += ALIGN8(sizeof *b);
    b->jobs = (struct us_job *)p;
    p += ALIGN8((size_t)cap * sizeof(struct us_job));
    b->stats = (struct us_stat *)p;
    p += ALIGN8((size_t)cap * sizeof(struct us_stat));
    b->names = p;
    b->cap = cap;
    b->names_cap = names_cap;
    b->copy_range_min = UINT64_MAX;
    return b;
}

static const char *put_name(struct us_batch *b, const char *name, size_t len)
{
    char *p = b->names + b->names_used;
    memcpy(p, name, len + 1);
    b->names_used += len + 1;
    return p;
}

long us_batch_add(struct us_batch *b, int src_dirfd, const char *src_name, int dst_dirfd,
                  const char *dst_name, const struct us_stat *st, uint32_t type, uint32_t flags,
                  uint32_t mode_mask)
{
    size_t slen = strlen(src_name), dlen = dst_name == src_name ? 0 : strlen(dst_name);
    uint32_t i = b->n;
    struct us_job *j;

    if (i >= b->cap || b->names_used + slen + dlen + 2 > b->names_cap)
        return -ENOSPC;
    j = &b->jobs[i];
    memset(j, 0, sizeof *j);
    j->rec_fd = -1;
    b->stats[i] = *st;
    j->src_dirfd = src_dirfd;
    j->dst_dirfd = dst_dirfd;
    j->src_name = put_name(b, src_name, slen);
    j->dst_name = dst_name == src_name ? j->src_name : put_name(b, dst_name, dlen);
    j->st = &b->stats[i];
    j->type = type;
    j->flags = flags;
    j->mode_mask = mode_mask;
    j->state = US_JOB_QUEUED;
    b->n = i + 1;
    return i;
}

long us_batch_set_final(struct us_batch *b, uint32_t idx, const char *name)
{
    size_t len = strlen(name);

    if (idx >= b->n)
        return -EINVAL;
    if (b->names_used + len + 1 > b->names_cap)
        return -ENOSPC;
    b->jobs[idx].final_name = put_name(b, name, len);
    return 0;
}

/* an index received, back to an fd: -1 stays -1 */
static bool bind_one(int32_t *fd, const int *fds, size_t n)
{
    if (*fd == -1)
        return true;
    if (*fd < 0 || (size_t)*fd >= n)
        return false;
    *fd = fds[*fd];
    return true;
}

/* a resumable range's record travels with it */
static bool has_rec(const struct us_job *j)
{
    return j->type == US_T_RANGE && (j->flags & US_F_RESUME);
}

static long fd_index(int fd, int *fds, size_t *n, size_t max)
{
    if (fd == -1) /* no fd (a job's unused side) travels as none */
        return -1;
    /* Batches use few distinct directories, mostly in runs: look back. */
    for (size_t k = *n; k-- > 0;)
        if (fds[k] == fd)
            return (long)k;
    if (*n >= max)
        return -E2BIG;
    fds[*n] = fd;
    return (long)(*n)++;
}

long us_batch_pack_fds(struct us_batch *b, int *fds, size_t max)
{
    size_t n = 0;

    for (uint32_t i = 0; i < b->n; i++) {
        struct us_job *j = &b->jobs[i];
        long s = fd_index(j->src_dirfd, fds, &n, max);
        long d = fd_index(j->dst_dirfd, fds, &n, max);
        long rec = has_rec(j) ? fd_index(j->rec_fd, fds, &n, max) : -1;
        if (s == -E2BIG || d == -E2BIG || rec == -E2BIG)
            return -E2BIG;
        j->src_dirfd = (int32_t)s;
        j->dst_dirfd = (int32_t)d;
        if (has_rec(j))
            j->rec_fd = (int32_t)rec;
    }
    return (long)n;
}

int us_batch_bind_fds(struct us_batch *b, const int *fds, size_t n)
{
    for (uint32_t i = 0; i < b->n; i++) {
        struct us_job *j = &b->jobs[i];
        if (!bind_one(&j->src_dirfd, fds, n) || !bind_one(&j->dst_dirfd, fds, n) ||
            (has_rec(j) && !bind_one(&j->rec_fd, fds, n)))
            return -EBADF;
    }
    return 0;
}
