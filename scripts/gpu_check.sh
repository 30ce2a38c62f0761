#!/usr/bin/env bash
# moslim's training stages on one GPU, offline, in a few minutes (< 8 on one H200 is the target):
# a SmolLM2-135M-sized policy and reward model from configs with random weights, reward-model training
# steps in bf16, then GRPO and PPO steps with TRL's own generation; prints throughput and peak memory.
#
#   scripts/gpu_check.sh fetch [PYTHON_VERSION]   # where pip reaches PyPI: the wheels the GPU machine lacks
#                                                  # (scripts/gpu_check_wheels.txt) -> wheels/ (git-ignored)
#   scripts/gpu_check.sh [--device cuda:0]        # on the GPU machine, no network: install wheels/, run the check
#
# The GPU machine needs python3 with torch (CUDA) and transformers >= 5; the rest comes from wheels/
# ($MOSLIM_WHEELS to read another folder). scripts/gpu_check.py --device cpu --tiny is the same check on
# tiny sizes (the test suite runs it). See docs/scaling.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${MOSLIM_WHEELS:-wheels}
LIST=scripts/gpu_check_wheels.txt

if [[ ${1:-} == fetch ]]; then
  version=${2:-3.12}  # the H200 image's python3 is 3.12
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" -r "$LIST"
  du -sh "$WHEELS"
  exit 0
fi

if [[ -d $WHEELS ]]; then
  # --no-index: nothing is fetched; pip still checks every requirement and names any that is missing.
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" -r "$LIST"
elif ! "$PY" -c "import trl, datasets, platformdirs" 2>/dev/null; then
  echo "gpu_check: TRL, datasets or platformdirs is missing and $WHEELS/ does not exist; run" \
       "'scripts/gpu_check.sh fetch' where pip reaches PyPI and bring $WHEELS/ along" >&2
  exit 2
fi

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TRL_EXPERIMENTAL_SILENCE=1
export WANDB_DISABLED=true TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${MOSLIM_GPU_CHECK_TIMEOUT:-450}" "$PY" scripts/gpu_check.py "$@"
