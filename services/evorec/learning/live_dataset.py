"""A prepared dataset built from the running system, through the contracts only.

Every stored event comes from `InterestService.ExportEvents` (one consistent cut of the event
log, its watermark recorded), every catalog item with its text from
`EmbeddingService.ListItems`; then `prepare()` runs as for any raw dataset and writes the
usual layout. The builder never opens another service's database, so a retrain sees exactly
what the services would answer (a deleted user is gone) and keeps working when a store moves
to another machine or engine. The dataset is written beside its final place and renamed
into it at the end: an export cut halfway leaves no dataset behind, only the error. Its
manifest records a digest of the snapshot and the options, so that a dataset is reused only
for the same events, catalog and preparation (`holds_preparation`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout, sha256_of
from evorec.data.cleaning import CleaningOptions
from evorec.data.schema import EVENT_TYPES, RawDataset, events_frame, items_frame
from evorec.platform.clients import embedding_client, interest_client
from evorec.platform.config import Settings
from evorec.preparation import PrepareOptions, Progress, prepare
from evorec.preprocess.text import TextOptions
from evorec.v1 import embedding_pb2, embedding_pb2_grpc, interest_pb2, interest_pb2_grpc

SOURCE_FORMAT = "evorec-live"
EXPORT_PAGE = 10_000
ITEM_PAGE = 1_000


@dataclass
class LiveSnapshot:
    """What the services held when the snapshot was taken."""

    events: pd.DataFrame  # the standard event columns (evorec.data.schema)
    items: pd.DataFrame  # the standard item columns
    watermark: int  # ExportEvents' position of the event log
    catalog_id: str
    catalog_revision: int


async def export_events(
    stub: interest_pb2_grpc.InterestServiceAsyncStub, timeout_s: float, after_watermark: int = 0
) -> tuple[pd.DataFrame, int]:
    """Every event the interest service exports (after `after_watermark`), in time order, and
    the export's watermark."""
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    types: list[str] = []
    values: list[float] = []
    texts: list[str] = []
    watermark = after_watermark
    request = interest_pb2.ExportEventsRequest(
        after_watermark=after_watermark, page_size=EXPORT_PAGE
    )
    async for message in stub.ExportEvents(request, timeout=timeout_s):
        watermark = message.watermark
        for stored in message.events:
            event = stored.event
            users.append(event.user_id)
            items.append(event.item_id)
            times.append(event.event_time.seconds + event.event_time.nanos / 1e9)
            types.append(EVENT_TYPES[event.type - 1])
            values.append(event.value if event.HasField("value") else np.nan)
            texts.append(event.text)
    return events_frame(users, items, times, types, values, texts), watermark


async def list_items(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub, timeout_s: float
) -> tuple[pd.DataFrame, str, int]:
    """Every catalog item with its text, its catalog id and revision, within `timeout_s` for
    all its pages together."""
    deadline = time.monotonic() + timeout_s
    entries: dict[str, embedding_pb2.Item] = {}
    revision, catalog_id = 0, ""
    while True:
        page = await stub.ListItems(
            embedding_pb2.ListItemsRequest(
                after_revision=revision,
                page_size=ITEM_PAGE,
                catalog_id=catalog_id,
                include_text=True,
            ),
            timeout=max(0.0, deadline - time.monotonic()),
        )
        for entry in page.items:
            entries[entry.item.item_id] = entry.item  # a later change replaces an earlier one
        revision, catalog_id = page.revision, page.catalog_id
        if not page.has_more:
            break
    listed = list(entries.values())
    frame = items_frame(
        [i.item_id for i in listed],
        [i.title for i in listed],
        [i.text for i in listed],
        [list(i.categories) for i in listed],
    )
    return frame, catalog_id, revision


class SnapshotError(RuntimeError):
    """The services could not be read whole (down, or the export broke off): nothing built."""


async def take_snapshot(settings: Settings, timeout_s: float) -> LiveSnapshot:
    """Exports the events and lists the catalog of the services `settings` point at, within
    `timeout_s` for both together."""
    deadline = time.monotonic() + timeout_s
    async with interest_client(settings) as interest, embedding_client(settings) as embedding:
        try:
            events, watermark = await export_events(interest.stub, timeout_s)
        except grpc.RpcError as error:
            raise SnapshotError(f"the event export failed: {_status(error)}") from error
        try:
            left = max(0.0, deadline - time.monotonic())
            items, catalog_id, revision = await list_items(embedding.stub, left)
        except grpc.RpcError as error:
            raise SnapshotError(f"listing the catalog failed: {_status(error)}") from error
    return LiveSnapshot(events, items, watermark, catalog_id, revision)


def _status(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)


def preparation_digest(snapshot: LiveSnapshot, options: PrepareOptions) -> str:
    """SHA-256 of what a live dataset is prepared from: the snapshot's events and catalog (in
    the order preparation reads them) and the preparation's options, the pretrained word
    vectors by their content."""
    items = snapshot.items.assign(categories=snapshot.items["categories"].map("\x1f".join))
    digest = hashlib.sha256()
    for frame in (snapshot.events, items.sort_values("item_id", kind="stable")):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    parameters = asdict(options)
    if options.pretrained is not None:
        parameters["pretrained"] = sha256_of(options.pretrained)
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def holds_preparation(layout: DatasetLayout, digest: str) -> bool:
    """Whether `layout` is a dataset of this evorec's format whose preparation had `digest`
    (`preparation_digest`: the same snapshot's events and catalog, the same options). The
    watermark alone does not say so: `DeleteUser` removes events without moving it, items
    change without any event, and the serving dataset's preparation or word vectors may
    have changed since."""
    if not layout.is_current():
        return False
    return bool(layout.read_manifest()["source"].get("preparation_sha256") == digest)


def write_dataset(
    snapshot: LiveSnapshot,
    out: Path,
    options: PrepareOptions,
    progress: Progress = lambda message: None,
    replace: bool = False,
    digest: str | None = None,
) -> dict[str, Any]:
    """Prepares `snapshot` into the new folder `out` (with `replace`, in place of the dataset
    there, which stays until the new one is whole); returns its manifest, which also holds
    the watermark, the catalog revision, the preparation's digest (`digest` when the caller
    computed it already) and the exported counts."""
    if out.exists() and not replace:
        raise FileExistsError(f"{out} exists already: a dataset is never overwritten")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    raw = RawDataset(
        name=out.name, source_format=SOURCE_FORMAT, events=snapshot.events,
        items=snapshot.items, files=[],
    )  # fmt: skip
    try:
        manifest = prepare(raw, partial, options, progress)
        manifest["source"].update(
            watermark=snapshot.watermark,
            catalog_id=snapshot.catalog_id,
            catalog_revision=snapshot.catalog_revision,
            preparation_sha256=digest or preparation_digest(snapshot, options),
        )
        manifest["counts"]["exported_events"] = len(snapshot.events)
        manifest["counts"]["listed_items"] = len(snapshot.items)
        layout = DatasetLayout(partial)
        layout.write_json(layout.manifest, manifest)
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return manifest


def live_dataset_path(datasets: Path, watermark: int, serving: Path | None = None) -> Path:
    """Where the live dataset of a snapshot at `watermark` goes under `datasets`; beside it
    when that folder is the `serving` dataset, which a retrain must never replace (the
    embedding service reads it, and it is the operator's)."""
    path = datasets / f"live-{watermark}"
    if serving is not None and path.resolve() == serving.resolve():
        return path.with_name(f"{path.name}-retrain")
    return path


def prune_live_datasets(keep: DatasetLayout, in_use: Path) -> list[Path]:
    """Removes the other live datasets beside `keep` (`live-<watermark>` folders prepared from
    a snapshot), but the one `in_use` (the serving dataset, when it is one of them), and
    what a killed preparation left half-written (`.live-<watermark>.partial`): each is a
    full copy of the events of its time, a deleted user's included, so a learning loop that
    kept them would grow without bound and keep what `DeleteUser` removed. Call it under
    `lock.learning_lock`, so that no snapshot is being written. Returns the folders removed."""
    kept = {keep.root.resolve(), in_use.resolve()}
    removed = []
    for folder in sorted(keep.root.parent.glob("live-*")):
        if folder.resolve() in kept or not folder.name.removeprefix("live-").isdigit():
            continue
        try:
            manifest = json.loads(DatasetLayout(folder).manifest.read_text())
        except (OSError, ValueError):
            continue  # not a dataset: not ours to remove
        if manifest.get("source", {}).get("format") == SOURCE_FORMAT:
            shutil.rmtree(folder)
            removed.append(folder)
    for folder in sorted(keep.root.parent.glob(".live-*.partial")):
        if folder.name.removeprefix(".live-").removesuffix(".partial").isdigit():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def options_following(serving: DatasetLayout, text_models: Path | None = None) -> PrepareOptions:
    """The serving dataset's preparation (cleaning, text, splits, text encoder), but with its
    word vectors and its topics instead of new ones: the text space stays the one the serving
    encoder's text projection learned, so a warm start can reuse it, and a topic id means
    what it means to the embedding and interest services, which read the serving dataset.
    `text_models` holds the MiniLM files, needed when the serving dataset's text encoder is
    MiniLM. Word vectors the serving dataset trained on its own text keep only the words of
    the new text (a deleted user's own words leave with their events); pretrained ones given
    to it (GloVe, say) keep every word, so that later items' words still have vectors."""
    parameters = serving.read_manifest().get("parameters", {})
    text_encoder = parameters.get("text_encoder", PrepareOptions.text_encoder)
    return PrepareOptions(
        cleaning=CleaningOptions(**parameters.get("cleaning", {})),
        text=TextOptions(**parameters.get("text", {})),
        pretrained=serving.word_vectors,
        pretrained_format="word2vec-binary",
        pretrained_corpus_only=parameters.get("pretrained") is None,
        sif_a=parameters.get("sif_a", PrepareOptions.sif_a),
        topics=parameters.get("topics"),
        topic_model=serving.root,
        time_test_share=parameters.get("time_test_share", PrepareOptions.time_test_share),
        new_item_share=parameters.get("new_item_share", PrepareOptions.new_item_share),
        seed=parameters.get("seed", PrepareOptions.seed),
        text_encoder=text_encoder,
        minilm_dir=text_models / "minilm" if text_models and text_encoder == "minilm" else None,
    )
