#!/usr/bin/env bash
# The GPU acceptance checks in one call (about 6-8 minutes on an H100/H200), run on the device
# machine from the repo root with .device/ carried (bench/device_prep.sh builds it here):
#   1. encode: our dense encoder vs SentenceTransformer.encode (issue: >= 3x),
#   2. rerank: our cross-encoder vs CrossEncoder.predict fp16/bf16 (issue: >= 1.5x),
#   3. train: our embedder trainer vs the sentence-transformers trainer, MiniLM batch 128 and a
#      SmolLM2-135M-shaped decoder with LoRA at batch 64 (issue: >= 3x each).
# Each result JSON is copied to $OUT as it lands, so a run cut short still returns what finished.
# $OUT holds exactly 8 files (4 logs + 4 -gpu.json), the device tool's most: add no file there.
# Every baseline is measured in float32 and, on the GPU, fp16 and bf16 (the carried MiniLM is fp16:
# the benches load ST in each dtype explicitly); ratios are against the fastest. The exit status is
# non-zero when any step failed (a bench also fails when its outputs disagree with the baseline's).
set -uo pipefail
OUT=${OUT:-/tmp/wb-device-out}
mkdir -p "$OUT"
WHL=${WHL:-.device/whl}
if compgen -G "$WHL/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export WB_MODEL_CACHE=$PWD/.device/models WB_SCIFACT=$PWD/.device/scifact \
       WB_SMOLLM2_TOKENIZER=$PWD/.device/smollm2-tok PYTHONUNBUFFERED=1 \
       HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM=$PWD/.device/models/all-MiniLM-L6-v2
nvidia-smi -L 2>/dev/null; python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)"

FAILED=()
step() {  # name, command...: run it, log it, copy every new GPU result out
    local name=$1; shift
    echo "== $name: $*"; local t0=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1; local rc=$?
    tail -n 40 "$OUT/$name.log"
    echo "== $name: rc $rc in $((SECONDS - t0)) s"
    [ "$rc" = 0 ] || FAILED+=("$name")
    cp "${WB_BENCH_RESULTS:-bench/results}"/*-gpu.json "$OUT/" 2>/dev/null || true
}
# SMOKE=1: tiny sizes, on any machine (checks the plumbing, not the speed: a few minutes on 2 CPU cores)
if [ "${SMOKE:-0}" = 1 ]; then
    export WB_BENCH_RESULTS=$OUT/smoke-results
    ENC=(--n 32 --rounds 1); RR=(--n 32 --rounds 1 --device cpu)
    TR=(--n 32 --batch 16 --query-len 32 --passage-len 64 --st-precision same)
    TD=(--n 8 --batch 8 --query-len 16 --passage-len 32 --st-precision same --warmup-steps 0)
else
    ENC=(--n 4096 --rounds 3); RR=(--n 2000 --rounds 3 --device cuda)
    TR=(--n 5183 --batch 128); TD=(--n 2048 --batch 64)  # ST in bf16 and fp16 (--st-precision auto)
fi
step encode python3 bench/bench_encode.py "${ENC[@]}" --dense "$MINILM" --sparse none
step rerank python3 bench/bench_rerank.py "${RR[@]}" --max-length 256
step train python3 bench/bench_train.py "${TR[@]}" --model "$MINILM"
step train_decoder python3 bench/bench_train.py "${TD[@]}" --decoder --lora
ls -la "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then echo "FAILED: ${FAILED[*]}"; exit 1; fi
echo "all steps passed"
