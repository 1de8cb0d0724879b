#!/usr/bin/env bash
# One call on a GPU machine: install, run the unit tests on CUDA, then every benchmark on CUDA.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m venv /tmp/gpu-venv && . /tmp/gpu-venv/bin/activate
# Keep a CUDA torch when the machine has one; otherwise pip picks one up.
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || pip install -q torch
pip install -q -e '.[test]'
nvidia-smi --query-gpu=name,memory.total --format=csv
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
LLMTAP_TEST_DEVICE=cuda python -m pytest tests -q -o addopts="" -p no:cacheprovider
python benchmarks/run.py --device cuda
