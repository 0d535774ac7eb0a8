"""Support code for the uringsync tests, by role:

- base: bytes paths (`b`, `p`), open flags, root/nobody, `root_only`, sizes and times
- trees: building source trees (files, times, sparse files, sockets)
- compare: snapshots, `assert_same_tree`, `copy_both` (uringsync vs cp), rsync,
  getfacl/getfattr dumps, hard-link groups, data extents, file hashes
- cli: running the CLI and cp, checking stderr lines
- users: running as another user or in a forked child, `api_copy`, world-usable tmp dirs
- system: mounts (tmpfs, ramfs, loop file systems), commands that must succeed, fd counts
- sandbox: running a command under a seccomp filter (chosen syscalls fail with a chosen errno)
"""
