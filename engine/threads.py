"""The numeric libraries' thread pools, set once by each process entry point (`vitrine`, the
benchmarks run as programs, the test session): never at import time, so that importing a module
does not change the process's environment.

Training (implicit's ALS) runs its own threads and serving scores one request at a time; a BLAS
thread pool on top of either oversubscribes the cores, and implicit warns when one is on.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def limit_blas_threads() -> None:
    """One BLAS thread unless the environment says otherwise. The variable covers the libraries
    loaded from now on and child processes (uvicorn workers, `vitrine train` children); the limit
    covers those already loaded, which read the variable only when they load."""
    threads = os.environ.setdefault(BLAS_THREADS, "1")
    if threads.isdigit():
        threadpool_limits(int(threads), user_api="blas")
