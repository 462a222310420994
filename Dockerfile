# Layerwise image: the API, the dispatcher, Ray nodes and the MLflow server all run from it.
#   CPU (default):  docker build -t layerwise .
#   CUDA:           docker build -t layerwise:cuda \
#                     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# The CPU wheel index keeps the image small; a CUDA build points it at a CUDA wheel index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LAYERWISE_HOME=/var/lib/layerwise

RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
      && rm -rf /var/lib/apt/lists/*; fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY services services
COPY workers workers
COPY models models
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
    && pip install .

EXPOSE 8000 5000 6379 8265
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=3)" || exit 1
CMD ["layerwise", "serve", "--host", "0.0.0.0", "--port", "8000"]
