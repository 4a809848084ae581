"""One evaluation run: score each new or changed entry in isolation and store the results."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from harness import __version__, store
from harness.discovery import Entry
from harness.isolation import GIB, run_isolated
from harness.metrics import summarize

UNCHANGED, EVALUATED, FAILED = "unchanged", "evaluated", "failed"


@dataclass
class Options:
    device: str = "auto"
    timeout: float = 300.0
    memory_limit: int = 8 * GIB
    force: bool = False
    batch_size: int | None = None


@dataclass
class RunSummary:
    run_id: int
    evaluation_ids: dict[str, int] = field(default_factory=dict)  # entry name -> evaluation shown in the ranking
    outcome: dict[str, str] = field(default_factory=dict)         # entry name -> unchanged / evaluated / failed


def eval_key(entry: Entry, datasets: list[store.DatasetSpec]) -> str:
    """Same entry and content × same datasets × same harness version → same key → no need to re-evaluate."""
    parts = [entry.name, entry.content_hash, __version__] + [f"{d.kind}:{d.content_hash}" for d in datasets]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def write_inputs(datasets: list[store.DatasetSpec], folder: Path) -> dict[str, Path]:
    """Images only (uint8 [N,1,28,28]; the worker scales them to [0,1]) as .npy files; labels stay here."""
    paths = {}
    for spec in datasets:
        path = folder / f"images_{spec.kind}.npy"
        np.save(path, spec.images.astype(np.uint8)[:, None], allow_pickle=False)
        paths[spec.kind] = path
    return paths


def _outputs(out_dir: Path, spec: store.DatasetSpec) -> np.ndarray:
    try:
        outputs = np.load(out_dir / f"outputs_{spec.kind}.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"the entry's process returned no readable outputs for the {spec.kind} set ({exc}).") from exc
    if outputs.dtype != np.float32:
        raise ValueError(f"the entry's process returned {outputs.dtype} outputs for the {spec.kind} set.")
    return outputs


def evaluate_one(entry: Entry, datasets: list[store.DatasetSpec], dataset_ids: dict[str, int], inputs: dict[str, Path],
                 work: Path, options: Options, preload_torchvision: bool) -> dict:
    """Run one entry in its own process and turn its outputs into metrics (the labels never leave this process)."""
    if entry.metadata_error:
        return {"status": "failed", "error": entry.metadata_error, "seconds": 0.0, "metrics": {},
                "device": options.device, "params": None}
    out_dir = work / entry.name
    outcome = run_isolated(entry.folder, entry.metadata, inputs, out_dir, device=options.device,
                           timeout=options.timeout, memory_limit=options.memory_limit,
                           batch_size=options.batch_size, preload_torchvision=preload_torchvision)
    result = outcome.result
    record = {"status": result["status"], "error": result.get("error"), "seconds": outcome.seconds,
              "peak_memory_bytes": outcome.peak_rss, "log": outcome.log or None, "metrics": {},
              "device": result.get("device", options.device), "params": result.get("params"),
              "sandboxed": outcome.sandboxed}
    if result["status"] == "ok":
        try:
            for spec in datasets:
                record["metrics"][dataset_ids[spec.kind]] = summarize(spec.labels, _outputs(out_dir, spec))
        except ValueError as exc:
            record.update(status="failed", error=str(exc), metrics={})
        else:
            seconds = sum(result["seconds"].values())
            images = sum(result["counts"].values())
            record["images_per_second"] = images / seconds if seconds > 0 else None
            record["output_kind"] = record["metrics"][dataset_ids["mnist"]].output_kind
    shutil.rmtree(out_dir, ignore_errors=True)
    return record


def run(engine: Engine, entries: list[Entry], datasets: list[store.DatasetSpec], options: Options, argv: list[str],
        on_entry: Callable[[Entry, str], None] | None = None) -> RunSummary:
    """Evaluate every entry that is new or changed (all with ``force``); each result is committed on its own."""
    dataset_ids = {spec.kind: store.ensure_dataset(engine, spec) for spec in datasets}
    summary = RunSummary(run_id=store.start_run(engine, options.device, argv))
    preload_tv = any("torchvision" in (e.folder / "model.py").read_text(errors="ignore")
                     for e in entries if (e.folder / "model.py").is_file())
    work = Path(tempfile.mkdtemp(prefix="harness-"))
    status = "failed"
    inputs = None
    try:
        for entry in entries:
            version_id = store.ensure_version(engine, entry)
            key = eval_key(entry, datasets)
            existing = None if options.force else store.find_evaluation(engine, key)
            if existing is not None:
                summary.evaluation_ids[entry.name], summary.outcome[entry.name] = existing, UNCHANGED
                if on_entry:
                    on_entry(entry, UNCHANGED)
                continue
            inputs = inputs or write_inputs(datasets, work)  # only once something needs evaluating
            record = evaluate_one(entry, datasets, dataset_ids, inputs, work, options, preload_tv)
            summary.evaluation_ids[entry.name] = store.save_evaluation(
                engine, run_id=summary.run_id, version_id=version_id, eval_key=key, status=record["status"],
                error=record["error"], device=record["device"], seconds=record["seconds"], params=record["params"],
                images_per_second=record.get("images_per_second"), peak_memory_bytes=record.get("peak_memory_bytes"),
                output_kind=record.get("output_kind"), log=record.get("log"), metrics=record["metrics"],
                sandboxed=record.get("sandboxed"))
            summary.outcome[entry.name] = EVALUATED if record["status"] == "ok" else FAILED
            if on_entry:
                on_entry(entry, summary.outcome[entry.name])
        status = "finished"
    finally:
        store.finish_run(engine, summary.run_id, status)
        shutil.rmtree(work, ignore_errors=True)
    return summary
