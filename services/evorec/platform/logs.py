"""Structured logs: one JSON object per line, each carrying the service and the request id."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from evorec.platform import context

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(service)s [%(request_id)s] %(name)s: %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(service)s %(request_id)s %(message)s"


class _ContextFilter(logging.Filter):
    """Stamps every record with the service name and the current request id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = context.request_id.get() or "-"
        return True


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Sends the process's logs to stderr, as JSON lines or as text for a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(_JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
