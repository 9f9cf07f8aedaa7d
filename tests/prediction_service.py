"""TensorFlow Serving, as far as evorec talks to it, over the SavedModels under a base path:
the TF Serving binary cannot be installed on these machines (it ships as a container image or
from its own package repository), so the tests of our TF Serving client run against this.

It behaves as TF Serving does where evorec depends on it:
- it serves only the versions its model config allows (`specific` versions, or `latest`;
  without a config file, TF Serving's default: the newest version), loading each before it
  counts as AVAILABLE, and unloading those the config no longer names;
- it re-reads the config and the base path every `poll_s` (TF Serving's
  `--model_config_file_poll_wait_seconds` and `--file_system_poll_wait_seconds`);
- it sets a config's labels before it loads the config's new versions (server_core.cc,
  `ReloadConfig`: `UpdateModelVersionLabelMap` first), so it refuses a whole config (logs
  why, keeps serving the previous one, and refuses it again at every poll) in which a label
  points at a version that is not AVAILABLE, unless the label is one it does not serve yet
  and it runs with `--allow_version_labels_for_unavailable_models=true` (the option of the
  same name, on by default as in our deployments): that flag never lets a label it serves
  move to an unloaded version; a first config refused so means TF Serving does not start;
- `ModelService.GetModelStatus` lists the AVAILABLE versions;
- `PredictionService.Predict` answers by version number, by label (the config's, or those
  given) or the newest AVAILABLE version; a version that is not loaded is NOT_FOUND with TF
  Serving's message, an unknown label INVALID_ARGUMENT; the response names the version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from evorec.encoder.bundle import model_versions

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
log = logging.getLogger("tests.prediction_service")


class ConfigRefused(ValueError):
    """TF Serving's FAILED_PRECONDITION for a model config it will not take."""


class ServingState:
    """The loaded versions per model, and the labels, as the config last accepted said."""

    def __init__(
        self,
        base: Path,
        config_file: Path | None,
        labels: dict[str, int],
        allow_version_labels_for_unavailable_models: bool = True,
    ) -> None:
        self.base = base
        self.config_file = config_file
        self.given_labels = labels
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self.config: model_server_config_pb2.ModelServerConfig | None = None  # last accepted
        self.refused: str | None = None  # why the file's config is refused, while it is
        self.loaded: dict[str, dict[int, Any]] = {}
        self.labels: dict[str, dict[str, int]] = {}

    def check_labels(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Raises ConfigRefused, with TF Serving's message, when a label of `config` points
        at a version not AVAILABLE now: TF Serving checks the labels against what it has
        loaded before it loads anything the new config adds. With the flag, a label it does
        not serve yet (or serves at that same version) may wait for its version; a label it
        serves at another version may not."""
        for model in config.model_config_list.config:
            for label, version in model.version_labels.items():
                if version in self.loaded.get(model.name, {}):
                    continue
                serving = self.labels.get(model.name, {}).get(label)
                if self.allow_unavailable_labels and serving in (None, version):
                    continue
                raise ConfigRefused(
                    f"Request to assign label to version {version} of model {model.name},"
                    " which is not currently available for inference"
                )

    def read_config(self) -> None:
        """Takes the config file's content when its labels pass `check_labels`; otherwise
        keeps the previous config (a first config refused raises: TF Serving fails to
        start)."""
        assert self.config_file is not None
        config = text_format.Parse(
            self.config_file.read_text(), model_server_config_pb2.ModelServerConfig()
        )
        if config == self.config:
            return
        try:
            self.check_labels(config)
        except ConfigRefused as error:
            if self.config is None:
                raise
            self.refused = str(error)
            log.error("%s refused, serving the previous config: %s", self.config_file, error)
            return
        self.config, self.refused = config, None

    def wanted(self) -> tuple[dict[str, list[int]], dict[str, dict[str, int]]]:
        """Per model, the versions the accepted config allows among those on disk, and its
        labels."""
        if self.config_file is None:
            names = [p.name for p in self.base.iterdir() if p.is_dir()]
            return (
                {n: model_versions(self.base / n)[-1:] for n in names},
                {n: dict(self.given_labels) for n in names},
            )
        assert self.config is not None
        versions, labels = {}, {}
        for model in self.config.model_config_list.config:
            on_disk = model_versions(self.base / model.name)
            policy = model.model_version_policy
            if policy.HasField("specific"):
                versions[model.name] = [v for v in on_disk if v in policy.specific.versions]
            elif policy.HasField("all"):
                versions[model.name] = on_disk
            else:
                versions[model.name] = on_disk[-(policy.latest.num_versions or 1) :]
            labels[model.name] = dict(model.version_labels)
        return versions, labels

    async def refresh(self) -> None:
        """Re-reads the config; sets its labels, loads what it newly allows, then unloads
        what it no longer does."""
        if self.config_file is not None:
            self.read_config()
        versions, labels = self.wanted()
        # Set before the loads, as TF Serving does: a new label on a version still loading
        # resolves to it, and that version is NOT_FOUND until it is loaded.
        self.labels = labels
        for name, wanted in versions.items():
            loaded = self.loaded.setdefault(name, {})
            for version in wanted:
                if version not in loaded:
                    path = self.base / name / str(version)
                    loaded[version] = await asyncio.to_thread(tf.saved_model.load, str(path))
            for version in [v for v in loaded if v not in wanted]:
                del loaded[version]
        for name in [n for n in self.loaded if n not in versions]:
            del self.loaded[name]


class SavedModelPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.requests: list[predict_pb2.PredictRequest] = []

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> predict_pb2.PredictResponse:
        self.requests.append(request)
        spec = request.model_spec
        loaded = self.state.loaded.get(spec.name, {})
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            version = self.state.labels.get(spec.name, {}).get(spec.version_label)
            if version is None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {spec.version_label}",
                )
        elif choice == "version":
            version = spec.version.value
        else:
            version = max(loaded, default=None)
        if version not in loaded:
            wanted = f"Specific({spec.name}, {version})" if choice else f"Latest({spec.name})"
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}"
            )
        assert version is not None
        signature = loaded[version].signatures[spec.signature_name or "serving_default"]
        inputs = {name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()}
        outputs = await asyncio.to_thread(lambda: signature(**inputs))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


class ModelStatusService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        versions = sorted(self.state.loaded.get(spec.name, {}))
        if spec.HasField("version"):
            versions = [v for v in versions if v == spec.version.value]
        if not versions:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
            )
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[
                get_model_status_pb2.ModelVersionStatus(version=v, state=AVAILABLE)
                for v in versions
            ]
        )


class StandIn:
    """The running stand-in: its port, what it was asked, and how to stop it."""

    def __init__(self, server: grpc.aio.Server, port: int, state: ServingState) -> None:
        self.server = server
        self.port = port
        self.state = state
        self.predictions = SavedModelPredictionService(state)
        self.poller: asyncio.Task[None] | None = None

    @property
    def requests(self) -> list[predict_pb2.PredictRequest]:
        return self.predictions.requests

    async def poll(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.state.refresh()

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        await self.server.stop(None)


async def start_prediction_service(
    base: Path,
    labels: dict[str, int] | None = None,
    config_file: Path | None = None,
    poll_s: float = 0.2,
    port: int = 0,
    host: str = "127.0.0.1",
    allow_version_labels_for_unavailable_models: bool = True,
) -> StandIn:
    """Loads what the config allows (as TF Serving does before it serves), then serves
    PredictionService and ModelService on `host` (loopback unless a container needs all
    interfaces), re-reading every `poll_s`. Raises ConfigRefused, as TF Serving fails to
    start, when the config's labels are refused (see ServingState.check_labels)."""
    state = ServingState(
        base, config_file, labels or {}, allow_version_labels_for_unavailable_models
    )
    await state.refresh()
    server = grpc.aio.server()
    stand_in = StandIn(server, 0, state)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        stand_in.predictions, server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelStatusService(state), server)
    stand_in.port = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stand_in.poller = asyncio.create_task(stand_in.poll(poll_s))
    return stand_in
