"""Options built from the config dataclasses: every field an option, its default the field's."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from evorec.cli_options import config_options
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.platform.enums import enum_label
from evorec.v1 import interest_pb2, ranking_pb2


def _received(*args: str, omit: tuple[str, ...] = ()) -> tuple[EncoderConfig, TrainingConfig]:
    received = []
    app = typer.Typer()

    @app.command()
    @config_options(omit=omit)
    def command(name: str = "x", *, encoder: EncoderConfig, training: TrainingConfig) -> None:
        received.append((encoder, training))

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return received[0]


def test_no_options_give_the_dataclass_defaults() -> None:
    assert _received() == (EncoderConfig(), TrainingConfig())


def test_each_option_sets_its_field() -> None:
    encoder, training = _received(
        "--patience", "3", "--heads", "2", "--no-mask-seen", "--loss", "sampled"
    )
    assert encoder == EncoderConfig(heads=2)
    assert training == TrainingConfig(patience=3, mask_seen=False, loss="sampled")


def test_every_field_but_the_model_name_is_an_option() -> None:
    app = typer.Typer()

    @app.command()
    @config_options()
    def command(*, encoder: EncoderConfig, training: TrainingConfig) -> None:
        pass

    output = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for config in (EncoderConfig, TrainingConfig):
        for field in dataclasses.fields(config):
            option = "--" + field.name.replace("_", "-")
            assert (option in output) == (field.name not in ("kind", "use_text")), option


def test_an_omitted_field_keeps_its_default() -> None:
    app = typer.Typer()

    @app.command()
    @config_options(omit=("seed",))
    def command(*, training: TrainingConfig) -> None:
        pass

    assert CliRunner().invoke(app, ["--seed", "3"]).exit_code != 0


@pytest.mark.parametrize("momentum", ["-0.5", "1", "1.5"])
def test_a_weight_average_outside_0_to_1_is_a_usage_error(momentum: str) -> None:
    app = typer.Typer()

    @app.command()
    @config_options()
    def command(*, training: TrainingConfig) -> None:
        pass

    result = CliRunner().invoke(app, ["--weight-average", momentum], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "weight_average must be in [0, 1)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--epochs", "0", "--epochs must be at least 1, not 0"),
        ("--batch-size", "0", "--batch-size must be at least 1, not 0"),
        ("--dim", "0", "--dim must be at least 1, not 0"),
        ("--max-len", "-1", "--max-len must be at least 1, not -1"),
        ("--members", "0", "--members must be at least 1, not 0"),
        ("--sampled-negatives", "0", "--sampled-negatives must be at least 1, not 0"),
        ("--warmup-steps", "-5", "--warmup-steps must be at least 0, not -5"),
        ("--learning-rate", "0", "--learning-rate must be above 0, not 0.0"),
        ("--dropout", "1", "--dropout must be in [0, 1), not 1.0"),
    ],
)
def test_a_size_count_or_rate_that_makes_no_sense_is_a_usage_error_naming_it(
    option: str, value: str, message: str
) -> None:
    """Zero epochs would export an untrained model; a zero batch size fails deep inside."""
    app = typer.Typer()

    @app.command()
    @config_options()
    def command(*, encoder: EncoderConfig, training: TrainingConfig) -> None:
        pass

    result = CliRunner().invoke(app, [option, value], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_weight_average_within_0_to_1_is_taken() -> None:
    assert _received("--weight-average", "0.99")[1] == TrainingConfig(weight_average=0.99)


def test_encoder_names() -> None:
    assert EncoderConfig().named("gru-text") == EncoderConfig(kind="gru", use_text=True)
    assert EncoderConfig(dim=8).named("lstm").name == "lstm"
    assert EncoderConfig(dim=8).named("lstm").dim == 8


def test_enum_labels_drop_the_type_prefix() -> None:
    source = ranking_pb2.CANDIDATE_SOURCE_ITEM_SIMILARITY
    assert enum_label(ranking_pb2.CandidateSource, source) == "item_similarity"
    method = interest_pb2.PREDICTION_METHOD_LAST_WINDOW
    assert enum_label(interest_pb2.PredictionMethod, method) == "last_window"
