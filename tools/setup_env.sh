#!/usr/bin/env bash
# Create (or reuse) the pinned mmslak environment.
#
#   bash tools/setup_env.sh          # prints the venv's python path on its last line
#   bash tools/setup_env.sh --check  # changes nothing: prints the python and exits 0 if
#                                    # the environment is up to date for this checkout, else 3
#
# The environment lives OUTSIDE the checkout, keyed by its pinned versions, so a
# fresh clone (CI) reuses it and a second run takes seconds:
#   ${MMSLAK_CACHE:-~/.cache/mmslak}/venv-py311-torch2.14.1-mmcv2.1.0
# mmcv 2.1.0 has no wheel for torch 2.14, so it is built from its sdist with compiled
# ops (7-20 min on 2 cores) and the wheel is cached under
#   ${MMSLAK_CACHE}/wheels/mmcv-2.1.0_torch-2.14.1_py311_<cpu|cuda>/
# Set MMSLAK_WHEELHOUSE=<dir holding mmcv-2.1.0-*.whl and SHA256SUMS> to take a
# prebuilt wheel instead (its checksum is verified); the build stays the default.
set -euo pipefail

PY_MINOR=3.11
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MMSLAK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmslak}"
VENV="${MMSLAK_VENV:-$CACHE/venv-py${PY_MINOR/./}-torch${TORCH_VERSION}-mmcv${MMCV_VERSION}}"
PYTHON_BIN="${PYTHON:-python${PY_MINOR}}"

# Everything goes to stderr; the only stdout line is the venv's python (fd 3).
exec 3>&1 1>&2
step() { echo "[setup_env] $*" >&2; }
fail() { echo "[setup_env] FAILED at step: $1" >&2; shift; echo "[setup_env] reason: $*" >&2; exit 1; }

# The stamp captures everything that decides the environment's content.
STAMP_KEY="$(cat "$REPO_ROOT/tools/setup_env.sh" "$REPO_ROOT/requirements/"*.txt "$REPO_ROOT/setup.cfg" | sha256sum | cut -c1-16)|$REPO_ROOT"
STAMP="$VENV/.mmslak-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_KEY" && -x "$VENV/bin/python" ]]; then
    step "environment up to date: $VENV"
    echo "$VENV/bin/python" >&3
    exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
    step "environment $VENV is not set up for $REPO_ROOT (or is out of date)"
    exit 3
fi

command -v "$PYTHON_BIN" >/dev/null 2>&1 || fail "find python" "'$PYTHON_BIN' not on PATH (Python $PY_MINOR is required; set PYTHON=...)"
command -v gcc >/dev/null 2>&1 || fail "find gcc" "gcc is required to build mmcv's ops"

if [[ ! -x "$VENV/bin/python" ]]; then
    step "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON_BIN" -m venv "$VENV" || fail "create venv" "'$PYTHON_BIN -m venv $VENV' failed"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

step "installing torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION and build tools"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    "setuptools>=77,<81" ninja wheel \
    || fail "install torch" "pip could not install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"

FLAVOUR=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
WHEEL_DIR="$CACHE/wheels/mmcv-${MMCV_VERSION}_torch-${TORCH_VERSION}_py${PY_MINOR/./}_${FLAVOUR}"
mkdir -p "$WHEEL_DIR"
MMCV_WHEEL=$(ls "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl 2>/dev/null | head -n1 || true)

if [[ -z "$MMCV_WHEEL" && -n "${MMSLAK_WHEELHOUSE:-}" && "$FLAVOUR" == cpu ]]; then
    cand=$(ls "$MMSLAK_WHEELHOUSE"/mmcv-${MMCV_VERSION}-cp${PY_MINOR/./}-*.whl 2>/dev/null | head -n1 || true)
    if [[ -n "$cand" ]]; then
        step "verifying prebuilt wheel $cand"
        (cd "$MMSLAK_WHEELHOUSE" && grep " $(basename "$cand")\$" SHA256SUMS | sha256sum -c --quiet -) \
            || fail "verify wheelhouse" "checksum of $cand does not match $MMSLAK_WHEELHOUSE/SHA256SUMS"
        cp "$cand" "$WHEEL_DIR/"
        MMCV_WHEEL="$WHEEL_DIR/$(basename "$cand")"
    fi
fi

if [[ -z "$MMCV_WHEEL" ]]; then
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    step "building mmcv $MMCV_VERSION with ops from source in $BUILD (7-20 minutes)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD" \
        || fail "download mmcv sdist" "pip download mmcv==$MMCV_VERSION failed (is PyPI reachable?)"
    tar -xzf "$BUILD"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD" || fail "unpack mmcv sdist" "tar failed"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch 2.14's headers need C++20; mmcv 2.1.0 hard-codes C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    grep -q 'std=c++20' "$SRC/setup.py" || fail "patch mmcv setup.py" "no -std=c++17 flag found to raise to C++20"
    # Do not set CFLAGS/CXXFLAGS: they replace Python's defaults and drop -O3.
    (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" wheel -q --no-deps --no-build-isolation --no-cache-dir . -w "$BUILD/dist") \
        || fail "build mmcv" "compiling mmcv's ops failed; see the compiler output above"
    cp "$BUILD"/dist/mmcv-${MMCV_VERSION}-*.whl "$WHEEL_DIR/"
    MMCV_WHEEL=$(ls "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl | head -n1)
fi

step "installing $MMCV_WHEEL and the OpenMMLab stack"
"${PIP[@]}" install -q --no-cache-dir "$MMCV_WHEEL" -r "$REPO_ROOT/requirements/runtime.txt" \
    -r "$REPO_ROOT/requirements/tests.txt" \
    || fail "install OpenMMLab stack" "pip install of mmcv wheel + requirements failed"

step "installing mmslak (editable) from $REPO_ROOT"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$REPO_ROOT" \
    || fail "install mmslak" "editable install of $REPO_ROOT failed"

step "verifying mmcv ops (nms, RoIAlign)"
(cd / && "$PY" - <<'PYEOF') || fail "verify mmcv ops" "mmcv's compiled ops do not run (see the traceback above)"
import torch
from mmcv.ops import RoIAlign, nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
feat = torch.arange(16.).view(1, 1, 4, 4)
out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(
    feat, torch.tensor([[0., 0., 0., 4., 4.]]))
assert out.shape == (1, 1, 2, 2), out.shape
import mmdet, mmseg, mmpretrain, mmslak  # noqa: F401
print('[setup_env] mmcv ops OK; mmdet', mmdet.__version__, 'mmseg', mmseg.__version__,
      'mmpretrain', mmpretrain.__version__, 'mmslak', mmslak.__version__)
PYEOF

step "building mmslak's compiled CPU depthwise kernel (about a minute, cached by CPU)"
(cd / && "$PY" -c 'from mmslak.ops.cpu_kernel import build; print(build())') \
    || step "WARNING: the compiled CPU kernel did not build; mmslak falls back to torch's kernels"

echo "$STAMP_KEY" > "$STAMP"
step "environment ready: $VENV"
echo "$PY" >&3
