"""The review page (``celebref review DATASET`` -> ``review.html``): one self-contained HTML file (inline CSS and JS,
no server, no external resource) that shows every identity as a grid of its faces ordered by distance to the
identity centre, flagged identities first, with buttons to split faces off, merge identities, reject a face or an
identity. "Save curation" downloads ``curation.json`` (and shows it in ``<pre id="curation-json">``) for
``celebref build --curation``. Images are relative links to the dataset's ``images/`` (the page works from
``file://`` as long as it stays where it was written relative to the dataset)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from bfrcore.imageio import write_bytes_atomic
from celebref.review.analysis import Review
from celebref.review.curation import FORMAT

CSP = ("default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 24px;z-index:2}
main{padding:8px 24px;max-width:1500px}h1{font-size:20px;margin:4px 0}
.muted{color:#777;font-size:12px}button{font-size:12px;margin:2px;cursor:pointer}
button:disabled{cursor:default}
.ident{border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:6px 10px}
.ident.flagged{border-color:#d9822b;background:#fffaf3}.ident.rejected{opacity:.45}
.ident h2{font-size:15px;margin:2px 0}.flag{color:#a35200;font-size:12px;margin:1px 0}
.grid{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.grid figure{margin:0;width:96px;font-size:10px;text-align:center}
.grid img{width:96px;height:96px;display:block;cursor:pointer;border:3px solid transparent}
.grid figure.sel img{border-color:#2b6cd9}.grid figure.outlier img{outline:2px dashed #d33;outline-offset:-5px}
.grid figure.gone{opacity:.3}.grid figure.moved figcaption{color:#2b6cd9}
#log{font-size:12px;max-height:120px;overflow:auto}pre#curation-json{font-size:11px;background:#f4f4f4;
max-height:200px;overflow:auto;padding:4px}
"""

JS = r"""
'use strict';
const DATA = JSON.parse(document.getElementById('review-data').textContent);
const FACE = {};
for (const g of DATA.identities) for (const f of g.faces) FACE[f.face_id] = Object.assign({home: g.identity}, f);
let actions = [];
let selected = new Set();
const mergeChoice = {};  // identity key -> chosen merge target (kept across re-renders)

function derive() {
  // the same semantics as celebref.review.curation.apply_curation, in seq order
  const groups = new Map(), groupOf = {}, rejected = {}, touched = {};
  for (const g of DATA.identities) {
    const name = g.name && g.aliases.length ? g.name + ' (also ' + g.aliases.join(', ') + ')' : g.name;
    groups.set(g.identity, {key: g.identity, label: g.identity, name, faces: g.faces.map(f => f.face_id)});
    for (const f of g.faces) groupOf[f.face_id] = g.identity;
  }
  const tag = (f, a) => { touched[f] = (touched[f] ? touched[f] + ';' : '') + a.action + '#' + a.seq; };
  const remove = f => { const k = groupOf[f]; delete groupOf[f]; const g = groups.get(k);
    g.faces = g.faces.filter(x => x !== f); if (!g.faces.length) groups.delete(k); };
  for (const a of actions.slice().sort((p, q) => p.seq - q.seq)) {
    if (a.action === 'reject_face') {
      if (!(a.face_id in groupOf)) continue;
      remove(a.face_id); rejected[a.face_id] = a; tag(a.face_id, a);
    } else if (a.action === 'reject_identity') {
      const k = groupOf[a.face_id]; if (k === undefined) continue;
      for (const f of groups.get(k).faces.slice()) { remove(f); rejected[f] = a; tag(f, a); }
    } else if (a.action === 'merge') {
      const s = groupOf[a.face_id], t = groupOf[a.into];
      if (s === undefined || t === undefined || s === t) continue;
      const src = groups.get(s), dst = groups.get(t);
      dst.faces = dst.faces.concat(src.faces).sort();
      for (const f of src.faces) { groupOf[f] = t; tag(f, a); }
      groups.delete(s);
    } else if (a.action === 'split') {
      const known = a.face_ids.filter(f => f in groupOf);
      if (!known.length) continue;
      for (const f of known) remove(f);
      const key = 'split#' + a.seq;
      groups.set(key, {key, label: 'new identity (split #' + a.seq + ')', name: null, faces: known.slice().sort()});
      for (const f of known) { groupOf[f] = key; tag(f, a); }
    }
  }
  return {groups, groupOf, rejected, touched};
}

function anchor(g) { return g.faces.slice().sort()[0]; }

function add(action) {
  for (const k of Object.keys(mergeChoice)) delete mergeChoice[k];
  action.seq = actions.length ? Math.max(...actions.map(a => a.seq)) + 1 : 1;
  actions.push(action);
  selected.clear();
  render();
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function faceFigure(fid, st, gkey) {
  const f = FACE[fid];
  const gone = fid in st.rejected;
  const cls = [selected.has(fid) ? 'sel' : '', f.outlier ? 'outlier' : '', gone ? 'gone' : '',
               (!gone && gkey !== f.home) ? 'moved' : ''].join(' ');
  const img = el('img', {src: f.src, alt: f.image_id, title: fid, loading: 'lazy',
                         onclick: () => { if (gone) return; selected.has(fid) ? selected.delete(fid) : selected.add(fid); render(); }});
  const cap = el('figcaption', {}, f.image_id + ' · ' + f.d.toFixed(3));
  const btn = gone ? null : el('button', {class: 'reject-face', title: 'reject this face',
                                          onclick: () => add({action: 'reject_face', face_id: fid})}, 'reject');
  return el('figure', {class: cls, 'data-face-id': fid}, img, cap, btn);
}

function render() {
  const st = derive();
  const root = document.getElementById('identities');
  root.textContent = '';
  const order = [];
  for (const g of DATA.identities) {
    if (st.groups.has(g.identity)) order.push([st.groups.get(g.identity), g]);
    else order.push([null, g]);
    for (const [k, ng] of st.groups) if (k.startsWith('split#') && FACE[ng.faces[0]].home === g.identity &&
                                          !order.some(o => o[0] === ng)) order.push([ng, null]);
  }
  for (const [k, ng] of st.groups) if (!order.some(o => o[0] === ng)) order.push([ng, null]);
  const live = order.filter(o => o[0]).map(o => o[0]);
  for (const [g, orig] of order) {
    if (!g) {  // an original identity that is gone (merged away or rejected)
      const gone = orig.faces.filter(f => f.face_id in st.rejected);
      const sec = el('section', {class: 'ident rejected', 'data-identity': orig.identity, 'data-state': 'gone'},
                     el('h2', {}, orig.identity + (orig.name ? ' — ' + orig.name : '') +
                        (gone.length === orig.faces.length ? ' (rejected)' : ' (merged away)')));
      root.append(sec);
      continue;
    }
    const flagged = orig && orig.flags.length;
    const sec = el('section', {class: 'ident' + (flagged ? ' flagged' : ''), 'data-identity': g.key});
    sec.append(el('h2', {}, g.label + (g.name ? ' — ' + g.name : '') + ' · ' + g.faces.length + ' face(s)'));
    if (orig) for (const fl of orig.flags) sec.append(el('div', {class: 'flag'}, '⚑ ' + fl));
    const nsel = g.faces.filter(f => selected.has(f)).length;
    const bar = el('div', {class: 'bar'});
    bar.append(el('button', {class: 'split', disabled: !nsel || nsel === g.faces.length,
                              onclick: () => add({action: 'split', face_ids: g.faces.filter(f => selected.has(f)).sort()})},
                  'split off ' + nsel + ' selected'));
    const selEl = el('select', {class: 'merge-target', onchange: () => { mergeChoice[g.key] = selEl.value; }},
                     el('option', {value: ''}, 'merge with…'));
    for (const o of live) if (o !== g) selEl.append(el('option', {value: o.key}, o.label + (o.name ? ' — ' + o.name : '')));
    if (mergeChoice[g.key] && st.groups.has(mergeChoice[g.key])) selEl.value = mergeChoice[g.key];
    bar.append(selEl);
    bar.append(el('button', {class: 'merge', onclick: () => {
      const t = st.groups.get(selEl.value); if (!t) return;
      add({action: 'merge', face_id: anchor(g), into: anchor(t)}); }}, 'merge'));
    bar.append(el('button', {class: 'reject-identity',
                              onclick: () => add({action: 'reject_identity', face_id: anchor(g)})}, 'reject identity'));
    sec.append(bar);
    const grid = el('div', {class: 'grid'});
    const faces = g.faces.slice().sort((p, q) => FACE[p].d - FACE[q].d || (p < q ? -1 : 1));
    for (const f of faces) grid.append(faceFigure(f, st, g.key));
    if (orig) for (const f of orig.faces) if (f.face_id in st.rejected) grid.append(faceFigure(f.face_id, st, g.key));
    sec.append(grid);
    root.append(sec);
  }
  const log = document.getElementById('log');
  log.textContent = '';
  for (const a of actions) log.append(el('div', {class: 'action'}, '#' + a.seq + ' ' + a.action + ' ' +
    (a.face_id || '') + (a.into ? ' → ' + a.into : '') + (a.face_ids ? a.face_ids.join(', ') : '')));
  document.getElementById('n-actions').textContent = String(actions.length);
  document.getElementById('undo').disabled = !actions.length;
}

function curationDoc() {
  return {format: DATA.format, dataset_hash: DATA.dataset_hash, created: new Date().toISOString(),
          actions: actions.map(a => Object.assign({}, a))};
}

function save() {
  const text = JSON.stringify(curationDoc(), null, 2);
  document.getElementById('curation-json').textContent = text;
  const url = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
  const a = el('a', {href: url, download: 'curation.json'});
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

document.getElementById('save').addEventListener('click', save);
document.getElementById('undo').addEventListener('click', () => { actions.pop(); selected.clear(); render(); });
render();
document.documentElement.setAttribute('data-ready', '1');
"""


def _src(page_dir: Path, root: Path, relpath: str) -> str:
    rel = os.path.relpath(root / relpath, page_dir).replace(os.sep, "/")
    return quote(rel, safe="/._-~")


def page_data(review: Review, root: Path, page_dir: Path) -> dict:
    """The JSON the page's script renders (identities in review order, faces by distance to the centre)."""
    return {
        "format": FORMAT, "dataset_hash": review.dataset_hash, "metric": review.metric,
        "threshold": review.threshold,
        "identities": [{
            "identity": r.identity, "name": r.name, "aliases": list(r.aliases), "split": r.split,
            "flags": list(r.flags), "impure": r.impure,
            "near": [[o, round(d, 6)] for o, d in r.near],
            "faces": [{"face_id": f.face_id, "image_id": f.image_id, "src": _src(page_dir, root, f.path),
                       "d": round(f.distance, 6), "outlier": f.outlier} for f in r.faces],
        } for r in review.identities],
    }


def write_page(review: Review, root: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the review page to ``out`` (images linked relative to it); returns the path."""
    root, out = Path(root).resolve(), Path(out)
    page_dir = out.parent.resolve()
    data = json.dumps(page_data(review, root, page_dir), sort_keys=True).replace("</", "<\\/")
    n_flag = sum(1 for r in review.identities if r.flags)
    n_faces = sum(len(r.faces) for r in review.identities)
    origin = ", ".join(f"{v} {'read from the build cache' if k == 'cache' else k}"
                       for k, v in sorted(review.embeddings_from.items()) if v) or "none"
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<link rel="icon" href="data:,">
<title>celebref review — {html.escape(root.name)}</title><style>{CSS}</style></head>
<body>
<header><h1>Review: {html.escape(root.name)}</h1>
<div class="muted">{len(review.identities)} identities, {n_faces} kept faces, {n_flag} flagged (impure or near-merge,
shown first). Faces are ordered by {html.escape(review.metric)} distance to their identity's centre (dashed: farther
than the clustering threshold {review.threshold:g} from the others). Embeddings: {html.escape(origin)}.
Click faces to select them. Dataset hash <code>{review.dataset_hash[:16]}</code>.</div>
<div><button id="save">save curation</button><button id="undo">undo last</button>
<span class="muted"><span id="n-actions">0</span> action(s); apply with
<code>celebref build --curation curation.json</code> (same sources and --out)</span></div>
<div id="log"></div></header>
<main><div id="identities"></div>
<h2>curation.json</h2><pre id="curation-json"></pre></main>
<script type="application/json" id="review-data">{data}</script>
<script>{JS}</script>
</body></html>
"""
    write_bytes_atomic(out, doc.encode("utf-8"))
    return out
