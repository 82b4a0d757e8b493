#!/usr/bin/env bash
# One dha_jax.compare spread over the machine's cores: N compare processes, each pinned to
# one core (taskset) with one XLA thread, the variants dealt out round-robin; when all are
# done, the full command (every variant) writes the one table from their finished runs.
# With --budget_clock=process every run still gets the same CPU seconds; pinning only
# avoids two multi-threaded runs oversubscribing the cores.
#   launch/compare_pinned.sh 2 configs/fashion_mnist.py /tmp/fm_cmp \
#       --variants=fixed,da,dha --seeds=0,1,2 --budget_minutes=5 --budget_clock=process
# Run it again to resume (finished runs are skipped).
set -uo pipefail
n=${1:?number of processes}; config=${2:?config file}; workdir=${3:?workdir}; shift 3
variants=$(python -c "from dha_jax.comparison import experiments; print(','.join(experiments.VARIANTS))")
rest=()
for a in "$@"; do
  case "$a" in --variants=*) variants=${a#--variants=} ;; *) rest+=("$a") ;; esac
done
IFS=, read -ra all <<< "$variants"
mkdir -p "$workdir"
pids=()
for ((i = 0; i < n; i++)); do
  mine=()
  for ((j = i; j < ${#all[@]}; j += n)); do mine+=("${all[j]}"); done
  [ ${#mine[@]} -gt 0 ] || continue
  list=$(IFS=,; echo "${mine[*]}")
  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    taskset -c "$((i % $(nproc)))" python -m dha_jax.compare --config="$config" \
    --workdir="$workdir" --variants="$list" --reference="${mine[0]}" "${rest[@]}" \
    > "$workdir/compare_part$i.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
python -m dha_jax.compare --config="$config" --workdir="$workdir" --variants="$variants" \
  "${rest[@]}" || status=1
exit $status
