#!/usr/bin/env bash
# Usage: [MAX_RESTARTS=N] bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# GPUS processes on this node (torchrun). MAX_RESTARTS (default 0): how often
# torchrun restarts the whole process group when a process dies (preemption, a
# killed rank); the group is then started with --resume and continues from the
# latest checkpoint of the work dir (a first start, with none yet, starts fresh).
set -euo pipefail
source "$(dirname "$0")/dist_args.sh"
CONFIG=${1:-}
GPUS=${2:-}
require_count "GPUS (argument 2, the number of processes)" "$GPUS" 1
MAX_RESTARTS=${MAX_RESTARTS:-0}
require_count "MAX_RESTARTS" "$MAX_RESTARTS" 0
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PY_ARGS=("${@:3}")
if (( MAX_RESTARTS > 0 )); then
    given=0
    for arg in "${PY_ARGS[@]}"; do [[ "$arg" == --resume* ]] && given=1; done
    (( given )) || PY_ARGS+=(--resume)  # a restart continues from the latest
fi

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    --max-restarts="$MAX_RESTARTS" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${PY_ARGS[@]}"
