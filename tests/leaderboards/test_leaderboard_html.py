"""leaderboard.html: self-contained, the Markdown's tables, sortable; rendered in headless Chromium when present."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from leaderboards import render_leaderboards
from tests.leaderboards.test_leaderboard_render import build_grid

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")

# Appended after the page's own script: sorts the qed score table by its first pair, twice, through the page's
# click handlers, and writes what the table shows into the DOM that --dump-dom prints.
PROBE = """
<script>
(function () {
  var table = document.querySelector("#task-qed table.sortable");
  function column(j) { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[j].textContent; }); }
  var result = {header: Array.prototype.map.call(table.tHead.rows[0].cells, function (c) { return c.textContent; }),
                initial: column(0), cells: column(1), bars: table.querySelectorAll("svg.bar").length,
                forests: document.querySelectorAll("svg.forest").length};
  var header = table.tHead.rows[0].cells[1];
  header.click();
  result.first = column(0); result.firstSort = header.getAttribute("aria-sort");
  header.click();
  result.second = column(0); result.secondSort = header.getAttribute("aria-sort");
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
})();
</script>
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    from tests.leaderboards.conftest import StoreBuilder

    store = StoreBuilder(tmp_path_factory.mktemp("html") / "runs")
    build_grid(store)
    return render_leaderboards(store.root)["leaderboard.html"]


def test_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # Nothing fetched, no CDN: the only links are the score cells' links to their examples on the page.
    assert not re.search(r"""src\s*=|href\s*=\s*"(?!#examples/)|https?://|@import|url\(""", text)
    assert text.count('<table class="sortable">') == 2 * 4 + 2  # two tasks of 4 tables, failed and skipped
    assert "<script>" in text and "<style>" in text


def probe_page(page: Path, probe: str, tmp_path: Path) -> dict:
    """Open ``page`` in headless Chromium with ``probe`` (a script that writes JSON into ``<pre id="probe">``) run
    after the page's own scripts; returns that JSON. Skips when no Chromium is on PATH."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium)")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))


def test_page_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    result = probe_page(page, PROBE, tmp_path)
    assert result["header"] == ["method", "gemma-smollm", "qwen-smollm"]
    assert result["initial"] == ["teacher", "untrained", "sft", "mlot", "uld"]
    assert result["cells"][0] == "70.0 [70.0, 70.0]" and result["cells"][3].startswith("57.0 [")
    assert result["bars"] == 9 and result["forests"] == 2  # one bar per score (uld has no qwen cell)
    # First click on a number column: highest first; the second reverses.
    assert (result["first"], result["firstSort"]) == (["teacher", "mlot", "uld", "sft", "untrained"], "descending")
    assert (result["second"], result["secondSort"]) == (["untrained", "sft", "uld", "mlot", "teacher"], "ascending")
