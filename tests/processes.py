"""Looking at a process's children from a test: a child can exit (and sit as a zombie until it is
reaped) between listing it and reading it, so a read that fails counts as no match."""

from __future__ import annotations

import psutil


def command_line(process: psutil.Process) -> str:
    """The process's command line, or "" once it has exited (a zombie has none to read)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""
