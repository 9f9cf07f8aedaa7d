"""Where user vectors come from: the exported SavedModel loaded in-process (the embedded
default), or TensorFlow Serving's `PredictionService` over gRPC (production, GPU). Both take
a right-padded int32 batch of histories (item indexes) with their lengths and answer
`user_vector` from the `serving_default` signature, with the model version that answered.

`Batcher` sits in front of either: requests that arrive while the model is busy, or within a
small window, go to it as one batch, so throughput grows with load; each batch is padded to
one of a few shapes (`evorec.encoder.batch_shapes`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

from evorec.encoder.batch_shapes import all_shapes, batch_shape, right_padded
from evorec.encoder.bundle import BUNDLE_DIR
from evorec.encoder.settings import ServingSettings
from evorec.platform.clients import open_channel
from evorec.platform.config import ClientSettings, ServerSettings
from evorec.platform.tls import TlsSettings

log = logging.getLogger("evorec.encoder")
PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
# The statuses of a model server that is down, too slow or overloaded, or that has just
# unloaded the version asked for (NOT_FOUND: TF Serving moved on before ranking noticed, for
# up to one poll interval of a rollout).
EXPECTED_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
    }
)


class VersionUnloaded(LookupError):
    """The in-process backend no longer holds the version asked for: a newer one replaced it
    while the request waited (TF Serving's NOT_FOUND in the same case)."""


def is_expected_failure(error: BaseException) -> bool:
    """True when `error` says the encoder is down, out of time or overloaded, or has just
    dropped the version asked for, which a caller may answer without; False for anything
    else: a bug, that must not pass for an outage."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in EXPECTED_CODES
    return isinstance(error, TimeoutError | tf.errors.ResourceExhaustedError | VersionUnloaded)


class EncoderBackend(Protocol):
    """Computes user vectors with one version of the encoder."""

    description: str

    async def load(self, version_dir: Path) -> None:
        """Gets a new version ready (and warm) before it is asked for."""

    def unload(self, version: int) -> None:
        """Releases a version no longer served."""

    async def pick_version(self, available: list[int]) -> int:
        """Which of the versions found under the base path (oldest first) to serve."""

    async def user_vectors(
        self, history: np.ndarray, length: np.ndarray, version: int, time_limit: float | None
    ) -> tuple[np.ndarray, int]:
        """[batch, dim] user vectors from `version`, and the version that answered."""

    async def close(self) -> None: ...


class InProcessBackend:
    """The SavedModel run by this process, one loaded model per version."""

    description = "in-process SavedModel"

    def __init__(self, signature_name: str = "serving_default", max_batch: int = 64) -> None:
        self.signature_name = signature_name
        self.max_batch = max_batch
        self.models: dict[int, Any] = {}

    async def load(self, version_dir: Path) -> None:
        version = int(version_dir.name)
        if version not in self.models:
            self.models[version] = await asyncio.to_thread(self._load_warm, version_dir)

    def _load_warm(self, version_dir: Path) -> Any:
        """The SavedModel, run once in each shape the Batcher sends (evorec.encoder.
        batch_shapes), so that its kernels' per-shape memory is taken before serving."""
        loaded = tf.saved_model.load(str(version_dir))
        signature = loaded.signatures[self.signature_name]
        manifest = json.loads((version_dir / BUNDLE_DIR / "manifest.json").read_text())
        for shape in all_shapes(self.max_batch, int(manifest["encoder"]["max_len"])):
            history, length = right_padded([], shape)
            signature(history=tf.constant(history), length=tf.constant(length))
        return loaded

    def unload(self, version: int) -> None:
        self.models.pop(version, None)

    async def pick_version(self, available: list[int]) -> int:
        return available[-1]

    async def user_vectors(
        self, history: np.ndarray, length: np.ndarray, version: int, time_limit: float | None
    ) -> tuple[np.ndarray, int]:
        model = self.models.get(version)
        if model is None:
            raise VersionUnloaded(f"version {version} is no longer loaded")
        # The thread cannot be stopped; past the time limit its answer is not waited for.
        vectors = await asyncio.wait_for(
            asyncio.to_thread(self._run, model, history, length), time_limit
        )
        return vectors, version

    def _run(self, model: Any, history: np.ndarray, length: np.ndarray) -> np.ndarray:
        outputs = model.signatures[self.signature_name](
            history=tf.constant(history), length=tf.constant(length)
        )
        return np.asarray(outputs["user_vector"])

    async def close(self) -> None:
        self.models.clear()


def int32_tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of an int32 array, its bytes copied once (make_tensor_proto is slower)."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
        tensor_content=np.ascontiguousarray(array, dtype=np.int32).tobytes(),
    )


async def available_versions(
    models: model_service_pb2_grpc.ModelServiceStub, model_name: str, timeout_s: float
) -> set[int]:
    """The versions of `model_name` TF Serving reports AVAILABLE (ModelService's
    GetModelStatus); raises its NOT_FOUND while it has none of them loaded."""
    status = await models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=model_name)),
        timeout=timeout_s,
    )
    return {
        s.version
        for s in status.model_version_status
        if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    }


class TFServingBackend:
    """TensorFlow Serving's PredictionService.Predict, over one gRPC channel (with TLS from
    `tls` when `serving.tf_serving_tls` says so)."""

    def __init__(
        self,
        serving: ServingSettings,
        client: ClientSettings,
        limits: ServerSettings,
        tls: TlsSettings | None = None,
    ) -> None:
        self.serving = serving
        self.description = f"TensorFlow Serving at {serving.tf_serving_target}"
        self.channel = open_channel(
            serving.tf_serving_target,
            PREDICTION_SERVICE,
            client,
            limits.model_copy(
                update={"max_receive_message_bytes": serving.max_receive_message_bytes}
            ),
            retried=["Predict"],  # no side effects
            tls=tls if serving.tf_serving_tls else None,
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    async def load(self, version_dir: Path) -> None:
        """TF Serving loads versions itself, from the same base path."""

    def unload(self, version: int) -> None:
        """TF Serving unloads versions itself."""

    async def pick_version(self, available: list[int]) -> int:
        """The newest of `available` that TF Serving reports AVAILABLE (ModelService's
        GetModelStatus), since a folder under the base path may be one its model config does
        not load, or one it is still loading; with a version label, the version TF Serving
        resolves it to (asked with a one-item history). Every later request names that
        version, so its item indexes match the bundle's."""
        if not self.serving.version_label:
            loaded = await available_versions(
                self.models, self.serving.model_name, self.serving.timeout_s
            )
            usable = [v for v in available if v in loaded]
            if not usable:
                raise LookupError(
                    f"TF Serving has none of versions {available} AVAILABLE "
                    f"(it has {sorted(loaded)})"
                )
            return usable[-1]
        request = self._request(np.array([[1]], np.int32), np.array([1], np.int32))
        request.model_spec.version_label = self.serving.version_label
        response = await self.stub.Predict(request, timeout=self.serving.timeout_s)
        return int(response.model_spec.version.value)

    def _request(self, history: np.ndarray, length: np.ndarray) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.serving.model_name
        request.model_spec.signature_name = self.serving.signature_name
        request.inputs["history"].CopyFrom(int32_tensor(history))
        request.inputs["length"].CopyFrom(int32_tensor(length))
        return request

    async def user_vectors(
        self, history: np.ndarray, length: np.ndarray, version: int, time_limit: float | None
    ) -> tuple[np.ndarray, int]:
        request = self._request(history, length)
        request.model_spec.version.value = version
        response = await self.stub.Predict(request, timeout=time_limit)
        vectors = tf.make_ndarray(response.outputs["user_vector"])
        return vectors, response.model_spec.version.value or version

    async def close(self) -> None:
        await self.channel.close(None)


@dataclass
class _Waiting:
    history: np.ndarray
    version: int
    max_len: int | None  # of that version; None: not known
    deadline: float | None  # time.monotonic()
    future: asyncio.Future[tuple[np.ndarray, int]] = field(repr=False)


class Batcher:
    """Gathers concurrent requests into batched model calls.

    One call runs at a time; the requests arriving meanwhile form the next batch (at most
    `max_batch` histories; under load, waiting `window_s` for more), so a busy service makes
    few large calls and an idle one answers at once. The batch's deadline is its earliest.
    """

    def __init__(
        self,
        run: Callable[
            [np.ndarray, np.ndarray, int, float | None], Awaitable[tuple[np.ndarray, int]]
        ],
        max_batch: int,
        window_s: float,
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.window_s = window_s
        self.queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.busy = False

    async def user_vector(
        self,
        history: np.ndarray,
        version: int,
        time_limit: float | None,
        max_len: int | None = None,
    ) -> tuple[np.ndarray, int]:
        """The user vector for one history (item indexes of `version`, oldest first, at most
        `max_len`, that version's, by which batches are padded: evorec.encoder.batch_shapes)."""
        if self.worker is None:
            # A context of its own: the worker outlives the request that started it, whose
            # deadline and request id (context variables) must not bound the batches after it.
            self.worker = asyncio.create_task(self._work(), context=contextvars.Context())
        future: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        deadline = None if time_limit is None else time.monotonic() + time_limit
        self.queue.put_nowait(_Waiting(history, version, max_len, deadline, future))
        if time_limit is None:
            return await future
        # Bounded by its own limit, also while an earlier batch still holds the model.
        async with asyncio.timeout(time_limit):
            return await future

    async def _next_batch(self) -> list[_Waiting]:
        batch = [await self.queue.get()]
        # Wait for company only under load (the last batch had some): a lone request on an
        # idle service goes at once.
        if self.window_s > 0 and self.busy and self.queue.qsize() < self.max_batch - 1:
            await asyncio.sleep(self.window_s)
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        self.busy = len(batch) > 1
        return [w for w in batch if not w.future.done()]

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            now = time.monotonic()  # after the wait for the batch, which may be long
            groups: dict[int, list[_Waiting]] = {}
            for waiting in batch:
                if waiting.deadline is not None and waiting.deadline <= now:
                    waiting.future.set_exception(TimeoutError("no time left for the encoder"))
                else:
                    groups.setdefault(waiting.version, []).append(waiting)
            for version, group in groups.items():
                await self._run(version, group)

    async def _run(self, version: int, batch: list[_Waiting]) -> None:
        deadlines = [w.deadline for w in batch if w.deadline is not None]
        # Measured now: an earlier version's group may have run since the batch formed.
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        histories = [w.history for w in batch]
        shape = batch_shape(
            len(batch), max(len(h) for h in histories), self.max_batch, batch[0].max_len
        )
        history, length = right_padded(histories, shape)
        try:
            vectors, answered = await self.run(history, length, version, timeout)
        except Exception as error:  # every waiting caller gets it, and handles it
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        for row, waiting in enumerate(batch):
            if not waiting.future.done():
                waiting.future.set_result((vectors[row], answered))

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
