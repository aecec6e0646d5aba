"""The Label Studio tasks we write, against a real Label Studio server, and the labels read back from its export.

The server is the `label-studio` package installed in .venv-labeling by tools/labeling_env.sh (`make test-labeling`),
started here on 127.0.0.1 with a fixed user and token and a throwaway sqlite folder; it needs no internet. Without
LABEL_STUDIO_BIN (the path of its `label-studio` command) the test is skipped with the command that runs it.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from active_sampling.labeling import (
    CONFLICTING,
    MISSING,
    read_label_studio_export,
    read_sent_ids,
)
from active_sampling.labeling.__main__ import main as labels_cli
from active_sampling.scripts import active_sample_selection as script

LABEL_STUDIO_BIN = os.environ.get("LABEL_STUDIO_BIN")
pytestmark = pytest.mark.skipif(
    not LABEL_STUDIO_BIN,
    reason="needs a Label Studio server: run `make test-labeling` (builds .venv-labeling with label-studio, "
           "about 6 minutes the first time, then runs this test)",
)

USER, PASSWORD, TOKEN = "tester@localhost", "not-a-secret-1", "0123456789abcdef0123456789abcdef"
STARTUP_SECONDS = 420  # the first start migrates a fresh sqlite database: ~100 s on a busy 2-core machine
STOP_SECONDS = 30
REQUEST_SECONDS = 60
BATCH = 8
CLASSES = ["0", "1", "2"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port):
    """Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on ``port``."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                addresses.append(address)
    return addresses


class LabelStudio:
    """A Label Studio server process on 127.0.0.1 and a small client of its REST API."""

    def __init__(self, data_dir):
        self.port = free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.log_path = data_dir / "server.log"
        home = data_dir / "home"
        home.mkdir()
        # A clean environment: Label Studio reads USERNAME, PASSWORD, HOST, PORT and others without a prefix.
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir / "data"),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
        }
        command = [LABEL_STUDIO_BIN, "start", "--no-browser", "--internal-host", "127.0.0.1",
                   "--port", str(self.port), "--username", USER, "--password", PASSWORD, "--user-token", TOKEN,
                   "--enable-legacy-api-token", "--log-level", "WARNING"]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, env=environment, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_until_up(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("label-studio exited with {} before answering:\n{}".format(
                    self.process.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url + "/health/", timeout=5) as response:
                    if json.loads(response.read()).get("status") == "UP":
                        return
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(2)
        pytest.fail("label-studio did not answer on {} within {} s:\n{}".format(
            self.url, STARTUP_SECONDS, self.log_tail()))

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_SECONDS)
        self.log.close()

    def log_tail(self, lines=40):
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def call(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Token " + TOKEN, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            pytest.fail("{} {} answered {}: {}".format(method, path, error.code, error.read()[:2000]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    studio = LabelStudio(tmp_path_factory.mktemp("label_studio"))
    try:
        studio.wait_until_up()
        yield studio
    finally:
        studio.stop()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """An uncertainty selection of 8 texts written as Label Studio tasks by the entry script."""
    root = tmp_path_factory.mktemp("selection")
    rng = np.random.default_rng(3)
    n = 60
    probabilities = rng.dirichlet(np.ones(3), size=n)
    table = pd.DataFrame({"id": ["doc-{:03d}".format(i) for i in range(n)],
                          "text": ['Review {}: "works", mostly; ünïcode\nsecond line'.format(i) for i in range(n)]})
    for k in range(3):
        table["prob_class_{}".format(k)] = probabilities[:, k]
    (root / "input").mkdir()
    table.to_csv(root / "input" / "predictions.csv", index=False)
    outputs = {channel: str(root / channel) for channel in script.CONTAINER_OUTPUT_PATHS}
    script.main({script.INPUT_CHANNEL: str(root / "input")}, outputs,
                {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": str(BATCH), "LABELING_FORMAT": "label_studio",
                 "LABELING_DATA_FIELD": "text"}, argparse.Namespace(job_type="labeling_test"))
    folder = root / script.LABELING_CHANNEL
    return {"folder": folder, "tasks_path": folder / script.LABEL_STUDIO_TASKS,
            "tasks": json.loads((folder / script.LABEL_STUDIO_TASKS).read_text(encoding="utf-8")),
            "config": (folder / script.LABEL_STUDIO_CONFIG).read_text(encoding="utf-8")}


def test_server_listens_on_loopback_only(server):
    addresses = listening_addresses(server.port)
    if not addresses:
        pytest.skip("no /proc/net/tcp on this machine")
    assert set(addresses) == {"0100007F"}  # 127.0.0.1


def test_written_tasks_import_annotate_export_and_read_back(server, written, tmp_path):
    project = server.call("POST", "/api/projects", {"title": "active sampling test", "label_config": written["config"]})
    controls = project["parsed_label_config"]
    assert controls["label"]["type"] == "Choices"
    assert controls["label"]["to_name"] == ["text"]
    assert controls["label"]["labels"] == CLASSES

    imported = server.call("POST", "/api/projects/{}/import".format(project["id"]),
                           raw=written["tasks_path"].read_bytes())
    assert (imported["task_count"], imported["prediction_count"], imported["annotation_count"]) == (BATCH, BATCH, 0)

    listed = server.call("GET", "/api/tasks?project={}&page_size=100".format(project["id"]))
    assert listed["total"] == BATCH
    stored = {task["data"]["id"]: server.call("GET", "/api/tasks/{}".format(task["id"])) for task in listed["tasks"]}
    for sent in written["tasks"]:
        task = stored[sent["data"]["id"]]
        assert task["data"] == sent["data"]
        (prediction,) = task["predictions"]
        (expected,) = sent["predictions"]
        assert prediction["result"] == expected["result"]
        assert prediction["model_version"] == expected["model_version"] == "active_sampling/uncertainty"
        assert prediction["score"] == pytest.approx(expected["score"], rel=1e-9)

    ids = [task["data"]["id"] for task in written["tasks"]]
    given = {row_id: CLASSES[rank % 3] for rank, row_id in enumerate(ids[:5])}
    for row_id, label in given.items():
        annotate(server, stored[row_id]["id"], label)
    annotate(server, stored[ids[5]]["id"], "0")
    annotate(server, stored[ids[5]]["id"], "2")
    server.call("POST", "/api/tasks/{}/annotations".format(stored[ids[6]]["id"]), {"result": [], "was_cancelled": True})

    export = server.call("GET", "/api/projects/{}/export?exportType=JSON&download_all_tasks=true".format(project["id"]))
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(export), encoding="utf-8")
    result = read_label_studio_export(export_path, expected_ids=read_sent_ids(written["tasks_path"]))

    assert dict(zip(result.labels["id"], result.labels["label"])) == given
    problems = dict(zip(result.problems["id"], result.problems["problem"]))
    assert problems == {ids[5]: CONFLICTING, ids[6]: MISSING, ids[7]: MISSING}

    output = tmp_path / "labels.csv"
    code = labels_cli(["label-studio", str(export_path), "--tasks", str(written["tasks_path"]),
                       "--output", str(output)])
    assert code == 1  # three ids left out
    assert pd.read_csv(output, dtype=str).values.tolist() == [[row_id, label] for row_id, label in given.items()]


def annotate(server, task_id, label):
    server.call("POST", "/api/tasks/{}/annotations".format(task_id), {"result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]})
