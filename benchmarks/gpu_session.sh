#!/usr/bin/env bash
# One bounded benchmark session on a lent machine (GPU and/or a CPU with bf16 matrix units).
#
# Uses whatever `python3` with torch the machine has (nothing is installed; the repository is
# put on PYTHONPATH). Every step has its own `timeout` and the whole session a deadline
# (BUDGET seconds, default 330); a failing step is reported and the session goes on. Output:
# stdout, plus $OUT/gpu_session.log (everything) and $OUT/gpu_session.md (the markdown tables
# and the best-vs-best lines), $OUT defaulting to /tmp/gpu_session_out.
#
#   bash benchmarks/gpu_session.sh                      # the full session (~5.5 min at most)
#   BUDGET=450 bash benchmarks/gpu_session.sh           # ... with the compiled CUDA step too
#   bash benchmarks/gpu_session.sh --cpu-only --quick   # rehearsal on any CPU (tiny inputs;
#       on a busy machine: STEP_SCALE=5 BUDGET=1500 bash benchmarks/gpu_session.sh ...)
#   bash benchmarks/gpu_session.sh --dry-run            # print the steps, run nothing
set -uo pipefail
cd "$(dirname "$0")/.."

CPU_ONLY=0 QUICK=0 DRY=0
for arg in "$@"; do
    case "$arg" in
        --cpu-only) CPU_ONLY=1 ;;
        --quick) QUICK=1 ;;
        --dry-run) DRY=1 ;;
        *) echo "unknown option $arg (use --cpu-only, --quick, --dry-run)"; exit 2 ;;
    esac
done
OUT=${OUT:-/tmp/gpu_session_out}
mkdir -p "$OUT"
LOG=$OUT/gpu_session.log
MD=$OUT/gpu_session.md
: >"$LOG"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export OMP_WAIT_POLICY=PASSIVE
BUDGET=${BUDGET:-330}
STEP_SCALE=${STEP_SCALE:-1}  # a slow or shared rehearsal machine: give each step N times longer
START=$(date +%s)
PY=${PYTHON:-python3}

if [ "$QUICK" = 1 ]; then
    # rehearsal sizes: the code paths of the session on inputs a slow CPU runs in seconds
    SIZE="--seconds 0.5 --layers 1 --quick"
    GEN="--sizes small --quick"
    CUDA_BATCH=1 CPU_BATCH=1
else
    SIZE="--seconds 10 --layers 12"
    GEN="--sizes medium --quick"
    CUDA_BATCH=8 CPU_BATCH=2
fi

step() {  # step <seconds> <title> <command...>: run bounded by its limit and the deadline
    local limit=$(($1 * STEP_SCALE)) title=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    [ "$left" -lt "$limit" ] && limit=$left
    {
        echo
        echo "## $title"
        echo "\$ $*"
    } | tee -a "$LOG"
    if [ "$DRY" = 1 ]; then return 0; fi
    if [ "$limit" -le 5 ]; then
        echo "SKIPPED: the session's ${BUDGET} s are spent" | tee -a "$LOG"
        return 0
    fi
    local began=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - began))
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "TIMED OUT after ${limit} s" | tee -a "$LOG"
    elif [ "$rc" != 0 ]; then
        echo "FAILED (exit $rc) after ${took} s" | tee -a "$LOG"
    else
        echo "(${took} s)" | tee -a "$LOG"
    fi
}

step 45 "machine" bash -c "date -u; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Flags' | cut -c1-2000; \
    grep -o -E 'amx[a-z_0-9]*|avx512_bf16|avx512_fp16' /proc/cpuinfo | sort | uniq -c; \
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; \
    $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available())'; \
    $PY -c 'import transformers; print(\"transformers\", transformers.__version__)'"

if [ "$DRY" = 0 ] && ! $PY -c "import torch" 2>/dev/null; then
    echo "no python3 with torch on this machine: nothing to measure" | tee -a "$LOG"
    exit 1
fi
HAS_CUDA=0
if [ "$CPU_ONLY" = 0 ] && $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    HAS_CUDA=1
fi

step 40 "CPU product peaks (2 and 16 threads)" \
    $PY benchmarks/peak.py --threads 2 16 --dtypes fp32 bf16 --seconds 0.5
if [ "$HAS_CUDA" = 1 ]; then
    step 30 "CUDA product peaks" $PY benchmarks/peak.py --device cuda --dtypes fp32 bf16 fp16
    step 60 "BEATs base, CUDA: ours vs plain attention, every setting" \
        $PY benchmarks/bench_beats.py --device cuda $SIZE --batch $CUDA_BATCH \
        --precision fp32 bf16 --peer-precision fp32 autocast-bf16 bf16
    step 75 "Wav2Vec2-Conformer rel-pos base, CUDA: ours vs transformers (SDPA), every setting" \
        $PY benchmarks/bench_wav2vec2.py --device cuda $SIZE --batch $CUDA_BATCH --rows "conformer rel-pos" \
        --precision fp32 bf16 --peer-precision fp32 autocast-bf16 bf16 --train
fi
step 75 "Wav2Vec2-Conformer rel-pos base, CPU 2 threads: ours bf16 vs transformers' best" \
    $PY benchmarks/bench_wav2vec2.py --threads 2 $SIZE --batch $CPU_BATCH --rows "conformer rel-pos" \
    --precision fp32 bf16 --peer-precision fp32 autocast-bf16 bf16 --quick
step 60 "BEATs base, CPU 2 threads: ours bf16 vs plain attention's best" \
    $PY benchmarks/bench_beats.py --threads 2 $SIZE --batch $CPU_BATCH \
    --precision fp32 bf16 --peer-precision fp32 autocast-bf16 bf16 --quick
if [ "$HAS_CUDA" = 1 ]; then
    step 60 "SpeechEncoderDecoder generate, CUDA" \
        $PY benchmarks/bench_generate.py --device cuda $GEN \
        --precision fp32 bf16 --peer-precision fp32 autocast-bf16 bf16
else
    step 60 "SpeechEncoderDecoder generate, CPU 2 threads" \
        $PY benchmarks/bench_generate.py --threads 2 $GEN \
        --precision fp32 bf16 --peer-precision fp32 autocast-bf16 bf16
fi
if [ "$HAS_CUDA" = 1 ]; then  # last: the deadline cuts it first (BUDGET=450 leaves it room)
    step 120 "Wav2Vec2-Conformer rel-pos base, CUDA, compiled: ours vs transformers" \
        $PY benchmarks/bench_wav2vec2.py --device cuda $SIZE --batch $CUDA_BATCH --rows "conformer rel-pos" \
        --precision bf16 bf16+compile --peer-precision bf16 bf16+compile --quick
fi

{
    echo "# gpu_session $(date -u +%Y-%m-%dT%H:%MZ), $(($(date +%s) - START)) s"
    grep -E '^(## |\||CPU flags|GPU:|.*(ratio|peaks GFLOP|max \|)|TIMED OUT|FAILED|SKIPPED|torch |transformers |NVIDIA|name,)' "$LOG"
} >"$MD"
echo
echo "==== summary ($MD) ===="
cat "$MD"
