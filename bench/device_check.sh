#!/usr/bin/env bash
# The GPU acceptance checks in one call (about 6-8 minutes on an H100/H200), run on the device
# machine from the repo root with .device/ carried (bench/device_prep.sh builds it here):
#   1. encode: our dense encoder vs SentenceTransformer.encode (issue: >= 3x),
#   2. rerank: our cross-encoder vs CrossEncoder.predict fp16/bf16 (issue: >= 1.5x),
#   3. train: our embedder trainer vs the sentence-transformers trainer, MiniLM batch 128 and a
#      SmolLM2-135M-shaped decoder with LoRA at batch 64 (issue: >= 3x each).
# Each result JSON is copied to $OUT as it lands, so a run cut short still returns what finished.
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

step() {  # name, command...: run it, log it, copy every new GPU result out
    local name=$1; shift
    echo "== $name: $*"; local t0=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1; local rc=$?
    tail -n 40 "$OUT/$name.log"
    echo "== $name: rc $rc in $((SECONDS - t0)) s"
    cp "${WB_BENCH_RESULTS:-bench/results}"/*-gpu.json "$OUT/" 2>/dev/null || true
}
# SMOKE=1: tiny sizes, on any machine (checks the plumbing, not the speed)
if [ "${SMOKE:-0}" = 1 ]; then N=(64 64 1 128 32 64 16 cpu); export WB_BENCH_RESULTS=$OUT/smoke-results
else N=(4096 2000 3 5183 128 2048 64 cuda); fi
step encode python3 bench/bench_encode.py --n "${N[0]}" --dense "$MINILM" --sparse none
step rerank python3 bench/bench_rerank.py --n "${N[1]}" --rounds "${N[2]}" --max-length 256 --device "${N[7]}"
step train python3 bench/bench_train.py --n "${N[3]}" --batch "${N[4]}" --model "$MINILM"
step train_decoder python3 bench/bench_train.py --n "${N[5]}" --decoder --lora --batch "${N[6]}"
ls -la "$OUT"
