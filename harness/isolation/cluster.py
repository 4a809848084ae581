"""Running entries on a Dask cluster: the same front door, ``predict``, on another machine's worker.

The host keeps everything else (discovery, versions, claims, scoring, storing). For each entry it sends a worker the
entry's files as bytes (no shared filesystem is needed, and a retry on another worker needs them in the task) and
the images, scattered to every worker once in blocks of rows (``BLOCK_ROWS``, keyed by their content); the worker
joins the blocks back into each set, writes the files into a private folder, checks that they hash to the version
the host described, and runs them through ``harness.isolation.predict`` with the same ``Limits``. The host gets the
``Prediction`` back. A worker that dies while running an entry: the scheduler gives the entry to another worker once
(``ALLOWED_FAILURES``), then it fails with one sentence.

Addresses (``local:N``, ``tcp://HOST:8786``, ``tls://HOST:8786`` with ``$LEADERBOARD_CLUSTER_TLS_DIR``), security
and figures: docs/cluster.md.

``distributed`` is an optional dependency (``pip install -e '.[cluster]'``): imported only when a cluster is asked for.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.common.tempfolders import temp_folder
from harness.contract import DIGITS, Interface
from harness.entries.discovery import EntryFolder, entry_files, load_entry, read_chunks
from harness.errors import HarnessError
from harness.isolation.prediction import Limits, Prediction, predict
from harness.isolation.process import Progress

ENV_ADDRESS = "LEADERBOARD_CLUSTER"             # the default for --cluster
ENV_TLS_DIR = "LEADERBOARD_CLUSTER_TLS_DIR"     # ca.pem, cert.pem and key.pem for a tls:// scheduler
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
ALLOWED_FAILURES = 1     # an entry whose worker died is given to another worker this many times, then fails
CONNECT_SECONDS = 30.0   # how long to wait for a scheduler, or for a LocalCluster's workers to start
LOCAL_WORKERS_MAX = 64
RESULT_MARGIN = 120.0    # seconds beyond the entry's time limit (each attempt) before the host stops waiting
# What every worker needs (set for a LocalCluster here; a club's workers get it from the environment, see
# docs/cluster.md): the entry's process is a child of the worker process, which a daemonic process may not have.
WORKER_CONFIG = {"distributed.worker.daemon": False,
                 "distributed.scheduler.allowed-failures": ALLOWED_FAILURES}
_LOCAL = re.compile(r"local:(\d+)")
BLOCK_ROWS = 1024        # images per scattered block (784 KiB of 28×28 uint8)
KEPT_CALLS = 4           # the blocks of this many recent calls stay on the workers (the shared sets, in practice)

# A test hook: a worker that finds a file named after the entry in this folder kills its own process before running
# the entry, as many times as the file says. Only the tests set it.
_KILL_MARKER_ENV = "LEADERBOARD_CLUSTER_TEST_KILLS"


def address_problem(address: str) -> str | None:
    """One sentence when ``address`` is not a cluster address this harness understands."""
    local = _LOCAL.fullmatch(address)
    if local:
        n = int(local.group(1))
        return None if 1 <= n <= LOCAL_WORKERS_MAX else \
            f"--cluster local:{n} asks for {n} workers; use between 1 and {LOCAL_WORKERS_MAX}."
    if re.fullmatch(r"(tcp|tls)://[^\s/:]+(:\d+)?", address):
        return None
    return (f"--cluster {address!r} is not a cluster address; use local:N (N worker processes on this machine), "
            "tcp://HOST:8786 (a running Dask scheduler) or tls://HOST:8786 (the same over TLS).")


def security(tls_dir: str | None):
    """Dask's TLS settings from the folder holding ca.pem, cert.pem and key.pem (HarnessError when one is missing)."""
    from distributed.security import Security
    if not tls_dir:
        raise HarnessError(f"a tls:// cluster needs its certificates: set ${ENV_TLS_DIR} to a folder holding "
                           f"{', '.join(TLS_FILES)} (see docs/cluster.md).")
    folder = Path(tls_dir)
    missing = [name for name in TLS_FILES if not (folder / name).is_file()]
    if missing:
        raise HarnessError(f"${ENV_TLS_DIR} ({folder}) lacks {', '.join(missing)}; put the cluster's CA certificate "
                           "in ca.pem and this machine's certificate and key in cert.pem and key.pem.")
    return Security(tls_ca_file=str(folder / "ca.pem"), tls_client_cert=str(folder / "cert.pem"),
                    tls_client_key=str(folder / "key.pem"), require_encryption=True)


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise HarnessError("--cluster needs Dask's distributed package; install it with pip install -e '.[cluster]' "
                           "(or pip install distributed).") from exc
    return distributed


class Cluster:
    """A connected Dask client: ``predict`` runs one entry on some worker (same arguments as the front door's)."""

    def __init__(self, client, tries: int = ALLOWED_FAILURES + 1):
        self.client = client
        self.tries = tries  # how many workers may die on one entry before it fails: the scheduler's setting, plus one
        self._blocks: dict[str, object] = {}      # block digest -> its future, on every worker
        self._recent: list[set[str]] = []         # the digests each recent call used, newest last
        self._blocks_lock = threading.Lock()
        self.scattered_bytes = 0                  # bytes of images scattered so far (each block once)

    def _forget_blocks(self) -> None:
        """Drop every scattered block (one was lost with a worker): the next call scatters them again."""
        with self._blocks_lock:
            for future in self._blocks.values():
                future.release()
            self._blocks, self._recent = {}, []

    def _scattered(self, images: dict[str, np.ndarray]) -> dict[str, list]:
        """{set: [its blocks' futures]}: each block of ``BLOCK_ROWS`` images scattered to every worker the first
        time it is seen (by content), kept while one of the last ``KEPT_CALLS`` calls used it."""
        with self._blocks_lock:
            used, out = set(), {}
            for kind, array in images.items():
                futures = []
                for start in range(0, max(len(array), 1), BLOCK_ROWS):
                    block = np.ascontiguousarray(array[start:start + BLOCK_ROWS])
                    digest = hashlib.sha256(repr((block.dtype.str, block.shape)).encode() + block.tobytes()).hexdigest()
                    if digest not in self._blocks:
                        self._blocks[digest] = self.client.scatter(block, broadcast=True, hash=False)
                        self.scattered_bytes += block.nbytes
                    futures.append(self._blocks[digest])
                    used.add(digest)
                out[kind] = futures
            self._recent = (self._recent + [used])[-KEPT_CALLS:]
            kept = set().union(*self._recent)
            for digest in [d for d in self._blocks if d not in kept]:
                self._blocks.pop(digest).release()
            return out

    @property
    def width(self) -> int:
        """How many entries can run at once: the workers' threads (at least one)."""
        return max(1, sum(self.client.nthreads().values()))

    def resolve_device(self, requested: str) -> str:
        """"auto" becomes "cuda" when a worker sees a GPU (asked on the workers, never on this host), else "cpu"."""
        if requested != "auto":
            return requested
        from harness.isolation.prediction import resolve_device
        seen = self.client.run(resolve_device, "auto")
        return "cuda" if "cuda" in seen.values() else "cpu"

    def _resources(self, device: str) -> dict[str, float] | None:
        """On cuda, ask for a worker started with ``--resources GPU=1`` when the cluster has one."""
        if device != "cuda":
            return None
        info = self.client.scheduler_info(n_workers=-1) if _takes_n_workers(self.client) else \
            self.client.scheduler_info()
        has_gpu = any("GPU" in (w.get("resources") or {}) for w in info.get("workers", {}).values())
        return {"GPU": 1} if has_gpu else None

    def predict(self, entry: EntryFolder, images: dict[str, np.ndarray], limits: Limits, *,
                preload_torchvision: bool = False,
                on_progress: Callable[[Progress], None] | None = None, secret: bool = False,
                while_loading: Callable[[], None] | None = None) -> Prediction:
        """Run ``entry`` on a worker; what ``harness.isolation.predict`` would return here. Progress is not
        reported from workers (``on_progress`` hears nothing); ``while_loading`` is done here first."""
        if while_loading is not None:
            while_loading()
        if entry.metadata_error:  # refused unread, as locally: nothing is sent
            return Prediction("failed", entry.metadata_error, device=limits.device)
        files = _read_files(entry)
        if files is None:
            return Prediction("failed", "the entry's files changed while the run read them; the next run scores the "
                              "new version.", device=limits.device)
        distributed = _import_distributed()
        resources = self._resources(limits.device)
        died = Prediction("failed", f"a worker of the cluster died while running the entry, on each of {self.tries} "
                          "tries; the entry was not scored: look for a worker that runs out of memory or is stopped.",
                          device=limits.device)
        wait = limits.timeout * (ALLOWED_FAILURES + 1) + RESULT_MARGIN
        for attempt in range(1, self.tries + 1):
            blocks = self._scattered(images)
            with warnings.catch_warnings():  # the entry's files travel in the task on purpose: a retry needs them
                warnings.filterwarnings("ignore", message="Sending large graph")  # over 10 MB of files
                future = self.client.submit(run_on_worker, entry.name, entry.content_hash, files, blocks, limits,
                                            preload_torchvision, secret, entry.metadata.interface, pure=False,
                                            resources=resources,
                                            key=f"entry-{entry.content_hash[:16]}-{os.urandom(4).hex()}")
            try:
                prediction, folder = future.result(timeout=wait)
                break
            except TimeoutError:
                future.cancel()
                return Prediction("failed", f"the cluster returned no result within {wait:g} s; check that its "
                                  "workers are running (dask worker) and not stuck.", device=limits.device)
            except distributed.KilledWorker:
                return died
            except CancelledError:  # a worker that died took image blocks the scheduler had not copied elsewhere
                self._forget_blocks()
                if attempt == self.tries:
                    return died
            finally:
                future.release()
        return _host_paths(prediction, folder, entry.folder)


def _takes_n_workers(client) -> bool:
    import inspect
    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _read_files(entry: EntryFolder) -> dict[str, bytes] | None:
    """The entry's files as bytes by path, when they still hash to ``entry.content_hash`` (else None)."""
    files = {p.relative_to(entry.folder).as_posix(): b"".join(read_chunks(p)) for p in entry_files(entry.folder)}
    whole = hashlib.sha256()  # as ``harness.entries.discovery.digest`` hashes a folder, here over the bytes read
    for name, data in files.items():
        whole.update(os.fsencode(name) + b"\0" + data + b"\0")
    return files if whole.hexdigest() == entry.content_hash else None


def _host_paths(prediction: Prediction, worker_folder: str, host_folder: Path) -> Prediction:
    """Messages name the entry's folder on the host, as a local run's do, not the worker's copy."""
    def fix(text: str | None) -> str | None:
        return text.replace(worker_folder, str(host_folder)) if text else text
    return replace(prediction, error=fix(prediction.error), log=fix(prediction.log) or "")


def run_on_worker(name: str, content_hash: str, files: dict[str, bytes], images: dict[str, list[np.ndarray]],
                  limits: Limits, preload_torchvision: bool, secret: bool = False,
                  interface: Interface = DIGITS) -> tuple[Prediction, str]:
    """On a worker: write the files, check them against the host's hash, join each set's blocks, run them through
    ``predict``; the prediction and the folder it ran from (which the host replaces with its own in messages)."""
    images = {kind: np.concatenate(blocks) for kind, blocks in images.items()}
    marker = Path(os.environ.get(_KILL_MARKER_ENV) or "/nonexistent") / name
    if marker.is_file():
        left = int(marker.read_text()) - 1
        marker.write_text(str(left)) if left > 0 else marker.unlink()
        os.kill(os.getpid(), 9)
    work = temp_folder("cluster")
    try:
        folder = work / name
        for relative, data in files.items():
            target = folder / relative
            if not target.resolve().is_relative_to(folder.resolve()):
                raise ValueError(f"the host sent an unsafe path {relative!r}.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        entry = load_entry(folder, interface)
        if entry.content_hash != content_hash:
            return Prediction("failed", "the entry's files arrived on the cluster's worker changed; run again.",
                              device=limits.device), str(folder)
        return predict(entry, images, limits, preload_torchvision=preload_torchvision, secret=secret), str(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _allowed_failures(dask_scheduler) -> int:
    return dask_scheduler.allowed_failures


def _version() -> str:
    from harness import __version__
    return __version__


def _same_version(client, address: str) -> None:
    """Every worker runs this harness version (results are keyed by the host's): else HarnessError, one sentence."""
    from harness import __version__
    other = {worker: v for worker, v in client.run(_version).items() if v != __version__}
    if other:
        worker, version = next(iter(other.items()))
        raise HarnessError(f"the cluster's worker {worker} runs harness {version}, this machine {__version__}; "
                           f"install the same version on every worker of {address} and restart them.")


def _warm(preload_torchvision: bool, device: str) -> None:
    """On a worker: start its sandbox now, so that the first entry does not wait for it."""
    from harness.isolation import process
    process.prestart(preload_torchvision, device)


@contextmanager
def connect(address: str, preload_torchvision: bool = False, device: str = "cpu"):
    """A ``Cluster`` for ``address`` (see the module's docstring), closed (and a LocalCluster stopped) at the end."""
    problem = address_problem(address)
    if problem:
        raise HarnessError(problem)
    distributed = _import_distributed()
    import dask
    with dask.config.set(WORKER_CONFIG):
        local = _LOCAL.fullmatch(address)
        try:
            if local:
                cluster = distributed.LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1,
                                                   processes=True, dashboard_address=":0",
                                                   worker_dashboard_address=":0", silence_logs=40)
                client = distributed.Client(cluster, timeout=CONNECT_SECONDS)
            else:
                cluster = None
                tls = security(os.environ.get(ENV_TLS_DIR)) if address.startswith("tls://") else None
                client = distributed.Client(address, timeout=CONNECT_SECONDS, security=tls)
        except (OSError, TimeoutError) as exc:
            raise HarnessError(f"cannot reach the Dask scheduler at {address} ({exc}); start it with dask scheduler "
                               "and its workers with dask worker, or check the address.") from exc
        try:
            try:
                client.wait_for_workers(int(local.group(1)) if local else 1, timeout=CONNECT_SECONDS)
            except TimeoutError as exc:
                raise HarnessError(f"the Dask scheduler at {address} has no workers after {CONNECT_SECONDS:g} s; "
                                   "start one with dask worker " + address + ".") from exc
            _same_version(client, address)
            client.run(_warm, preload_torchvision, device)
            yield Cluster(client, client.run_on_scheduler(_allowed_failures) + 1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
