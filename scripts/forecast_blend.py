"""Does lifting the topics a user's forecast moves into help the ranking? One small
Transformer with text is trained on a prepared dataset's leave-one-out training sequences and
exported, its candidate sources fitted on the same sequences; the real ranking path
(ItemSpace over the exported bundle + `recommend()`, default settings but `weight_forecast`)
then answers every test user (history: training sequence plus validation item; target: the
test item) with the forecast term off and at a few weights. Prints NDCG@10, HR@10, catalog
coverage and intra-list diversity (1 - mean text cosine within a list) for each weight.

    .venv/bin/python scripts/forecast_blend.py PREPARED [EPOCHS] [MAX_USERS] [--seed S]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.encoder.bundle import ModelBundle
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.export import export_model
from evorec.encoder.model import SequenceEncoder, left_padded
from evorec.encoder.training import Trainer
from evorec.evaluation.metrics import beyond_accuracy
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import Query, recommend
from evorec.ranking.settings import RecommendSettings

WEIGHTS = (0.0, 0.1, 0.3, 1.0)
K = 10


def user_vectors(model: SequenceEncoder, histories: list[np.ndarray]) -> np.ndarray:
    """The encoder's user vector after each history (what the serving signature returns)."""
    table = model.item_table(training=False)
    sequences = left_padded(histories, model.config.max_len)
    users = model.encode(tf.constant(sequences), table, training=False, last_only=True)
    return np.asarray(users[:, -1, :])


def measure(
    space: ItemSpace,
    histories: list[np.ndarray],
    vectors: np.ndarray,
    targets: np.ndarray,
    weight: float,
) -> dict[str, float]:
    """NDCG@10, HR@10 and the lists' coverage and diversity with the forecast term at `weight`."""
    settings = RecommendSettings(weight_forecast=weight)
    lists = np.zeros((len(histories), K), dtype=np.int64)
    gains = []
    for row, (history, vector, target) in enumerate(zip(histories, vectors, targets, strict=True)):
        query = Query(
            history=history,
            event_types=np.ones(len(history), np.int32),
            k=K,
            diversity=settings.diversity,
        )
        picked = [r.index for r in recommend(space, query, vector, settings).items]
        lists[row, : len(picked)] = picked
        gains.append(1 / np.log2(picked.index(target) + 2) if target in picked else 0.0)
    hits = np.array(gains) > 0
    beyond = beyond_accuracy(lists, space.n_model_items, space.popularity, space.text_vectors)
    return {
        "ndcg@10": float(np.mean(gains)),
        "hr@10": float(hits.mean()),
        "coverage": beyond["coverage"],
        "diversity": beyond["diversity"],
    }


def main(prepared: Path, epochs: int, max_users: int, seed: int) -> None:
    layout = DatasetLayout(prepared)
    data = LeaveOneOut.load(layout)
    config = EncoderConfig(dim=32, max_len=50, blocks=1, dropout=0.1)
    model = SequenceEncoder(data.n_items, config, np.load(layout.item_vectors), seed=seed)
    training = TrainingConfig(
        epochs=epochs, batch_size=64, warmup_steps=5, learning_rate=5e-3, seed=seed
    )
    Trainer(model, data, training).fit()
    with tempfile.TemporaryDirectory() as base:
        # The candidate sources from the training sequences, as `evorec evaluate` fits its
        # baselines: fitted on every event, they would hold each user's test transition.
        version = export_model(
            model, layout, Path(base), "encoder", {"metrics": {}}, 1, source_sequences=data.train
        )
        space = ItemSpace(ModelBundle.load(version), {})
    histories = data.test_input[:max_users]
    targets = data.test_target[:max_users]
    vectors = user_vectors(model, histories)
    print(f"{prepared.name}: {len(histories)} test users, {epochs} epochs, seed {seed}")
    print("weight_forecast  ndcg@10  hr@10  coverage  diversity")
    for weight in WEIGHTS:
        m = measure(space, histories, vectors, targets, weight)
        print(
            f"{weight:15.1f}  {m['ndcg@10']:.4f}  {m['hr@10']:.3f}  "
            f"{m['coverage']:.3f}     {m['diversity']:.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path)
    parser.add_argument("epochs", type=int, nargs="?", default=4)
    parser.add_argument("max_users", type=int, nargs="?", default=1000)
    parser.add_argument("--seed", type=int, default=0, help="The training seed.")
    arguments = parser.parse_args()
    main(arguments.prepared, arguments.epochs, arguments.max_users, arguments.seed)
