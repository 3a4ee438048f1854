"""HTTP layer (FastAPI) and the ``vitrine`` command. Business logic lives in engine/."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vitrine")  # the installed package's, so it cannot drift from pyproject.toml
except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"
