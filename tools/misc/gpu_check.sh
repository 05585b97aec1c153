#!/usr/bin/env bash
# GPU acceptance check (issue 22): on one GPU, in under 10 minutes, run what
# only CUDA shows and end with one verdict table (step / PASS|FAIL / seconds).
# Without a usable GPU it says so and exits 0.
# Usage: bash tools/misc/gpu_check.sh   (or: make gpu-check)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no usable CUDA GPU visible (torch.cuda.is_available() is False): nothing to check"
    exit 0
fi
WORK=${GPU_CHECK_DIR:-$(mktemp -d)}
TOY=$WORK/toy
declare -a ROWS
FAILED=0
step() {  # step NAME COMMAND...
    local name=$1; shift
    local t0=$SECONDS
    if "$@" >"$WORK/$name.log" 2>&1; then v=PASS; else v=FAIL; FAILED=1; fi
    ROWS+=("$(printf '%-16s %-5s %5ds' "$name" "$v" $((SECONDS - t0)))")
    echo "gpu_check: $name $v (log: $WORK/$name.log)"
}
numerics() {
    "$PY" -m pytest -q tests/ops/test_triton_kernels.py tests/ops/test_depthwise_conv.py -m cuda -k "triton or sweep"
}
with_cp_and_compile() {
    MODE=$1 "$PY" - <<'PYEOF'
import os, torch
from mmslak.models.backbones.slak import SLaK
m = SLaK(arch=dict(depths=[1, 1, 1, 1], dims=[32, 32, 64, 64]),
         width_factor=1.0, with_cp=os.environ['MODE'] == 'cp').cuda().train()
x = torch.randn(2, 3, 128, 128, device='cuda', requires_grad=True)
f = torch.compile(m, fullgraph=True) if os.environ['MODE'] == 'compile' else m
for _ in range(2):
    sum(o.float().pow(2).mean() for o in f(x)).backward()
print('ok', os.environ['MODE'])
PYEOF
}
toy_data() { "$PY" tools/dataset_converters/make_toy_datasets.py --out "$TOY"; }
train() {  # train CONFIG ARGS...
    local cfg=$1; shift
    MMSLAK_TOY_DATA=$TOY "$PY" tools/train.py "$cfg" --work-dir "$WORK/$(basename "$cfg" .py)" "$@"
}
step cuda-tests "$PY" -m pytest -q -m cuda tests/ops tests/models
step numerics numerics
step with-cp with_cp_and_compile cp
step compile with_cp_and_compile compile
step toy-data toy_data
step upernet-amp train configs/demo/upernet_slak-demo_toy-ade.py --amp
step faster-rcnn train configs/demo/faster-rcnn_slak-demo_toy-voc.py
step benchmark "$PY" tools/analysis/benchmark.py --device cuda
echo
printf '%-16s %-5s %6s\n' step verdict time
for r in "${ROWS[@]}"; do echo "$r"; done
exit $FAILED
