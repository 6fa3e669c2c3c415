"""What the file system under a store or a checkpoint can do: network file systems (where
SQLite's WAL mode must not be used), SQLite's file header, and a checkpoint file's content
identity.

* :func:`filesystem_type` reads the mount table (``/proc/self/mounts`` on Linux) and returns
  the type of the file system holding a path; :func:`network_filesystem` says whether that type
  is a network or cluster file system (NFS, Lustre, GPFS, CIFS, CephFS, BeeGFS, sshfs...). SQLite
  WAL needs shared memory between the processes using a database, which such file systems do
  not provide: a store there uses a rollback journal instead (see :mod:`.connection`).
* :func:`is_sqlite_file` checks the 16-byte header ``SQLite format 3\\0``: a file that has some
  bytes but not that header is refused, never overwritten.
* :func:`content_identity` names a checkpoint file by what it holds rather than where it lies:
  its size, its modification time (whole seconds) and a BLAKE2b hash of its first and last
  64 KiB (a torch zip ends with its central directory, which holds a CRC-32 of every tensor; a
  safetensors file starts with its header). Moving or renaming a swept folder keeps every
  identity, so a second sweep skips what is already stored.

May import: the standard library.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "a.bin").write_bytes(b"weights")
    7
    >>> content_identity(folder / "a.bin").startswith("7:")
    True
"""

from __future__ import annotations

import hashlib
import os
from os import PathLike
from pathlib import Path

__all__ = [
    "NETWORK_FILESYSTEMS",
    "content_identity",
    "filesystem_type",
    "is_sqlite_file",
    "network_filesystem",
]

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "ceph",
        "fuse.ceph",
        "beegfs",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "sshfs",
        "9p",
        "afs",
        "panfs",
        "wekafs",
        "orangefs",
        "pvfs2",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.juicefs",
        "fuse.rclone",
    }
)
"""File-system types (as the mount table names them) on which SQLite WAL is not used."""

_MOUNTS = "/proc/self/mounts"
_SQLITE_HEADER = b"SQLite format 3\x00"
_IDENTITY_BYTES = 64 * 1024


def _unescape(field: str) -> str:
    """Mount-table fields escape space, tab, newline and backslash as octal (``\\040``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the file system holding ``path`` (``"ext4"``, ``"nfs4"``...), or None when
    the mount table cannot be read (not Linux).

    ``mounts`` is the mount table's text (default: read ``/proc/self/mounts``).

    Example:
        >>> table = "/dev/sda1 / ext4 rw 0 0\\nserver:/home /home nfs4 rw 0 0\\n"
        >>> filesystem_type("/home/me/runs.sqlite", table), filesystem_type("/tmp", table)
        ('nfs4', 'ext4')
    """
    if mounts is None:
        try:
            with open(_MOUNTS, encoding="utf-8", errors="replace") as handle:
                mounts = handle.read()
        except OSError:
            return None
    target = os.path.abspath(os.fspath(path))
    best, found = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1]).rstrip("/") or "/"
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, found = len(point), fields[2]
    return found


def network_filesystem(path: str | PathLike[str]) -> str | None:
    """The file-system type when ``path`` lies on a network or cluster file system (where
    SQLite WAL must not be used), else None.

    Example:
        >>> network_filesystem("/proc/self") is None
        True
    """
    kind = filesystem_type(path)
    return kind if kind is not None and kind.lower() in NETWORK_FILESYSTEMS else None


def is_sqlite_file(path: str | PathLike[str]) -> bool:
    """Whether the file starts with SQLite's header (an empty file does not)."""
    with open(path, "rb") as handle:
        return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def content_identity(path: str | PathLike[str]) -> str:
    """``"<size>:<mtime seconds>:<hash>"`` of a file: the same after a move or a rename.

    Raises:
        OSError: the file cannot be read (missing, a symlink loop, no permission).
    """
    file = Path(path)
    stat = file.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(file, "rb") as handle:
        digest.update(handle.read(_IDENTITY_BYTES))
        if stat.st_size > 2 * _IDENTITY_BYTES:
            handle.seek(-_IDENTITY_BYTES, os.SEEK_END)
            digest.update(handle.read(_IDENTITY_BYTES))
        elif stat.st_size > _IDENTITY_BYTES:
            digest.update(handle.read())
    return f"{stat.st_size}:{int(stat.st_mtime)}:{digest.hexdigest()}"
