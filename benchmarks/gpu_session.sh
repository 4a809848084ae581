#!/usr/bin/env bash
# The GPU checks as one prepared command for a session that is lent a device machine (torch is there, our other
# dependencies are not, and it has no network). Before calling it, put here (both git-ignored):
#   .whl/  wheels for sqlalchemy, alembic, mako and markupsafe matching the device's Python (pip download ...)
#   .gpu/mnist/  the four MNIST IDX .gz files
# then run it through the device tool with carry [".whl", ".gpu"]:  bash benchmarks/gpu_session.sh
# It prints the harness's CUDA timing against the resident one-batch figure (target: within 4x) and the
# CPU/CUDA agreement check, and copies both JSON results into $OUT when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/harness_speed.py --mnist-dir .gpu/mnist --device cuda --skip-course
python3 benchmarks/gpu_check.py --mnist-dir .gpu/mnist
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/ 2>/dev/null || true; fi
