#!/usr/bin/env bash
# One call on a GPU machine: install, run the unit tests on CUDA, execute every notebook on CUDA
# under nbval (each one timed), then every benchmark, a pretraining of the course model and the
# chapter 02, 03 and 06 multi-seed experiments on CUDA.
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
status=0
LLMTAP_TEST_DEVICE=cuda python -m pytest tests -q -o addopts="" -p no:cacheprovider || status=1
echo "notebooks on CUDA (nbval: checked cells must reproduce their committed CPU outputs):"
for nb in solutions/*.ipynb chapters/*.ipynb; do
  start=$(date +%s.%N)
  if python -m pytest "$nb" -q -n 0 -p no:cacheprovider > "/tmp/gpu-nbval-$(basename "$nb" .ipynb)-$(dirname "$nb").log" 2>&1; then
    result=passed
  else
    result=FAILED; status=1
  fi
  printf '  %-42s %6.1f s  %s\n' "$nb" "$(echo "$(date +%s.%N) - $start" | bc)" "$result"
done
python benchmarks/run.py --device cuda || status=1
echo "course model pretraining on CUDA (the CPU takes about 17 minutes on 2 threads):"
python -m llmtap.pretrain --device cuda --out /tmp/gpu-course-model.safetensors --n 100 || status=1
echo "chapter 02, 03 and 06 multi-seed experiments on CUDA, next to the shipped CPU results:"
for ch in 02 03 06; do
  python -m llmtap.experiments "$ch" --device cuda --out "/tmp/gpu-results-$ch.json" || status=1
done
exit $status
