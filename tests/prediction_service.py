"""TensorFlow Serving's `PredictionService.Predict`, implemented over the SavedModels under a
base path, for the tests of our TF Serving client: the TF Serving binary cannot be installed
on these machines (it ships as a container image or from its own package repository).

It answers as TF Serving does for what the ranking service asks: the model by name, the
version by number, by label or (neither) the newest; the signature by name; the response's
model spec names the version that answered; NOT_FOUND for an unknown model, version or
label.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from evorec.encoder.bundle import model_versions


class SavedModelPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, base: Path, labels: dict[str, int] | None = None) -> None:
        self.base = base
        self.labels = labels or {}
        self.models: dict[tuple[str, int], Any] = {}
        self.requests: list[predict_pb2.PredictRequest] = []

    def _version(self, spec: Any, versions: list[int]) -> int | None:
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            return spec.version.value if spec.version.value in versions else None
        if choice == "version_label":
            return self.labels.get(spec.version_label)
        return versions[-1] if versions else None

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> predict_pb2.PredictResponse:
        self.requests.append(request)
        spec = request.model_spec
        version = self._version(spec, model_versions(self.base / spec.name))
        if version is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec}"
            )
        assert version is not None
        key = (spec.name, version)
        if key not in self.models:
            path = self.base / spec.name / str(version)
            self.models[key] = await asyncio.to_thread(tf.saved_model.load, str(path))
        signature = self.models[key].signatures[spec.signature_name or "serving_default"]
        inputs = {name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()}
        outputs = await asyncio.to_thread(lambda: signature(**inputs))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


async def start_prediction_service(
    base: Path, labels: dict[str, int] | None = None, port: int = 0
) -> tuple[grpc.aio.Server, int, SavedModelPredictionService]:
    """Serves the stand-in on a loopback port; returns the server, its port and servicer."""
    server = grpc.aio.server()
    servicer = SavedModelPredictionService(base, labels)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound, servicer
