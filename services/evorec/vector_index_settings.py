"""The settings of evorec.vector_index, apart from it so that reading the settings does not
load faiss in services that search nothing."""

from __future__ import annotations

from pydantic import Field

from evorec.platform.section import Section


class IndexSettings(Section):
    """How item vectors are searched (`EVOREC_INDEX__...`), by ranking and embedding alike."""

    # Tables (and filtered subsets) with fewer rows than this are searched exactly; the
    # default is the measured crossover on the 2-core machine (scripts/bench_vector_index.py).
    exact_below: int = Field(default=50_000, ge=1)
    # HNSW graph degree (faiss's M): more links, better recall, more memory and build time.
    hnsw_links: int = Field(default=16, ge=4, le=256)
    # Candidates kept while building (efConstruction) and searching (efSearch; at least k).
    ef_construction: int = Field(default=64, ge=8, le=4096)
    ef_search: int = Field(default=128, ge=8, le=4096)
