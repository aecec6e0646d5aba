"""The catalogue of bad inputs: each fails with one clear line, _FAILURE, exit 1 and no result files.

docs/errors.md lists this catalogue; test_docs_list_every_case keeps the two in step.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import COMMITTEE_PREFIXES, prediction_table, with_committee, write_table

BASE_ENV = {"SELECTION_STRATEGY": "uncertainty"}


def table_input(table=None, fmt="csv", **env):
    def setup(run):
        write_table(prediction_table(n=20) if table is None else table, run.input_dir, fmt)
        return dict(BASE_ENV, **env)
    return setup


def with_column(**columns):
    table = prediction_table(n=20)
    for name, values in columns.items():
        table[name] = values
    return table


def nan_in_score():
    table = prediction_table(n=20)
    table.loc[[3, 7], "prob_class_1"] = np.nan
    return table


def inf_in_embedding():
    table = prediction_table(n=20)
    table.loc[4, "emb_2"] = np.inf
    return table


def texts(*values):
    """A prediction table whose ``text`` column repeats ``values`` (the column annotators see)."""
    return with_column(text=[values[i % len(values)] for i in range(20)])


LABEL_STUDIO = {"LABELING_FORMAT": "label_studio", "LABELING_DATA_FIELD": "text"}
GROUND_TRUTH = {"LABELING_FORMAT": "ground_truth", "LABELING_DATA_FIELD": "text"}


def missing_folder(run):
    run.input_dir.rmdir()
    return dict(BASE_ENV)


def only_markers(run):
    (run.input_dir / "_SUCCESS").write_text("")
    (run.input_dir / ".readme.txt").write_text("no data here")
    return dict(BASE_ENV)


def header_only(run):
    write_table(prediction_table(n=20).iloc[:0], run.input_dir)
    return dict(BASE_ENV)


def different_columns(run):
    table = prediction_table(n=20)
    write_table(table.iloc[:10], run.input_dir, name="part-0")
    write_table(table.iloc[10:].drop(columns=["feature_a"]), run.input_dir, name="part-1")
    return dict(BASE_ENV)


def mixed_formats(run):
    table = prediction_table(n=20)
    write_table(table.iloc[:10], run.input_dir, "csv", name="part-0")
    write_table(table.iloc[10:], run.input_dir, "parquet", name="part-1")
    return dict(BASE_ENV)


def corrupt_parquet(run):
    (run.input_dir / "predictions.parquet").write_bytes(b"this is not parquet")
    return dict(BASE_ENV)


def duplicated_ids():
    table = prediction_table(n=20)
    table.loc[5, "id"] = table.loc[6, "id"]
    return table


def empty_id():
    table = prediction_table(n=20)
    table.loc[2, "id"] = None
    return table


def all_labeled():
    table = prediction_table(n=20)
    table["label"] = "cat"
    return table


def no_vectors():
    table = prediction_table(n=20, dim=0).drop(columns=["feature_a"])
    table["label"] = None
    return table


def outputs_around_input(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.samples_dir = run.root
    return dict(BASE_ENV)


def output_is_input(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.samples_dir = run.input_dir
    return dict(BASE_ENV)


def output_in_input_with_data(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.samples_dir = run.input_dir / "selected"
    write_table(prediction_table(n=5, seed=1), run.samples_dir, name="part-1")
    return dict(BASE_ENV)


def outputs_in_one_folder(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.metadata_dir = run.samples_dir
    return dict(BASE_ENV)


def mistyped_flag(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.extra_args = ["--jobtype", "ssl_selection"]
    return dict(BASE_ENV)


def with_previous(previous, **env):
    """The usual table as evaluation_data and ``previous`` as previous_predictions (None: a missing folder)."""
    def setup(run):
        write_table(prediction_table(n=20), run.input_dir)
        folder = run.root / "previous"
        if previous is not None:
            write_table(previous, folder)
        run.extra_args = ["--previous_predictions", str(folder)]
        return dict(BASE_ENV, **env)
    return setup


def previous_with_duplicates():
    table = prediction_table(n=20)
    table.loc[5, "id"] = table.loc[4, "id"]
    return table


def csv_text(text):
    def setup(run):
        (run.input_dir / "predictions.csv").write_text(text)
        return dict(BASE_ENV)
    return setup


def parquet_parts(first, second):
    def setup(run):
        table = prediction_table(n=20)
        write_table(first(table.iloc[:10]), run.input_dir, "parquet", name="part-0")
        write_table(second(table.iloc[10:]), run.input_dir, "parquet", name="part-1")
        return dict(BASE_ENV)
    return setup


def csv_and_parquet_ids(run):
    table = prediction_table(n=20)
    write_table(table.iloc[:10], run.input_dir, "csv", name="part-0")
    write_table(table.iloc[10:].assign(id=np.arange(10)), run.input_dir, "parquet", name="part-1")
    return dict(BASE_ENV, OUTPUT_FORMAT="csv")


def broken_link(run):
    write_table(prediction_table(n=20), run.input_dir)
    (run.input_dir / "part-1.csv").symlink_to(run.root / "missing.csv")
    return dict(BASE_ENV)


def link_into_output(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.samples_dir.mkdir(parents=True)
    (run.input_dir / "more").symlink_to(run.samples_dir, target_is_directory=True)
    return dict(BASE_ENV)


def bz2_part(run):
    write_table(prediction_table(n=20), run.input_dir)
    (run.input_dir / "part-1.csv.bz2").write_bytes(b"BZh9")
    return dict(BASE_ENV)


def one_logit_row():
    table = prediction_table(n=20)
    table.loc[4, ["prob_class_0", "prob_class_1", "prob_class_2"]] = [2.5, -1.0, 0.3]
    return table


def one_class_twice():
    table = prediction_table(n=20)
    return table.rename(columns={"prob_class_2": "prob_class_01"})


def beside_a_table(name, text):
    def setup(run):
        write_table(prediction_table(n=20), run.input_dir)
        target = run.input_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return dict(BASE_ENV)
    return setup


def file_only(name, text, **env):
    def setup(run):
        (run.input_dir / name).write_text(text)
        return dict(BASE_ENV, **env)
    return setup


def parquet_table(table, **env):
    def setup(run):
        import pyarrow.parquet as pq

        pq.write_table(table, str(run.input_dir / "predictions.parquet"))
        return dict(BASE_ENV, **env)
    return setup


def with_arrays(embeddings):
    import pyarrow as pa

    table = pa.Table.from_pandas(prediction_table(n=4, dim=0).drop(columns=["label"]), preserve_index=False)
    return table.append_column("embedding", pa.array(embeddings, type=pa.list_(pa.float32())))


HEADERLESS = "a,0.2,0.8\nb,0.5,0.5\n"
DIVERSITY = {"SELECTION_STRATEGY": "diversity"}


def committee_table(**cell_in_row_5):
    """A prediction table with three committee members; ``cell_in_row_5`` sets one cell of row 5 per column."""
    table = with_committee(prediction_table(n=20))
    for name, value in cell_in_row_5.items():
        table.loc[5, name] = value
    return table


def committee(prefixes=COMMITTEE_PREFIXES):
    return {"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": prefixes}


# (case id, what is wrong, setup, words the one-line message must contain)
CATALOGUE = [
    ("strategy-missing", "SELECTION_STRATEGY unset",
     table_input(SELECTION_STRATEGY=""), "SELECTION_STRATEGY is required"),
    ("strategy-unknown", "SELECTION_STRATEGY not a known strategy",
     table_input(SELECTION_STRATEGY="random"), "SELECTION_STRATEGY='random' is not allowed"),
    ("ssl-with-uncertainty", "USE_CASE=ssl with an active-learning strategy",
     table_input(USE_CASE="ssl"), "noisy pseudo-labels"),
    ("al-with-confidence", "USE_CASE=active_learning with an SSL strategy",
     table_input(USE_CASE="active_learning", SELECTION_STRATEGY="confidence_threshold"), "wastes human labeling"),
    ("use-case-unknown", "USE_CASE not ssl, active_learning or auto",
     table_input(USE_CASE="semi"), "USE_CASE='semi' is not allowed"),
    ("threshold-above-one", "CONFIDENCE_THRESHOLD=1.5",
     table_input(CONFIDENCE_THRESHOLD="1.5"), "CONFIDENCE_THRESHOLD='1.5' is out of range"),
    ("threshold-not-a-number", "CONFIDENCE_THRESHOLD=high",
     table_input(CONFIDENCE_THRESHOLD="high"), "CONFIDENCE_THRESHOLD='high' is not valid"),
    ("threshold-nan", "CONFIDENCE_THRESHOLD=nan",
     table_input(CONFIDENCE_THRESHOLD="nan"), "CONFIDENCE_THRESHOLD='nan' is out of range"),
    ("batch-size-zero", "BATCH_SIZE=0",
     table_input(BATCH_SIZE="0"), "BATCH_SIZE='0' is out of range: expected an integer >= 1"),
    ("batch-size-fraction", "BATCH_SIZE=2.5",
     table_input(BATCH_SIZE="2.5"), "BATCH_SIZE='2.5' is not valid"),
    ("k-per-class-negative", "K_PER_CLASS=-1",
     table_input(K_PER_CLASS="-1"), "K_PER_CLASS='-1' is out of range"),
    ("max-samples-negative", "MAX_SAMPLES=-3",
     table_input(MAX_SAMPLES="-3"), "MAX_SAMPLES='-3' is out of range"),
    ("uncertainty-mode-unknown", "UNCERTAINTY_MODE=variance",
     table_input(UNCERTAINTY_MODE="variance"), "UNCERTAINTY_MODE='variance' is not allowed"),
    ("metric-unknown", "METRIC=manhattan",
     table_input(METRIC="manhattan"), "METRIC='manhattan' is not allowed"),
    ("output-format-unknown", "OUTPUT_FORMAT=xlsx",
     table_input(OUTPUT_FORMAT="xlsx"), "OUTPUT_FORMAT='xlsx' is not allowed"),
    ("seed-negative", "RANDOM_SEED=-1",
     table_input(RANDOM_SEED="-1"), "RANDOM_SEED='-1' is out of range"),
    ("input-folder-missing", "the evaluation_data folder does not exist",
     missing_folder, "does not exist"),
    ("no-data-files", "the folder holds only _SUCCESS and a hidden file",
     only_markers, "no data files"),
    ("no-rows", "a CSV with a header and no rows",
     header_only, "has no rows"),
    ("columns-differ", "two part files with different columns",
     different_columns, "files have different columns"),
    ("mixed-formats", "csv and parquet parts with OUTPUT_FORMAT unset",
     mixed_formats, "set OUTPUT_FORMAT"),
    ("corrupt-parquet", "a .parquet file that is not parquet",
     corrupt_parquet, "cannot read"),
    ("id-column-missing", "ID_FIELD names a column that is not there",
     table_input(ID_FIELD="sample_id"), "ID_FIELD column 'sample_id' not found"),
    ("duplicate-ids", "two rows share an id",
     table_input(duplicated_ids()), "duplicate ids"),
    ("empty-id", "a row without an id",
     table_input(empty_id()), "ID_FIELD column 'id' is empty in 1 row(s)"),
    ("no-score-columns", "no prob_class_* nor known score columns",
     table_input(SCORE_FIELD_PREFIX="p_"), "no score columns found"),
    ("score-field-missing", "SCORE_FIELD names a column that is not there",
     table_input(SCORE_FIELD="model_score"), "SCORE_FIELD column 'model_score' not found"),
    ("score-not-numeric", "a score column holding text",
     table_input(with_column(prob_class_1=["high"] * 20)), "column 'prob_class_1' must hold numbers, but row 1 of"),
    ("score-nan", "NaN in a probability column",
     table_input(nan_in_score()), "column 'prob_class_1' (2 rows)"),
    ("embedding-inf", "inf in an embedding column",
     table_input(inf_in_embedding(), SELECTION_STRATEGY="diversity"), "column 'emb_2' (1 rows)"),
    ("label-column-missing", "LABEL_FIELD names a column that is not there",
     table_input(LABEL_FIELD="truth"), "LABEL_FIELD column 'truth' not found"),
    ("all-rows-labeled", "every row already has a label",
     table_input(all_labeled(), LABEL_FIELD="label"), "no candidate rows"),
    ("no-embeddings", "diversity without emb_* or numeric feature columns",
     table_input(no_vectors(), SELECTION_STRATEGY="diversity", LABEL_FIELD="label"), "need embeddings"),
    ("output-column-clash", "the input already has a selection_score column",
     table_input(with_column(selection_score=1.0)), "already has column(s) selection_score"),
    ("outputs-overlap-input", "an output folder contains the input folder",
     outputs_around_input, "overlaps the input folder"),
    ("output-is-input", "an output folder is the input folder",
     output_is_input, "it is the input folder"),
    ("output-in-input-holds-data", "an output folder inside the input holds a data file",
     output_in_input_with_data, "holds part-1.csv, which no _SUCCESS of this step lists"),
    ("outputs-same-folder", "both output channels point at one folder",
     outputs_in_one_folder, "are the same folder"),
    ("bad-command-line", "a mistyped flag (--jobtype)",
     mistyped_flag, "bad command line: unrecognized arguments: --jobtype"),
    ("csv-duplicate-header", "a CSV header names prob_class_1 twice",
     csv_text("id,prob_class_0,prob_class_1,prob_class_1\na,0.5,0.5,0.5\n"), "duplicate column name(s) prob_class_1"),
    ("csv-blank-header", "a CSV written with its pandas index (first header cell empty)",
     csv_text(",id,prob_class_0,prob_class_1\n0,a,0.5,0.5\n"), "column 1 of the header has no name"),
    ("csv-trailing-separator", "data rows end with a comma, the header does not",
     csv_text("id,prob_class_0,prob_class_1\na,0.5,0.5,\n"), "the first data row has 4 fields but the header has 3"),
    ("csv-extra-field", "a later row has one field too many",
     csv_text("id,prob_class_0,prob_class_1\na,0.5,0.5\nb,0.5,0.5,x\n"), "saw 4"),
    ("blank-id", "an id that is only spaces",
     csv_text("id,prob_class_0,prob_class_1\na,0.5,0.5\n  ,0.5,0.5\n"), "is empty in 1 row(s), e.g. row 2"),
    ("parts-id-types-differ", "integer ids in one parquet part, text ids in another",
     parquet_parts(lambda part: part.assign(id=np.arange(10)), lambda part: part), "column 'id' is integer in"),
    ("parts-column-types-differ", "a column numeric in one parquet part, text in another",
     parquet_parts(lambda part: part, lambda part: part.assign(feature_a="high")), "column 'feature_a' is float in"),
    ("csv-parquet-id-types-differ", "text ids in a CSV part, integer ids in a parquet part",
     csv_and_parquet_ids, "csv cells are text"),
    ("broken-link", "a part file that is a link to nothing",
     broken_link, "a broken link"),
    ("input-links-to-output", "the input folder links into an output folder",
     link_into_output, "leads to the output folder"),
    ("unreadable-compression", "a part compressed with bzip2",
     bz2_part, "a table in a form this step does not read"),
    ("not-a-table", "a text file beside the data",
     beside_a_table("notes.txt", "hello"), "not a table this step reads"),
    ("underscore-folder", "Spark's _temporary folder in the input",
     beside_a_table("_temporary/0/part-1.csv", "id\n"), "a folder whose name starts with _"),
    ("json-document", "a .json file holding one JSON array, not JSON Lines",
     file_only("predictions.json", '[{"id": "a"}]'), "is not JSON Lines"),
    ("csv-without-header", "Batch Transform CSV output (no header) and CSV_COLUMNS unset",
     file_only("part-0.csv.out", HEADERLESS), "set CSV_COLUMNS to the column names"),
    ("csv-columns-count", "CSV_COLUMNS names fewer columns than the lines have",
     file_only("part-0.csv.out", HEADERLESS, CSV_COLUMNS="id,prob_class_0"), "but CSV_COLUMNS names 2 columns"),
    ("csv-columns-repeated", "CSV_COLUMNS names a column twice",
     file_only("part-0.csv.out", HEADERLESS, CSV_COLUMNS="id,p,p"), "CSV_COLUMNS names p more than once"),
    ("lone-class-column", "prob_class_0 is the only score column",
     table_input(prediction_table(n=20, n_classes=1)), "is the only column starting with SCORE_FIELD_PREFIX"),
    ("array-column-not-named", "diversity on a table with an array column and EMBEDDING_FIELD unset",
     parquet_table(with_arrays([[0.0, 1.0]] * 4), **DIVERSITY), "set EMBEDDING_FIELD=embedding"),
    ("embedding-field-not-array", "EMBEDDING_FIELD names a column of numbers",
     table_input(SELECTION_STRATEGY="diversity", EMBEDDING_FIELD="feature_a"), "does not hold arrays"),
    ("ragged-arrays", "embedding arrays of different lengths",
     parquet_table(with_arrays([[0.0, 1.0], [0.0, 1.0], [0.0], [1.0, 1.0]]), EMBEDDING_FIELD="embedding",
                   **DIVERSITY), "holds arrays of different lengths: row 1 has 2 values, row 3 has 1"),
    ("embedding-field-and-features", "EMBEDDING_FIELD and FEATURE_COLUMNS both set",
     table_input(SELECTION_STRATEGY="diversity", EMBEDDING_FIELD="e", FEATURE_COLUMNS="feature_a"),
     "both choose the embeddings"),
    ("feature-column-missing", "FEATURE_COLUMNS names a column that is not there",
     table_input(SELECTION_STRATEGY="diversity", FEATURE_COLUMNS="feature_a,f9"), "FEATURE_COLUMNS column 'f9'"),
    ("mixed-scores", "one row of logits in a table of probabilities",
     table_input(one_logit_row()), "mix probabilities and other scores: 19 of 20 rows"),
    ("single-score-mixed", "one value of 1.2 in a single probability column",
     table_input(pd.DataFrame({"id": ["r{}".format(i) for i in range(20)],
                               "prediction_score": [0.5] * 7 + [1.2] + [0.5] * 12})),
     "1 do not, e.g. row 8: 1.2"),
    ("percent-scores", "probabilities given in percent",
     table_input(with_column(prob_class_0=[50.0] * 20, prob_class_1=[30.0] * 20, prob_class_2=[20.0] * 20)),
     "look like percentages"),
    ("one-class-twice", "prob_class_01 and prob_class_1 both name class 1",
     table_input(one_class_twice()), "both name class 1"),
    ("labeling-format-unknown", "LABELING_FORMAT=cvat",
     table_input(texts("a"), LABELING_FORMAT="cvat"), "LABELING_FORMAT='cvat' is not allowed"),
    ("labeling-field-unset", "LABELING_FORMAT set without LABELING_DATA_FIELD",
     table_input(texts("a"), LABELING_FORMAT="label_studio"), "needs LABELING_DATA_FIELD=<column>"),
    ("labeling-field-without-format", "LABELING_DATA_FIELD set with LABELING_FORMAT unset",
     table_input(texts("a"), LABELING_DATA_FIELD="text"), "is set but LABELING_FORMAT=none"),
    ("labeling-with-ssl-strategy", "labeling tasks asked of an SSL strategy",
     table_input(texts("a"), SELECTION_STRATEGY="confidence_threshold", **GROUND_TRUTH),
     "LABELING_FORMAT=ground_truth is not allowed with SELECTION_STRATEGY=confidence_threshold"),
    ("labeling-field-missing", "LABELING_DATA_FIELD names a column that is not there",
     table_input(**GROUND_TRUTH), "LABELING_DATA_FIELD column 'text' not found"),
    ("label-studio-field-name", "LABELING_DATA_FIELD not usable as a Label Studio $variable",
     table_input(with_column(**{"the text": "a"}), LABELING_FORMAT="label_studio", LABELING_DATA_FIELD="the text"),
     "cannot be a Label Studio variable"),
    ("ground-truth-reserved-id", "ID_FIELD=source with LABELING_FORMAT=ground_truth",
     table_input(texts("a"), ID_FIELD="source", **GROUND_TRUTH), "ID_FIELD='source' cannot be a Ground Truth"),
    ("labeling-text-empty", "a selected row without a text to show",
     table_input(texts(np.nan), **LABEL_STUDIO), "LABELING_DATA_FIELD column 'text' is empty in the selected row 1"),
    ("labeling-text-number", "the shown column of a parquet table holds numbers",
     table_input(texts(1.5), fmt="parquet", **LABEL_STUDIO), "holds the number 1.5 in the selected row 1"),
    ("labeling-texts-and-uris", "the shown column mixes texts and URIs",
     table_input(texts("a text", "s3://bucket/object.txt"), **GROUND_TRUTH), "mixes texts and URIs"),
    ("labeling-uri-scheme", "an ftp:// URI",
     table_input(texts("ftp://host/object.png"), **LABEL_STUDIO), "expected s3:// or https://"),
    ("ground-truth-https", "Ground Truth given https:// URIs",
     table_input(texts("https://example.com/a.png"), **GROUND_TRUTH), "Ground Truth reads objects from S3 only"),
    ("ground-truth-bad-bucket", "an s3:// URI whose bucket is not a bucket name",
     table_input(texts("s3://My_Bucket/a.png"), **GROUND_TRUTH), "is not an s3://bucket/key URI"),
    ("ground-truth-text-too-long", "a text over Ground Truth's 20,000 characters",
     table_input(texts("x" * 20001), **GROUND_TRUTH), "has 20001 characters; Ground Truth accepts at most 20000"),
    ("previous-other-classes", "previous_predictions scores other classes than evaluation_data",
     with_previous(prediction_table(n=20, n_classes=2)), "previous_predictions scores the classes ['0', '1'] but"),
    ("previous-folder-missing", "--previous_predictions names a folder that does not exist",
     with_previous(None), "(previous_predictions) does not exist"),
    ("previous-duplicate-ids", "two rows of previous_predictions share an id",
     with_previous(previous_with_duplicates()), "/previous: ID_FIELD column 'id' has 2 row(s) with duplicate ids"),
    ("previous-given-to-merge", "previous_predictions given to SELECTION_ROLE=merge",
     with_previous(prediction_table(n=20), SELECTION_ROLE="merge"), "give it to the shard step, not to the merge"),
    ("stop-agreement-above-one", "STOP_AGREEMENT=1.5",
     table_input(STOP_AGREEMENT="1.5"), "STOP_AGREEMENT='1.5' is out of range: expected a number from 0 to 1"),
    ("review-method-unknown", "REVIEW_METHOD=margin",
     table_input(REVIEW_METHOD="margin"), "REVIEW_METHOD='margin' is not allowed"),
    ("label-review-without-label-field", "label_review with LABEL_FIELD unset",
     table_input(SELECTION_STRATEGY="label_review"), "reviews labeled rows and needs LABEL_FIELD=<column>"),
    ("label-review-no-labels", "label_review when no row has a label",
     table_input(SELECTION_STRATEGY="label_review", LABEL_FIELD="label"),
     "none of the 20 rows has LABEL_FIELD 'label' filled, and label_review selects among the labeled rows only"),
    ("label-review-unknown-label", "a label that names none of the score columns' classes",
     table_input(with_column(label=["0", "1", "2", "cat"] * 5), SELECTION_STRATEGY="label_review",
                 LABEL_FIELD="label"), "LABEL_FIELD 'label' holds 'cat' in row 4 of"),
    ("label-review-unknown-label-parquet", "an integer label beyond the classes, in parquet",
     table_input(with_column(label=[0, 1, 2, 3] * 5), fmt="parquet", SELECTION_STRATEGY="label_review",
                 LABEL_FIELD="label"), "LABEL_FIELD 'label' holds 3 in row 4 of"),
    ("committee-prefixes-unset", "SELECTION_STRATEGY=committee without COMMITTEE_PREFIXES",
     table_input(committee_table(), SELECTION_STRATEGY="committee"), "needs COMMITTEE_PREFIXES=<prefix>,<prefix>"),
    ("committee-one-member", "COMMITTEE_PREFIXES names one member",
     table_input(committee_table(), **committee("m0_prob_class_")), "names one member: a committee needs at least 2"),
    ("committee-prefix-unknown", "a COMMITTEE_PREFIXES prefix no column starts with",
     table_input(committee_table(), **committee("m0_prob_class_,m9_prob_class_")),
     "member 'm9_prob_class_' has no columns"),
    ("committee-classes-differ", "members whose columns name different classes",
     table_input(committee_table().rename(columns={"m1_prob_class_2": "m1_prob_class_7"}), **committee()),
     "committee member 'm1_prob_class_' has classes 0, 1, 7 but member 'm0_prob_class_' has 0, 1, 2"),
    ("committee-member-nan", "NaN in a committee member's column",
     table_input(committee_table(m1_prob_class_0=np.nan), **committee()), "column 'm1_prob_class_0' (1 rows)"),
    ("committee-member-mixed", "one member mixes probability and logit rows",
     table_input(committee_table(m2_prob_class_0=3.5), **committee()),
     "score columns m2_prob_class_0, m2_prob_class_1, m2_prob_class_2 mix probabilities and other scores"),
]


def test_catalogue_has_at_least_twenty_cases():
    assert len(CATALOGUE) >= 20
    assert len({case[0] for case in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("case_id, what, setup, message", CATALOGUE, ids=[case[0] for case in CATALOGUE])
def test_bad_input_fails_cleanly(run, script, caplog, case_id, what, setup, message):
    env = setup(run)
    code = script.cli(run.cli_args(), environ=env)

    assert code == 1
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage()
    assert message in errors[0].getMessage()
    folders = [run.samples_dir, run.metadata_dir]
    if env.get("LABELING_FORMAT", "none") != "none":
        folders.append(run.labeling_dir)
    for folder in folders:
        if folder in in_input_tree(run):  # refused for overlapping the input: nothing is written there
            continue
        reason = (folder / "_FAILURE").read_text()
        assert message in reason and reason.count("\n") == 1
    assert run.result_files() == []
    assert not any(path.name == "_FAILURE" for path in run.input_dir.rglob("*"))


def in_input_tree(run):
    """The run's output folders that lie in its input tree (the cases refused for it)."""
    source = run.input_dir.resolve()
    return [folder for folder in (run.samples_dir, run.metadata_dir, run.labeling_dir)
            if folder.resolve() == source or source in folder.resolve().parents]


def test_missing_job_type_fails_cleanly(run, script, caplog):
    write_table(prediction_table(n=20), run.input_dir)
    assert script.cli(run.cli_args(job_type=None), environ=BASE_ENV) == 1
    assert "--job_type is required" in (run.samples_dir / "_FAILURE").read_text()
    assert run.result_files() == []


DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
TABLE_START = "<!-- catalogue: generated by `python tests/script/test_errors.py` -->"
TABLE_END = "<!-- end of catalogue -->"


def render_catalogue(script):
    """The catalogue as a Markdown table holding the real one-line messages."""
    import logging
    import tempfile

    from conftest import Run

    rows = ["| case | what is wrong | the one-line error (also in `_FAILURE`) |", "| --- | --- | --- |"]
    logging.disable(logging.CRITICAL)
    try:
        for case_id, what, setup, _ in CATALOGUE:
            with tempfile.TemporaryDirectory() as folder:
                run = Run(folder)
                env = setup(run)
                assert script.cli(run.cli_args(), environ=env) == 1
                written = next(folder for folder in (run.samples_dir, run.metadata_dir)
                               if folder not in in_input_tree(run))
                reason = (written / "_FAILURE").read_text().strip()
            reason = reason.replace(str(Path(folder).resolve()), "<tmp>").replace(folder, "<tmp>")
            rows.append("| `{}` | {} | {} |".format(case_id, what, reason.replace("|", "\\|")))
    finally:
        logging.disable(logging.NOTSET)
    return "\n".join(rows)


def test_unwritable_output_folder_fails_cleanly(run, script, caplog, tmp_path):
    write_table(prediction_table(n=20), run.input_dir)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(blocker / "samples"),
            "--selection_metadata", str(blocker / "metadata"), "--job_type", "x"]
    assert script.cli(args, environ=BASE_ENV) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("cannot write to the output folder")


def test_docs_list_the_catalogue_with_its_real_messages(script):
    text = DOC_PATH.read_text()
    table = text.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert table == render_catalogue(script), "docs/errors.md is stale: run python tests/script/test_errors.py"


if __name__ == "__main__":
    import conftest

    before, rest = DOC_PATH.read_text().split(TABLE_START)
    after = rest.split(TABLE_END)[1]
    DOC_PATH.write_text(before + TABLE_START + "\n" + render_catalogue(conftest.script_module) + "\n" + TABLE_END
                        + after)


@pytest.mark.parametrize("cells, words", [
    (pd.array(["0.2", pd.NA, "0.5"], dtype="string"), "must hold numbers, but holds them as text (dtype string)"),
    (pd.array(["0.2", pd.NA, "x"], dtype="string"), "must hold numbers, but row 3 holds 'x'"),
    (pd.Series([0.2, pd.NA, "x"], dtype=object), "must hold numbers, but row 3 holds 'x'"),
])
def test_a_text_score_column_with_missing_cells_is_one_clear_error(script, cells, words):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "prob_class_0": cells, "prob_class_1": [0.8, 0.5, 0.5]})
    with pytest.raises(script.SelectionError, match=r"score column 'prob_class_0' " + re.escape(words)):
        script.select_samples(frame, "uncertainty", 1)
