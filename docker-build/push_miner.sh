#!/usr/bin/env bash
# Build and push the miner inference images with Bazel (no Docker daemon needed).
# Interactive by default; flags make it non-interactive (CI, scripts).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

usage() {
    cat <<'USAGE'
usage: ./push_miner.sh [--gpu | --cpu | --all] [--yes] [--dry-run]
  Builds and pushes index.docker.io/$DOCKER_USERNAME/quasar-miner-{gpu,cpu}:latest.
  --gpu       the CUDA image (Runpod and other GPU hosts)
  --cpu       the CPU image (Render and other CPU hosts)
  --all       both
  --yes, -y   do not ask for confirmation
  --dry-run   print the commands instead of running them
  With no image flag it asks which one. DOCKER_USERNAME comes from ../.env (see load_config_from_env.sh);
  log in first with `docker login` or `crane auth login index.docker.io` (oci_push reads that config).
USAGE
}

targets=()
yes=0
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) targets+=(push_miner_image_gpu) ;;
        --cpu) targets+=(push_miner_image_cpu) ;;
        --all) targets=(push_miner_image_gpu push_miner_image_cpu) ;;
        --yes|-y) yes=1 ;;
        --dry-run) dry_run=1 ;;
        --help|-h) usage; exit 0 ;;
        *) echo "error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ${#targets[@]} -eq 0 ]; then
    if [ ! -t 0 ]; then
        echo "error: no image chosen and no terminal to ask on; pass --gpu, --cpu or --all" >&2
        exit 2
    fi
    echo "Which image?  1) GPU (CUDA)   2) CPU   3) both"
    read -r -p "choice [1]: " choice
    case "${choice:-1}" in
        1) targets=(push_miner_image_gpu) ;;
        2) targets=(push_miner_image_cpu) ;;
        3) targets=(push_miner_image_gpu push_miner_image_cpu) ;;
        *) echo "error: choose 1, 2 or 3" >&2; exit 2 ;;
    esac
fi

bazel_bin="$(command -v bazel || command -v bazelisk || true)"
if [ -z "$bazel_bin" ] && [ $dry_run -eq 0 ]; then
    echo "error: neither bazel nor bazelisk is on PATH; install bazelisk (https://github.com/bazelbuild/bazelisk)." >&2
    exit 1
fi
"$here/load_config_from_env.sh"

if [ $yes -eq 0 ] && [ $dry_run -eq 0 ] && [ -t 0 ]; then
    read -r -p "push ${targets[*]}? [y/N] " answer
    case "$answer" in y|Y|yes) ;; *) echo "nothing pushed"; exit 0 ;; esac
fi
cd "$here"
for target in "${targets[@]}"; do
    if [ $dry_run -eq 1 ]; then
        echo "bazel run //:$target"
    else
        "$bazel_bin" run "//:$target"
    fi
done
