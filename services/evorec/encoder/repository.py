"""The served versions of one model: found under TF Serving's base path, loaded, and replaced
without a restart when a newer one appears.

A new version is loaded completely (bundle, and in-process the SavedModel, warmed with one
call) before it becomes the current one; the switch is one reference assignment, so a
request sees either the old version or the new one, never a mix. The previous versions stay
loaded (up to `keep`) for answers that name them (TF Serving behind a version label).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from evorec.encoder.backends import EncoderBackend
from evorec.encoder.bundle import ModelBundle, model_versions
from evorec.platform.heap import refreeze

log = logging.getLogger("evorec.encoder")


class ModelRepository:
    """Loaded versions of the model under `model_dir`, newest current."""

    def __init__(self, model_dir: Path, backend: EncoderBackend, keep: int = 1) -> None:
        self.model_dir = model_dir
        self.backend = backend
        self.keep = keep
        self.bundles: dict[int, ModelBundle] = {}
        self.current: ModelBundle | None = None
        self.failed: set[int] = set()
        self._loading = asyncio.Lock()

    async def refresh(self) -> bool:
        """Loads the version the backend picks (the newest, or a label's) if it is not the
        current one; True when the current one changed. A version that fails to load is
        logged and skipped; the current one keeps serving."""
        versions = [v for v in model_versions(self.model_dir) if v not in self.failed]
        if not versions:
            return False
        try:
            newest = await self.backend.pick_version(versions)
        except Exception as error:
            log.warning("cannot ask %s which version to serve: %s", self.backend.description, error)
            if self.current is not None:
                return False
            newest = versions[-1]  # the fallback sources need a bundle even so
        if self.current is not None and newest == self.current.version:
            return False
        try:
            bundle = await self.load(newest)
        except Exception:
            log.exception("cannot load model version %s: keeping the current one", newest)
            self.failed.add(newest)
            return False
        self.current = bundle
        others = [v for v in self.bundles if v != newest]  # in the order they were loaded
        dropped = others[: max(0, len(others) - self.keep)]
        for old in dropped:
            del self.bundles[old]
            self.backend.unload(old)
        if dropped:
            refreeze()  # the dropped model's cycles were frozen with it
        log.info("serving model version %s (%s)", newest, self.backend.description)
        return True

    async def load(self, version: int) -> ModelBundle:
        """The bundle of `version`, loaded (with the backend's model) if it is not yet."""
        async with self._loading:
            if version not in self.bundles:
                version_dir = self.model_dir / str(version)
                bundle = await asyncio.to_thread(ModelBundle.load, version_dir)
                await self.backend.load(version_dir)
                self.bundles[version] = bundle
            return self.bundles[version]

    async def watch(
        self, interval_s: float, on_change: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Refreshes every `interval_s` until cancelled, awaiting `on_change` after a
        refresh that changed the current version."""
        while True:
            await asyncio.sleep(interval_s)
            if await self.refresh() and on_change is not None:
                await on_change()
