#!/usr/bin/env bash
# Run a config on this machine (all local devices). Re-running resumes.
#   launch/local.sh configs/digits.py /tmp/digits [--config.field=value ...]
set -euo pipefail
config=${1:?config file}; workdir=${2:?workdir}; shift 2
exec python -m dha_jax.main --config="$config" --workdir="$workdir" "$@"
