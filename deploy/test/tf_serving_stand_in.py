"""TensorFlow Serving in a container, for deploy/test.sh: the tests' PredictionService
stand-in on port 8500 of every interface, over the SavedModels under /models, with the
version labels of TF Serving's model config file (the first argument). `--check` is the
container's health check: exit 0 once the port answers (without importing TensorFlow, which
takes longer than a health check may).
"""

import asyncio
import sys
from pathlib import Path

import grpc

PORT = 8500
BASE = Path("/models")


def labels(config_file: Path) -> dict[str, int]:
    """The version labels of the model config file (TF Serving's own format)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(config_file.read_text(), model_server_config_pb2.ModelServerConfig())
    found: dict[str, int] = {}
    for model in config.model_config_list.config:
        found.update(model.version_labels)
    return found


async def serve(config_file: Path) -> None:
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tests.prediction_service import SavedModelPredictionService

    server = grpc.aio.server()
    servicer = SavedModelPredictionService(BASE, labels(config_file))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"0.0.0.0:{PORT}")
    await server.start()
    print(f"PredictionService stand-in on :{PORT}, labels {servicer.labels}", flush=True)
    await server.wait_for_termination()


def check() -> int:
    with grpc.insecure_channel(f"127.0.0.1:{PORT}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=3)
        except grpc.FutureTimeoutError:
            print(f"nothing answers on :{PORT}")
            return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    asyncio.run(serve(Path(sys.argv[1])))
