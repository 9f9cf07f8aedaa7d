"""What defines an encoder and how it is trained: the one place their defaults live.

`evorec train`, `evorec evaluate`, `evorec up` and the scripts build their options from these
dataclasses (see `evorec.cli_options`), so a default changed here changes everywhere. The
module imports no TensorFlow, so the CLI can read it without loading a model runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

EncoderKind = Literal["transformer", "gru", "lstm"]
KINDS: tuple[EncoderKind, ...] = ("transformer", "gru", "lstm")
# Marks a field that a command sets in its own way (a model name), not as an option.
NOT_AN_OPTION = {"option": False}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _at_least(config: object, low: float, *names: str) -> None:
    """Refuses a field below `low`: a zero or negative size, count or rate fails late and
    obscurely (range() with a zero step) or not at all (zero epochs export an untrained
    model), so it is named here, as the option that sets it."""
    for name in names:
        value = getattr(config, name)
        if value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, not {value}")


def _share(config: object, *names: str) -> None:
    """Refuses a dropout share outside [0, 1): 1 drops everything."""
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), not {value}")


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a sequence encoder."""

    kind: EncoderKind = field(default="transformer", metadata=NOT_AN_OPTION)
    use_text: bool = field(default=True, metadata=NOT_AN_OPTION)
    dim: int = field(default=64, metadata=_help("Width of item and user vectors."))
    max_len: int = field(default=200, metadata=_help("The newest this many items are encoded."))
    blocks: int = field(default=2, metadata=_help("Transformer blocks (recurrent layers)."))
    heads: int = field(default=1, metadata=_help("Attention heads (dim must divide by it)."))
    dropout: float = field(default=0.2, metadata=_help("Dropout inside the encoder."))
    id_dropout: float = field(
        default=0.1, metadata=_help("Share of items whose id embedding a step hides (text only).")
    )
    members: int = field(
        default=1,
        metadata=_help(
            "Independently seeded encoders whose logits are averaged, served as one model "
            "(K x the training time; see evorec.encoder.ensemble)."
        ),
    )

    def __post_init__(self) -> None:
        _at_least(self, 1, "dim", "max_len", "blocks", "heads", "members")
        _share(self, "dropout", "id_dropout")

    @property
    def name(self) -> str:
        """`transformer-text`, `lstm`, ...: the kind, and whether items carry text."""
        return f"{self.kind}-text" if self.use_text else self.kind

    def named(self, name: str) -> EncoderConfig:
        """This architecture as the encoder `name` (`gru-text`, `transformer`, ...)."""
        kind, _, text = name.partition("-")
        if kind not in KINDS or text not in ("", "text"):
            raise ValueError(f"unknown encoder {name!r}: use one of {', '.join(KINDS)}[-text]")
        return replace(self, kind=kind, use_text=text == "text")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingConfig:
    """How an encoder is fitted."""

    epochs: int = field(default=200, metadata=_help("Most epochs of training."))
    batch_size: int = field(default=64, metadata=_help("Sequences per step."))
    learning_rate: float = field(default=1e-3, metadata=_help("AdamW's rate after warm-up."))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW's weight decay."))
    warmup_steps: int = field(default=100, metadata=_help("Steps of linear warm-up."))
    patience: int = field(
        default=20,
        metadata=_help(
            "Stop after this many epochs without a better valid NDCG@10 (after the warm-up)."
        ),
    )
    loss: Literal["full", "sampled"] = field(
        default="full", metadata=_help("full (softmax over the catalog) or sampled.")
    )
    sampled_negatives: int = field(default=1000, metadata=_help("Negatives of the sampled loss."))
    mask_seen: bool = field(
        default=True, metadata=_help("Leave each position's seen items out of the full softmax.")
    )
    weight_average: float = field(
        default=0.0,
        metadata=_help(
            "Validate and keep an exponential moving average of the weights, with this "
            "momentum per step (0: the weights themselves)."
        ),
    )
    seed: int = field(default=0, metadata=_help("Seed of weights, order and dropout."))

    def __post_init__(self) -> None:
        _at_least(self, 1, "epochs", "batch_size", "sampled_negatives")
        _at_least(self, 0, "patience", "warmup_steps", "weight_decay")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be above 0, not {self.learning_rate}")
        # Keras would take a negative momentum as no average, freeze the weights at 1 and
        # fail only above it: each a silent or late surprise, so refuse them here.
        if not 0.0 <= self.weight_average < 1.0:
            raise ValueError(
                f"weight_average must be in [0, 1) (0: no average), not {self.weight_average}"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
