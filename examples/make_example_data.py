"""Build the example prediction table committed under examples/data/.

A small multilayer perceptron is trained on ten labeled rows per class of scikit-learn's digits (8x8 images,
1797 rows) and scores all rows, as a model-inference step would before ActiveSampleSelection runs:

* ``id``                         string id ``digit-0000`` .. ``digit-1796`` (row order of ``load_digits``)
* ``pix_0`` .. ``pix_63``        the 64 pixel intensities (0..16), i.e. the model's input features
* ``prob_class_0`` .. ``_9``     the model's predicted probabilities (rounded to 4 decimals)
* ``emb_0`` .. ``emb_31``        the model's hidden-layer activations tanh(X W1 + b1), computed from the fitted
                                 ``coefs_``/``intercepts_`` on the scaled input (rounded to 3 decimals)
* ``label``                      the digit for the labeled rows the model was trained on, empty for all others

The true digit of every row is written separately to ``digits_truth.csv`` so the demo can measure the
precision of pseudo-labels without leaking the truth of unlabeled rows into the prediction table.

Deterministic (fixed seeds); run ``python examples/make_example_data.py`` to regenerate.
"""

from pathlib import Path
from typing import Tuple

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

DATA_DIR = Path(__file__).resolve().parent / "data"
PREDICTIONS_PATH = DATA_DIR / "digits_predictions" / "predictions.csv"
TRUTH_PATH = DATA_DIR / "digits_truth.csv"

LABELED_PER_CLASS = 10
HIDDEN_UNITS = 32
SEED = 0
PROBABILITY_DECIMALS = 4
EMBEDDING_DECIMALS = 3
PIXEL_SCALE = 16.0


def choose_labeled_rows(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` rows drawn at random from every class, sorted."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == cls), size=per_class, replace=False) for cls in np.unique(y)]
    return np.sort(np.concatenate(picks))


def hidden_activations(model: MLPClassifier, X: np.ndarray) -> np.ndarray:
    """Output of the (tanh) hidden layer: the representation the output layer is linear in."""
    return np.tanh(X @ model.coefs_[0] + model.intercepts_[0])


def build_tables() -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Return (prediction table, truth table) exactly as they are written to disk."""
    digits = load_digits()
    X_pixels = digits.data.astype(np.int64)
    y = digits.target.astype(np.int64)
    X = X_pixels / PIXEL_SCALE
    labeled = choose_labeled_rows(y, LABELED_PER_CLASS, SEED)

    model = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        activation="tanh",
        solver="lbfgs",
        alpha=0.1,
        max_iter=500,
        random_state=SEED,
    )
    model.fit(X[labeled], y[labeled])
    probabilities = model.predict_proba(X)
    embeddings = hidden_activations(model, X)

    ids = [f"digit-{i:04d}" for i in range(len(y))]
    columns = {"id": ids}
    columns.update({f"pix_{j}": X_pixels[:, j] for j in range(X_pixels.shape[1])})
    columns.update(
        {f"prob_class_{cls}": np.round(probabilities[:, k], PROBABILITY_DECIMALS) for k, cls in enumerate(model.classes_)}
    )
    columns.update({f"emb_{j}": np.round(embeddings[:, j], EMBEDDING_DECIMALS) for j in range(embeddings.shape[1])})
    label = pd.Series(pd.NA, index=range(len(y)), dtype="Int64")
    label.iloc[labeled] = y[labeled]
    columns["label"] = label
    predictions = pd.DataFrame(columns)
    truth = pd.DataFrame({"id": ids, "label": y})
    return predictions, truth


def main() -> None:
    predictions, truth = build_tables()
    PREDICTIONS_PATH.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(PREDICTIONS_PATH, index=False)
    truth.to_csv(TRUTH_PATH, index=False)
    print(f"wrote {PREDICTIONS_PATH} ({PREDICTIONS_PATH.stat().st_size / 1e6:.2f} MB, {len(predictions)} rows)")
    print(f"wrote {TRUTH_PATH}")


if __name__ == "__main__":
    main()
