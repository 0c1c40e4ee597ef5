# Pagewise and Ollama in one image: for a Docker Space on Hugging Face, or any server.
#
#   docker build -t pagewise .
#   docker run --init -p 7860:7860 -e RAG_AUTH=me:a-long-password -v pagewise:/data pagewise
#
# The entrypoint (docker/entrypoint.sh) starts `ollama serve` inside the container, pulls the two models on first
# start, then runs the app on port 7860. RAG_AUTH is required (or RAG_AUTH=none for a private Space or network).
# Everything that should survive a restart (index, PDFs, Ollama's and Hugging Face's model caches) is under /data.
# Pin the Ollama release you tested with, e.g. --build-arg OLLAMA_IMAGE=ollama/ollama:0.12.0
ARG OLLAMA_IMAGE=ollama/ollama:latest
FROM ${OLLAMA_IMAGE} AS ollama

FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False

# libgl1 and libglib2.0-0: the system libraries of OpenCV, which the OCR engine (RapidOCR) uses.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# The Ollama server: its binary and its runner libraries (CPU, and CUDA for `docker run --gpus all`).
COPY --from=ollama /usr/bin/ollama /usr/bin/ollama
COPY --from=ollama /usr/lib/ollama /usr/lib/ollama

# The CPU build of torch first (a plain `torch` requirement would pull a multi-GB CUDA build; only the reranker
# runs in this process), then the app's requirements.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
    && pip install -r /tmp/requirements.txt

# Hugging Face runs Docker Spaces as user 1000; the same user does anywhere else.
RUN useradd --create-home --uid 1000 user && mkdir -p /data && chown user:user /data
USER user
ENV HOME=/home/user \
    RAG_BACKEND=ollama \
    RAG_HOST=0.0.0.0 \
    RAG_PORT=7860 \
    RAG_DATA_DIR=/data/pagewise \
    OLLAMA_HOST=http://127.0.0.1:11434 \
    OLLAMA_MODELS=/data/ollama \
    HF_HOME=/data/huggingface
WORKDIR /home/user/app
COPY --chown=user . .

EXPOSE 7860
ENTRYPOINT ["docker/entrypoint.sh"]
