#!/usr/bin/env bash
# One call on a GPU machine with torch installed (the Python wheels the project needs besides torch in .whl/):
#   bash scripts/gpu_check.sh                            # every case, most telling first (estimated 6 min)
#   bash scripts/gpu_check.sh --models wrn22_2 resnet18  # some cases (any bench.py options)
# Runs the step-graph tests on CUDA (graph and eager paths train the same masks and weights) and the benchmark;
# writes gpu.txt, cuda_tests.txt, bench.txt and bench.json under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/sparsetrain-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
# the package with its config tree where an installed wheel has it (sparsetrain/configs), without a build
rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r sparsetrain /tmp/pkg/ && cp -r configs /tmp/pkg/sparsetrain/configs
export PYTHONPATH=/tmp/site:/tmp/pkg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
repo=$PWD  # pytest from elsewhere: python -m puts the working directory (the bare source tree) first on sys.path
(cd /tmp && python3 -m pytest -q -p no:cacheprovider -c "$repo/pyproject.toml" "$repo/tests/test_step_graph.py" -k cuda) 2>&1 | tail -25 | tee "$OUT/cuda_tests.txt"
# ResNet-20 (the epoch target), LeNet-300-100 (the tightest step), ResNet-50 (the RigL update), then the rest;
# each case is saved as it ends, so a call cut short keeps the cases it finished
[ $# -gt 0 ] || set -- --models resnet20 lenet300_100 resnet50 wrn22_2 resnet18
python3 scripts/bench.py --json "$OUT/bench.json" "$@" 2>&1 | grep -v "^\[" | tee "$OUT/bench.txt"
# 2:4 semi-structured inference on the encoder stack (the GPU target: >= 1.2x at batch 64 in bf16)
python3 scripts/bench_two_four.py --json "$OUT/two_four.json" 2>&1 | tee "$OUT/two_four.txt"
