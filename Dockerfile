# The Validator API. Build from the repository root:  docker build -t quasar-api .
# At start it applies the database migrations (forward only; never drops or recreates anything),
# then serves on $PORT. State lives in DATABASE_URL (PostgreSQL in production) and /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml setup.py README.md ./
COPY quasar ./quasar
COPY validator_api ./validator_api
COPY neurons ./neurons
COPY miner ./miner
# The API's extra only: the API imports neither torch nor transformers, so the image has neither.
RUN pip install ".[api]"

RUN useradd --create-home --uid 10001 quasar && mkdir -p /data && chown quasar /data
USER quasar
# Production chain unless told otherwise (compose and render set it too); the settings' own default
# is the embedded dev chain.
ENV HOST=0.0.0.0 PORT=8000 QUASAR_HOME=/data LOG_FORMAT=json SUBTENSOR_NETWORK=finney
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["sh", "-c", "quasar db upgrade && exec quasar api --host \"$HOST\" --port \"$PORT\""]
