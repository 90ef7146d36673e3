# The Validator API. Build from the repository root:  docker build -t quasar-api .
# At start it applies the database migrations (forward only; never drops or recreates anything),
# then serves on $PORT. State lives in DATABASE_URL (PostgreSQL in production) and /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The CPU build of PyTorch, pinned like `make test` does: an unpinned torch pulls a multi-GB CUDA wheel.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml setup.py README.md ./
COPY quasar ./quasar
COPY validator_api ./validator_api
COPY neurons ./neurons
COPY miner ./miner
RUN pip install .

RUN useradd --create-home --uid 10001 quasar && mkdir -p /data && chown quasar /data
USER quasar
ENV HOST=0.0.0.0 PORT=8000 QUASAR_HOME=/data LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["sh", "-c", "quasar db upgrade && exec quasar api --host \"$HOST\" --port \"$PORT\""]
