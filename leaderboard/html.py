"""One static, self-contained HTML page for the leaderboard.

Inline CSS and vanilla JS only, images embedded as ``data:`` URIs, a Content-Security-Policy that forbids every
external load, so the file can be mailed or opened from disk. Tables sort on a header click (first click puts the
best value first, using the column's recorded ``higher_is_better``); best values are highlighted; 95% CIs shown.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from leaderboard.grids import Grid
from leaderboard.plots import Plot
from leaderboard.store import Skipped
from leaderboard.tables import Table, display_name, short_hash

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#24292f;color:#fff;padding:1rem 2rem}header h1{margin:0 0 .3rem 0;font-size:1.5rem}
header p{margin:.2rem 0;color:#d0d7de;font-size:.9rem}nav a{color:#9ecbff;margin-right:1rem}
main{padding:1rem 2rem;max-width:1600px}section.lb{margin-bottom:2rem}
h2{font-size:1.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
p.meta{font-size:.85rem;color:#57606a;margin:.2rem 0 .6rem 0}code{font-size:.85em}
table.sortable{border-collapse:collapse;font-size:.9rem;background:#fff}
table.sortable th,table.sortable td{border:1px solid #d0d7de;padding:.3rem .55rem;text-align:left;white-space:nowrap}
table.sortable td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody.published td{background:#f6f8fa;color:#57606a}
table.sortable th{background:#f0f3f6;cursor:pointer;user-select:none;position:relative;padding-right:1.2rem}
table.sortable th[aria-sort=ascending]::after{content:"\\25B2";position:absolute;right:.3rem;font-size:.65rem}
table.sortable th[aria-sort=descending]::after{content:"\\25BC";position:absolute;right:.3rem;font-size:.65rem}
td.best{background:#dafbe1;font-weight:700}span.ci{display:block;font-weight:400;font-size:.75rem;color:#57606a}
td.na{color:#8c959f}ul.notes{font-size:.85rem;color:#57606a}
figure{margin:0 0 1.5rem 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #d0d7de;background:#fff}figcaption{font-size:.85rem;color:#57606a}
details{margin:.5rem 0}
"""

JS = r"""
(function () {
  "use strict";
  function cellValue(td, type) {
    var v = td.getAttribute("data-value");
    if (v === null) { v = td.textContent; }
    if (type === "num") { var f = parseFloat(v); return isNaN(f) ? null : f; }
    return String(v).toLowerCase();
  }
  function sortTable(table, col, th) {
    var type = th.getAttribute("data-type") || "text";
    var cur = th.getAttribute("aria-sort");
    var dir;
    if (cur === "ascending") { dir = "descending"; }
    else if (cur === "descending") { dir = "ascending"; }
    else { dir = (type === "num" && th.getAttribute("data-hib") === "true") ? "descending" : "ascending"; }
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[col], type), y = cellValue(b.cells[col], type);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.tabIndex = 0;
      th.title = th.title || "click to sort";
      th.addEventListener("click", function () { sortTable(table, i, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, i, th); }
      });
    });
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
"""


def e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def published_html_rows(t: Table) -> list[str]:
    """Rows of the cited table (class "published", not sorted with the runs) and Δ rows (ours − published)."""
    from leaderboard.published import fmt_diff

    b = t.published
    out = []
    for ln in b.lines:
        cells = [f'<td>{e(ln.method)} <em>published</em></td>', f'<td title="{e(b.citation)}">{e(b.table)}</td>',
                 "<td>—</td>", "<td></td>"]
        cells += [f'<td class="num">{e(ln.texts.get(m, "—"))}</td>' for m in t.metrics]
        out.append(f'<tr class="published" data-published="{e(ln.method)}">' + "".join(cells) + "</tr>")
    for d in b.diffs:
        cells = [f'<td>Δ {e(d.run_label)} − {e(d.method)} <em>published</em></td>', "<td></td>", "<td></td>",
                 "<td></td>"]
        cells += [f'<td class="num">{e(fmt_diff(d.diffs[m]) if m in d.diffs else "—")}</td>' for m in t.metrics]
        out.append(f'<tr class="published delta" data-published="{e(d.method)}">' + "".join(cells) + "</tr>")
    return out


def table_html(t: Table, idx: int) -> str:
    head = [
        '<th data-type="text">Model</th>', '<th data-type="text">Weights</th>',
        '<th data-type="text">Test-set hash</th>', '<th data-type="num">Scored</th>',
    ]
    for m in t.metrics:
        hib = t.higher_is_better.get(m)
        hib_attr = "" if hib is None else f' data-hib="{"true" if hib else "false"}"'
        tip = ("higher is better" if hib else "lower is better") if hib is not None else "direction unknown"
        head.append(f'<th data-type="num" data-metric="{e(m)}"{hib_attr} title="{e(display_name(m))}: {tip}; '
                    f'click to sort">{e(t.header(m))}</th>')
    body = []
    for r in t.rows:
        w_txt = f"{e(r.weights_name)} <code>{e(short_hash(r.weights_sha256))}</code>" if r.weights_sha256 \
            else e(r.weights_name or "—")
        cells = [
            f'<td data-value="{e(r.label)}">{e(r.label)}</td>',
            f'<td data-value="{e(r.weights_name)}" title="sha256 {e(r.weights_sha256 or "none")}">{w_txt}</td>',
            f'<td data-value="{e(r.testset_hash)}" title="{e(r.testset_hash)}"><code>{e(short_hash(r.testset_hash))}'
            f'</code></td>',
            f'<td class="num" data-value="{"" if r.n_scored is None else int(r.n_scored)}">'
            f'{"" if r.n_scored is None else int(r.n_scored)}/{"" if r.n_images is None else int(r.n_images)}</td>',
        ]
        for m in t.metrics:
            c = r.cells.get(m)
            if c is None:
                cells.append('<td class="num na" data-value="">—</td>')
            elif c.mean is None:
                cells.append(f'<td class="num na" data-value="" title="{e(c.unavailable or "not computed")}">n/a</td>')
            else:
                cls = "num best" if c.best else "num"
                ci = f'<span class="ci">95% CI {e(c.ci_text)}</span>' if c.ci_text else ""
                n = f' title="n = {int(c.n)}"' if c.n is not None else ""
                cells.append(f'<td class="{cls}" data-value="{float(c.mean)!r}"{n}>{e(c.text)}{ci}</td>')
        body.append(f'<tr data-model="{e(r.label)}" data-weights="{e(r.weights_sha256)}" '
                    f'data-testset="{e(r.testset_hash)}">' + "".join(cells) + "</tr>")
    sev = f", severity {t.severity:g}" if t.severity is not None else ""
    notes = [f"<li>{e(display_name(m))} n/a: {e(why)}</li>" for m, why in sorted(
        {(m, c.unavailable) for r in t.rows for m, c in r.cells.items() if c.unavailable})]
    notes += [f"<li>{e(n)}</li>" for n in t.notes]
    published = ""
    if t.published is not None:  # a second tbody: the sort script orders only the first (the runs)
        published = f'<tbody class="published">{"".join(published_html_rows(t))}</tbody>'
        notes += [f"<li>{e(t.published.caption)}</li>"] + [f"<li>{e(n)}</li>" for n in t.published.notes]
    return (
        f'<section class="lb" id="{e(t.key)}"><h2>{e(t.title)}</h2>'
        f'<p class="meta">test set <code>{e(t.testset_name)}</code> hash <code>{e(t.testset_hash)}</code> · preset '
        f'<code>{e(t.preset or "?")}</code> {e(t.preset_version)}{e(sev)} · dataset '
        f'<code>{e(short_hash(t.dataset_hash))}</code></p>'
        f'<table class="sortable lb-table" id="table-{idx}" data-testset="{e(t.testset_name)}" data-mode="{e(t.mode)}">'
        f'<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody>{published}</table>'
        + (f'<ul class="notes">{"".join(notes)}</ul>' if notes else "") + "</section>"
    )


def render(tables: list[Table], plots: list[Plot], grids: list[Grid], skipped: list[Skipped],
           title: str = "CelebRef-HQ leaderboard", notes: list[str] | None = None) -> str:
    nav = ['<a href="#tables">Tables</a>']
    if plots:
        nav.append('<a href="#plots">Plots</a>')
    if grids:
        nav.append('<a href="#grids">Visual comparison</a>')
    if skipped:
        nav.append('<a href="#skipped">Skipped files</a>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{e(title)}</h1>",
        f"<p>{len(tables)} table(s) · {sum(len(t.rows) for t in tables)} run row(s). ↑ higher is better, "
        "↓ lower is better, as recorded by each metric; best value per column highlighted; small print is the "
        "95% confidence interval of the mean. Click a column header to sort (first click: best first).</p>",
        f"<nav>{' '.join(nav)}</nav></header><main>",
        '<section id="tables">',
    ]
    if not tables:
        parts.append("<p>No results found.</p>")
    parts += [table_html(t, i) for i, t in enumerate(tables)]
    parts.append("</section>")
    if plots:
        parts.append('<section id="plots"><h2>Plots</h2>')
        for p in plots:
            parts.append(f'<figure class="plot plot-{e(p.kind)}"><img src="{data_uri(p.png)}" alt="{e(p.title)}">'
                         f"<figcaption>{e(p.title)}. {e(p.caption)}</figcaption></figure>")
        parts.append("</section>")
    if grids:
        parts.append('<section id="grids"><h2>Visual comparison</h2>')
        for g in grids:
            cap = f"{g.title}: columns {' | '.join(g.columns)}; images {', '.join(g.image_ids)}."
            parts.append(f'<figure class="grid"><img src="{data_uri(g.png)}" alt="{e(g.title)}">'
                         f"<figcaption>{e(cap)}</figcaption>")
            if g.notes:
                parts.append("<details><summary>notes</summary><ul class=\"notes\">"
                             + "".join(f"<li>{e(n)}</li>" for n in g.notes) + "</ul></details>")
            parts.append("</figure>")
        parts.append("</section>")
    if skipped:
        parts.append(f'<section id="skipped"><h2>Skipped result files ({len(skipped)})</h2><ul class="notes">')
        parts += [f"<li><code>{e(s.path)}</code>{' metric <code>' + e(s.metric) + '</code>' if s.metric else ''}: "
                  f"{e(s.reason)}</li>" for s in skipped]
        parts.append("</ul></section>")
    if notes:
        parts.append('<section id="notes"><h2>Notes</h2><ul class="notes">'
                     + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></section>")
    parts.append(f"</main><script>{JS}</script></body></html>")
    return "\n".join(parts)


def write_html(path: str | os.PathLike, *args, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(*args, **kwargs), encoding="utf-8")
    os.replace(tmp, path)
    return path
