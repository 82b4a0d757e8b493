#!/usr/bin/env bash
# The papers' comparison on one dataset, equal wall-clock budget per variant:
#   launch/compare.sh configs/fashion_mnist.py /tmp/fm_cmp 60 [--variants=fixed,dha ...]
set -euo pipefail
config=${1:?config file}; workdir=${2:?workdir}; minutes=${3:-0}; shift $(( $# < 3 ? $# : 3 ))
exec python -m dha_jax.compare --config="$config" --workdir="$workdir" \
  --budget_minutes="$minutes" "$@"
