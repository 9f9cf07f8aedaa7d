"""The sequence encoder as the ranking service reaches it (`EVOREC_SERVING__...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from evorec.platform.section import MIB, Section


class ServingSettings(Section):
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
    # Dial TF Serving with TLS (its --ssl_config_file), verified with the `tls` section's
    # ca_file, and presenting this process's certificate should TF Serving ask for one
    # (client_verify).
    tf_serving_tls: bool = False
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
