# tinyzoo: the inference service with its committed weights.
#   docker build -t tinyzoo .                                      (CPU build of torch)
#   docker build -t tinyzoo:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
COPY constraints.txt ./
RUN pip install --index-url "${TORCH_INDEX}" -c constraints.txt torch==2.13.0
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
COPY training ./training
RUN pip install -c constraints.txt .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TINYZOO_WEIGHTS_DIR=/srv/weights \
    TINYZOO_LOG_FORMAT=json \
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
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--timeout-graceful-shutdown", "20"]
