"""Publishing a version and its label into TF Serving's model config in the order TF Serving
takes them: the version first, the label once TF Serving reports that version AVAILABLE
(`evorec export`, and the same `move_label` that `evorec retrain --label` calls)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from evorec import model_cli
from evorec.encoder.bundle import model_versions
from evorec.encoder.publish import apply_version_policy, set_version_label
from evorec.learning.promote import labels
from tests.prediction_service import ConfigRefused, StandIn, start_prediction_service


@pytest.fixture
def base(tmp_path: Path, model_base: Path) -> Path:
    """A writable base path with version 1, its model config loading version 1 with the
    labels stable and canary on it, as `serving/models.config` ships."""
    shutil.copytree(model_base, tmp_path / "models")
    config = tmp_path / "models.config"
    apply_version_policy(config, "encoder", [1])
    set_version_label(config, "encoder", "stable", 1)
    set_version_label(config, "encoder", "canary", 1)
    return tmp_path / "models"


@pytest.fixture
def exported(tmp_path: Path, model_base: Path) -> Path:
    """Version 2, exported (as `evorec train` leaves it) outside the base path."""
    version = tmp_path / "exported" / "encoder" / "2"
    shutil.copytree(model_base / "encoder" / "1", version)
    return version


def on_tf_serving(monkeypatch: pytest.MonkeyPatch, stand_in: StandIn) -> None:
    monkeypatch.setenv("EVOREC_SERVING__BACKEND", "tf_serving")
    monkeypatch.setenv("EVOREC_SERVING__TF_SERVING_TARGET", f"127.0.0.1:{stand_in.port}")


async def until(condition: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def version_of_label(stand_in: StandIn, label: str) -> int:
    """The version TF Serving answers a Predict by `label` with."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "encoder"
    request.model_spec.version_label = label
    request.inputs["history"].CopyFrom(tensor([[1, 2]]))
    request.inputs["length"].CopyFrom(tensor([2]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stand_in.port}") as channel:
        response = await prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
    return int(response.model_spec.version.value)


def tensor(values: list[int] | list[list[int]]) -> object:
    import tensorflow as tf

    return tf.make_tensor_proto(values, tf.int32)


async def test_the_stand_in_refuses_a_config_that_moves_a_label_to_an_unloaded_version(
    base: Path, exported: Path
) -> None:
    config = base.parent / "models.config"
    shutil.copytree(exported, base / "encoder" / "2")
    stand_in = await start_prediction_service(base, config_file=config, poll_s=0.05)
    try:
        assert await version_of_label(stand_in, "canary") == 1
        # Version 2 and canary -> 2 in one write, as evorec wrote them: TF Serving sets the
        # labels before it loads, refuses the whole config, and so never loads version 2.
        set_version_label(config, "encoder", "canary", 2)
        await until(lambda: stand_in.state.refused is not None, "the config was not refused")
        assert "label to version 2 of model encoder" in (stand_in.state.refused or "")
        await asyncio.sleep(0.3)  # polls later: the same file, refused the same way
        assert sorted(stand_in.state.loaded["encoder"]) == [1]
        assert await version_of_label(stand_in, "canary") == 1

        # A label it does not serve yet may name a version still to load (the flag): canary
        # back at 1 and a new label nightly at 2, in one write.
        draft = base.parent / "draft.config"
        apply_version_policy(draft, "encoder", [1, 2])
        for label, version in {"stable": 1, "canary": 1, "nightly": 2}.items():
            set_version_label(draft, "encoder", label, version)
        draft.replace(config)
        await until(lambda: stand_in.state.refused is None, "the fixed config was refused")
        await until(lambda: 2 in stand_in.state.loaded["encoder"], "version 2 did not load")
        assert await version_of_label(stand_in, "nightly") == 2
    finally:
        await stand_in.stop()

    # Without --allow_version_labels_for_unavailable_models, no label may wait: TF Serving
    # does not even start on a config whose labels name versions it has not loaded yet.
    with pytest.raises(ConfigRefused, match="not currently available"):
        await start_prediction_service(
            base, config_file=config, allow_version_labels_for_unavailable_models=False
        )


async def test_export_with_a_label_moves_it_once_tf_serving_has_loaded_the_version(
    settings: object, monkeypatch: pytest.MonkeyPatch, base: Path, exported: Path
) -> None:
    """The bug: version 2 and its label in one config write, TF Serving refused the config
    and never loaded version 2, at every poll after."""
    config = base.parent / "models.config"
    stand_in = await start_prediction_service(base, config_file=config, poll_s=0.05)
    try:
        on_tf_serving(monkeypatch, stand_in)
        await asyncio.to_thread(
            model_cli.export, exported, base=base, label="canary", model_config=config
        )
        assert labels(config, "encoder") == {"stable": 1, "canary": 2}
        await until(
            lambda: stand_in.state.labels["encoder"].get("canary") == 2,
            "TF Serving did not take canary -> 2",
        )
        assert stand_in.state.refused is None
        assert await version_of_label(stand_in, "canary") == 2
        assert await version_of_label(stand_in, "stable") == 1
        assert sorted(stand_in.state.loaded["encoder"]) == [1, 2]
    finally:
        await stand_in.stop()


async def test_export_leaves_the_label_when_tf_serving_does_not_load_the_version_in_time(
    settings: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    base: Path,
    exported: Path,
) -> None:
    import evorec.encoder.publish
    from evorec.cli import main

    config = base.parent / "models.config"
    # A TF Serving that does not re-read its config in time (a long poll, a slow load).
    stand_in = await start_prediction_service(base, config_file=config, poll_s=3600)
    try:
        on_tf_serving(monkeypatch, stand_in)
        monkeypatch.setattr(evorec.encoder.publish, "LABEL_WAIT_S", 0.5)
        argv = ["evorec", "export", str(exported), "--base", str(base), "--label", "canary"]
        monkeypatch.setattr(sys, "argv", [*argv, "--model-config", str(config)])
        with pytest.raises(SystemExit) as exited:
            await asyncio.to_thread(main)
        assert exited.value.code == 1
        error = capsys.readouterr().err
        assert error.startswith("error: label canary not moved to version 2: TF Serving at")
        assert "did not report version 2 of encoder AVAILABLE within 0.5 s" in error
        # Published, and listed for TF Serving to load; the label stays where it was.
        assert model_versions(base / "encoder") == [1, 2]
        assert labels(config, "encoder") == {"stable": 1, "canary": 1}
        await stand_in.state.refresh()  # TF Serving gets to it
        assert stand_in.state.refused is None
        assert sorted(stand_in.state.loaded["encoder"]) == [1, 2]

        # The command the error names moves the label, without copying the version again.
        hint = f"evorec export {base / 'encoder' / '2'} --base {base} --label canary"
        assert f"`{hint} --model-config {config}`" in " ".join(error.split())
        await asyncio.to_thread(
            model_cli.export, base / "encoder" / "2", base=base, label="canary", model_config=config
        )
        assert labels(config, "encoder") == {"stable": 1, "canary": 2}
        await stand_in.state.refresh()
        assert stand_in.state.refused is None
        assert await version_of_label(stand_in, "canary") == 2
    finally:
        await stand_in.stop()


async def test_export_in_process_writes_the_label_for_a_tf_serving_started_later(
    settings: object, base: Path, exported: Path
) -> None:
    """No TF Serving runs to wait for: the label is written at once, and a TF Serving that
    starts on the file takes it (a label of its first config is new to it)."""
    config = base.parent / "models.config"
    await asyncio.to_thread(
        model_cli.export, exported, base=base, label="canary", model_config=config
    )
    assert labels(config, "encoder") == {"stable": 1, "canary": 2}
    stand_in = await start_prediction_service(base, config_file=config)
    try:
        assert await version_of_label(stand_in, "canary") == 2
        assert await version_of_label(stand_in, "stable") == 1
    finally:
        await stand_in.stop()
