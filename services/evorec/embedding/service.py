"""EmbeddingService: text vectors, item vectors, upserts and similar items over the catalog.

Texts are normalized by the PreprocessService (over gRPC, as every service talks to another),
then embedded with the prepared dataset's word vectors (SIF); when the dataset was prepared
with `--text-encoder minilm`, the raw texts are embedded by the MiniLM model instead (in a
worker thread, in batches; see `evorec.embedding.minilm`). Topics come from its topic
model. Upserted items are persisted before the call is answered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from evorec.data.artifacts import DatasetLayout
from evorec.data.schema import item_document
from evorec.embedding.bundle import TextModel
from evorec.embedding.catalog import CatalogItem, CatalogStore, ItemCatalog
from evorec.platform.clients import preprocess_client
from evorec.platform.config import ServerSettings, Settings
from evorec.platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    Violations,
    dependency_error,
)
from evorec.platform.runs import runs_within
from evorec.platform.server import GrpcService
from evorec.platform.validation import (
    MAX_NORMALIZE_TEXTS,
    MAX_TEXT_CHARS,
    check_id,
    check_text,
    check_time,
    timestamp,
    timestamp_seconds,
)
from evorec.v1 import embedding_pb2, embedding_pb2_grpc, preprocess_pb2, preprocess_pb2_grpc
from evorec.vector_index import VectorIndex, build_index
from evorec.vector_index_settings import IndexSettings

MAX_TEXTS = 1_000
MAX_IDS = 10_000
MAX_UPSERT = 1_000
MAX_TITLE_CHARS = 1_000
MAX_CATEGORIES = 64
MAX_CATEGORY_CHARS = 200
MAX_K = 1_000
DEFAULT_K = 10
MAX_TOPIC_PAGE = 1_000
MAX_ITEM_PAGE = 1_000
# The most digits of a page token's offset: every int64 offset fits in 18.
_MAX_OFFSET_DIGITS = 18
OK = embedding_pb2.VECTOR_STATUS_OK
NO_TEXT = embedding_pb2.VECTOR_STATUS_NO_USABLE_TEXT
UNKNOWN_ITEM = embedding_pb2.VECTOR_STATUS_UNKNOWN_ITEM


def normalize_call_bytes(limits: ServerSettings) -> int:
    """The most UTF-8 bytes of text one NormalizeText call carries: a quarter of the gRPC
    message limit, as the reply's tokens can take more bytes than the text they come from
    (field framing per token)."""
    return min(limits.max_send_message_bytes, limits.max_receive_message_bytes) // 4


@dataclass
class Loaded:
    """What the service answers from, once loaded."""

    model: TextModel
    catalog: ItemCatalog
    store: CatalogStore
    index: VectorIndex
    # Names this catalog instance in ListItems, whose revisions count from its start.
    catalog_id: str


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Answers from the loaded text model and catalog; see the module docstring."""

    def __init__(
        self,
        preprocess: preprocess_pb2_grpc.PreprocessServiceAsyncStub,
        index_settings: IndexSettings | None = None,
        max_call_bytes: int | None = None,
    ) -> None:
        self.preprocess = preprocess
        self.index_settings = index_settings or IndexSettings()
        self.max_call_bytes = max_call_bytes or normalize_call_bytes(ServerSettings())
        # Held from building an upsert's items until they are saved and in the index.
        self.upserting = asyncio.Lock()
        # Upserts being applied, whose callers may have gone (see UpsertItems).
        self._applying: set[asyncio.Task[tuple[list[CatalogItem], int]]] = set()
        self._loaded: Loaded | None = None

    @property
    def loaded(self) -> Loaded:
        # UNAVAILABLE, not FAILED_PRECONDITION: loading passes, so clients retry; and the
        # ranking service's catalog mirror takes FAILED_PRECONDITION to mean a restart.
        if self._loaded is None:
            raise Unavailable("the embedding service is still loading")
        return self._loaded

    @property
    def model(self) -> TextModel:
        return self.loaded.model

    @property
    def catalog(self) -> ItemCatalog:
        return self.loaded.catalog

    async def load(
        self, layout: DatasetLayout, store: CatalogStore, text_models: Path | None = None
    ) -> None:
        """Loads the dataset's text model (MiniLM's files from `text_models`/minilm when it
        was prepared with it) and items, then lays the upserted items over them, embedding
        and classifying again those stored under another text model. All of it before the
        service answers: an upsert accepted meanwhile would be overwritten by the stored
        item's re-embedding."""
        model, catalog = await asyncio.to_thread(_load, layout, text_models)
        stored = await asyncio.to_thread(
            lambda: list(store.load(catalog.dimension, model.fingerprint))
        )
        stale = [item for item, current in stored if not current]
        if stale:
            texts = [item_document(i.title, i.text, i.categories) for i in stale]
            for item, (vector, _) in zip(stale, await self.vectors(model, texts), strict=True):
                item.vector = vector
                item.topic_id = model.topics.classify(vector, item.categories)
            await asyncio.to_thread(store.save, stale, model.fingerprint)
        for item, _ in stored:
            catalog.put(item)
        # Built in a worker thread: a large catalog's graph takes minutes.
        index = await asyncio.to_thread(build_index, catalog.vectors, self.index_settings)
        self._loaded = Loaded(model, catalog, store, index, uuid.uuid4().hex)

    async def put(self, items: Sequence[CatalogItem]) -> int:
        """Puts `items` in the catalog and their vectors in the index (added for new items,
        replaced for known ones: no rebuild), the index's part in a worker thread so that a
        large graph's insertions do not hold the event loop; returns how many were new."""
        loaded = self.loaded
        first_new = len(loaded.catalog)
        created = sum(loaded.catalog.put(item) for item in items)
        rows = np.array([loaded.catalog.rows[item.item_id] for item in items], dtype=np.int64)
        known = np.unique(rows[rows < first_new])
        vectors = loaded.catalog.vectors

        def update_index() -> None:
            if len(known):
                loaded.index.replace(known, vectors[known])
            loaded.index.add(vectors[first_new:])

        await asyncio.to_thread(update_index)
        return created

    async def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Normalized tokens of each text, from the PreprocessService: in as many calls as
        its limits need (texts per call, and the message size), each text cut to its
        per-text limit (an item's document joins a text of up to that limit with its title
        and categories)."""
        tokens: list[list[str]] = []
        texts = [text[:MAX_TEXT_CHARS] for text in texts]
        for batch in runs_within(
            texts, lambda text: len(text.encode()), self.max_call_bytes, MAX_NORMALIZE_TEXTS
        ):
            try:
                response = await self.preprocess.NormalizeText(
                    preprocess_pb2.NormalizeTextRequest(texts=batch)
                )
            except grpc.aio.AioRpcError as error:
                raise dependency_error("PreprocessService", error) from error
            tokens.extend(list(result.tokens) for result in response.results)
        return tokens

    async def vectors(
        self, model: TextModel, texts: Sequence[str]
    ) -> list[tuple[np.ndarray | None, int]]:
        """Each text's vector (None without usable words) and its known token count, under
        `model` (given, not read from `self`: loading embeds before the service is loaded)."""
        if not texts:
            return []
        minilm = model.minilm
        if minilm is not None:
            matrix, counts = await asyncio.to_thread(minilm.embed_many, texts)
            return [
                (vector if count > 0 else None, int(count))
                for vector, count in zip(matrix, counts, strict=True)
            ]
        return [model.embedder.embed(tokens) for tokens in await self.tokens(texts)]

    def item_vector(self, item: CatalogItem | None, item_id: str) -> embedding_pb2.ItemVector:
        if item is None:
            return embedding_pb2.ItemVector(item_id=item_id, status=UNKNOWN_ITEM)
        return embedding_pb2.ItemVector(
            item_id=item.item_id,
            status=NO_TEXT if item.vector is None else OK,
            vector=None
            if item.vector is None
            else embedding_pb2.Vector(values=item.vector.tolist()),
            topic_id=item.topic_id,
        )

    async def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: Any
    ) -> embedding_pb2.EmbedTextsResponse:
        violations = Violations()
        violations.within_limit(len(request.texts), MAX_TEXTS, "texts", "texts")
        for index, text in enumerate(request.texts):
            check_text(violations, text, f"texts[{index}]")
        violations.raise_if_any()
        embeddings = [
            embedding_pb2.TextEmbedding(
                status=NO_TEXT if vector is None else OK,
                vector=None if vector is None else embedding_pb2.Vector(values=vector.tolist()),
                known_token_count=known,
            )
            for vector, known in await self.vectors(self.model, request.texts)
        ]
        return embedding_pb2.EmbedTextsResponse(
            embeddings=embeddings,
            dimension=self.catalog.dimension,
            model_version=self.model.version,
        )

    async def GetItemVectors(
        self, request: embedding_pb2.GetItemVectorsRequest, context: Any
    ) -> embedding_pb2.GetItemVectorsResponse:
        violations = Violations()
        violations.within_limit(len(request.item_ids), MAX_IDS, "item_ids", "ids")
        for index, item_id in enumerate(request.item_ids):
            check_id(violations, item_id, f"item_ids[{index}]")
        violations.raise_if_any()
        items = [self.item_vector(self.catalog.get(i), i) for i in request.item_ids]
        return embedding_pb2.GetItemVectorsResponse(
            items=items, dimension=self.catalog.dimension, model_version=self.model.version
        )

    async def UpsertItems(
        self, request: embedding_pb2.UpsertItemsRequest, context: Any
    ) -> embedding_pb2.UpsertItemsResponse:
        validate_upsert(request)
        texts = [item_document(i.title, i.text, i.categories) for i in request.items]
        vectors = await self.vectors(self.model, texts)
        # Applied in a task the caller's cancellation (its deadline passing) does not reach:
        # cancelled between the save and the index update, the item would be saved but not
        # served, and the lock released while the index update still ran in its thread.
        task = asyncio.create_task(self.apply_upsert(request.items, vectors, time.time()))
        self._applying.add(task)
        task.add_done_callback(self._applying.discard)
        items, created = await asyncio.shield(task)
        return embedding_pb2.UpsertItemsResponse(
            items=[self.item_vector(item, item.item_id) for item in items],
            created_count=created,
            updated_count=len(items) - created,
        )

    async def apply_upsert(
        self,
        given_items: Sequence[embedding_pb2.Item],
        vectors: Sequence[tuple[np.ndarray | None, int]],
        now: float,
    ) -> tuple[list[CatalogItem], int]:
        """Saves the upserted items, then puts them in the catalog and index, under the
        `upserting` lock; returns them and how many were new."""
        async with self.upserting:
            loaded = self.loaded
            items = []
            for given, (vector, _) in zip(given_items, vectors, strict=True):
                existing = loaded.catalog.get(given.item_id)
                created_at = (
                    timestamp_seconds(given.create_time) or 0.0
                    if given.HasField("create_time")
                    else existing.create_time
                    if existing
                    else now
                )
                items.append(
                    CatalogItem(
                        item_id=given.item_id,
                        title=given.title,
                        text=given.text,
                        categories=list(given.categories),
                        topic_id=loaded.model.topics.classify(vector, given.categories),
                        vector=vector,
                        create_time=created_at,
                        popularity=existing.popularity if existing else 0,
                    )
                )
            # Durable first: an answered upsert survives a crash.
            await asyncio.to_thread(loaded.store.save, items, loaded.model.fingerprint)
            created = await self.put(items)
        return items, created

    async def SimilarItems(
        self, request: embedding_pb2.SimilarItemsRequest, context: Any
    ) -> embedding_pb2.SimilarItemsResponse:
        violations = Violations()
        query = request.WhichOneof("query")
        violations.require(query is not None, "query", "give item_id or text")
        k = request.k or DEFAULT_K
        violations.require(1 <= k <= MAX_K, "k", f"must be 1 to {MAX_K:,}")
        violations.within_limit(len(request.exclude_item_ids), MAX_IDS, "exclude_item_ids", "ids")
        if query == "item_id":
            check_id(violations, request.item_id, "item_id")
        if query == "text":
            check_text(violations, request.text, "text")
        violations.raise_if_any()
        allowed = self.catalog.has_vector.copy()
        excluded = [self.catalog.rows.get(i) for i in request.exclude_item_ids]
        allowed[[row for row in excluded if row is not None]] = False
        if query == "item_id":
            item = self.catalog.get(request.item_id)
            if item is None:
                raise NotFound("item", request.item_id)
            if item.vector is None:
                raise FailedPrecondition(
                    f"item {request.item_id!r} has no usable text, so no vector"
                )
            vector = item.vector
            allowed[self.catalog.rows[request.item_id]] = False
        else:
            ((found, _),) = await self.vectors(self.model, [request.text])
            if found is None:
                raise InvalidArgument(
                    violations=[
                        FieldViolation("text", "no word of it is known to the word vectors")
                    ]
                )
            vector = found
        rows, scores = self.loaded.index.search(vector, k, allowed)
        return embedding_pb2.SimilarItemsResponse(
            items=[
                embedding_pb2.ScoredItem(
                    item_id=self.catalog.items[row].item_id,
                    score=score,
                    title=self.catalog.items[row].title,
                    topic_id=self.catalog.items[row].topic_id,
                )
                for row, score in zip(rows.tolist(), scores.tolist(), strict=True)
            ]
        )

    async def ListTopics(
        self, request: embedding_pb2.ListTopicsRequest, context: Any
    ) -> embedding_pb2.ListTopicsResponse:
        violations = Violations()
        size = request.page_size or MAX_TOPIC_PAGE
        violations.require(
            1 <= size <= MAX_TOPIC_PAGE, "page_size", f"must be 1 to {MAX_TOPIC_PAGE:,}"
        )
        offset = _page_offset(request.page_token, violations)
        violations.raise_if_any()
        topics = sorted(self.model.topics.topics, key=lambda t: (-t.size, t.topic_id))
        page = topics[offset : offset + size]
        following = offset + size
        return embedding_pb2.ListTopicsResponse(
            topics=[
                embedding_pb2.TopicInfo(
                    topic_id=t.topic_id, label=t.label, top_words=t.top_words, item_count=t.size
                )
                for t in page
            ],
            next_page_token=str(following) if following < len(topics) else "",
            source=self.model.topics.source,
        )

    async def ListItems(
        self, request: embedding_pb2.ListItemsRequest, context: Any
    ) -> embedding_pb2.ListItemsResponse:
        violations = Violations()
        size = request.page_size or MAX_ITEM_PAGE
        violations.require(
            1 <= size <= MAX_ITEM_PAGE, "page_size", f"must be 1 to {MAX_ITEM_PAGE:,}"
        )
        violations.require(request.after_revision >= 0, "after_revision", "must not be negative")
        violations.raise_if_any()
        loaded = self.loaded
        if request.catalog_id and request.catalog_id != loaded.catalog_id:
            raise FailedPrecondition(
                "catalog_id is not this catalog's (the service restarted): list again from "
                "revision 0"
            )
        changes = loaded.catalog.changed_after(request.after_revision, size + 1)
        entries = []
        for row, revision in changes[:size]:
            item = loaded.catalog.items[row]
            entries.append(
                embedding_pb2.CatalogEntry(
                    item=embedding_pb2.Item(
                        item_id=item.item_id,
                        title=item.title,
                        text=item.text if request.include_text else "",
                        categories=item.categories,
                        topic_id=item.topic_id,
                        # A dataset's items have no time of their own (0): left out.
                        create_time=timestamp(item.create_time) if item.create_time else None,
                    ),
                    vector=self.item_vector(item, item.item_id),
                    revision=revision,
                )
            )
        return embedding_pb2.ListItemsResponse(
            items=entries,
            revision=entries[-1].revision if entries else request.after_revision,
            has_more=len(changes) > size,
            catalog_id=loaded.catalog_id,
            dimension=loaded.catalog.dimension,
        )


def _page_offset(token: str, violations: Violations) -> int:
    """Page tokens of offset-paged lists are the offset in decimal; anything else is refused."""
    if not token:
        return 0
    # ASCII digits only (str.isdigit also takes superscripts and other scripts' digits, which
    # int() refuses), and no more than an int64 holds.
    issued = token.isascii() and token.isdigit() and len(token) <= _MAX_OFFSET_DIGITS
    violations.require(issued, "page_token", "not a token this service issued")
    return int(token) if issued else 0


def validate_upsert(request: embedding_pb2.UpsertItemsRequest) -> None:
    violations = Violations()
    violations.within_limit(len(request.items), MAX_UPSERT, "items", "items")
    first_index: dict[str, int] = {}
    for index, item in enumerate(request.items):
        field = f"items[{index}]"
        check_id(violations, item.item_id, f"{field}.item_id")
        if item.item_id in first_index:
            violations.add(f"{field}.item_id", f"duplicate of items[{first_index[item.item_id]}]")
        first_index.setdefault(item.item_id, index)
        violations.within_limit(len(item.title), MAX_TITLE_CHARS, f"{field}.title", "characters")
        check_text(violations, item.text, f"{field}.text")
        violations.within_limit(
            len(item.categories), MAX_CATEGORIES, f"{field}.categories", "categories"
        )
        for number, category in enumerate(item.categories):
            violations.require(
                0 < len(category) <= MAX_CATEGORY_CHARS,
                f"{field}.categories[{number}]",
                f"must be 1 to {MAX_CATEGORY_CHARS} characters",
            )
        if item.HasField("create_time"):
            check_time(violations, item.create_time, f"{field}.create_time")
    violations.raise_if_any()


def create(settings: Settings) -> GrpcService:
    """The EmbeddingService: loads the prepared dataset at `settings.dataset_path` and the
    items upserted since, before it reports SERVING."""
    client = preprocess_client(settings)
    servicer = EmbeddingServicer(client.stub, settings.index, normalize_call_bytes(settings.server))
    layout = DatasetLayout(settings.dataset_path)

    async def start() -> None:
        if not layout.exists():
            raise FileNotFoundError(
                f"no prepared dataset at {layout.root}: run `evorec data prepare` "
                "(or `evorec up`, which makes a synthetic one), or set EVOREC_DATASET"
            )
        await servicer.load(
            layout,
            CatalogStore(settings.data_dir / "embedding" / "catalog.sqlite"),
            settings.text_models_path,
        )

    async def stop() -> None:
        # Upserts whose callers went may still be saving: the lock waits for them.
        async with servicer.upserting:
            await client.close()
            if servicer._loaded is not None:
                servicer._loaded.store.close()

    return GrpcService(
        name=embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,
        register=lambda server: embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
            servicer, server
        ),
        start=start,
        stop=stop,
    )


def _load(layout: DatasetLayout, text_models: Path | None) -> tuple[TextModel, ItemCatalog]:
    return TextModel.load(layout, text_models), ItemCatalog.from_dataset(layout)
