"""Where a bench's numbers go: a JSON report and its Markdown table side by side, printed too."""

from __future__ import annotations

import json
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
