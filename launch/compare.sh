#!/usr/bin/env bash
# The papers' comparison on one dataset (dha_jax/compare.py): every variant x seed with the
# same training budget per run (wall minutes; add --budget_clock=process on a shared
# machine), then <workdir>/comparison.md / .json / .png: mean test accuracy with its 95%
# t-interval over the seeds, and the paired difference against --reference (default fixed):
#   launch/compare.sh configs/fashion_mnist.py /tmp/fm_cmp 15 --seeds=0,1,2 \
#       [--budget_clock=process] [--variants=fixed,da_hpo,dha] [--reference=fixed]
# Run it again to resume: finished runs are skipped, interrupted ones continue from their
# checkpoints. SIGTERM (a Slurm time limit) checkpoints the running training and stops.
# The exit status is 1 if any run has no result (the table marks it).
set -euo pipefail
config=${1:?config file}; workdir=${2:?workdir}; minutes=${3:-0}; shift $(( $# < 3 ? $# : 3 ))
exec python -m dha_jax.compare --config="$config" --workdir="$workdir" \
  --budget_minutes="$minutes" "$@"
