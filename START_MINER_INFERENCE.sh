#!/usr/bin/env bash
# Start the miner's inference server: load .env, serve MODEL_NAME on $HOST:$MINER_INFERENCE_PORT (8001).
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "usage: ./START_MINER_INFERENCE.sh [--host H] [--port P]"
    echo "  reads .env: MODEL_NAME, DEVICE, MODEL_DTYPE, HOST, MINER_INFERENCE_PORT (default 8001),"
    echo "  SUBTENSOR_NETWORK, WALLET_MINER_NAME/WALLET_HOTKEY (the hotkey validators address on a real chain)"
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
exec "$QUASAR" inference --host "${HOST:-0.0.0.0}" --port "${MINER_INFERENCE_PORT:-8001}" "$@"
