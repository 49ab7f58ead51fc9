#!/bin/bash
# A/B (issue #6): wb index --model dense=runs/ft (MiniLM copied with new file times) on
# sample_corpora/python-docs, with reuse of the unchanged modes (WB_REUSE=1) and without (WB_REUSE=0).
# Run as: flock /work/heavy.lock bench/bench_variant_reuse.sh
set -e
cd "$(dirname "$0")/.."
WS=/tmp/reuse_bench/ws
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
rm -rf $WS
/usr/bin/time -f "parent index: %e s" .venv/bin/wb index sample_corpora/python-docs -w $WS
MODEL=$(.venv/bin/python -c "from workbench.models.cache import resolve_model_path; print(resolve_model_path('all-MiniLM-L6-v2'))")
mkdir -p $WS/runs/ft && cp -r $MODEL $WS/runs/ft/model && echo '{}' > $WS/runs/ft/config.json
for round in 1 2; do
  for reuse in 0 1; do
    rm -rf $WS/variants
    echo "round $round WB_REUSE=$reuse"
    WB_REUSE=$reuse /usr/bin/time -f "  wall %e s" .venv/bin/wb index -w $WS --model dense=runs/ft
  done
done
