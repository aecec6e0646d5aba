"""selection_report.html in a real browser: headless Chromium, JavaScript disabled, from the demo and a sharded run.

Chromium is Debian's package, installed by tools/report_env.sh (`make test-report`), which passes its path as
CHROMIUM_BIN; without it the test is skipped with the command that runs it. Each page is rendered twice: once
as a screenshot (checked to be a real, non-blank picture with the report's colors) and once as the DOM after
loading (checked for the title, no error page, and the SVG marks the metadata says the page must draw).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sharding as sim
from conftest import prediction_table

CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN")
pytestmark = pytest.mark.skipif(
    not CHROMIUM_BIN,
    reason="needs headless Chromium: run `make test-report` (installs Debian's chromium, then runs this test)",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1100, 2400)
BROWSER_SECONDS = 120
# The page's colors (the script's _REPORT_STYLE): candidates grey, selected orange, labeled green.
POOL_RGB, SELECTED_RGB, LABELED_RGB = (0x9a, 0xa5, 0xb1), (0xd9, 0x48, 0x0f), (0x2b, 0x8a, 0x3e)
# A fresh profile whose only content is this preference: page scripts are blocked (Chromium's content setting
# 2 = block); --blink-settings=scriptEnabled=false would also stop --screenshot and --dump-dom themselves.
NO_JAVASCRIPT = {"profile": {"default_content_setting_values": {"javascript": 2}}}


def chromium(tmp_path, page, *output):
    """Run headless Chromium on ``page`` with ``output`` (--screenshot=... or --dump-dom); return its stdout."""
    profile = tmp_path / "profile-{}".format(len(list(tmp_path.glob("profile-*"))))
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(NO_JAVASCRIPT))
    command = [CHROMIUM_BIN, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND", "--user-data-dir={}".format(profile),
               "--window-size={},{}".format(*WINDOW), *output, Path(page).resolve().as_uri()]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=BROWSER_SECONDS,
                          universal_newlines=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def png_colors(path):
    """Size and pixel count per RGB color of a PNG (Pillow is in the dev extra; imported here, as tests/script
    also runs under the legacy environment, where this module is skipped)."""
    from PIL import Image

    with Image.open(str(path)) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
        return rgb.size, {color: count for count, color in rgb.getcolors(maxcolors=rgb.size[0] * rgb.size[1])}


def count_marks(dom, tag, css_class):
    return len(re.findall(r'<{}\b[^>]*\bclass="{}"'.format(tag, css_class), dom))


def check_page(tmp_path, page, metadata, *, projection):
    """The page renders: a real screenshot with the report's colors, the DOM has the title and every mark."""
    dom = chromium(tmp_path, page, "--dump-dom")
    assert "<title>Selection report: {}</title>".format(metadata["strategy"]) in dom
    assert "ERR_" not in dom and "neterror" not in dom
    charts = re.findall(r'<svg\b[^>]*\brole="img"', dom)
    assert len(charts) == (3 if projection else 2)
    # A bar per class in the class mix, one per non-empty bin in the histogram, and a swatch in each legend.
    n_classes, histogram = len(metadata["pool_per_class"]), metadata["confidence_histogram"]
    legends = 3 if projection else 2
    for kind, series in (("pool", "candidates"), ("selected", "selected")):
        bars = n_classes + sum(1 for count in histogram[series] if count)
        assert count_marks(dom, "rect", kind) == bars + legends, kind
    if projection:
        sharding = metadata.get("sharding")
        drawn_from = sharding["merged_candidates"] if sharding else metadata["candidate_count"]
        assert count_marks(dom, "circle", "pool") == min(drawn_from, 2000)
        assert count_marks(dom, "circle", "selected") == metadata["selected_count"]
        assert count_marks(dom, "circle", "labeled") == (0 if sharding else metadata["labeled_count"])
    screenshot = tmp_path / (Path(page).parent.parent.name + ".png")
    chromium(tmp_path, page, "--screenshot={}".format(screenshot))
    assert screenshot.stat().st_size > 20000
    size, colors = png_colors(screenshot)
    assert size == WINDOW
    assert len(colors) > 50, "a blank or near-blank page"
    assert colors.get((255, 255, 255), 0) < 0.97 * sum(colors.values())
    for rgb in (POOL_RGB, SELECTED_RGB) + ((LABELED_RGB,) if projection and "sharding" not in metadata else ()):
        assert colors.get(rgb, 0) > 400, "no {} marks in the screenshot beyond its legend swatch".format(rgb)
    return screenshot


def test_browser_runs_with_javascript_disabled(tmp_path):
    canary = tmp_path / "canary.html"
    canary.write_text('<html><body><p id="s">static</p><script>document.getElementById("s").textContent = '
                      '"script ran";</script></body></html>')
    dom = chromium(tmp_path, canary, "--dump-dom")
    assert '<p id="s">static</p>' in dom


def test_demo_reports_render(tmp_path):
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    done = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "demo.py"), "--output-dir",
                           str(tmp_path / "demo")], stdout=subprocess.PIPE, universal_newlines=True,
                          env=environment, check=True, timeout=600)
    reports = [Path(line.split()[1]) for line in done.stdout.splitlines() if line.strip().startswith("report:")]
    use_cases = []
    for path in reports:
        metadata = json.loads((path.parent / "selection_metadata.json").read_text())
        use_cases.append(metadata["use_case"])
        # the page draws the projection exactly when the strategy read embeddings
        check_page(tmp_path, path, metadata, projection="embedding_field_prefix" in metadata["config"])
    assert use_cases == ["ssl", "active_learning"]


def test_sharded_report_renders_with_the_shard_table(tmp_path):
    table = prediction_table(n=400, n_classes=4, dim=6, labeled_fraction=0.1, seed=3)
    parts = [table.iloc[i * 50:(i + 1) * 50].reset_index(drop=True) for i in range(8)]
    relatives = sim.write_parts(parts, tmp_path / "pool")
    env = {"SELECTION_STRATEGY": "diversity", "LABEL_FIELD": "label", "BATCH_SIZE": "12"}
    metadata, out_dir = sim.sharded(tmp_path / "pool", relatives, tmp_path, 3, env)
    page = out_dir / "selection_metadata" / "selection_report.html"
    check_page(tmp_path, page, metadata, projection=True)
    dom = chromium(tmp_path, page, "--dump-dom")
    for host in sim.hosts_of(3):
        assert "<td>{}</td>".format(host) in dom
