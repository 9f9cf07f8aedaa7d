"""`evorec tune` on the simulated dataset, and the presets that `evorec train`/`evaluate` read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evorec import model_cli
from evorec.cli import app
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.presets import PresetError, apply_preset, read_preset, write_preset


@pytest.fixture
def dataset(prepared: Path, tmp_path: Path) -> Path:
    """A writable copy of the prepared simulated dataset (tune writes into its folder)."""
    copy = tmp_path / "dataset"
    shutil.copytree(prepared, copy)
    return copy


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 40 s of CPU; minutes on a loaded shared machine
def test_a_short_study_beats_a_bad_start_on_validation_only(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evorec.encoder.training import Trainer

    splits: list[str] = []
    evaluate = Trainer.evaluate

    def recorded(self: Trainer, split: Any) -> dict[str, float]:
        splits.append(split)
        return evaluate(self, split)

    monkeypatch.setattr(Trainer, "evaluate", recorded)
    # The start: a learning rate far too small to learn anything in 8 epochs.
    result = _invoke(
        "tune", str(dataset), "--trials", "4", "--study", "short", "--preset", "best",
        "--learning-rate", "1e-5", "--epochs", "8", "--patience", "8", "--dim", "32",
        "--max-len", "50", "--blocks", "1", "--batch-size", "32", "--warmup-steps", "5",
        "--search", "learning_rate,weight_decay",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(splits) == {"valid"}  # the test split is never scored
    rows = (dataset / "tuning" / "short" / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    import optuna

    study = optuna.load_study(
        study_name="short", storage=f"sqlite:///{dataset / 'tuning' / 'studies.db'}"
    )
    start = study.trials[0]
    assert start.params["learning_rate"] == pytest.approx(1e-5)
    assert start.user_attrs["seed"] == 0
    assert study.best_value > start.value + 0.01, study.trials_dataframe().to_string()
    preset = read_preset(dataset, "best")
    assert preset["training"]["learning_rate"] == pytest.approx(study.best_params["learning_rate"])
    assert preset["source"]["trial"] == study.best_trial.number
    assert preset["source"]["valid"]["ndcg@10"] == pytest.approx(study.best_value)
    for plot in ("study.png", "parameters.png"):
        assert (dataset / "tuning" / "short" / plot).read_bytes()[:4] == b"\x89PNG"

    # Resuming adds trials to the same study; other fixed settings are refused.
    resumed = _invoke(
        "tune", str(dataset), "--trials", "1", "--study", "short", "--preset", "best",
        "--learning-rate", "1e-5", "--epochs", "8", "--patience", "8", "--dim", "32",
        "--max-len", "50", "--blocks", "1", "--batch-size", "32", "--warmup-steps", "5",
        "--search", "learning_rate,weight_decay",
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert len(optuna.load_study(study_name="short", storage=study._storage).trials) == 5
    (dataset / "presets" / "best.json").unlink()
    reported = _invoke(
        "tune", str(dataset), "--report-only", "--study", "short", "--preset", "best",
        "--learning-rate", "1e-5", "--epochs", "8", "--patience", "8", "--dim", "32",
        "--max-len", "50", "--blocks", "1", "--batch-size", "32", "--warmup-steps", "5",
        "--search", "learning_rate,weight_decay",
    )  # fmt: skip
    assert reported.exit_code == 0, reported.output
    assert len(optuna.load_study(study_name="short", storage=study._storage).trials) == 5
    assert read_preset(dataset, "best")["source"]["trials"] == 5
    changed = _invoke(
        "tune", str(dataset), "--trials", "1", "--study", "short", "--epochs", "9",
        "--learning-rate", "1e-5", "--search", "learning_rate,weight_decay",
    )  # fmt: skip
    assert changed.exit_code != 0
    assert "other fixed settings" in changed.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--trials", "0"), "at least one trial"),
        (("--minutes", "0"), "positive number of minutes"),
        ((), "give a budget"),
        (("--trials", "2", "--dim", "48"), "outside the search space"),
        (("--trials", "2", "--preset", "../x"), "preset name"),
        (("--trials", "2", "--search", "dim,width"), "unknown settings width"),
        (("--report-only",), "no study 'transformer-text' to report on"),
    ],
)
def test_tune_refuses_bad_input(dataset: Path, args: tuple[str, ...], message: str) -> None:
    result = _invoke("tune", str(dataset), *args)
    assert result.exit_code != 0
    assert message in result.output
    assert not (dataset / "presets").exists()
    assert not (dataset / "tuning" / "studies.db").exists()


def test_tune_refuses_a_folder_that_is_no_prepared_dataset(tmp_path: Path) -> None:
    result = _invoke("tune", str(tmp_path / "nowhere"), "--trials", "1")
    assert result.exit_code != 0
    assert "not a prepared dataset" in result.output


def test_train_reads_a_preset_and_explicit_options_override_it(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_preset(
        dataset, "tuned", {"dim": 128, "blocks": 3, "dropout": 0.3},
        {"learning_rate": 0.004, "loss": "sampled"}, {"study": "by hand"},
    )  # fmt: skip
    received: list[tuple[EncoderConfig, TrainingConfig]] = []
    monkeypatch.setattr(
        model_cli, "train_and_export",
        lambda layout, encoder, training, *rest: received.append((encoder, training)),
    )  # fmt: skip
    result = _invoke("train", str(dataset), "--preset", "tuned", "--blocks", "1", "--epochs", "7")
    assert result.exit_code == 0, result.output
    encoder, training = received[0]
    assert (encoder.dim, encoder.blocks, encoder.dropout) == (128, 1, 0.3)
    assert (training.learning_rate, training.loss, training.epochs) == (0.004, "sampled", 7)
    assert encoder.heads == EncoderConfig().heads  # neither preset nor option: the default
    # An option given at its default value still wins over the preset.
    _invoke("train", str(dataset), "--preset", "tuned", "--dim", "64")
    assert received[1][0].dim == 64


def test_preset_errors_are_clear(dataset: Path) -> None:
    with pytest.raises(PresetError, match="presets of this dataset: none"):
        read_preset(dataset, "missing")
    write_preset(dataset, "one", {"dim": 32}, {}, {})
    with pytest.raises(PresetError, match="presets of this dataset: one"):
        read_preset(dataset, "other")
    (dataset / "presets" / "bad.json").write_text(json.dumps({"encoder": {"width": 3}}))
    with pytest.raises(PresetError, match="unknown encoder settings width"):
        read_preset(dataset, "bad")
    (dataset / "presets" / "typed.json").write_text(json.dumps({"training": {"epochs": "many"}}))
    with pytest.raises(PresetError, match=r"training\.epochs = 'many' is not of type int"):
        read_preset(dataset, "typed")
    with pytest.raises(PresetError, match="unknown encoder settings kind"):
        write_preset(dataset, "kind", {"kind": "lstm"}, {}, {})
    result = _invoke("evaluate", str(dataset), "--models", "popular", "--preset", "missing")
    assert result.exit_code != 0


def test_apply_preset_keeps_explicit_options() -> None:
    preset = {"encoder": {"dim": 32}, "training": {"learning_rate": 0.01, "patience": 5}}
    encoder, training = apply_preset(preset, EncoderConfig(), TrainingConfig(), {"patience"})
    assert encoder.dim == 32
    assert (training.learning_rate, training.patience) == (0.01, TrainingConfig().patience)
