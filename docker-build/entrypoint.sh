#!/bin/sh
# Entrypoint of the Bazel-built miner inference images: install the project once (its dependencies
# are not in the base image), then serve on port 8000 inside the container, as the original did.
# QUASAR_TORCH=cpu (the CPU image) installs the pinned CPU PyTorch first; the GPU base already has
# its CUDA build, which `pip install` keeps because it satisfies the project's torch range.
set -eu
marker=/opt/quasar/.installed
if [ ! -f "$marker" ]; then
    echo "first start: installing the QUASAR package (once per container)" >&2
    if [ "${QUASAR_TORCH:-}" = "cpu" ]; then
        pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    fi
    pip install --no-cache-dir "/opt/quasar/src[neuron]"
    touch "$marker"
fi
exec quasar inference --host 0.0.0.0 --port "${MINER_INFERENCE_PORT:-8000}"
