"""leaderboard.html's training curves and example browser, in headless Chromium; a damaged and a missing training
log; the forest plot's labels inside the drawing whatever the pair name's length; the curves PNG."""
from __future__ import annotations

from pathlib import Path

import pytest

from leaderboards import render_leaderboards
from tests.leaderboards.conftest import StoreBuilder
from tests.leaderboards.test_leaderboard_html import probe_page

PAIR = "qwen2.5-coder-0.5b-to-smollm2-135m"  # long: the forest plot's labels must still fit
SFT_SCORES = [100.0, 100.0, 0.0, 0.0, 50.0, 20.0]
ULD_SCORES = [0.0, 100.0, 100.0, 0.0, 50.0, 20.0]  # worse on e0, better on e2, same score elsewhere
SFT_TEXT = ["a", "b", "c", "d", "e", "f"]
ULD_TEXT = ["x", "b", "y", "z", "e", "f"]  # differs from sft on e0, e2 and e3 (e3: same score, other text)


def _log(scale: float, steps: int = 5) -> list[dict[str, float]]:
    return [{"step": s, "loss": scale / s, "ce": scale / s, "grad_norm": 1.0 + s, "lr": 1e-4 * (1 - s / 10),
             "answer_tokens": 30, "elapsed_s": 0.1 * s} for s in range(1, steps + 1)]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    store = StoreBuilder(tmp_path_factory.mktemp("browser") / "runs")
    for method in ("teacher", "untrained"):
        store.cell("qed", PAIR, method, 0, {"f1": 50.0}, scores={"f1": [50.0] * 6}, predictions=SFT_TEXT)
    for seed in (1, 2):
        store.cell("qed", PAIR, "sft", seed, {"f1": 45.0}, scores={"f1": SFT_SCORES}, predictions=SFT_TEXT,
                   train_log=_log(10.0 + seed))
    store.cell("qed", PAIR, "uld", 1, {"f1": 45.0}, scores={"f1": ULD_SCORES}, predictions=ULD_TEXT,
               train_log=[{**r, "uld": 0.5} for r in _log(8.0)])
    damaged = store.cell("qed", PAIR, "uld", 2, {"f1": 45.0}, scores={"f1": ULD_SCORES}, predictions=ULD_TEXT)
    (damaged / "train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\nnot json\n', encoding="utf-8")
    store.cell("qed", PAIR, "mlot", 1, {"f1": 45.0}, scores={"f1": SFT_SCORES}, predictions=SFT_TEXT)  # no log
    return render_leaderboards(store.root)["leaderboard.html"]


def test_page_names_the_cells_without_a_readable_log(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<li>no curve for mlot seed 1: train_log.jsonl is missing</li>" in text
    assert "<li>no curve for uld seed 2: train_log.jsonl, line 2, column 1: invalid JSON" in text
    assert text.count('<details class="curve-pair"') == 1 and f'href="#examples/qed/{PAIR}/uld"' in text


PROBE = """
<script>
(function () {
  function rows(box) { return Array.prototype.map.call(box.querySelectorAll("tbody tr"), function (r) { return r.dataset.id; }); }
  var result = {};
  var panels = document.querySelectorAll("figure.panel");
  result.panels = Array.prototype.map.call(panels, function (p) { return p.querySelector("text").textContent; });
  result.lossLines = panels[0].querySelectorAll("polyline").length;
  result.legend = panels[0].querySelector("figcaption").textContent;
  var labels = document.querySelectorAll("svg.forest text[text-anchor=end]");
  result.labelLeft = Math.min.apply(null, Array.prototype.map.call(labels, function (t) { return t.getBBox().x; }));
  var box = document.querySelector("div.browser"), method = box.querySelector(".b-method");
  var filter = box.querySelector(".b-filter"), sort = box.querySelector(".b-sort");
  function choose(select, value) { select.value = value; select.dispatchEvent(new Event("change")); }
  choose(method, "uld");
  result.sorted = rows(box);
  result.head = box.querySelector(".b-method-head").textContent;
  result.firstRow = Array.prototype.map.call(box.querySelector("tbody tr").cells, function (c) { return c.textContent; });
  ["differs", "sft-right", "method-right"].forEach(function (f) { choose(filter, f); result[f] = rows(box); });
  choose(filter, "all"); choose(sort, "order");
  result.order = rows(box);
  box.querySelector("tbody tr details.b-all").open = true;
  box.querySelector("tbody tr details.b-all").dispatchEvent(new Event("toggle"));
  result.every = box.querySelector("tbody tr details.b-all").querySelectorAll(":scope > div.pred").length;
  var link = document.querySelector('#task-qed table.sortable a[href$="/mlot"]');
  link.click();
  window.dispatchEvent(new HashChangeEvent("hashchange"));
  result.hash = decodeURIComponent(location.hash);
  result.linked = [box.querySelector(".b-pair").value, method.value, box.querySelector(".b-method-head").textContent];
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
})();
</script>
"""


def test_curves_and_browser_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    result = probe_page(page, PROBE, tmp_path)
    assert result["panels"] == ["total loss", "answer cross-entropy", "gradient norm", "learning rate",
                                "sft: loss and terms", "uld: loss and terms"]
    assert result["lossLines"] == 3 + 1  # sft: two seeds and their mean; uld: its one readable seed
    assert "sft (2 seeds)" in result["legend"] and "uld" in result["legend"] and "mlot" not in result["legend"]
    assert result["labelLeft"] >= 0  # no forest label starts left of the drawing
    # Sorted by the paired difference from sft, the method's worst example first; ties in example order.
    assert result["head"] == "uld" and result["sorted"] == ["e0", "e1", "e3", "e4", "e5", "e2"]
    assert result["firstRow"][2:6] == ["r", "ascore 100.0", "xscore 0.0", "-100.0"]
    assert result["differs"] == ["e0", "e3", "e2"]  # still sorted by the difference
    assert (result["sft-right"], result["method-right"]) == (["e0"], ["e2"])
    assert result["order"] == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert result["every"] == 5  # teacher, untrained, sft, mlot, uld: one shared prediction per method here
    assert result["hash"] == f"#examples/qed/{PAIR}/mlot" and result["linked"] == [PAIR, "mlot", "mlot"]


def test_curves_png_beside_the_leaderboard_png(page: Path) -> None:
    data = (page.parent / "leaderboard_curves.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
