"""Imported only by the fork server of unsandboxed entries: it becomes the adopter of every process an entry
leaves behind (a double-forked daemon included), so that the harness can find and kill them all at the entry's
end instead of losing them to init."""

from __future__ import annotations

import ctypes
import warnings

PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Make this process the subreaper of its descendants (Linux); False where that is not possible."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# The fork server reaps the adopted processes too and would warn about each pid it did not start.
warnings.filterwarnings("ignore", message="forkserver: waitpid returned unexpected pid")
adopt_orphans()
