"""`evorec retrain`: one turn of the learning loop (DESIGN.md, "The learning loop").

    snapshot of the live services (ExportEvents + ListItems) -> prepared dataset
    -> candidate encoder, warm-started from the serving version (or from scratch)
    -> exported aside, with the fallback sources refitted on the current events
    -> candidate and serving version scored on each user's newest event
    -> gate: published as the next version, or kept aside; the report says why

The serving version is the newest complete version under the model base path (what the
in-process backend serves). Every outcome, a failure too, is logged and written as a JSON
report under `<data_dir>/retrain/`; a candidate carries its report in its bundle
(`assets.extra/evorec/retrain_report.json`), so a published version says how it got there.
Nothing is published unless every step succeeded: a cut export, a failed training or a
candidate that does not load leaves the serving version as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evorec.data.artifacts import DatasetLayout
from evorec.encoder.bundle import BUNDLE_DIR, model_versions
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.learning.live_dataset import (
    holds_preparation,
    live_dataset_path,
    options_following,
    preparation_digest,
    prune_live_datasets,
    take_snapshot,
    write_dataset,
)
from evorec.learning.lock import exclusive, learning_lock
from evorec.platform.config import Settings

log = logging.getLogger("evorec.retrain")
Progress = Callable[[str], None]
REPORT_NAME = "retrain_report.json"


@dataclass(frozen=True)
class RetrainRequest:
    """What one retrain is asked to do."""

    encoder: EncoderConfig  # used from scratch; a warm start keeps the serving architecture
    training: TrainingConfig
    from_scratch: bool = False
    # Point this TF Serving version label at a published version (in `model_config`).
    label: str | None = None
    # TF Serving's model config: when given, a published version's label and the version
    # policy (encoder.publish.KEEP_LATEST) are written there.
    model_config: Path | None = None


class RetrainFailed(RuntimeError):
    """A retrain failed before its end (its report says whether a version was published
    before, in `published_path`). Holds the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def retrain(
    settings: Settings, request: RetrainRequest, progress: Progress = lambda message: None
) -> dict[str, Any]:
    """Runs one retrain under the data directory's lock; returns its report (`decision`:
    `published` or `kept_aside`), or raises RetrainFailed (or lock.Busy, or the
    KeyboardInterrupt of a stop signal, after writing a `stopped` report)."""
    reports = settings.data_dir / "retrain"
    with exclusive(learning_lock(settings.data_dir)):
        report: dict[str, Any] = {
            "started_at": _now(),
            "margin": settings.retrain.ndcg_margin,
            "mode": "scratch" if request.from_scratch else "warm",
        }
        started = time.perf_counter()
        try:
            _run(settings, request, report, progress)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (evorec.platform.stop_signals)
            report.update(decision="stopped", reason="stopped by a signal")
            _finish(report, started, reports)
            raise
        except Exception as error:
            report.update(decision="failed", reason=f"{type(error).__name__}: {error}")
            what = (
                f"after publishing version {report['candidate_version']}"
                if "published_path" in report
                else "nothing published"
            )
            raise RetrainFailed(
                f"retrain failed, {what}: {error}", _finish(report, started, reports)
            ) from error
        return _finish(report, started, reports)


def _run(
    settings: Settings, request: RetrainRequest, report: dict[str, Any], progress: Progress
) -> None:
    import numpy as np

    from evorec.data.sequences import LeaveOneOut, newest_event_time
    from evorec.encoder.export import export_model, next_version
    from evorec.encoder.model import SequenceEncoder
    from evorec.encoder.publish import (
        LabelNotMoved,
        apply_version_policy,
        move_label,
        publish,
        read_model_config,
    )
    from evorec.encoder.training import Trainer
    from evorec.encoder.warm_start import served_config, warm_start
    from evorec.learning.comparison import dataset_item_ids, newest_event_metrics

    if request.model_config is not None:  # a config that cannot be read fails before training
        read_model_config(request.model_config)
    model_dir = settings.serving.model_dir(settings.data_dir)
    name = model_dir.name
    versions = model_versions(model_dir)
    serving = model_dir / str(versions[-1]) if versions else None
    report["serving_version"] = versions[-1] if versions else None

    progress("exporting events and items")
    snapshot = asyncio.run(take_snapshot(settings, settings.retrain.export_timeout_s))
    datasets = settings.data_dir / "datasets"
    dataset = DatasetLayout(live_dataset_path(datasets, snapshot.watermark, settings.dataset_path))
    options = options_following(DatasetLayout(settings.dataset_path), settings.text_models_path)
    if serving is not None:
        options = replace(options, pretrained=serving / BUNDLE_DIR / "word_vectors.bin")
    digest = preparation_digest(snapshot, options)
    if not holds_preparation(dataset, digest):
        write_dataset(snapshot, dataset.root, options, progress, replace=True, digest=digest)
    pruned = prune_live_datasets(dataset, in_use=settings.dataset_path)
    manifest = dataset.read_manifest()
    report["dataset"] = {
        "path": str(dataset.root),
        "watermark": snapshot.watermark,
        "events": manifest["counts"]["events"],
        "users": manifest["counts"]["users"],
        "items": manifest["counts"]["items"],
        "newest_event_time": newest_event_time(dataset),
        "pruned": [str(path) for path in pruned],
    }

    progress("training the candidate")
    data = LeaveOneOut.load(dataset)
    warm = serving is not None and not request.from_scratch
    encoder = served_config(serving) if warm and serving is not None else request.encoder
    model = SequenceEncoder(
        data.n_items,
        encoder,
        np.load(dataset.item_vectors) if encoder.use_text else None,
        seed=request.training.seed,
    )
    if warm and serving is not None:
        started = warm_start(model, serving, dataset_item_ids(dataset))
        report["warm_start"] = started.as_dict()
    else:
        report["mode"] = "scratch"
    result = Trainer(model, data, request.training).fit()
    report["training"] = {
        "encoder": encoder.as_dict(),
        "parameters": request.training.as_dict(),
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "valid": result.valid,
    }

    progress("exporting the candidate")
    candidates = settings.data_dir / "candidates"
    version = max(next_version(model_dir), next_version(candidates / name))
    details = {"training": request.training.as_dict(), "metrics": {"valid": result.valid}}
    candidate = export_model(model, dataset, candidates, name, details, version=version)
    report["candidate_version"] = version
    report["fallback_sources"] = "refitted on the dataset's events"

    progress("comparing with the serving version")
    margin = settings.retrain.ndcg_margin
    seen_until = served_until(serving) if serving is not None else None
    report["evaluation"] = {
        "events": "each user's newest event, given all before it",
        "after_time": seen_until,
    }
    report["candidate"], users = newest_event_metrics(candidate, dataset, seen_until)
    report["evaluation"]["users"] = users
    report["serving"] = (
        newest_event_metrics(serving, dataset, seen_until)[0] if serving is not None else None
    )
    if report["serving"] is None:
        passed, reason = True, "no version is serving yet"
    elif users == 0:
        passed = False
        reason = "no user has an event newer than the serving version's data: nothing to judge"
    else:
        ours, theirs = report["candidate"]["ndcg@10"], report["serving"]["ndcg@10"]
        passed = ours >= theirs - margin
        reason = (
            f"candidate NDCG@10 {ours:.4f} {'>=' if passed else '<'} serving {theirs:.4f}"
            f" - margin {margin}, over {users} users' newest events"
        )
    report["decision"] = "published" if passed else "kept_aside"
    report["reason"] = reason
    report["candidate_path"] = str(candidate)
    _write_json(candidate / BUNDLE_DIR / REPORT_NAME, report)
    if passed:
        published = publish(candidate, model_dir.parent)
        report["published_path"] = str(published)
        shutil.rmtree(candidate)
        report["candidate_path"] = str(published)
        if request.model_config is not None:
            try:
                # The version first, its label once TF Serving has loaded it: TF Serving
                # refuses a config whose label names a version it has not loaded.
                report["tf_serving_versions"] = apply_version_policy(
                    request.model_config, name, model_versions(model_dir)
                )
                if request.label is not None:
                    progress(f"pointing {request.label} at version {version} once it loads")
                    report["tf_serving_versions"] = move_label(
                        request.model_config, model_dir, request.label, version, settings
                    )
                    report["label"] = {"name": request.label, "version": version}
            except LabelNotMoved as error:  # published and loading, or not: the label waits
                report["label_error"] = str(error)
                log.warning("%s", error)
            except Exception as error:  # published all the same: say so, not "failed"
                report["config_error"] = f"{type(error).__name__}: {error}"


def served_until(version_dir: Path) -> float | None:
    """The newest event time a version was trained on: from its retrain report, else from
    its bundle's manifest (a version `evorec train` made: its dataset's newest event, which
    `evorec up` replays as the services' first events); None for a bundle older than that
    record, whose every user then counts."""
    for name in (REPORT_NAME, "manifest.json"):
        path = version_dir / BUNDLE_DIR / name
        if path.exists():
            value = json.loads(path.read_text()).get("dataset", {}).get("newest_event_time")
            if value is not None:
                return float(value)
    return None


def _finish(report: dict[str, Any], started: float, reports: Path) -> dict[str, Any]:
    report["finished_at"] = _now()
    report["seconds"] = round(time.perf_counter() - started, 1)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = reports / f"{stamp}-{report['decision']}.json"
    report["report_path"] = str(path)
    _write_json(path, report)
    log.info(
        "retrain %s: %s",
        report["decision"],
        report.get("reason", ""),
        extra={"retrain": {k: report.get(k) for k in ("decision", "candidate_version")}},
    )
    return report


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
