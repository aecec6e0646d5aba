"""Hash every file the entry script writes on a fixed grid of runs, to prove a refactor changes no output byte.

    .venv/bin/python tools/output_snapshot.py --write before.json     # on the old commit
    .venv/bin/python tools/output_snapshot.py --compare before.json   # on the new one: lists every difference

The grid: the demo's two runs on the bundled example, and every strategy on tests/script/test_sharding.py's data
(its tied part files, parquet and CSV; its Gaussian mixture), single and sharded over 3 and 8 simulated
instances. The only values left out of the hashes are the run's wall-clock facts (``timestamp``,
``elapsed_seconds`` and the report's "written ..." time), which differ between any two runs.
"""

import argparse
import hashlib
import json
import logging
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "script"), str(ROOT / "examples"), str(ROOT / "src")]

import sharding as sim  # noqa: E402  (tests/script/sharding.py)
import test_sharding as data  # noqa: E402
from demo import run_demo  # noqa: E402

WALL_CLOCK_KEYS = {"timestamp", "elapsed_seconds"}
WRITTEN_AT = re.compile(r"written \d{4}-\d\d-\d\dT[0-9:+-]+")
CASES = dict(
    data.EXACT_CASES,
    **{"hybrid_" + name: dict(env, SELECTION_STRATEGY="diversity") for name, env in data.HYBRID_CASES.items()},
    hybrid_row=dict(SELECTION_STRATEGY="hybrid", BATCH_SIZE="30"),
    kcenter=dict(SELECTION_STRATEGY="diversity", BATCH_SIZE="30"),
    kcenter_cosine=dict(SELECTION_STRATEGY="diversity", BATCH_SIZE="30", METRIC="cosine"),
    kmeans=dict(SELECTION_STRATEGY="diversity", DIVERSITY_METHOD="kmeans", BATCH_SIZE="30"),
    badge=dict(SELECTION_STRATEGY="badge", BATCH_SIZE="30"),
)
SHARD_COUNTS = (3, 8)


def _without_wall_clock(value):
    if isinstance(value, dict):
        return {key: _without_wall_clock(item) for key, item in value.items() if key not in WALL_CLOCK_KEYS}
    if isinstance(value, list):
        return [_without_wall_clock(item) for item in value]
    return value


def file_digest(path: Path) -> str:
    content = path.read_bytes()
    if path.suffix == ".json" and path.name.endswith("metadata.json"):
        content = json.dumps(_without_wall_clock(json.loads(content)), sort_keys=True).encode()
    elif path.suffix == ".html":
        content = WRITTEN_AT.sub("written <time>", content.decode()).encode()
    return hashlib.sha256(content).hexdigest()


def tree_digests(folder: Path, prefix: str) -> dict:
    return {prefix + "/" + str(path.relative_to(folder)): file_digest(path)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def run_case(root: Path, pool_dir: Path, relatives, env: dict, prefix: str) -> dict:
    digests = {}
    try:
        _, single_out = sim.single(pool_dir, root / "single", env)
        digests.update(tree_digests(single_out, prefix + "/single"))
    except (SystemExit, Exception) as error:  # a refusal is an output too
        digests[prefix + "/single"] = "raised " + repr(error)
    for n_shards in SHARD_COUNTS:
        name = "{}/sharded{}".format(prefix, n_shards)
        try:
            _, merged_out = sim.sharded(pool_dir, relatives, root / "sharded{}".format(n_shards), n_shards, env)
            digests.update(tree_digests(merged_out, name))
        except (SystemExit, Exception) as error:
            digests[name] = "raised " + repr(error)
    return digests


def snapshot() -> dict:
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_demo(tmp / "demo")
        digests.update(tree_digests(tmp / "demo", "demo"))
        pools = {}
        for fmt in ("parquet", "csv"):
            parts = data.tied_parts()
            parts[4] = parts[4].assign(count=parts[4]["count"].astype(float))
            parts[4].loc[3, "count"] = float("nan")
            pools["tied_" + fmt] = (tmp / fmt, sim.write_parts(parts, tmp / fmt, fmt))
        table = data.mixture(n=2000, seed=3)
        table = data.badge_table(n=2000, seed=3).assign(**{c: table[c] for c in table if c.startswith("emb_")})
        pieces = [table.iloc[i::7].reset_index(drop=True) for i in range(7)]
        pools["mixture"] = (tmp / "mixture", sim.write_parts(pieces, tmp / "mixture"))
        for pool_name, (pool_dir, relatives) in pools.items():
            for case, env in sorted(CASES.items()):
                prefix = "{}/{}".format(pool_name, case)
                digests.update(run_case(tmp / "runs" / prefix, pool_dir, relatives, dict(env, LABEL_FIELD="label"), prefix))
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    digests = snapshot()
    if args.write:
        args.write.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
        print("{} files hashed into {}".format(len(digests), args.write))
        return 0
    before = json.loads(args.compare.read_text())
    changed = sorted(key for key in set(before) | set(digests) if before.get(key) != digests.get(key))
    for key in changed:
        print("differs: {} ({} -> {})".format(key, before.get(key, "absent")[:12], digests.get(key, "absent")[:12]))
    print("{} of {} files identical".format(len(digests) - len(changed), len(set(before) | set(digests))))
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
