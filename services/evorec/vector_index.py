"""Top-k search by inner product over a growing table of item vectors: one interface, an
exact implementation and an approximate one, chosen by the table's size.

Ranking's encoder source (user vector against every item's encoder-space vector), its text
neighbours source (the recent items' text against every item's text vector) and the
embedding service's `SimilarItems` (text vector against every item's unit text vector) all
ask the same question: the `k` rows with the largest inner product with a query, among the
rows a filter allows. Below `IndexSettings.exact_below` rows one matrix-vector product
answers it exactly and cheaply; above it the product grows with the catalog (about 1.3 ms
per query at 100,000 64-dimensional items on one core, 10 times that at a million), so an
approximate index answers it for a fixed share of that cost (BENCHMARKS.md, "Large
catalogs", measures both and the threshold).

The approximate index is faiss's `IndexIVFFlat` with the inner-product metric by default
(faiss-cpu, Meta's library, wheels for every platform on PyPI): k-means lists, of which a
search reads the few whose centres score highest. On trained item tables searched with
users' vectors it finds 0.98 of the exact top 10 at 100,000 items where faiss's HNSW graph
(`IndexHNSWFlat`, still available as `approximate = "hnsw"`) found 0.41, and on the unit
text vectors `SimilarItems` searches 0.999 where the graph found 0.90 (measured, not
explained: the graph does well on synthetic Gaussian clusters, the lists less so).
faiss is chosen over usearch and hnswlib because it filters inside the search with a bitmap
of allowed ids (`IDSelectorBitmap`), for lists and graph alike: ranking's filters (seen
items, excluded ids, topics) and the embedding service's exclusions are applied while
searching, with no over-fetching and no Python callback per candidate; because its stored
vectors can be read back, so a selective filter is answered exactly over the allowed rows
without a second copy of the table; and because it releases the GIL during search and add,
so a build in a worker thread does not stall the event loop. hnswlib has had no release
since 2023; usearch filters only through a per-candidate callback.

Rows are positions 0..len-1 (the item space's or the catalog's rows). `add` appends rows
without a rebuild; `replace` gives rows new vectors (the index keeps the old entry, marked
dead, and inserts a new one, so a replaced row costs one insertion, not a rebuild). A search
and an add or replace may come from different threads (requests on the event loop, updates
in a worker): a lock serializes them, and adds take it in chunks of ADD_CHUNK rows so that a
large add never holds a search up for long.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import faiss
import numpy as np

from evorec.vector_index_settings import IndexSettings

# Rows added per hold of the lock: a search waits at most for one chunk's insertion.
ADD_CHUNK = 256
# Fewest rows per inverted list at build time: k-means needs a few dozen points per centre
# (faiss warns below 39) to place them usefully.
MIN_ROWS_PER_LIST = 39
# Fewest lists a search reads (or all, when there are fewer, or the settings ask fewer).
MIN_PROBES = 8
# faiss's OpenMP threads. One query runs on one thread anyway; builds run in a worker thread
# beside the service's event loop, and OpenMP workers spinning against it and the other
# services on a small machine cost more than they gain (as numpy's BLAS threads do: see
# ranking/service.py).
faiss.omp_set_num_threads(1)


class VectorIndex(Protocol):
    """The `k` rows with the largest inner product with a query, among allowed rows."""

    description: str

    def __len__(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None:
        """Appends `vectors` as rows len(self).. len(self) + len(vectors) - 1."""

    def replace(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Gives existing `rows` new vectors."""

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the best `k` allowed rows, best first (fewer when fewer are
        allowed). `allowed`: a boolean mask over rows; rows past its end are not allowed;
        None allows every row."""


def _top(scores: np.ndarray, rows: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` highest finite `scores` as (rows, scores), best first, ties by lower row."""
    k = min(k, int(np.count_nonzero(np.isfinite(scores))))
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    top = np.argpartition(-scores, k - 1)[:k]
    # argpartition picks any of the entries tied with the k-th score: all of them compete
    # for the last places, so that the lower rows win them. Every score above the k-th is
    # among `top` already, so the rows at or above it are `top` and its ties, in row order.
    top = np.flatnonzero(scores >= scores[top].min())
    labels = top if rows is None else rows[top]
    order = np.lexsort((labels, -scores[top]))[:k]
    return labels[order].astype(np.int64), scores[top][order].astype(np.float32)


def _allowed_prefix(allowed: np.ndarray | None, n: int) -> np.ndarray | None:
    """`allowed` cut or padded (with False) to `n` rows."""
    if allowed is None or len(allowed) == n:
        return allowed
    if len(allowed) > n:
        return allowed[:n]
    return np.concatenate([allowed, np.zeros(n - len(allowed), dtype=bool)])


class ExactIndex:
    """Every row scored: one matrix-vector product, then a partial sort."""

    description = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
        self._size = len(self._vectors)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self._size]

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self._vectors.shape[1])
        with self._lock:
            needed = self._size + len(vectors)
            if needed > len(self._vectors):
                rows = max(needed, 2 * len(self._vectors))
                grown = np.zeros((rows, self._vectors.shape[1]), dtype=np.float32)
                grown[: self._size] = self._vectors[: self._size]
                self._vectors = grown
            self._vectors[self._size : needed] = vectors
            self._size = needed

    def replace(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._vectors[np.asarray(rows, dtype=np.int64)] = vectors

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            table = self._vectors[: self._size]
            allowed = _allowed_prefix(allowed, self._size)
            scores = table @ np.asarray(query, dtype=np.float32)
        if allowed is not None:
            np.putmask(scores, ~allowed, -np.inf)  # `scores` is this call's own array
        return _top(scores, None, k)


class _FaissIndex:
    """What faiss's approximate indexes share here: the graph's or lists' entries mapped to
    rows (a replaced row gets a new entry, its old one marked dead), adds and replacements in
    chunks under the lock, filtering inside the search with a bitmap of the allowed live
    entries, and a selective filter answered exactly over the allowed rows' stored vectors.
    A subclass makes the faiss index and says how it searches and reads its vectors."""

    description = "approximate"

    def __init__(self, vectors: np.ndarray, settings: IndexSettings) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
        self.settings = settings
        self.dimension = vectors.shape[1]
        self._index = self._make(vectors)
        self._lock = threading.Lock()
        # The index's entries are its own ids 0..ntotal-1; a replaced row gets a new entry.
        # row_of[entry] is the row an entry holds, entry_of[row] the row's live entry.
        self._row_of = np.zeros(max(1, len(vectors)), dtype=np.int64)
        self._entry_of = np.zeros(max(1, len(vectors)), dtype=np.int64)
        self._live = np.zeros(max(1, len(vectors)), dtype=bool)
        self._entries = 0
        self._rows = 0
        self._replaced = 0
        # Entries 0.._identity-1 hold rows 0.._identity-1 (until the first replacement):
        # a search maps only the entries after them to rows (at a million rows, mapping
        # them all cost 0.8 ms a search).
        self._identity = 0
        self.add(vectors)

    def _make(self, vectors: np.ndarray) -> Any:
        """The empty faiss index (trained on `vectors` where it needs training). faiss's
        bundled type information leaves out most SWIG classes' members: Any here."""
        raise NotImplementedError

    def _parameters(self, selector: faiss.IDSelector, k: int) -> Any:
        """The search's parameters: the selector of allowed entries and the effort."""
        raise NotImplementedError

    def _vectors_of(self, entries: np.ndarray) -> np.ndarray:
        """The stored vectors of `entries` (caller holds the lock)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self._rows

    @property
    def replaced(self) -> int:
        """Dead entries left by `replace` (a rebuild drops them)."""
        return self._replaced

    def _grow(self, entries: int, rows: int) -> None:
        if entries > len(self._row_of):
            size = max(entries, 2 * len(self._row_of))
            self._row_of = np.resize(self._row_of, size)
            self._live = np.concatenate([self._live, np.zeros(size - len(self._live), bool)])
        if rows > len(self._entry_of):
            self._entry_of = np.resize(self._entry_of, max(rows, 2 * len(self._entry_of)))

    def _insert(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """New entries for `rows` (caller holds the lock)."""
        first = self._entries
        entries = np.arange(first, first + len(rows))
        self._grow(first + len(rows), int(rows.max(initial=-1)) + 1)
        self._index.add(vectors)
        if first == self._identity and np.array_equal(rows, entries):
            self._identity = first + len(rows)
        self._row_of[entries] = rows
        self._live[entries] = True
        self._entry_of[rows] = entries
        self._entries = first + len(rows)

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        for start in range(0, len(vectors), ADD_CHUNK):
            chunk = vectors[start : start + ADD_CHUNK]
            with self._lock:
                rows = np.arange(self._rows, self._rows + len(chunk))
                self._insert(rows, chunk)
                self._rows += len(chunk)

    def replace(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        for start in range(0, len(rows), ADD_CHUNK):
            chunk = rows[start : start + ADD_CHUNK]
            with self._lock:
                self._live[self._entry_of[chunk]] = False
                self._replaced += len(chunk)
                self._insert(chunk, vectors[start : start + ADD_CHUNK])

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
        with self._lock:
            allowed = _allowed_prefix(allowed, self._rows)
            count = self._rows if allowed is None else int(np.count_nonzero(allowed))
            if count == 0 or k <= 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            if count < self.settings.exact_below:
                # A selective filter: the search would wander among excluded entries; the
                # allowed rows alone are few enough to score exactly.
                rows = np.arange(self._rows) if allowed is None else np.flatnonzero(allowed)
                scores = self._vectors_of(self._entry_of[rows]) @ query[0]
                return _top(scores, rows, k)
            live = self._live[: self._entries]
            if allowed is None:
                selected = live
            else:
                head, entries = self._identity, self._entries
                tail = allowed[self._row_of[head:entries]] if entries > head else None
                selected = live & (allowed[:head] if tail is None else np.r_[allowed[:head], tail])
            bitmap = np.packbits(selected, bitorder="little")
            selector = faiss.IDSelectorBitmap(self._entries, faiss.swig_ptr(bitmap))
            scores, entries = self._index.search(query, k, params=self._parameters(selector, k))
        found = entries[0] >= 0
        rows = self._row_of[entries[0][found]]
        return rows.astype(np.int64), scores[0][found].astype(np.float32)


class HnswIndex(_FaissIndex):
    """faiss's HNSW graph (`IndexHNSWFlat`), inner product: fast, but on trained item tables
    its recall is low (BENCHMARKS.md, "Large catalogs"); kept as the measured alternative
    (`EVOREC_INDEX__APPROXIMATE=hnsw`)."""

    description = "approximate (faiss HNSW)"

    def _make(self, vectors: np.ndarray) -> Any:
        graph = faiss.IndexHNSWFlat(
            self.dimension, self.settings.hnsw_links, faiss.METRIC_INNER_PRODUCT
        )
        graph.hnsw.efConstruction = self.settings.ef_construction
        return graph

    def _parameters(self, selector: faiss.IDSelector, k: int) -> Any:
        return faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
            sel=selector, efSearch=max(self.settings.ef_search, k)
        )

    def _vectors_of(self, entries: np.ndarray) -> np.ndarray:
        # The graph's flat storage, read in place (no second copy of the table).
        storage = faiss.downcast_index(self._index.storage)
        # faiss's bundled type information leaves out most SWIG classes' members.
        xb = storage.get_xb()  # type: ignore[attr-defined]
        flat = faiss.rev_swig_ptr(xb, self._entries * self.dimension)
        stored = np.asarray(flat).reshape(self._entries, self.dimension)
        return np.take(stored, entries, axis=0)


class IvfIndex(_FaissIndex):
    """faiss's inverted lists of full vectors (`IndexIVFFlat`), inner product: k-means
    splits the table into `ivf_lists` lists when the index is built; a search scores every
    vector of the `ivf_probes` lists whose centres score highest, so it reads a fixed share
    of the table (probes / lists) whatever its size. A row added later joins the list of its
    nearest centre; the centres are learnt again only by a rebuild (a new model version, or
    a table that crosses the threshold). A table with fewer than MIN_ROWS_PER_LIST rows per
    list gets fewer lists, and proportionally fewer probes, so the share read stays the
    settings', but at least MIN_PROBES: among a few large lists, one list's border cuts
    through too many of the best rows. With `ivf_storage` float16 the lists hold each
    vector in half the bytes (`IndexIVFScalarQuantizer`, QT_fp16): a search is bound by the
    bytes it reads, and the scores are rounded (also those of a selective filter, read from
    the same storage)."""

    def _make(self, vectors: np.ndarray) -> Any:
        settings = self.settings
        self.lists = max(1, min(settings.ivf_lists, len(vectors) // MIN_ROWS_PER_LIST))
        share = -(-settings.ivf_probes * self.lists // settings.ivf_lists)
        self.probes = min(self.lists, max(share, min(MIN_PROBES, settings.ivf_probes)))
        # The index holds a pointer to its coarse quantizer only: keep the object alive.
        self._centres = faiss.IndexFlatIP(self.dimension)
        lists: Any
        if settings.ivf_storage == "float16":
            kind = "IVF-float16"
            lists = faiss.IndexIVFScalarQuantizer(
                self._centres,
                self.dimension,
                self.lists,
                faiss.ScalarQuantizer.QT_fp16,
                faiss.METRIC_INNER_PRODUCT,
            )
        else:
            kind = "IVF-flat"
            lists = faiss.IndexIVFFlat(
                self._centres, self.dimension, self.lists, faiss.METRIC_INNER_PRODUCT
            )
        self.description = f"approximate (faiss {kind}, {self.probes} of {self.lists} lists)"
        if len(vectors):
            lists.train(vectors)
        # Entry -> (list, offset), so that a selective filter can read the stored vectors.
        lists.make_direct_map()
        return lists

    def _parameters(self, selector: faiss.IDSelector, k: int) -> Any:
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.probes)  # type: ignore[call-arg]

    def _vectors_of(self, entries: np.ndarray) -> np.ndarray:
        return np.asarray(self._index.reconstruct_batch(entries.astype(np.int64)))


def build_index(vectors: np.ndarray, settings: IndexSettings) -> VectorIndex:
    """The exact index below `settings.exact_below` rows, the approximate one of
    `settings.approximate` from there."""
    if len(vectors) < settings.exact_below:
        return ExactIndex(vectors)
    if settings.approximate == "hnsw":
        return HnswIndex(vectors, settings)
    return IvfIndex(vectors, settings)


def extend_index(
    previous: VectorIndex | None,
    previous_vectors: np.ndarray | None,
    vectors: np.ndarray,
    settings: IndexSettings,
) -> VectorIndex:
    """The index of `vectors`, reusing `previous` (the index of `previous_vectors`) when
    `vectors` only changes and appends rows to them and stays on the same side of the
    threshold: changed rows are replaced, new rows added, nothing rebuilt. Otherwise a new
    index is built. `previous` is changed in place when reused."""
    if (
        previous is None
        or previous_vectors is None
        or len(previous_vectors) > len(vectors)
        or len(previous) != len(previous_vectors)
        or (len(vectors) < settings.exact_below) != isinstance(previous, ExactIndex)
        or previous_vectors.shape[1:] != vectors.shape[1:]
    ):
        return build_index(vectors, settings)
    old = len(previous_vectors)
    changed = np.flatnonzero(np.any(previous_vectors != vectors[:old], axis=1))
    if len(changed):
        previous.replace(changed, vectors[changed])
    if len(vectors) > old:
        previous.add(vectors[old:])
    return previous


def recall_at(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Share of the exact top rows that the approximate search found too."""
    if len(exact) == 0:
        return 1.0
    return len(set(exact.tolist()) & set(approximate.tolist())) / len(exact)
