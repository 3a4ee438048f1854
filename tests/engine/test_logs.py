"""VITRINE_LOG_FORMAT=json: one JSON object per line, from a real process's logging set up the
way `vitrine` and `vitrine worker` set it up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine import logs

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr.strip().splitlines()


def test_json_lines_carry_time_level_logger_message_and_the_traceback() -> None:
    lines = run("import logging\n"
                "from engine import logs\n"
                "logs.configure('json')\n"
                "logging.getLogger('vitrine.test').info('rules %s live', 'abc')\n"
                "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logging.getLogger('x').exception('failed')\n")
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "vitrine.test" and first["message"] == "rules abc live"
    assert first["time"][:2] == "20"
    assert second["level"] == "ERROR" and "ZeroDivisionError" in second["exc_info"]


def test_text_stays_the_default_format() -> None:
    [line] = run("import logging\nfrom engine import logs\nlogs.configure('text')\n"
                 "logging.getLogger('vitrine.test').warning('plain')\n")
    assert line.endswith("WARNING vitrine.test: plain")


def test_the_dict_config_a_worker_gets_writes_json() -> None:
    [line] = run("import logging, logging.config\nfrom engine import logs\n"
                 "logging.config.dictConfig(logs.dict_config('json', 'info'))\n"
                 "logging.getLogger('faust').info('ready')\nlogging.getLogger('faust').debug('hidden')\n")
    assert json.loads(line)["message"] == "ready"
    assert logs.dict_config("text") is None  # a worker then keeps faust's own lines
