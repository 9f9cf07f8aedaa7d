"""The `evorec` command: run the services, check their health.

Errors reach the user as one readable line (`error: ...`) and a non-zero exit status, not as a
traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from evorec import __version__, model_cli, models_cli, replay_cli, retrain_cli, supervisor, tune_cli
from evorec.cli_options import ConfigOption
from evorec.data.schema import DataError
from evorec.data_cli import app as data_app
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.platform.config import CONFIG_FILE_ENV, ConfigError, Settings, load_settings
from evorec.platform.enums import enum_label
from evorec.platform.logs import configure_logging
from evorec.platform.probes import check_health, wait_until_serving
from evorec.platform.registry import SERVICES, create_service
from evorec.platform.server import serve as serve_service
from evorec.platform.stop_signals import raise_on_stop_signals
from evorec.platform.tls import channel_credentials

if TYPE_CHECKING:
    from evorec.v1 import ranking_pb2

app = typer.Typer(
    help="evorec: predicts how users' interests evolve and serves recommendations over gRPC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_cli.app, name="models")
app.command()(model_cli.train)
app.command()(model_cli.evaluate)
app.command()(tune_cli.tune)
app.command()(model_cli.export)
app.command()(retrain_cli.retrain)
app.command()(retrain_cli.promote)
app.command()(replay_cli.replay)
console = Console()

ServiceName = Annotated[str, typer.Argument(help="One of: " + ", ".join(SERVICES))]


@app.command()
def version() -> None:
    """Print evorec's version."""
    console.print(__version__)


@app.command()
def serve(name: ServiceName, config: ConfigOption = None) -> None:
    """Run one service until SIGTERM or Ctrl-C, then drain it gracefully."""
    if name not in SERVICES:
        raise ConfigError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    settings = load_settings(config)
    configure_logging(SERVICES[name].full_name, settings.log_level, settings.log_format)
    supervisor.watch_parent()

    async def run() -> None:
        # Created inside the event loop: a service's gRPC clients belong to the loop.
        service = create_service(name, settings)
        await serve_service(service, settings.endpoint(name), settings.server, settings.tls)

    asyncio.run(run())


@app.command()
def up(
    config: ConfigOption = None,
    start_timeout: Annotated[
        float, typer.Option(help="Seconds each service may take to become SERVING.")
    ] = 120.0,
    max_restarts: Annotated[
        int,
        typer.Option(
            min=0,
            help="Restarts of a service that keeps exiting before everything is stopped (0: none).",
        ),
    ] = 5,
    restart_backoff: Annotated[
        float,
        typer.Option(min=0, help="Seconds before the first restart; doubled for each next one."),
    ] = 1.0,
) -> None:
    """Run all four services on embedded defaults, one process each, and supervise them: a
    service that exits is restarted; they all stop with this command, even when it is killed.
    Ctrl-C or SIGTERM stops them."""
    settings = load_settings(config)
    _refuse_any_free_port(settings)
    raise_on_stop_signals()
    env = dict(os.environ)
    env.setdefault("EVOREC_LOG_FORMAT", "text")
    if config is not None:
        env[CONFIG_FILE_ENV] = str(config)
    services = supervisor.Supervisor(
        env, supervisor.RestartPolicy(max_restarts, restart_backoff), console.print
    )
    try:
        if _needs_first_run(settings):
            # In a child process: the launcher runs as long as the services and must not
            # keep the dataset and TensorFlow in memory after training.
            supervisor.run_to_end(["prepare-first-run"], env)
        for name in SERVICES:
            services.start(name)
        for name in SERVICES:
            wait_until_serving(
                settings.endpoint(name).target,
                SERVICES[name].full_name,
                start_timeout,
                services.processes[name],
                channel_credentials(settings.tls),
            )
        replay_cli.replay_default_once(settings)
        console.print(_status_table(settings, {name: "SERVING" for name in SERVICES}))
        console.print("all services up; Ctrl-C stops them")
        while True:
            services.check()
            time.sleep(supervisor.POLL_S)
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        # A second Ctrl-C must not cut the orderly stop short (it ends within its own limit).
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        services.stop_all(settings.server.grace_period_s + 5)


@app.command(hidden=True)
def prepare_first_run(config: ConfigOption = None) -> None:
    """What `evorec up` runs in a child process on a first run: the embedded default dataset
    and model, where there are none yet."""
    settings = load_settings(config)
    supervisor.watch_parent()
    _ensure_dataset(settings)
    _ensure_model(settings)


@app.command()
def recommend(
    user: Annotated[str, typer.Argument(help="The user id.")],
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 10,
    diversity: Annotated[
        float | None, typer.Option(help="MMR strength, 0 to 1 (default: the server's).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Ask the ranking service what USER should see now, and print it."""
    from evorec.platform.clients import ranking_client
    from evorec.v1 import ranking_pb2

    async def ask(settings: Settings) -> ranking_pb2.RecommendResponse:
        async with ranking_client(settings) as ranking:
            return await ranking.stub.Recommend(
                ranking_pb2.RecommendRequest(user_id=user, k=k, diversity=diversity)
            )

    response = _call("RankingService", ask(load_settings(config)))

    def source_name(source: int) -> str:
        return enum_label(ranking_pb2.CandidateSource, source)

    table = Table("#", "item", "title", "topic", "score", "sources", "reason")
    for number, item in enumerate(response.recommendations, 1):
        table.add_row(
            str(number), item.item_id, item.title, item.topic_id, f"{item.score:.4f}",
            ", ".join(source_name(s) for s in item.sources), item.reason,
        )  # fmt: skip
    console.print(table)
    if response.cold_start:
        notes = ["cold start: no history for this user, so popular items"]
    elif response.model_version:
        notes = [f"model version {response.model_version}"]
    else:
        notes = ["the encoder did not answer"]
    if response.degraded_sources:
        missing = ", ".join(source_name(s) for s in response.degraded_sources)
        notes.append(f"degraded: {missing}")
    console.print("; ".join(notes))


Response = TypeVar("Response")


def _call(service: str, call: Coroutine[Any, Any, Response]) -> Response:
    """Runs one call of a typed client; a failed call becomes an error that names the
    service and the status."""
    try:
        return asyncio.run(call)
    except grpc.RpcError as error:
        raise RuntimeError(f"{service}: {error.code().name}: {error.details()}") from error


@app.command()
def profile(
    user: Annotated[str, typer.Argument(help="The user id.")],
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: profile-USER.png).")
    ] = None,
    horizon: Annotated[int, typer.Option(help="Interactions the prediction covers.")] = 10,
    config: ConfigOption = None,
) -> None:
    """Print a user's interest profile and every forecast method's view, and draw the
    timeline, the forecasts and the regime changes to a PNG."""
    from evorec.interest.plot import plot_profile
    from evorec.platform.clients import interest_client
    from evorec.v1 import interest_pb2

    async def ask(settings: Settings) -> interest_pb2.GetInterestProfileResponse:
        async with interest_client(settings) as interest:
            return await interest.stub.GetInterestProfile(
                interest_pb2.GetInterestProfileRequest(user_id=user, horizon=horizon)
            )

    settings = load_settings(config)
    response = _call("InterestService", ask(settings))
    found = response.profile
    table = Table(
        "",
        *(f"{w.label or w.topic_id}" for w in found.long_term.weights),
        title=f"interests of {user}",
    )
    for name, distribution in (
        ("now (decayed)", found.current),
        ("long-term", found.long_term),
        ("short-term", found.short_term),
        *(
            (
                f"next {horizon}: {enum_label(interest_pb2.PredictionMethod, p.method)}",
                p.distribution,
            )
            for p in found.predictions
        ),
    ):
        weights = {w.topic_id: w.weight for w in distribution.weights}
        table.add_row(name, *(f"{weights.get(w.topic_id, 0):.2f}" for w in found.long_term.weights))
    console.print(table)
    console.print(
        f"{found.event_count} events; drift {found.drift_score:.3f}; rising: "
        + (", ".join(t.label or t.topic_id for t in found.rising) or "none")
    )
    forecast = _forecast(settings, user, horizon)
    path = out or Path(f"profile-{user}.png")
    plot_profile(found, path, forecast)
    console.print(f"timeline written to {path}")


def _forecast(
    settings: Settings, user: str, horizon: int
) -> ranking_pb2.ForecastInterestsResponse | None:
    """RankingService's forecasts of `user`, printed; None (and says so) when the call
    fails, since the profile itself stands without them."""
    from evorec.platform.clients import ranking_client
    from evorec.v1 import ranking_pb2

    async def ask() -> ranking_pb2.ForecastInterestsResponse:
        async with ranking_client(settings) as ranking:
            return await ranking.stub.ForecastInterests(
                ranking_pb2.ForecastInterestsRequest(user_id=user, horizon=horizon)
            )

    try:
        forecast = _call("RankingService", ask())
    except RuntimeError as error:
        console.print(f"no forecasts ({error}): the profile is shown without them")
        return None
    table = Table("method", "forecast", "offline js", title=f"forecasts of the next {horizon}")
    for method in forecast.forecasts:
        name = enum_label(ranking_pb2.ForecastMethod, method.method)
        if forecast.recommended_method == method.method:
            name += " (recommended)"
        shares = ", ".join(
            f"{w.label or w.topic_id} {w.weight:.2f}"
            for w in sorted(method.distribution.weights, key=lambda w: -w.weight)
        )
        score = method.offline_score
        table.add_row(
            name,
            shares if method.available else f"unavailable: {method.unavailable_reason}",
            f"{score.js_divergence:.3f}" if method.HasField("offline_score") else "-",
        )
    console.print(table)
    changes = forecast.hidden_markov.regime_changes
    console.print(
        "regime changes (position among the history's events with a topic): "
        + (", ".join(f"{c.position} ({c.from_state}->{c.to_state})" for c in changes) or "none")
    )
    return forecast


@app.command()
def health(
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 2.0,
) -> None:
    """Check every configured service's health and print a table; exit 1 unless all serve."""
    settings = load_settings(config)
    statuses = {name: _check_health(name, settings, timeout) for name in SERVICES}
    console.print(_status_table(settings, statuses))
    if any(status != "SERVING" for status in statuses.values()):
        raise typer.Exit(1)


# `evorec up` trains a quick model when there is none: minutes matter more than the last
# point of NDCG there (`evorec train` has the full defaults).
UP_TRAINING = TrainingConfig(epochs=30, patience=5)


def _refuse_any_free_port(settings: Settings) -> None:
    """Port 0 (any free port, which `evorec serve` may use) cannot work under `evorec up`:
    its services reach each other, and it waits for them, at the configured ports."""
    for name in SERVICES:
        endpoint = settings.endpoint(name)
        ports = {"port": endpoint.port, "metrics_port": endpoint.metrics_port}
        if endpoint.health_port is not None:
            ports["health_port"] = endpoint.health_port
        for field, port in ports.items():
            if port == 0:
                raise ConfigError(
                    f"invalid setting {name}.{field} (EVOREC_{name.upper()}__{field.upper()}): "
                    "0 (any free port) does not work under `evorec up`, whose services reach "
                    f"each other at fixed ports; give a port, or use `evorec serve {name}`"
                )


def _needs_first_run(settings: Settings) -> bool:
    """True when the dataset or the model `evorec up` serves is still to be made."""
    from evorec.encoder.versions import model_versions

    if _needs_dataset(settings):
        return True
    model_dir = settings.serving.model_dir(settings.data_dir)
    return not model_versions(model_dir) and settings.serving.backend != "tf_serving"


def _needs_dataset(settings: Settings) -> bool:
    """True when the embedded default dataset is still to be made, or was made by an evorec
    of another dataset format; a configured dataset that is missing or of another format is
    a ConfigError (it is not evorec's to make)."""
    from evorec.data.artifacts import DatasetLayout

    layout = DatasetLayout(settings.dataset_path)
    if layout.is_current():
        return False
    if settings.dataset is not None:
        found = "a dataset of another format" if layout.exists() else "no prepared dataset"
        raise ConfigError(
            f"invalid setting EVOREC_DATASET: {found} at {settings.dataset}: "
            "run `evorec data prepare`"
        )
    return True


def _ensure_dataset(settings: Settings) -> None:
    """Makes the embedded default dataset (simulated) when none is configured or there yet."""
    if not _needs_dataset(settings):
        return
    from evorec.preparation import prepare_synthetic

    with console.status("no dataset yet: simulating one") as status:
        prepare_synthetic(
            settings.dataset_path, settings.data_dir / "raw" / "synthetic", progress=status.update
        )
    console.print(f"prepared the embedded default dataset at {settings.dataset_path}")


def _ensure_model(settings: Settings) -> None:
    """Trains and exports the embedded default model when the base path holds no version
    (with TF Serving as the backend, the model is TF Serving's to load, and left alone)."""
    from evorec.encoder.versions import model_versions

    model_dir = settings.serving.model_dir(settings.data_dir)
    if model_versions(model_dir) or settings.serving.backend == "tf_serving":
        return
    from evorec.data.artifacts import DatasetLayout

    layout = DatasetLayout(settings.dataset_path)
    # A dataset prepared from ids alone has no item text to read: the id-only encoder.
    has_text = layout.read_manifest()["counts"]["items_with_text_vector"] > 0
    console.print(f"no model under {model_dir} yet: training one on {settings.dataset_path}")
    model_cli.train_and_export(
        layout,
        EncoderConfig(use_text=has_text),
        UP_TRAINING,
        model_dir.parent,
        model_dir.name,
    )


def _check_health(name: str, settings: Settings, timeout: float) -> str:
    return check_health(
        settings.endpoint(name).target,
        SERVICES[name].full_name,
        timeout,
        channel_credentials(settings.tls),
    )


def _status_table(settings: Settings, statuses: dict[str, str]) -> Table:
    table = Table("service", "gRPC", "metrics", "health")
    for name, status in statuses.items():
        endpoint = settings.endpoint(name)
        colour = "green" if status == "SERVING" else "red"
        table.add_row(
            SERVICES[name].full_name,
            endpoint.target,
            f"http://{endpoint.host}:{endpoint.metrics_port}/metrics",
            f"[{colour}]{status}[/{colour}]",
        )
    return table


def main() -> None:
    """Entry point of the `evorec` command."""
    # TensorFlow's C++ start-up chatter (no GPU found, CPU features) is not for the user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        app()
    except (ConfigError, DataError, OSError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, ConfigError) else 1)
