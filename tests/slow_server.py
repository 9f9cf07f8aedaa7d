"""A PreprocessService whose NormalizeText takes the seconds given on the command line, run
through `evorec.platform.server.serve` exactly as `evorec serve` runs a service."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from evorec.platform.config import load_settings
from evorec.platform.server import serve
from tests.support import ScriptedServicer, echo, scripted_service


def main() -> None:
    delay = float(sys.argv[1])

    async def slow_echo(request: Any, context: Any) -> Any:
        await asyncio.sleep(delay)
        return await echo(request, context)

    settings = load_settings()
    service = scripted_service(ScriptedServicer(slow_echo))
    asyncio.run(serve(service, settings.preprocess, settings.server))


if __name__ == "__main__":
    main()
