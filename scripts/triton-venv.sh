#!/usr/bin/env bash
# Makes .venv-triton: a real NVIDIA Triton Inference Server for the remote-inference tests and benchmark
# (tests/servers/triton_server.py). nvidia-pytriton bundles the tritonserver binary, which runs on a CPU-only
# machine; its Python model stub needs Debian's own /usr/bin/python3 (a pyenv or other build fails inside
# multiprocessing), hence a venv of its own. About 450 MB; `apt-get install python3-venv` first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-triton/bin/python ]; then
    /usr/bin/python3 -m venv .venv-triton
fi
.venv-triton/bin/python -m pip install --quiet --disable-pip-version-check 'nvidia-pytriton==0.7.*' 'onnxruntime>=1.18' 'numpy<2.5'
