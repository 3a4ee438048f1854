# syntax=docker/dockerfile:1
# Build: docker build -t vitrine .    Run: docker run -p 8000:8000 -e VITRINE_REDIS_URL=redis://redis:6379/0 vitrine
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/vitrine
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY api ./api
COPY streaming ./streaming
COPY models ./models
COPY load_tests ./load_tests
RUN /opt/vitrine/bin/pip install --no-cache-dir .
# Compile the scoring kernels (numba) once, here, instead of in every container's first seconds
# (from /tmp, so that the installed package is the one imported and cached).
ENV NUMBA_CACHE_DIR=/opt/vitrine/numba-cache
WORKDIR /tmp
RUN OPENBLAS_NUM_THREADS=1 /opt/vitrine/bin/python -c "from engine.ranking.model import warm_kernels; warm_kernels()"

FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 vitrine && mkdir -p /data && chown vitrine /data
COPY --from=build /opt/vitrine /opt/vitrine
ENV PATH=/opt/vitrine/bin:$PATH \
    OPENBLAS_NUM_THREADS=1 \
    NUMBA_CACHE_DIR=/opt/vitrine/numba-cache \
    PYTHONUNBUFFERED=1 \
    VITRINE_DATA_DIR=/data \
    VITRINE_HOST=0.0.0.0 \
    VITRINE_PORT=8000
USER 10001
WORKDIR /data
VOLUME /data
EXPOSE 8000
# GET /health on VITRINE_HOST/VITRINE_PORT as the container runs them (api/healthcheck.py, stdlib only).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["python", "-m", "api.healthcheck"]
CMD ["vitrine", "serve"]
