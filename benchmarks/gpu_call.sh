#!/bin/bash
# One device call on a lent GPU machine (torch, pandas, pyarrow, pytest; no Ray, no MLflow), prepared so the call
# records everything issue 22 asks of a GPU in one go, each part under its own time limit so that a slow part
# cannot take the next one's time:
#   1. the CUDA cases of the captured-step tests (compiled = eager as CUDA graphs, both engines;
#      `-k "compiled and cuda"`);
#   2. the 2D protocol, 4 datasets × 3 priors × 5 seeds × 30,000 iterations, as six populations of 10 side by side,
#      compiled and drawing from one population stream (eager if step 1 failed: the figure still comes back);
#   3. with what is left of the call's time: the β × bias paper preset (11 populations of 21 side by side, compiled as
#      in 2), then its population step eager against captured.
# Run from the repository root (device run, timeout_s 600):   bash benchmarks/gpu_call.sh
# Files under $OUT (./gpu_call_out where OUT is unset): machine.txt, tests.log, protocol.log, results.parquet
# (the protocol's rows, whatever finished), bias_grid.log, bias_grid_results.parquet, bias_grid.md. A trial that has
# not finished when the protocol's time is up leaves its last progress lines (steps/s, time left) in protocol.log:
# the throughput figure, if not the rows.
# Knobs (environment): PROTOCOL_SECONDS (default 420), TEST_SECONDS (100), DEVICE (cuda), EXTRA (more flags for the
# protocol, e.g. "--steps 40 --num-vae 20 --gnelbo-grid 16" for a dry run on a CPU with DEVICE=cpu).
set -u
OUT=${OUT:-gpu_call_out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
RUNS=$(mktemp -d)  # the sweep's own files (logs, figures) stay on the machine; its rows come back
export PYTHONUNBUFFERED=1
started=$SECONDS

{ date -u; nvidia-smi -L 2>&1; $PYTHON -c "import torch, pandas, pyarrow; print('torch', torch.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"; nproc; } \
    > "$OUT/machine.txt" 2>&1

timeout "${TEST_SECONDS:-100}" $PYTHON -m pytest -q -p no:cacheprovider tests/unit/test_population.py \
    tests/unit/test_introvae_population.py -k "compiled and $DEVICE" > "$OUT/tests.log" 2>&1
tests=$?
compile_step=$([ $tests -eq 0 ] && echo true || echo false)
echo "tests exit $tests after $((SECONDS - started)) s; protocol with --compile-step $compile_step" | tee -a "$OUT/machine.txt"

protocol_started=$SECONDS
# shellcheck disable=SC2086  # EXTRA is a list of flags
timeout "${PROTOCOL_SECONDS:-420}" $PYTHON -m sweeps.introvae_prior --backend processes --preset paper2d \
    --seeds 0 1 2 3 4 --population-size 10 --compile-step "$compile_step" --noise-streams population \
    --device "$DEVICE" --parallel 6 --threads 2 --name paper2d-5seeds --out "$RUNS" ${EXTRA:-} > "$OUT/protocol.log" 2>&1
echo "protocol exit $? after $((SECONDS - protocol_started)) s" | tee -a "$OUT/machine.txt"
cp "$RUNS/introvae/paper2d-5seeds/results.parquet" "$OUT/" 2>/dev/null || echo "no protocol rows" >> "$OUT/machine.txt"

# the β × bias paper preset (231 models × 10,000 steps, training and evaluation): 11 populations of 21, side by side
left=$((560 - SECONDS + started))
if [ $left -gt 30 ]; then
    bias_started=$SECONDS
    timeout "$((left < 150 ? left : 150))" $PYTHON -m sweeps.bias_grid --preset paper --backend processes \
        --device "$DEVICE" --compile-step "$compile_step" --parallel 11 --threads 1 --name paper-gpu --out "$RUNS" \
        > "$OUT/bias_grid.log" 2>&1
    echo "bias grid paper preset exit $? after $((SECONDS - bias_started)) s" | tee -a "$OUT/machine.txt"
    cp "$RUNS/bias_grid/paper-gpu/results.parquet" "$OUT/bias_grid_results.parquet" 2>/dev/null \
        || echo "no bias grid rows" >> "$OUT/machine.txt"
fi
# its population step, eager against captured, lone model to P = 231
left=$((560 - SECONDS + started))
if [ $left -gt 30 ]; then
    timeout "$left" $PYTHON benchmarks/population_scaling.py --device "$DEVICE" --compiled --sizes 1 21 231 \
        --widths 256 --seconds 2 > "$OUT/bias_grid.md" 2>&1
fi
echo "done after $((SECONDS - started)) s" >> "$OUT/machine.txt"
