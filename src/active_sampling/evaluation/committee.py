"""Query by committee in the simulation: where the members' probability columns come from.

A pipeline that runs ``SELECTION_STRATEGY=committee`` already has its committee: k-fold or bagged models,
or stochastic passes of one network, each writing its own probability columns. The harness builds two:

* **bagged**: ``BAGGED_MEMBERS`` copies of the round's model, each trained on a bootstrap resample of the
  labeled rows drawn within each class (so every member sees every class it can predict), with its own
  model seed. This is the committee of Seung et al. / Abe & Mamitsuka's query by bagging.
* **dropout**: ``DROPOUT_PASSES`` forward passes of the round's MLP with a fresh Bernoulli mask (rate
  ``DROPOUT_RATE``, inverted scaling) on its hidden layer. scikit-learn's ``MLPClassifier`` cannot train
  with dropout, so this is test-time dropout on a network trained without it: a perturbation committee
  of one model, not the approximate Bayesian posterior of MC dropout (Gal & Ghahramani 2016), which needs
  the same dropout during training. Only models that expose ``hidden_passes`` (the MLP) run it.

The round's own model (trained on all labeled rows) is still the one scored on the test set and the one
whose ``prob_class_*`` the table carries; the committee only decides which rows to label.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from active_sampling.evaluation.models import FittedModel, fit_model

BAGGED_MEMBERS = 5
DROPOUT_PASSES = 10
DROPOUT_RATE = 0.2
MEMBER_PREFIX = "m{}_prob_class_"
_BOOTSTRAP_STREAM = 3
_DROPOUT_STREAM = 4

# Harness name -> (how the members are built, the script's DISAGREEMENT).
COMMITTEES: Dict[str, Tuple[str, str]] = {
    "committee_bagged": ("bagged", "bald"),
    "committee_bagged_vote": ("bagged", "vote_entropy"),
    "committee_dropout": ("dropout", "bald"),
}
# Committees that need something only some models have.
COMMITTEE_MODELS: Dict[str, Tuple[str, ...]] = {"committee_dropout": ("mlp",)}


def committee_environment(name: str) -> Dict[str, str]:
    """The script's environment for a committee (COMMITTEE_PREFIXES comes with the members' table)."""
    return {"SELECTION_STRATEGY": "committee", "DISAGREEMENT": COMMITTEES[name][1]}


def runs_with(strategy: str, model: str) -> bool:
    """Whether the harness strategy can run with ``model`` (test-time dropout needs the MLP)."""
    return model in COMMITTEE_MODELS.get(strategy, (model,))


def stratified_bootstrap(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of a bootstrap resample of ``y`` drawn with replacement within each class (same class counts)."""
    picks = [rng.choice(np.flatnonzero(y == label), size=int((y == label).sum()), replace=True)
             for label in np.unique(y)]
    return np.sort(np.concatenate(picks))


def bagged_members(model_name: str, X: np.ndarray, y: np.ndarray, X_pool: np.ndarray, n_classes: int,
                   rng: np.random.Generator, n_members: int = BAGGED_MEMBERS) -> np.ndarray:
    """(n_members, n_pool, n_classes) probabilities of models trained on stratified bootstrap resamples."""
    members = []
    for _ in range(n_members):
        rows = stratified_bootstrap(y, rng)
        member = fit_model(model_name, X[rows], y[rows], X_pool, n_classes, int(rng.integers(2**31 - 1)))
        members.append(member.predict_proba(X_pool))
    return np.stack(members)


def dropout_members(model: FittedModel, X_pool: np.ndarray, rng: np.random.Generator,
                    n_passes: int = DROPOUT_PASSES, rate: float = DROPOUT_RATE) -> np.ndarray:
    """(n_passes, n_pool, n_classes) probabilities of test-time dropout passes of ``model``."""
    if model.hidden_passes is None:
        raise ValueError("this model has no hidden layer to drop units of: the dropout committee needs the mlp")
    return np.stack([model.hidden_passes(X_pool, rng, rate) for _ in range(n_passes)])


def committee_members(name: str, model_name: str, model: FittedModel, X: np.ndarray, y: np.ndarray,
                      X_pool: np.ndarray, n_classes: int, seed: Sequence[int]) -> np.ndarray:
    """The members of committee ``name`` for one round; ``seed`` fixes the resamples or masks."""
    kind = COMMITTEES[name][0]
    if kind == "bagged":
        return bagged_members(model_name, X, y, X_pool, n_classes, np.random.default_rng([*seed, _BOOTSTRAP_STREAM]))
    return dropout_members(model, X_pool, np.random.default_rng([*seed, _DROPOUT_STREAM]))


def with_members(table: pd.DataFrame, members: np.ndarray) -> Tuple[pd.DataFrame, str]:
    """``table`` with member j's probabilities as ``m<j>_prob_class_<k>``, and the COMMITTEE_PREFIXES value."""
    prefixes: List[str] = [MEMBER_PREFIX.format(j) for j in range(members.shape[0])]
    columns = {f"{prefix}{k}": members[j][:, k] for j, prefix in enumerate(prefixes)
               for k in range(members.shape[2])}
    return pd.concat([table, pd.DataFrame(columns, index=table.index)], axis=1), ",".join(prefixes)
