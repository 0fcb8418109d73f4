"""A logging formatter that writes each record as one JSON object on one line, for log
collectors (journald's JSON export, Loki, Elasticsearch). Used by docker/logging.conf:

    [formatter_json]
    class=msp_controller.api.logjson.JsonFormatter

Fields: time (UTC, ISO 8601, milliseconds), level, logger, message, then "exception"
(the traceback's text) when there is one, and any `extra=` fields the caller passed.
"""
from __future__ import annotations

import datetime
import json
import logging
from typing import Any

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        # default=str: an extra field that is not JSON (a datapath, an address) still logs.
        return json.dumps(entry, ensure_ascii=False, default=str)
