/* The per-file state machine and us_run: many files in flight on one ring.
 *
 * Each file being copied owns a slot that moves through a small state
 * machine driven by completions; every step io_uring can run asynchronously
 * is an op of the ring's backend (internal.h, "the backend seam"), and
 * comes back as (udata, res) to on_cqe; the others are plain syscalls here
 * (docs/design.md lists them):
 *
 *   OPENAT src --link--> OPENAT dst (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600)
 *   data:  data.c (FICLONE, copy_file_range, or READ/WRITE chunks)
 *   meta:  meta.c (owner, xattrs, mode, ACLs, times, in cp's order)
 *   CLOSE dst (waited for: a close error means lost data), CLOSE src
 *
 * Symlinks (readlinkat, SYMLINKAT), hard links (LINKAT) and special files
 * (mknodat) are jobs too, and so is a file's digest (hash.c), an unlink
 * (UNLINKAT) and an existing entry's metadata made to match (meta.c).  A
 * copy with a final_name is made under its temporary dst_name and renamed
 * over the final name (RENAMEAT) only when all of it succeeded.  A
 * destination that could not be written completely is unlinked, so nothing
 * is left that looks complete.  Every
 * failure is kept in the job as -errno and the step (US_OP_*), and the run
 * goes on with the other jobs.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

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
void finish(struct us_ring *r, struct slot *s)
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
void requeue(struct us_ring *r, struct slot *s)
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
    if (!same_inode(&sb, &s->st)) {
        fail(s, US_OP_SRC_CHANGED, -ESTALE);
        return -1;
    }
    stat_from(&s->st, &sb);
    return 0;
}

static bool is_emfile(int res)
{
    return res == -EMFILE || res == -ENFILE;
}

/* ------------------------------------------ destination exists: retry
 * Every step that makes the destination (OPENAT with O_EXCL, SYMLINKAT,
 * LINKAT, mknodat) may find the name taken.  Then, once per job, what is in
 * the way is removed and the step issued again: a symlink or file there is
 * unlinked (never followed), a directory is an error. */

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

/* `*res` is a step's result.  true: it was EEXIST, the first time, and the
 * name is now clear: issue the step again.  false: report *res (maybe now
 * the clearing's error) with dst_fail. */
static bool clear_for_retry(struct slot *s, int *res)
{
    int ret;

    if (*res != -EEXIST || s->dst_retried)
        return false;
    s->dst_retried = true;
    ret = clear_dst(s);
    if (ret < 0) {
        *res = ret;
        return false;
    }
    return true;
}

/* A step making the destination failed: a directory in the way is reported
 * as the open of the destination, anything else as the step `op`. */
static void dst_fail(struct slot *s, int res, int op)
{
    fail(s, res == -EISDIR ? US_OP_OPEN_DST : op, res);
}

/* ------------------------------------------------------ regular files */

static void submit_open_dst(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    r->be->openat(r, udata(slot_index(r, s), 0, T_OPEN_DST), j->dst_dirfd, j->dst_name,
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600, 0);
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
        int res = -EEXIST;
        s->need_replace = false;
        if (clear_for_retry(s, &res)) {
            submit_open_dst(r, s);
            return;
        }
        dst_fail(s, res, US_OP_UNLINK);
        finish(r, s);
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
            /* cleared once both opens are in (after_open) */
            s->need_replace = true;
        } else {
            fail(s, US_OP_OPEN_DST, res);
        }
    }
    after_open(r, s);
}

/* ---------------------------------------- symlinks, specials, links */

static void submit_symlink(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    r->be->symlinkat(r, udata(slot_index(r, s), 0, T_SYMLINK), buf_addr(r, s->ch[0].buf),
                     j->dst_dirfd, j->dst_name);
    s->pending++;
}

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
    submit_symlink(r, s);
}

static void on_symlink(struct us_ring *r, struct slot *s, int res)
{
    struct us_job *j = s->job;

    s->pending--;
    if (clear_for_retry(s, &res)) {
        submit_symlink(r, s);
        return;
    }
    if (res < 0) {
        dst_fail(s, res, US_OP_SYMLINK);
    } else {
        int op = US_OP_NONE;
        /* two statements: an argument `op` could be read before meta_at set it */
        int err = meta_at(j, buf_addr(r, s->ch[0].buf), &op);
        record(j, err, op);
    }
    finish(r, s);
}

static int mknod_dst(const struct us_job *j, mode_t mode, dev_t dev)
{
    return mknodat(j->dst_dirfd, j->dst_name, mode, dev) < 0 ? -errno : 0;
}

/* FIFOs, devices, sockets: mknodat (no io_uring op), then metadata. */
static void do_special(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    const struct us_stat *st = j->st;
    mode_t mode = (mode_t)((st->mode & S_IFMT) | 0600);
    dev_t dev = makedev(st->rdev_major, st->rdev_minor);
    int op = US_OP_NONE;
    int ret = mknod_dst(j, mode, dev);

    if (clear_for_retry(s, &ret))
        ret = mknod_dst(j, mode, dev);
    if (ret < 0) {
        dst_fail(s, ret, US_OP_MKNOD);
    } else {
        s->dst_created = true;
        ret = meta_at(j, buf_addr(r, s->ch[0].buf), &op);
        record(j, ret, op);
    }
    finish(r, s);
}

/* A hard link to the copy already made of the same source inode. */
static void submit_link(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    r->be->linkat(r, udata(slot_index(r, s), 0, T_LINK), j->src_dirfd, j->src_name, j->dst_dirfd,
                  j->dst_name, 0);
    s->pending++;
}

static void on_link(struct us_ring *r, struct slot *s, int res)
{
    s->pending--;
    if (clear_for_retry(s, &res)) {
        submit_link(r, s);
        return;
    }
    if (res < 0)
        dst_fail(s, res, US_OP_LINK);
    finish(r, s);
}

/* ------------------------------------------- into place, out of the way */

/* The step that completes the job succeeded after a stop failed it (it
 * was in flight): what it did is done, so report that, not the stop. */
static void done_despite_stop(struct slot *s)
{
    if (s->failed && s->fail_op == US_OP_STOPPED)
        s->failed = false;
}

/* A copy made under a temporary name (us_job.final_name): closed, it is
 * renamed over the final name.  A failure before (the metadata's too: a
 * temporary with the wrong metadata must not replace anything) or of the
 * rename itself leaves the final name alone; finish unlinks the temporary. */
static void start_rename(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    if (!s->failed && j->err)
        fail(s, j->op, j->err);
    if (s->failed) {
        finish(r, s);
        return;
    }
    r->be->renameat(r, udata(slot_index(r, s), 0, T_RENAME), j->dst_dirfd, j->dst_name,
                    j->dst_dirfd, j->final_name);
    s->pending++;
}

static void on_rename(struct us_ring *r, struct slot *s, int res)
{
    s->pending--;
    if (res < 0) {
        fail(s, US_OP_RENAME, res);
    } else {
        s->dst_created = false; /* the temporary name is gone */
        done_despite_stop(s);
    }
    finish(r, s);
}

/* US_T_UNLINK: the name removed (a directory with US_F_RMDIR) */
static void start_unlink(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    r->be->unlinkat(r, udata(slot_index(r, s), 0, T_UNLINK), j->dst_dirfd, j->dst_name,
                    (j->flags & US_F_RMDIR) ? AT_REMOVEDIR : 0);
    s->pending++;
}

/* US_T_META: plain syscalls here (io_uring has no op for most of them) */
static void do_meta(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    int op = US_OP_NONE;
    int ret;

    if ((j->flags & (US_P_XATTR | US_P_ACL)) && !r->metabuf &&
        !(r->metabuf = malloc(4 * XATTR_MAX))) {
        fail(s, US_OP_XATTR_LIST, -ENOMEM);
        finish(r, s);
        return;
    }
    ret = meta_job(j, r->metabuf, &op);
    record(j, ret, op);
    finish(r, s);
}

/* ------------------------------------------------------------- the run */

static void start_job(struct us_ring *r, struct us_job *j)
{
    unsigned idx = r->freeslots[--r->nfreeslots];
    struct slot *s = &r->slots[idx];

    memset(s, 0, sizeof *s);
    s->job = j;
    s->st = *j->st;
    s->sfd = s->dfd = -1;
    s->ch[0].buf = take_buf(r); /* never -1: read_chunks keeps one per free slot */
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
    case US_T_RANGE: start_range(r, s); break;
    case US_T_REG:
        /* linked: the create runs only if the source opened */
        r->be->openat(r, udata(idx, 0, T_OPEN_SRC), j->src_dirfd, j->src_name,
                      O_RDONLY | O_CLOEXEC | ((j->flags & US_F_FOLLOW_SRC) ? 0 : O_NOFOLLOW), 0,
                      US_BE_LINK);
        s->pending = 1;
        submit_open_dst(r, s);
        break;
    case US_T_LNK: start_symlink(r, s); break;
    case US_T_FIFO:
    case US_T_CHR:
    case US_T_BLK:
    case US_T_SOCK: do_special(r, s); break;
    case US_T_HARDLINK: submit_link(r, s); break;
    case US_T_HASH: start_hash(r, s); break;
    case US_T_META: do_meta(r, s); break;
    case US_T_UNLINK: start_unlink(r, s); break;
    default: fail(s, US_OP_TYPE, -EOPNOTSUPP); finish(r, s);
    }
}

/* Every completion of a job's op comes here. */
static void on_cqe(struct us_ring *r, uint64_t d, int res, void *arg)
{
    enum tag t = (enum tag)(d & 0xff);
    int c = (int)((d >> 8) & 0xff);
    struct slot *s = &r->slots[d >> 32];

    (void)arg;
    switch (t) {
    case T_OPEN_SRC:
    case T_OPEN_DST: on_open(r, s, t, res); break;
    case T_READ: on_read(r, s, c, res); break;
    case T_WRITE: on_write(r, s, c, res); break;
    case T_SYMLINK: on_symlink(r, s, res); break;
    case T_CLOSE_DST:
        s->pending--;
        s->dfd = -1;
        if (res < 0)
            fail(s, US_OP_CLOSE, res);
        if (s->job->final_name) {
            start_rename(r, s);
            break;
        }
        finish(r, s);
        break;
    case T_RENAME: on_rename(r, s, res); break;
    case T_UNLINK:
        s->pending--;
        if (res < 0)
            fail(s, US_OP_UNLINK, res);
        else
            done_despite_stop(s);
        finish(r, s);
        break;
    case T_IGNORE: r->closes_pending--; break;
    case T_XGET:
    case T_XSET: on_xattr(r, s, t, res); break;
    case T_LINK: on_link(r, s, res); break;
    case T_HASH_OPEN: on_hash_open(r, s, res); break;
    case T_HASH_READ: on_hash_read(r, s, c, res); break;
    case T_VERIFY_OPEN: on_readback_open(r, s, res); break;
    case T_VERIFY_READ: on_readback_read(r, s, c, res); break;
    }
}

/* Start what is issued, wait for at least one completion, handle all. */
static int wait_and_dispatch(struct us_ring *r)
{
    int ret = r->be->wait(r, on_cqe, NULL);

    if (ret < 0)
        r->broken = true; /* in-flight slots point into the caller's jobs */
    return ret;
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
