"""The page's training curves: per task × pair a folded block of panels (:mod:`leaderboards.curves`), drawn as inline
SVG by :data:`SCRIPT` from the page's data when the block is open, so a large store's page loads without drawing
thousands of lines. A cell whose training log is missing or damaged is named above its pair's panels."""
from __future__ import annotations

import html
from typing import Any

from leaderboards.curves import Line, PairCurves

OPEN_UP_TO = 100  # trained cells: a store this small opens every block at load; a larger one opens on a click


def curves_json(curves: tuple[PairCurves, ...]) -> dict[str, list[dict[str, Any]]]:
    """"<task>/<pair>" -> its panels, as the script reads them."""
    return {f"{c.task}/{c.pair}": [
        {"title": panel.title, "series": [
            {"name": s.name, "color": s.color, "seeds": [[seed, *_arrays(line)] for seed, line in s.seeds],
             "mean": _arrays(s.mean)} for s in panel.series]}
        for panel in c.panels] for c in curves}


def _arrays(line: Line) -> list[list[float]]:
    return [list(line.steps), [float(f"{v:.6g}") for v in line.values]]


def curves_html(task: str, curves: list[PairCurves], open_blocks: bool) -> list[str]:
    if not curves:
        return []
    parts = [f'<div class="curves"><h3>{html.escape(task)} — training curves</h3>',
             '<p class="hint">From each cell\'s <code>train_log.jsonl</code>; x: optimizer step; thin lines: seeds, '
             "thick: their mean.</p>"]
    for pair in curves:
        parts.append(f'<details class="curve-pair" data-key="{html.escape(f"{pair.task}/{pair.pair}")}"'
                     f'{" open" if open_blocks else ""}><summary>{html.escape(pair.pair)}</summary>')
        if pair.problems:
            parts += ['<ul class="problems">',
                      *(f"<li>no curve for {html.escape(problem)}</li>" for problem in pair.problems), "</ul>"]
        parts += ['<div class="panels"></div>', "</details>"]
    return parts + ["</div>"]


SCRIPT = """
(function () {
  var DATA = JSON.parse(document.getElementById("ctkd-data").textContent).curves;
  var W = 380, H = 230, L = 56, R = 12, T = 24, B = 34;
  function ticks(low, high) {
    var raw = (high - low) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = mag;
    [1, 2, 5, 10].some(function (m) { step = m * mag; return step >= raw; });
    var out = [];
    for (var v = Math.ceil(low / step) * step; v <= high + 1e-12 * Math.abs(high); v += step) out.push(v);
    return out;
  }
  function label(v) { return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(1) : String(+v.toPrecision(4)); }
  function panel(spec) {
    var xs = [], ys = [];
    spec.series.forEach(function (s) {
      s.seeds.forEach(function (seed) { xs = xs.concat(seed[1]); ys = ys.concat(seed[2]); });
    });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    var pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1; y0 -= pad; y1 += pad;
    function px(x) { return (L + (x - x0) / (x1 - x0) * (W - L - R)).toFixed(1); }
    function py(y) { return (H - B - (y - y0) / (y1 - y0) * (H - T - B)).toFixed(1); }
    function path(steps, values, color, width, opacity) {
      var points = steps.map(function (s, i) { return px(s) + "," + py(values[i]); }).join(" ");
      if (steps.length === 1) return '<circle cx="' + px(steps[0]) + '" cy="' + py(values[0]) + '" r="' + (width + 1) + '" fill="' + color + '" opacity="' + opacity + '"/>';
      return '<polyline fill="none" stroke="' + color + '" stroke-width="' + width + '" opacity="' + opacity + '" points="' + points + '"/>';
    }
    var svg = ['<svg class="curve" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + ' ' + H + '" role="img">',
               '<text x="' + (W / 2) + '" y="14" text-anchor="middle" font-size="12" font-weight="600"></text>'];
    ticks(y0, y1).forEach(function (v) {
      svg.push('<line x1="' + L + '" x2="' + (W - R) + '" y1="' + py(v) + '" y2="' + py(v) + '" stroke="#eaeef2"/>');
      svg.push('<text x="' + (L - 4) + '" y="' + (+py(v) + 4) + '" text-anchor="end" font-size="10">' + label(v) + '</text>');
    });
    ticks(x0, x1).forEach(function (v) {
      svg.push('<text x="' + px(v) + '" y="' + (H - B + 14) + '" text-anchor="middle" font-size="10">' + label(v) + '</text>');
    });
    svg.push('<text x="' + ((L + W - R) / 2) + '" y="' + (H - 4) + '" text-anchor="middle" font-size="10" fill="#57606a">optimizer step</text>');
    svg.push('<rect x="' + L + '" y="' + T + '" width="' + (W - L - R) + '" height="' + (H - T - B) + '" fill="none" stroke="#8c959f"/>');
    spec.series.forEach(function (s) {
      var many = s.seeds.length > 1;
      s.seeds.forEach(function (seed) { svg.push(path(seed[1], seed[2], s.color, many ? 1 : 2, many ? 0.35 : 1)); });
      if (many) svg.push(path(s.mean[0], s.mean[1], s.color, 2.2, 1));
    });
    svg.push("</svg>");
    var figure = document.createElement("figure");
    figure.className = "panel";
    figure.innerHTML = svg.join("");
    figure.querySelector("text").textContent = spec.title;
    var legend = document.createElement("figcaption");
    spec.series.forEach(function (s) {
      var item = document.createElement("span");
      item.className = "key";
      item.innerHTML = '<svg width="14" height="4"><rect width="14" height="4"></rect></svg>';
      item.querySelector("rect").setAttribute("fill", s.color);
      item.appendChild(document.createTextNode(" " + s.name + (s.seeds.length > 1 ? " (" + s.seeds.length + " seeds)" : "")));
      legend.appendChild(item);
    });
    figure.appendChild(legend);
    return figure;
  }
  function draw(block) {
    if (!block.open || block.dataset.drawn) return;
    block.dataset.drawn = "1";
    var box = block.querySelector(".panels");
    (DATA[block.dataset.key] || []).forEach(function (spec) { box.appendChild(panel(spec)); });
  }
  document.querySelectorAll("details.curve-pair").forEach(function (block) {
    block.addEventListener("toggle", function () { draw(block); });
    draw(block);
  });
})();
"""
