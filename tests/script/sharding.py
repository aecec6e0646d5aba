"""Simulate a multi-instance SageMaker Processing job on one machine.

Each shard gets its own input folder (the files ShardedByS3Key would give it, same relative paths), its
own output folders and its own resource config. Their selected_samples folders are then copied into
one folder as the S3 upload would (same names overwrite), and the merge runs on that folder.
"""

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from conftest import script_module as script


def write_parts(tables, folder, fmt="parquet"):
    """Write ``tables`` as part files ``part-00000.<fmt>``, ... (some in a subfolder) and return their paths."""
    folder = Path(folder)
    paths = []
    for i, table in enumerate(tables):
        relative = Path("part-{:05d}.{}".format(i, fmt)) if i % 3 else Path("sub", "part-{:05d}.{}".format(i, fmt))
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            table.to_parquet(str(path), index=False)
        else:
            table.to_csv(str(path), index=False)
        paths.append(relative)
    return paths


def run_main(input_dir, out_dir, env, job_type="test_selection"):
    out_dir = Path(out_dir)
    return script.main({"evaluation_data": str(input_dir)},
                       {"selected_samples": str(out_dir / "selected_samples"),
                        "selection_metadata": str(out_dir / "selection_metadata")},
                       dict(env), argparse.Namespace(job_type=job_type))


def resource_config(folder, host, hosts):
    path = Path(folder) / "resourceconfig.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"current_host": host, "hosts": list(hosts), "network_interface_name": "eth0"}))
    return path


def hosts_of(n_shards):
    return ["algo-{}".format(i + 1) for i in range(n_shards)]


def run_shards(pool_dir, relatives, root, n_shards, env, assignment=None, hosts=None):
    """Run one shard per host on its files (file i goes to shard assignment[i], default i mod n)."""
    root = Path(root)
    hosts = hosts or hosts_of(n_shards)
    assignment = assignment or [i % n_shards for i in range(len(relatives))]
    outputs = []
    for index, host in enumerate(hosts):
        shard_root = root / "shards" / "instance-{}".format(index)
        input_dir = shard_root / "input"
        input_dir.mkdir(parents=True, exist_ok=True)
        for relative, owner in zip(relatives, assignment):
            if owner == index:
                (input_dir / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(str(Path(pool_dir) / relative), str(input_dir / relative))
        config_path = resource_config(shard_root, host, hosts)
        run_main(input_dir, shard_root / "out",
                 dict(env, SELECTION_ROLE="shard", RESOURCE_CONFIG_PATH=str(config_path)))
        outputs.append(shard_root / "out" / "selected_samples")
    return outputs


def upload(shard_outputs, prefix):
    """Copy every shard's output folder into one folder, as every instance's upload to one S3 prefix does."""
    prefix = Path(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    for folder in shard_outputs:
        for path in Path(folder).iterdir():
            shutil.copy(str(path), str(prefix / path.name))
    return prefix


def run_merge(merge_input, root, env):
    return run_main(merge_input, Path(root) / "merge" / "out", dict(env, SELECTION_ROLE="merge"))


def sharded(pool_dir, relatives, root, n_shards, env, assignment=None):
    """Shards, upload, merge: returns the merge's metadata and its output folder."""
    outputs = run_shards(pool_dir, relatives, root, n_shards, env, assignment)
    merge_input = upload(outputs, Path(root) / "s3" / "shards")
    metadata = run_merge(merge_input, root, env)
    return metadata, Path(root) / "merge" / "out"


def single(pool_dir, root, env):
    metadata = run_main(pool_dir, Path(root) / "single" / "out", env)
    return metadata, Path(root) / "single" / "out"


def selected_file(out_dir):
    (path,) = sorted((Path(out_dir) / "selected_samples").glob("selected_samples.*"))
    return path


def selected_frame(out_dir):
    path = selected_file(out_dir)
    if path.suffix == ".parquet":
        return pd.read_parquet(str(path))
    return pd.read_csv(str(path), dtype={"id": str})
