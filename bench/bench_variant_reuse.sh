#!/bin/bash
# A/B (issue #6): wb index --model dense=runs/ft with and without reuse of the unchanged modes; the
# work and the result (bench/results/variant_reuse.json, through common.write_result) are
# bench/bench_variant_reuse.py's. Run as: flock /work/heavy.lock bench/bench_variant_reuse.sh [--docs N] [--rounds R]
set -e
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" bench/bench_variant_reuse.py "$@"
