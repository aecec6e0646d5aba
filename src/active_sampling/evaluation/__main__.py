"""Command line: ``python -m active_sampling.evaluation [options]`` writes OUTPUT_DIR/evaluation.md and figures."""

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

from pydantic import ValidationError

from active_sampling.evaluation import label_review
from active_sampling.evaluation.config import EvaluationConfig
from active_sampling.evaluation.report import write_report
from active_sampling.evaluation.runner import run_evaluation

DEFAULT_COMMAND = "make evaluate   # = .venv/bin/python -m active_sampling.evaluation"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    defaults = EvaluationConfig()
    parser = argparse.ArgumentParser(prog="python -m active_sampling.evaluation", description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=Path("docs"),
                        help="folder for evaluation.md and figures/ (default: docs)")
    parser.add_argument("--datasets", nargs="+", default=list(defaults.datasets))
    parser.add_argument("--models", nargs="+", default=list(defaults.models))
    parser.add_argument("--strategies", nargs="+", default=list(defaults.strategies))
    parser.add_argument("--seeds", type=int, default=defaults.seeds,
                        help="number of seeds (0..N-1) for every data set (default: each data set's own)")
    parser.add_argument("--rounds", type=int, default=None, help="override every data set's number of rounds")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--no-ssl", action="store_true", help="skip the semi-supervised study")
    parser.add_argument("--no-precision-study", action="store_true",
                        help="skip the calibration_data / precision_target study")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures (no matplotlib needed)")
    parser.add_argument("--no-label-review", action="store_true",
                        help="skip the label-review study (active_sampling.evaluation.label_review)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = parse_args(args_list)
    try:
        config = EvaluationConfig(
            datasets=tuple(args.datasets), models=tuple(args.models), strategies=tuple(args.strategies),
            seeds=args.seeds, rounds=args.rounds, workers=args.workers, run_ssl=not args.no_ssl,
            run_precision_study=not args.no_precision_study,
        )
    except ValidationError as error:
        print(f"invalid evaluation options: {error}", file=sys.stderr)
        return 2
    command = DEFAULT_COMMAND if not args_list else "python -m active_sampling.evaluation " + shlex.join(args_list)
    print(f"evaluating {len(config.jobs)} jobs with {config.workers} worker(s)", flush=True)
    results = run_evaluation(config, progress=lambda message: print(message, flush=True))
    path = write_report(results, args.output_dir, command, figures=not args.no_figures)
    print(f"wrote {path} ({results.wall_seconds / 60:.1f} min wall, {results.cpu_seconds / 60:.1f} CPU-min)")
    if not args.no_label_review:
        started = time.time()
        reviewed = label_review.run_study(progress=lambda message: print(message, flush=True))
        label_review.write_section(path, reviewed, label_review.DEFAULT_COMMAND, time.time() - started)
        print(f"wrote the label-review section of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
