#!/usr/bin/env bash
# Create (or reuse) the pinned mmslak environment.
#
#   bash tools/setup_env.sh          # prints the venv's python path on its last line
#   bash tools/setup_env.sh --check  # changes nothing: prints the python and exits 0 if
#                                    # the environment is up to date for this checkout, else 3
#                                    # (1, as a set-up, when a visible GPU is unusable)
#
# The environment lives OUTSIDE the checkout, keyed by its pinned versions and by
# the device it serves (`cpu`, or `cu<version>` of the torch build when an NVIDIA GPU
# is visible), so a fresh clone (CI) reuses it, a second run takes seconds, and a
# venv built on a CPU node is never taken for a GPU one:
#   ${MMSLAK_CACHE:-~/.cache/mmslak}/venv-py311-torch2.14.1-mmcv2.1.0[-cu130]
# mmcv 2.1.0 has no wheel for torch 2.14, so it is built from its sdist with compiled
# ops (CUDA ops too on a GPU node: needs nvcc) and the wheel is cached under
#   ${MMSLAK_CACHE}/wheels/mmcv-2.1.0_torch-2.14.1_py311_<cpu|cu130>/
# Variables:
#   MMSLAK_WHEELHOUSE=<dir holding mmcv-2.1.0-*.whl and SHA256SUMS>: take that prebuilt
#       wheel (checksum verified) instead of building; CPU environment only.
#   MMSLAK_TORCH_INDEX_URL=<pip index of one torch build, e.g.
#       https://download.pytorch.org/whl/cu126>: install torch/torchvision from it
#       (for a GPU whose driver is too old for PyPI's CUDA 13.0 build).
#   MMSLAK_TORCH=existing: use the torch already installed for $PYTHON (the venv
#       sees its site-packages) instead of installing one.
#   MMSLAK_CACHE, MMSLAK_VENV, PYTHON, MAX_JOBS, CUDA_HOME.
# A GPU that is visible but that torch cannot use (driver too old) stops the script
# with the driver found and needed; it never falls back to the CPU silently.
set -euo pipefail

PY_MINOR=3.11
PINNED_TORCH=2.14.1
TORCHVISION_VERSION=0.29.1
PINNED_TORCH_CUDA=13.0  # PyPI's torch 2.14.1 is the CUDA 13.0 build (2.14.1+cu130)
MMCV_VERSION=2.1.0
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MMSLAK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmslak}"
PYTHON_BIN="${PYTHON:-python${PY_MINOR}}"

# Everything goes to stderr; the only stdout line is the venv's python (fd 3).
exec 3>&1 1>&2
step() { echo "[setup_env] $*" >&2; }
fail() { echo "[setup_env] FAILED at step: $1" >&2; shift; echo "[setup_env] reason: $*" >&2; exit 1; }

# The NVIDIA driver version when a GPU is visible (nvidia-smi, else the kernel
# module's /proc entry); nothing on a machine without one.
gpu_driver() {
    local version=""
    if command -v nvidia-smi >/dev/null 2>&1 \
        && version=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null); then
        version=$(head -n1 <<<"$version" | tr -d ' \r')
    fi
    [[ "$version" =~ ^[0-9]+(\.[0-9]+)+$ ]] || version=""  # a failed nvidia-smi prints prose
    if [[ -z "$version" && -r /proc/driver/nvidia/version ]]; then
        version=$(grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' /proc/driver/nvidia/version | head -n1 || true)
    fi
    echo "$version"
}

# The oldest Linux driver that runs a CUDA <major>.x build (CUDA's release notes,
# minor-version compatibility); empty when unknown.
min_driver() {
    case "${1%%.*}" in
        11) echo 450.80.02 ;;
        12) echo 525.60.13 ;;
        13) echo 580.65.06 ;;
        *) echo "" ;;
    esac
}

driver_unusable() {
    fail "match torch to the NVIDIA driver" "an NVIDIA GPU is visible with driver $DRIVER," \
        "but torch $TORCH_VERSION is a CUDA $TORCH_CUDA build, which needs driver >= ${1:-(unknown)}" \
        "(torch.cuda.is_available() would be False and training would run on the CPU)." \
        "Update the driver, or pick a torch build for this driver:" \
        "MMSLAK_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu<version> with a CUDA version" \
        "this driver supports (nvidia-smi prints it), or MMSLAK_TORCH=existing to use the torch" \
        "already installed for $PYTHON_BIN."
}

# Which torch: PyPI's pinned build, one from MMSLAK_TORCH_INDEX_URL, or an existing one.
TORCH_VERSION=$PINNED_TORCH
TORCH_CUDA=$PINNED_TORCH_CUDA
TORCH_SOURCE=pypi
VENV_SUFFIX=""
if [[ -n "${MMSLAK_TORCH:-}" ]]; then
    [[ "$MMSLAK_TORCH" == existing ]] \
        || fail "read MMSLAK_TORCH" "MMSLAK_TORCH='$MMSLAK_TORCH': the only value is 'existing'"
    command -v "$PYTHON_BIN" >/dev/null 2>&1 || fail "find python" "'$PYTHON_BIN' not on PATH (set PYTHON=...)"
    info=$("$PYTHON_BIN" -c 'import torch, torchvision; print(torch.__version__, torch.version.cuda or "")') \
        || fail "find the existing torch" "MMSLAK_TORCH=existing, but '$PYTHON_BIN' cannot import torch and torchvision"
    read -r TORCH_VERSION TORCH_CUDA <<<"$info"
    TORCH_SOURCE="existing:$PYTHON_BIN"
    VENV_SUFFIX=-existing
elif [[ -n "${MMSLAK_TORCH_INDEX_URL:-}" ]]; then
    index_name="${MMSLAK_TORCH_INDEX_URL%/}"
    index_name="${index_name##*/}"
    if [[ "$index_name" =~ ^cu([0-9]+)([0-9])$ ]]; then
        TORCH_CUDA="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
    elif [[ "$index_name" == cpu ]]; then
        TORCH_CUDA=""
    else
        fail "read MMSLAK_TORCH_INDEX_URL" "cannot tell which torch build '$MMSLAK_TORCH_INDEX_URL'" \
            "serves: its last path part must be cu<version> or cpu (as https://download.pytorch.org/whl/cu126)"
    fi
    TORCH_SOURCE="$MMSLAK_TORCH_INDEX_URL"
    VENV_SUFFIX=-index  # pip keeps an installed torch==X of another build
fi

DRIVER=$(gpu_driver)
if [[ -z "$DRIVER" ]]; then
    TAG=cpu
elif [[ -z "$TORCH_CUDA" ]]; then
    fail "match torch to the GPU" "an NVIDIA GPU is visible (driver $DRIVER) but torch $TORCH_VERSION" \
        "($TORCH_SOURCE) is a CPU-only build; choose a CUDA build (MMSLAK_TORCH_INDEX_URL=...cu<version>)"
else
    TAG="cu${TORCH_CUDA/./}"
    NEEDED_DRIVER=$(min_driver "$TORCH_CUDA")
    if [[ -n "$NEEDED_DRIVER" && "$(printf '%s\n' "$NEEDED_DRIVER" "$DRIVER" | sort -V | head -n1)" != "$NEEDED_DRIVER" ]]; then
        driver_unusable "$NEEDED_DRIVER"
    fi
fi
step "device: $TAG${DRIVER:+ (NVIDIA driver $DRIVER)}; torch $TORCH_VERSION from $TORCH_SOURCE"

# The CPU environment keeps the plain name it had before CUDA ones existed.
[[ "$TAG" == cpu ]] || VENV_SUFFIX="-$TAG$VENV_SUFFIX"
VENV="${MMSLAK_VENV:-$CACHE/venv-py${PY_MINOR/./}-torch${TORCH_VERSION}-mmcv${MMCV_VERSION}${VENV_SUFFIX}}"
PY="$VENV/bin/python"
# A venv built for a CUDA tag must see the GPU: checked on every run, since the same
# cache may serve nodes with different drivers.
cuda_usable() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; }

# The stamp captures everything that decides the environment's content.
STAMP_KEY="$(cat "$REPO_ROOT/tools/setup_env.sh" "$REPO_ROOT/requirements/"*.txt "$REPO_ROOT/setup.cfg" | sha256sum | cut -c1-16)|$TAG|$TORCH_VERSION|$TORCH_SOURCE|$REPO_ROOT"
STAMP="$VENV/.mmslak-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_KEY" && -x "$PY" ]]; then
    [[ "$TAG" == cpu ]] || cuda_usable || driver_unusable "${NEEDED_DRIVER:-}"
    step "environment up to date: $VENV"
    echo "$PY" >&3
    exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
    step "environment $VENV is not set up for $REPO_ROOT (or is out of date)"
    exit 3
fi

command -v "$PYTHON_BIN" >/dev/null 2>&1 || fail "find python" "'$PYTHON_BIN' not on PATH (Python $PY_MINOR is required; set PYTHON=...)"
command -v gcc >/dev/null 2>&1 || fail "find gcc" "gcc is required to build mmcv's ops"

if [[ ! -x "$PY" ]]; then
    step "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    VENV_ARGS=()
    [[ "$TORCH_SOURCE" == existing:* ]] && VENV_ARGS=(--system-site-packages)
    "$PYTHON_BIN" -m venv "${VENV_ARGS[@]}" "$VENV" || fail "create venv" "'$PYTHON_BIN -m venv $VENV' failed"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

step "installing build tools"
"${PIP[@]}" install -q "setuptools>=77,<81" ninja wheel || fail "install build tools" "pip could not install setuptools, ninja, wheel"
if [[ "$TORCH_SOURCE" != existing:* ]]; then
    INDEX_ARGS=()
    [[ "$TORCH_SOURCE" == pypi ]] || INDEX_ARGS=(--index-url "$TORCH_SOURCE")
    step "installing torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION from $TORCH_SOURCE"
    "${PIP[@]}" install -q "${INDEX_ARGS[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
        || fail "install torch" "pip could not install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION from $TORCH_SOURCE"
fi
[[ "$TAG" == cpu ]] || cuda_usable || driver_unusable "${NEEDED_DRIVER:-}"

WHEEL_DIR="$CACHE/wheels/mmcv-${MMCV_VERSION}_torch-${TORCH_VERSION}_py${PY_MINOR/./}_${TAG}"
mkdir -p "$WHEEL_DIR"
MMCV_WHEEL=$(ls "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl 2>/dev/null | head -n1 || true)

# The wheelhouse holds CPU-only wheels built against the pinned torch.
if [[ -z "$MMCV_WHEEL" && -n "${MMSLAK_WHEELHOUSE:-}" ]]; then
    if [[ "$TAG" != cpu || "$TORCH_VERSION" != "$PINNED_TORCH" ]]; then
        step "not using MMSLAK_WHEELHOUSE: its mmcv is for the CPU and torch $PINNED_TORCH, this environment is $TAG with torch $TORCH_VERSION"
    else
        cand=$(ls "$MMSLAK_WHEELHOUSE"/mmcv-${MMCV_VERSION}-cp${PY_MINOR/./}-*.whl 2>/dev/null | head -n1 || true)
        if [[ -n "$cand" ]]; then
            step "verifying prebuilt wheel $cand"
            (cd "$MMSLAK_WHEELHOUSE" && grep " $(basename "$cand")\$" SHA256SUMS | sha256sum -c --quiet -) \
                || fail "verify wheelhouse" "checksum of $cand does not match $MMSLAK_WHEELHOUSE/SHA256SUMS"
            cp "$cand" "$WHEEL_DIR/"
            MMCV_WHEEL="$WHEEL_DIR/$(basename "$cand")"
        fi
    fi
fi

if [[ -z "$MMCV_WHEEL" ]]; then
    BUILD_ENV=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
    if [[ "$TAG" != cpu ]]; then
        NVCC="${CUDA_HOME:+$CUDA_HOME/bin/}nvcc"
        command -v "$NVCC" >/dev/null 2>&1 || fail "find nvcc" "mmcv's CUDA ops need the CUDA toolkit" \
            "(nvcc for CUDA $TORCH_CUDA, torch's build) on PATH or under CUDA_HOME; none found"
        BUILD_ENV+=(FORCE_CUDA=1)
    fi
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    step "building mmcv $MMCV_VERSION with $TAG ops from source in $BUILD (7-20 minutes)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD" \
        || fail "download mmcv sdist" "pip download mmcv==$MMCV_VERSION failed (is PyPI reachable?)"
    tar -xzf "$BUILD"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD" || fail "unpack mmcv sdist" "tar failed"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch 2.14's headers need C++20; mmcv 2.1.0 hard-codes C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    grep -q 'std=c++20' "$SRC/setup.py" || fail "patch mmcv setup.py" "no -std=c++17 flag found to raise to C++20"
    # Do not set CFLAGS/CXXFLAGS: they replace Python's defaults and drop -O3.
    (cd "$SRC" && env "${BUILD_ENV[@]}" \
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

VERIFY_DEVICE=cpu
[[ "$TAG" == cpu ]] || VERIFY_DEVICE=cuda
step "verifying mmcv ops (nms, RoIAlign) on $VERIFY_DEVICE"
(cd / && "$PY" - "$VERIFY_DEVICE" <<'PYEOF') || fail "verify mmcv ops" "mmcv's compiled $VERIFY_DEVICE ops do not run (see the traceback above)"
import sys

import torch
from mmcv.ops import RoIAlign, nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
scores = torch.tensor([0.9, 0.8, 0.7])
feat = torch.arange(16.).view(1, 1, 4, 4)
rois = torch.tensor([[0., 0., 0., 4., 4.]])
roi_align = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
out = roi_align(feat, rois)
assert out.shape == (1, 1, 2, 2), out.shape
if sys.argv[1] == 'cuda':  # the CUDA kernels, checked against the CPU ones
    _, keep = nms(boxes.to('cuda'), scores.to('cuda'), iou_threshold=0.5)
    assert keep.is_cuda and keep.tolist() == [0, 2], keep
    torch.testing.assert_close(roi_align(feat.to('cuda'), rois.to('cuda')).cpu(), out)
import mmdet, mmseg, mmpretrain, mmslak  # noqa: F401
print('[setup_env] mmcv ops OK on', sys.argv[1], '; mmdet', mmdet.__version__, 'mmseg',
      mmseg.__version__, 'mmpretrain', mmpretrain.__version__, 'mmslak', mmslak.__version__)
PYEOF

step "building mmslak's compiled CPU depthwise kernel (about a minute, cached by CPU)"
(cd / && "$PY" -c 'from mmslak.ops.cpu_kernel import build; print(build())') \
    || step "WARNING: the compiled CPU kernel did not build; mmslak falls back to torch's kernels"

echo "$STAMP_KEY" > "$STAMP"
step "environment ready: $VENV"
echo "$PY" >&3
