"""The retraining loop's settings (`EVOREC_RETRAIN__...`)."""

from __future__ import annotations

from pydantic import Field

from evorec.platform.section import Section


class RetrainSettings(Section):
    """How `evorec retrain` builds, judges and publishes a candidate version."""

    # The gate: a candidate is published only when its NDCG@10 on the newest events is at
    # least the serving version's minus this margin (a retrain on fresher data may lose a
    # little on the old items and still be the better model tomorrow).
    ndcg_margin: float = Field(default=0.01, ge=0, le=1)
    # Seconds the event export and the catalog listing may take together.
    export_timeout_s: float = Field(default=600.0, gt=0)
