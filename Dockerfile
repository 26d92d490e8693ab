# One image for every role: `jobplatform api` (default), `jobplatform worker`, `jobplatform migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY backend ./backend
COPY worker ./worker
RUN pip install .

# Non-root. /data/results is created here so a fresh named volume mounted on it inherits the ownership.
RUN useradd --system --create-home --uid 10001 app \
    && mkdir -p /data/results \
    && chown -R app:app /data
USER app

# `jobplatform migrate` reads /app/alembic.ini and /app/alembic (MIGRATIONS_DIR).
ENV MIGRATIONS_DIR=/app \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data \
    RESULTS_DIR=/data/results \
    LOG_FORMAT=json

EXPOSE 8000
CMD ["jobplatform", "api"]
