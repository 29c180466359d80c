#!/usr/bin/env bash
# One-shot measurements on a machine with an NVIDIA GPU (written for one H200 and 16 CPU cores), under 8 minutes:
#   OUT=/some/folder bash bench/gpu_check.sh
# 1. a virtual environment (build/gpu-venv): with --system-site-packages when the system's python already imports a
#    torch that sees CUDA (that torch is then kept: the constraint on torch is set to its version); the rest from
#    constraints.txt; offline, `pip install --no-deps -e .` or PYTHONPATH as a last resort
# 2. bench/bitwise_check.py on CUDA: the hand-written dense step and gate tables against autograd, bit for bit
# 3. bench/bench_sweep.py on CUDA (one process)
# 4. bench/bench_sweep.py on the CPU restricted to 2 cores (taskset -c 0,1): a quiet-machine measurement
# 5. figure 07's paper training on CUDA (bench/gpu_train.py) into a scratch run store under $OUT, never runs/;
#    MNIST from DGN_DATA_DIR (default build/gpu-data: the four uncompressed IDX files train-images-idx3-ubyte,
#    train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, checked by SHA-256); skipped without it
# Everything measured goes to $OUT as text (one .txt per step, summary.txt); each step has its own timeout.
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:?set OUT to the folder that receives the results}
mkdir -p "$OUT"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-460}  # the whole script, seconds
PY=${PYTHON:-python3}
VENV=${GPU_CHECK_VENV:-$REPO/build/gpu-venv}  # another venv to reuse one (a local test of the script)
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
export DGN_DATA_DIR=${DGN_DATA_DIR:-$REPO/build/gpu-data} DGN_OFFLINE=1
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$SUMMARY"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step NAME SECONDS CMD...: run CMD with at most SECONDS (less if the budget is short), output to $OUT/NAME.txt
step() {
  local name=$1 want=$2; shift 2
  local t; t=$(left); (( want < t )) && t=$want
  if (( t < 20 )); then say "$name: skipped (budget spent)"; return 1; fi
  say "$name: start (timeout ${t} s): $*"
  (cd "$REPO" && timeout --kill-after=10 "$t" "$@") > "$OUT/$name.txt" 2>&1
  local rc=$?
  say "$name: exit $rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
  tail -n 3 "$OUT/$name.txt" | sed 's/^/    /' | tee -a "$SUMMARY"
  return $rc
}

{ date -u; uname -a; nproc; uptime; nvidia-smi 2>&1 | head -15; "$PY" --version; } > "$OUT/machine.txt" 2>&1
say "repository $REPO; data $DGN_DATA_DIR; python $("$PY" --version 2>&1)"

# 1. the environment
SSP=()
CONSTRAINTS=$REPO/constraints.txt
if timeout 60 "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
  SSP=(--system-site-packages)
  TORCH=$(timeout 60 "$PY" -c "import torch; print(torch.__version__.split('+')[0])")
  sed "s/^torch==.*/torch==$TORCH/" "$REPO/constraints.txt" > "$OUT/constraints.txt"
  CONSTRAINTS=$OUT/constraints.txt
  say "the system's torch $TORCH sees CUDA: venv with --system-site-packages, torch kept"
fi
{
  test -x "$VENV/bin/python" || timeout 60 "$PY" -m venv "${SSP[@]}" "$VENV"
  timeout 150 "$VENV/bin/python" -m pip install --disable-pip-version-check --retries 1 --timeout 15 -q -c "$CONSTRAINTS" -e "$REPO" \
    || timeout 60 "$VENV/bin/python" -m pip install --disable-pip-version-check --retries 1 --timeout 15 -q --no-deps --no-build-isolation \
         -e "$REPO"
} > "$OUT/setup.txt" 2>&1
PYV=$VENV/bin/python
CHECK='import torch, numpy, dgnlib.engine.ensemble, dgnlib.engine.dense; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
if ! (cd "$REPO" && timeout 60 "$PYV" -c "$CHECK") >> "$OUT/setup.txt" 2>&1; then
  say "the venv does not import dgnlib with torch (see setup.txt); using $PY with PYTHONPATH=$REPO"
  PYV=$PY
fi
say "python for the checks: $PYV; $( (cd "$REPO" && timeout 60 "$PYV" -c "$CHECK") 2>&1 | tail -1)"

# 2-5. the measurements
step bitwise_cuda 60 "$PYV" bench/bitwise_check.py --device cuda
step bench_cuda 100 "$PYV" bench/bench_sweep.py --device cuda --threads 1 --rounds 3 --steps 100 --seq-steps 20
step bench_cpu_2cores 100 taskset -c 0,1 "$PYV" bench/bench_sweep.py --threads 2 --rounds 3
if ls "$DGN_DATA_DIR"/{,mnist/}train-images-idx3-ubyte* > /dev/null 2>&1; then
  step fig07_paper_cuda 200 "$PYV" bench/gpu_train.py --device cuda --store "$OUT/scratch-runs" --compare runs
else
  say "fig07_paper_cuda: skipped: no MNIST in $DGN_DATA_DIR (the four uncompressed IDX files)"
fi
rm -rf "$OUT/scratch-runs"  # the runs themselves are not results; their numbers are in fig07_paper_cuda.txt
say "done in $(( $(date +%s) - START )) s"
