"""The settings of evorec.vector_index, apart from it so that reading the settings does not
load faiss in services that search nothing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from evorec.platform.section import Section


class IndexSettings(Section):
    """How item vectors are searched (`EVOREC_INDEX__...`), by ranking and embedding alike."""

    # Tables (and filtered subsets) with fewer rows than this are searched exactly; the
    # default is measured on trained item tables on the 2-core machine (BENCHMARKS.md,
    # "Large catalogs": scripts/bench_vector_index.py --trained).
    exact_below: int = Field(default=50_000, ge=1)
    # The approximate index from exact_below rows: ivf (faiss IVF-flat, the default: its
    # recall on trained item tables is what the graph's is not) or hnsw (faiss's graph).
    approximate: Literal["ivf", "hnsw"] = "ivf"
    # IVF: lists k-means splits the table into, and lists a search reads; the share read,
    # probes / lists, sets recall and cost (0.19 of the table: recall@10 >= 0.95 measured).
    ivf_lists: int = Field(default=256, ge=1, le=65_536)
    ivf_probes: int = Field(default=48, ge=1, le=65_536)
    # IVF: how the lists store each vector: float32 (the scores returned are exact) or
    # float16 (faiss's scalar quantiser: half the bytes read and held; a search cost 0.62
    # of float32's at a million trained rows for 0.002 less recall@10, but every score
    # returned, SimilarItems' included, is rounded to about three significant digits).
    ivf_storage: Literal["float32", "float16"] = "float32"
    # HNSW graph degree (faiss's M): more links, better recall, more memory and build time.
    hnsw_links: int = Field(default=16, ge=4, le=256)
    # Candidates kept while building (efConstruction) and searching (efSearch; at least k).
    ef_construction: int = Field(default=64, ge=8, le=4096)
    ef_search: int = Field(default=128, ge=8, le=4096)

    @model_validator(mode="after")
    def _probes_within_lists(self) -> IndexSettings:
        if self.ivf_probes > self.ivf_lists:
            raise ValueError(
                f"ivf_probes ({self.ivf_probes}) must not exceed ivf_lists ({self.ivf_lists})"
            )
        return self
