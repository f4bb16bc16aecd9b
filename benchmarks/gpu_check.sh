#!/usr/bin/env bash
# One pass over the CUDA paths on a GPU machine: device info, the CUDA-parametrised tests,
# extraction and training throughput, and GPU kNN timings. About 6 minutes on one H100.
#
#     OUT=/some/dir [ONLY='knn|pytest'] bash benchmarks/gpu_check.sh
#
# Run from the repository root. Every step runs even when an earlier one fails; the whole log goes
# to $OUT/gpu_check.log and each benchmark's JSON, renamed <bench>_<arch>_<HxW>..._cuda.json, into
# $OUT/cuda_results.tar (one file, rewritten after each step). The exit status is the number of
# failed steps. Nothing in the test suite needs a GPU: this is a manual check.
set -uo pipefail

OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
LOG="$OUT/gpu_check.log"
: >"$LOG"
FAILED=()
KEPT=$(mktemp -d)

step() {  # step NAME CMD...: echo a header, run CMD, tee its output, note a failure, go on
    local name=$1
    shift
    if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return; fi  # ONLY=regex: some steps
    echo "=== [$(date +%T)] $name: $*" | tee -a "$LOG"
    local t0=$SECONDS
    "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== [$(date +%T)] $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || FAILED+=("$name")
}

keep() {  # keep SRC NAME: save a benchmark's JSON (each run overwrites the same file) under NAME
    if [ -n "${ONLY:-}" ] && [ ! -f "$1" ]; then return; fi
    if [ -f "$1" ]; then mv "$1" "$KEPT/$2"; else echo "missing $1" | tee -a "$LOG"; fi
    tar -cf "$OUT/cuda_results.tar" -C "$KEPT" .
}

# 1. Device and versions
step nvidia-smi nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step shm df -h /dev/shm /tmp
step versions "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version()); print('device', torch.cuda.get_device_name(), 'available', torch.cuda.is_available())"

# 2. Tests: the CUDA-only test (test_cuda_bf16_close_to_cpu) and the CUDA-parametrised ones run here
step pytest "$PY" -m pytest -q -x -p no:cacheprovider --timeout 240 -rfEs --durations=10 \
    tests/model tests/eval tests/train tests/cluster/test_knn.py tests/cluster/test_jaccard.py
step cuda-tests "$PY" -m pytest -q -p no:cacheprovider --timeout 240 -rA \
    "tests/model/test_extract.py::test_cuda_bf16_close_to_cpu" \
    "tests/eval/test_metrics.py::test_rank_metrics_on_torch_tensors" \
    tests/cluster/test_knn.py

# 3. Extraction throughput (random tensors; then the full extract_features path on JPEGs)
R=benchmarks/results
step extract-resnet50 "$PY" -m benchmarks.bench_extract --device cuda --arch resnet50 --batch 256 \
    --height 256 --width 128 --batches 40 --warmup 3
keep $R/extract_cuda.json extract_resnet50_256x128_tensors_cuda.json
step extract-resnet50-jpegs "$PY" -m benchmarks.bench_extract --device cuda --arch resnet50 --batch 256 \
    --height 256 --width 128 --batches 3 --warmup 3 --jpegs 4096 --workers 8
keep $R/extract_cuda.json extract_resnet50_256x128_jpegs_cuda.json
step extract-resnet18 "$PY" -m benchmarks.bench_extract --device cuda --arch resnet18 --batch 256 \
    --height 128 --width 64 --batches 80 --warmup 3 --jpegs 4096 --workers 8
keep $R/extract_cuda.json extract_resnet18_128x64_cuda.json

# 4. Training-step throughput (bf16 autocast + channels_last on CUDA)
step train-resnet50 "$PY" -m benchmarks.bench_train --device cuda --arch resnet50 --batch 256 \
    --instances 16 --height 256 --width 128 --iters 30 --warmup 5
keep $R/train_cuda.json train_resnet50_256x128_cuda.json
step train-resnet50-camera "$PY" -m benchmarks.bench_train --device cuda --arch resnet50 --batch 256 \
    --instances 16 --height 256 --width 128 --iters 30 --warmup 5 --camera
keep $R/train_cuda.json train_resnet50_256x128_camera_cuda.json
step train-resnet18 "$PY" -m benchmarks.bench_train --device cuda --arch resnet18 --batch 256 \
    --instances 16 --height 256 --width 128 --iters 30 --warmup 5
keep $R/train_cuda.json train_resnet18_256x128_cuda.json

# 5. GPU kNN (torch backend) vs a plain CUDA matmul; jaccard_distance with its kNN on the GPU
step knn "$PY" - "$R/knn_cuda.json" <<'EOF'
import json, sys, time

import numpy as np
import torch

from benchmarks.bench_jaccard import clustered_sphere
from calr_core.cluster.jaccard import jaccard_distance
from calr_core.cluster.knn import knn

assert torch.cuda.is_available()
rows = []


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


for n, d in ((12_936, 2048), (200_000, 128)):
    x = clustered_sphere(n, d)
    knn(x[:4096], 30, backend="torch")  # warm-up: CUDA context, cuBLAS, topk kernels
    _, knn_s = timed(lambda: knn(x, 30, backend="torch"))
    _, knn2_s = timed(lambda: knn(x, 30, backend="torch"))
    xt, h2d_s = timed(lambda: torch.from_numpy(x).cuda())
    row = {"N": n, "D": d, "k": 30, "knn_torch_cuda_s": knn_s, "knn_torch_cuda_again_s": knn2_s,
           "h2d_copy_s": h2d_s}
    if n * n * 4 < 8 * 2**30:  # the full N x N product fits: time it whole
        (xt @ xt.T)
        _, mm_s = timed(lambda: xt @ xt.T)
        row["matmul_full_s"] = mm_s
    else:  # 160 GB at N=200k: the same product in knn's 4096-row chunks, without topk
        def chunks():
            for a in range(0, n, 4096):
                s = xt[a:a + 4096] @ xt.T
            return s
        chunks()
        _, mm_s = timed(chunks)
        row["matmul_4096_row_chunks_s"] = mm_s
    row["tf32_matmul_allowed"] = torch.backends.cuda.matmul.allow_tf32
    del xt
    jaccard_distance(x[:2000].copy(), 30, 6)  # numba: compile or load its cache
    jac, row["jaccard_s"] = timed(lambda: jaccard_distance(x, 30, 6))  # kNN on the GPU, the rest on the CPU cores
    row["jaccard_stored_per_row"] = jac.nnz / n
    del jac
    rows.append(row)
    print(json.dumps(row))
    torch.cuda.empty_cache()
json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
          open(sys.argv[1], "w"), indent=2)
EOF
keep $R/knn_cuda.json knn_cuda.json

echo "=== failed steps: ${FAILED[*]:-none}" | tee -a "$LOG"
exit "${#FAILED[@]}"
