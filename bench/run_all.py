"""Run every CPU benchmark in turn (results in bench/results/*.json).

    python bench/run_all.py [-w SCIFACT_WORKSPACE]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ws = sys.argv[sys.argv.index("-w") + 1] if "-w" in sys.argv else None
    subprocess.run([sys.executable, str(HERE / "bench_encode.py")], check=True)
    subprocess.run([sys.executable, str(HERE / "bench_index.py")], check=True)
    if ws:
        subprocess.run([sys.executable, str(HERE / "bench_query.py"), "-w", ws], check=True)
        subprocess.run([sys.executable, str(HERE / "bench_cold_query.py"), "-w", ws], check=True)
        subprocess.run([sys.executable, str(HERE / "bench_query_batch.py"), "-w", ws], check=True)
    else:
        print("bench_query, bench_cold_query and bench_query_batch need an indexed SciFact workspace: pass -w WS", file=sys.stderr)


if __name__ == "__main__":
    main()
