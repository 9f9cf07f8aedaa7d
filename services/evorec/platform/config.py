"""Configuration: embedded defaults, overridden by an optional TOML file, overridden by
`EVOREC_...` environment variables (nested fields with `__`, e.g. `EVOREC_RANKING__PORT`).

Everything is validated when a process starts; a bad value stops it with a message that
names the setting, in both its environment and its file spelling.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "EVOREC_"
CONFIG_FILE_ENV = "EVOREC_CONFIG_FILE"
MIB = 1024 * 1024
# Each service's ports when nothing else is said.
DEFAULT_PORTS: dict[str, dict[str, int]] = {
    "preprocess": {"port": 50051, "metrics_port": 9101},
    "embedding": {"port": 50052, "metrics_port": 9102},
    "interest": {"port": 50053, "metrics_port": 9103},
    "ranking": {"port": 50054, "metrics_port": 9104},
}


class ConfigError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Section):
    """Where one service listens for gRPC and serves its Prometheus metrics."""

    host: str = "127.0.0.1"
    # 0 asks the operating system for a free port (tests use it).
    port: int = Field(ge=0, le=65535)
    metrics_port: int = Field(ge=0, le=65535)

    @property
    def target(self) -> str:
        """The address a client dials."""
        return f"{self.host}:{self.port}"


class ServerSettings(_Section):
    """How every gRPC server behaves; the limits are explicit, never the library's defaults."""

    # In-flight calls get this long to finish after SIGTERM before they are cancelled.
    grace_period_s: float = Field(default=10.0, gt=0, le=300)
    max_receive_message_bytes: int = Field(default=16 * MIB, ge=1024, le=1024 * MIB)
    max_send_message_bytes: int = Field(default=16 * MIB, ge=1024, le=1024 * MIB)
    # Calls beyond this many at once are refused with RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = Field(default=1000, ge=1, le=100_000)
    keepalive_time_s: float = Field(default=60.0, gt=0)
    keepalive_timeout_s: float = Field(default=20.0, gt=0)
    # Clients may ping at most this often without data before the server drops them.
    min_client_ping_interval_s: float = Field(default=10.0, gt=0)
    max_connection_age_s: float = Field(default=1800.0, gt=0)


class ClientSettings(_Section):
    """How evorec calls services: deadlines and retries of idempotent calls."""

    # The deadline of a call whose caller gave none and that no inbound deadline bounds.
    default_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    # Attempts of an idempotent call that failed with UNAVAILABLE, first one included (gRPC
    # caps this at 5).
    retry_max_attempts: int = Field(default=4, ge=1, le=5)
    retry_initial_backoff_s: float = Field(default=0.05, gt=0)
    retry_max_backoff_s: float = Field(default=1.0, gt=0)
    retry_backoff_multiplier: float = Field(default=2.0, ge=1)


class InterestStateSettings(_Section):
    """The interest service's event store and profiles."""

    # full: SQLite fsyncs every commit, so an acknowledged event survives kill -9 and a power
    # cut; normal: it survives kill -9, and a power cut may lose the last commits (WAL mode).
    durability: Literal["full", "normal"] = "full"
    # Per user, only the newest this many events are kept...
    retention_max_events: int = Field(default=10_000, ge=1, le=10_000_000)
    # ...and, when set, only those younger than this many days.
    retention_max_age_days: float | None = Field(default=None, gt=0)
    # How often retention runs (in small steps between ingest batches).
    retention_interval_s: float = Field(default=5.0, gt=0)
    # Half-life of the time decay of the "current" interest distribution.
    half_life_days: float = Field(default=14.0, gt=0)
    # The short-term distribution is over this many most recent events.
    short_term_events: int = Field(default=20, ge=1, le=1000)
    # How often events stored without a topic (catalog unreachable) are looked up again.
    topic_backfill_interval_s: float = Field(default=30.0, gt=0)
    # Concurrent ingest calls are committed together, up to this many events at once.
    max_group_events: int = Field(default=20_000, ge=1, le=1_000_000)


class ServingSettings(_Section):
    """Where the ranking service gets its sequence encoder, and how it calls it."""

    # TF Serving's model base path: versions are <base_path>/<model_name>/<version>/. The
    # ranking service reads each version's bundle from here whichever backend runs the model.
    # Default: <data_dir>/models.
    base_path: Path | None = None
    model_name: str = Field(default="encoder", min_length=1)
    # in_process: the SavedModel loaded by the ranking service (no GPU, no extra server);
    # tf_serving: TensorFlow Serving's PredictionService at tf_serving_target.
    backend: Literal["in_process", "tf_serving"] = "in_process"
    tf_serving_target: str = "127.0.0.1:8500"
    signature_name: str = Field(default="serving_default", min_length=1)
    # Ask TF Serving for this version label (stable, canary); empty: the newest version
    # found under base_path.
    version_label: str = ""
    # How often base_path is checked for a new version (TF Serving polls the same way).
    poll_interval_s: float = Field(default=2.0, gt=0, le=3600)
    # User vectors of requests arriving within this window go to the model as one batch...
    batch_window_ms: float = Field(default=2.0, ge=0, le=1000)
    # ...of at most this many histories.
    max_batch_size: int = Field(default=64, ge=1, le=4096)
    # The longest wait for the encoder, whatever the inbound deadline leaves; beyond it the
    # answer comes from the other candidate sources.
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    # Older versions kept loaded beside the newest, for answers that name them.
    keep_versions: int = Field(default=1, ge=0, le=10)
    # Largest Predict response accepted from TF Serving.
    max_receive_message_bytes: int = Field(default=64 * MIB, ge=1024, le=1024 * MIB)

    def model_dir(self, data_dir: Path) -> Path:
        return (self.base_path or data_dir / "models") / self.model_name


class RecommendSettings(_Section):
    """How the ranking service builds an answer."""

    default_k: int = Field(default=10, ge=1, le=1000)
    # Default strength of the MMR diversity re-ranking, 0 (pure relevance) to 1.
    diversity: float = Field(default=0.2, ge=0, le=1)
    # The newest this many events of a user are read: all count as seen, the newest
    # max_len (the model's window) go to the encoder.
    history_events: int = Field(default=1000, ge=1, le=1000)
    # Each candidate source proposes at most this many items.
    candidates_per_source: int = Field(default=200, ge=10, le=100_000)
    # Weights of the sources in the blend (weighted reciprocal-rank fusion).
    weight_encoder: float = Field(default=1.0, ge=0)
    weight_item_similarity: float = Field(default=0.3, ge=0)
    weight_markov: float = Field(default=0.3, ge=0)
    weight_text_neighbours: float = Field(default=0.3, ge=0)
    weight_popularity: float = Field(default=0.1, ge=0)
    # How often the catalog's new and changed items are fetched from the embedding service.
    catalog_poll_interval_s: float = Field(default=2.0, gt=0, le=3600)
    # Text neighbours are reported degraded after this long without reaching it.
    catalog_stale_after_s: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    """All of evorec's settings. `evorec` reads them once, at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Where services keep their state (SQLite file, model bundles, item table).
    data_dir: Path = Path("evorec-data")
    # The prepared dataset the services load (`evorec data prepare` writes one). Default:
    # <data_dir>/datasets/default, which `evorec up` fills with synthetic data when empty.
    dataset: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line, for log collectors; text: for a person at a terminal.
    log_format: Literal["json", "text"] = "json"
    server: ServerSettings = ServerSettings()
    client: ClientSettings = ClientSettings()
    interest_state: InterestStateSettings = InterestStateSettings()
    serving: ServingSettings = ServingSettings()
    recommend: RecommendSettings = RecommendSettings()
    preprocess: Endpoint = Endpoint.model_validate(DEFAULT_PORTS["preprocess"])
    embedding: Endpoint = Endpoint.model_validate(DEFAULT_PORTS["embedding"])
    interest: Endpoint = Endpoint.model_validate(DEFAULT_PORTS["interest"])
    ranking: Endpoint = Endpoint.model_validate(DEFAULT_PORTS["ranking"])

    @model_validator(mode="before")
    @classmethod
    def _fill_endpoint_defaults(cls, data: Any) -> Any:
        """Lets one setting of an endpoint (`EVOREC_RANKING__PORT`) keep the others' defaults."""
        if isinstance(data, dict):
            for name, ports in DEFAULT_PORTS.items():
                if isinstance(data.get(name), dict):
                    data[name] = {**ports, **data[name]}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file arrives as init data; the environment overrides it.
        return env_settings, init_settings

    @property
    def dataset_path(self) -> Path:
        return self.dataset or self.data_dir / "datasets" / "default"

    def endpoint(self, service: str) -> Endpoint:
        """The endpoint of a service by its short name (`preprocess`, `ranking`, ...)."""
        value = getattr(self, service, None)
        if not isinstance(value, Endpoint):
            raise ConfigError(f"no service named {service!r}")
        return value


def load_settings(config_file: Path | None = None) -> Settings:
    """Reads and validates the settings; raises ConfigError naming the first bad ones.

    The file is `config_file`, else the one `EVOREC_CONFIG_FILE` names, else none.
    """
    path = config_file or (
        Path(os.environ[CONFIG_FILE_ENV]) if CONFIG_FILE_ENV in os.environ else None
    )
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        env_name = ENV_PREFIX + "__".join(location).upper()
        file_name = ".".join(location)
        where = f"{env_name} (or {file_name} in {path})" if path else env_name
        given = (
            f", got {error['input']!r}"
            if "input" in error and not isinstance(error["input"], dict)
            else ""
        )
        problems.append(f"invalid setting {where}: {error['msg']}{given}")
    return "; ".join(problems)
