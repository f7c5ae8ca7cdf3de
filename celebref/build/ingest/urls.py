"""URL-list source: a polite, resumable image crawler on the standard library (urllib + threads).

Input: a CSV with a header naming at least ``url`` (optional ``name``, ``license``, ``author``), or a plain list
with one URL per line. Every URL ends with one recorded outcome: ``ok`` (bytes stored content-addressed under
``cache/blobs``, provenance kept: url, final url, license, author, fetched_at, sha256, content type, HTTP status,
bytes) or a reason: ``robots_disallowed``, ``robots_unavailable``, ``http_<code>``, ``timeout``,
``connection_error``, ``too_large``, ``bad_content_type``, ``not_an_image``, ``bad_url``, ``duplicate_url``.

Politeness and limits (all in ``CrawlConfig``): bounded concurrency (a thread pool), at most
``per_host_concurrency`` requests in flight and ``per_host_rate`` request starts per second per host (robots.txt
``Crawl-delay`` slows a host further), connect/read timeout plus a total deadline per download, retries with
exponential backoff for timeouts, connection errors, 429 and 5xx (``Retry-After`` honoured up to
``backoff_max_s``), Content-Length and streamed-size caps, Content-Type allow-list, an image sniff of the bytes.

Resume: outcomes are appended to ``cache/crawl/state.jsonl`` (one JSON line per URL, flushed as soon as the
download is stored). A rerun skips every URL with a recorded outcome (failures too, unless ``retry_failed``), so an
interrupted crawl continues where it stopped and never re-downloads.

Why not img2dataset or icrawler (see docs/build.md): img2dataset 1.47 would downgrade pandas 3.1 -> 2.3 and
opencv 5.0 -> 4.14 and pulls wandb; icrawler 0.6.10 installs cleanly but has no robots.txt support, no per-host
rate limit, no byte-size or content-type limits, no resume and no provenance records; wrapping it would replace
most of its downloader.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from celebref.build.cache import store_blob
from celebref.build.config import CrawlConfig

log = logging.getLogger("celebref.build.crawl")

ROBOTS_MAX_BYTES = 512 * 1024


@dataclass(frozen=True)
class UrlRow:
    url: str
    name: str | None = None
    license: str | None = None
    author: str | None = None
    line: int = 0


def read_url_list(path: str | Path) -> list[UrlRow]:
    """Parse a URL list: CSV with a ``url`` header column (plus optional name/license/author), or one URL a line."""
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    first = [c.strip().lower() for c in next(csv.reader([lines[0]]))]
    rows: list[UrlRow] = []
    if "url" in first:
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        reader.fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
        for i, r in enumerate(reader, start=2):
            url = (r.get("url") or "").strip()
            rows.append(UrlRow(url, _clean(r.get("name")), _clean(r.get("license")), _clean(r.get("author")), i))
    else:
        for i, ln in enumerate(lines, start=1):
            cells = next(csv.reader([ln]))
            rows.append(UrlRow(cells[0].strip(), _clean(cells[1]) if len(cells) > 1 else None, line=i))
    return rows


def _clean(v) -> str | None:
    v = (v or "").strip()
    return v or None


class CrawlError(Exception):
    def __init__(self, reason: str, detail: str = "", retryable: bool = False, retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


class HostGate:
    """Per-host concurrency (semaphore) and request spacing (1/rate seconds, or the robots Crawl-delay)."""

    def __init__(self, per_host_concurrency: int, per_host_rate: float):
        self._conc = per_host_concurrency
        self._interval = 1.0 / per_host_rate
        self._lock = threading.Lock()
        self._sems: dict[str, threading.Semaphore] = {}
        self._next: dict[str, float] = defaultdict(float)
        self._delay: dict[str, float] = {}

    def set_delay(self, host: str, seconds: float) -> None:
        with self._lock:
            self._delay[host] = max(self._interval, float(seconds))

    def __call__(self, host: str) -> "_HostSlot":
        with self._lock:
            sem = self._sems.setdefault(host, threading.Semaphore(self._conc))
        return _HostSlot(self, host, sem)

    def _wait_turn(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next[host])
            self._next[host] = start + self._delay.get(host, self._interval)
        if start > now:
            time.sleep(start - now)


class _HostSlot:
    def __init__(self, gate: HostGate, host: str, sem: threading.Semaphore):
        self.gate, self.host, self.sem = gate, host, sem

    def __enter__(self):
        self.sem.acquire()
        self.gate._wait_turn(self.host)
        return self

    def __exit__(self, *exc):
        self.sem.release()
        return False


class _NoRedirectToOtherSchemes(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise CrawlError("bad_url", f"redirect to {newurl!r} refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirectToOtherSchemes())


def _http_get(url: str, cfg: CrawlConfig, max_bytes: int, *, check_type: bool) -> tuple[bytes, dict]:
    """One GET, streamed with the size cap and total deadline. Raises CrawlError."""
    req = urllib.request.Request(url, headers={"User-Agent": cfg.user_agent, "Accept": "image/*,*/*;q=0.5"})
    deadline = time.monotonic() + cfg.total_timeout_s
    try:
        resp = _opener().open(req, timeout=cfg.timeout_s)
    except urllib.error.HTTPError as e:
        retry_after = None
        ra = e.headers.get("Retry-After") if e.headers else None
        if ra and ra.strip().isdigit():
            retry_after = float(ra.strip())
        e.close()
        retryable = e.code == 429 or e.code >= 500
        raise CrawlError(f"http_{e.code}", str(e.reason), retryable, retry_after) from None
    except CrawlError:
        raise
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise CrawlError("timeout", "connect/response timeout", True) from None
        raise CrawlError("connection_error", str(e.reason), True) from None
    except (socket.timeout, TimeoutError):
        raise CrawlError("timeout", "response timeout", True) from None
    except (ConnectionError, OSError) as e:
        raise CrawlError("connection_error", str(e), True) from None
    with resp:
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if check_type and ctype and not any(ctype.startswith(t.lower()) for t in cfg.content_types):
            raise CrawlError("bad_content_type", ctype or "(none)")
        clen = resp.headers.get("Content-Length")
        if clen and clen.strip().isdigit() and int(clen) > max_bytes:
            raise CrawlError("too_large", f"Content-Length {clen} > {max_bytes}")
        chunks, total = [], 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise CrawlError("timeout", f"download exceeded {cfg.total_timeout_s}s", True)
                chunk = resp.read(64 * 1024)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise CrawlError("too_large", f"body > {max_bytes} bytes")
                chunks.append(chunk)
        except (socket.timeout, TimeoutError):
            raise CrawlError("timeout", "read timeout", True) from None
        except (ConnectionError, OSError) as e:
            if isinstance(e, CrawlError):
                raise
            raise CrawlError("connection_error", str(e), True) from None
        meta = {"status": int(resp.status), "content_type": ctype or None, "final_url": resp.geturl()}
    return b"".join(chunks), meta


def _backoff(cfg: CrawlConfig, url: str, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(cfg.backoff_max_s, retry_after)
    # deterministic jitter (no global RNG): 0..25% from the url and attempt
    j = int(hashlib.sha256(f"{url}#{attempt}".encode()).hexdigest()[:4], 16) / 0xFFFF * 0.25
    return min(cfg.backoff_max_s, cfg.backoff_s * (2 ** attempt) * (1 + j))


class RobotsCache:
    """robots.txt per origin, fetched once (through the host gate) and parsed with urllib.robotparser."""

    def __init__(self, cfg: CrawlConfig, gate: HostGate):
        self.cfg = cfg
        self.gate = gate
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._parsers: dict[str, tuple[urllib.robotparser.RobotFileParser | None, str]] = {}

    def check(self, url: str) -> str | None:
        """None when allowed, else the reason (robots_disallowed / robots_unavailable)."""
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._parsers:
                self._parsers[origin] = self._fetch(origin, parts.netloc)
        rp, state = self._parsers[origin]
        if state == "unavailable":
            return "robots_unavailable"
        if rp is None:
            return None
        return None if rp.can_fetch(self.cfg.user_agent, url) else "robots_disallowed"

    def _fetch(self, origin: str, host: str):
        rp = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            with self.gate(host):
                data, _ = _http_get(origin + "/robots.txt", self.cfg, ROBOTS_MAX_BYTES, check_type=False)
        except CrawlError as e:
            if e.reason in ("http_401", "http_403"):
                rp.disallow_all = True
                return rp, "ok"
            if e.reason.startswith("http_4"):
                return None, "ok"  # no robots.txt: everything allowed
            log.warning("robots.txt of %s unavailable (%s): treating the host as disallowed", origin, e.reason)
            return None, "unavailable"
        rp.parse(data.decode("utf-8", errors="replace").splitlines())
        delay = rp.crawl_delay(self.cfg.user_agent)
        if delay:
            self.gate.set_delay(host, float(delay))
        return rp, "ok"


def fetch_one(row: UrlRow, cfg: CrawlConfig, gate: HostGate, robots: RobotsCache) -> tuple[bytes | None, dict, str | None]:
    """Download one URL politely. Returns (bytes or None, provenance, reason or None)."""
    prov = {"url": row.url, "license": row.license, "author": row.author}
    parts = urllib.parse.urlsplit(row.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None, prov, "bad_url"
    if cfg.respect_robots:
        why = robots.check(row.url)
        if why:
            return None, prov, why
    attempt = 0
    while True:
        try:
            with gate(parts.netloc):
                data, meta = _http_get(row.url, cfg, cfg.max_bytes, check_type=True)
            break
        except CrawlError as e:
            if e.retryable and attempt < cfg.retries:
                time.sleep(_backoff(cfg, row.url, attempt, e.retry_after))
                attempt += 1
                continue
            prov.update(attempts=attempt + 1, error=e.detail[:200])
            return None, prov, e.reason
    from PIL import Image

    try:
        fmt = Image.open(io.BytesIO(data)).format
    except Exception:
        fmt = None
    prov.update(meta)
    prov.update(attempts=attempt + 1, bytes=len(data), fetched_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if fmt is None:
        return None, prov, "not_an_image"
    prov["sha256"] = hashlib.sha256(data).hexdigest()
    return data, prov, None


class CrawlState:
    """Append-only JSON-lines record of per-URL outcomes (the crawl's resume file). Distributed crawls write one
    part file per host partition next to it (``<state>.part-<hash>.jsonl``); reading merges them all."""

    def __init__(self, path: Path, *, read: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.records: dict[str, dict] = {}
        if not read:
            return
        stem = self.path.name[: -len(".jsonl")] if self.path.name.endswith(".jsonl") else self.path.name
        parts = sorted(self.path.parent.glob(f"{stem}.part-*.jsonl"))
        for f in [self.path, *parts]:
            if not f.is_file():
                continue
            for ln in f.read_text().splitlines():
                try:
                    rec = json.loads(ln)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption: that URL is simply fetched again
                self.records[rec["url"]] = rec

    def add(self, rec: dict) -> None:
        line = json.dumps(rec, sort_keys=True) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
            self.records[rec["url"]] = rec


def _fetch_all(todo: list[UrlRow], cache_root: Path, cfg: CrawlConfig, state: CrawlState) -> None:
    """Fetch ``todo`` with a thread pool, one host gate and robots cache; each outcome is appended to ``state``
    as soon as its bytes are stored."""
    gate = HostGate(cfg.per_host_concurrency, cfg.per_host_rate)
    robots = RobotsCache(cfg, gate)

    def work(r: UrlRow) -> None:
        data, prov, reason = fetch_one(r, cfg, gate, robots)
        rec = {"url": r.url, "line": r.line, "provenance": prov}
        if reason is None:
            path, sha = store_blob(cache_root, data, prov["sha256"])
            rec.update(status="ok", reason=None, sha256=sha, path=str(path))
        else:
            rec.update(status="failed", reason=reason, sha256=None, path=None)
        state.add(rec)

    with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="crawl") as pool:
        for fut in [pool.submit(work, r) for r in todo]:
            fut.result()


def _crawl_partition(payload: tuple) -> dict:
    """Executor task: crawl one host partition (every URL of a host is in one partition, so the per-host
    concurrency, rate and robots.txt rules hold exactly as in a single process)."""
    todo, cache_root, cfg, part_path = payload
    state = CrawlState(Path(part_path), read=False)
    t0 = time.perf_counter()
    _fetch_all(todo, Path(cache_root), cfg, state)
    return {"n": len(todo), "seconds": time.perf_counter() - t0}


def host_partitions(todo: list[UrlRow], n_parts: int) -> list[list[UrlRow]]:
    """Split URLs into at most ``n_parts`` groups by a hash of the host (all URLs of a host together)."""
    groups: dict[int, list[UrlRow]] = defaultdict(list)
    for r in todo:
        host = urllib.parse.urlsplit(r.url).netloc.lower()
        groups[int(hashlib.sha256(host.encode()).hexdigest()[:8], 16) % max(1, n_parts)].append(r)
    return [groups[k] for k in sorted(groups)]


def crawl(rows: list[UrlRow], cache_root: Path, cfg: CrawlConfig, *, state_name: str = "state.jsonl",
          quiet: bool = True, executor=None) -> list[dict]:
    """Fetch every row (skipping those with a recorded outcome). Returns one outcome record per row, in row
    order: ``{"url", "status": "ok"|"failed", "reason", "sha256", "path", "provenance", "name", "line"}``.

    With a multi-worker ``executor`` the URLs are partitioned by host (4 partitions per worker) and each partition
    is crawled by one task with its own thread pool (``crawl.concurrency`` threads per task)."""
    cache_root = Path(cache_root)
    state = CrawlState(cache_root / "crawl" / state_name)
    seen: dict[str, int] = {}
    todo: list[UrlRow] = []
    for r in rows:
        if r.url in seen:
            continue
        seen[r.url] = r.line
        rec = state.records.get(r.url)
        if rec is not None:
            if rec["status"] == "ok" and Path(rec["path"]).is_file():
                continue
            if rec["status"] == "failed" and not cfg.retry_failed:
                continue
        todo.append(r)

    if todo:
        log.info("crawling %d URL(s) (%d already recorded)", len(todo), len(seen) - len(todo))
        if executor is None or executor.workers <= 1:
            _fetch_all(todo, cache_root, cfg, state)
        else:
            parts = host_partitions(todo, executor.workers * 4)
            stem = state.path.name[: -len(".jsonl")]
            payloads = []
            for part in parts:
                h = hashlib.sha256("\n".join(r.url for r in part).encode()).hexdigest()[:12]
                payloads.append((part, str(cache_root), cfg, str(state.path.parent / f"{stem}.part-{h}.jsonl")))
            for _ in executor.run(_crawl_partition, payloads, labels=[f"crawl part {i}" for i in range(len(parts))]):
                pass  # a failed partition leaves its URLs unrecorded: reported below, fetched again by a rerun
            state = CrawlState(state.path)
    out = []
    first_line = {}
    for r in rows:
        if r.url in first_line:
            out.append({"url": r.url, "line": r.line, "status": "failed", "reason": "duplicate_url",
                        "provenance": {"url": r.url, "license": r.license, "author": r.author},
                        "duplicate_of_line": first_line[r.url], "name": r.name, "sha256": None, "path": None})
            continue
        first_line[r.url] = r.line
        if r.url not in state.records:  # its crawl task failed on every attempt (recorded by the executor)
            out.append({"url": r.url, "line": r.line, "status": "failed", "reason": "crawl_task_failed",
                        "provenance": {"url": r.url, "license": r.license, "author": r.author}, "name": r.name,
                        "sha256": None, "path": None})
            continue
        rec = dict(state.records[r.url])
        rec["name"] = r.name
        rec["provenance"] = {**rec.get("provenance", {}), "license": r.license, "author": r.author}
        out.append(rec)
    return out
