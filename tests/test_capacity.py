"""scripts/capacity.py's rules on hand-made figures: each count is the load over a replica's
planned share of its measured rate, rounded up."""

from __future__ import annotations

import math

import pytest

from tests.script_runs import script_module

capacity = script_module("capacity")

INTEREST = {
    "batch_events_per_s": 10_000.0,
    "stream_events_per_s": 12_000.0,
    "recent_p50_ms": 2.0,
    "database_mib": 100.0,
    "stored_events": 1_000_000,
}


def test_a_ranking_replica_keeps_the_share_measured_at_the_next_larger_catalog() -> None:
    share = capacity.RECOMMEND_SHARE_BY_ITEMS
    assert capacity.catalog_share(5_000) == 1.0
    assert capacity.catalog_share(10_000) == 1.0
    assert capacity.catalog_share(10_001) == share[100_000]
    assert capacity.catalog_share(1_000_000) == share[1_000_000]
    # Beyond the largest measured catalog the cost grows with the items.
    assert capacity.catalog_share(4_000_000) == pytest.approx(share[1_000_000] / 4)
    assert 1.0 > share[100_000] > share[1_000_000] > 0


def test_the_plan_divides_each_load_by_a_planned_share_of_the_measured_rate() -> None:
    rows = capacity.plan(
        INTEREST,
        events_per_s=12_000,
        recommendations_per_s=600,
        users=1_000_000,
        events_per_user=100,
        items=10_000,
        recommend_per_replica=100.0,
        model_users_per_s=500.0,
    )
    counts = {what: count for what, count, _ in rows}
    # 600 / (100 x 0.6) = 10 replicas; 600 / (500 x 0.6) = 2 model servers.
    assert counts["ranking replicas (2 cores each)"] == "10"
    assert counts["model servers (2 CPU cores each; user vectors)"] == "2"
    # Ingest: 12,000 / (10,000 x 0.6) -> 2; disk: 100 M events x 104.9 bytes = 9.8 GiB -> 1;
    # reads: 600 / (500 x 0.6) -> 2.
    assert counts["interest shards (by user)"] == "2"
    # The same load over a million items needs more ranking replicas, not more model servers.
    large = {
        what: count
        for what, count, _ in capacity.plan(
            INTEREST, 12_000, 600, 1_000_000, 100, 1_000_000, 100.0, 500.0
        )
    }
    share = capacity.RECOMMEND_SHARE_BY_ITEMS[1_000_000]
    assert large["ranking replicas (2 cores each)"] == str(math.ceil(600 / (100 * share * 0.6)))
    assert large["model servers (2 CPU cores each; user vectors)"] == "2"
