"""The bubblewrap command line that starts the sandbox's fork server, and what it mounts.

Inside, an entry sees only the system libraries and the Python environment (read-only), the harness package,
its own folder, its image files, a private writable ``/out`` and a small ``/tmp``; no network.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
from pathlib import Path

from harness.isolation.inside.sandbox_server import ENTRIES, INPUTS, OUT

TMP_BYTES = 256 * 1024 ** 2  # size of the sandbox's /tmp
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/ld.so.conf",
                "/etc/ld.so.conf.d", "/etc/localtime")
PASSED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "LANG", "LC_ALL")
HARNESS_DIR = Path(__file__).resolve().parents[1]  # the whole harness package
STAND_IN_UID = 1000  # who entries are inside when root runs the non-root layout
GPU_DEVICE = re.compile(r"/dev/nvidia(\d+|ctl|-uvm|-uvm-tools|-modeset)")  # what CUDA opens, and nothing else


def gpu_devices() -> list[str]:
    """The NVIDIA device files present on this machine."""
    return sorted(glob.glob("/dev/nvidia*"))


def gpu_binds(device: str, present: list[str]) -> list[str]:
    """The bwrap arguments that let an entry on ``device`` reach the GPU: for "cuda", the GPUs and the control,
    unified-memory and mode-setting devices among the /dev entries ``present`` (others such as nvidia-caps stay
    out), then /sys read-only (CUDA reads the PCI topology there); for "cpu", nothing."""
    if device != "cuda":
        return []
    args = []
    for dev in sorted(present):
        if GPU_DEVICE.fullmatch(dev):
            args += ["--dev-bind", dev, dev]
    return args + (["--ro-bind", "/sys", "/sys"] if args else [])


def python_paths() -> list[str]:
    """The Python installation and environment, without nested duplicates."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent.parent]
    paths = sorted({p.resolve() for p in paths if p.exists()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in paths:
        if not any(p.is_relative_to(k) for k in kept) and not p.is_relative_to("/usr"):
            kept.append(p)
    return [str(p) for p in kept]


def command(root: Path, as_root: bool, device: str = "cpu",
            module: str = "harness.isolation.inside.sandbox_server") -> list[str]:
    """The bwrap command line that starts ``module`` (the fork server, or one warm entry:
    ``harness.isolation.inside.warm_server``) with ``root``'s entries/, in/ and out/ mounted, and the GPU only when
    entries run on ``device`` "cuda"."""
    args = [shutil.which("bwrap") or "bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
    if as_root:  # stay in the host's user namespace so that the child can drop to a real unprivileged uid
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user"]
        if os.getuid() == 0:  # root asking for the non-root layout (tests): an ordinary user inside, as there
            args += ["--uid", str(STAND_IN_UID), "--gid", str(STAND_IN_UID)]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    # /tmp first, so that a checkout or venv that lives under /tmp is bound on top of it instead of hidden
    args += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    binds = python_paths() + [str(HARNESS_DIR)]
    parents = sorted({str(p) for b in binds for p in Path(b).parents if str(p) != "/"}, key=len)
    for path in parents:  # readable and passable by the entry, writable by nobody (bwrap would make them 0700)
        if not os.path.islink(path):
            args += ["--perms", "0555", "--dir", path]
    for path in binds:
        args += ["--ro-bind", path, path]
    args += ["--dev", "/dev", "--proc", "/proc"]
    args += gpu_binds(device, gpu_devices())
    args += ["--ro-bind", str(root / "entries"), ENTRIES, "--ro-bind", str(root / "in"), INPUTS,
             "--bind", str(root / "out"), OUT, "--chdir", OUT,
             "--remount-ro", "/",  # the sandbox's own root: as a non-root caller, the entry's user would own it
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "USER", "entry",
             "--setenv", "PYTHONPATH", str(HARNESS_DIR.parent), "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    for name in PASSED_ENV:
        if name in os.environ:
            args += ["--setenv", name, os.environ[name]]
    return args + ["--", sys.executable, "-P", "-m", module]
