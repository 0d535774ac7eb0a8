/* Extended attributes and POSIX ACLs (the xattrs system.posix_acl_*) with
 * plain syscalls: by fd, or by (dirfd, name) without following.  The order
 * they go in with the rest of the metadata is meta.c's.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The *xattrat syscalls (Linux 6.13) reach symlinks and special files by
 * (dirfd, name) without opening them.  Older kernels (or a seccomp filter)
 * answer ENOSYS: then the l*xattr calls on /proc/self/fd/<dirfd>/<name> do
 * the same (the directory is reached through its fd, the final symlink is
 * not followed).  Without a usable /proc, the by-name calls fail with
 * ENOSYS, which is reported (only an fd's ENOSYS means "no xattrs here"). */
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#endif
#ifndef SYS_getxattrat
#define SYS_getxattrat 464
#endif
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
#ifndef SYS_removexattrat
#define SYS_removexattrat 466
#endif

struct us_xattr_args {
    uint64_t value;
    uint32_t size;
    uint32_t flags;
};

static const char ACL_PREFIX[] = "system.posix_acl_";
static const char *const ACL_NAMES[2] = {"system.posix_acl_access", "system.posix_acl_default"};

bool is_acl(const char *name)
{
    return strncmp(name, ACL_PREFIX, sizeof ACL_PREFIX - 1) == 0;
}

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

/* Once per process (threads may race: they store the same values). */
static int xattrat_missing; /* 0 not probed, 1 the *xattrat syscalls are missing, -1 there */
static int proc_state;      /* /proc/self/fd: 0 not checked, 1 procfs, -1 not */

#define PROC_FD "/proc/self/fd/"
/* PROC_FD, an int, '/', a name (NAME_MAX bytes), NUL */
#define PROC_PATH_MAX (sizeof PROC_FD + 11 + 1 + NAME_MAX + 1)

/* Whether the *xattrat syscall's result `r` means "use the fallback"
 * (remembered, so later calls skip the syscall). */
static bool xattrat_enosys(long r)
{
    if (r < 0 && errno == ENOSYS) {
        __atomic_store_n(&xattrat_missing, 1, __ATOMIC_RELAXED);
        return true;
    }
    return false;
}

static bool use_fallback(void)
{
    int m = __atomic_load_n(&xattrat_missing, __ATOMIC_RELAXED);

    if (m == 0) {
        /* Probe once: the kernel lacks them (ENOSYS), or a seccomp filter
         * that predates them refuses them (EPERM, as older Docker profiles
         * answer unknown syscalls).  An EPERM on a real entry is the
         * kernel's answer for that entry, so it is only trusted here, on
         * "/", which every process may list. */
        long r = syscall(SYS_listxattrat, AT_FDCWD, "/", AT_SYMLINK_NOFOLLOW, NULL, 0);
        m = (r < 0 && (errno == ENOSYS || errno == EPERM)) ? 1 : -1;
        __atomic_store_n(&xattrat_missing, m, __ATOMIC_RELAXED);
    }
    return m > 0;
}

/* The path by which the l*xattr calls reach (dirfd, name), in `buf` or the
 * name itself; NULL with errno set (ENOSYS: /proc/self/fd is not procfs, so
 * no way is left to reach the entry without following or opening it). */
static const char *proc_path(struct target t, char buf[PROC_PATH_MAX])
{
    int st = __atomic_load_n(&proc_state, __ATOMIC_RELAXED);
    int n;

    if (t.fd == AT_FDCWD)
        return t.name;
    if (st == 0) {
        struct statfs sf;
        st = statfs(PROC_FD, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC ? 1 : -1;
        __atomic_store_n(&proc_state, st, __ATOMIC_RELAXED);
    }
    if (st < 0) {
        errno = ENOSYS;
        return NULL;
    }
    n = snprintf(buf, PROC_PATH_MAX, PROC_FD "%d/%s", t.fd, t.name);
    if (n < 0 || (size_t)n >= PROC_PATH_MAX) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return buf;
}

/* The kernel allocates (and clears) as many bytes as it is offered for
 * every list or get, 64 KiB here; names and values are mostly short, so
 * ask for X_FIRST bytes first and for all `n` only on ERANGE. */
#define X_FIRST 1024u

static ssize_t x_list_n(struct target t, char *buf, size_t n);
static ssize_t x_get_n(struct target t, const char *key, char *buf, size_t n);

static ssize_t x_list(struct target t, char *buf, size_t n)
{
    ssize_t r = x_list_n(t, buf, n < X_FIRST ? n : X_FIRST);

    return r < 0 && errno == ERANGE && n > X_FIRST ? x_list_n(t, buf, n) : r;
}

static ssize_t x_get(struct target t, const char *key, char *buf, size_t n)
{
    ssize_t r = x_get_n(t, key, buf, n < X_FIRST ? n : X_FIRST);

    return r < 0 && errno == ERANGE && n > X_FIRST ? x_get_n(t, key, buf, n) : r;
}

static ssize_t x_list_n(struct target t, char *buf, size_t n)
{
    char pbuf[PROC_PATH_MAX];
    const char *path;

    if (!t.name)
        return flistxattr(t.fd, buf, n);
    if (t.follow)
        return listxattr(t.name, buf, n);
    if (!use_fallback()) {
        ssize_t r = syscall(SYS_listxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, buf, n);
        if (!xattrat_enosys(r))
            return r;
    }
    path = proc_path(t, pbuf);
    return path ? llistxattr(path, buf, n) : -1;
}

static ssize_t x_get_n(struct target t, const char *key, char *buf, size_t n)
{
    struct us_xattr_args a = {(uint64_t)(uintptr_t)buf, (uint32_t)n, 0};
    char pbuf[PROC_PATH_MAX];
    const char *path;

    if (!t.name)
        return fgetxattr(t.fd, key, buf, n);
    if (t.follow)
        return getxattr(t.name, key, buf, n);
    if (!use_fallback()) {
        ssize_t r = syscall(SYS_getxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key, &a, sizeof a);
        if (!xattrat_enosys(r))
            return r;
    }
    path = proc_path(t, pbuf);
    return path ? lgetxattr(path, key, buf, n) : -1;
}

static int x_set(struct target t, const char *key, const char *val, size_t n)
{
    struct us_xattr_args a = {(uint64_t)(uintptr_t)val, (uint32_t)n, 0};
    char pbuf[PROC_PATH_MAX];
    const char *path;

    if (!t.name)
        return fsetxattr(t.fd, key, val, n, 0);
    if (t.follow)
        return setxattr(t.name, key, val, n, 0);
    if (!use_fallback()) {
        long r = syscall(SYS_setxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key, &a, sizeof a);
        if (!xattrat_enosys(r))
            return (int)r;
    }
    path = proc_path(t, pbuf);
    return path ? lsetxattr(path, key, val, n, 0) : -1;
}

static int x_remove(struct target t, const char *key)
{
    char pbuf[PROC_PATH_MAX];
    const char *path;

    if (!t.name)
        return fremovexattr(t.fd, key);
    if (t.follow)
        return removexattr(t.name, key);
    if (!use_fallback()) {
        long r = syscall(SYS_removexattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key);
        if (!xattrat_enosys(r))
            return (int)r;
    }
    path = proc_path(t, pbuf);
    return path ? lremovexattr(path, key) : -1;
}

/* Nothing to copy or clear: the file system has no xattrs.  ENOSYS counts
 * only by fd (as libattr's copy); by name it means no way was left. */
static bool no_xattr_support(struct target t, int e)
{
    return e == ENOTSUP || (e == ENOSYS && !t.name);
}

/* List the source's xattr names into buf (XATTR_MAX bytes); 0 when the
 * source's file system has none. */
ssize_t list_xattrs(struct target src, char *buf, struct meta *m)
{
    ssize_t n = x_list(src, buf, XATTR_MAX);

    if (n < 0) {
        if (!no_xattr_support(src, errno))
            note(m, -errno, US_OP_XATTR_LIST);
        return 0;
    }
    return n;
}

void copy_one_xattr(struct target src, struct target dst, const char *key, char *val,
                    struct meta *m)
{
    ssize_t v = x_get(src, key, val, XATTR_MAX);

    if (v < 0) {
        if (errno != ENODATA) /* ENODATA: removed meanwhile */
            note(m, -errno, US_OP_XATTR_GET);
        return;
    }
    if (x_set(dst, key, val, (size_t)v) < 0)
        note(m, -errno, US_OP_XATTR_SET);
}

/* Remove dst's `key`: gone already, or no xattrs there, is fine. */
static void remove_one(struct target dst, const char *key, struct meta *m)
{
    if (x_remove(dst, key) < 0 && errno != ENODATA && !no_xattr_support(dst, errno))
        note(m, -errno, US_OP_XATTR_SET);
}

static bool list_has(const char *list, ssize_t n, const char *name)
{
    for (ssize_t pos = 0; pos < n; pos += (ssize_t)strlen(list + pos) + 1)
        if (strcmp(list + pos, name) == 0)
            return true;
    return false;
}

/* POSIX ACLs (US_P_ACL), after the mode (a chmod rewrites an ACL's mask).
 * With `clear`, ACLs the destination inherited and the source lacks go. */
void copy_acls(struct target src, struct target dst, const char *list, ssize_t n, char *val,
               bool is_dir, bool clear, struct meta *m)
{
    for (int k = 0; k < (is_dir ? 2 : 1); k++) {
        if (list_has(list, n, ACL_NAMES[k]))
            copy_one_xattr(src, dst, ACL_NAMES[k], val, m);
        else if (clear)
            remove_one(dst, ACL_NAMES[k], m);
    }
}

/* ---------------------------------------------------- making dst match
 * US_T_META and us_meta_sync_fd: compare each name's value on both sides,
 * set what differs, remove what the source lacks. */

/* Make dst's `key` src's (src_has: the source listed it), absent included.
 * sval, dval: XATTR_MAX bytes each.  true when the two differed. */
static bool match_one(struct target src, struct target dst, const char *key, bool src_has,
                      char *sval, char *dval, bool dry, struct meta *m)
{
    ssize_t sv = -1, dv;
    int derr;

    if (src_has && (sv = x_get(src, key, sval, XATTR_MAX)) < 0 && errno != ENODATA) {
        note(m, -errno, US_OP_XATTR_GET);
        return false;
    }
    dv = x_get(dst, key, dval, XATTR_MAX);
    derr = dv < 0 ? errno : 0;
    if (sv < 0) {
        /* the source has none (ENODATA: removed meanwhile) */
        if (derr == ENODATA || (derr && no_xattr_support(dst, derr)))
            return false;
        if (!dry)
            remove_one(dst, key, m);
        return true;
    }
    if (dv == sv && memcmp(sval, dval, (size_t)sv) == 0)
        return false;
    if (!dry && x_set(dst, key, sval, (size_t)sv) < 0)
        note(m, -errno, US_OP_XATTR_SET);
    return true;
}

bool match_xattrs(struct target src, struct target dst, const char *list, ssize_t n, char *buf,
                  bool dry, struct meta *m)
{
    char *dlist = buf, *sval = buf + XATTR_MAX, *dval = buf + 2 * XATTR_MAX;
    ssize_t dn = x_list(dst, dlist, XATTR_MAX);
    bool changed = false;

    if (dn < 0) {
        if (!no_xattr_support(dst, errno)) {
            note(m, -errno, US_OP_XATTR_LIST);
            return false;
        }
        dn = 0; /* none there: the source's, if any, fail to set */
    }
    for (ssize_t pos = 0; pos < n; pos += (ssize_t)strlen(list + pos) + 1)
        if (!is_acl(list + pos))
            changed |= match_one(src, dst, list + pos, true, sval, dval, dry, m);
    for (ssize_t pos = 0; pos < dn; pos += (ssize_t)strlen(dlist + pos) + 1)
        if (!is_acl(dlist + pos) && !list_has(list, n, dlist + pos)) {
            changed = true;
            if (!dry)
                remove_one(dst, dlist + pos, m);
        }
    return changed;
}

bool match_acls(struct target src, struct target dst, const char *list, ssize_t n, char *buf,
                bool is_dir, bool dry, struct meta *m)
{
    bool changed = false;

    for (int k = 0; k < (is_dir ? 2 : 1); k++)
        changed |= match_one(src, dst, ACL_NAMES[k], list_has(list, n, ACL_NAMES[k]),
                             buf + XATTR_MAX, buf + 2 * XATTR_MAX, dry, m);
    return changed;
}

/* The group-class bits a mode would show for `t` without its ACL mask:
 * the ACL_GROUP_OBJ entry's permissions when `t` has an extended access
 * ACL (one with a mask, whose bits st_mode shows instead), else -1.  rsync
 * -A compares modes that way (sync's match). */
int acl_group_obj(struct target t)
{
    unsigned char buf[4096];
    ssize_t n = x_get(t, ACL_NAMES[0], (char *)buf, sizeof buf);
    int group_obj = -1;
    bool mask = false;

    if (n < 4)
        return -1;
    for (ssize_t off = 4; off + 8 <= n; off += 8) {
        uint16_t tag, perm;

        memcpy(&tag, buf + off, 2);
        memcpy(&perm, buf + off + 2, 2);
        if (tag == 0x04) /* ACL_GROUP_OBJ */
            group_obj = perm & 7;
        else if (tag == 0x10) /* ACL_MASK */
            mask = true;
    }
    return mask ? group_obj : -1;
}
