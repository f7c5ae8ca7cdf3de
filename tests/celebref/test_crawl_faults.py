"""Fault injection for the URL-list crawler, against a loopback server that misbehaves on purpose: bytes dripped
forever, stalls before/after the headers, bodies beyond Content-Length or max_bytes, redirects to file:, a crawl
rerun from another directory with the list copied or moved, a failure after a success, and request headers
(a token) under debug logging. The time bounds below are hang guards (generous), not speed checks."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import shutil
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from bfrcore.cliutil import setup_logging
from celebref.ingest import ingest_sources, parse_source
from celebref.ingest.urls import CrawlState, crawl, read_url_list
from celebref.ingest.blobs import blob_path
from celebref.pipeline.config import CrawlConfig, parse_config
from tests.celebref.build_support import Site
from tests.helpers import tiny_image

#: no fault response lasts longer than this (so even a crawler that never gives up ends, and fails the bounds)
FAULT_MAX_S = 20.0
#: hang guard: a crawl whose URLs are all limited to ~2 s must be back well within this
BOUND_S = 10.0


def _jpeg(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(tiny_image(40, 40, seed=seed)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class FaultServer:
    """A loopback HTTP/1.0 server on raw sockets (so it can drip, stall and oversend). ``routes`` maps a path to
    ``fn(server, sock)``; unknown paths get 404. Every request is counted and its headers kept. A response gives
    up by itself after ``FAULT_MAX_S`` or at :meth:`close`, whichever comes first."""

    def __init__(self, tls: ssl.SSLContext | None = None, stall_handshake: bool = False):
        self.routes: dict = {}
        self.hits: Counter = Counter()
        self.request_headers: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        srv = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                sock.settimeout(5)
                data = b""
                try:
                    if stall_handshake:  # TLS: the ClientHello is never answered
                        srv.keep_going(time.monotonic(), FAULT_MAX_S)
                        return
                    if tls is not None:
                        sock = tls.wrap_socket(sock, server_side=True)
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = sock.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
                    path = head.split("\r\n")[0].split(" ")[1]
                    with srv.lock:
                        srv.hits[path] += 1
                        srv.request_headers.append(head)
                    fn = srv.routes.get(path)
                    if fn is None:
                        sock.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    else:
                        fn(srv, sock)
                except OSError:  # the crawler hung up (as it should at its deadline)
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        scheme = "http" if tls is None and not stall_handshake else "https"
        self.base = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def keep_going(self, t0: float, every: float) -> bool:
        """Wait ``every`` seconds; False once the server is closing or the response has run FAULT_MAX_S."""
        return not self.stop.wait(every) and time.monotonic() - t0 < FAULT_MAX_S

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ misbehaviours (fn(server, sock))
def ok(body: bytes, ctype: str = "image/jpeg"):
    def fn(srv, sock):
        sock.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return fn


def drip_body(srv, sock):  # headers at once, then one byte every 0.2 s, no Content-Length, never ending
    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n")
    t0 = time.monotonic()
    while srv.keep_going(t0, 0.2):
        sock.sendall(b"\xff")


def drip_headers(srv, sock):  # the status line, then a header line that grows by a byte every 0.2 s
    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nX-Slow: ")
    t0 = time.monotonic()
    while srv.keep_going(t0, 0.2):
        sock.sendall(b"a")


def stall_after_headers(srv, sock):  # promises 5000 bytes, sends 100, then nothing
    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n" + b"\xff" * 100)
    srv.keep_going(time.monotonic(), FAULT_MAX_S)


def stall_before_headers(srv, sock):  # reads the request, answers nothing
    srv.keep_going(time.monotonic(), FAULT_MAX_S)


def oversend_length(body: bytes):  # Content-Length = the image, then 256 KiB more, connection left open
    def fn(srv, sock):
        sock.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body + b"\0" * (256 * 1024))
        srv.keep_going(time.monotonic(), FAULT_MAX_S)
    return fn


def oversend_endless(srv, sock):  # no Content-Length, 16 KiB blocks as fast as they go, never ending
    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n")
    t0 = time.monotonic()
    while srv.keep_going(t0, 0.0):
        sock.sendall(b"\xff" * 16384)


def status(code: int):
    def fn(srv, sock):
        sock.sendall(f"HTTP/1.0 {code} Busy\r\nContent-Length: 0\r\n\r\n".encode())
    return fn


def redirect(location: str, code: int = 302):
    def fn(srv, sock):
        sock.sendall(f"HTTP/1.0 {code} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
    return fn


@pytest.fixture
def faults():
    s = FaultServer()
    yield s
    s.close()


#: per-URL limit 2 s, inactivity timeout 5 s (longer: the 2 s must win), retries that must not stretch it
FAULTY = dict(timeout_s=5.0, total_timeout_s=2.0, retries=2, backoff_s=0.05, backoff_max_s=0.2, per_host_rate=500.0,
              concurrency=8, per_host_concurrency=8, respect_robots=False, max_bytes=100_000)


def _write_list(path: Path, urls: list[str]) -> Path:
    path.write_text("url,name,license,author\n" + "".join(f"{u},,CC0,\n" for u in urls))
    return path


# ------------------------------------------------------------------ 1. deadlines hold whatever the server does
def test_per_url_deadline_holds_against_dripping_stalling_and_oversending_servers(faults, tmp_path):
    img = _jpeg(1)
    faults.routes.update({
        "/ok.jpg": ok(img), "/drip.jpg": drip_body, "/drip-headers.jpg": drip_headers,
        "/stall-after.jpg": stall_after_headers, "/stall-before.jpg": stall_before_headers,
        "/oversend-length.jpg": oversend_length(img), "/oversend-endless.jpg": oversend_endless,
    })
    paths = ["/ok.jpg", "/drip.jpg", "/drip-headers.jpg", "/stall-after.jpg", "/stall-before.jpg",
             "/oversend-length.jpg", "/oversend-endless.jpg"]
    lst = _write_list(tmp_path / "urls.csv", [faults.url(p) for p in paths])
    t0 = time.monotonic()
    out = crawl(read_url_list(lst), tmp_path / "cache", CrawlConfig(**FAULTY))
    elapsed = time.monotonic() - t0
    assert elapsed < BOUND_S, f"crawl of 2 s-limited URLs took {elapsed:.1f} s"
    assert [r["url"] for r in out] == [faults.url(p) for p in paths]  # every URL reported, none dropped
    by = {r["url"].replace(faults.base, ""): r for r in out}
    for p in ("/drip.jpg", "/drip-headers.jpg", "/stall-after.jpg", "/stall-before.jpg"):
        assert by[p]["status"] == "failed" and by[p]["reason"] == "timeout", (p, by[p])
        assert "total_timeout_s=2" in by[p]["provenance"]["error"], (p, by[p]["provenance"])
        assert faults.hits[p] == 1, p  # the URL's 2 s are spent: no retry past them
    assert by["/ok.jpg"]["status"] == "ok"
    # bytes beyond Content-Length are not read, and the open connection is not waited on
    assert by["/oversend-length.jpg"]["status"] == "ok" and by["/oversend-length.jpg"]["sha256"] == \
        hashlib.sha256(img).hexdigest()
    assert by["/oversend-endless.jpg"]["reason"] == "too_large"
    recorded = CrawlState(tmp_path / "cache" / "crawl" / "state.jsonl").records
    assert set(recorded) == {faults.url(p) for p in paths}


def test_inactivity_timeout_is_retried_within_the_url_budget(faults, tmp_path):
    faults.routes["/stall-after.jpg"] = stall_after_headers
    lst = _write_list(tmp_path / "u.csv", [faults.url("/stall-after.jpg")])
    cfg = CrawlConfig(**{**FAULTY, "timeout_s": 0.5, "total_timeout_s": 8.0, "retries": 1})
    out = crawl(read_url_list(lst), tmp_path / "cache", cfg)
    assert out[0]["reason"] == "timeout" and "no data for 0.5 s" in out[0]["provenance"]["error"]
    assert faults.hits["/stall-after.jpg"] == 2 and out[0]["provenance"]["attempts"] == 2


def test_whole_crawl_deadline_reports_every_url_and_records_none_cut(faults, tmp_path):
    img = _jpeg(2)
    faults.routes["/ok.jpg"] = ok(img)
    drips = [f"/drip{i}.jpg" for i in range(5)]
    for p in drips:
        faults.routes[p] = drip_body
    lst = _write_list(tmp_path / "urls.csv", [faults.url(p) for p in ["/ok.jpg", *drips]])
    # each URL alone may take 60 s; the whole crawl 2 s. Two downloads at a time: some drips never even start.
    cfg = parse_config({"crawl": {**FAULTY, "total_timeout_s": 60.0, "deadline_s": 2.0, "concurrency": 2,
                                  "per_host_concurrency": 2}})
    t0 = time.monotonic()
    res = ingest_sources([parse_source(str(lst))], tmp_path / "cache", cfg)
    elapsed = time.monotonic() - t0
    assert elapsed < BOUND_S, f"a crawl with deadline_s=2 took {elapsed:.1f} s"
    assert [it["source_path"] for it in res.items] == [faults.url("/ok.jpg")]
    cut = {r["source_path"]: r["reject_reason"] for r in res.rejects}
    assert cut == {faults.url(p): "crawl_deadline" for p in drips}  # every URL has its outcome, none dropped
    state = CrawlState(tmp_path / "cache" / "crawl" / "state.jsonl")
    assert set(state.records) == {faults.url("/ok.jpg")}  # cut URLs are not recorded: a rerun fetches them
    with pytest.raises(ValueError, match="deadline_s"):
        parse_config({"crawl": {"deadline_s": 0}})


@pytest.fixture
def tls_pair(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1 (made with the openssl tool) that the crawler's default TLS
    context trusts (SSL_CERT_FILE), and the server-side context."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_deadline_holds_over_tls_including_a_stalled_handshake(tls_pair, tmp_path):
    img = _jpeg(5)
    tls, stalled = FaultServer(tls=tls_pair), FaultServer(stall_handshake=True)
    try:
        tls.routes.update({"/ok.jpg": ok(img), "/drip.jpg": drip_body, "/stall-after.jpg": stall_after_headers})
        urls = [tls.url("/ok.jpg"), tls.url("/drip.jpg"), tls.url("/stall-after.jpg"), stalled.url("/x.jpg")]
        lst = _write_list(tmp_path / "u.csv", urls)
        t0 = time.monotonic()
        out = crawl(read_url_list(lst), tmp_path / "cache", CrawlConfig(**FAULTY))
        elapsed = time.monotonic() - t0
    finally:
        tls.close()
        stalled.close()
    assert elapsed < BOUND_S, f"crawl of 2 s-limited https URLs took {elapsed:.1f} s"
    assert out[0]["status"] == "ok" and out[0]["sha256"] == hashlib.sha256(img).hexdigest()
    for r in out[1:]:
        assert r["reason"] == "timeout" and "total_timeout_s=2" in r["provenance"]["error"], r


def test_a_retry_denied_by_the_crawl_deadline_is_not_a_final_failure(faults, tmp_path):
    faults.routes["/busy.jpg"] = status(503)
    lst = _write_list(tmp_path / "u.csv", [faults.url("/busy.jpg")])
    cfg = CrawlConfig(**{**FAULTY, "retries": 2, "backoff_s": 5.0, "backoff_max_s": 5.0, "total_timeout_s": 30.0,
                         "deadline_s": 1.0})
    out = crawl(read_url_list(lst), tmp_path / "cache", cfg)
    assert out[0]["reason"] == "crawl_deadline" and faults.hits["/busy.jpg"] == 1
    assert CrawlState(tmp_path / "cache" / "crawl" / "state.jsonl").records == {}  # a rerun tries it again
    out = crawl(read_url_list(lst), tmp_path / "cache", CrawlConfig(**{**FAULTY, "retries": 0}))
    assert out[0]["reason"] == "http_503" and faults.hits["/busy.jpg"] == 2


# ------------------------------------------------------------------ 2. the crawl state survives cwd / list moves
@pytest.fixture
def site():
    s = Site()
    s.routes["/robots.txt"] = {"body": b"User-agent: *\nDisallow:\n", "type": "text/plain"}
    yield s
    s.close()


QUICK = dict(timeout_s=2.0, total_timeout_s=5.0, retries=0, per_host_rate=500.0, concurrency=4, per_host_concurrency=4)


def test_rerun_from_another_directory_with_the_list_copied_refetches_nothing(site, tmp_path, monkeypatch):
    imgs = {f"/img/{i}.jpg": _jpeg(20 + i) for i in range(3)}
    for p, b in imgs.items():
        site.routes[p] = {"body": b}
    urls = [site.url(p) for p in imgs] + [site.url("/gone.jpg")]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    lst = _write_list(tmp_path / "a" / "urls.csv", urls)
    cfg = parse_config({"crawl": QUICK})

    def summary(res):
        return (sorted((it["source_path"], it["item_id"]) for it in res.items),
                sorted((r["source_path"], r["reject_reason"]) for r in res.rejects))

    monkeypatch.chdir(tmp_path / "a")  # run 1: `celebref build --source urls.csv --out out` inside a/
    first = ingest_sources([parse_source("urls.csv")], Path("out/cache"), cfg)
    assert len(first.items) == 3 and [r["reject_reason"] for r in first.rejects] == ["http_404"]
    hits = dict(site.hits)

    shutil.copy(lst, tmp_path / "b" / "copy.csv")  # run 2: from b/, the list copied, --out ../a/out
    monkeypatch.chdir(tmp_path / "b")
    second = ingest_sources([parse_source("copy.csv")], Path("../a/out/cache"), cfg)
    assert dict(site.hits) == hits  # nothing fetched again (the recorded 404 neither)
    assert summary(second) == summary(first)

    site.close()  # run 3: the host is down, the list moved, from c/
    shutil.move(tmp_path / "b" / "copy.csv", tmp_path / "c" / "moved.csv")
    monkeypatch.chdir(tmp_path / "c")
    third = ingest_sources([parse_source("moved.csv")], tmp_path / "a" / "out" / "cache", cfg)
    assert summary(third) == summary(first)  # earlier successes kept, nothing replaced by failures
    for it in third.items:
        data = Path(it["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == it["item_id"] and data == imgs[it["source_path"][len(site.base):]]
    state_lines = [json.loads(ln) for f in sorted((tmp_path / "a" / "out" / "cache" / "crawl").glob("*.jsonl"))
                   for ln in f.read_text().splitlines()]
    assert len(state_lines) == 4  # one outcome per URL, written once
    assert all(not Path(r["path"]).is_absolute() for r in state_lines if r["path"])  # relative to the cache


def test_failed_refetch_keeps_the_earlier_success(site, tmp_path):
    a, b = _jpeg(30), _jpeg(31)
    site.routes["/a.jpg"] = {"body": a}
    site.routes["/b.jpg"] = {"body": b}
    lst = _write_list(tmp_path / "u.csv", [site.url("/a.jpg"), site.url("/b.jpg")])
    cache = tmp_path / "cache"
    cfg = CrawlConfig(**QUICK)
    out1 = crawl(read_url_list(lst), cache, cfg)
    assert [r["status"] for r in out1] == ["ok", "ok"]
    blob_path(cache, out1[0]["sha256"]).unlink()  # a's download is lost; the host then answers 503 for it
    site.routes["/a.jpg"] = {"body": a, "status": 503}
    out2 = crawl(read_url_list(lst), cache, cfg)
    assert site.hits["/a.jpg"] == 2 and site.hits["/b.jpg"] == 1  # only the lost download is fetched again
    assert out2[0]["status"] == "failed" and out2[0]["reason"] == "http_503" and out2[0]["earlier_success_kept"]
    assert out2[1]["status"] == "ok" and out2[1]["sha256"] == out1[1]["sha256"]
    rec = CrawlState(cache / "crawl" / "state.jsonl").records[site.url("/a.jpg")]
    assert rec["status"] == "ok" and rec["sha256"] == out1[0]["sha256"]  # the success is still the record
    site.routes["/a.jpg"] = {"body": a}  # back up: the failure was not final (retry_failed is off)
    out3 = crawl(read_url_list(lst), cache, cfg)
    assert out3[0]["status"] == "ok" and out3[0]["sha256"] == out1[0]["sha256"] and site.hits["/a.jpg"] == 3
    assert Path(out3[0]["path"]).read_bytes() == a


def test_state_of_earlier_versions_is_read_from_any_directory(site, tmp_path, monkeypatch):
    """A per-list state file with a cwd-relative path (the old layout): the download is found by its sha256."""
    img = _jpeg(40)
    cache = tmp_path / "cache"
    sha = hashlib.sha256(img).hexdigest()
    blob_path(cache, sha).parent.mkdir(parents=True)
    blob_path(cache, sha).write_bytes(img)
    (cache / "crawl").mkdir()
    old = {"url": site.url("/x.jpg"), "line": 2, "status": "ok", "reason": None, "sha256": sha,
           "path": f"out/cache/blobs/{sha[:2]}/{sha}", "provenance": {"url": site.url("/x.jpg"), "sha256": sha}}
    (cache / "crawl" / "state-0123456789ab.jsonl").write_text(json.dumps(old) + "\n")
    monkeypatch.chdir(tmp_path)
    out = crawl(read_url_list(_write_list(tmp_path / "l.csv", [site.url("/x.jpg")])), cache, CrawlConfig(**QUICK))
    assert out[0]["status"] == "ok" and Path(out[0]["path"]).read_bytes() == img and site.hits["/x.jpg"] == 0


# ------------------------------------------------------------------ 3. redirects to other schemes are bad_url
def test_redirect_to_a_non_http_scheme_is_bad_url_and_not_followed(faults, tmp_path):
    img = _jpeg(3)
    secret_file = tmp_path / "secret.jpg"
    secret_file.write_bytes(img)
    faults.routes.update({
        "/to-file.jpg": redirect(secret_file.as_uri()),
        "/to-ftp.jpg": redirect("ftp://127.0.0.1/x.jpg", 301),
        "/to-data.jpg": redirect("data:image/jpeg;base64,/9j/", 307),
        "/to-local.jpg": redirect("/real.jpg"),  # a relative http redirect is followed
        "/real.jpg": ok(img),
    })
    paths = ["/to-file.jpg", "/to-ftp.jpg", "/to-data.jpg", "/to-local.jpg"]
    lst = _write_list(tmp_path / "u.csv", [faults.url(p) for p in paths])
    out = crawl(read_url_list(lst), tmp_path / "cache", CrawlConfig(**FAULTY))
    by = {r["url"].replace(faults.base, ""): r for r in out}
    for p, scheme in (("/to-file.jpg", "file"), ("/to-ftp.jpg", "ftp"), ("/to-data.jpg", "data")):
        assert by[p]["reason"] == "bad_url", (p, by[p])
        assert f"redirect to a {scheme}: URL refused" in by[p]["provenance"]["error"]
        assert faults.hits[p] == 1
    assert by["/to-local.jpg"]["status"] == "ok" and by["/to-local.jpg"]["provenance"]["final_url"] == \
        faults.url("/real.jpg")


# ------------------------------------------------------------------ 4. request headers never reach a log
@pytest.fixture
def cli_debug_logging(caplog):
    """The CLI's -vv logging setup (bfrcore.cliutil.setup_logging(2)), undone afterwards; caplog still sees it."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = ("PIL", "matplotlib", "urllib3", "httpx", "httpx2", "httpcore", "httpcore2", "numba", "filelock", "fsspec")
    levels = {n: logging.getLogger(n).level for n in names}
    caplog.set_level(logging.DEBUG)
    setup_logging(verbose=2)  # basicConfig(force=True): replaces the root handlers, caplog's too
    root.addHandler(caplog.handler)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for n, lv in levels.items():
        logging.getLogger(n).setLevel(lv)


def _urllib_handler_init_of_python_312(self, debuglevel=None):
    """urllib.request.AbstractHTTPHandler.__init__ as of Python 3.12: the level follows http.client's global."""
    self._debuglevel = debuglevel if debuglevel is not None else http.client.HTTPConnection.debuglevel


@pytest.mark.parametrize("urllib_default", ["python311", "python312"])
def test_request_headers_never_reach_the_debug_log(faults, tmp_path, capfd, caplog, cli_debug_logging,
                                                   monkeypatch, urllib_default):
    secret = "Bearer-s3cr3t-7f2a9c"
    img = _jpeg(4)
    faults.routes.update({"/robots.txt": ok(b"User-agent: *\nDisallow:\n", "text/plain"),
                          "/a.jpg": ok(img), "/r.jpg": redirect("/a.jpg"), "/z.jpg": redirect("file:///etc/passwd")})
    # something in the process switched http.client's debug output on (it prints every request header)
    monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 1)
    if urllib_default == "python312":
        monkeypatch.setattr(urllib.request.AbstractHTTPHandler, "__init__", _urllib_handler_init_of_python_312)
    capfd.readouterr()
    lst = _write_list(tmp_path / "u.csv", [faults.url(p) for p in ("/a.jpg", "/r.jpg", "/missing.jpg", "/z.jpg")])
    cfg = CrawlConfig(**{**FAULTY, "respect_robots": True, "user_agent": f"celebref-test {secret}"})
    out = crawl(read_url_list(lst), tmp_path / "cache", cfg)
    logging.getLogger("celebref.pipeline.crawl").debug("debug-marker-1b9e")
    captured = capfd.readouterr()
    assert "debug-marker-1b9e" in caplog.text and "debug-marker-1b9e" in captured.err  # capture works
    assert secret not in caplog.text
    assert secret not in captured.out and secret not in captured.err
    assert sum(secret in h for h in faults.request_headers) == 6  # it was sent (robots, a, r, a, missing, z)
    assert [r["reason"] for r in out] == [None, None, "http_404", "bad_url"]
    assert logging.getLogger("urllib3").getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.INFO
