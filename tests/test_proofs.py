"""Quick runs of the proof suite's scripts (BENCHMARKS.md has the full runs): durability
(scripts/durability.py: a few SIGKILLs of the interest service under ingest), faults under
load (scripts/faults_under_load.py: a hung interest service and a hung model server under
Recommend load), overload (scripts/overload.py) and soak (scripts/soak.py) on a tiny stack;
and what they found. The proofs' scripts exit non-zero when a proof fails; the rows are
checked too, so that a script that measured nothing cannot pass."""

from __future__ import annotations

import asyncio
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest

from evorec.encoder.backends import Batcher
from evorec.interest.derived import recomputed_derived_state, stored_derived_state
from evorec.interest.records import NewEvent
from evorec.interest.store import EventStore
from evorec.platform import context
from tests.conftest import ROOT
from tests.script_runs import NUMBER, assert_rows, run_script, script_module


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_durability_quick() -> None:
    output = run_script("durability.py", "--rounds", "2", "--senders", "2", timeout=280)
    # Each round: events stored (all with a topic, the embedding service running), 0 lost,
    # 0 stored in part, derived rows equal to the recomputation (0 differing).
    rows = re.findall(
        rf"^\| \d+ \| {NUMBER} s \| ({NUMBER}) \| \d+ \| {NUMBER} s \| ({NUMBER}) \(({NUMBER})\)"
        rf" \| 0 \| 0 \| ({NUMBER}) \(0\) \|$",
        output,
        re.MULTILINE,
    )
    assert len(rows) == 2, output
    for acknowledged, stored, with_topic, derived in rows:
        count = int(acknowledged.replace(",", ""))
        assert count > 0
        assert int(stored.replace(",", "")) >= count
        assert with_topic == stored, "every event should have a real topic"
        assert int(derived.replace(",", "")) > 0
    assert "unexpected errors: 0" in output


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_hung_interest_service_or_model_server_degrades_recommend_not_fails_it() -> None:
    output = run_script(
        "faults_under_load.py", "--faults", "interest-pause,model-pause", "--rate", "20",
        "--down", "2", "--after", "3", "--settle", "2", "--users", "60", "--items", "300",
        "--events-per-user", "30", "--epochs", "1",
        timeout=380,
    )  # fmt: skip
    # Before the faults, on each path (model in process, TF Serving): full answers only.
    baseline = rf"\| none \(before the first fault\) \| {NUMBER} s \| {NUMBER} \| 0 \| 0 \| "
    baseline += rf"{NUMBER} ms \| - \|"
    lines = output.splitlines()
    assert [bool(re.fullmatch(baseline, line)) for line in lines if "| none" in line] == [
        True,
        True,
    ], output
    assert_rows(
        output,
        [
            # Answers from popularity while the interest service hangs: degraded, not failed.
            rf"\| interest-pause \| {NUMBER} s \| {NUMBER} \| 0 \| [1-9][\d,]* \(.*\) \| "
            rf"{NUMBER} ms \| (at once|{NUMBER} s) \|",
            # On the TF Serving path, a hung model server: answers without the encoder.
            rf"\| model-pause \| {NUMBER} s \| {NUMBER} \| 0 \| [1-9][\d,]* \(CANDIDATE_SOURCE_"
            rf"ENCODER {NUMBER}\) \| {NUMBER} ms \| (at once|{NUMBER} s) \|",
        ],
    )


TINY_STACK = ("--users", "60", "--items", "300", "--events-per-user", "30", "--workers", "4")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_overload_sheds_with_resource_exhausted_at_one_slot(tmp_path: Path) -> None:
    output = run_script(
        "overload.py", *TINY_STACK, "--seconds", "3", "--saturation-seconds", "2",
        "--ranking-server", "defaults", "--ranking-server", "max_in_progress=1",
        "--plot", str(tmp_path / "overload.png"), timeout=360,
    )  # fmt: skip
    counts = r"[\d,]+ of [\d,]+"
    assert_rows(
        output,
        [
            rf"\| (before|overload|after) \| (Recommend|IngestEvents) \| {NUMBER} \| {NUMBER} \|"
            rf" ({NUMBER}|nan) / ({NUMBER}|nan) \| {counts} \| .+ \| [\d,]+ \|",
            rf"\| 1 \| [\d,]+ \| ({NUMBER}|nan) / ({NUMBER}|nan) \| [\d,]+ \| .+ \| {NUMBER} \|",
            rf"\| ranking \| {NUMBER} \| {NUMBER} \| {NUMBER} \|",
        ],
    )
    usual = r"^\(Before the overload, [\d.]+ Recommend calls a second failed or took more"
    assert len(re.findall(usual, output, re.MULTILINE)) == 2, output
    recovered = r"^Recovered ([\d,]+ ms after the drop: the last|at once: no) Recommend (that|due)"
    assert len(re.findall(recovered, output, re.MULTILINE)) == 2, output
    pauses = r"\(the load's own full garbage collections while it ran: [\d,]+(, longest .+ ms)?\):$"
    assert len(re.findall(r"^ranking with .+ " + pauses, output, re.MULTILINE)) == 2, output
    limited = output.split("ranking with server.max_in_progress = 1 (")[1]
    overload = next(line for line in limited.splitlines() if line.startswith("| overload | Rec"))
    assert re.search(r"RESOURCE_EXHAUSTED [\d,]+", overload), overload
    assert (tmp_path / "overload.png").stat().st_size > 0


def test_recovery_is_when_the_last_slow_or_failed_call_was_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # the scripts import each other
    call = script_module("load_stack").Call
    calls = [
        call(9.0, "Recommend", 5.0, "OK"),  # before the drop (at 10 s): not counted
        call(10.1, "Recommend", 0.05, "OK"),  # slower than twice the p99 before (20 ms)
        call(10.2, "Recommend", 0.001, "CANCELLED"),  # failed
        call(10.3, "Recommend", 0.03, "OK"),  # within twice the p99 before
    ]
    recovered_after = script_module("overload").recovered_after
    assert recovered_after(calls, 10.0, 0.02) == pytest.approx(0.2)
    assert recovered_after(calls[3:], 10.0, 0.02) == 0.0
    slow_or_failed = script_module("overload").slow_or_failed
    assert slow_or_failed(calls, 10.0, 11.0, 0.02) == 2
    assert slow_or_failed(calls, 9.0, 10.0, 0.02) == 1
    assert slow_or_failed(calls, 10.25, 11.0, 0.02) == 0


def test_failures_count_together_the_calls_one_bound_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    call = script_module("load_stack").Call
    delay = "overloaded: waited {} ms for a slot behind a standing queue: retry later"
    calls = [
        call(1.0, "Recommend", 0.01, "OK"),
        call(1.1, "Recommend", 0.2, "RESOURCE_EXHAUSTED", details=delay.format(12)),
        call(1.2, "Recommend", 0.3, "RESOURCE_EXHAUSTED", details=delay.format(250)),
        call(1.3, "IngestEvents", 2.0, "DEADLINE_EXCEEDED", details="Deadline Exceeded"),
    ]
    assert script_module("load_stack").failures(calls) == [
        f"| Recommend | RESOURCE_EXHAUSTED | {delay.format('N')} | 2 |",
        "| IngestEvents | DEADLINE_EXCEEDED | Deadline Exceeded | 1 |",
    ]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_soak(tmp_path: Path) -> None:
    output = run_script(
        "soak.py", *TINY_STACK, "--minutes", "0.2", "--saturation-seconds", "2",
        "--plot", str(tmp_path / "soak.png"), timeout=360,
    )  # fmt: skip
    said = r"degraded Recommend answers: [\d,]+; the load's own full garbage collections"
    assert re.search(rf"^calls: [\d,]+; failed: [\d,]+ \(.+\); {said}", output, re.M), output
    latency = rf"({NUMBER}|nan) / ({NUMBER}|nan)"
    assert_rows(
        output,
        [
            rf"\| 0 \| [\d,]+ \| {latency} \| {latency} \| {latency} \| .+ \|",
            # Memory per window: each service's, then the interest service's SQLite heap.
            rf"\| 0 \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|",
            rf"\| (preprocess|embedding|interest|ranking) \| {NUMBER} \| {NUMBER} \|"
            rf" [+-]{NUMBER} \| {NUMBER} \|",
        ],
    )
    heap = rf"first window {NUMBER}, last window {NUMBER}, growth [+-]{NUMBER}, peak {NUMBER}"
    assert re.search(rf"^The interest service's SQLite heap .+: {heap}$", output, re.M), output
    assert (tmp_path / "soak.png").stat().st_size > 0


async def test_the_batcher_does_not_carry_the_first_callers_deadline() -> None:
    """Found by faults_under_load.py: the batching worker, started by the first request,
    kept that request's deadline in its context, so that on the TF Serving path (whose client
    cuts each call to the inbound deadline) every later Predict had no time left and every
    answer came without the encoder."""
    seen: list[float | None] = []

    async def run(
        history: np.ndarray, length: np.ndarray, version: int, limit: float | None
    ) -> tuple[np.ndarray, int]:
        seen.append(context.remaining_seconds())
        return np.zeros((len(history), 2), np.float32), version

    batcher = Batcher(run, max_batch=8, window_s=0)
    token = context.deadline.set(time.monotonic() + 0.05)
    await batcher.user_vector(np.array([1]), 1, 1.0)
    context.deadline.reset(token)
    await asyncio.sleep(0.1)
    await batcher.user_vector(np.array([1]), 1, 1.0)
    await batcher.close()
    assert seen == [None, None]


def test_the_recomputed_derived_state_matches_the_store_and_sees_a_wrong_row(
    tmp_path: Path,
) -> None:
    """The durability proof's yardstick: equal to what the store keeps after in-order,
    out-of-order and topic-less writes; a single count changed is found."""
    store = EventStore(tmp_path / "events.sqlite")
    rng = random.Random(3)

    def event(number: int, time: float) -> NewEvent:
        topic = rng.choice(["t1", "t2", "t3", None])
        return NewEvent(
            number, f"e{number}", f"u{number % 3}", f"i{number}", 1, None, "", time, 0.0,
            topic, False,
        )  # fmt: skip

    store.write([event(n, 1_000.0 + n * 3_600) for n in range(40)])
    store.write([event(n, rng.uniform(1_000.0, 150_000.0)) for n in range(40, 80)])
    connection = store.reader
    assert stored_derived_state(connection) == recomputed_derived_state(connection)
    assert len(recomputed_derived_state(connection)["topic_transitions"]) > 3
    user, day, topic, _ = sorted(stored_derived_state(connection)["topic_days"])[0]
    with store.db.conn:
        store.db.conn.execute(
            "UPDATE topic_days SET count = count + 1 WHERE user_id=? AND day=? AND topic_id=?",
            (user, day, topic),
        )
    stored, recomputed = stored_derived_state(connection), recomputed_derived_state(connection)
    assert len(stored["topic_days"] ^ recomputed["topic_days"]) == 2
    assert all(stored[t] == recomputed[t] for t in stored if t != "topic_days")
    store.close()
