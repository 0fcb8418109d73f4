"""The JSON log formatter, and docker/logging.conf as ryu-manager loads it (fileConfig)."""
from __future__ import annotations

import json
import logging
import pathlib
import subprocess
import sys

from msp_controller.api.logjson import JsonFormatter

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOGGING_CONF = ROOT / "docker" / "logging.conf"


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("msp.test")
    return logger.makeRecord("msp.test", logging.WARNING, __file__, 1, message, args, None, extra=extra)


def test_one_json_object_per_record() -> None:
    line = JsonFormatter().format(_record("%s %s: no live path left", "home1", "default"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "msp.test"
    assert entry["message"] == "home1 default: no live path left"
    assert entry["time"].endswith("Z") and len(entry["time"]) == len("2026-12-01T07:05:52.123Z")


def test_exceptions_and_extra_fields() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.getLogger("msp.test").makeRecord(
            "msp.test", logging.ERROR, __file__, 1, "handling %s failed", ("packet-in",), sys.exc_info(),
            extra={"dpid": 0x101, "where": pathlib.Path("/x")})
    line = JsonFormatter().format(record)
    assert "\n" not in line  # the traceback's newlines are escaped inside the string
    entry = json.loads(line)
    assert entry["message"] == "handling packet-in failed"
    assert "RuntimeError: boom" in entry["exception"] and "Traceback" in entry["exception"]
    assert entry["dpid"] == 257 and entry["where"] == "/x"  # not JSON by itself: its text


LOG_SOME = """
import logging, logging.config, sys
logging.config.fileConfig(sys.argv[1], disable_existing_loggers=False)
logging.getLogger("msp.core").info("home1 default egress now via %s", "ispB@edge1")
logging.getLogger("ryu.controller").info("hidden: ryu is quiet below WARNING")
logging.getLogger("msp.core").debug("hidden: below INFO")
"""


def _log_with(config: pathlib.Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", LOG_SOME, str(config)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stderr.splitlines()


def test_the_shipped_config_logs_plain_lines() -> None:
    assert _log_with(LOGGING_CONF) == ["INFO msp.core: home1 default egress now via ispB@edge1"]


def test_the_shipped_config_switches_to_json_with_one_word(tmp_path: pathlib.Path) -> None:
    text = LOGGING_CONF.read_text()
    assert text.count("formatter=plain") == 1
    switched = tmp_path / "logging.conf"
    switched.write_text(text.replace("formatter=plain", "formatter=json"))
    lines = _log_with(switched)
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["logger"], entry["message"]) == ("msp.core", "home1 default egress now via ispB@edge1")
