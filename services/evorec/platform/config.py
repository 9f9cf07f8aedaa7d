"""Configuration: embedded defaults, overridden by an optional TOML file, overridden by
`EVOREC_...` environment variables (nested fields with `__`, e.g. `EVOREC_RANKING__PORT`).

The settings every service shares (endpoints, server limits, client deadlines and retries)
are defined here; each service's own settings are defined beside it (`interest.settings`,
`ranking.settings`, `encoder.settings`, `learning.settings`) and composed here into one
`Settings`.

Everything is validated when a process starts; a bad value stops it with a message that
names the setting, in both its environment and its file spelling.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from evorec.encoder.settings import ServingSettings
from evorec.interest.settings import InterestStateSettings
from evorec.learning.settings import RetrainSettings
from evorec.platform.section import MIB, Section
from evorec.platform.tls import TlsSettings
from evorec.ranking.settings import RecommendSettings
from evorec.vector_index_settings import IndexSettings

ENV_PREFIX = "EVOREC_"
CONFIG_FILE_ENV = "EVOREC_CONFIG_FILE"
# Each service's ports when nothing else is said.
DEFAULT_PORTS: dict[str, dict[str, int]] = {
    "preprocess": {"port": 50051, "metrics_port": 9101},
    "embedding": {"port": 50052, "metrics_port": 9102},
    "interest": {"port": 50053, "metrics_port": 9103},
    "ranking": {"port": 50054, "metrics_port": 9104},
}


class ConfigError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""


class Endpoint(Section):
    """Where one service listens for gRPC and serves its Prometheus metrics."""

    host: str = "127.0.0.1"
    # 0 asks the operating system for a free port (tests use it).
    port: int = Field(ge=0, le=65535)
    metrics_port: int = Field(ge=0, le=65535)
    # A second, plaintext gRPC port on the same host that serves only grpc.health.v1, for
    # Kubernetes' native gRPC probes (they do not speak TLS). Unset: no such port.
    health_port: int | None = Field(default=None, ge=0, le=65535)

    @property
    def target(self) -> str:
        """The address a client dials."""
        return f"{self.host}:{self.port}"


class ServerSettings(Section):
    """How every gRPC server behaves; the limits are explicit, never the library's defaults."""

    # In-flight calls get this long to finish after SIGTERM before they are cancelled.
    grace_period_s: float = Field(default=10.0, gt=0, le=300)
    max_receive_message_bytes: int = Field(default=16 * MIB, ge=1024, le=1024 * MIB)
    max_send_message_bytes: int = Field(default=16 * MIB, ge=1024, le=1024 * MIB)
    # Calls (streams included) beyond this many at once are refused with RESOURCE_EXHAUSTED.
    # Calls the process's event loop has not taken yet wait in gRPC core's queue, first in
    # first out; from max_pending_soft waiting there, core refuses arriving calls at a rising
    # rate, all of them from max_pending (random early detection), at no cost to the event
    # loop (the caller sees CANCELLED: core resets the stream).
    max_concurrent_rpcs: int = Field(default=1000, ge=1, le=100_000)
    # gRPC's own defaults are 1,000 and 3,000: about a deadline's worth of stale calls under
    # overload, which a server must then work through first (BENCHMARKS.md, "Overload").
    max_pending_soft: int = Field(default=64, ge=0, le=100_000)
    max_pending: int = Field(default=256, ge=1, le=100_000)
    # Unary calls worked on at once; the others wait, at most max_waiting of them, and are
    # shed with RESOURCE_EXHAUSTED when they could no longer be answered in time
    # (evorec.platform.admission).
    max_in_progress: int = Field(default=64, ge=1, le=100_000)
    # ... and at most this many (and at most max_in_progress) while calls are shed from a
    # standing queue (below), so that the event loop keeps taking calls from gRPC core.
    standing_in_progress: int = Field(default=8, ge=1, le=100_000)
    max_waiting: int = Field(default=1000, ge=0, le=100_000)
    # Once calls have waited for a slot without a break for queue_interval_s, one that has
    # waited longer than queue_target_s (or than its method's typical time, up to
    # queue_interval_s, where that is longer) is shed instead of started (controlled delay).
    queue_target_s: float = Field(default=0.005, ge=0, le=60)
    queue_interval_s: float = Field(default=0.1, gt=0, le=60)
    keepalive_time_s: float = Field(default=60.0, gt=0)
    keepalive_timeout_s: float = Field(default=20.0, gt=0)
    # Clients may ping at most this often without data before the server drops them.
    min_client_ping_interval_s: float = Field(default=10.0, gt=0)
    max_connection_age_s: float = Field(default=1800.0, gt=0)

    @model_validator(mode="after")
    def _pending_soft_within_hard(self) -> ServerSettings:
        if self.max_pending_soft > self.max_pending:
            raise ValueError(
                f"EVOREC_SERVER__MAX_PENDING_SOFT (server.max_pending_soft), "
                f"{self.max_pending_soft}, is above EVOREC_SERVER__MAX_PENDING "
                f"(server.max_pending), {self.max_pending}"
            )
        return self


class ClientSettings(Section):
    """How evorec calls services: deadlines and retries of idempotent calls."""

    # The deadline of a call whose caller gave none and that no inbound deadline bounds.
    default_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    # Attempts of an idempotent call that failed with UNAVAILABLE, first one included (gRPC
    # caps this at 5).
    retry_max_attempts: int = Field(default=4, ge=1, le=5)
    retry_initial_backoff_s: float = Field(default=0.05, gt=0)
    retry_max_backoff_s: float = Field(default=1.0, gt=0)
    retry_backoff_multiplier: float = Field(default=2.0, ge=1)


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
    # Pretrained text models' files (`evorec models fetch minilm` writes <dir>/minilm/).
    # Default: <data_dir>/text-models.
    text_models_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line, for log collectors; text: for a person at a terminal.
    log_format: Literal["json", "text"] = "json"
    server: ServerSettings = ServerSettings()
    client: ClientSettings = ClientSettings()
    tls: TlsSettings = TlsSettings()
    interest_state: InterestStateSettings = InterestStateSettings()
    serving: ServingSettings = ServingSettings()
    recommend: RecommendSettings = RecommendSettings()
    index: IndexSettings = IndexSettings()
    retrain: RetrainSettings = RetrainSettings()
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

    @model_validator(mode="after")
    def _tf_serving_tls_has_a_ca(self) -> Settings:
        if self.serving.tf_serving_tls and self.tls.ca_file is None:
            raise ValueError(
                "EVOREC_SERVING__TF_SERVING_TLS (serving.tf_serving_tls) needs "
                "EVOREC_TLS__CA_FILE (tls.ca_file) to verify TF Serving"
            )
        return self

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

    @property
    def text_models_path(self) -> Path:
        return self.text_models_dir or self.data_dir / "text-models"

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
        if not location:  # a rule across sections: its message names the settings
            problems.append(f"invalid settings: {error['msg']}")
            continue
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
