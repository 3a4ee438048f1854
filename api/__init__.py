"""HTTP layer (FastAPI) and the ``vitrine`` command. Business logic lives in engine/."""
