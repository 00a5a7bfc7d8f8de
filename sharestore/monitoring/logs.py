"""Structured logs: one JSON object per line with time, level, logger, message and request_id."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sharestore.core import request_id


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or "-") on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; exceptions go to `exc_info` as text."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get() or None,
        }
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)
