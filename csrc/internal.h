/* What the engine's files share; not part of the public interface (that is
 * api.h, also cffi's cdef).  Include it first: it sets _GNU_SOURCE.
 *
 *   ring.c           a ring: config, slots, buffers, info; picks the backend
 *   backend_uring.c  the io_uring backend
 *   backend_threads.c  the same ops as plain syscalls on a pool of threads
 *   scan.c           listing directories, lstat of their entries
 *   match.c          sync: one directory's two listings merged and compared
 *   syncscan.c       sync: groups of directory pairs on a pool of threads
 *   job.c            the per-file state machine and us_run
 *   data.c           a regular file's bytes
 *   meta.c           owner, xattrs, mode, ACLs, times in cp's order
 *   xattr.c          reading and writing xattrs and ACLs
 *   big.c            big files split into ranges
 *   resume.c         sync: a big file's record of its ranges, to resume
 *   hash.c           a file's XXH3-128 digest (US_T_HASH)
 *   delta.c          sync --delta: only the blocks that differ written
 *   stat.c           struct us_stat from statx/fstat
 *   batch.c, stop.c  helpers for the worker pool
 */
#ifndef URINGSYNC_INTERNAL_H
#define URINGSYNC_INTERNAL_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine.h"
#include "xxh.h"

#pragma GCC visibility push(hidden)

/* us_stop_flag (api.h): set by the SIGINT/SIGTERM handler of us_catch_stop
 * (stop.c); an int, which is what sig_atomic_t is on Linux */

#define MAX_CHUNKS 8
#define EMFILE_TRIES 4
/* a buffer holds an xattr name list (64 KiB max) and a value (64 KiB max) */
#define MIN_BUF (128u * 1024u)
#define XATTR_MAX (64u * 1024u)

/* ------------------------------------------------------ the backend seam
 * Every step of a job that can wait on a file system goes through one of
 * these.  An op is issued with a udata and completes later, exactly once,
 * as (udata, res) handed to the `fn` given to wait(); res is what the
 * syscall would return, or -errno.  No op allocates; the caller keeps names
 * and buffers alive until the completion.  See docs/design.md, "The
 * backend seam". */

/* openat `link`: the next op, issued right after (before any wait), runs
 * only if this one succeeds; if it fails, the next op completes with
 * -ECANCELED without running.  Each completes once either way. */
#define US_BE_LINK 1u

struct us_ring;
struct statx;
typedef void us_complete_fn(struct us_ring *r, uint64_t udata, int res, void *arg);

struct us_backend {
    const char *name;
    /* Set up for `entries` ops in flight: fill r->ops[] (what it runs
     * natively, US_IORING_OP_* numbering), r->sq_entries, and r->fixed if
     * it registered r->bufmem.  0 or -errno; fini runs whenever it left
     * r->be_state set, failed or not. */
    int (*init)(struct us_ring *r, unsigned entries);
    void (*fini)(struct us_ring *r);
    void (*openat)(struct us_ring *r, uint64_t udata, int dirfd, const char *name, int flags,
                   mode_t mode, unsigned link);
    /* `len` bytes at file offset `off` into/from buffer `buf` (an index into
     * r->bufmem, see buf_addr) at byte `boff` of it */
    void (*read)(struct us_ring *r, uint64_t udata, int fd, int buf, uint32_t boff, uint32_t len,
                 uint64_t off);
    void (*write)(struct us_ring *r, uint64_t udata, int fd, int buf, uint32_t boff, uint32_t len,
                  uint64_t off);
    void (*statx)(struct us_ring *r, uint64_t udata, int dirfd, const char *name, int flags,
                  unsigned mask, struct statx *out);
    void (*symlinkat)(struct us_ring *r, uint64_t udata, const char *target, int dirfd,
                      const char *name);
    void (*linkat)(struct us_ring *r, uint64_t udata, int olddirfd, const char *oldname,
                   int newdirfd, const char *newname, int flags);
    void (*fgetxattr)(struct us_ring *r, uint64_t udata, int fd, const char *name, void *value,
                      size_t len);
    void (*fsetxattr)(struct us_ring *r, uint64_t udata, int fd, const char *name,
                      const void *value, size_t len, int flags);
    void (*close)(struct us_ring *r, uint64_t udata, int fd);
    void (*renameat)(struct us_ring *r, uint64_t udata, int olddirfd, const char *oldname,
                     int newdirfd, const char *newname);
    void (*unlinkat)(struct us_ring *r, uint64_t udata, int dirfd, const char *name, int flags);
    /* Start what was issued, wait until at least one op completed (or a
     * signal came: EINTR, then maybe none), and hand every completion
     * there is to fn.  fn may issue more ops.  0, or -errno when the
     * backend itself failed (ops may still be in flight: the ring is then
     * unusable). */
    int (*wait)(struct us_ring *r, us_complete_fn *fn, void *arg);
};

extern const struct us_backend us_backend_uring;
extern const struct us_backend us_backend_threads;

/* Completions a backend has in hand but not yet handed to wait()'s fn
 * (ops it ran as plain syscalls); room for every op a ring can have in
 * flight.  One thread only. */
struct us_done {
    uint64_t udata;
    int32_t res;
};
void us_cq_push(struct us_ring *r, uint64_t udata, int res);
/* hand the first `n` to fn (those pushed meanwhile wait for the next call) */
void us_cq_drain(struct us_ring *r, unsigned n, us_complete_fn *fn, void *arg);

/* ------------------------------------------------------------ metadata */

/* Where metadata goes or comes from: an open fd (name == NULL), or
 * (dirfd, name) never following a symlink; with `follow`, a path that may
 * be followed: only ever /proc/self/fd/N of an O_PATH fd checked not to be
 * a symlink (meta_job), for the calls that take no O_PATH fd. */
struct target {
    int fd;
    const char *name;
    bool follow;
};

/* The first failure of a sequence of metadata steps. */
struct meta {
    int err;
    int op;
};

static inline void note(struct meta *m, int err, int op)
{
    if (err < 0 && !m->err) {
        m->err = err;
        m->op = op;
    }
}

/* One entry's metadata in cp's order (meta.c):
 *   meta_first       owner (it clears set-id bits); the source's xattr names
 *   meta_next_xattr  each plain (non-ACL) xattr, copied by the caller, with
 *   meta_xattr_done    plain syscalls or through the backend
 *   meta_last        mode, ACLs (a chmod rewrites an ACL's mask), times */
struct meta_seq {
    struct target src, dst;   /* src.fd < 0: no xattrs to give */
    const struct us_stat *st; /* owner, mode and times to apply */
    uint32_t flags;           /* US_P_* | US_F_STRICT_OWNER | US_F_CLEAR_ACL */
    uint32_t mode;            /* to apply: meta_first may drop set-id bits */
    bool link;                /* a symlink: no mode, no ACLs */
    bool is_dir;              /* ACLs: the default one too */
    bool keep_mode;           /* a file written in place without US_P_MODE: no chmod */
    char *list, *val;         /* XATTR_MAX bytes each: names, one value */
    uint32_t n, pos;          /* bytes of names in list; the next one */
    struct meta m, xm;        /* first failure; first among plain xattrs */
};

void meta_init(struct meta_seq *q, struct target src, struct target dst, const struct us_stat *st,
               uint32_t flags, uint32_t mode_mask, char *buf, bool is_dir);
void meta_first(struct meta_seq *q);
const char *meta_next_xattr(struct meta_seq *q);
void meta_xattr_done(struct meta_seq *q, int err, int op);
void meta_last(struct meta_seq *q);
/* all of it with plain syscalls; buf: 2 * XATTR_MAX bytes */
struct meta meta_sync(struct target src, struct target dst, const struct us_stat *st,
                      uint32_t flags, uint32_t mode_mask, char *buf, bool is_dir);
int meta_at(const struct us_job *j, char *buf, int *op);
/* US_T_META: buf holds 4 * XATTR_MAX bytes (NULL: no xattrs/ACLs asked) */
int meta_job(struct us_job *j, char *buf, int *op);

/* xattr.c */
bool is_acl(const char *name);
int acl_group_obj(struct target t);
ssize_t list_xattrs(struct target src, char *buf, struct meta *m);
void copy_one_xattr(struct target src, struct target dst, const char *key, char *val,
                    struct meta *m);
void copy_acls(struct target src, struct target dst, const char *list, ssize_t n, char *val,
               bool is_dir, bool clear, struct meta *m);
/* Make dst's plain xattrs (acl: its ACLs) those of src, whose names are
 * list[0..n); buf: 3 * XATTR_MAX bytes; dry: compare only.  true when they
 * differed. */
bool match_xattrs(struct target src, struct target dst, const char *list, ssize_t n, char *buf,
                  bool dry, struct meta *m);
bool match_acls(struct target src, struct target dst, const char *list, ssize_t n, char *buf,
                bool is_dir, bool dry, struct meta *m);

/* scan.c: one directory's names (getdents64), no stat; one entry's lstat */
int scan_list(int dirfd, struct us_scan *sc);
void stat_inline(int dirfd, struct us_entry *e, const char *name);
uint64_t now_ns(void);

/* match.c, for syncscan.c: merge two scans of one directory (sorted by
 * name); todo[0..*ntodo) gets the source entries whose symlink value or
 * xattrs compare_entry must look at, dst_st[i] their twins' stats (todo and
 * dst_st: src->n each).  Returns the number matched or -ENOMEM. */
long match_merge(const struct us_scan *src, const struct us_scan *dst, uint32_t flags,
                 uint32_t skip_xattr, int32_t *match, uint32_t *diff, uint8_t *dst_matched,
                 const struct us_stat **dst_st, uint32_t *todo, uint32_t *ntodo);
/* What US_F_CONTENT's comparison reads into and hashes with, per thread:
 * CONTENT_BUF bytes aligned to 4096, and an XXH3 state (NULL: none). */
#define CONTENT_BUF (256u << 10)
struct content_buf {
    void *data;
    XXH3_state_t *hash;
};

/* diff[i] with what compare_entry found added; buf: NULL, or 4 * XATTR_MAX
 * bytes when flags has US_P_XATTR or US_P_ACL; cb: NULL, or incomplete
 * (US_F_CONTENT's files are then all US_D_DATA) */
uint32_t compare_entry(const struct us_scan *src, const struct us_stat *dst_st, int sfd, int dfd,
                       uint32_t flags, uint32_t i, uint32_t diff, char *buf,
                       const struct content_buf *cb);

/* content.c: US_F_CONTENT's comparison of a regular file (sfd, name) with
 * its twin (dfd, name) of the same size: 0 when their data hash the same,
 * else US_D_DATA. */
uint32_t content_diff(int sfd, int dfd, const char *name, const struct us_stat *src,
                      const struct us_stat *dst_st, uint32_t flags, uint32_t diff,
                      const struct content_buf *cb);
/* hash.c: a file read past the page cache without O_DIRECT: flushed, then
 * its cached pages dropped.  0 or -errno. */
int uncache(int fd);

/* stat.c */
void fill_stat(struct us_stat *o, const struct statx *x);
void stat_from(struct us_stat *st, const struct stat *sb);
bool same_inode(const struct stat *sb, const struct us_stat *st);

/* big.c, for resume.c */
int big_open_src(int src_dirfd, const char *src_name, struct us_stat *st, int direct, int *op);
int big_create(int dst_dirfd, const char *dst_name, int direct);
int big_direct_bits(int sfd, int dfd);
/* An open file opened again for reading (O_RDONLY | flags), through
 * /proc/self/fd (a write-only fd cannot be read): fd or -errno */
int open_again(int fd, int flags);
#define DIRECT_BLOCK 4096 /* O_DIRECT writes whole blocks: the tail is written without it */

/* resume.c: a US_F_RESUME range is written: flush, then record it.
 * 0, or -errno with *op (US_OP_FSYNC, US_OP_RECORD) */
int record_range(int dfd, int rec_fd, uint32_t idx, int *op);

/* --------------------------------------------------------- jobs, slots */

/* what an op's completion is for (the low byte of its udata) */
enum tag {
    T_OPEN_SRC = 1,
    T_OPEN_DST,
    T_READ,
    T_WRITE,
    T_SYMLINK,
    T_CLOSE_DST,
    T_IGNORE,
    T_XGET,
    T_XSET,
    T_LINK,
    T_HASH_OPEN,
    T_HASH_READ,
    T_RENAME,
    T_UNLINK,
    T_VERIFY_OPEN,
    T_VERIFY_READ,
    T_BASE_READ,
};

struct chunk {
    int buf;      /* index into the buffer pool, -1 when not held */
    uint64_t off; /* file offset of this chunk */
    uint32_t len; /* bytes asked for */
    uint32_t got; /* bytes read */
    uint32_t put; /* bytes written so far */
    /* US_F_DELTA: the old version's bytes asked for and read (at half a
     * buffer in), reads in flight, how far the comparison got */
    uint32_t dlen, dgot, scan;
    int reads;
};

struct slot {
    struct us_job *job;
    int sfd, dfd;
    int pending; /* ops of this slot not yet completed */
    bool failed, dst_created, dst_retried, need_replace, emfile;
    bool replaced;           /* an existing file was replaced: old_* are its */
    bool in_place;           /* US_F_CP_DEST: dfd is an existing file opened O_TRUNC */
    bool opening_in_place;   /* the in-place OPENAT is in flight */
    bool skipped;            /* US_F_NO_CLOBBER / US_F_UPDATE left the entry alone */
    bool sparse, zero_holes; /* seek over the source's holes; skip zero runs */
    bool range;              /* US_T_RANGE: the fds are the caller's */
    bool direct;             /* US_T_HASH, read-back: opened O_DIRECT (US_F_DEVICE) */
    bool delta;              /* US_F_DELTA: the blocks compared (delta.c) */
    bool delta_in_place;     /* US_F_DELTA without final_name: dfd is the old file */
    uint32_t block;          /* US_F_DELTA: bytes per compared block */
    uint64_t base_size;      /* US_F_DELTA: the old version's size */
    uint64_t matched;        /* US_F_DELTA: bytes found equal */
    uint64_t hashed;         /* US_F_VERIFY: bytes of the source fed to the hash */
    int vfd;                 /* US_F_VERIFY: the destination opened to read back, or -1 */
    bool eof;                /* a hash job, a read-back: the end is read */
    uint64_t rb_end;         /* a read-back: where it ends (a range's end; else UINT64_MAX) */
    uint64_t rb_size;        /* ord_start: where the data should end (direct reads stop there) */
    uint32_t old_mode, old_uid, old_gid;
    uint64_t written_end; /* end of the last byte written */
    uint64_t size_end;    /* the size the copy must have (holes at the end) */
    struct meta_seq meta; /* after the data */
    struct us_stat st;    /* the source as fstat saw it once open */
    int fail_op, fail_err;
    uint64_t next_off, eof_off, bytes;
    int nchunks;
    struct chunk ch[MAX_CHUNKS];
};

struct us_ring {
    const struct us_backend *be;
    void *be_state; /* the backend's own */
    struct us_config cfg;
    uint8_t ops[256]; /* US_IORING_OP_* the backend runs natively */
    unsigned nops;
    unsigned sq_entries;
    bool fixed; /* the backend registered bufmem */
    char *bufmem;
    size_t bufmem_len;
    int *freebufs;
    unsigned nfree;
    struct slot *slots;
    unsigned nslots;
    unsigned *freeslots;
    unsigned nfreeslots;
    unsigned inflight, max_inflight, cap_inflight;
    unsigned ok_since_emfile; /* finished jobs since the last EMFILE */
    struct us_job **retry;
    unsigned nretry;
    long failed_jobs;
    unsigned closes_pending; /* fire-and-forget CLOSEs not yet reaped */
    bool broken;             /* a backend failure left work in flight */
    bool scan_follow;        /* us_scan_dirs stats symlinks' targets (cp -L) */
    int uring_err;           /* io_uring's set-up failed so (AUTO fell back) */
    struct statx *sx;
    unsigned *freesx;
    struct XXH3_state_s **hstates; /* US_T_HASH: one per slot (hash.c) */
    char *metabuf;                 /* US_T_META: 4 * XATTR_MAX bytes, made on first use */
    struct us_done *done;          /* us_cq_*: a ring buffer of done_cap (a power of 2) */
    unsigned done_head, done_tail, done_cap;
};

static inline uint64_t udata(unsigned slot, unsigned chunk, enum tag t)
{
    return ((uint64_t)slot << 32) | ((uint64_t)chunk << 8) | (uint64_t)t;
}

static inline unsigned slot_index(struct us_ring *r, struct slot *s)
{
    return (unsigned)(s - r->slots);
}

static inline int take_buf(struct us_ring *r)
{
    return r->nfree ? r->freebufs[--r->nfree] : -1;
}

static inline void give_buf(struct us_ring *r, int b)
{
    r->freebufs[r->nfree++] = b;
}

static inline char *buf_addr(struct us_ring *r, int b)
{
    return r->bufmem + (size_t)b * r->cfg.buf_size;
}

static inline void fail(struct slot *s, int op, int err)
{
    if (!s->failed) {
        s->failed = true;
        s->fail_op = op;
        s->fail_err = err;
    }
}

/* US_F_VERIFY or US_F_DIGEST: a regular file's data hashed as it is read
 * (a range's too, under US_F_VERIFY: a range is never given US_F_DIGEST) */
static inline bool hashing(const struct slot *s)
{
    return (s->job->flags & (US_F_VERIFY | US_F_DIGEST)) != 0;
}

static inline void record(struct us_job *j, int err, int op)
{
    if (err < 0 && !j->err) {
        j->err = err;
        j->op = op;
    }
}

/* job.c */
void finish(struct us_ring *r, struct slot *s);
/* too many open files: put the job back and keep fewer in flight */
void requeue(struct us_ring *r, struct slot *s);
/* data.c */
void start_data(struct us_ring *r, struct slot *s);
void start_range(struct us_ring *r, struct slot *s);
void on_read(struct us_ring *r, struct slot *s, int c, int res);
void on_write(struct us_ring *r, struct slot *s, int c, int res);
/* meta.c: the data is in: metadata, then close */
void start_meta(struct us_ring *r, struct slot *s);
void on_xattr(struct us_ring *r, struct slot *s, enum tag t, int res);
/* hash.c */
void start_hash(struct us_ring *r, struct slot *s);
void on_hash_open(struct us_ring *r, struct slot *s, int res);
void on_hash_read(struct us_ring *r, struct slot *s, int c, int res);
/* hash.c, US_F_VERIFY: the source's bytes as they are read (at `off`, in
 * order: a gap since the last is a hole, hashed as zeros), the end (zeros
 * up to `size`), then the read-back, before the metadata (a read would
 * change the atime just set): it ends in start_meta, or finish if it failed */
void verify_begin(struct us_ring *r, struct slot *s);
void verify_feed(struct us_ring *r, struct slot *s, uint64_t off, const void *p, size_t n);
void verify_source_done(struct us_ring *r, struct slot *s, uint64_t size);
void start_readback(struct us_ring *r, struct slot *s);
void on_readback_open(struct us_ring *r, struct slot *s, int res);
void on_readback_read(struct us_ring *r, struct slot *s, int c, int res);
/* delta.c (US_F_DELTA): false when the file must be copied whole instead
 * (no clone of the old version), else the job goes on there */
bool delta_start(struct us_ring *r, struct slot *s);
/* a US_T_RANGE with US_F_DELTA: fds from the walker (us_delta_open) */
void delta_range(struct us_ring *r, struct slot *s);
void delta_on_read(struct us_ring *r, struct slot *s, int c, int res, bool base);
void delta_on_write(struct us_ring *r, struct slot *s, int c, int res);
/* data.c: a range is written (and read back): recorded (US_F_RESUME), done */
void range_complete(struct us_ring *r, struct slot *s);

#pragma GCC visibility pop
#endif
