#!/usr/bin/env bash
# Run on every worker of a Cloud TPU VM slice (the workdir must be shared, e.g. gs://).
#   launch/tpu_vm.sh my-tpu us-central2-b configs/imagenet.py gs://bucket/runs/imnet
set -euo pipefail
tpu=${1:?tpu name}; zone=${2:?zone}; config=${3:?config}; workdir=${4:?workdir}; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command \
  "cd dha_jax && python -m dha_jax.main --distributed --config=$config --workdir=$workdir $*"
