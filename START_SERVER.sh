#!/usr/bin/env bash
# Start the Validator API: load .env, apply migrations, serve on $HOST:$PORT.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "usage: ./START_SERVER.sh   (reads .env; HOST, PORT, DATABASE_URL, SUBTENSOR_NETWORK ...)"
    exit 0
fi
if [ -f .env ]; then set -a; . ./.env; set +a; fi
QUASAR=${QUASAR:-.venv/bin/quasar}
if [ ! -x "$QUASAR" ]; then
    echo "error: $QUASAR not found. Run 'make demo' or 'make test' once to create .venv." >&2
    exit 1
fi
"$QUASAR" db upgrade
exec "$QUASAR" api --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}"
