#!/usr/bin/env bash
# Start the Validator API: load .env, apply migrations, serve on $HOST:$PORT.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "usage: ./START_SERVER.sh   (reads .env; HOST, PORT, DATABASE_URL, SUBTENSOR_NETWORK ...)"
    exit 0
fi
QUASAR=${QUASAR:-.venv/bin/quasar}
if [ ! -x "$QUASAR" ]; then
    echo "error: $QUASAR not found. Run 'make demo' or 'make test' once to create .venv." >&2
    exit 1
fi
# .env is read by the parser the settings use (`quasar env`): its values are data, never run as shell
# code (WEIGHT_SPLIT=[0.60, 0.25, ...] stays a list), and a variable set in the environment wins.
if [ -f .env ]; then exports=$("$QUASAR" env); eval "$exports"; fi
"$QUASAR" db upgrade
exec "$QUASAR" api --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}"
