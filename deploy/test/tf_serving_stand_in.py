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


async def serve(config_file: Path) -> None:
    from tests.prediction_service import start_prediction_service

    # TF Serving's own behaviour: serves the versions the model config allows, with its
    # labels, re-reads the config, answers ModelService.GetModelStatus.
    stand_in = await start_prediction_service(
        BASE, config_file=config_file, poll_s=2.0, port=PORT, host="0.0.0.0"
    )
    print(f"PredictionService stand-in on :{PORT}, labels {stand_in.state.labels}", flush=True)
    await stand_in.server.wait_for_termination()


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
