# syntax=docker/dockerfile:1
# One image for every part of tokenrelay:
#   tokenrelay serve ingest gateway analytics   (the public face)
#   tokenrelay serve worker
#   tokenrelay aggregator
# Build: docker build -t tokenrelay:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: wheels for tokenrelay and its pinned dependencies ----------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
RUN python -m pip wheel --wheel-dir /wheels .

# --- run: the wheels installed into a venv, no compiler, not root ------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tokenrelay" \
      org.opencontainers.image.description="LLM jobs on Kafka: durable, replayable, streamed token by token." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.vendor="tokenrelay"
ENV PATH=/opt/tokenrelay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TOKENRELAY_HTTP_HOST=0.0.0.0 \
    TOKENRELAY_AGGREGATOR_HOST=0.0.0.0 \
    TOKENRELAY_DATA_DIR=/var/lib/tokenrelay
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/tokenrelay \
    && /opt/tokenrelay/bin/pip install --no-cache-dir --no-index --find-links=/wheels tokenrelay \
    && groupadd --system --gid 10001 tokenrelay \
    && useradd --system --uid 10001 --gid tokenrelay --home-dir /var/lib/tokenrelay tokenrelay \
    && install -d -o tokenrelay -g tokenrelay /var/lib/tokenrelay
COPY --chmod=0755 deploy/healthcheck.py /usr/local/bin/tokenrelay-healthcheck
USER 10001:10001
WORKDIR /var/lib/tokenrelay
VOLUME ["/var/lib/tokenrelay"]
EXPOSE 8000 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["tokenrelay-healthcheck"]
ENTRYPOINT ["tokenrelay"]
CMD ["serve", "ingest", "gateway", "analytics"]
