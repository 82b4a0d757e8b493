#!/usr/bin/env bash
# N processes on this machine, each with its own fake CPU devices: the multi-host path
# (jax.distributed, per-process data slices, multi-process checkpoints) without a cluster.
#   launch/local_multiprocess.sh 2 configs/digits.py /tmp/digits_mp [--config.field=value ...]
# Fails if any process fails; re-running resumes. DEVICES_PER_PROCESS (default 2).
set -euo pipefail
n=${1:?number of processes}; config=${2:?config file}; workdir=${3:?workdir}; shift 3
exec python -m dha_jax.local_cluster --num_processes="$n" \
  --devices_per_process="${DEVICES_PER_PROCESS:-2}" -- \
  --config="$config" --workdir="$workdir" "$@"
