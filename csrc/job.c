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
 * is left that looks complete.  A name found taken (EEXIST) follows cp's
 * rules under US_F_CP_DEST (api.h; "destination exists" below): an
 * existing regular file is opened again O_TRUNC and written in place (and
 * emptied if that fails), or -n/-u skip it, a backup renames it away,
 * -f/--remove-destination unlink it.  Every
 * failure is kept in the job as -errno and the step (US_OP_*), and the run
 * goes on with the other jobs.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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

/* A file being written in place failed: truncate it to 0 bytes, by its fd
 * or (closed already) by name, never following. */
static void empty_in_place(struct slot *s)
{
    struct us_job *j = s->job;
    int fd = s->dfd;

    if (fd < 0)
        fd = openat(j->dst_dirfd, j->dst_name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        (void)ftruncate(fd, 0);
    if (fd != s->dfd)
        close(fd);
}

/* The job is over, one way or the other. */
void finish(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    if (s->failed) {
        /* written in place: left empty, not partial (api.h, US_F_CP_DEST) */
        if (s->in_place && !(j->flags & US_F_ATTR_ONLY))
            empty_in_place(s);
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
    j->matched = s->failed ? 0 : (int64_t)s->matched;
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

/* ------------------------------------------ destination exists: cp's rules
 * (US_F_CP_DEST, api.h).  Plain syscalls, as clear_dst's: fstatat, then
 * maybe a rename (backup) or an unlink. */

enum taken { TAKEN_FAIL, TAKEN_RETRY, TAKEN_SKIP, TAKEN_IN_PLACE };

#define BACKUP_FLAGS (US_F_BACKUP_SIMPLE | US_F_BACKUP_NUMBERED)

/* The largest N of the entries NAME.~N~ in dirfd (0: none; -errno). */
static long max_backup(int dirfd, const char *name)
{
    size_t len = strlen(name);
    long best = 0;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *e;

    if (fd < 0)
        return -errno;
    if (!(d = fdopendir(fd))) {
        close(fd);
        return -errno;
    }
    while ((e = readdir(d))) {
        const char *p = e->d_name;
        if (strncmp(p, name, len) != 0 || p[len] != '.' || p[len + 1] != '~')
            continue;
        p += len + 2;
        if (*p < '1' || *p > '9') /* gnulib's backupfile: no leading zero */
            continue;
        long v = 0;
        while (*p >= '0' && *p <= '9' && v < 100000000)
            v = v * 10 + (*p++ - '0');
        if (p[0] == '~' && p[1] == '\0' && v > best)
            best = v;
    }
    closedir(d);
    return best;
}

/* Rename the taken name to its backup name, as cp -b names it. */
static int make_backup(struct us_job *j)
{
    const char *suffix = j->final_name ? j->final_name : "~";
    char bak[4096];
    int n;

    if ((j->flags & BACKUP_FLAGS) == US_F_BACKUP_SIMPLE) {
        n = snprintf(bak, sizeof bak, "%s%s", j->dst_name, suffix);
    } else {
        long v = max_backup(j->dst_dirfd, j->dst_name);
        if (v < 0)
            return (int)v;
        if (v == 0 && (j->flags & US_F_BACKUP_SIMPLE)) /* existing/nil: none yet */
            n = snprintf(bak, sizeof bak, "%s%s", j->dst_name, suffix);
        else
            n = snprintf(bak, sizeof bak, "%s.~%ld~", j->dst_name, v + 1);
    }
    if (n < 0 || (size_t)n >= sizeof bak)
        return -ENAMETOOLONG;
    if (renameat(j->dst_dirfd, j->dst_name, j->dst_dirfd, bak) < 0)
        return errno == ENOENT ? 0 : -errno;
    j->changed |= US_CH_BACKUP;
    return 0;
}

static bool newer(const struct us_stat *src, const struct stat *sb)
{
    return src->mtime_sec > sb->st_mtim.tv_sec ||
           (src->mtime_sec == sb->st_mtim.tv_sec && src->mtime_nsec > sb->st_mtim.tv_nsec);
}

/* `said`: cp -v says "removed NAME" for it (US_CH_REMOVED) */
static enum taken unlink_taken(struct us_job *j, int *res, int *op, bool said)
{
    if (unlinkat(j->dst_dirfd, j->dst_name, 0) < 0) {
        if (errno == ENOENT)
            return TAKEN_RETRY;
        *res = -errno;
        *op = US_OP_UNLINK;
        return TAKEN_FAIL;
    }
    if (said)
        j->changed |= US_CH_REMOVED;
    return TAKEN_RETRY;
}

static enum taken cp_taken(struct slot *s, int *res, int *op)
{
    struct us_job *j = s->job;
    uint32_t f = j->flags;
    struct stat sb;
    int ret;

    if (fstatat(j->dst_dirfd, j->dst_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return TAKEN_RETRY; /* gone meanwhile */
        *res = -errno;
        *op = US_OP_OPEN_DST;
        return TAKEN_FAIL;
    }
    if (S_ISDIR(sb.st_mode)) {
        *res = -EISDIR;
        return TAKEN_FAIL;
    }
    if ((f & US_F_NO_CLOBBER) || ((f & US_F_UPDATE) && !newer(&s->st, &sb)))
        return TAKEN_SKIP;
    if (f & BACKUP_FLAGS) {
        if ((ret = make_backup(j)) < 0) {
            *res = ret;
            *op = US_OP_BACKUP;
            return TAKEN_FAIL;
        }
        return TAKEN_RETRY;
    }
    if (f & US_F_REMOVE_DST)
        return unlink_taken(j, res, op, true);
    if (f & US_F_LINK_EXCL) {
        if (f & US_F_FORCE) /* cp replaces it silently */
            return unlink_taken(j, res, op, false);
        *op = j->type == US_T_HARDLINK ? US_OP_LINK_TO : US_OP_SYMLINK_TO;
        return TAKEN_FAIL;
    }
    if (j->type == US_T_REG && S_ISREG(sb.st_mode) && same_inode(&sb, &s->st)) {
        *res = -EEXIST; /* truncating it would lose the source: cp refuses too */
        *op = US_OP_SAME_FILE;
        return TAKEN_FAIL;
    }
    /* cp -a replaces a file of several links, unless no data is copied */
    if (j->type == US_T_REG && S_ISREG(sb.st_mode) &&
        !((f & US_F_KEEP_LINKS) && !(f & US_F_ATTR_ONLY) && sb.st_nlink > 1))
        return TAKEN_IN_PLACE;
    /* a symlink (never written through), a special file, a hard link
     * under cp -a, or a non-regular source: made anew */
    return unlink_taken(j, res, op, true);
}

/* `*res` is a making step's result.  TAKEN_RETRY: it was EEXIST, the first
 * time, and the name is now clear: issue the step again.  TAKEN_SKIP: leave
 * the entry (-n, -u).  TAKEN_IN_PLACE: open the regular file there.
 * TAKEN_FAIL: report *res (maybe now the clearing's error) with dst_fail and
 * *op (US_OP_NONE: the caller's step). */
static enum taken on_taken(struct slot *s, int *res, int *op)
{
    int ret;

    *op = US_OP_NONE;
    if (*res != -EEXIST || s->dst_retried)
        return TAKEN_FAIL;
    s->dst_retried = true;
    if (s->job->flags & US_F_CP_DEST)
        return cp_taken(s, res, op);
    ret = clear_dst(s);
    if (ret < 0) {
        *res = ret;
        return TAKEN_FAIL;
    }
    return TAKEN_RETRY;
}

/* -n, -u: nothing done, nothing wrong */
static void skip_job(struct us_ring *r, struct slot *s)
{
    if (s->sfd >= 0 && !s->range) {
        close(s->sfd);
        s->sfd = -1;
    }
    s->job->changed |= US_CH_SKIPPED;
    finish(r, s);
}

/* A step making the destination failed: a directory in the way is reported
 * as the open of the destination, anything else as the step `op`. */
static void dst_fail(struct slot *s, int res, int op)
{
    fail(s, res == -EISDIR && op != US_OP_BACKUP ? US_OP_OPEN_DST : op, res);
}

/* what a making step does with on_taken's answer: true when it is dealt
 * with (retried by `again`, skipped, or failed and finished) */
static bool taken(struct us_ring *r, struct slot *s, int *res, int op,
                  void (*again)(struct us_ring *, struct slot *))
{
    int why;

    switch (on_taken(s, res, &why)) {
    case TAKEN_RETRY: again(r, s); return true;
    case TAKEN_SKIP: skip_job(r, s); return true;
    case TAKEN_IN_PLACE: /* only a T_REG job gets it: not here */
    case TAKEN_FAIL:
        if (*res >= 0)
            return false;
        dst_fail(s, *res, why != US_OP_NONE ? why : op);
        finish(r, s);
        return true;
    }
    return false;
}

/* ------------------------------------------------------ regular files */

static void submit_open_dst(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    /* a delta's temporary is read back too: it starts as the old version */
    int rw = (j->flags & US_F_DELTA) ? O_RDWR : O_WRONLY;

    r->be->openat(r, udata(slot_index(r, s), 0, T_OPEN_DST), j->dst_dirfd, j->dst_name,
                  rw | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600, 0);
    s->pending++;
}

/* US_F_DELTA without final_name (--inplace): the old file itself, read and
 * written (O_NONBLOCK: never wait on a FIFO put there meanwhile) */
static void submit_open_delta(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;

    s->delta_in_place = true;
    r->be->openat(r, udata(slot_index(r, s), 0, T_OPEN_DST), j->dst_dirfd, j->dst_name,
                  O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0, 0);
    s->pending++;
}

/* US_F_CP_DEST: the regular file there, written in place (cp's open) */
static void submit_open_in_place(struct us_ring *r, struct slot *s)
{
    struct us_job *j = s->job;
    int trunc = (j->flags & US_F_ATTR_ONLY) ? 0 : O_TRUNC;

    s->opening_in_place = true;
    r->be->openat(r, udata(slot_index(r, s), 0, T_OPEN_DST), j->dst_dirfd, j->dst_name,
                  O_WRONLY | trunc | O_NOFOLLOW | O_CLOEXEC, 0, 0);
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
    if (refresh_stat(s) < 0) {
        finish(r, s);
        return;
    }
    if (s->need_replace) {
        int res = -EEXIST, op;
        s->need_replace = false;
        switch (on_taken(s, &res, &op)) {
        case TAKEN_RETRY: submit_open_dst(r, s); return;
        case TAKEN_IN_PLACE: submit_open_in_place(r, s); return;
        case TAKEN_SKIP: skip_job(r, s); return;
        case TAKEN_FAIL: break;
        }
        dst_fail(s, res, op != US_OP_NONE ? op : US_OP_UNLINK);
        finish(r, s);
        return;
    }
    if (s->job->flags & US_F_ATTR_ONLY) {
        start_meta(r, s); /* no data */
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
    } else if (s->opening_in_place) {
        s->opening_in_place = false;
        if (res >= 0) {
            s->dfd = res;
            s->in_place = true;
        } else if (is_emfile(res)) {
            s->emfile = true;
        } else if (s->job->flags & US_F_FORCE) {
            /* cp -f: cannot be opened, so removed and made anew */
            int op;
            if (unlink_taken(s->job, &res, &op, true) == TAKEN_RETRY) {
                submit_open_dst(r, s);
                return;
            }
            fail(s, op, res);
        } else {
            fail(s, US_OP_OPEN_DST, res); /* cp: "cannot create regular file" */
        }
    } else {
        if (res >= 0) {
            s->dfd = res;
            s->dst_created = !s->delta_in_place;
        } else if (res == -ENOENT && s->delta_in_place) {
            /* gone meanwhile: made anew, whole */
            s->delta_in_place = false;
            submit_open_dst(r, s);
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

    if (j->flags & US_F_SYMLINK_SRC) { /* cp -s: the value is given */
        size_t len = strlen(j->src_name);
        if (len >= r->cfg.buf_size) {
            fail(s, US_OP_SYMLINK_TO, -ENAMETOOLONG);
            finish(r, s);
            return;
        }
        memcpy(target, j->src_name, len + 1);
        submit_symlink(r, s);
        return;
    }
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
    if (taken(r, s, &res, (j->flags & US_F_SYMLINK_SRC) ? US_OP_SYMLINK_TO : US_OP_SYMLINK,
              submit_symlink))
        return;
    if (res < 0) {
        dst_fail(s, res, US_OP_SYMLINK);
    } else if (!(j->flags & US_F_SYMLINK_SRC)) {
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
    int ret = mknod_dst(j, mode, dev), why = US_OP_NONE;

    switch (ret == -EEXIST ? on_taken(s, &ret, &why) : TAKEN_FAIL) {
    case TAKEN_RETRY: ret = mknod_dst(j, mode, dev); break;
    case TAKEN_SKIP: skip_job(r, s); return;
    case TAKEN_IN_PLACE:
    case TAKEN_FAIL:
        if (ret < 0 && why != US_OP_NONE) {
            dst_fail(s, ret, why);
            finish(r, s);
            return;
        }
        break;
    }
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

    /* cp -l of a command-line SRC that is followed: link the target */
    int fl = ((j->flags & US_F_LINK_EXCL) && (j->flags & US_F_FOLLOW_SRC)) ? AT_SYMLINK_FOLLOW : 0;

    r->be->linkat(r, udata(slot_index(r, s), 0, T_LINK), j->src_dirfd, j->src_name, j->dst_dirfd,
                  j->dst_name, fl);
    s->pending++;
}

static void on_link(struct us_ring *r, struct slot *s, int res)
{
    s->pending--;
    if (taken(r, s, &res, (s->job->flags & US_F_LINK_EXCL) ? US_OP_LINK_TO : US_OP_LINK,
              submit_link))
        return;
    if (res < 0)
        dst_fail(s, res, (s->job->flags & US_F_LINK_EXCL) ? US_OP_LINK_TO : US_OP_LINK);
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
    if (j->type != US_T_META)
        j->changed = 0;
    j->bytes = 0;
    j->matched = 0;
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
        if ((j->flags & US_F_DELTA) && !j->final_name)
            submit_open_delta(r, s);
        else
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
    case T_READ:
        if (s->delta)
            delta_on_read(r, s, c, res, false);
        else
            on_read(r, s, c, res);
        break;
    case T_BASE_READ: delta_on_read(r, s, c, res, true); break;
    case T_WRITE:
        if (s->delta)
            delta_on_write(r, s, c, res);
        else
            on_write(r, s, c, res);
        break;
    case T_SYMLINK: on_symlink(r, s, res); break;
    case T_CLOSE_DST:
        s->pending--;
        s->dfd = -1;
        if (res < 0)
            fail(s, US_OP_CLOSE, res);
        if (s->job->final_name && !(s->job->flags & BACKUP_FLAGS)) {
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
