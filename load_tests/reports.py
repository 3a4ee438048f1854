"""Where a bench's numbers go: a JSON report and its Markdown table side by side, printed too."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def stem(out: Path, name: str) -> Path:
    """``out/<name>-<UTC time>``, the folder made: the reports' path without its suffix."""
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def save(path: Path, report: dict[str, Any], markdown: str) -> None:
    path.with_suffix(".json").write_text(json.dumps(report, indent=2))
    path.with_suffix(".md").write_text(markdown)
    print(markdown, end="")
    print(f"report: {path}.md")


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its children (uvicorn's workers, a stream worker's
    applier process), from Linux's /proc; 0.0 where there is none (the figure is then left out)."""
    try:
        total = 0.0
        for child in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return total
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_use(cpu_s: float, elapsed_s: float, events: int) -> dict[str, float | None]:
    """What a process (tree) used over a timed window: cores busy on average, CPU time per event
    (None when nothing was measured)."""
    if cpu_s <= 0 or elapsed_s <= 0 or events <= 0:
        return {"cpu_cores": None, "cpu_us_per_event": None}
    return {"cpu_cores": round(cpu_s / elapsed_s, 2), "cpu_us_per_event": round(cpu_s / events * 1e6)}
