"""Removing folder trees an entry may have made hostile: thousands of levels deep, folders without any permission
(chmod 000), read-only files, names that are not UTF-8 or as long as the file system allows.

``shutil.rmtree`` recurses once per level (Python's recursion limit stops it near 1,000 levels, with a
``RecursionError`` that is not an ``OSError``) and gives up on folders it may not enter. Here the tree is walked
with one open folder at a time and a list of names per level, by file descriptor (no path grows with the depth),
giving the owner back its rights on each folder on the way down. Only the stdlib: the sandbox's server uses it.
Call it once nothing writes into the tree any more (every process of the entry killed).
"""

from __future__ import annotations

import contextlib
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _clear_level(fd: int, keep: frozenset[str] = frozenset(), own: bool = True) -> tuple[list[str], bool]:
    """Unlink every non-folder in the open folder ``fd`` but the names in ``keep``; its subfolders' names, and
    whether everything went. ``own``: first give the owner back its rights on the folder (fchmod: enter, list and
    unlink in it, whatever its mode); the top folder keeps its mode (it is the caller's: a folder shared with the
    sandbox keeps the mode that lets the entries' user in)."""
    if own:
        with contextlib.suppress(OSError):
            os.chmod(fd, 0o700)
    folders, ok = [], True
    try:
        with os.scandir(fd) as items:
            for item in items:
                if item.name in keep:
                    continue
                try:
                    if item.is_dir(follow_symlinks=False):
                        folders.append(item.name)
                    else:
                        os.unlink(item.name, dir_fd=fd)
                except OSError:
                    ok = False
    except OSError:
        ok = False
    return folders, ok


def empty(folder: str | os.PathLike, keep: frozenset[str] = frozenset()) -> bool:
    """Remove everything inside ``folder`` except the top-level names in ``keep``; True when nothing else is left.

    Never follows a symbolic link (a link is removed, not its target) and never raises for what it finds."""
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except OSError:
        return False
    ok = True
    try:
        top, level_ok = _clear_level(fd, keep, own=False)
        ok &= level_ok
        stack: list[tuple[str | None, list[str]]] = [(None, top)]
        while stack:
            name, pending = stack[-1]
            if pending:
                sub = pending.pop()
                with contextlib.suppress(OSError):
                    os.chmod(sub, 0o700, dir_fd=fd)  # a folder (nothing runs that could swap it for a link)
                try:
                    child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    ok = False
                    continue
                os.close(fd)
                fd = child
                folders, level_ok = _clear_level(fd)
                ok &= level_ok
                stack.append((sub, folders))
                continue
            stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                ok = False
    except OSError:
        ok = False
    finally:
        os.close(fd)
    try:
        return ok and not (set(os.listdir(folder)) - keep)
    except OSError:
        return False


def remove(folder: str | os.PathLike) -> bool:
    """Remove ``folder`` and everything in it (a link in its place is removed, never followed); True when gone."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(folder)
            return True
        empty(folder)
        os.rmdir(folder)
        return True
    except OSError:
        return False
