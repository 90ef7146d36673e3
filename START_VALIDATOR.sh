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
QUASAR=${QUASAR:-.venv/bin/quasar}
if [ ! -x "$QUASAR" ]; then
    echo "error: $QUASAR not found. Run 'make demo' or 'make test' once to create .venv." >&2
    exit 1
fi
# .env is read by the parser the settings use (`quasar env`): its values are data, never run as shell
# code (WEIGHT_SPLIT=[0.60, 0.25, ...] stays a list), and a variable set in the environment wins.
if [ -f .env ]; then exports=$("$QUASAR" env); eval "$exports"; fi
exec "$QUASAR" validator \
    --wallet.name "${WALLET_VALIDATOR_NAME:-quasar_validator}" \
    --wallet.hotkey "${WALLET_HOTKEY:-default}" \
    --subtensor.network "${SUBTENSOR_NETWORK:-embedded}" \
    ${NETUID:+--netuid "$NETUID"} \
    "$@"
