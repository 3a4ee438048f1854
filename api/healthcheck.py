"""The container's health probe (the Dockerfile's HEALTHCHECK): ``GET /health`` on the address
the server listens on, from ``VITRINE_HOST`` and ``VITRINE_PORT``. Standard library only: it runs
every few seconds, and importing the settings (pydantic) would cost more than the probe itself.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 8000  # engine.settings.Settings.port's default; a test checks that they agree
_EVERYWHERE = ("", "0.0.0.0", "::")


def health_url(environ: Mapping[str, str]) -> str:
    host = environ.get("VITRINE_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in _EVERYWHERE else host  # listening on every address: ask loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{environ.get('VITRINE_PORT') or DEFAULT_PORT}/health"


def main() -> int:
    try:
        with urllib.request.urlopen(health_url(os.environ), timeout=2) as response:  # noqa: S310 - our URL
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
