"""Entry point of a detached (or ``accelerate launch``-ed) training run.

    python -m trainers.cli run RUN_DIR [--resume]

Reads ``RUN_DIR/config.json`` and trains with the trainer its ``trainer`` key names (embedder,
reranker, colbert; see :func:`trainers.loop.train_run`). Exit
status 0 when the run finished or stopped, 1 when it failed (``status.json`` says why, and the
traceback is in the log), 2 for a bad command line or when the run's data or options are wrong (a
WbError: one line in the log, no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error"),
                       ("WANDB_DISABLED", "true")):
        os.environ.setdefault(key, value)
    parser = argparse.ArgumentParser(prog="python -m trainers.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="train the run in RUN_DIR")
    run_p.add_argument("run_dir")
    run_p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    args = parser.parse_args(argv)

    from workbench.errors import WbError

    from .runs import RunFolder

    run = RunFolder(Path(args.run_dir).absolute())
    if not run.exists():
        print(f"trainers: error: no run config in {run.path}", file=sys.stderr)
        return 2
    from .loop import train_run

    try:
        status = train_run(run, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    except WbError as exc:  # bad data or options: one line in the log, no traceback
        print(f"trainers: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        return 1
    print(f"run {run.name}: {status.get('state')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
