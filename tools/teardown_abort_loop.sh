#!/bin/bash
# Counts gloo teardown aborts ("terminate called without an active exception") of a stopped 2-rank run.
#   bash tools/teardown_abort_loop.sh N     # N torchrun runs of the tiny regression, a NaN stopping step 7
# Each run fails on purpose (the NaN); what is counted is a rank aborting at exit on top of that.
# Results of the barrier-at-exit change: reports/benchmarks/gloo-teardown.json.
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 POSTTRAIN_BUILTIN_ONLY=1
runs=${1:-20}
aborts=0
work=$(mktemp -d)
for i in $(seq 1 "$runs"); do
  python -m torch.distributed.run --standalone --nproc_per_node 2 tests/helpers/tiny_distributed.py \
    "$work/run-$i" ddp --nan-at 7 >"$work/log" 2>&1
  grep -q "loss is nan at step 7" "$work/log" || { echo "run $i: the NaN stop did not happen" >&2; exit 1; }
  grep -q "terminate called without an active exception" "$work/log" && aborts=$((aborts + 1))
  printf 'run %d/%d: %d abort(s) so far\n' "$i" "$runs" "$aborts"
done
rm -rf "$work"
echo "runs=$runs aborts=$aborts"
