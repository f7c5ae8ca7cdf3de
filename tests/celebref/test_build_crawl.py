"""The URL-list crawler against a local HTTP server: robots.txt, 404, timeouts, retries with backoff, oversize
bodies, non-images, provenance, and an interrupted crawl (killed process) resumed without re-downloading.
Misbehaving servers (drips, stalls, redirects to file:), reruns from elsewhere and header logging:
test_crawl_faults.py."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from celebref.ingest import ingest_sources, parse_source
from celebref.ingest.urls import crawl, read_url_list
from celebref.ingest.config import CrawlConfig
from celebref.pipeline.config import parse_config
from tests.celebref.build_support import Site
from tests.helpers import PROJECT_ROOT, tiny_image


def _jpeg(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(tiny_image(40, 40, seed=seed)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def site():
    s = Site()
    s.routes["/robots.txt"] = {"body": b"User-agent: *\nDisallow: /private/\n", "type": "text/plain"}
    yield s
    s.close()


FAST = dict(timeout_s=0.5, total_timeout_s=3.0, retries=1, backoff_s=0.05, backoff_max_s=0.2, per_host_rate=200.0,
            concurrency=4, per_host_concurrency=4, max_bytes=20_000)


def test_crawl_outcomes_and_provenance(site, tmp_path):
    good, good2 = _jpeg(1), _jpeg(2)
    site.routes.update({
        "/img/a.jpg": {"body": good},
        "/img/b.jpg": {"body": good2},
        "/private/c.jpg": {"body": good},
        "/page.html": {"body": b"<html>hi</html>", "type": "text/html"},
        "/fake.jpg": {"body": b"this is not an image at all", "type": "image/jpeg"},
        "/big.jpg": {"body": b"x" * 100, "declared": 10_000_000},
        "/bigstream.jpg": {"body": b"\xff" * 50_000, "length": False},
        "/slow.jpg": {"body": good, "delay": 1.5},
        "/flaky.jpg": {"body": good, "statuses": [503, 200]},
    })
    lst = tmp_path / "urls.csv"
    paths = ["/img/a.jpg", "/img/b.jpg", "/private/c.jpg", "/missing.jpg", "/page.html", "/fake.jpg", "/big.jpg",
             "/bigstream.jpg", "/slow.jpg", "/flaky.jpg", "/img/a.jpg"]
    lines = ["url,name,license,author"] + [f"{site.url(p)},person{i % 2},CC-BY-4.0,author{i}"
                                          for i, p in enumerate(paths)]
    lines.append("ftp://example.invalid/x.jpg,,,")
    lst.write_text("\n".join(lines) + "\n")
    cfg = CrawlConfig(**FAST)
    t0 = time.monotonic()
    out = crawl(read_url_list(lst), tmp_path / "cache", cfg)
    assert time.monotonic() - t0 < 20
    by = {r["url"].replace(site.base, ""): r for r in out if r["reason"] != "duplicate_url"}
    assert by["/img/a.jpg"]["status"] == "ok" and by["/img/b.jpg"]["status"] == "ok"
    assert by["/private/c.jpg"]["reason"] == "robots_disallowed"
    assert site.hits["/private/c.jpg"] == 0  # robots.txt respected: never requested
    assert by["/missing.jpg"]["reason"] == "http_404"
    assert site.hits["/missing.jpg"] == 1  # 4xx is final, not retried
    assert by["/page.html"]["reason"] == "bad_content_type"
    assert by["/fake.jpg"]["reason"] == "not_an_image"
    assert by["/big.jpg"]["reason"] == "too_large"
    assert by["/bigstream.jpg"]["reason"] == "too_large"
    assert by["/slow.jpg"]["reason"] == "timeout"
    assert site.hits["/slow.jpg"] == 2  # first try + one retry
    assert by["/flaky.jpg"]["status"] == "ok" and by["/flaky.jpg"]["provenance"]["attempts"] == 2
    assert by["ftp://example.invalid/x.jpg"]["reason"] == "bad_url"
    assert [r["reason"] for r in out].count("duplicate_url") == 1
    assert site.hits["/robots.txt"] == 1  # fetched once per host
    a = by["/img/a.jpg"]
    prov = a["provenance"]
    assert prov["license"] == "CC-BY-4.0" and prov["author"] == "author0" and prov["fetched_at"]
    assert prov["content_type"] == "image/jpeg" and prov["status"] == 200
    assert Path(a["path"]).read_bytes() == good and a["sha256"] == prov["sha256"]


def test_robots_unreachable_host_is_not_crawled(tmp_path):
    # a closed port: robots.txt cannot be fetched -> the host is treated as disallowed (no image request made)
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    lst = tmp_path / "u.txt"
    lst.write_text(f"http://127.0.0.1:{port}/a.jpg\n")
    out = crawl(read_url_list(lst), tmp_path / "cache", CrawlConfig(**FAST))
    assert out[0]["reason"] == "robots_unavailable"


def test_url_source_through_ingest(site, tmp_path):
    site.routes["/x.jpg"] = {"body": _jpeg(3)}
    site.routes["/y.jpg"] = {"body": _jpeg(3)}  # the same bytes at another URL: an exact duplicate
    lst = tmp_path / "list.csv"
    lst.write_text(f"url,name,license,author\n{site.url('/x.jpg')},ann,CC0,me\n{site.url('/y.jpg')},ann,CC0,me\n"
                   f"{site.url('/nope.jpg')},bob,,\n")
    cfg = parse_config({"crawl": FAST})
    res = ingest_sources([parse_source(str(lst))], tmp_path / "cache", cfg)
    assert len(res.items) == 1
    it = res.items[0]
    assert it["source_kind"] == "urls" and it["name"] == "ann" and it["provenance"]["license"] == "CC0"
    reasons = sorted(r["reject_reason"] for r in res.rejects)
    assert reasons == ["exact_duplicate", "http_404"]


_CHILD = r"""
import sys
from pathlib import Path
from celebref.ingest.config import CrawlConfig
from celebref.ingest.urls import crawl, read_url_list
cfg = CrawlConfig(concurrency=1, per_host_concurrency=1, per_host_rate=1000.0, timeout_s=5, retries=0)
crawl(read_url_list(sys.argv[1]), Path(sys.argv[2]), cfg)
"""


def test_interrupted_crawl_resumes_without_refetching(site, tmp_path):
    n = 8
    for i in range(n):
        site.routes[f"/r/{i}.jpg"] = {"body": _jpeg(10 + i), "delay": 0.25}
    lst = tmp_path / "urls.txt"
    lst.write_text("".join(site.url(f"/r/{i}.jpg") + "\n" for i in range(n)))
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(lst), str(cache)], env=env)
    state = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        f = cache / "crawl" / "state.jsonl"  # one state per cache, keyed by URL
        if f.is_file() and len(f.read_text().splitlines()) >= 3:
            state = f
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state is not None, "the child crawl never recorded 3 outcomes"
    done_before = {json.loads(ln)["url"] for ln in state.read_text().splitlines() if ln.strip()}
    assert 3 <= len(done_before) < n, "the crawl was not interrupted part-way"
    hits_before = dict(site.hits)
    out = crawl(read_url_list(lst), cache, CrawlConfig(concurrency=2, per_host_rate=1000.0, timeout_s=5),
                state_name=state.name)
    assert [r["status"] for r in out] == ["ok"] * n
    for u in done_before:  # finished downloads are not fetched again
        p = u.replace(site.base, "")
        assert site.hits[p] == hits_before[p] == 1
    assert sum(site.hits[f"/r/{i}.jpg"] for i in range(n)) <= n + 1  # at most the one in flight at the kill
