"""The label-review study of make evaluate: its noise injection, its section of docs/evaluation.md, a tiny run."""

import numpy as np

from active_sampling.evaluation import label_review


def test_flip_labels_moves_the_share_asked_to_another_class():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 40)
    noisy = label_review.flip_labels(y, 0.2, 5, rng)
    assert (noisy != y).sum() == 40 and noisy.min() >= 0 and noisy.max() <= 4


def test_the_section_is_replaced_in_place_or_appended():
    text = "# Title\n\nbefore\n"
    first = label_review.replace_section(text, label_review.SECTION_START + "\nold\n" + label_review.SECTION_END)
    assert first.startswith(text.rstrip("\n")) and first.count(label_review.SECTION_START) == 1
    second = label_review.replace_section(first + "after\n", label_review.SECTION_START + "\nnew\n"
                                          + label_review.SECTION_END)
    assert "old" not in second and "new" in second and second.endswith("after\n") and "before" in second


def test_a_tiny_study_finds_flipped_labels_better_than_random(tmp_path):
    results = label_review.run_study(datasets=("wine",), noise_rates=(0.2,), seeds=1, progress=lambda message: None)
    full = results[results["budget"] == 1.0].set_index("method")
    assert full.loc["confident_learning", "precision"] > full.loc["random", "precision"] + 0.3
    assert full.loc["self_confidence", "recall"] > 0.5
    path = label_review.write_section(tmp_path / "evaluation.md", results, "the command", 1.0)
    text = path.read_text()
    assert "the command" in text and "| wine | 20% |" in text
