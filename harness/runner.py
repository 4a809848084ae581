"""One evaluation run: score each new or changed entry in isolation and store the results."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from harness import __version__
from harness.common.competition import Competition
from harness.common.limits import Limits
from harness.common.tempfolders import temp_folder
from harness.data.copies import changed_copies
from harness.data.task import MNIST_DIGITS, DatasetSpec, Task, is_secret, task_of
from harness.entries import parameters
from harness.entries.discovery import EntryFolder
from harness.isolation import Progress, limits_hit
from harness.isolation.inside.exchange import LOADING
from harness.isolation.prediction import LOCAL, Prediction, Predictor
from harness.isolation.process import needs_torchvision
from harness.scoring import retention, standings
from harness.scoring.metrics import memorisation_counts, summarize
from harness.store import audit, claims, eval_sets, evaluations, leftovers, runs, snapshots, space, versions

UNCHANGED, EVALUATED, FAILED = "unchanged", "evaluated", "failed"
CLAIM_LEASE_SECONDS = 30.0      # a claim not renewed for this long belongs to a run that died (kill -9, power cut)
HEARTBEAT_SECONDS = 5.0         # how often the evaluating run renews its claim
PROGRESS_SECONDS = 2.0          # how often the run writes its progress into the store (the dashboard shows it)


@contextmanager
def heartbeat(engine: Engine, key: str, run_id: int, every: float = HEARTBEAT_SECONDS):
    """Renew our claim on ``key`` in a background thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            # a database hiccup: the next beat tries again; the lease covers several beats
            with contextlib.suppress(Exception):
                claims.refresh(engine, key, run_id)

    thread = threading.Thread(target=beat, name=f"claim-{key[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class Options:
    limits: Limits = Limits()   # what each entry's process may use (its device "auto" is resolved by ``run``)
    force: bool = False
    cluster: str | None = None  # a Dask cluster's address (harness.isolation.cluster); None: on this machine


@dataclass
class RunSummary:
    run_id: int
    device: str = "cpu"                                           # where entries ran, resolved ("cpu" or "cuda")
    evaluation_ids: dict[str, int] = field(default_factory=dict)  # entry name -> evaluation shown in the ranking
    outcome: dict[str, str] = field(default_factory=dict)         # entry name -> unchanged / evaluated / failed
    restored: dict[str, str] = field(default_factory=dict)        # entry name -> outcome of its on-time version
    notes: list[str] = field(default_factory=list)


def eval_key(entry: EntryFolder, datasets: list[DatasetSpec], max_entry_bytes: int | None = None) -> str:
    """Same entry and content × same datasets × same harness version → same key → no need to re-evaluate.

    An entry refused for its size also keys on the limit, so that raising the limit evaluates it."""
    parts = [entry.name, entry.content_hash, __version__] + [f"{d.kind}:{d.content_hash}" for d in datasets]
    if max_entry_bytes is not None and entry.total_bytes > max_entry_bytes:
        parts.append(f"over:{max_entry_bytes}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def outgrown(engine: Engine, evaluation_id: int, limits: Limits) -> bool:
    """Whether a stored evaluation failed on a limit (time or memory) that is larger now, or that was not recorded
    (stored before migration 0010): then it is evaluated again rather than taken as it is."""
    return failure_outgrown(evaluations.failure_and_limits(engine, evaluation_id), limits)


def failure_outgrown(failed: tuple[str | None, float | None, int | None] | None, limits: Limits) -> bool:
    """``outgrown`` from the stored failure and limits (``evaluations.failure_and_limits``)."""
    if failed is None:
        return False
    error, timeout, memory = failed
    hit = limits_hit(error)
    return ("time limit" in hit and (timeout is None or limits.timeout is None or limits.timeout > timeout)) or \
        ("memory limit" in hit and (memory is None or limits.memory > memory))


def size_problem(entry: EntryFolder, competition: Competition) -> str | None:
    """One sentence when the entry's files take more than the competition allows (they are then never read)."""
    if entry.total_bytes <= competition.max_entry_bytes:
        return None
    n = entry.total_bytes
    size = f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n:,} bytes"
    return (f"the entry's files take {size}, more than the limit of {competition.max_entry_gb:g} GB; make them "
            "smaller, or ask the organiser to raise max_entry_gb in competition.toml.")


MEMO_COPIES = 1000  # public images scored against a changed copy of themselves (harness.data.copies), per run


def secret_failure(task: Task = MNIST_DIGITS) -> str:
    """What is shown of a failure while the entry held the secret set: that it failed there, nothing more."""
    return f"failed on {task.secret.title}; why is sealed until the reveal (the organiser sees it then)."


@dataclass(frozen=True)
class Copies:
    """The memorisation check's changed copies of one public set (``harness.data.copies``), drawn once per run from
    the OS's entropy and mixed into the public phase of every entry the run scores (each still in an order of its
    own: ``harness.isolation.order``)."""
    kind: str            # the set they copy
    chosen: np.ndarray   # the indices of the copied images in that set
    mixed: np.ndarray    # the set's images followed by the copies, as each entry's public phase receives them

    @classmethod
    def draw(cls, spec: DatasetSpec) -> Copies:
        chosen, copies = changed_copies(spec.images, MEMO_COPIES, np.random.default_rng(secrets.randbits(128)))
        return cls(spec.kind, chosen, np.concatenate([spec.images, copies]))


def copied_set(datasets: list[DatasetSpec], task: Task) -> DatasetSpec | None:
    """The set the memorisation copies are drawn from: the task's public set, when it is among ``datasets`` and not
    empty."""
    return next((spec for spec in datasets if spec.kind == task.public.kind and len(spec.images)), None)


def evaluate_one(entry: EntryFolder, datasets: list[DatasetSpec], dataset_ids: dict[str, int], limits: Limits,
                 preload_torchvision: bool = False,
                 on_progress: Callable[[Progress], None] | None = None,
                 predictor: Predictor = LOCAL, task: Task = MNIST_DIGITS,
                 copies: Copies | None = None,
                 while_loading: Callable[[], None] | None = None) -> evaluations.Record:
    """Run one entry on every set and turn its outputs into metrics (the labels never leave this process).

    Two phases, each in a process of its own: the public sets first, with changed copies of some public images
    mixed in (the memorisation check), and their outputs, log, time and memory are collected; only then does a
    second process receive the secret set, and of that phase only the outputs are used: its log, error, time and
    memory are kept sealed (``evaluations.Sealed``), and its failure reads only :func:`secret_failure`.

    What is ranked besides the outputs is measured here, never reported by the entry: the parameter count is read
    from its weights file, the speed is timed from outside its process on the public phase
    (``harness.isolation.process``). ``predictor``: where it runs (this machine, or a cluster: ``backend``).
    ``task``: what the entry receives and answers (its process is told, whatever the entry's folder says).
    ``copies``: the run's memorisation copies of the task's public set (drawn here when not given).
    ``while_loading``: host work to do while the public phase's process loads the model (``Predictor.predict``);
    the parameters are counted then too (and used only if the entry runs through).
    """
    entry = replace(entry, metadata=replace(entry.metadata, interface=task.interface))
    public = [spec for spec in datasets if not is_secret(spec.kind)]
    secret = [spec for spec in datasets if is_secret(spec.kind)]
    total = sum(len(spec.images) for spec in datasets)
    images, main, copies = _public_images(public, task, copies)

    def first_progress(at: Progress) -> None:
        if on_progress:
            on_progress(replace(at, done=min(at.done, total), total=total))  # its phase too

    counted: list[tuple[int | None, str | None]] = []

    def loading() -> None:  # the host only waits while the entry's process loads: read its weights' size then
        if while_loading is not None:
            while_loading()
        if not entry.metadata_error:
            counted.append(parameters.measure(entry))

    first = predictor.predict(entry, images, limits, preload_torchvision=preload_torchvision,
                              on_progress=first_progress, while_loading=loading)
    record = _public_record(first, entry, counted)
    if record.status != "ok":
        return record
    _score_public(record, first.outputs, public, main, copies, dataset_ids, task)
    if record.status != "ok":
        return record
    record.images_per_second = first.images_per_second
    if secret:
        if on_progress:  # progress stays where the public phase left it: the entry's own count would be a channel
            on_progress(Progress(total - sum(len(spec.images) for spec in secret), total))
        _secret_phase(record, entry, secret, dataset_ids, limits, preload_torchvision, predictor, task)
    return record


def _public_images(public: list[DatasetSpec], task: Task,
                   copies: Copies | None) -> tuple[dict[str, np.ndarray], DatasetSpec | None, Copies | None]:
    """What the public phase receives: each public set, the copied one followed by the run's memorisation copies
    (drawn here when those given do not fit it); with that set and its copies (None, None when none is copied)."""
    images = {spec.kind: spec.images for spec in public}
    main = copied_set(public, task)
    if main is None:
        return images, None, None
    if copies is None or copies.kind != main.kind or len(copies.mixed) != len(main.images) + len(copies.chosen):
        copies = Copies.draw(main)
    images[main.kind] = copies.mixed
    return images, main, copies


def _public_record(first: Prediction, entry: EntryFolder,
                   counted: list[tuple[int | None, str | None]]) -> evaluations.Record:
    """The public phase's record before scoring: how it ran, and the parameter count (``counted`` while it loaded,
    else read now) when it ran through; a count that refuses the entry fails it."""
    if first.status != "ok" or entry.metadata_error:
        params, refusal = None, None
    else:
        params, refusal = counted[0] if counted else parameters.measure(entry)
    record = evaluations.Record(status=first.status, error=first.error, seconds=first.seconds,
                                device=first.device, params=params, peak_memory_bytes=first.peak_memory,
                                log=first.log or None, sandboxed=first.sandboxed)
    if refusal:  # used only when the entry ran: a refused entry's files are never read here
        record.status, record.error = "failed", refusal
    return record


def _score_public(record: evaluations.Record, outputs: dict[str, np.ndarray], public: list[DatasetSpec],
                  main: DatasetSpec | None, copies: Copies | None, dataset_ids: dict[str, int], task: Task) -> None:
    """The public sets' metrics into ``record``, and the memorisation check's counts from the copies' outputs, which
    follow the copied set's own; outputs that cannot be scored fail it."""
    outputs = dict(outputs)
    if main is not None:
        outputs[main.kind], copy_outputs = outputs[main.kind][:len(main.images)], outputs[main.kind][len(main.images):]
    try:
        record.metrics = {dataset_ids[spec.kind]: summarize(spec.labels, outputs[spec.kind], task.num_classes)
                          for spec in public}
    except ValueError as exc:
        record.status, record.error = "failed", str(exc)
        return
    if main is not None:
        as_given = record.metrics[dataset_ids[main.kind]]
        record.output_kind = as_given.output_kind
        record.memorisation = evaluations.Memorisation(*memorisation_counts(
            main.labels[copies.chosen], as_given.predicted[copies.chosen], copy_outputs.argmax(1)))


def _secret_phase(record: evaluations.Record, entry: EntryFolder, secret: list[DatasetSpec],
                  dataset_ids: dict[str, int], limits: Limits, preload_torchvision: bool, predictor: Predictor,
                  task: Task = MNIST_DIGITS) -> None:
    """The secret sets in a process of their own; only their outputs reach ``record``, all else is sealed."""
    second = predictor.predict(entry, {spec.kind: spec.images for spec in secret}, limits,
                               preload_torchvision=preload_torchvision, on_progress=None, secret=True)
    sealed_error = second.error
    if second.status == "ok":
        try:
            record.metrics.update({dataset_ids[spec.kind]: summarize(spec.labels, second.outputs[spec.kind],
                                                                     task.num_classes) for spec in secret})
        except ValueError as exc:
            sealed_error = str(exc)
    record.sealed = evaluations.Sealed(error=sealed_error, log=second.log or None, seconds=second.seconds,
                                       peak_memory_bytes=second.peak_memory)
    if second.sandboxed is False:
        record.sandboxed = False
    if sealed_error is not None:
        record.status, record.error = "failed", secret_failure(task)
        record.metrics, record.images_per_second = {}, None


@dataclass
class VersionToScore:
    """One entry version to score: the folder on disk, or a stored version restored into the work folder."""
    entry: EntryFolder
    version_id: int
    restored: bool = False  # the on-time version, restored from the store because the folder has changed since
    unkept: bool = False    # a new version whose files are not kept yet (kept while its entry loads, or by settle)


def plan(engine: Engine, entries: list[EntryFolder], competition: Competition,
         work: Path) -> tuple[list[VersionToScore], list[str]]:
    """Each entry's folder as it is now, plus its on-time version when a later one replaced it in the folder.

    A new version's files are kept (``snapshots.keep``) while its entry loads for scoring, where the host would only
    wait (``_Scoring.keeper``), and :func:`settle` keeps whatever is still unkept once the run has scored. ``[storage]
    keep_versions`` is applied here, before that (:func:`prune`)."""
    jobs, notes = [], []
    known = versions.known_versions(engine, entries)  # one query for the versions seen before (a re-run: all)
    for entry in entries:
        version_id, kept = known.get((entry.name, entry.content_hash)) or (versions.ensure_version(engine, entry),
                                                                           False)
        too_big = size_problem(entry, competition)
        if too_big:  # fails unread: neither kept nor copied into the sandbox
            entry = replace(entry, metadata_error=too_big)
        jobs.append(VersionToScore(entry, version_id, unkept=not kept and not too_big))
    notes.extend(prune(engine, competition))
    counted = standings.counted_versions(standings.version_rows(engine), competition)
    for job in list(jobs):
        on_time = counted.get(job.entry.name)
        if on_time is None or on_time.version_id == job.version_id:
            continue
        try:
            restored = snapshots.restore(engine, on_time.version_id, job.entry.name,
                                         work / "restored" / str(on_time.version_id))
        except ValueError as exc:
            notes.append(f"{job.entry.name}: its on-time version {on_time.content_hash[:12]} cannot be re-scored "
                         f"({str(exc).rstrip('.')}); its last score stands.")
            continue
        if restored is None:
            notes.append(f"{job.entry.name}: its on-time version {on_time.content_hash[:12]} cannot be re-scored "
                         "because its files were not kept (stored by an older harness); its last score stands.")
        elif restored.content_hash != on_time.content_hash:
            notes.append(f"{job.entry.name}: the stored files of version {on_time.content_hash[:12]} do not match "
                         "its hash; not re-scored.")
        else:
            too_big = size_problem(restored, competition)
            jobs.append(VersionToScore(replace(restored, metadata_error=too_big) if too_big else restored,
                                       on_time.version_id, restored=True))
    return jobs, notes


def settle(engine: Engine, jobs: list[VersionToScore]) -> None:
    """Keep the files of every new version in ``jobs`` not kept yet: those scored kept theirs as their entry loaded;
    those not run (refused unread, or scored by another run) and those whose keeping failed then are kept here."""
    for job in jobs:
        if job.unkept:
            snapshots.keep(engine, job.version_id, job.entry)
            job.unkept = False


def prune(engine: Engine, competition: Competition) -> list[str]:
    """Apply ``[storage] keep_versions`` (cheap when there is nothing to remove): a note saying what went, or why
    nothing could. It runs before this run keeps its new versions' files: with N ≥ 1 a new version, its entry's
    newest, keeps them anyway; with N = 0 a new one neither counted nor shown yet keeps them until the next run."""
    if competition.keep_versions is None:
        return []
    try:
        freed = retention.prune(engine, competition)
    except SQLAlchemyError as exc:
        return [f"the files of old versions were not pruned this time ({type(exc).__name__}); the next run tries "
                "again."]
    if not freed.versions:
        return []
    what = (f"the files of {freed.versions:,} old version{'s' if freed.versions != 1 else ''} "
            f"({space.size_text(freed.bytes)})")
    audit.log_action(engine, "prune-files", f"removed {what} by [storage] keep_versions = {competition.keep_versions}")
    return [f"removed {what} by [storage] keep_versions = {competition.keep_versions}; their results stay "
            "(python -m harness.versions --prune shrinks the database file)."]


@dataclass
class _Scoring:
    """The state of one run while it scores its jobs: what it needs to evaluate one and to record the outcome."""
    engine: Engine
    datasets: list[DatasetSpec]
    dataset_ids: dict[str, int]
    options: Options
    summary: RunSummary
    preload_tv: bool
    on_entry: Callable[[EntryFolder, str], None] | None
    on_progress: Callable[[EntryFolder, Progress], None] | None = None
    predictor: Predictor = LOCAL
    task: Task = MNIST_DIGITS
    # {eval key: (newest evaluation id, its failure and limits or None)} read in one go before the first pass
    # (``evaluations.stored_by_key``); a key missing here has no evaluation yet (a claim checks again)
    stored: dict[str, tuple[int, tuple | None]] = field(default_factory=dict)
    _copies: Copies | None = None
    _copies_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def limits(self) -> Limits:
        return self.options.limits

    def copies(self) -> Copies | None:
        """The run's memorisation copies, drawn when its first entry is scored (a run that scores none draws none)."""
        with self._copies_lock:
            main = copied_set(self.datasets, self.task)
            if self._copies is None and main is not None:
                self._copies = Copies.draw(main)
            return self._copies

    def done(self, job: VersionToScore, evaluation_id: int, outcome: str) -> None:
        if not job.restored:
            self.summary.evaluation_ids[job.entry.name] = evaluation_id
            self.summary.outcome[job.entry.name] = outcome
        else:
            self.summary.restored[job.entry.name] = outcome
        if self.on_entry:
            self.on_entry(job.entry, outcome + (" (on-time version)" if job.restored else ""))

    @contextmanager
    def progress(self, job: VersionToScore):
        """What to do as ``job``'s entry progresses: tell the caller at once, and note the latest count in the store
        from a background thread, at once (none done yet), every PROGRESS_SECONDS and at the end (for the
        dashboard; the watcher that times the entry never waits for the database)."""
        entry = job.entry
        total = sum(len(spec.images) for spec in self.datasets)
        public = sum(len(spec.images) for spec in self.datasets if not is_secret(spec.kind))
        latest: list[Progress] = [Progress(0, total, phase=LOADING)]  # nothing has run yet
        stop = threading.Event()

        def note() -> None:
            noted, last = None, False
            while True:
                if latest and latest[-1] is not noted:
                    noted = latest[-1]
                    # a database hiccup must not stop the entry; the next note tries again
                    with contextlib.suppress(Exception):
                        runs.note_progress(self.engine, self.summary.run_id, entry.name, noted.done, noted.total,
                                            noted.seconds_left, noted.phase, job.version_id, public)
                if last:
                    return
                last = stop.wait(PROGRESS_SECONDS)

        def report(progress: Progress) -> None:
            latest[:] = [progress]
            if self.on_progress:
                self.on_progress(entry, progress)

        thread = threading.Thread(target=note, name=f"progress-{entry.name[:16]}", daemon=True)
        thread.start()
        try:
            yield report
        finally:
            stop.set()
            thread.join()

    def keeper(self, job: VersionToScore) -> Callable[[], None] | None:
        """What keeps the job's files while its entry loads, for a new version (else None). A failure leaves them to
        :func:`settle`, which tries again once the run has scored (and whose error stops the run, as one in
        :func:`plan` did when it kept the files)."""
        if not job.unkept:
            return None

        def keep() -> None:
            with contextlib.suppress(Exception):
                snapshots.keep(self.engine, job.version_id, job.entry)
                job.unkept = False

        return keep

    def evaluate(self, job: VersionToScore, key: str) -> None:
        """Score the job under our claim on ``key``, store the result, then let the claim go."""
        run_id = self.summary.run_id
        try:
            with heartbeat(self.engine, key, run_id), self.progress(job) as report:
                record = evaluate_one(job.entry, self.datasets, self.dataset_ids, self.limits, self.preload_tv,
                                      report, self.predictor, self.task, self.copies(), self.keeper(job))
            record.timeout, record.memory_limit = self.limits.timeout, self.limits.memory
            evaluation_id = self.save(job, key, record)
        finally:
            claims.release(self.engine, key, run_id)
        if evaluation_id is not None:
            self.done(job, evaluation_id, EVALUATED if record.status == "ok" else FAILED)

    def save(self, job: VersionToScore, key: str, record: evaluations.Record) -> int | None:
        """Store the record; when a value in it makes the store fail, store the entry's failure with one sentence
        instead, and if even that fails, say so in the run's notes (None) so that the run goes on."""
        try:
            return evaluations.save_evaluation(self.engine, run_id=self.summary.run_id, version_id=job.version_id,
                                               eval_key=key, record=record)
        except Exception as exc:  # noqa: BLE001 - whatever one entry's figures do to the store is that entry's failure
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__
            if record.sealed is not None:  # the secret phase's output may be why: say nothing more than that
                why = "details sealed until the reveal"
            sentence = (f"its result could not be stored ({why}); check the entry with `python -m harness.check`, or "
                        "show this sentence to the organiser.")
            record.status, record.error, record.params, record.metrics = "failed", sentence, None, {}
            record.images_per_second = record.output_kind = record.sealed = record.memorisation = None
        try:
            return evaluations.save_evaluation(self.engine, run_id=self.summary.run_id, version_id=job.version_id,
                                               eval_key=key, record=record)
        except Exception as exc:  # noqa: BLE001 - the run goes on with the next entry
            self.summary.notes.append(f"{job.entry.name}: neither its result nor its failure could be stored "
                                      f"({type(exc).__name__}); it is scored again by the next run.")
            return None

    def evaluate_claimed(self, job: VersionToScore, key: str, older: int | None) -> None:
        """Evaluate under our claim, unless a run that held the key before us stored a result newer than
        ``older`` (None: always evaluate, as --force asks on first sight)."""
        found = evaluations.find_evaluation(self.engine, key) if older is not None else None
        if found is not None and found > older:
            claims.release(self.engine, key, self.summary.run_id)
            self.done(job, found, UNCHANGED)
        else:
            self.evaluate(job, key)

    def first_pass(self, job: VersionToScore, key: str) -> tuple[VersionToScore, str, int] | None:
        """Score the job now, or take its stored result; when another run holds the key, what to wait for."""
        force = self.options.force
        existing, failed = (None, None) if force else self.stored.get(key, (None, None))
        if existing is not None and not failure_outgrown(failed, self.limits):
            self.done(job, existing, UNCHANGED)
        elif claims.try_claim(self.engine, key, self.summary.run_id, CLAIM_LEASE_SECONDS):  # a raised limit: anew
            self.evaluate_claimed(job, key, older=None if force else existing or 0)
        else:  # with --force (or a raised limit), only an evaluation newer than the one there now will do
            return job, key, (evaluations.find_evaluation(self.engine, key) or 0) if force else existing or 0
        return None

    def wait_for_other_run(self, job: VersionToScore, key: str, older: int) -> None:
        """Another run is scoring this key: take its result, or take over the key if that run gave up."""
        def newer(eng: Engine, k: str) -> int | None:
            found = evaluations.find_evaluation(eng, k)
            return found if found is not None and found > older else None

        run_id = self.summary.run_id
        while True:
            found = claims.wait_for_evaluation(self.engine, key, run_id, CLAIM_LEASE_SECONDS, find=newer)
            if found is not None:
                self.done(job, found, UNCHANGED)
                return
            if claims.try_claim(self.engine, key, run_id, CLAIM_LEASE_SECONDS):
                self.evaluate_claimed(job, key, older)
                return


def each(width: int, body: Callable, items: list) -> Iterator:
    """``body`` over ``items`` in order, up to ``width`` at once (threads waiting on the cluster)."""
    if width == 1:
        return map(body, items)
    with ThreadPoolExecutor(width, thread_name_prefix="entry") as pool:
        return iter(list(pool.map(body, items)))


@contextmanager
def backend(options: Options, entries: list[EntryFolder]) -> Iterator[Predictor]:
    """This machine, one entry at a time, or the Dask cluster at ``options.cluster``, as many as it has workers."""
    if not options.cluster:
        yield LOCAL
        return
    from harness.isolation import cluster
    with cluster.connect(options.cluster, needs_torchvision(entries), options.limits.device) as pool:
        yield pool


def run(engine: Engine, entries: list[EntryFolder], datasets: list[DatasetSpec], options: Options, argv: list[str],
        on_entry: Callable[[EntryFolder, str], None] | None = None, competition: Competition | None = None,
        on_plan: Callable[[int], None] | None = None,
        on_progress: Callable[[EntryFolder, Progress], None] | None = None) -> RunSummary:
    """Evaluate every new or changed entry version (all with ``force``); each result is committed on its own.

    The device is resolved once, before any entry runs ("auto": "cuda" where PyTorch sees a GPU, else "cpu"), and
    that is what the run records. ``on_progress`` hears each entry's images done as it runs.

    Besides each folder's current content, an entry's latest version from before the deadline is scored
    from its stored files when the folder has moved on. A run claims each evaluation key first, so two
    runs at once never score the same version twice: the second waits for the first one's result.

    With ``options.cluster`` the entries run on that Dask cluster's workers, as many at once as it has (see
    :func:`backend`); everything else stays here.
    """
    competition = competition or Competition()
    leftovers.clean(engine)  # runs killed on this host: marked interrupted, their claims and folders gone
    dataset_ids = {spec.kind: eval_sets.ensure_dataset(engine, spec) for spec in datasets}
    with backend(options, entries) as where:
        device = where.resolve_device(options.limits.device)
        options = replace(options, limits=replace(options.limits, device=device))
        summary = RunSummary(run_id=runs.start_run(engine, device, argv), device=device)
        work = temp_folder("run")
        status = "failed"
        try:
            jobs, summary.notes = plan(engine, entries, competition, work)
            if on_plan:
                on_plan(len(jobs))
            scoring = _Scoring(engine, datasets, dataset_ids, options, summary,
                               needs_torchvision([j.entry for j in jobs]), on_entry, on_progress, where,
                               task_of(competition))
            limit = competition.max_entry_bytes
            if not options.force:
                scoring.stored = evaluations.stored_by_key(engine, [eval_key(j.entry, datasets, limit) for j in jobs])

            def first_pass(job: VersionToScore) -> tuple[VersionToScore, str, int] | None:
                return scoring.first_pass(job, eval_key(job.entry, datasets, limit))

            waiting = [w for w in each(where.width, first_pass, jobs) if w is not None]
            for job, key, older in waiting:
                scoring.wait_for_other_run(job, key, older)
            settle(engine, jobs)
            status = "finished"
        except KeyboardInterrupt:  # Ctrl-C may come between a claim and the block that lets it go
            claims.release_all(engine, summary.run_id)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
            runs.finish_run(engine, summary.run_id, status)
    return summary
