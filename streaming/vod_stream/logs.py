"""Logs are JSON lines on stdout: one object per record, extra fields merged in."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

ACCESS = logging.getLogger("vod_stream.access")
LOG = logging.getLogger("vod_stream")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = True


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields."""
    LOG.log(level, message, extra={"fields": {"event": message, **fields}})


def access(**fields: Any) -> None:
    ACCESS.info("access", extra={"fields": {"event": "access", "worker": os.getpid(), **fields}})
