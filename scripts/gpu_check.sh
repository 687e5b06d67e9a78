#!/usr/bin/env bash
# GPU rehearsal in one command (issue 12 part 5), within 10 minutes on one GPU:
#   1. the CUDA tests (blockwise engine, matching, evaluation, projection),
#   2. the matching benchmark in bf16 at N = 100,000 and 1,000,000 (ours; GEMM floor),
#   3. the evaluation benchmark in bf16 at N = 1,000,000 (ours),
#   4. `paper-small` (ConvNeXt-S at 224, AMP) through the whole unsupervised pipeline on a
#      2,048 + 512 synthetic world for a few hundred steps,
# writing JSON to OUT_DIR (gpu_check.json: every step's status and seconds; cuda_tests.json,
# matching_bf16.json, evaluate_bf16.json, pipeline.json) and each step's log.
#
#   scripts/gpu_check.sh OUT_DIR                         # on the GPU machine
#   UCVGL_GPU_CHECK_CPU=1 scripts/gpu_check.sh OUT_DIR   # dry run on a CPU: tiny N, tiny preset
#   scripts/gpu_check.sh --fetch-wheels DIR              # where pip reaches PyPI: the wheels
#
# It needs only a Python with torch, timm, numpy, scipy, Pillow, typer, tqdm and pytest (the
# GPU image has them) and installs what that Python lacks (pydantic-settings and its
# dependencies, faiss-cpu) from the wheels in $UCVGL_WHEELS (default: .whl/ in the
# repository, made by --fetch-wheels for CPython 3.12 manylinux x86-64) into a folder under
# OUT_DIR, without a network. PYTHON (default python3) picks the interpreter.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${UCVGL_WHEELS:-$ROOT/.whl}
NEEDED="pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv faiss-cpu"

if [ "${1:-}" = "--fetch-wheels" ]; then
    dest=${2:?usage: scripts/gpu_check.sh --fetch-wheels DIR}
    mkdir -p "$dest"
    for name in $NEEDED; do  # the versions this Python has, else the newest
        version=$($PY -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null)
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d "$dest" "$name${version:+==$version}" || exit 1
    done
    ls -l "$dest"
    exit 0
fi

OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR (UCVGL_GPU_CHECK_CPU=1 for a CPU dry run)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
CPU=${UCVGL_GPU_CHECK_CPU:-0}
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export UCVGL_WORK_DIR="$OUT/work" UCVGL_DATA_ROOTS="$OUT/work"

if ! $PY -c "import pydantic_settings, faiss" 2>/dev/null; then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "error: $PY lacks pydantic-settings or faiss, and $WHEELS holds no wheels:" \
             "run scripts/gpu_check.sh --fetch-wheels $WHEELS where pip reaches PyPI, and" \
             "bring that folder (or set UCVGL_WHEELS)" >&2
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$OUT/site" "$WHEELS"/*.whl \
        || { echo "error: installing the wheels of $WHEELS failed" >&2; exit 2; }
    export PYTHONPATH="$OUT/site:$PYTHONPATH"
fi

if [ "$CPU" = "1" ]; then
    DEVICE=cpu; DTYPE=float32; MATCH_SIZES=2000; EVAL_N=2000; DIM=64; PIPE_ARGS=--cpu
else
    DEVICE=cuda; DTYPE=bfloat16; MATCH_SIZES=100000,1000000; EVAL_N=1000000; DIM=1024; PIPE_ARGS=
fi

STEPS=()
step() {  # step NAME COMMAND...: run it, log to OUT/NAME.log, keep its status and seconds
    local name=$1; shift
    local began=$SECONDS
    echo "== $name: $*"
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 5 "$OUT/$name.log"
    STEPS+=("{\"name\": \"$name\", \"status\": $rc, \"seconds\": $((SECONDS - began))}")
}
results() {  # copy benchmarks/results/NAME.json to OUT/NAME.json when the step wrote it
    [ -f "benchmarks/results/$1.json" ] && cp "benchmarks/results/$1.json" "$OUT/$1.json"
    rm -f "benchmarks/results/$1.json"
}

step cuda_tests $PY -m pytest -q -p no:cacheprovider --junitxml "$OUT/cuda_tests.xml" \
    tests/services/test_blockwise.py tests/services/test_matching.py \
    tests/services/test_evaluation.py tests/services/projection/test_geometry.py \
    -k "cuda or gallery"
$PY - "$OUT" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
try:
    suite = ET.parse(f"{out}/cuda_tests.xml").getroot().find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError, AttributeError) as exc:
    counts = {"error": f"no junit report: {exc}"}
json.dump(counts, open(f"{out}/cuda_tests.json", "w"), indent=2)
PYEOF

step matching_bf16 $PY benchmarks/matching.py --device $DEVICE --dtype $DTYPE \
    --sizes $MATCH_SIZES --methods ours --dim $DIM --name gpu_check_matching
results gpu_check_matching && mv -f "$OUT/gpu_check_matching.json" "$OUT/matching_bf16.json" 2>/dev/null

step evaluate_bf16 $PY benchmarks/evaluate.py --device $DEVICE --dtype $DTYPE \
    --n $EVAL_N --dense-n 0 --dim $DIM --name gpu_check_evaluate
results gpu_check_evaluate && mv -f "$OUT/gpu_check_evaluate.json" "$OUT/evaluate_bf16.json" 2>/dev/null

step pipeline $PY scripts/gpu_check_pipeline.py --out "$OUT" $PIPE_ARGS

failed=0
for s in "${STEPS[@]}"; do case $s in *'"status": 0,'*) ;; *) failed=1 ;; esac; done
joined=$(IFS=,; echo "${STEPS[*]}")
$PY - "$OUT" "$CPU" "$DEVICE" "$DTYPE" "$joined" <<'PYEOF'
import json, sys, time
out, cpu, device, dtype, steps = sys.argv[1:6]
body = {
    "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "mode": "cpu dry run" if cpu == "1" else "gpu",
    "device": device,
    "dtype": dtype,
    "steps": json.loads(f"[{steps}]"),
}
try:
    import torch
    body["torch"] = torch.__version__
    body["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except ImportError:
    pass
body["seconds"] = sum(s["seconds"] for s in body["steps"])
json.dump(body, open(f"{out}/gpu_check.json", "w"), indent=2)
print(json.dumps(body, indent=2))
PYEOF
exit $failed
