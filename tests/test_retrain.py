"""`evorec retrain`: warm start, the gate, publishing or keeping aside, failures, the lock."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import newest_event_time
from evorec.encoder.bundle import BUNDLE_DIR, ModelBundle, model_versions
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.publish import apply_version_policy, set_version_label
from evorec.learning.comparison import dataset_item_ids
from evorec.learning.lock import Busy, exclusive
from evorec.learning.promote import labels, promote
from evorec.learning.retrain import (
    REPORT_NAME,
    RetrainFailed,
    RetrainRequest,
    retrain,
    served_until,
)
from evorec.platform.clients import embedding_client, interest_client
from evorec.platform.config import load_settings
from evorec.v1 import common_pb2, embedding_pb2, interest_pb2
from tests.conftest import ROOT, Stack
from tests.prediction_service import start_prediction_service
from tests.test_live_dataset import dataset_events

QUICK = TrainingConfig(epochs=2, batch_size=32, warmup_steps=5, learning_rate=5e-3)
SMALL = EncoderConfig(dim=32, max_len=50, blocks=1, dropout=0.1)


def read_json(path: str | Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(Path(path).read_text())
    return loaded


@pytest.fixture
def served(model_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the model base path (version 1), configured as the serving one."""
    base = tmp_path / "models"
    shutil.copytree(model_base, base)
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(base))
    return base / "encoder"


@pytest.fixture
async def live(stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Preprocess, embedding and interest on the prepared dataset, its events ingested, one
    new item with three events, and user u4 deleted."""
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    for name in ("preprocess", "embedding", "interest"):
        await stack.start(name)
    events = dataset_events(prepared)
    newest = max(e.event_time.seconds for e in events)
    fresh = [
        common_pb2.Event(
            event_id=f"fresh-{user}", user_id=user, item_id="fresh",
            type=common_pb2.EVENT_TYPE_VIEW, event_time={"seconds": newest + 60},
        )
        for user in ("u1", "u2", "u3")
    ]  # fmt: skip
    settings = stack.settings()
    async with interest_client(settings) as interest, embedding_client(settings) as embedding:
        await embedding.stub.UpsertItems(
            embedding_pb2.UpsertItemsRequest(
                items=[embedding_pb2.Item(item_id="fresh", title="Fresh", text="fresh words")]
            )
        )
        await interest.stub.IngestEvents(interest_pb2.IngestEventsRequest(events=events + fresh))
        await interest.stub.DeleteUser(interest_pb2.DeleteUserRequest(user_id="u4"))
    return stack


@pytest.mark.slow
async def test_a_warm_retrain_is_published_then_a_worse_one_is_kept_aside(
    live: Stack, served: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOREC_RETRAIN__NDCG_MARGIN", "1")
    model_config = live.settings().data_dir / "models.config"
    # TF Serving serves version 1 as canary: it refuses a config that moves canary to a
    # version it has not loaded, so the version must load before the label moves.
    apply_version_policy(model_config, "encoder", [1])
    set_version_label(model_config, "encoder", "canary", 1)
    tf_serving = await start_prediction_service(served.parent, config_file=model_config, poll_s=0.1)
    monkeypatch.setenv("EVOREC_SERVING__BACKEND", "tf_serving")
    monkeypatch.setenv("EVOREC_SERVING__TF_SERVING_TARGET", f"127.0.0.1:{tf_serving.port}")
    settings = live.settings()
    request = RetrainRequest(SMALL, QUICK, label="canary", model_config=model_config)
    try:
        report = await asyncio.to_thread(retrain, settings, request)
        await tf_serving.state.refresh()
        assert tf_serving.state.refused is None
        assert tf_serving.state.labels["encoder"] == {"canary": 2}
    finally:
        await tf_serving.stop()

    assert report["decision"] == "published"
    assert report["label"] == {"name": "canary", "version": 2}
    assert report["tf_serving_versions"] == [1, 2]
    assert "label_error" not in report
    assert (report["mode"], report["serving_version"], report["candidate_version"]) == (
        "warm", 1, 2,
    )  # fmt: skip
    # Version 1 was trained on the prepared dataset, whose events the services now hold:
    # only the three users with an event after them judge the candidate.
    assert report["evaluation"]["after_time"] == newest_event_time(DatasetLayout(prepared))
    assert report["evaluation"]["users"] == 3
    assert model_versions(served) == [1, 2]
    dataset = DatasetLayout(Path(report["dataset"]["path"]))
    n_items = len(dataset_item_ids(dataset)) - 1
    assert report["warm_start"]["kept_items"] + report["warm_start"]["new_items"] == n_items
    assert report["warm_start"]["new_items"] >= 1  # "fresh"
    assert report["warm_start"]["kept_items"] > n_items // 2
    published = ModelBundle.load(served / "2")
    assert json.loads((served / "2" / BUNDLE_DIR / REPORT_NAME).read_text())["decision"] == (
        "published"
    )
    # The fallback sources are refitted on the current events: u4's are gone.
    assert published.popularity.sum() == report["dataset"]["events"]
    assert report["dataset"]["users"] == 80 - 1
    assert read_json(report["report_path"]) == report
    assert labels(model_config, "encoder") == {"canary": 2}

    # Nothing newer than what version 2 was trained on: nothing to judge a candidate on. A
    # user deleted since leaves the watermark where it was, but not the dataset.
    async with interest_client(settings) as interest:
        await interest.stub.DeleteUser(interest_pb2.DeleteUserRequest(user_id="u5"))
    monkeypatch.setenv("EVOREC_RETRAIN__NDCG_MARGIN", "0")
    untrained = RetrainRequest(SMALL, replace(QUICK, epochs=1, learning_rate=1e-9), True)
    report = await asyncio.to_thread(retrain, live.settings(), untrained)
    assert report["decision"] == "kept_aside"
    assert "nothing to judge" in report["reason"]
    assert report["dataset"]["path"] == str(dataset.root)
    assert report["dataset"]["users"] == 80 - 2

    # A newer event for every user: an untrained candidate is worse there, and kept aside.
    await ingest(live, likely_next_events(dataset))
    report = await asyncio.to_thread(retrain, live.settings(), untrained)
    assert report["decision"] == "kept_aside", report["reason"]
    assert report["evaluation"]["users"] == report["dataset"]["users"]
    assert report["candidate"]["ndcg@10"] < report["serving"]["ndcg@10"]
    assert model_versions(served) == [1, 2]
    assert report["dataset"]["pruned"] == [str(dataset.root)]
    assert not dataset.root.exists()
    aside = Path(report["candidate_path"])
    assert aside.parent.parent == settings.data_dir / "candidates"
    assert read_json(aside / BUNDLE_DIR / REPORT_NAME)["decision"] == "kept_aside"


def test_a_version_evorec_train_made_has_seen_its_datasets_newest_event(
    model_base: Path, prepared: Path
) -> None:
    """A retrain judges the serving version only on events after those it was trained on;
    `evorec up` replays a version's own training events into the services, so a version
    without a retrain report must still say how far it has seen."""
    version = model_base / "encoder" / "1"
    assert not (version / BUNDLE_DIR / REPORT_NAME).exists()
    assert served_until(version) == newest_event_time(DatasetLayout(prepared))


def likely_next_events(dataset: DatasetLayout) -> list[common_pb2.Event]:
    """One event per user, an hour after the newest, on the most popular item the user has
    not seen in the topic of their latest events: what a trained model should expect."""
    events = pd.read_parquet(dataset.events)
    items = pd.read_parquet(dataset.items)
    topic = dict(zip(items["item_id"], items["topic_id"], strict=True))
    popular = events["item_id"].value_counts().index.tolist()
    at = int(events["timestamp"].max()) + 3600
    chosen = []
    for user, history in events.groupby("user_id"):
        recent = history["item_id"].tail(5).map(topic).mode().iloc[0]
        seen = set(history["item_id"])
        item = next(i for i in popular if topic[i] == recent and i not in seen)
        chosen.append(
            common_pb2.Event(
                event_id=f"next-{user}", user_id=str(user), item_id=item,
                type=common_pb2.EVENT_TYPE_VIEW, event_time={"seconds": at},
            )
        )  # fmt: skip
    return chosen


async def ingest(stack: Stack, events: list[common_pb2.Event]) -> None:
    async with interest_client(stack.settings()) as interest:
        response = await interest.stub.IngestEvents(interest_pb2.IngestEventsRequest(events=events))
    assert response.summary.accepted_count == len(events)


@pytest.mark.slow
async def test_a_retrain_while_the_events_cannot_be_exported_publishes_nothing(
    live: Stack, served: Path
) -> None:
    await live.stop("interest")
    with pytest.raises(RetrainFailed, match="event export failed") as raised:
        await asyncio.to_thread(retrain, live.settings(), RetrainRequest(SMALL, QUICK))
    report = read_json(raised.value.report["report_path"])
    assert report["decision"] == "failed"
    assert "UNAVAILABLE" in report["reason"]
    assert model_versions(served) == [1]


def test_a_second_retrain_at_once_is_refused_with_the_holder(
    settings: object, served: Path
) -> None:
    lock = settings.data_dir / "retrain" / "lock"  # type: ignore[attr-defined]
    with exclusive(lock), pytest.raises(Busy, match="already running"):
        retrain(settings, RetrainRequest(SMALL, QUICK))  # type: ignore[arg-type]
    assert model_versions(served) == [1]


def test_a_model_config_that_cannot_be_read_fails_the_retrain_before_it_trains(
    settings: object, served: Path, tmp_path: Path
) -> None:
    """Read after publishing, a broken config left a published version behind a report
    that said nothing was published."""
    config = tmp_path / "models.config"
    config.write_text("model_config_list { oops: 1 }\n")
    settings = load_settings()  # the fixtures' environment: data dir and serving base path
    request = RetrainRequest(SMALL, QUICK, label="canary", model_config=config)
    with pytest.raises(RetrainFailed, match="nothing published") as failed:
        retrain(settings, request)
    assert failed.value.report["decision"] == "failed"
    assert "oops" in failed.value.report["reason"]
    assert "dataset" not in failed.value.report  # stopped before the export of events
    assert model_versions(served) == [1]


def test_a_retrain_stopped_by_a_signal_writes_its_report(
    settings: object, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evorec.learning.retrain

    async def signalled(*args: object) -> None:  # SIGTERM, as raise_on_stop_signals turns it
        raise KeyboardInterrupt

    monkeypatch.setattr(evorec.learning.retrain, "take_snapshot", signalled)
    settings = load_settings()
    with pytest.raises(KeyboardInterrupt):
        retrain(settings, RetrainRequest(SMALL, QUICK))
    (path,) = (settings.data_dir / "retrain").glob("*-stopped.json")
    assert read_json(path)["reason"] == "stopped by a signal"
    assert model_versions(served) == [1]


@pytest.mark.slow
async def test_a_published_version_whose_config_cannot_be_written_is_reported_published(
    live: Stack, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evorec.encoder.publish

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evorec.encoder.publish, "_write", full_disk)
    monkeypatch.setenv("EVOREC_RETRAIN__NDCG_MARGIN", "1")
    config = live.settings().data_dir / "models.config"
    request = RetrainRequest(SMALL, replace(QUICK, epochs=1), label="canary", model_config=config)
    report = await asyncio.to_thread(retrain, live.settings(), request)
    assert report["decision"] == "published"
    assert "No space left on device" in report["config_error"]
    assert model_versions(served) == [1, 2]
    assert not config.exists()


@pytest.mark.slow
def test_a_warm_start_keeps_known_items_and_the_text_projection(
    model_base: Path, prepared: Path
) -> None:
    from evorec.encoder.model import SequenceEncoder
    from evorec.encoder.warm_start import served_config, warm_start

    version = model_base / "encoder" / "1"
    old = ModelBundle.load(version)
    layout = DatasetLayout(prepared)
    ids = dataset_item_ids(layout)
    # The same items in another order, and one more: indexes differ, ids match.
    shuffled = ["", *reversed(ids[1:]), "brand-new"]
    text = np.load(layout.item_vectors)
    reordered = np.vstack([text[:1], text[1:][::-1], text[1:2]])
    model = SequenceEncoder(len(shuffled) - 1, served_config(version), reordered, seed=0)
    started = warm_start(model, version, shuffled)
    assert started.new_items >= 1
    np.testing.assert_allclose(model.text_projection.kernel.numpy(), old.text_projection)
    embeddings = model.item_ids.embeddings.numpy()
    projected = old.text_vectors @ old.text_projection
    for new_index in (1, 5, 40):
        old_index = old.item_ids.index(shuffled[new_index])
        np.testing.assert_allclose(
            embeddings[new_index], old.item_table[old_index] - projected[old_index], atol=1e-5
        )


def test_evorec_retrain_says_when_another_one_runs(settings: object) -> None:
    lock = settings.data_dir / "retrain" / "lock"  # type: ignore[attr-defined]
    with exclusive(lock):
        result = subprocess.run(
            [sys.executable, "-m", "evorec", "retrain"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: a retrain or snapshot is already running (pid {os.getpid()};"
    )


@pytest.mark.slow
def test_promote_moves_stable_only_to_a_version_that_answers(served: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    broken = served / "2"
    shutil.copytree(served / "1", broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    set_version_label(config, "encoder", "canary", 2)
    with pytest.raises(ValueError, match="does not load and answer"):
        promote(config, served, "canary", "stable")
    assert labels(config, "encoder") == {"canary": 2}
    set_version_label(config, "encoder", "canary", 1)
    moved = promote(config, served, "canary", "stable")
    assert (moved.version, moved.previous) == (1, None)
    assert labels(config, "encoder") == {"canary": 1, "stable": 1}
    with pytest.raises(ValueError, match="no label 'nightly'"):
        promote(config, served, "nightly", "stable")


def test_retrain_every_goes_on_after_a_failed_turn_until_stopped(settings: object) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "evorec", "retrain", "--every", "1s"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "300", "EVOREC_CLIENT__RETRY_MAX_ATTEMPTS": "1"},
        # With SIGINT ignored, as a shell's background job inherits it: it must stop even so.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while sum("retrain failed, nothing published" in line for line in lines) < 2:
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert lines[0].startswith("retraining every 1s")
    assert "stopped" in rest
    assert process.returncode == 0
    reports = list((settings.data_dir / "retrain").glob("*-failed.json"))  # type: ignore[attr-defined]
    assert len(reports) >= 2
