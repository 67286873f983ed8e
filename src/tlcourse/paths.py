"""Paths a learner passes: regular files only, and one clear line for anything else (folders, pipes, devices)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "not a regular file (FIFO, a named pipe)"),
    (stat.S_ISCHR, "not a regular file (character device)"),
    (stat.S_ISBLK, "not a regular file (block device)"),
    (stat.S_ISSOCK, "not a regular file (socket)"),
)


def describe_mode(mode: int) -> str | None:
    """What a non-regular ``st_mode`` is, in words; None for a regular file."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return None if stat.S_ISREG(mode) else "not a regular file"


def stat_regular(path: Path, error: type[Exception], noun: str) -> os.stat_result:
    """``os.stat`` of an existing regular file, or ``error`` saying what ``path`` is instead.

    ``noun`` names the file wanted, with its article ("an image file", "a checkpoint").
    Never opens the path, so a FIFO cannot block and a device is never read.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"{path}: {_missing(path, e, noun)}") from None
    what = describe_mode(st.st_mode)
    if what == "a folder":
        raise error(f"{path}: is a folder, not {noun}; pass a file inside it")
    if what:
        raise error(f"{path}: {what}; pass {noun} (a regular file)")
    if st.st_size == 0 and _is_pseudo_file(path):
        raise error(f"{path}: not a regular file (a kernel pseudo-file under /proc or /sys); pass {noun}")
    return st


def read_regular(path: Path, error: type[Exception], noun: str, max_bytes: int) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (refused beyond, after reading one byte more)."""
    stat_regular(path, error, noun)
    try:
        # O_NONBLOCK: if the path became a FIFO since stat_regular, open() returns instead of waiting.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            what = describe_mode(os.fstat(f.fileno()).st_mode)
            if what:
                raise error(f"{path}: {what}; pass {noun} (a regular file)")
            data = f.read(max_bytes + 1)
    except OSError as e:  # permission denied, I/O error on a failing disk or network share
        raise error(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None
    if len(data) > max_bytes:
        raise error(f"{path}: larger than the {max_bytes / 1e6:,.0f} MB limit for {noun}; shrink it first")
    return data


def _missing(path: Path, e: OSError, noun: str) -> str:
    if e.errno == errno.ELOOP:
        return "a symlink loop (the link points, directly or not, at itself); fix or remove the link"
    if e.errno == errno.ENOENT:
        hint = " (a broken link)" if path.is_symlink() else ""
        return f"no such {noun.split(' ', 1)[-1]}{hint}; check the path (relative paths start at {Path.cwd()})"
    if e.errno == errno.ENOTDIR:
        return f"no such {noun.split(' ', 1)[-1]}: a part of the path is a file, not a folder"
    return f"cannot be read ({e.strerror or e}); check its permissions"


def _is_pseudo_file(path: Path) -> bool:
    """A /proc or /sys entry: reported as a regular file of 0 bytes, but reading it yields data."""
    try:
        return Path(path).resolve().parts[1:2] in (("proc",), ("sys",))
    except (OSError, RuntimeError):
        return False


def check_destination(path: Path, error: type[Exception]) -> Path:
    """The file a save to ``path`` really replaces: ``path``, or the regular file a symlink points to.

    Refuses, before any work is done, a destination that exists and is not a regular file (a folder,
    /dev/null, a FIFO...), a dangling or looping symlink, and a folder that cannot be written in.
    Folders that do not exist yet are fine: the save creates them.
    """
    path = Path(path).expanduser()
    target = path
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            raise error(
                f"{path}: a symlink to {os.readlink(path)}, which does not exist; fix the link or save to another path"
            ) from None
        except (RuntimeError, OSError):  # RuntimeError before Python 3.13
            raise error(f"{path}: a symlink loop; fix or remove the link, or save to another path") from None
    try:
        what = describe_mode(os.stat(target).st_mode)
    except FileNotFoundError:
        what = None
    except OSError as e:
        raise error(f"{path}: {_missing(path, e, 'a file')}") from None
    if what == "a folder":
        raise error(f"{path}: is a folder; name a file to save to, e.g. {path / 'model.pt'}")
    if what:
        raise error(f"{path}: {what}; saving would replace it, so name a regular file to save to")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise error(f"{path}: {folder} is a file, not a folder; save somewhere else")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"{path}: cannot write in {folder} (permission denied); save to a folder you can write to")
    return target


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` (or what it wraps: ``torch.save`` re-raises a failed write as RuntimeError) is a full disk."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_message(path: Path, needed: int | None) -> str:
    """One line for a save that ran out of space: where, about how much it needs, what is free."""
    parts = [f"needs about {needed / 1e6:,.1f} MB"] if needed else []
    try:
        parts.append(f"{shutil.disk_usage(path.parent).free / 1e6:,.1f} MB free")
    except OSError:
        pass
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{path}: no space left on {path.parent}{detail}; free some space or save elsewhere"
