"""The run summary (log lines, metadata facts) and selection_report.html, against hand computations.

TABLE has 7 candidates and 3 labeled rows; every number asserted below is worked out by hand from it in the
comments. The browser check of the page is tests/report_browser (make test-report).
"""

import logging
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from conftest import prediction_table, write_table

NAN = float("nan")
# id, p0, p1, p2, label: top class and confidence in the comments. r8..r10 are labeled (csv writes 0.0, 2.0).
ROWS = [
    ("r1", 0.96, 0.02, 0.02, NAN),  # 0, 0.96 -> bin 19
    ("r2", 0.85, 0.10, 0.05, NAN),  # 0, 0.85 -> bin 17
    ("r3", 0.12, 0.81, 0.07, NAN),  # 1, 0.81 -> bin 16
    ("r4", 0.05, 0.92, 0.03, NAN),  # 1, 0.92 -> bin 18
    ("r5", 0.30, 0.30, 0.40, NAN),  # 2, 0.40 -> bin 8, margin 0.10
    ("r6", 0.20, 0.25, 0.55, NAN),  # 2, 0.55 -> bin 11, margin 0.30
    ("r7", 0.995, 0.003, 0.002, NAN),  # 0, 0.995 -> bin 19
    ("r8", 0.60, 0.30, 0.10, 0.0),  # guess 0 = label 0
    ("r9", 0.10, 0.70, 0.20, 2.0),  # guess 1 != label 2
    ("r10", 0.05, 0.05, 0.90, 2.0),  # guess 2 = label 2
]
TABLE = pd.DataFrame(ROWS, columns=["id", "prob_class_0", "prob_class_1", "prob_class_2", "label"])
SSL = {"SELECTION_STRATEGY": "confidence_threshold", "USE_CASE": "ssl", "LABEL_FIELD": "label",
       "CONFIDENCE_THRESHOLD": "0.9"}
UNCERTAINTY = {"SELECTION_STRATEGY": "uncertainty", "USE_CASE": "active_learning", "LABEL_FIELD": "label",
               "BATCH_SIZE": "2"}
# candidates' mean confidence: (0.96 + 0.85 + 0.81 + 0.92 + 0.40 + 0.55 + 0.995) / 7 = 5.485 / 7
CANDIDATE_MEAN = 0.783571
HISTOGRAM = [0] * 20
for bin_, count in {8: 1, 11: 1, 16: 1, 17: 1, 18: 1, 19: 2}.items():
    HISTOGRAM[bin_] = count
GENERAL_SETTINGS = {"selection_strategy", "use_case", "id_field", "label_field", "score_field", "score_field_prefix",
                    "output_format", "selection_role", "labeling_format",
                    "stop_agreement", "stop_max_labeled", "stop_max_uncertainty"}  # every run's stopping block


class Marks(HTMLParser):
    """Every start tag of a page with its attributes, the text of each <li>, and whether a script appears."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.items, self._in_item = [], [], False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "li":
            self._in_item = True
            self.items.append("")

    def handle_endtag(self, tag):
        if tag == "li":
            self._in_item = False

    def handle_data(self, data):
        if self._in_item:
            self.items[-1] += data

    def count(self, tag, css_class):
        return sum(1 for name, attrs in self.tags if name == tag and attrs.get("class") == css_class)


def page(run):
    return (run.metadata_dir / "selection_report.html").read_text(encoding="utf-8")


def summary_logged(caplog):
    lines = [record.getMessage() for record in caplog.records]
    start = next(i for i, line in enumerate(lines) if line.startswith("Pool "))
    return lines[start:next(i for i, line in enumerate(lines) if line.startswith("Selection report: "))]


def test_ssl_summary_in_metadata_log_and_page_matches_the_hand_computation(run, caplog):
    write_table(TABLE, run.input_dir)
    with caplog.at_level(logging.INFO):
        metadata = run.main(SSL)
    assert run.selected()["id"].tolist() == ["r7", "r1", "r4"]  # confidence >= 0.9, most confident first
    assert metadata["pool_per_class"] == {"0": 3, "1": 2, "2": 2}
    assert metadata["selected_per_class"] == {"0": 2, "1": 1, "2": 0}
    assert metadata["threshold_coverage"] == {"0.8": 5, "0.9": 3, "0.95": 2, "0.99": 1}
    assert metadata["label_agreement"] == {"compared": 3, "agreeing": 2, "share": 0.666667}
    assert metadata["confidence_mean"] == {"candidates": CANDIDATE_MEAN, "selected": 0.958333}  # 2.875 / 3
    assert metadata["confidence_histogram"] == {"bin_width": 0.05, "candidates": HISTOGRAM,
                                                "selected": [0] * 18 + [1, 2]}
    expected = [
        "Pool 10 rows: 3 labeled, 7 candidates; selected 3 (42.9 % of the candidates)",
        "Per predicted class, share of the selected vs of the candidates: 0: 66.7 % vs 42.9 % (2 vs 3 rows); "
        "1: 33.3 % vs 28.6 % (1 vs 2 rows); 2: 0.0 % vs 28.6 % (0 vs 2 rows)",
        "Candidates at or above a confidence of 0.8: 5 (71.4 %); 0.9: 3 (42.9 %) (CONFIDENCE_THRESHOLD); "
        "0.95: 2 (28.6 %); 0.99: 1 (14.3 %)",
        "The model's guess equals LABEL_FIELD 'label' on 2 of 3 labeled rows (66.7 %); labeled rows are usually "
        "training rows, so this overstates its accuracy on the candidates",
    ]
    assert summary_logged(caplog) == expected
    marks = Marks(page(run))
    assert marks.items == expected
    # class mix: a bar per class each; histogram: a bar per non-empty bin; and the two legends' swatches
    assert marks.count("rect", "pool") == 3 + 6 + 2 and marks.count("rect", "selected") == 3 + 2 + 2
    threshold = [attrs for tag, attrs in marks.tags if tag == "line" and attrs.get("class") == "threshold"]
    assert [(line["x1"], line["x2"]) for line in threshold] == [("590.0", "590.0")]  # 50 + 0.9 * 600
    text = page(run)
    assert "class 0: 3 of 7 candidates (42.9 %)" in text and "class 2: 0 of 3 selected (0.0 %)" in text
    assert "candidate rows with confidence in [0.95, 1.00): 2 (28.6 %)" in text
    assert marks.count("circle", "pool") == 0  # no embeddings read: no projection


def test_active_learning_output_has_the_model_guess_and_the_summary_its_confidence(run, caplog):
    write_table(TABLE, run.input_dir)
    with caplog.at_level(logging.INFO):
        metadata = run.main(UNCERTAINTY)
    selected = run.selected()
    assert selected["id"].tolist() == ["r5", "r6"]  # smallest margins 0.10 and 0.30
    assert selected["predicted_label"].tolist() == [2, 2]
    assert selected["predicted_confidence"].tolist() == [0.40, 0.55]
    assert "pseudo_label" not in selected and "threshold_coverage" not in metadata
    assert metadata["confidence_mean"] == {"candidates": CANDIDATE_MEAN, "selected": 0.475}  # (0.40 + 0.55) / 2
    assert summary_logged(caplog)[-1] == ("Mean confidence (top-class probability): 0.475 on the selected rows vs "
                                          "0.784 on the candidates")
    assert set(metadata["config"]) == GENERAL_SETTINGS | {"batch_size", "uncertainty_mode"}


@pytest.mark.parametrize("strategy, own", [
    ("confidence_threshold", {"confidence_threshold", "max_samples"}),
    ("top_k_per_class", {"k_per_class"}),
    ("uncertainty", {"uncertainty_mode", "batch_size"}),
    ("diversity", {"metric", "random_seed", "diversity_method", "uncertainty_prefilter", "uncertainty_mode",
                   "batch_size", "embedding_field_prefix"}),
    ("hybrid", {"metric", "random_seed", "diversity_method", "uncertainty_prefilter", "uncertainty_mode",
                "batch_size", "embedding_field_prefix"}),
    ("badge", {"metric", "random_seed", "batch_size", "embedding_field_prefix"}),
])
def test_metadata_lists_only_the_settings_the_strategy_read(script, strategy, own):
    config = script.parse_environment({"SELECTION_STRATEGY": strategy})
    assert set(script.settings_read(config)) == GENERAL_SETTINGS | own
    sharded = config._replace(selection_role="shard", labeling_format="label_studio", labeling_data_field="text")
    extra = {"oversampling", "resource_config_path", "labeling_data_field"}
    assert set(script.settings_read(sharded)) == GENERAL_SETTINGS | own | extra


def test_labels_compare_by_value_in_any_spelling(script):
    texts = script.label_texts(pd.Series(["3.0", " 3", "03", "cat", "3.5", "1e20"], dtype=object))
    assert texts.tolist() == ["3", "3", "3", "cat", "3.5", "1e20"]
    assert script.label_texts(pd.Series([2.0, 7.0])).tolist() == ["2", "7"]


def test_embedding_strategy_page_draws_the_projection_of_candidates_picks_and_labeled_rows(run, script):
    table = prediction_table(n=120, dim=5, labeled_fraction=0.25, seed=4)
    write_table(table, run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "diversity", "LABEL_FIELD": "label", "BATCH_SIZE": "7"})
    labeled = int(table["label"].notna().sum())
    marks = Marks(page(run))
    assert marks.count("circle", "pool") == 120 - labeled == metadata["candidate_count"]
    assert marks.count("circle", "labeled") == labeled and marks.count("circle", "selected") == 7
    assert "{} of {} candidates, 7 of 7 selected".format(120 - labeled, 120 - labeled) in page(run)


def test_projection_is_the_principal_component_projection(script):
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(5)
    vectors = (rng.normal(size=(300, 6)) * [5, 3, 1, 0.5, 0.2, 0.1]).astype(np.float32)
    labeled = rng.random(300) < 0.2
    picks = np.flatnonzero(~labeled)[:9]
    drawing = script.projection(vectors, labeled, picks)
    reference = decomposition.PCA(n_components=2).fit(vectors[~labeled].astype(np.float64))
    for name, rows in (("candidates", ~labeled), ("picks", picks), ("labeled", labeled)):
        expected = reference.transform(vectors[rows].astype(np.float64))
        signs = np.sign((drawing[name] * expected).sum(axis=0))  # a component's sign is arbitrary
        np.testing.assert_allclose(drawing[name] * signs, expected, atol=1e-6)
    spread = np.concatenate([[30.0, 20.0], np.linspace(5.0, 0.1, 598)])
    wide = rng.normal(size=(400, 600)) * spread  # more than 512 wide: the subspace-iteration path
    wide_drawing = script.projection(wide, np.zeros(400, dtype=bool), np.arange(3))
    wide_reference = decomposition.PCA(n_components=2).fit_transform(wide)
    signs = np.sign((wide_drawing["candidates"] * wide_reference).sum(axis=0))
    np.testing.assert_allclose(wide_drawing["candidates"] * signs, wide_reference, rtol=1e-3, atol=1e-3)


def test_page_stays_small_and_escaped_for_a_huge_pool_with_many_classes(script):
    rng = np.random.default_rng(6)
    classes = ["<script>alert({})</script>".format(i) for i in range(1000)]
    probabilities = rng.random((20000, len(classes))) ** 8
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labeled = rng.random(20000) < 0.1
    facts = script.pool_facts(probabilities, labeled, classes, None, ())
    chosen = probabilities[np.flatnonzero(~labeled)[:5000]]
    metadata = {"strategy": "badge", "use_case": "active_learning", "job_type": "x", "timestamp": "t",
                "config": {"label_field": None}, "pool_size": 20000, "labeled_count": int(labeled.sum()),
                "candidate_count": int((~labeled).sum()), "selected_count": 5000,
                "selected_per_class": dict(zip(map(str, classes), np.bincount(chosen.argmax(axis=1),
                                                                              minlength=1000).tolist())),
                **script.summary_fields(facts, chosen, "active_learning")}
    vectors = rng.normal(size=(20000, 64)).astype(np.float32)
    text = script.selection_report_html(metadata, script.projection(vectors, labeled, np.arange(5000)))
    assert len(text.encode("utf-8")) < 1_000_000
    assert "<script" not in text and "&lt;script&gt;alert(" in text
    assert not re.search(r"\b(src|href)=", text)  # nothing is fetched
    marks = Marks(text)
    assert marks.count("circle", "pool") == marks.count("circle", "selected") == 2000
    assert "The 40 largest of 1000 predicted classes are drawn." in text
    assert math.isclose(sum(facts["confidence_histogram"]), (~labeled).sum())
