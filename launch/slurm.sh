#!/usr/bin/env bash
# Multi-host GPU run under Slurm: one task per node, all GPUs of a node per task.
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm.sh configs/imagenet.py /nfs/runs/imnet
# Slurm's SIGTERM before the time limit makes every process save and exit; resubmitting
# the same command resumes. Use --signal=TERM@120 to get the warning early enough.
#SBATCH --ntasks-per-node=1
#SBATCH --signal=TERM@120
#SBATCH --requeue
set -euo pipefail
config=${1:?config file}; workdir=${2:?workdir}; shift 2
srun python -m dha_jax.main --distributed --config="$config" --workdir="$workdir" "$@"
