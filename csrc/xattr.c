/* Extended attributes and POSIX ACLs (the xattrs system.posix_acl_*) with
 * plain syscalls: by fd, or by (dirfd, name) without following.  The order
 * they go in with the rest of the metadata is meta.c's.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The *xattrat syscalls (Linux 6.13) reach symlinks and special files by
 * (dirfd, name) without opening them; older kernels answer ENOSYS and such
 * entries then keep no xattrs. */
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

static ssize_t x_list(struct target t, char *buf, size_t n)
{
    if (!t.name)
        return flistxattr(t.fd, buf, n);
    return syscall(SYS_listxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, buf, n);
}

static ssize_t x_get(struct target t, const char *key, char *buf, size_t n)
{
    struct us_xattr_args a = {(uint64_t)(uintptr_t)buf, (uint32_t)n, 0};

    if (!t.name)
        return fgetxattr(t.fd, key, buf, n);
    return syscall(SYS_getxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key, &a, sizeof a);
}

static int x_set(struct target t, const char *key, const char *val, size_t n)
{
    struct us_xattr_args a = {(uint64_t)(uintptr_t)val, (uint32_t)n, 0};

    if (!t.name)
        return fsetxattr(t.fd, key, val, n, 0);
    return (int)syscall(SYS_setxattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key, &a, sizeof a);
}

static int x_remove(struct target t, const char *key)
{
    if (!t.name)
        return fremovexattr(t.fd, key);
    return (int)syscall(SYS_removexattrat, t.fd, t.name, AT_SYMLINK_NOFOLLOW, key);
}

static bool no_xattr_support(int e)
{
    return e == ENOTSUP || e == ENOSYS;
}

/* List the source's xattr names into buf (XATTR_MAX bytes); 0 when the
 * source's file system has none. */
ssize_t list_xattrs(struct target src, char *buf, struct meta *m)
{
    ssize_t n = x_list(src, buf, XATTR_MAX);

    if (n < 0) {
        if (!no_xattr_support(errno))
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
        else if (clear && x_remove(dst, ACL_NAMES[k]) < 0 && errno != ENODATA &&
                 !no_xattr_support(errno))
            note(m, -errno, US_OP_XATTR_SET);
    }
}
