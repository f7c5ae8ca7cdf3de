"""URL-list source: a polite, resumable image crawler on the standard library (urllib + threads).

Input: a CSV with a header naming at least ``url`` (optional ``name``, ``license``, ``author``), or a plain list
with one URL per line. Every URL ends with one recorded outcome: ``ok`` (bytes stored content-addressed under
``cache/blobs``, provenance kept: url, final url, license, author, fetched_at, sha256, content type, HTTP status,
bytes) or a reason: ``robots_disallowed``, ``robots_unavailable``, ``http_<code>``, ``timeout``,
``connection_error``, ``too_large``, ``bad_content_type``, ``not_an_image``, ``bad_url``, ``duplicate_url``,
``crawl_deadline``, ``crawl_task_failed`` (docs/build.md has the table).

Politeness and limits (all in ``CrawlConfig``): bounded concurrency (a thread pool), at most
``per_host_concurrency`` requests in flight and ``per_host_rate`` request starts per second per host (robots.txt
``Crawl-delay`` slows a host further), retries with exponential backoff for timeouts, connection errors, 429 and
5xx (``Retry-After`` honoured up to ``backoff_max_s``), Content-Length and streamed-size caps, Content-Type
allow-list, an image sniff of the bytes, redirects to http(s) only.

Time limits hold whatever the server does (drips, stalls, oversends): ``timeout_s`` per network step,
``total_timeout_s`` per URL (all attempts), ``deadline_s`` per crawl. Reads are small and use the time left as
their socket timeout, and a :class:`Budget` timer shuts the download's sockets down at the deadline.

Resume: outcomes are appended to ``cache/crawl/state.jsonl`` (one JSON line per URL, flushed as soon as the
download is stored), keyed by URL; downloads are found by sha256 under the cache, so neither the working
directory nor the list's path matters. A rerun skips every URL with a recorded outcome (failures too, unless
``retry_failed``), so an interrupted crawl continues where it stopped and never re-downloads; a success is never
replaced by a later failure.

Why not img2dataset or icrawler (see docs/build.md): img2dataset 1.47 would downgrade pandas 3.1 -> 2.3 and
opencv 5.0 -> 4.14 and pulls wandb; icrawler 0.6.10 installs cleanly but has no robots.txt support, no per-host
rate limit, no byte-size or content-type limits, no resume and no provenance records; wrapping it would replace
most of its downloader.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import math
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
from datetime import UTC, datetime
from pathlib import Path

from celebref.ingest.blobs import blob_path, store_blob
from celebref.ingest.config import CrawlConfig

log = logging.getLogger("celebref.pipeline.crawl")

ROBOTS_MAX_BYTES = 512 * 1024
#: bytes asked for per read: a read returns whatever arrived (at most one recv), so deadlines are checked often
READ_CHUNK = 16 * 1024
#: reason of a URL the crawl's deadline_s cut off: not written to the state file, so a rerun fetches it
CRAWL_DEADLINE = "crawl_deadline"
#: reason of a URL whose crawl task died before recording an outcome (also fetched again by a rerun)
CRAWL_TASK_FAILED = "crawl_task_failed"


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


class Budget:
    """The time one download may still take (monotonic seconds): the URL's own ``total_timeout_s`` and the whole
    crawl's ``deadline_s``, whichever comes first. Every socket opened for the download is watched: at the deadline
    a timer shuts it down, so a blocked connect/read/TLS handshake returns at once whatever the server does (drips
    bytes, stalls before or after the headers). Reads between use ``io_timeout()`` = min(``timeout_s``, time left).
    """

    def __init__(self, url_until: float, crawl_until: float | None, io_timeout_s: float, total_timeout_s: float):
        self.url_until = url_until
        self.crawl_until = crawl_until
        self.at = url_until if crawl_until is None else min(url_until, crawl_until)
        self.io_timeout_s = io_timeout_s
        self.total_timeout_s = total_timeout_s
        self.expired = False
        self.sock: socket.socket | None = None  # the socket the response is read from (the last one opened)
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def left(self) -> float:
        return self.at - time.monotonic()

    def spent(self) -> bool:
        return self.expired or self.left() <= 0

    def error(self) -> CrawlError:
        """The error for a download cut by this budget (not retryable: no time is left)."""
        if self.crawl_until is not None and self.crawl_until <= self.url_until:
            return CrawlError(CRAWL_DEADLINE, "the crawl's deadline_s passed during the download")
        return CrawlError("timeout", f"download exceeded total_timeout_s={self.total_timeout_s:g} s")

    def io_timeout(self) -> float:
        """Socket timeout for the next blocking call; raises the budget's error when no time is left."""
        left = self.left()
        if left <= 0 or self.expired:
            self.expired = True
            raise self.error()
        return max(0.01, min(self.io_timeout_s, left))

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed:
                return
            self._socks.append(sock)
            self.sock = sock
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self.left()), self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.expired = True
            for s in self._socks:
                try:  # the plain socket's shutdown (also under TLS): wakes a blocked recv/send with EOF or an error
                    socket.socket.shutdown(s, socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed (its fd is -1 then, so no other socket can be hit)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()


def _lookup(host: str, port: int, timeout: float) -> list:
    """socket.getaddrinfo bounded by ``timeout`` (it has no timeout of its own): the lookup runs in a daemon
    thread, left to finish on its own when it overruns. Numeric addresses need no lookup thread."""
    try:
        ipaddress.ip_address(host)
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except ValueError:
        pass
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="crawl-dns", daemon=True).start()
    if not done.wait(timeout):
        raise CrawlError("timeout", f"name lookup of {host} took over {timeout:.3g} s", True)
    if "error" in box:
        raise box["error"]
    return box["infos"]


def _connect(address: tuple, budget: Budget, source_address=None) -> socket.socket:
    """socket.create_connection with the name lookup bounded by the budget too, every socket watched by it."""
    host, port = address[0], address[1]
    try:
        infos = _lookup(host, port, budget.io_timeout())
    except CrawlError:
        if budget.spent():
            raise budget.error() from None
        raise
    err: OSError | None = None
    for family, socktype, proto, _, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            budget.watch(sock)
            sock.settimeout(budget.io_timeout())
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            err = e
            sock.close()
        except BaseException:
            sock.close()
            raise
    raise err if err is not None else OSError(f"no address for {host}")


class _WatchedConnection(http.client.HTTPConnection):
    """HTTP connection whose sockets are opened through :func:`_connect` and watched by a :class:`Budget`. Its
    debug level is pinned to 0: http.client's debug output prints request headers (a token) to stdout."""

    debuglevel = 0

    def __init__(self, host, *, budget: Budget, **kw):
        super().__init__(host, **kw)
        self._budget = budget
        self._create_connection = lambda addr, timeout=None, src=None: _connect(addr, budget, src)

    def set_debuglevel(self, level) -> None:
        self.debuglevel = 0


class _WatchedHTTPSConnection(_WatchedConnection, http.client.HTTPSConnection):
    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP (and a proxy tunnel), watched
        sni = self._tunnel_host or self.host
        self.sock = self._context.wrap_socket(self.sock, server_hostname=sni, do_handshake_on_connect=False)
        self._budget.watch(self.sock)
        self.sock.settimeout(self._budget.io_timeout())
        self.sock.do_handshake()


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, budget: Budget):
        super().__init__(debuglevel=0)
        self._budget = budget

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedConnection, budget=self._budget), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, budget: Budget):
        super().__init__(debuglevel=0)
        self._budget = budget

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPSConnection, budget=self._budget), req,
                            context=self._context, check_hostname=self._check_hostname)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most 5 redirects, to http(s) only: any other target (file:, ftp:, data:, ...) is ``bad_url``."""

    max_redirections = 5

    def http_error_302(self, req, fp, code, msg, headers):
        loc = headers.get("location") or headers.get("uri")
        if loc:
            target = urllib.parse.urljoin(req.full_url, loc.strip())
            scheme = urllib.parse.urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                fp.close()
                raise CrawlError("bad_url", f"HTTP {code} redirect to a {scheme or 'scheme-less'}: URL refused "
                                            f"({target[:120]!r}); only http/https is followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):  # belt and braces
            raise CrawlError("bad_url", f"redirect to a non-http(s) URL refused ({newurl[:120]!r})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _http_get(url: str, cfg: CrawlConfig, max_bytes: int, *, check_type: bool, budget: Budget) -> tuple[bytes, dict]:
    """One GET within ``budget``, streamed in small reads with the size cap. Raises CrawlError."""
    req = urllib.request.Request(url, headers={"User-Agent": cfg.user_agent, "Accept": "image/*,*/*;q=0.5"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects(), _HTTPHandler(budget), _HTTPSHandler(budget))
    try:
        try:
            resp = opener.open(req, timeout=budget.io_timeout())
        except urllib.error.HTTPError as e:
            retry_after = None
            ra = e.headers.get("Retry-After") if e.headers else None
            if ra and ra.strip().isdigit():
                retry_after = float(ra.strip())
            e.close()
            retryable = e.code == 429 or e.code >= 500
            raise CrawlError(f"http_{e.code}", str(e.reason)[:200], retryable, retry_after) from None
        except CrawlError:
            if budget.spent():
                raise budget.error() from None
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise _transport_error(e, budget, "while waiting for the response") from None
        except ValueError as e:  # unparsable URL (bad port, control characters, ...)
            raise CrawlError("bad_url", str(e)[:200]) from None
        with resp:
            return _read_body(resp, cfg, max_bytes, check_type, budget)
    finally:
        budget.close()


def _transport_error(e: BaseException, budget: Budget, when: str) -> CrawlError:
    if budget.spent():
        return budget.error()
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, CrawlError):
        return reason
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return CrawlError("timeout", f"no data for {budget.io_timeout_s:g} s {when}", True)
    if isinstance(reason, http.client.InvalidURL):
        return CrawlError("bad_url", str(reason)[:200])
    return CrawlError("connection_error", f"{type(reason).__name__}: {reason}"[:200], True)


def _read_body(resp, cfg: CrawlConfig, max_bytes: int, check_type: bool, budget: Budget) -> tuple[bytes, dict]:
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if check_type and ctype and not any(ctype.startswith(t.lower()) for t in cfg.content_types):
        raise CrawlError("bad_content_type", ctype or "(none)")
    clen = resp.headers.get("Content-Length")
    if clen and clen.strip().isdigit() and int(clen) > max_bytes:
        raise CrawlError("too_large", f"Content-Length {clen} > {max_bytes}")
    chunks, total = [], 0
    try:
        while True:
            timeout = budget.io_timeout()  # raises once the deadline has passed
            if budget.sock is not None:
                budget.sock.settimeout(timeout)
            chunk = resp.read1(READ_CHUNK)  # at most one recv: returns as soon as some bytes arrived
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise CrawlError("too_large", f"body > {max_bytes} bytes")
            chunks.append(chunk)
    except CrawlError:
        raise
    except (http.client.HTTPException, OSError, ValueError) as e:
        raise _transport_error(e, budget, "while reading the body") from None
    missing = getattr(resp, "length", None)
    if missing:  # EOF before Content-Length bytes: the watchdog's shutdown, or the server closed early
        raise budget.error() if budget.spent() else CrawlError(
            "connection_error", f"body cut short: {missing} of {clen} bytes missing", True)
    if missing is None and not getattr(resp, "chunked", False) and budget.spent():
        raise budget.error()  # no length to check and the deadline passed: the EOF may be the watchdog's
    meta = {"status": int(resp.status), "content_type": ctype or None, "final_url": resp.url}
    return b"".join(chunks), meta


def _for_log(url: str) -> str:
    """A URL for a log line: user:password@ and the query (which may carry a token) left out."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""
        host = f"[{host}]" if ":" in host else host
        if p.port:
            host += f":{p.port}"
        return urllib.parse.urlunsplit((p.scheme, host, p.path, "..." if p.query else "", ""))
    except ValueError:
        return "(unparsable URL)"


def _backoff(cfg: CrawlConfig, url: str, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(cfg.backoff_max_s, retry_after)
    # deterministic jitter (no global RNG): 0..25% from the url and attempt
    j = int(hashlib.sha256(f"{url}#{attempt}".encode()).hexdigest()[:4], 16) / 0xFFFF * 0.25
    return min(cfg.backoff_max_s, cfg.backoff_s * (2 ** attempt) * (1 + j))


class HostGate:
    """Per-host concurrency (semaphore) and request spacing (1/rate seconds, or the robots Crawl-delay). Waiting
    for a turn ends at the crawl's deadline (``until``, monotonic seconds) with a ``crawl_deadline`` CrawlError."""

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

    def __call__(self, host: str, until: float | None = None) -> _HostSlot:
        with self._lock:
            sem = self._sems.setdefault(host, threading.Semaphore(self._conc))
        return _HostSlot(self, host, sem, until)

    def _wait_turn(self, host: str, until: float | None) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next[host])
            if until is not None and start >= until:
                raise CrawlError(CRAWL_DEADLINE, f"the next request slot for {host} is after the crawl's deadline")
            self._next[host] = start + self._delay.get(host, self._interval)
        if start > now:
            time.sleep(start - now)


class _HostSlot:
    def __init__(self, gate: HostGate, host: str, sem: threading.Semaphore, until: float | None):
        self.gate, self.host, self.sem, self.until = gate, host, sem, until

    def __enter__(self):
        wait = None if self.until is None else max(0.0, self.until - time.monotonic())
        if not self.sem.acquire(timeout=wait):
            raise CrawlError(CRAWL_DEADLINE, f"no free slot for {self.host} before the crawl's deadline")
        try:
            self.gate._wait_turn(self.host, self.until)
        except BaseException:
            self.sem.release()
            raise
        return self

    def __exit__(self, *exc):
        self.sem.release()
        return False


class RobotsCache:
    """robots.txt per origin, fetched once (through the host gate) and parsed with urllib.robotparser."""

    def __init__(self, cfg: CrawlConfig, gate: HostGate, crawl_until: float | None = None):
        self.cfg = cfg
        self.gate = gate
        self.crawl_until = crawl_until
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._parsers: dict[str, tuple[urllib.robotparser.RobotFileParser | None, str]] = {}

    def check(self, url: str) -> str | None:
        """None when allowed, else the reason (robots_disallowed / robots_unavailable / crawl_deadline)."""
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._parsers:
                got = self._fetch(origin, parts.netloc)
                if got is None:  # cut by the crawl's deadline: not cached, nothing concluded about the host
                    return CRAWL_DEADLINE
                self._parsers[origin] = got
        rp, state = self._parsers[origin]
        if state == "unavailable":
            return "robots_unavailable"
        if rp is None:
            return None
        return None if rp.can_fetch(self.cfg.user_agent, url) else "robots_disallowed"

    def _fetch(self, origin: str, host: str):
        rp = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            with self.gate(host, self.crawl_until):
                budget = Budget(time.monotonic() + self.cfg.total_timeout_s, self.crawl_until, self.cfg.timeout_s,
                                self.cfg.total_timeout_s)
                data, _ = _http_get(origin + "/robots.txt", self.cfg, ROBOTS_MAX_BYTES, check_type=False,
                                    budget=budget)
        except CrawlError as e:
            if e.reason == CRAWL_DEADLINE:
                return None
            if e.reason in ("http_401", "http_403"):
                rp.disallow_all = True
                return rp, "ok"
            if e.reason.startswith("http_4"):
                return None, "ok"  # no robots.txt: everything allowed
            log.warning("robots.txt of %s unavailable (%s): treating the host as disallowed", _for_log(origin),
                        e.reason)
            return None, "unavailable"
        rp.parse(data.decode("utf-8", errors="replace").splitlines())
        delay = rp.crawl_delay(self.cfg.user_agent)
        if delay:
            self.gate.set_delay(host, float(delay))
        return rp, "ok"


def fetch_one(row: UrlRow, cfg: CrawlConfig, gate: HostGate, robots: RobotsCache,
              crawl_until: float | None = None) -> tuple[bytes | None, dict, str | None]:
    """Download one URL politely. Returns (bytes or None, provenance, reason or None).

    The URL's ``total_timeout_s`` runs from its first request (queueing for the host slot is not counted) and
    covers every attempt and backoff; ``crawl_until`` (monotonic seconds) bounds everything, queueing included."""
    prov = {"url": row.url, "license": row.license, "author": row.author}
    try:
        parts = urllib.parse.urlsplit(row.url)
        ok_url = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok_url = False
    if not ok_url:
        return None, prov, "bad_url"
    if cfg.respect_robots:
        why = robots.check(row.url)
        if why:
            return None, prov, why
    attempt = 0
    url_until: float | None = None
    while True:
        try:
            with gate(parts.netloc, crawl_until):
                if url_until is None:
                    url_until = time.monotonic() + cfg.total_timeout_s
                budget = Budget(url_until, crawl_until, cfg.timeout_s, cfg.total_timeout_s)
                data, meta = _http_get(row.url, cfg, cfg.max_bytes, check_type=True, budget=budget)
            break
        except CrawlError as e:
            if e.reason == CRAWL_DEADLINE:
                return None, prov, CRAWL_DEADLINE
            if e.retryable and attempt < cfg.retries:
                retry_at = time.monotonic() + _backoff(cfg, row.url, attempt, e.retry_after)
                if retry_at < min(url_until, math.inf if crawl_until is None else crawl_until):
                    time.sleep(max(0.0, retry_at - time.monotonic()))  # a retry only when there is time for it
                    attempt += 1
                    continue
                if crawl_until is not None and crawl_until <= retry_at < url_until:
                    return None, prov, CRAWL_DEADLINE  # the crawl's deadline, not the URL's, denied the retry
            prov.update(attempts=attempt + 1, error=e.detail[:200])
            return None, prov, e.reason
    from PIL import Image

    try:
        fmt = Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - any decoder error means: not an image
        fmt = None
    prov.update(meta)
    prov.update(attempts=attempt + 1, bytes=len(data), fetched_at=datetime.now(UTC).isoformat(timespec="seconds"))
    if fmt is None:
        return None, prov, "not_an_image"
    prov["sha256"] = hashlib.sha256(data).hexdigest()
    return data, prov, None


class CrawlState:
    """Append-only JSON-lines record of per-URL outcomes: the crawl's resume file, keyed by URL (not by the URL
    list's path or the working directory). Downloads are referred to by sha256 (their blob path relative to the
    cache root is kept for reading), so a rerun from another directory, or with the list moved or copied, finds
    them. Distributed crawls write one part file per host partition next to it; reading merges every
    ``state*.jsonl`` in the folder (older per-list state files included).

    ``records``: the best outcome per URL - the newest success, else the newest failure, so a failure recorded
    after a success (a blob deleted, then the host down) never replaces it. ``latest``: the newest outcome."""

    def __init__(self, path: Path, *, read: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self.records: dict[str, dict] = {}
        self.latest: dict[str, dict] = {}
        self.n_records: dict[str, int] = defaultdict(int)
        if not read:
            return
        stem = self.path.name.removesuffix(".jsonl")
        files = {*self.path.parent.glob("state*.jsonl"), *self.path.parent.glob(f"{stem}.part-*.jsonl"), self.path}
        for f in sorted(p for p in files if p.is_file()):
            for ln in f.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(ln)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption: that URL is simply fetched again
                if isinstance(rec, dict) and isinstance(rec.get("url"), str) and rec.get("status") in ("ok", "failed"):
                    self._merge(rec)

    def _merge(self, rec: dict) -> None:
        self._seq += 1
        rec["_seq"] = self._seq
        url = rec["url"]
        self.n_records[url] += 1
        when = (rec.get("recorded_at") or 0.0, self._seq)
        prev = self.latest.get(url)
        if prev is None or when >= (prev.get("recorded_at") or 0.0, prev["_seq"]):
            self.latest[url] = rec
        best = self.records.get(url)
        if best is None or (rec["status"] == "ok", *when) >= (best["status"] == "ok", best.get("recorded_at") or 0.0,
                                                               best["_seq"]):
            self.records[url] = rec

    def add(self, rec: dict) -> None:
        rec = {**rec, "recorded_at": time.time()}
        line = json.dumps(rec, sort_keys=True) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
            self._merge(rec)


def _fetch_all(todo: list[UrlRow], cache_root: Path, cfg: CrawlConfig, state: CrawlState,
               crawl_until: float | None = None) -> set[str]:
    """Fetch ``todo`` with a thread pool, one host gate and robots cache; each outcome is appended to ``state``
    as soon as its bytes are stored. URLs cut by the crawl's deadline (returned), or hit by an unexpected error,
    are not recorded (a rerun fetches them); nothing raised in a download stops the others."""
    gate = HostGate(cfg.per_host_concurrency, cfg.per_host_rate)
    robots = RobotsCache(cfg, gate, crawl_until)
    cut: set[str] = set()

    def work(r: UrlRow) -> None:
        try:
            data, prov, reason = fetch_one(r, cfg, gate, robots, crawl_until)
            if reason == CRAWL_DEADLINE:
                cut.add(r.url)
                return
            rec = {"url": r.url, "line": r.line, "provenance": prov}
            if reason is None:
                path, sha = store_blob(cache_root, data, prov["sha256"])
                rec.update(status="ok", reason=None, sha256=sha, path=path.relative_to(cache_root).as_posix())
            else:
                rec.update(status="failed", reason=reason, sha256=None, path=None)
            state.add(rec)
        except Exception as e:  # noqa: BLE001 - one URL's surprise must not stop the crawl; reported, not recorded
            log.warning("crawling %s failed unexpectedly (%s: %s); a rerun tries it again", _for_log(r.url),
                        type(e).__name__, str(e)[:200])

    with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="crawl") as pool:
        for fut in [pool.submit(work, r) for r in todo]:
            fut.result()
    return cut


def _crawl_partition(payload: tuple) -> dict:
    """Executor task: crawl one host partition (every URL of a host is in one partition, so the per-host
    concurrency, rate and robots.txt rules hold exactly as in a single process). The crawl's deadline travels as
    wall-clock time (monotonic clocks differ between processes)."""
    todo, cache_root, cfg, part_path, deadline_wall = payload
    state = CrawlState(Path(part_path), read=False)
    crawl_until = None if deadline_wall is None else time.monotonic() + (deadline_wall - time.time())
    t0 = time.perf_counter()
    cut = _fetch_all(todo, Path(cache_root), cfg, state, crawl_until)
    return {"n": len(todo), "seconds": time.perf_counter() - t0, "cut": sorted(cut)}


def host_partitions(todo: list[UrlRow], n_parts: int) -> list[list[UrlRow]]:
    """Split URLs into at most ``n_parts`` groups by a hash of the host (all URLs of a host together)."""
    groups: dict[int, list[UrlRow]] = defaultdict(list)
    for r in todo:
        try:
            host = urllib.parse.urlsplit(r.url).netloc.lower()
        except ValueError:
            host = ""
        groups[int(hashlib.sha256(host.encode()).hexdigest()[:8], 16) % max(1, n_parts)].append(r)
    return [groups[k] for k in sorted(groups)]


def _blob_of(cache_root: Path, rec: dict | None) -> Path | None:
    """The stored download of an ``ok`` record (found by its sha256 under ``cache_root``), or None."""
    if not rec or rec.get("status") != "ok" or not isinstance(rec.get("sha256"), str):
        return None
    p = blob_path(cache_root, rec["sha256"])
    return p if p.is_file() else None


def crawl(rows: list[UrlRow], cache_root: Path, cfg: CrawlConfig, *, state_name: str = "state.jsonl",
          quiet: bool = True, executor=None) -> list[dict]:
    """Fetch every row (skipping those with a recorded outcome). Returns one outcome record per row, in row
    order: ``{"url", "status": "ok"|"failed", "reason", "sha256", "path", "provenance", "name", "line"}``;
    ``path`` is the blob under ``cache_root`` (as given).

    The state lives in ``cache_root/crawl`` (``state_name`` is the file this run appends to; every
    ``state*.jsonl`` there is read). A URL with a recorded success whose blob is still there is never fetched
    again; a recorded failure is final unless ``cfg.retry_failed``. ``cfg.deadline_s`` bounds the whole call.

    With a multi-worker ``executor`` the URLs are partitioned by host (4 partitions per worker) and each partition
    is crawled by one task with its own thread pool (``crawl.concurrency`` threads per task)."""
    cache_root = Path(cache_root)
    crawl_until = None if cfg.deadline_s is None else time.monotonic() + cfg.deadline_s
    state = CrawlState(cache_root / "crawl" / state_name)
    seen: dict[str, int] = {}
    todo: list[UrlRow] = []
    for r in rows:
        if r.url in seen:
            continue
        seen[r.url] = r.line
        rec = state.records.get(r.url)
        if rec is not None:
            if _blob_of(cache_root, rec) is not None:
                continue
            if rec["status"] == "failed" and not cfg.retry_failed:
                continue
        todo.append(r)
    before = dict(state.n_records)

    cut: set[str] = set()  # URLs the crawl's deadline cut off (not recorded)
    if todo:
        log.info("crawling %d URL(s) (%d already recorded)", len(todo), len(seen) - len(todo))
        if executor is None or executor.workers <= 1:
            cut = _fetch_all(todo, cache_root, cfg, state, crawl_until)
        else:
            parts = host_partitions(todo, executor.workers * 4)
            stem = state.path.name.removesuffix(".jsonl")
            deadline_wall = None if crawl_until is None else time.time() + (crawl_until - time.monotonic())
            payloads = []
            for part in parts:
                h = hashlib.sha256("\n".join(r.url for r in part).encode()).hexdigest()[:12]
                payloads.append((part, str(cache_root), cfg, str(state.path.parent / f"{stem}.part-{h}.jsonl"),
                                 deadline_wall))
            labels = [f"crawl part {i}" for i in range(len(parts))]
            for _, res in executor.run(_crawl_partition, payloads, labels=labels):
                if isinstance(res, dict):  # a failed partition leaves its URLs unrecorded: reported below
                    cut.update(res.get("cut", ()))
            state = CrawlState(state.path)
    tried = {r.url for r in todo}
    out = []
    first_line = {}
    for r in rows:
        base = {"url": r.url, "line": r.line, "name": r.name, "sha256": None, "path": None,
                "provenance": {"url": r.url, "license": r.license, "author": r.author}}
        if r.url in first_line:
            out.append({**base, "status": "failed", "reason": "duplicate_url", "duplicate_of_line": first_line[r.url]})
            continue
        first_line[r.url] = r.line
        best = state.records.get(r.url)
        blob = _blob_of(cache_root, best)
        if blob is not None:
            rec = dict(best)
            rec["path"] = str(blob)
        elif r.url in tried and state.n_records.get(r.url, 0) == before.get(r.url, 0):
            # nothing recorded this run: cut by the crawl's deadline, or its task failed on every attempt
            why = CRAWL_DEADLINE if r.url in cut else CRAWL_TASK_FAILED
            out.append({**base, "status": "failed", "reason": why})
            continue
        else:
            rec = dict(state.latest[r.url] if r.url in tried else best)
            if best is not None and best["status"] == "ok":  # a success whose blob is gone, refetch failed
                rec["earlier_success_kept"] = True  # the state keeps it: the next run fetches the URL again
        rec.pop("_seq", None)
        rec["name"] = r.name
        rec["provenance"] = {**rec.get("provenance", {}), "license": r.license, "author": r.author}
        out.append(rec)
    return out
