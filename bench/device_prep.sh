#!/usr/bin/env bash
# Build .device/ (git-ignored through the repository's info/exclude, a worktree's too): what the GPU checks need on a machine
# whose image has torch, transformers, sentence-transformers, peft and accelerate but no wb models,
# no SciFact and no `datasets`. Everything must fit the device tool's 64 MiB per call together
# with the tracked tree (~3 MB):
#   models/all-MiniLM-L6-v2   fp16 safetensors + tokenizer + install marker   (~45 MB)
#   smollm2-tok/              SmolLM2's tokenizer (bench_train --decoder builds random weights) (~2 MB)
#   scifact/                  corpus.jsonl, queries.jsonl, qrels/test.tsv     (~8 MB)
#   whl/                      datasets, dill, multiprocess wheels (the ST trainer needs datasets)
# Then, with the device tool:  run(command="bash bench/device_check.sh", carry=[".device"], timeout_s=560)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
D=.device
SCIFACT=${WB_SCIFACT:-../shared/eval/scifact}
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"  # .git is a file in a worktree
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx "/.device/" "$EXCLUDE" 2>/dev/null || echo "/.device/" >> "$EXCLUDE"
rm -rf "$D"
mkdir -p "$D/models" "$D/scifact/qrels" "$D/whl" "$D/smollm2-tok"

"$PY" - "$D" <<'EOF'
import shutil, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workbench.models.cache import resolve_model_path

out = Path(sys.argv[1])
src = Path(resolve_model_path("all-MiniLM-L6-v2"))
dst = out / "models" / "all-MiniLM-L6-v2"
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
          str(dst / "model.safetensors"), metadata={"format": "pt"})
tok = Path(resolve_model_path("smollm2-135m-instruct"))
for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "special_tokens_map.json"):
    if (tok / name).exists():
        shutil.copy(tok / name, out / "smollm2-tok" / name)
EOF

cp "$SCIFACT/corpus.jsonl" "$SCIFACT/queries.jsonl" "$D/scifact/"
cp "$SCIFACT/qrels/test.tsv" "$D/scifact/qrels/"

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$D/whl" "datasets==4.4.1" "dill==0.4.0" "multiprocess==0.70.18"

du -sh "$D"/* && du -sh "$D"
