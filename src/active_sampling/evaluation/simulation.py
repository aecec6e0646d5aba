"""Pool-based simulation that drives the entry script exactly as a user's pipeline does.

Every round the current model scores the pool, the harness writes the prediction table (``id``,
``prob_class_*``, ``emb_*`` from the model, ``label`` filled for labeled rows) to a folder, calls the script's
``main`` on it, reads ``selected_samples`` back, reveals the true labels of the selected ids and retrains.
The ``random`` baseline is the harness's own seeded draw from the unlabeled pool (the script has no random
strategy). The test split is never written to any table.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from active_sampling.evaluation.config import RANDOM, STRATEGY_ENVIRONMENTS, Job
from active_sampling.evaluation.models import FittedModel, fit_model, load_dataset
from active_sampling.scripts import active_sample_selection as script

ID_COLUMN = "id"
LABEL_COLUMN = "label"
TOP_K_POOL_SHARE = 0.25
_RANDOM_STREAM = 1
_SSL_STREAM = 2


class ScriptRunner:
    """Writes one prediction table per call into a scratch folder and runs the script's ``main`` on it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.calls = 0

    def select(self, table: pd.DataFrame, environ: Dict[str, str], job_type: str) -> pd.DataFrame:
        self.calls += 1
        call_dir = self.workdir / f"call_{self.calls:05d}"
        input_dir = call_dir / script.INPUT_CHANNEL
        input_dir.mkdir(parents=True)
        table.to_parquet(input_dir / "predictions.parquet", index=False)
        outputs = {channel: str(call_dir / channel) for channel in (script.SAMPLES_CHANNEL, script.METADATA_CHANNEL)}
        script.main({script.INPUT_CHANNEL: str(input_dir)}, outputs, environ, argparse.Namespace(job_type=job_type))
        (result_file,) = sorted(Path(outputs[script.SAMPLES_CHANNEL]).glob(script.SAMPLES_BASENAME + ".*"))
        return pd.read_parquet(result_file).sort_values(script.SELECTION_RANK)


def prediction_table(model: FittedModel, X_pool: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """The model's prediction table over the pool; ``labels`` is NaN for unlabeled rows."""
    probabilities = model.predict_proba(X_pool)
    embeddings = model.embed(X_pool)
    columns = {ID_COLUMN: np.arange(len(X_pool))}
    columns.update({f"prob_class_{k}": probabilities[:, k] for k in range(probabilities.shape[1])})
    columns.update({f"emb_{j}": embeddings[:, j] for j in range(embeddings.shape[1])})
    columns[LABEL_COLUMN] = labels
    return pd.DataFrame(columns)


def known_labels(y_pool: np.ndarray, labeled: Sequence[int]) -> np.ndarray:
    labels = np.full(len(y_pool), np.nan)
    labels[list(labeled)] = y_pool[list(labeled)]
    return labels


def initial_labeled_set(y_pool: np.ndarray, size: int, rng: np.random.Generator) -> List[int]:
    """One random row of every class (so every model can be fit), then random rows up to ``size``."""
    classes = np.unique(y_pool)
    if size < len(classes):
        raise ValueError(f"an initial labeled set of {size} rows cannot hold one row of each of {len(classes)} classes")
    chosen = [int(rng.choice(np.flatnonzero(y_pool == cls))) for cls in classes]
    rest = np.setdiff1d(np.arange(len(y_pool)), chosen)
    chosen += [int(i) for i in rng.choice(rest, size=size - len(chosen), replace=False)]
    return chosen


def strategy_environment(strategy: str) -> Dict[str, str]:
    """The script's environment for one harness strategy name (uncertainty modes are named by their mode)."""
    return dict(STRATEGY_ENVIRONMENTS[strategy])


def ssl_methods(thresholds: Sequence[float], k_per_class: int) -> Iterator[Tuple[str, Dict[str, str]]]:
    for threshold in thresholds:
        yield f"confidence_threshold {threshold:g}", {
            "SELECTION_STRATEGY": "confidence_threshold", "CONFIDENCE_THRESHOLD": f"{threshold:g}"}
    yield f"top_k_per_class k={k_per_class}", {
        "SELECTION_STRATEGY": "top_k_per_class", "K_PER_CLASS": str(k_per_class)}


class _Data:
    """One seed's split of one data set: the pool a user would score and the held-out test rows."""

    def __init__(self, job: Job) -> None:
        X, y = load_dataset(job.dataset)
        self.n_classes = int(y.max()) + 1
        self.X_pool, self.X_test, self.y_pool, self.y_test = train_test_split(
            X, y, test_size=job.setting.test_fraction, stratify=y, random_state=job.seed)
        self.job = job

    def fit(self, rows: Sequence[int], targets: Optional[np.ndarray] = None) -> FittedModel:
        rows = list(rows)
        y = self.y_pool[rows] if targets is None else targets
        return fit_model(self.job.model, self.X_pool[rows], y, self.X_pool, self.n_classes, self.job.seed)

    def score(self, model: FittedModel) -> Dict[str, float]:
        predicted = model.predict(self.X_test)
        return {
            "accuracy": float(accuracy_score(self.y_test, predicted)),
            "macro_f1": float(f1_score(self.y_test, predicted, average="macro")),
        }


class JobOutput(NamedTuple):
    curves: List[dict]
    ssl: List[dict]
    script_calls: int
    cpu_seconds: float  # CPU time of the worker process on this job


def run_job(job: Job) -> JobOutput:
    """Learning curves of every strategy, and the SSL measurements, for one data set, model and seed."""
    started = time.process_time()
    logging.getLogger(script.logger.name).setLevel(logging.WARNING)
    data = _Data(job)
    with tempfile.TemporaryDirectory(prefix="active_sampling_eval_") as tmp:
        runner = ScriptRunner(Path(tmp))
        curves = _learning_curves(data, runner)
        ssl = _ssl_study(data, runner) if job.run_ssl else []
    return JobOutput(curves, ssl, runner.calls, time.process_time() - started)


def _learning_curves(data: _Data, runner: ScriptRunner) -> List[dict]:
    # Imported here, not with the package, so that `python -m active_sampling.evaluation.stopping` loads it once.
    from active_sampling.evaluation.stopping import round_agreement

    job, setting = data.job, data.job.setting
    initial = initial_labeled_set(data.y_pool, setting.initial_size, np.random.default_rng([job.seed]))
    initial_model = data.fit(initial)
    records = []
    for strategy in job.strategies:
        labeled = list(initial)
        model = initial_model
        random_rng = np.random.default_rng([job.seed, _RANDOM_STREAM])
        previous_probabilities = None
        for round_index in range(setting.rounds + 1):
            if round_index > 0:
                model = data.fit(labeled)
            probabilities = model.predict_proba(data.X_pool)  # agreement with the previous round's model
            records.append({"dataset": job.dataset, "model": job.model, "strategy": strategy, "seed": job.seed,
                            "round": round_index, "labels": len(labeled), **data.score(model),
                            "agreement": round_agreement(previous_probabilities, probabilities, labeled)})
            previous_probabilities = probabilities
            if round_index < setting.rounds:
                labeled += _next_batch(strategy, model, labeled, data, runner, round_index, random_rng)
    return records


def _next_batch(strategy, model, labeled, data, runner, round_index, random_rng) -> List[int]:
    batch_size = data.job.setting.batch_size
    unlabeled = np.setdiff1d(np.arange(len(data.y_pool)), labeled)
    if strategy == RANDOM:
        return [int(i) for i in random_rng.choice(unlabeled, size=batch_size, replace=False)]
    environ = {
        **strategy_environment(strategy),
        "USE_CASE": "active_learning",
        "LABEL_FIELD": LABEL_COLUMN,
        "BATCH_SIZE": str(batch_size),
        "RANDOM_SEED": str(data.job.seed * 1000 + round_index),
    }
    table = prediction_table(model, data.X_pool, known_labels(data.y_pool, labeled))
    selected = runner.select(table, environ, job_type="active_learning_selection")
    chosen = [int(i) for i in selected[ID_COLUMN]]
    _check_selection(chosen, unlabeled, batch_size, f"{data.job.dataset}/{data.job.model}/{strategy}")
    return chosen


def _check_selection(chosen: List[int], unlabeled: np.ndarray, batch_size: int, where: str) -> None:
    if len(chosen) != batch_size or len(set(chosen)) != len(chosen) or not np.isin(chosen, unlabeled).all():
        raise RuntimeError(
            f"{where}: the script selected {len(chosen)} ids ({len(set(chosen))} distinct, "
            f"{int(np.isin(chosen, unlabeled).sum())} unlabeled) for BATCH_SIZE={batch_size}")


def _ssl_study(data: _Data, runner: ScriptRunner) -> List[dict]:
    """Pseudo-label the pool from a model trained on a small random labeled set, then retrain with them."""
    job = data.job
    labeled = initial_labeled_set(data.y_pool, job.setting.ssl_labeled, np.random.default_rng([job.seed, _SSL_STREAM]))
    model = data.fit(labeled)
    baseline = data.score(model)
    table = prediction_table(model, data.X_pool, known_labels(data.y_pool, labeled))
    n_unlabeled = len(data.y_pool) - len(labeled)
    k_per_class = max(1, round(TOP_K_POOL_SHARE * n_unlabeled / data.n_classes))
    records = []
    for method, strategy_env in ssl_methods(job.ssl_thresholds, k_per_class):
        environ = {**strategy_env, "USE_CASE": "ssl", "LABEL_FIELD": LABEL_COLUMN}
        selected = runner.select(table, environ, job_type="ssl_selection")
        ids = selected[ID_COLUMN].to_numpy(dtype=np.int64)
        pseudo = selected[script.PSEUDO_LABEL].to_numpy(dtype=np.int64)
        if np.isin(ids, labeled).any() or len(set(ids.tolist())) != len(ids):
            raise RuntimeError(f"{job.dataset}/{job.model}/{method}: the script selected labeled or duplicate ids")
        if len(ids):
            retrained = data.score(data.fit(labeled + ids.tolist(), np.concatenate([data.y_pool[labeled], pseudo])))
        else:
            retrained = baseline
        records.append({
            "dataset": job.dataset, "model": job.model, "seed": job.seed, "method": method,
            "labeled": len(labeled), "unlabeled": n_unlabeled, "selected": len(ids),
            "coverage": len(ids) / n_unlabeled,
            "precision": float(np.mean(pseudo == data.y_pool[ids])) if len(ids) else float("nan"),
            "accuracy_without": baseline["accuracy"], "accuracy_with": retrained["accuracy"],
            "macro_f1_without": baseline["macro_f1"], "macro_f1_with": retrained["macro_f1"],
        })
    return records
