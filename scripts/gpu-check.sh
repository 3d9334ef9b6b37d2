#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, the CUDA driver and tools (nvidia-smi,
# compute-sanitizer) but no Rust, from a bundle made by scripts/build-gpu-bundle.sh.
#
#   gpu-check.sh [BUNDLE_DIR] [OUT_DIR]     (defaults: the script's folder, $OUT or ./gpu-logs)
#
# Every log goes into OUT_DIR; the exit status is non-zero if any step failed. Steps:
#  1. the card and driver (nvidia-smi);
#  2. the differential tests with CUDA required and many proptest cases;
#  3. compute-sanitizer memcheck and racecheck over the CUDA differential tests (fewer cases);
#  4. the benches on CUDA: multi-GB tables (gather, PEER, row sort, copy bandwidth), the fused
#     top-k, the dense kernels and the whole layer (forward, forward + backward) at the paper's
#     shapes;
#  5. the memory layer vs MoE sweep (UltraMemV2-1B/7B vs OLMoE-1B/7B, B = 1..4096) with its CSV
#     and plot, and ncu's DRAM bytes of one step of each at B = 1 and 64 next to the model's;
#  6. the PyTorch eager baselines (top-k, the UltraMemV2 layer, the MoE layer, embedding_bag)
#     at the same shapes (benches/torch_baselines.py), if PyTorch is there;
#  7. the performance model's calibration: every op of the model's report (examples/gpu_model)
#     timed on the card, and under ncu (per-kernel time and DRAM bytes) at T = 1 and 64, joined
#     with the committed predictions (scripts/model_vs_measured.py): measured beside predicted;
#  8. torch.ops.ultramem on CUDA tensors (python/tests/test_cuda.py: every op against the CPU
#     path, the layer on a side stream), the whole pytest suite if pytest is there, our gather
#     against embedding_bag through torch, and the per-call overhead on this machine's CPU.
set -uo pipefail
bundle="${1:-$(cd "$(dirname "$0")" && pwd)}"
out="${2:-${OUT:-./gpu-logs}}"
mkdir -p "$out"
status=0
step() {
    local name="$1"; shift
    echo "== $name: $*" | tee -a "$out/summary.txt"
    local t0=$SECONDS
    if "$@" >"$out/$name.log" 2>&1; then
        echo "   ok ($((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
    else
        echo "   FAILED with $? ($((SECONDS - t0)) s); see $name.log" | tee -a "$out/summary.txt"
        status=1
    fi
}
date -u +"%Y-%m-%dT%H:%M:%SZ" >"$out/summary.txt"
step nvidia-smi nvidia-smi
export ULTRAMEM_REQUIRE_CUDA=1
step differential env ULTRAMEM_PROPTEST_CASES=512 "$bundle/differential" --test-threads=4 cuda ptx
step bad_input "$bundle/bad_input"
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        step "sanitizer-$tool" env ULTRAMEM_PROPTEST_CASES=16 compute-sanitizer --tool "$tool" --error-exitcode 1 \
            "$bundle/differential" --test-threads=1 on_cuda
    done
else
    echo "== compute-sanitizer not found: sanitizer steps NOT run" | tee -a "$out/summary.txt"
    status=1
fi
step bench env ULTRAMEM_BENCH_SIZE=large ULTRAMEM_BENCH_DEVICES=cuda "$bundle/ops" --bench \
    --warm-up-time 1 --measurement-time 3 --noplot
step memory-vs-moe "$bundle/memory_vs_moe" --device cuda --out "$out/memory_vs_moe"
if command -v ncu >/dev/null; then
    for layer in ultramem_v2 moe; do
        for b in 1 64; do
            step "ncu-$layer-B$b" ncu --csv --metrics dram__bytes_read.sum,dram__bytes_write.sum \
                --clock-control none --log-file "$out/ncu-$layer-B$b.csv" \
                "$bundle/memory_vs_moe" --device cuda --shape paper --single-step "$layer" --batches "$b"
            model=$(sed -n 's/.*model bytes \([0-9.e+-]*\).*/\1/p' "$out/ncu-$layer-B$b.log")
            step "ncu-$layer-B$b-sum" python3 "$bundle/ncu_sum.py" "$out/ncu-$layer-B$b.csv" $model
        done
    done
else
    echo "== ncu not found: DRAM bytes NOT measured" | tee -a "$out/summary.txt"
    status=1
fi
step gpu-model-measure "$bundle/gpu_model" --measure --tokens 1,64,4096 --out "$out/gpu_model"
predicted=$(ls -d "$bundle"/model-results/*-model-h200 2>/dev/null | sort | tail -1)
ncu_logs=()
if command -v ncu >/dev/null; then
    for t in 1 64; do
        step "gpu-model-ncu-T$t" ncu --csv --metrics \
            gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
            --log-file "$out/gpu_model_ncu_T$t.csv" \
            "$bundle/gpu_model" --measure --tokens "$t" --out "$out/gpu_model_ncu_T$t"
        ncu_logs+=("$out/gpu_model_ncu_T$t.csv")
    done
fi
if [ -n "$predicted" ]; then
    step gpu-model-vs-measured python3 "$bundle/model_vs_measured.py" \
        "$predicted" "$out/gpu_model/measured_ops.csv" ${ncu_logs[@]+"${ncu_logs[@]}"}
else
    echo "== no committed H200 model report in the bundle: predictions NOT joined" | tee -a "$out/summary.txt"
    status=1
fi
if python3 -c "import torch" 2>/dev/null; then
    step torch-baselines python3 "$bundle/torch_baselines.py" all
    py=(env ULTRAMEM_LIB="$bundle/libultramem.so" PYTHONPATH="$bundle/python")
    step python-cuda "${py[@]}" python3 "$bundle/python/tests/test_cuda.py"
    if python3 -c "import pytest" 2>/dev/null; then
        step python-pytest "${py[@]}" python3 -m pytest -q -rs -p no:cacheprovider "$bundle/python/tests"
    else
        echo "== pytest not found: only test_cuda.py ran of python/tests" | tee -a "$out/summary.txt"
    fi
    step abi-cuda-timing "${py[@]}" python3 "$bundle/abi_cuda_timing.py"
    step python-overhead "${py[@]}" python3 "$bundle/python_overhead.py"
else
    echo "== PyTorch not found: the PyTorch baselines NOT run" | tee -a "$out/summary.txt"
fi
exit $status
