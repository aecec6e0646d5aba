"""Run every job of an EvaluationConfig, in worker processes when asked, and collect the records."""

import multiprocessing
import os
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import pandas as pd

from active_sampling.evaluation.config import EvaluationConfig
from active_sampling.evaluation.simulation import run_job

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class EvaluationResults(NamedTuple):
    config: EvaluationConfig
    curves: pd.DataFrame
    ssl: pd.DataFrame
    wall_seconds: float
    script_calls: int
    cpu_seconds: float  # summed over the jobs: what the run costs on an otherwise idle machine
    precision: Optional[pd.DataFrame] = None  # the precision study's records (precision_study.py)


def run_evaluation(config: EvaluationConfig, progress: Optional[Callable[[str], None]] = None) -> EvaluationResults:
    """All learning curves and SSL measurements of ``config``; each worker uses one thread so that
    ``workers`` processes use ``workers`` cores."""
    jobs = config.jobs
    started = time.perf_counter()
    curves: List[dict] = []
    ssl: List[dict] = []
    calls = 0
    cpu_seconds = 0.0
    for done, output in enumerate(_map(run_job, jobs, config.workers), start=1):
        curves += output.curves
        ssl += output.ssl
        calls += output.script_calls
        cpu_seconds += output.cpu_seconds
        if progress:
            progress(f"{done}/{len(jobs)} jobs done, {time.perf_counter() - started:.0f} s")
    order = {name: i for i, name in enumerate(config.datasets + config.models + config.strategies)}
    curves_df = _sorted(pd.DataFrame(curves), ["dataset", "model", "strategy", "seed", "round"], order)
    ssl_df = _sorted(pd.DataFrame(ssl), ["dataset", "model", "seed"], order) if ssl else pd.DataFrame()
    precision = None
    if config.run_precision_study:
        from active_sampling.evaluation.precision_study import STUDY_SEEDS, run_precision_study

        precision, study_calls, study_cpu = run_precision_study(seeds=config.seeds or STUDY_SEEDS,
                                                                workers=config.workers, progress=progress)
        calls += study_calls
        cpu_seconds += study_cpu
    return EvaluationResults(config, curves_df, ssl_df, time.perf_counter() - started, calls, cpu_seconds, precision)


def _sorted(frame: pd.DataFrame, columns: List[str], order: Dict[str, int]) -> pd.DataFrame:
    """Sort in configuration order (random first, as configured) rather than alphabetically; stable, so
    records of one job keep the order they were made in."""
    return frame.sort_values(columns, key=lambda col: col if pd.api.types.is_numeric_dtype(col) else col.map(order),
                             kind="stable", ignore_index=True)


def _map(function, jobs, workers: int):
    if workers == 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            yield from map(function, jobs)
        return
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    try:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            yield from pool.imap_unordered(function, jobs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

