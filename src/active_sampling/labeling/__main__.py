"""Command line: turn a labeling tool's export into an ``id,label`` CSV for the next round's labeled data.

    python -m active_sampling.labeling label-studio export.json --output labels.csv [--tasks tasks.json]
    python -m active_sampling.labeling ground-truth output.manifest --output labels.csv [--tasks input.manifest]

Ids whose answers agree are written to ``--output``; the others (conflicting answers, no answer, or with
``--tasks`` sent but never returned) are listed on stderr and, with ``--problems``, in a CSV. The exit status is 0
when every id has a label, 1 when some were left out (``--allow-problems`` makes that 0), 2 for an export that
cannot be read or an output that cannot be written.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .readback import (
    LabelReadError,
    LabelsReadBack,
    read_ground_truth_manifest,
    read_label_studio_export,
    read_sent_ids,
)

PROG = "python -m active_sampling.labeling"
SHOWN_PROBLEMS = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    tools = parser.add_subparsers(dest="tool", required=True, metavar="{label-studio,ground-truth}")
    studio = tools.add_parser("label-studio", help="a Label Studio JSON export (exportType=JSON)")
    studio.add_argument("export", type=Path, help="the exported JSON file")
    studio.add_argument("--from-name", help="the <Choices> control to read (default: the only one)")
    truth = tools.add_parser("ground-truth", help="a Ground Truth output manifest (classification job)")
    truth.add_argument("export", type=Path, help="the output manifest (output.manifest)")
    truth.add_argument("--label-attribute", help="the job's label attribute name (default: the only one)")
    for sub in (studio, truth):
        sub.add_argument("--output", type=Path, required=True, help="CSV to write: id,label")
        sub.add_argument("--tasks", type=Path,
                         help="the tasks file that was sent (labeling_tasks/...); ids not in the export are reported")
        sub.add_argument("--id-field", default="id", help="the row id's name in the tasks (default: %(default)s)")
        sub.add_argument("--label-field", default="label",
                         help="name of the label column written (default: %(default)s)")
        sub.add_argument("--problems", type=Path, help="CSV to write the ids left out and why")
        sub.add_argument("--allow-problems", action="store_true",
                         help="exit 0 even when some ids were left out")
    return parser


def read(args: argparse.Namespace) -> LabelsReadBack:
    expected = read_sent_ids(args.tasks, id_field=args.id_field) if args.tasks else None
    if args.tool == "label-studio":
        return read_label_studio_export(args.export, id_field=args.id_field, label_field=args.label_field,
                                        from_name=args.from_name, expected_ids=expected)
    return read_ground_truth_manifest(args.export, id_field=args.id_field, label_field=args.label_field,
                                      label_attribute=args.label_attribute, expected_ids=expected)


def problem_lines(result: LabelsReadBack, id_field: str) -> List[str]:
    problems = result.problems
    lines = ["{} id(s) left out:".format(len(problems))]
    for row in problems.head(SHOWN_PROBLEMS).itertuples(index=False):
        row_id, problem, answers, detail = row
        lines.append("  {}={}: {}{} ({})".format(id_field, row_id, problem,
                                                 " " + answers if answers else "", detail))
    if len(problems) > SHOWN_PROBLEMS:
        lines.append("  ... and {} more".format(len(problems) - SHOWN_PROBLEMS))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = read(args)
    except LabelReadError as error:
        print("error: {}".format(error), file=sys.stderr)
        return 2
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        result.labels.to_csv(args.output, index=False)
        if args.problems:
            result.problems.to_csv(args.problems, index=False)
    except OSError as error:
        print("error: cannot write {}: {}".format(error.filename or args.output, error.strerror or error),
              file=sys.stderr)
        return 2
    print("{} label(s) written to {}".format(len(result.labels), args.output))
    if result.problems.empty:
        return 0
    print("\n".join(problem_lines(result, args.id_field)), file=sys.stderr)
    if args.problems:
        print("all of them in {}".format(args.problems), file=sys.stderr)
    return 0 if args.allow_problems else 1


if __name__ == "__main__":
    sys.exit(main())
