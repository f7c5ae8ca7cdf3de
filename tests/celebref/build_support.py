"""Helpers for the `celebref build` tests: subsets of the shared photos (symlinked into a temp folder, never
copied into the repository), a local HTTP server for the crawler, XML landmark truth."""

from __future__ import annotations

import csv
import http.server
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np


def shared_rows(faces_root: Path, kinds=None, sources=None) -> list[dict]:
    rows = list(csv.DictReader(open(faces_root / "manifest.csv", newline="")))
    return [r for r in rows if (kinds is None or r["kind"] in kinds) and (sources is None or r["source"] in sources)]


def link_tree(rows: list[dict], faces_root: Path, dest: Path, *, by: str | None = None, per_group: int | None = None,
              prefix_source: bool = True) -> Path:
    """Symlink shared files into ``dest/<group>/<name>`` (group = row[by], or flat); ``per_group`` caps each."""
    counts: Counter = Counter()
    dest.mkdir(parents=True, exist_ok=True)
    for r in sorted(rows, key=lambda r: (r["source"], r["path"])):
        g = r[by] if by else ""
        if per_group is not None and counts[g] >= per_group:
            continue
        counts[g] += 1
        name = (f"{r['source']}__" if prefix_source else "") + r["path"].replace("/", "__")
        target = dest / g / name if g else dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(faces_root / r["source"] / r["path"])
    return dest


def dlib_xml_faces(faces_root: Path):
    """(image path, box (x1,y1,x2,y2), (68,2) truth) from dlib's *_with_face_landmarks.xml."""
    out = []
    for x in sorted((faces_root / "dlib").glob("**/*_with_face_landmarks.xml")):
        root = ET.parse(x).getroot()
        for img in root.iter("image"):
            for box in img.iter("box"):
                parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
                if len(parts) != 68:
                    continue
                b = [float(box.get(k)) for k in ("left", "top", "width", "height")]
                out.append((x.parent / img.get("file"), (b[0], b[1], b[0] + b[2], b[1] + b[3]),
                            np.array([parts[i] for i in range(68)], np.float64)))
    return out


def reference_ffhq_quad(lm: np.ndarray) -> np.ndarray:
    """The FFHQ quad written out from NVlabs/ffhq-dataset recreate_aligned_images (independent of celebref)."""
    lm = np.asarray(lm, np.float64)
    lm_eye_left, lm_eye_right, lm_mouth_outer = lm[36:42], lm[42:48], lm[48:60]
    eye_left = np.mean(lm_eye_left, axis=0)
    eye_right = np.mean(lm_eye_right, axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_left = lm_mouth_outer[0]
    mouth_right = lm_mouth_outer[6]
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


# ------------------------------------------------------------------------------------------ HTTP test server
class Site:
    """A local test site for the crawler (loopback only). Routes are set per test; every request is counted."""

    def __init__(self):
        self.routes: dict[str, dict] = {}
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with site.lock:
                    site.hits[path] += 1
                    n = site.hits[path]
                route = site.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                if route.get("delay"):
                    time.sleep(route["delay"])
                statuses = route.get("statuses")
                status = statuses[min(n - 1, len(statuses) - 1)] if statuses else route.get("status", 200)
                body = route.get("body", b"")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", route.get("type", "image/jpeg"))
                    if route.get("length", True):
                        self.send_header("Content-Length", str(route.get("declared", len(body))))
                    self.end_headers()
                    if status < 400:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self):
        self.server.shutdown()
        self.server.server_close()
