/* Public interface of the uringsync C engine.
 *
 * This file is read twice: by the C compiler (through engine.h) and by cffi's
 * cdef parser (through build_ffi.py).  Keep it to plain declarations: no
 * #include, no include guards, no function-like macros.
 *
 * Every function that can fail returns a negative errno; nothing here prints.
 */

/* ---- file types (US_T_*) as carried in us_entry.type and us_job.type ---- */
#define US_T_UNKNOWN 0
#define US_T_REG 1
#define US_T_DIR 2
#define US_T_LNK 3
#define US_T_FIFO 4
#define US_T_CHR 5
#define US_T_BLK 6
#define US_T_SOCK 7
/* a job only: make dst a hard link to src (src = an earlier copy) */
#define US_T_HARDLINK 8
/* a job only: copy bytes [off, off+len) between two open files (src_dirfd,
 * dst_dirfd are the files' fds); no open, metadata or close: the walker owns
 * the file and splits a big one into ranges copied by several workers */
#define US_T_RANGE 9
/* a job only: the XXH3-128 digest of the file (src_dirfd, src_name), opened
 * O_NOFOLLOW (unless US_F_FOLLOW_SRC) and read to EOF; into hash_hi/hash_lo,
 * bytes = bytes read; dst is unused (US_F_DEVICE: read past the page cache).
 * Failures: OPEN_SRC, STAT, TYPE (not a regular file), READ.  For regular files only: a FIFO's open would block */
#define US_T_HASH 10
/* a job only: make the existing (dst_dirfd, dst_name) match the metadata of
 * the source entry (src_dirfd, src_name) whose lstat is *st, any type: the
 * owner, mode, times in `flags` applied from st unconditionally (no chmod on
 * a symlink); US_P_XATTR, US_P_ACL compared and made equal, names dst has
 * and src lacks removed; US_F_DRY: compare only.  `changed` gets US_CH_*.
 * Never follows a symlink in dst: a symlink by name, anything else through
 * an O_PATH|O_NOFOLLOW fd checked to be st's type (else US_OP_TYPE) and
 * reached as /proc/self/fd/N.  Failures: OPEN_DST (dst missing), TYPE,
 * CHOWN, CHMOD, UTIMES, XATTR_* */
#define US_T_META 11
/* a job only: unlinkat(dst_dirfd, dst_name, US_F_RMDIR ? AT_REMOVEDIR : 0);
 * src_name unused, src_dirfd may be -1.  Failure: UNLINK */
#define US_T_UNLINK 12

/* ---- what to preserve (us_job.flags) ---- */
#define US_P_OWNER 1
#define US_P_MODE 2
#define US_P_TIMES 4
/* running as root: a failed chown is an error, not a silent downgrade */
#define US_F_STRICT_OWNER 8
/* open the source following a symlink (cp without -r/-a on a command-line
 * SRC); never set for anything found while walking */
#define US_F_FOLLOW_SRC 16
/* extended attributes: all names (xattr), or only POSIX ACLs (with mode) */
#define US_P_XATTR 32
#define US_P_ACL 64
/* holes: auto keeps the source's holes (SEEK_DATA/SEEK_HOLE) in files that
 * have fewer blocks than their size; always also turns zero runs into
 * holes; neither flag: write every byte (--sparse=never) */
#define US_F_SPARSE_AUTO 128
#define US_F_SPARSE_ALWAYS 256
/* reflinks: try FICLONE first (auto), or require it (always) */
#define US_F_REFLINK_TRY 512
#define US_F_REFLINK_REQUIRE 1024
/* the destination directory has a default ACL, so a new entry inherits ACLs:
 * remove those the source does not have (cp -a leaves none) */
#define US_F_CLEAR_ACL 2048
/* US_T_META: compare only, write nothing (owner, mode, times untouched) */
#define US_F_DRY 4096
/* US_T_UNLINK: remove an (empty) directory */
#define US_F_RMDIR 8192
/* US_T_HASH: read the data from the device, not the page cache: O_DIRECT,
 * or where the file system refuses it (EINVAL: tmpfs, some FUSE), the file
 * flushed (fdatasync) and its cached pages dropped before it is read */
#define US_F_DEVICE 16384
/* a regular file's data and metadata flushed (fsync) once its metadata is
 * applied: before its close, so before a temporary is renamed into place;
 * a failure removes the file (US_OP_FSYNC) */
#define US_F_FSYNC 32768
/* a regular file (not a range) copied through the buffers, one chunk in
 * flight, its data hashed (XXH3-128, holes as zeros) as it is read; once its
 * metadata is applied (and flushed, US_F_FSYNC), read back from the device
 * as US_F_DEVICE does and hashed again: a difference fails the file
 * (US_OP_VERIFY, -EBADMSG) and removes it.  No FICLONE or copy_file_range: the
 * data must pass the hash.  The source's digest in hash_hi/hash_lo. */
#define US_F_VERIFY 65536
/* as US_F_VERIFY without the read-back: the source's digest as the data
 * passes (for a manifest) */
#define US_F_DIGEST 131072
/* US_T_RANGE of a resumable big file (us_big_resume): once the range is
 * written, the file's data is flushed (fdatasync) and only then the range
 * is recorded: byte rec_idx of the record rec_fd set to 1, written with
 * RWF_DSYNC.  Failures: FSYNC, RECORD */
#define US_F_RESUME 262144
/* us_sync_scan only (sync -c, verify): a regular file and its twin of one
 * size are compared by their data's XXH3-128 digests inside the scan, the
 * twin read as US_F_DEVICE says; US_D_DATA when they differ or were not
 * compared there (see US_D_DATA) */
#define US_F_CONTENT 524288
/* cp's rules for a destination name that is taken (T_REG, T_LNK, specials,
 * T_HARDLINK; never with a final_name): without them (sync's temporaries,
 * tests) whatever is there is unlinked and made again.  With US_F_CP_DEST:
 * a directory there is an error (OPEN_DST, -EISDIR); US_F_NO_CLOBBER skips
 * the job (US_CH_SKIPPED in `changed`), US_F_UPDATE skips it unless the
 * source's mtime is later than the entry's; a backup (US_F_BACKUP_*) renames
 * the entry away, US_F_REMOVE_DST unlinks it (UNLINK), and the name is made
 * anew; otherwise a T_REG job that finds a regular file there opens it
 * O_WRONLY|O_TRUNC|O_NOFOLLOW and writes in place (inode, links, owner,
 * ACLs kept; without US_P_MODE its mode is left alone), unless
 * US_F_KEEP_LINKS and it has more than one link (cp -a unlinks it then,
 * unless US_F_ATTR_ONLY), or it is the source itself (SAME_FILE, -EEXIST);
 * an open that fails is OPEN_DST (cp's "cannot create"), or with US_F_FORCE
 * the entry is unlinked and made anew.  A job that fails after the in-place
 * open leaves the file empty (truncated to 0): never a partial file that
 * could pass for the copy.  Anything else there (a symlink: never written
 * through; a special file) is unlinked and made anew.  T_HARDLINK and T_LNK
 * with US_F_LINK_EXCL (cp -l, cp -s): a taken name is an error (LINK_TO,
 * SYMLINK_TO, -EEXIST) unless US_F_FORCE or US_F_REMOVE_DST. */
#define US_F_CP_DEST 1048576
#define US_F_FORCE 2097152
#define US_F_REMOVE_DST 4194304
#define US_F_NO_CLOBBER 8388608
#define US_F_UPDATE 16777216
/* backups (cp -b): the taken name renamed to NAME + suffix (simple), to
 * NAME.~N~ with N one more than the largest there (numbered), or both
 * flags: numbered when NAME has numbered backups, else simple (existing).
 * The suffix is in final_name (a cp job is never renamed).  Failure: BACKUP */
#define US_F_BACKUP_SIMPLE 33554432
#define US_F_BACKUP_NUMBERED 67108864
/* T_LNK: src_name is the link's value itself (cp -s): nothing is read */
#define US_F_SYMLINK_SRC 134217728
/* T_REG: no data: the file made (or an existing one opened, not
 * truncated) and given the metadata only (cp --attributes-only) */
#define US_F_ATTR_ONLY 268435456
#define US_F_LINK_EXCL 536870912
/* cp -a (links kept): a taken regular file with more than one link is
 * unlinked and made anew, not written in place */
#define US_F_KEEP_LINKS 1073741824
/* US_T_REG of sync --delta, a regular file there already: both sides read
 * in blocks of us_job.delta_block (XXH3-128 compared), only the blocks that
 * differ written, then truncated to the source's size.  With final_name
 * (atomic): the temporary dst_name starts as a clone of final_name
 * (FICLONE); where that fails, the file is copied whole as without the
 * flag.  Without final_name (--inplace): dst_name itself is opened and
 * written in place (a failure leaves its mtime at 0, so that no quick check
 * takes it for complete).  us_job.bytes: the bytes written, matched: those
 * found equal. */
#define US_F_DELTA 2147483648

/* ---- what a US_T_META job found different (us_job.changed) ---- */
#define US_CH_XATTR 1
#define US_CH_ACL 2
/* a copy job (US_F_CP_DEST) left the existing entry alone: US_F_NO_CLOBBER,
 * or US_F_UPDATE and the entry is not older */
#define US_CH_SKIPPED 4
/* ... it renamed the entry there to its backup name (cp -v: "(backup: B)") */
#define US_CH_BACKUP 8
/* ... it unlinked the entry there (cp -v: "removed NAME") */
#define US_CH_REMOVED 16

/* ---- the step that failed (us_job.op) ---- */
#define US_OP_NONE 0
#define US_OP_OPEN_SRC 1
#define US_OP_OPEN_DST 2
#define US_OP_READ 3
#define US_OP_WRITE 4
#define US_OP_COPY_RANGE 5
#define US_OP_CHOWN 6
#define US_OP_CHMOD 7
#define US_OP_UTIMES 8
#define US_OP_CLOSE 9
#define US_OP_READLINK 10
#define US_OP_SYMLINK 11
#define US_OP_UNLINK 12
#define US_OP_STAT 13
#define US_OP_TYPE 14
#define US_OP_SRC_CHANGED 15
#define US_OP_XATTR_LIST 16
#define US_OP_XATTR_GET 17
#define US_OP_XATTR_SET 18
#define US_OP_MKNOD 19
#define US_OP_LINK 20
#define US_OP_CLONE 21
#define US_OP_SEEK 22
#define US_OP_TRUNCATE 23
/* the run was stopped (SIGINT/SIGTERM) while this job was in flight */
#define US_OP_STOPPED 24
/* renaming the temporary name over us_job.final_name */
#define US_OP_RENAME 25
/* flushing the destination (US_F_FSYNC) */
#define US_OP_FSYNC 26
/* the destination's data read back differs from what was read (US_F_VERIFY:
 * err -EBADMSG), or reading it back failed (its errno) */
#define US_OP_VERIFY 27
/* recording a finished range in a resumable big file's record (US_F_RESUME) */
#define US_OP_RECORD 28
/* renaming an existing entry to its backup name (US_F_BACKUP_*) */
#define US_OP_BACKUP 29
/* cp -l, cp -s (US_F_LINK_EXCL): making the link to the source */
#define US_OP_LINK_TO 30
#define US_OP_SYMLINK_TO 31
/* US_F_CP_DEST: the file to be written in place is the source itself (a
 * hard link of it met in DST): err -EEXIST, nothing written */
#define US_OP_SAME_FILE 32

/* ---- how far a job got (us_job.state): a dead worker's jobs in state
 *      QUEUED or STARTED are copied again by another worker ---- */
#define US_JOB_QUEUED 0
#define US_JOB_STARTED 1
#define US_JOB_DONE 2

/* ---- data path chosen for a file (us_job.path) ---- */
#define US_PATH_NONE 0
#define US_PATH_URING 1
#define US_PATH_COPY_RANGE 2
#define US_PATH_CLONE 3
#define US_PATH_DELTA 4

/* ---- io_uring opcodes the engine asks the probe about (kernel ABI values;
 *      backend_uring.c checks them against liburing's enum at compile time) ---- */
#define US_IORING_OP_READ_FIXED 4
#define US_IORING_OP_WRITE_FIXED 5
#define US_IORING_OP_FALLOCATE 17
#define US_IORING_OP_OPENAT 18
#define US_IORING_OP_CLOSE 19
#define US_IORING_OP_STATX 21
#define US_IORING_OP_READ 22
#define US_IORING_OP_WRITE 23
#define US_IORING_OP_FADVISE 24
#define US_IORING_OP_SPLICE 30
#define US_IORING_OP_RENAMEAT 35
#define US_IORING_OP_UNLINKAT 36
#define US_IORING_OP_MKDIRAT 37
#define US_IORING_OP_SYMLINKAT 38
#define US_IORING_OP_LINKAT 39
#define US_IORING_OP_FSETXATTR 41
#define US_IORING_OP_FGETXATTR 43

/* A compact lstat: what the walker decides on and what cp -a preserves. */
struct us_stat {
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    uint32_t dev_major, dev_minor;
    uint32_t rdev_major, rdev_minor;
    uint32_t mode;
    uint32_t uid, gid;
    uint32_t nlink;
    int64_t atime_sec, mtime_sec, ctime_sec;
    uint32_t atime_nsec, mtime_nsec, ctime_nsec;
    uint32_t type; /* US_T_* */
};

/* One directory entry found by us_scan_dir. */
struct us_entry {
    uint32_t name_off; /* into us_scan.names, NUL-terminated bytes */
    uint32_t name_len;
    int32_t err; /* 0, or -errno of its statx (-ENOENT: vanished) */
    uint32_t pad;
    struct us_stat st;
};

/* Result of listing one directory; memory is owned by C, freed by us_scan_free. */
struct us_scan {
    struct us_entry *ents;
    size_t n, cap;
    char *names;
    size_t names_len, names_cap;
};

/* One unit of per-file work.  Names are relative to directory fds, never
 * full paths, so neither depth nor name bytes are limited by PATH_MAX. */
struct us_job {
    int32_t src_dirfd;
    int32_t dst_dirfd;
    const char *src_name;
    const char *dst_name;
    const struct us_stat *st; /* the source's lstat, from the walker */
    uint32_t flags;           /* US_P_* | US_F_* */
    uint32_t type;            /* US_T_* */
    uint32_t mode_mask;       /* final mode = st->mode & mode_mask */
    uint32_t changed;         /* US_T_META's result: US_CH_* */
    /* results, written by us_run */
    int64_t bytes;     /* bytes written to the destination */
    int32_t err;       /* 0, or -errno */
    int32_t op;        /* US_OP_* of the failing step */
    int32_t path;      /* US_PATH_* used for the data */
    uint32_t tries;    /* engine-internal: opens retried after EMFILE */
    uint32_t state;    /* US_JOB_*, written by us_run as the job moves on */
    uint64_t off, len; /* US_T_RANGE: the byte range to copy */
    /* US_T_HASH (and a copy with US_F_VERIFY: the source's data): the
     * XXH3-128 digest (XXH128_hash_t's high64, low64; the
     * canonical bytes, as xxh128sum prints them, are hi then lo, big-endian) */
    uint64_t hash_hi, hash_lo;
    /* US_T_REG: NULL, or the name (in dst_dirfd) that dst_name, a temporary
     * name, is renamed over once data and metadata are in; on any failure
     * the temporary is unlinked and nothing is renamed (us_batch_set_final) */
    const char *final_name;
    /* US_T_RANGE with US_F_RESUME: the record's fd (packed and bound with
     * the directory fds) and the range's index in it */
    int32_t rec_fd;
    uint32_t rec_idx;
    /* US_F_DELTA: bytes per compared block (0: 65536; at most half a buffer) */
    uint32_t delta_block;
    /* US_F_DELTA's result: bytes found equal and not written */
    int64_t matched;
};

/* A batch of jobs laid out in one block of memory: the jobs, copies of their
 * stats, and their names.  The block is shared (MAP_SHARED) with the worker
 * processes, mapped at the same address in all of them, so the pointers in
 * the jobs hold in every process.  Directory fds travel separately
 * (SCM_RIGHTS): us_batch_pack_fds turns them into indices, us_batch_bind_fds
 * back into the receiving process's fds. */
struct us_batch {
    struct us_job *jobs;
    struct us_stat *stats;
    char *names;
    uint32_t cap, n;
    uint64_t names_cap, names_used;
    uint64_t copy_range_min; /* the data path for this batch's destination */
    int64_t result;          /* us_run's return, set by the worker */
};

struct us_ring;

struct us_config {
    uint32_t queue_depth;     /* files in flight at once */
    uint32_t buf_size;        /* bytes per registered buffer */
    uint32_t nbufs;           /* registered buffers (shared by files in flight) */
    uint32_t chunks_per_file; /* read/write chunks in flight for one big file */
    uint64_t copy_range_min;  /* files at least this big try copy_file_range */
    uint32_t engine;          /* US_ENGINE_*: how the steps are issued */
    uint32_t threads;         /* US_ENGINE_THREADS: threads (0: the default) */
};

/* us_config.engine: AUTO is io_uring, or threads when io_uring_setup fails
 * (the reason is left in us_ring_info.uring_err) */
#define US_ENGINE_AUTO 0
#define US_ENGINE_URING 1
#define US_ENGINE_THREADS 2

struct us_ring_info {
    uint32_t sq_entries;
    uint32_t fixed_buffers; /* 1: buffers are registered (READ/WRITE_FIXED) */
    uint32_t nops;          /* opcodes the kernel knows, from io_uring_get_probe */
    uint32_t max_inflight;  /* current limit, lowered after EMFILE */
    uint32_t engine;        /* US_ENGINE_URING or US_ENGINE_THREADS: the one running */
    int32_t uring_err;      /* -errno of io_uring's set-up when AUTO fell back, else 0 */
};

struct us_ring *us_ring_new(const struct us_config *cfg, int *err);
void us_ring_free(struct us_ring *r);
void us_ring_get_info(struct us_ring *r, struct us_ring_info *info);
/* 1 when the kernel supports io_uring opcode `op`, per the start-up probe. */
int us_ring_has_op(struct us_ring *r, int op);
/* Act as if the kernel lacked io_uring opcode `op` (one the io_uring backend
 * checks as it issues: SYMLINKAT, LINKAT, FGETXATTR, FSETXATTR,
 * RENAMEAT, UNLINKAT): its step then
 * runs as the plain syscall, as on an older kernel.  For tests. */
void us_ring_forget_op(struct us_ring *r, int op);
/* us_scan_dirs stats the target of a symlink entry, not the link (cp -L). */
void us_ring_set_scan_follow(struct us_ring *r, int follow);
/* Files at least this big use copy_file_range (UINT64_MAX: never). */
void us_ring_set_copy_range_min(struct us_ring *r, uint64_t n);
/* The file system type (statfs f_type magic) of an open fd, or -errno. */
int us_fs_type(int fd, uint64_t *magic);
/* syncfs(2) of the file system holding fd: 0 or -errno. */
int us_syncfs(int fd);
/* Cap on files in flight; the walker lowers it to fit RLIMIT_NOFILE. */
void us_ring_set_max_inflight(struct us_ring *r, uint32_t n);

/* List `dirfd` (getdents64, a plain syscall) and lstat every entry with
 * the backend's STATX, many in flight.  Returns the number of entries or -errno. */
long us_scan_dir(struct us_ring *r, int dirfd, struct us_scan *sc);
/* Several directories at once: their listings (in threads when the disk is
 * involved), then the lstat of all their entries (inline when cached, else
 * the backend's STATX, many in flight).  rets[i] gets scans[i]'s entry count or
 * -errno; returns n, or -errno when the ring failed (-EINTR: stopped). */
long us_scan_dirs(struct us_ring *r, size_t n, const int *dirfds, struct us_scan **scans,
                  long *rets);
void us_scan_free(struct us_scan *sc);
/* sync: what differs between a source entry and its destination twin
 * (us_sync_match's diff[]) */
#define US_D_MISSING 1 /* no destination entry of that name */
#define US_D_TYPE 2    /* another type (nothing else is compared then) */
#define US_D_SIZE 4    /* regular files */
#define US_D_MTIME 8   /* seconds */
#define US_D_PERMS 16  /* mode & 07777 */
#define US_D_UID 32
#define US_D_GID 64
#define US_D_RDEV 128   /* devices' major, minor */
#define US_D_TARGET 256 /* symlinks' values */
#define US_D_XATTR 512  /* with US_P_XATTR: names or values (ACLs apart) */
#define US_D_ACL 1024   /* with US_P_ACL: the access ACL */
#define US_D_ERR 2048   /* a stat, readlink or xattr read failed on either side */
/* with US_F_CONTENT, regular files of one size: their data differ, or were
 * not compared by the scan (a read failed, more than one link, over
 * US_CONTENT_MAX bytes, or other bits set: the walker hashes them itself) */
#define US_D_DATA 4096
#define US_CONTENT_MAX 8388608
/* Match the entries of two scans of one directory by name (sorted, merged):
 * match[i] = the index in dst of src's entry i, or -1; diff[i] its US_D_*
 * bits; dst_matched[j] = 1 for each dst entry some src entry matched.
 * Symlink values are compared; xattrs/ACLs too when `flags` has US_P_XATTR /
 * US_P_ACL (a directory's default ACL included), for entries whose other
 * bits have none of `skip_xattr`.  Plain syscalls, nothing written.  Returns the
 * number matched, or -ENOMEM. */
long us_sync_match(const struct us_scan *src, const struct us_scan *dst, int src_dirfd,
                   int dst_dirfd, uint32_t flags, uint32_t skip_xattr, int32_t *match,
                   uint32_t *diff, uint8_t *dst_matched);
/* One source directory and its destination twin, for us_sync_scan.  The
 * caller sets src_fd and dst_fd (-1: no twin to list, every entry is
 * US_D_MISSING); the rest is filled in, in memory C owns (us_pairs_free). */
struct us_pair {
    int32_t src_fd, dst_fd;
    int64_t src_ret, dst_ret; /* entries listed, or -errno (dst: 0 without a twin) */
    struct us_scan src, dst;
    int32_t *match;       /* per source entry: its twin's index in dst, -1: none */
    uint32_t *diff;       /* per source entry: US_D_* */
    uint8_t *dst_matched; /* per destination entry: 1 when a source entry matched it */
    uint32_t *picked;     /* the source entries the walker must look at */
    uint32_t npicked;
    int32_t err; /* -ENOMEM: nothing was matched */
    /* With us_pick.descend: per source entry (nsub of them), a picked
     * subdirectory the scan went into and found changed, scanned already
     * (NULL: not scanned; the walker takes it and frees it, us_pair_free).
     * Subdirectories it found unchanged all through are not picked; their
     * entries (each counted once, the subdirectory's own included in its
     * parent's listing) and directories below are added up here. */
    struct us_pair **sub;
    uint32_t nsub;
    uint64_t clean_entries, clean_dirs;
};
/* Which entries the walker must look at: an entry with a stat error; one
 * whose type is in `always` (a bit per US_T_*); one whose diff has a bit of
 * mask[type]; with `nlink_reg`, a regular file with more than one link;
 * with `all`, every entry.  The rest are unchanged. */
struct us_pick {
    uint32_t mask[8];
    uint32_t always;
    uint32_t nlink_reg;
    uint32_t all;
    /* descend > 0: the scan goes on into picked subdirectories whose twin
     * is a directory, up to `descend` pairs open at once and `budget`
     * entries a call, and leaves out of `picked` those found unchanged all
     * through: nothing picked in them, every destination entry matched,
     * and none of `dir_mask`'s bits in their own diff.  Never into a source
     * directory whose device differs from (root_major, root_minor) when
     * `xdev`, nor into the one whose (dev, ino) is `avoid_*` (DST, met in
     * SRC).  Needs openat2 (RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS): before
     * Linux 5.6, or where it is refused, nothing is descended into. */
    uint32_t descend, budget, dir_mask, xdev;
    uint32_t root_major, root_minor, avoid_major, avoid_minor;
    uint64_t avoid_ino;
};
/* The sync walk's one call per group of directories: lists both sides of
 * every pair, lstats every entry (plain getdents64/statx: io_uring's STATX
 * only ever runs in its kernel workers), merges each pair by name as
 * us_sync_match does (symlink values, xattrs, ACLs compared per `flags`)
 * and picks what the walker must see.  All of it in a pool of threads kept
 * by the process: one per CPU while the data is cached, more while the
 * disk is read.  Each listing rewinds its fd and reads it through: no fd
 * may appear twice in a call, nor in two calls in flight at once.  Calls
 * may overlap (threads).  Returns n, or -EINTR when stopped, or -ENOMEM. */
long us_sync_scan(size_t n, struct us_pair *pairs, uint32_t flags, uint32_t skip_xattr,
                  const struct us_pick *pick);
void us_pairs_free(struct us_pair *pairs, size_t n);
/* Free a pair taken from a parent's `sub` and everything it holds. */
void us_pair_free(struct us_pair *pair);
/* Whether the last us_sync_scan read the disk (the walker then keeps more
 * groups in flight); a variable for the reason us_stop_flag is one. */
extern volatile int us_sync_cold_flag;
/* lstat one name relative to dirfd (statx, follow=0) or follow symlinks. */
int us_stat_at(int dirfd, const char *name, int follow, struct us_stat *st);

/* Copy `n` jobs with up to max_inflight of them in flight.  Per-job results
 * are in the jobs; returns the number of failed jobs, or -errno when the ring
 * itself failed. */
long us_run(struct us_ring *r, struct us_job *jobs, size_t n);

/* Apply owner, mode and times (as `flags` says) to an open fd, in cp's order:
 * owner, mode, times.  Returns 0 or -errno with *op set to the step. */
int us_set_meta_fd(int fd, const struct us_stat *st, uint32_t flags, uint32_t mode_mask, int *op);

/* A directory's metadata after its children, in cp's order: owner,
 * extended attributes (US_P_XATTR; src_fd < 0: none), mode, ACLs (US_P_ACL;
 * inherited ones the source lacks are removed), times.
 * Returns 0 or the first -errno with *op set to its step. */
int us_dir_meta(int src_fd, int dst_fd, const struct us_stat *st, uint32_t flags,
                uint32_t mode_mask, int *op);
/* US_T_META's work on open fds (a directory the walker holds): make dst_fd's
 * metadata match `st` and src_fd's xattrs/ACLs (src_fd < 0: those are left
 * alone); *changed gets US_CH_*.  0 or the first -errno with *op set. */
int us_meta_sync_fd(int src_fd, int dst_fd, const struct us_stat *st, uint32_t flags,
                    uint32_t mode_mask, uint32_t *changed, int *op);

/* Big files, split into US_T_RANGE jobs.  us_big_open opens the source
 * (checked to be the file `st` describes, whose size, mode, owner and times
 * it refreshes) and creates the destination (O_EXCL, never following).  fds[0], fds[1] get
 * them; `direct` asks for O_DIRECT on the source (1) and/or destination (2)
 * where the file systems take it; returns 1|2 for which ends got it, or
 * -errno with *op set.
 * us_big_finish copies bytes [tail_off, size) without O_DIRECT, then the
 * metadata in cp's order; the caller closes both fds. */
/* sync --delta of a big file (delta.c): the source opened (checked to be
 * `st`, which it refreshes) and the destination: with final_name, dst_name
 * made anew (O_EXCL, 0600) as a clone of final_name (FICLONE; where that
 * fails, -EOPNOTSUPP with *op US_OP_CLONE and nothing left behind: copy it
 * whole); without, dst_name itself opened to be written in place.  `direct`
 * as us_big_open's (1: the source, 2: the destination with O_DIRECT where
 * the file system takes it).  fds[0], fds[1] for US_T_RANGE jobs with
 * US_F_DELTA; returns which ends got O_DIRECT (1|2) or -errno with *op. */
int us_delta_open(int src_dirfd, const char *src_name, int dst_dirfd, const char *dst_name,
                  const char *final_name, struct us_stat *st, int direct, int *fds, int *op);
int us_big_open(int src_dirfd, const char *src_name, int dst_dirfd, const char *dst_name,
                struct us_stat *st, int direct, int *fds, int *op);
int us_big_finish(int sfd, int dfd, uint64_t tail_off, const struct us_stat *st, uint32_t flags,
                  uint32_t mode_mask, int *op);
/* A resumable big file (sync, resume.c): written under the temporary `tmp`
 * in dst_dirfd, with a record `rec` beside it of the ranges of `range_size`
 * bytes that are complete.  Opens the source as us_big_open does; then, when
 * `rec` describes this source (same inode, size, mtime and ctime), `name`,
 * `range_size` and the `tmp` that is there (its inode, and the same body_end),
 * opens both and sets done[k] = 1 for each range recorded complete;
 * otherwise removes both names and creates them afresh (O_EXCL, never
 * following), the record's header flushed before any range is recorded.
 * done has `ndone` bytes (at least size / range_size + 1).  fds[0..2] get
 * the source, the temporary and the record; *body_end the end of the part
 * copied in ranges (size, or size rounded down to 4096 when the temporary
 * got O_DIRECT: us_big_finish writes the rest).  Returns 1|2 as us_big_open,
 * | 4 when it resumes a record, or -errno with *op set. */
int us_big_resume(int src_dirfd, const char *src_name, int dst_dirfd, const char *tmp,
                  const char *rec, const char *name, struct us_stat *st, int direct,
                  uint64_t range_size, uint8_t *done, size_t ndone, int *fds, uint64_t *body_end,
                  int *op);
/* A resumable big file is complete (us_big_finish done, its fds closed):
 * `tmp` renamed over `final` (US_OP_RENAME), then its record removed. */
int us_big_commit(int dst_dirfd, const char *tmp, const char *final, const char *rec, int *op);

/* Bytes of memory a batch of `cap` jobs needs (names: `names_cap` bytes). */
size_t us_batch_size(uint32_t cap, uint64_t names_cap);
/* Lay a batch out in `mem` (us_batch_size bytes, the struct first). */
struct us_batch *us_batch_init(void *mem, uint32_t cap, uint64_t names_cap);
/* Append a job; names and stat are copied in (dst_name == src_name is
 * stored once).  Returns its index, or -ENOSPC when the batch is full. */
long us_batch_add(struct us_batch *b, int src_dirfd, const char *src_name, int dst_dirfd,
                  const char *dst_name, const struct us_stat *st, uint32_t type, uint32_t flags,
                  uint32_t mode_mask);
/* Give job `idx` a final name (copied in, as us_batch_add does): the copy
 * goes to its dst_name, then is renamed over `name`.  0, -EINVAL for an idx
 * not in the batch, or -ENOSPC when the names are full. */
long us_batch_set_final(struct us_batch *b, uint32_t idx, const char *name);
/* Replace the jobs' fds by indices into fds[] (the distinct fds, in order of
 * first use; an fd of -1 stays -1).  Returns how many, or -E2BIG when more than `max`. */
long us_batch_pack_fds(struct us_batch *b, int *fds, size_t max);
/* Indices back to fds (those received); -EBADF on an index out of range. */
int us_batch_bind_fds(struct us_batch *b, const int *fds, size_t n);

/* Stopping.  us_catch_stop(1, fd) makes SIGINT and SIGTERM set a flag (and
 * write a byte to `fd` if >= 0, to wake a poll); us_catch_stop(0, -1) puts
 * the previous handlers back.  With the flag set, us_run fails the jobs in
 * flight (US_OP_STOPPED; partial destinations unlinked), starts no more and
 * returns -EINTR; us_scan_dir returns -EINTR. */
int us_catch_stop(int on, int wake_fd);
int us_stop_requested(void);
/* The flag itself, read by Python as a variable: a call would let go of
 * the GIL, and taking it back can wait on the walker's other threads. */
extern volatile int us_stop_flag;
void us_clear_stop(void);
/* A worker: get SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG). */
int us_die_with_parent(void);
