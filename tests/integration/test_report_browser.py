"""The `replay score --report` page opens in a real browser (Debian's headless Chromium): the page renders, its
timeline images load from the files next to it, and it shows the scenario and its metrics."""

from __future__ import annotations

import json
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from otsentry.cli import main
from tests.helpers import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Headless, offline, no profile shared with anyone: nothing leaves the machine and nothing is left behind.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")
ATTACK_SHADE = np.array([255, 224, 166])  # the report's orange attack band (#ff9900, alpha 0.35) over white


def chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=120,
                          check=True)


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    res = CliRunner().invoke(main, ["replay", "score", "fc_sweep", "--quick", "--seed", "3", "--cache",
                                    str(folder / "cache"), "--report", str(folder / "report"), "--json",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    return folder, folder / "report" / "index.html", json.loads(res.stdout)


def test_report_renders_in_chromium_with_its_timeline(report):
    browser = require_tool("chromium")
    folder, index, _ = report
    shot = folder / "screenshot.png"
    chromium(browser, folder, f"--screenshot={shot}", "--window-size=1280,2000", index.resolve().as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
    assert png_size(shot) == (1280, 2000)
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round()
    assert pixels.std() > 20, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot has almost no content"
    # The timeline image was drawn by the browser, not only referenced: its attack shading is on screen.
    shaded = (np.abs(pixels - ATTACK_SHADE) <= 12).all(axis=-1).sum()
    assert shaded > 500, f"no attack shading in the screenshot ({shaded} pixels): did the timeline image load?"


def test_report_dom_has_images_scenario_and_metrics(report):
    browser = require_tool("chromium")
    folder, index, scores = report
    dom = chromium(browser, folder, "--dump-dom", index.resolve().as_uri()).stdout.decode()
    parser = Images()
    parser.feed(dom)
    assert parser.srcs, "no <img> in the page"
    for src in parser.srcs:
        assert not src.startswith(("http:", "https:", "/")), f"{src}: images must be relative to the page"
        image = index.parent / src
        assert image.is_file() and image.stat().st_size > 1000, f"{src} is missing or empty"
        width, height = png_size(image)
        assert width >= 600 and height >= 300
    s = scores["scenarios"][0]
    assert "fc_sweep" in dom and "T0888" in dom
    for label in ("precision", "recall", "F1", "false alerts per hour", "time to detect"):
        assert label in dom, label
    assert f"{s['precision']:.3f}" in dom and f"{s['recall']:.3f}" in dom and f"{s['f1']:.3f}" in dom
    assert f"{s['false_alerts_per_hour']:.2f}" in dom and f"{s['time_to_detect_s']:.1f} s" in dom
    assert "For students" in dom
