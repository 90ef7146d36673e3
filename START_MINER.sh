#!/usr/bin/env bash
# Start the miner neuron: load .env, then run `quasar miner` (the same as `python -m neurons.miner`).
# Extra arguments are passed on, e.g. ./START_MINER.sh --once
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    cat <<'USAGE'
usage: ./START_MINER.sh [--once] [other `quasar miner` flags]
  reads .env: WALLET_MINER_NAME, WALLET_HOTKEY, SUBTENSOR_NETWORK, NETUID, VALIDATOR_API_URL,
  MINER_STRATEGY (tune|agent|manual), MINER_INFERENCE_PORT, and on a real chain GITHUB_TOKEN and
  GITHUB_USERNAME (or GIT_REMOTE_URL) and MINER_EXTERNAL_IP. See docs/operations.md ("Miner").
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
NETWORK=${SUBTENSOR_NETWORK:-embedded}
if [ "$NETWORK" != "embedded" ] && [ -z "${GIT_REMOTE_URL:-}" ]; then
    if [ -z "${GITHUB_TOKEN:-}" ] || [ -z "${GITHUB_USERNAME:-}" ]; then
        echo "error: on $NETWORK the miner pushes its kernel to a GitHub fork: set GITHUB_TOKEN (repo scope)" \
             "and GITHUB_USERNAME in .env, or GIT_REMOTE_URL for another git remote." >&2
        exit 2
    fi
fi
LLM_URL=${MINER_LLM_BASE_URL-https://api.openai.com/v1}
if [ "${MINER_STRATEGY:-tune}" = "agent" ] && [[ "$LLM_URL" == *api.openai.com* ]] && [ -z "${MINER_LLM_API_KEY:-}" ]; then
    echo "error: MINER_STRATEGY=agent on the OpenAI endpoint needs MINER_LLM_API_KEY in .env" \
         "(or MINER_LLM_BASE_URL pointing at your own OpenAI-compatible server)." >&2
    exit 2
fi
exec "$QUASAR" miner \
    --wallet.name "${WALLET_MINER_NAME:-quasar_miner}" \
    --wallet.hotkey "${WALLET_HOTKEY:-default}" \
    --subtensor.network "$NETWORK" \
    ${NETUID:+--netuid "$NETUID"} \
    --axon.port "${MINER_INFERENCE_PORT:-8001}" \
    "$@"
