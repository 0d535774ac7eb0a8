/* struct us_stat from statx (the scan) and fstat (a file once open), and
 * the lstat and statfs the walker asks for. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

static uint32_t type_of(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return US_T_REG;
    case S_IFDIR: return US_T_DIR;
    case S_IFLNK: return US_T_LNK;
    case S_IFIFO: return US_T_FIFO;
    case S_IFCHR: return US_T_CHR;
    case S_IFBLK: return US_T_BLK;
    case S_IFSOCK: return US_T_SOCK;
    default: return US_T_UNKNOWN;
    }
}

void fill_stat(struct us_stat *o, const struct statx *x)
{
    o->ino = x->stx_ino;
    o->size = x->stx_size;
    o->blocks = x->stx_blocks;
    o->dev_major = x->stx_dev_major;
    o->dev_minor = x->stx_dev_minor;
    o->rdev_major = x->stx_rdev_major;
    o->rdev_minor = x->stx_rdev_minor;
    o->mode = x->stx_mode;
    o->uid = x->stx_uid;
    o->gid = x->stx_gid;
    o->nlink = x->stx_nlink;
    o->atime_sec = x->stx_atime.tv_sec;
    o->atime_nsec = x->stx_atime.tv_nsec;
    o->mtime_sec = x->stx_mtime.tv_sec;
    o->mtime_nsec = x->stx_mtime.tv_nsec;
    o->ctime_sec = x->stx_ctime.tv_sec;
    o->ctime_nsec = x->stx_ctime.tv_nsec;
    o->type = type_of(x->stx_mode);
}

/* What an open file's fstat says now: size, blocks, owner, mode, times. */
void stat_from(struct us_stat *st, const struct stat *sb)
{
    st->size = (uint64_t)sb->st_size;
    st->blocks = (uint64_t)sb->st_blocks;
    st->mode = sb->st_mode;
    st->uid = sb->st_uid;
    st->gid = sb->st_gid;
    st->nlink = (uint32_t)sb->st_nlink;
    st->atime_sec = sb->st_atim.tv_sec;
    st->atime_nsec = (uint32_t)sb->st_atim.tv_nsec;
    st->mtime_sec = sb->st_mtim.tv_sec;
    st->mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
}

/* The open file is the regular file the scan listed (not replaced since). */
bool same_inode(const struct stat *sb, const struct us_stat *st)
{
    return sb->st_ino == st->ino && major(sb->st_dev) == st->dev_major &&
           minor(sb->st_dev) == st->dev_minor && S_ISREG(sb->st_mode);
}

int us_stat_at(int dirfd, const char *name, int follow, struct us_stat *st)
{
    struct statx x;
    int fl = AT_NO_AUTOMOUNT | (follow ? 0 : AT_SYMLINK_NOFOLLOW);

    if (name[0] == '\0')
        fl |= AT_EMPTY_PATH;
    if (statx(dirfd, name, fl, STATX_BASIC_STATS, &x) < 0)
        return -errno;
    fill_stat(st, &x);
    return 0;
}

int us_fs_type(int fd, uint64_t *magic)
{
    struct statfs sf;

    if (fstatfs(fd, &sf) < 0)
        return -errno;
    *magic = (uint64_t)sf.f_type;
    return 0;
}

int us_syncfs(int fd)
{
    return syncfs(fd) < 0 ? -errno : 0;
}
