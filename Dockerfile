# tinyzoo: the inference service with its committed weights (no training code, no dev tools).
#   docker build -t tinyzoo:0.1.0 .                                 (CPU build of torch)
#   docker build -t tinyzoo:0.1.0-cuda --build-arg TORCH=cuda .      (CUDA 12.8 build)
# TORCH takes what `make install TORCH=...` takes (deploy/install-torch.sh); so does TORCH_INDEX.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH=cpu
ARG TORCH_INDEX=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
COPY constraints.txt ./
COPY deploy/install-torch.sh ./deploy/
RUN TORCH_INDEX="${TORCH_INDEX}" sh deploy/install-torch.sh "${TORCH}" python
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
RUN pip install -c constraints.txt '.[tracing]'

FROM ${PYTHON_IMAGE}
# `python -m app` (app/__main__.py) runs uvicorn with TINYZOO_WORKERS processes, each with its own
# models and one torch thread: give the container as many CPUs (docker run --cpus 2) or change
# both (-e TINYZOO_WORKERS=4). /metrics sums the workers. SIGTERM: 20 s to finish requests.
# Memory (measured): each worker 321 MiB once ready, 327 MiB after 400 requests, 376 MiB once it
# has explained an answer (Captum and the matplotlib it imports, whose config and font cache go
# to MPLCONFIGDIR: /tmp is writable under the Deployment's read-only root filesystem), + up to
# 202 MiB while it decodes the largest upload allowed (one at a time).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TINYZOO_HOST=0.0.0.0 \
    TINYZOO_PORT=8000 \
    TINYZOO_WORKERS=2 \
    TINYZOO_THREADS=1 \
    TINYZOO_GRACEFUL_SHUTDOWN_S=20 \
    TINYZOO_WEIGHTS_DIR=/srv/weights \
    TINYZOO_LOG_FORMAT=json \
    TINYZOO_PREPROCESS_THREADS=1 \
    TINYZOO_MAX_DECODED_BYTES=201326592 \
    TINYZOO_MAX_HEADER_BYTES=65536 \
    TINYZOO_CLIENT_TIMEOUT_S=60 \
    TINYZOO_MAX_REQUESTS_IN_PROGRESS=64 \
    TINYZOO_INTAKE_WAIT_S=5 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=4194304 \
    MALLOC_TRIM_THRESHOLD_=16777216
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tinyzoo
COPY --from=build /opt/venv /opt/venv
COPY weights /srv/weights
WORKDIR /srv
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["python", "-m", "app"]
