"""A prepared dataset built from the running services, through ExportEvents and ListItems."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from evorec.data.artifacts import DatasetLayout
from evorec.data.readers import read_dataset
from evorec.data.schema import EVENT_COLUMNS, EVENT_TYPES
from evorec.data.synth import SyntheticDataset
from evorec.embedding.word_vectors import load_pretrained
from evorec.learning.live_dataset import (
    SOURCE_FORMAT,
    LiveSnapshot,
    SnapshotError,
    holds_preparation,
    list_items,
    live_dataset_path,
    options_following,
    preparation_digest,
    prune_live_datasets,
    take_snapshot,
    write_dataset,
)
from evorec.learning.lock import exclusive, learning_lock
from evorec.platform.clients import embedding_client, interest_client
from evorec.platform.config import Settings, load_settings
from evorec.platform.server import GrpcService
from evorec.preparation import PrepareOptions, prepare
from evorec.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    interest_pb2,
    interest_pb2_grpc,
)
from tests.conftest import ROOT, SYNTH, Stack


def dataset_events(prepared: Path) -> list[common_pb2.Event]:
    """The prepared dataset's events as the services would get them."""
    frame = pd.read_parquet(DatasetLayout(prepared).events)
    return [
        common_pb2.Event(
            event_id=f"e{n}",
            user_id=row.user_id,
            item_id=row.item_id,
            type=EVENT_TYPES.index(row.event_type) + 1,  # type: ignore[arg-type]
            event_time={"seconds": int(row.timestamp)},
        )
        for n, row in enumerate(frame.itertuples())
    ]


@pytest.fixture
async def live(stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    for name in ("preprocess", "embedding", "interest"):
        await stack.start(name)
    return stack


async def test_the_snapshot_holds_what_the_services_hold_in_the_serving_text_space(
    live: Stack, prepared: Path, synthetic: SyntheticDataset, tmp_path: Path
) -> None:
    settings = live.settings()
    events = dataset_events(prepared)
    newest = max(e.event_time.seconds for e in events)
    new_text = " ".join(synthetic.topic_words[2][:8])
    async with interest_client(settings) as interest, embedding_client(settings) as embedding:
        await embedding.stub.UpsertItems(
            embedding_pb2.UpsertItemsRequest(
                items=[embedding_pb2.Item(item_id="fresh", title="Fresh", text=new_text)]
            )
        )
        fresh = [
            common_pb2.Event(
                event_id=f"fresh-{user}", user_id=user, item_id="fresh",
                type=common_pb2.EVENT_TYPE_VIEW, event_time={"seconds": newest + 3600},
            )
            for user in ("u1", "u2", "u3")
        ]  # fmt: skip
        ingested = await interest.stub.IngestEvents(
            interest_pb2.IngestEventsRequest(events=events + fresh)
        )
        assert ingested.summary.accepted_count == len(events) + len(fresh)
        await interest.stub.DeleteUser(interest_pb2.DeleteUserRequest(user_id="u4"))

    taken = await take_snapshot(settings, timeout_s=60)
    out = tmp_path / "live"
    options = options_following(DatasetLayout(prepared))
    manifest = write_dataset(taken, out, options)

    layout = DatasetLayout(out)
    written = pd.read_parquet(layout.events)
    kept = [e for e in events + fresh if e.user_id != "u4"]
    assert manifest["source"]["format"] == SOURCE_FORMAT
    assert manifest["source"]["watermark"] == taken.watermark == len(events) + len(fresh)
    assert manifest["counts"]["exported_events"] == len(written) == len(kept)
    assert set(written["user_id"]) == {e.user_id for e in kept}
    assert written["timestamp"].is_monotonic_increasing
    items = pd.read_parquet(layout.items).set_index("item_id")
    assert items.loc["fresh", "text"] == new_text
    assert bool(items.loc["fresh", "has_text_vector"])
    serving = DatasetLayout(prepared).read_manifest()
    assert manifest["counts"]["vocabulary"] == serving["counts"]["vocabulary"]
    assert manifest["counts"]["topics"] == serving["counts"]["topics"]
    assert layout.read_manifest() == manifest
    with pytest.raises(FileExistsError):
        write_dataset(taken, out, options)
    assert holds_preparation(layout, preparation_digest(taken, options))
    # Prepared otherwise (other word vectors, another seed), it is not the dataset to reuse.
    other_vectors = tmp_path / "other_word_vectors.bin"
    other_vectors.write_bytes(b"other vectors")
    assert not holds_preparation(
        layout, preparation_digest(taken, replace(options, pretrained=other_vectors))
    )
    assert not holds_preparation(layout, preparation_digest(taken, replace(options, seed=1)))

    # Deleting a user does not move the watermark, yet the dataset no longer holds the
    # snapshot: a retrain prepares it again, without the user.
    async with interest_client(settings) as interest:
        await interest.stub.DeleteUser(interest_pb2.DeleteUserRequest(user_id="u5"))
    after_delete = await take_snapshot(settings, timeout_s=60)
    assert after_delete.watermark == taken.watermark
    assert not holds_preparation(layout, preparation_digest(after_delete, options))
    write_dataset(after_delete, out, options, replace=True)
    assert "u5" not in set(pd.read_parquet(layout.events)["user_id"])
    assert holds_preparation(layout, preparation_digest(after_delete, options))

    # An item's new text, with no event, changes the snapshot too.
    async with embedding_client(settings) as embedding:
        await embedding.stub.UpsertItems(
            embedding_pb2.UpsertItemsRequest(
                items=[embedding_pb2.Item(item_id="fresh", title="Fresh", text="other words")]
            )
        )
    assert not holds_preparation(
        layout, preparation_digest(await take_snapshot(settings, timeout_s=60), options)
    )

    # A dataset of another format holds no snapshot (an upgrade prepares it again).
    stale = layout.read_manifest() | {"format_version": 0}
    layout.write_json(layout.manifest, stale)
    assert not holds_preparation(layout, preparation_digest(after_delete, options))


def test_a_deleted_users_own_words_leave_the_word_vectors_with_their_events(
    tmp_path: Path, synthetic_raw: Path
) -> None:
    """A retrain's word vectors start from the serving version's, which Word2Vec trained on
    users' reviews: the words only a deleted user wrote must not carry on into every later
    dataset and model bundle. Pretrained vectors given to the serving dataset keep theirs."""
    raw = read_dataset(synthetic_raw)
    writer = raw.events["user_id"] == "u7"
    raw.events.loc[writer, "text"] = "zzxqsecretword and zzxqsecretword again"
    serving = DatasetLayout(tmp_path / "serving")
    prepare(raw, serving.root, PrepareOptions(topics=SYNTH.topics))
    assert "zzxqsecretword" in load_pretrained(serving.word_vectors, "word2vec-binary")

    def live_vocabulary(serving: DatasetLayout, out: Path) -> set[str]:
        events = pd.read_parquet(serving.events)
        kept = events[events["user_id"] != "u7"].reset_index(drop=True)
        snapshot = LiveSnapshot(
            kept[list(EVENT_COLUMNS)], raw.items, watermark=1, catalog_id="c", catalog_revision=1
        )
        write_dataset(snapshot, out, options_following(serving))
        return set(load_pretrained(DatasetLayout(out).word_vectors, "word2vec-binary").key_to_index)

    served_words = set(load_pretrained(serving.word_vectors, "word2vec-binary").key_to_index)
    assert served_words - live_vocabulary(serving, tmp_path / "live-1") == {"zzxqsecretword"}

    given = DatasetLayout(tmp_path / "serving-pretrained")
    options = PrepareOptions(
        topics=SYNTH.topics, pretrained=serving.word_vectors, pretrained_format="word2vec-binary"
    )
    prepare(raw, given.root, options)
    assert "zzxqsecretword" in live_vocabulary(given, tmp_path / "live-2")


def test_a_live_dataset_keeps_the_serving_datasets_topics(tmp_path: Path, prepared: Path) -> None:
    """The embedding and interest services classify into the serving dataset's topics; a
    retrain's dataset clustered afresh would number and cut them anew (here the largest
    topic loses half its items, so clustering by size would renumber it), and the next
    version's topic filters and forecasts would speak of other topics than the profiles."""
    serving = DatasetLayout(prepared)
    served = pd.read_parquet(serving.items)
    largest = served[served["topic_id"] == "t0"]["item_id"]
    events = pd.read_parquet(serving.events)
    kept = events[~events["item_id"].isin(largest[: len(largest) // 2])].reset_index(drop=True)
    items = served[["item_id", "title", "text", "categories"]]
    snapshot = LiveSnapshot(kept[list(EVENT_COLUMNS)], items, 1, "c", 1)
    live = DatasetLayout(tmp_path / "live-1")
    write_dataset(snapshot, live.root, options_following(serving))

    topic_of = served.set_index("item_id")["topic_id"]
    written = pd.read_parquet(live.items)
    assert written["topic_id"].tolist() == topic_of[written["item_id"]].tolist()
    topics = json.loads(live.topics.read_text())["topics"]
    assert [t["topic_id"] for t in topics] == ["t0", "t1", "t2", "t3"]
    sizes = written["topic_id_every_split"].value_counts()
    assert [t["size"] for t in topics] == [int(sizes.get(t["topic_id"], 0)) for t in topics]
    np.testing.assert_array_equal(np.load(live.topic_centroids), np.load(serving.topic_centroids))


def test_a_retrain_never_writes_over_the_serving_dataset(tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    assert live_dataset_path(datasets, 12) == datasets / "live-12"
    assert live_dataset_path(datasets, 12, serving=datasets / "live-7") == datasets / "live-12"
    beside = live_dataset_path(datasets, 12, serving=datasets / "live-12")
    assert beside == datasets / "live-12-retrain"


def test_pruning_removes_only_the_other_live_datasets(tmp_path: Path) -> None:
    def dataset(name: str, source_format: str) -> Path:
        layout = DatasetLayout(tmp_path / name)
        layout.write_json(layout.manifest, {"source": {"format": source_format}})
        return layout.root

    older, newer = dataset("live-7", SOURCE_FORMAT), dataset("live-90", SOURCE_FORMAT)
    kept = DatasetLayout(dataset("live-12", SOURCE_FORMAT))
    serving = dataset("live-4", SOURCE_FORMAT)
    theirs = [dataset("live-3", "movielens"), dataset("live-mine", SOURCE_FORMAT)]
    (tmp_path / "live-5").mkdir()  # no manifest: not a dataset
    left_by_a_kill = tmp_path / ".live-13.partial"  # a preparation killed halfway
    left_by_a_kill.mkdir()
    (tmp_path / ".live-mine.partial").mkdir()

    assert prune_live_datasets(kept, in_use=serving) == [older, newer, left_by_a_kill]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".live-mine.partial", "live-12", "live-3", "live-4", "live-5", "live-mine",
    ]  # fmt: skip
    assert all(path.exists() for path in theirs)


async def test_a_snapshot_fails_whole_when_the_interest_service_is_down(live: Stack) -> None:
    await live.stop("interest")
    with pytest.raises(SnapshotError, match="event export failed: UNAVAILABLE"):
        await take_snapshot(live.settings(), timeout_s=5)


async def run_evorec(*args: str) -> tuple[int, str, str]:
    """`evorec ARGS` in a subprocess, with this test's settings (the environment), while the
    services keep answering on this event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evorec", *args,
        cwd=ROOT, env={**os.environ, "COLUMNS": "160"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_evorec_data_snapshot_writes_the_live_dataset_or_says_why_not(
    live: Stack, prepared: Path
) -> None:
    settings = live.settings()
    async with interest_client(settings) as interest:
        await interest.stub.IngestEvents(
            interest_pb2.IngestEventsRequest(events=dataset_events(prepared))
        )
    code, out, err = await run_evorec("data", "snapshot")
    assert code == 0, err
    target = settings.data_dir / "datasets" / f"live-{len(dataset_events(prepared))}"
    assert f"-> {target}" in out.replace("\n", "")
    assert DatasetLayout(target).read_manifest()["source"]["format"] == SOURCE_FORMAT
    # A retrain holds the lock: it removes the live datasets it does not use.
    with exclusive(learning_lock(settings.data_dir)):
        code, out, err = await run_evorec("data", "snapshot")
    assert code == 1
    assert err.startswith("error: a retrain or snapshot is already running")
    await live.stop("interest")
    code, out, err = await run_evorec("data", "snapshot", "--timeout", "3")
    assert code == 1
    assert err.startswith("error: the event export failed: UNAVAILABLE")


class BreakingExport(interest_pb2_grpc.InterestServiceServicer):
    """Sends one page of an export, then breaks off as a dying server would."""

    async def ExportEvents(
        self, request: interest_pb2.ExportEventsRequest, context: Any
    ) -> AsyncIterator[interest_pb2.ExportEventsResponse]:
        yield interest_pb2.ExportEventsResponse(
            events=[interest_pb2.StoredEvent(event=dataset_event())], watermark=9
        )
        await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")


def dataset_event() -> common_pb2.Event:
    return common_pb2.Event(event_id="e", user_id="u", item_id="i", type=common_pb2.EVENT_TYPE_VIEW)


async def test_an_export_cut_halfway_is_an_error_not_a_smaller_dataset(
    started: Callable[..., Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer = BreakingExport()
    server = await started(
        GrpcService(
            name="evorec.v1.InterestService",
            register=lambda s: interest_pb2_grpc.add_InterestServiceServicer_to_server(servicer, s),
        )
    )
    monkeypatch.setenv("EVOREC_INTEREST__PORT", str(server.port))
    with pytest.raises(SnapshotError, match="event export failed: UNAVAILABLE: connection lost"):
        await take_snapshot(load_settings(), timeout_s=5)


class SlowCatalog(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Lists one item per page, each page after `pause_s`, for ever."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s
        self.pages = 0

    async def ListItems(
        self, request: embedding_pb2.ListItemsRequest, context: Any
    ) -> embedding_pb2.ListItemsResponse:
        await asyncio.sleep(self.pause_s)
        self.pages += 1
        item = embedding_pb2.Item(item_id=f"i{self.pages}")
        return embedding_pb2.ListItemsResponse(
            items=[embedding_pb2.CatalogEntry(item=item, revision=self.pages)],
            revision=self.pages,
            has_more=True,
            catalog_id="c",
        )


async def test_the_timeout_bounds_the_whole_listing_not_each_page(
    started: Callable[..., Any], settings: Settings
) -> None:
    servicer = SlowCatalog(pause_s=0.2)
    server = await started(
        GrpcService(
            name="evorec.v1.EmbeddingService",
            register=lambda s: embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
                servicer, s
            ),
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async with asyncio.timeout(5):  # each page within 1 s, it would list for ever
                await list_items(stub, timeout_s=1.0)  # type: ignore[arg-type]
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.pages <= 6
