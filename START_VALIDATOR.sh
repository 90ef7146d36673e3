#!/usr/bin/env bash
# Start the validator neuron: load .env, then run `quasar validator` (the same as `python -m neurons.validator`).
# Extra arguments are passed on, e.g. ./START_VALIDATOR.sh --once
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    cat <<'USAGE'
usage: ./START_VALIDATOR.sh [--once | --max-jobs N] [other `quasar validator` flags]
  reads .env: WALLET_VALIDATOR_NAME, WALLET_HOTKEY, SUBTENSOR_NETWORK, NETUID, VALIDATOR_API_URL,
  DEVICE (auto: one worker per GPU), ENABLE_LOGIT_VERIFICATION, REFERENCE_MODEL and the sandbox
  settings. See docs/operations.md ("Validator").
USAGE
    exit 0
fi
if [ -f .env ]; then set -a; . ./.env; set +a; fi
QUASAR=${QUASAR:-.venv/bin/quasar}
if [ ! -x "$QUASAR" ]; then
    echo "error: $QUASAR not found. Run 'make demo' or 'make test' once to create .venv." >&2
    exit 1
fi
exec "$QUASAR" validator \
    --wallet.name "${WALLET_VALIDATOR_NAME:-quasar_validator}" \
    --wallet.hotkey "${WALLET_HOTKEY:-default}" \
    --subtensor.network "${SUBTENSOR_NETWORK:-embedded}" \
    --netuid "${NETUID:-24}" \
    "$@"
