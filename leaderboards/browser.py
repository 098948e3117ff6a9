"""The page's per-task example browser: the data it shows and its markup and script.

Per task × pair, every evaluation example (question, context folded, references) and, per method, each seed's
prediction, the per-example headline score (mean over the method's seeds) and the paired difference from sft (mean
over the seeds both have; a reference row pairs with every sft seed, as in the analysis). "Differs from sft": some
paired seed predicted a different text. "Right": a headline score of at least half the scale (50 of 100; at most 50
for a metric where lower is better). The script shows one pair and method at a time, 50 rows per click, so a store
of thousands of cells stays responsive; a score-table cell links to ``#examples/<task>/<pair>/<method>``.
"""
from __future__ import annotations

import html
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from benchmark.store import REFERENCE_METHODS, SFT, CellKey
from leaderboards.reading import StoreData
from leaderboards.tables import ordered_methods

PAGE_ROWS = 50


def browser_data(data: StoreData) -> dict[str, dict[str, Any]]:
    """task -> what its browser shows (JSON-ready; scores rounded to 2 decimals, the page's display precision)."""
    scan = data.scan
    by_table: dict[tuple[str, str], list[CellKey]] = defaultdict(list)
    for cell in scan.cells:
        by_table[cell.task, cell.pair].append(cell.key)
    tasks: dict[str, dict[str, Any]] = {}
    for (task, pair), keys in sorted(by_table.items()):
        payload = tasks.setdefault(task, {"metric": scan.headline_metrics[task], "higher": scan.higher_is_better(task),
                                          "examples": {}, "pairs": {}})
        payload["pairs"][pair] = _pair(data, keys, scan.headline_metrics[task], payload["examples"])
    return tasks


def _pair(data: StoreData, keys: list[CellKey], metric: str, examples: dict[str, list[Any]]) -> dict[str, Any]:
    ids = sorted({i for key in keys for i in data.scores[key].ids})
    position = {example_id: j for j, example_id in enumerate(ids)}
    seeds: dict[str, list[int]] = defaultdict(list)
    scores: dict[str, np.ndarray] = {}
    predictions: dict[str, list[list[str | None]]] = {}
    for key in sorted(keys, key=lambda k: k.seed):
        seeds[key.method].append(key.seed)
    for method, method_seeds in seeds.items():
        matrix = np.full((len(method_seeds), len(ids)), np.nan)
        texts: list[list[str | None]] = [[None] * len(ids) for _ in method_seeds]
        for row, seed in enumerate(method_seeds):
            key = CellKey(keys[0].task, keys[0].pair, method, seed)
            cell_scores, cell_texts = data.scores[key], data.texts[key]
            where = [position[i] for i in cell_scores.ids]
            matrix[row, where] = cell_scores.scores[metric]
            for j, example_id, prediction, reference, question, context in zip(
                where, cell_scores.ids, cell_texts.predictions, cell_texts.references, cell_texts.questions,
                cell_texts.contexts,
            ):
                texts[row][j] = prediction
                known = examples.setdefault(example_id, [question, context, list(reference)])
                known[0], known[1] = known[0] or question, known[1] or context
        scores[method], predictions[method] = matrix, texts
    methods = {}
    for method in ordered_methods(seeds):
        entry: dict[str, Any] = {"seeds": seeds[method], "predictions": predictions[method],
                                 "score": _json(_nanmean(scores[method]))}
        if SFT in seeds and method != SFT:
            entry.update(_versus_sft(method, seeds, scores, predictions))
        methods[method] = entry
    return {"ids": ids, "methods": methods}


def _versus_sft(method: str, seeds: dict[str, list[int]], scores: dict[str, np.ndarray],
                predictions: dict[str, list[list[str | None]]]) -> dict[str, Any]:
    """The paired difference from sft per example and whether some paired seed's prediction differs."""
    if method in REFERENCE_METHODS and len(seeds[method]) == 1:
        pairs = [(0, j) for j in range(len(seeds[SFT]))]
    else:
        pairs = [(seeds[method].index(s), seeds[SFT].index(s)) for s in seeds[method] if s in seeds[SFT]]
    if not pairs:
        return {}
    own, sft = scores[method][[i for i, _ in pairs]], scores[SFT][[j for _, j in pairs]]
    diff = _nanmean(own - sft)
    differs = [int(any(a is not None and b is not None and a != b
                       for a, b in ((predictions[method][i][n], predictions[SFT][j][n]) for i, j in pairs)))
               for n in range(own.shape[1])]
    return {"diff": _json(diff), "differs": differs}


def _nanmean(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: no seed evaluated that example
        return np.nanmean(matrix, axis=0)


def _json(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 2) for v in values]


def browser_html(task: str, slug: str) -> list[str]:
    """The browser's markup for ``task`` (filled by :data:`SCRIPT` from the page's data)."""
    options = (("all", "all examples"), ("differs", "differs from sft"), ("sft-right", "sft right, method wrong"),
               ("method-right", "method right, sft wrong"))
    sorts = (("asc", "difference from sft, method worst first"), ("desc", "difference from sft, method best first"),
             ("order", "example order"))
    return [
        f'<div class="browser" id="examples-{slug}" data-task="{html.escape(task)}">',
        f"<h3>{html.escape(task)} — examples</h3>",
        '<p class="hint">Each evaluation example with the reference, sft\'s and the chosen method\'s predictions and '
        "per-example headline scores (mean over seeds); the difference is paired with sft's seeds. Right: a score of "
        "at least 50. Click a score in the table above to open its examples.</p>",
        '<div class="controls"><label>pair <select class="b-pair"></select></label> '
        '<label>method <select class="b-method"></select></label> <label>show <select class="b-filter">'
        + "".join(f'<option value="{v}">{t}</option>' for v, t in options) + "</select></label> "
        '<label>sort <select class="b-sort">' + "".join(f'<option value="{v}">{t}</option>' for v, t in sorts)
        + '</select></label> <span class="b-count"></span></div>',
        '<table class="examples"><thead><tr><th>example</th><th>question</th><th>reference</th><th>sft</th>'
        '<th class="b-method-head">method</th><th>difference</th><th>every method</th></tr></thead><tbody></tbody>'
        "</table>",
        f'<button type="button" class="b-more">show {PAGE_ROWS} more</button>',
        "</div>",
    ]


SCRIPT = """
(function () {
  var DATA = JSON.parse(document.getElementById("ctkd-data").textContent).examples;
  var PAGE = %(page)d;
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function fmt(v, signed) { return v === null || v === undefined ? "–" : (signed && v > 0 ? "+" : "") + v.toFixed(1); }
  function right(task, v) { return v !== null && (task.higher ? v >= 50 : v <= 50); }
  function predictions(entry, j) {
    // One line per distinct prediction; seeds are named only where they disagree.
    var box = el("div", "preds"), texts = entry.predictions.map(function (p) { return p[j]; });
    var distinct = texts.filter(function (t, s) { return t !== null && texts.indexOf(t) === s; });
    texts.forEach(function (text, s) {
      if (text === null || texts.indexOf(text) !== s) return;
      box.appendChild(el("div", "pred", (distinct.length > 1 ? "seed " + entry.seeds[s] + ": " : "") + (text || "(empty)")));
    });
    return box;
  }
  function predictionCell(entry, j) {
    var td = el("td");
    if (!entry) { td.textContent = "–"; return td; }
    td.appendChild(predictions(entry, j));
    td.appendChild(el("div", "score", "score " + fmt(entry.score[j])));
    return td;
  }
  function setup(box) {
    var task = DATA[box.dataset.task];
    var pairSel = box.querySelector(".b-pair"), methodSel = box.querySelector(".b-method");
    var filterSel = box.querySelector(".b-filter"), sortSel = box.querySelector(".b-sort");
    var body = box.querySelector("tbody"), more = box.querySelector(".b-more"), count = box.querySelector(".b-count");
    var shown = 0, order = [];
    Object.keys(task.pairs).forEach(function (p) { pairSel.appendChild(el("option", null, p)).value = p; });
    function fillMethods(keep) {
      methodSel.textContent = "";
      var methods = Object.keys(task.pairs[pairSel.value].methods);
      methods.forEach(function (m) { methodSel.appendChild(el("option", null, m)).value = m; });
      var first = methods.filter(function (m) { return ["teacher", "untrained", "sft"].indexOf(m) < 0; })[0];
      methodSel.value = keep && methods.indexOf(keep) >= 0 ? keep : first || methods[0];
    }
    function row(pair, method, j) {
      var id = pair.ids[j], example = task.examples[id], entry = pair.methods[method], sft = pair.methods.sft;
      var tr = el("tr");
      tr.dataset.id = id;
      tr.appendChild(el("td", "id", id));
      var q = el("td", "question"), question = example[0], context = example[1];
      if (context) {
        var details = el("details"), summary = el("summary", null, question || context.slice(0, 120) + "…");
        details.appendChild(summary); details.appendChild(el("div", "context", context)); q.appendChild(details);
      } else {
        q.textContent = question || "(not recorded in this store)";
      }
      tr.appendChild(q);
      tr.appendChild(el("td", "reference", example[2].join(" | ")));
      tr.appendChild(predictionCell(sft, j));
      tr.appendChild(predictionCell(entry, j));
      tr.appendChild(el("td", "num diff", entry.diff ? fmt(entry.diff[j], true) : "–"));
      var all = el("td"), fold = el("details", "b-all");
      fold.appendChild(el("summary", null, Object.keys(pair.methods).length + " methods"));
      fold.addEventListener("toggle", function () {
        if (!fold.open || fold.dataset.filled) return;
        fold.dataset.filled = "1";
        Object.keys(pair.methods).forEach(function (m) {
          var line = el("div", "pred", m + " (" + fmt(pair.methods[m].score[j]) + "): ");
          line.appendChild(predictions(pair.methods[m], j));
          fold.appendChild(line);
        });
      });
      all.appendChild(fold);
      tr.appendChild(all);
      return tr;
    }
    function render() {
      var pair = task.pairs[pairSel.value], method = methodSel.value, entry = pair.methods[method];
      var sft = pair.methods.sft, filter = filterSel.value, sort = sortSel.value;
      box.querySelector(".b-method-head").textContent = method || "method";
      order = [];
      if (entry) {
        for (var j = 0; j < pair.ids.length; j++) {
          if (entry.score[j] === null) continue;
          if (filter !== "all") {
            if (!sft || !entry.diff) continue;
            if (filter === "differs" && !entry.differs[j]) continue;
            if (filter === "sft-right" && !(right(task, sft.score[j]) && !right(task, entry.score[j]))) continue;
            if (filter === "method-right" && !(right(task, entry.score[j]) && !right(task, sft.score[j]))) continue;
          }
          order.push(j);
        }
      }
      if (sort !== "order" && entry && entry.diff) {
        var sign = (sort === "asc") === task.higher ? 1 : -1;
        order.sort(function (a, b) {
          var x = entry.diff[a], y = entry.diff[b];
          if (x === null || y === null) return (x === null) - (y === null) || a - b;
          return sign * (x - y) || a - b;
        });
      }
      body.textContent = "";
      shown = 0;
      showMore();
    }
    function showMore() {
      var pair = task.pairs[pairSel.value], method = methodSel.value, end = Math.min(order.length, shown + PAGE);
      var fragment = document.createDocumentFragment();
      for (; shown < end; shown++) fragment.appendChild(row(pair, method, order[shown]));
      body.appendChild(fragment);
      count.textContent = order.length + " examples, " + shown + " shown";
      more.hidden = shown >= order.length;
    }
    pairSel.addEventListener("change", function () { fillMethods(methodSel.value); render(); });
    [methodSel, filterSel, sortSel].forEach(function (s) { s.addEventListener("change", render); });
    more.addEventListener("click", showMore);
    box.show = function (pair, method) {
      if (pair in task.pairs) pairSel.value = pair;
      fillMethods(method);
      render();
      box.scrollIntoView();
    };
    fillMethods();
    render();
  }
  document.querySelectorAll("div.browser").forEach(setup);
  function follow() {
    var parts = decodeURIComponent(location.hash).split("/");
    if (parts[0] !== "#examples" || parts.length !== 4) return;
    var box = Array.prototype.find.call(document.querySelectorAll("div.browser"),
                                        function (b) { return b.dataset.task === parts[1]; });
    if (box) box.show(parts[2], parts[3]);
  }
  window.addEventListener("hashchange", follow);
  follow();
})();
""" % {"page": PAGE_ROWS}
