"""Embedded mode's optional periodic retraining (``VITRINE_RETRAIN_INTERVAL_S``).

`vitrine serve` runs `vitrine train` every interval in a child process at low CPU priority, so
serving keeps the cores it needs and a crash in training cannot take the server down. Training
gates the promotion itself (models.lifecycle); API processes pick a promoted model up through
``CURRENT`` as after a manual `vitrine train`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading

from engine import tasks

log = logging.getLogger("vitrine.retrain")
TASK_NAME = "retrain"


class RetrainFailed(RuntimeError):
    """`vitrine train` ended with an error (its output says why)."""


class Retrainer:
    def __init__(self, interval_s: float, env: dict[str, str]) -> None:
        self.interval_s = interval_s
        self.env = env
        self.runs = 0
        self._stop = threading.Event()
        self._child: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._loop, name="vitrine-retrain", daemon=True)

    def start(self) -> None:
        log.info("retraining every %gs in the background", self.interval_s)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        if self._stop.wait(self.interval_s):
            return
        # A failed run is retried sooner than the next interval, but not in a tight loop: training
        # takes the CPU serving needs.
        tasks.supervise_thread(TASK_NAME, self._step, self._stop, first_backoff_s=min(self.interval_s, 60.0),
                               max_backoff_s=self.interval_s, expected=lambda exc: isinstance(exc, RetrainFailed))

    def _step(self) -> float | None:
        if self._stop.is_set():
            return None
        code, summary = self.run_once()
        if code != 0 and not self._stop.is_set():
            raise RetrainFailed(f"exit {code}: {summary}")
        return self.interval_s

    def run_once(self) -> tuple[int, str]:
        """One `vitrine train` in a child process: its exit code and last lines of output."""
        self._child = subprocess.Popen([sys.executable, "-m", "api.cli", "train"], env=self.env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with contextlib.suppress(OSError):  # lower priority (not preexec_fn: unsafe in a threaded server)
            os.setpriority(os.PRIO_PROCESS, self._child.pid, 10)
        output, _ = self._child.communicate()
        self.runs += 1
        lines = [line for line in output.splitlines() if line.strip()]
        if self._child.returncode == 0:
            log.info("retrain: %s", " | ".join(lines[-2:]))
        return self._child.returncode, " | ".join(lines[-3:])
