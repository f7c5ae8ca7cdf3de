"""A minimal W3C WebDriver client (urllib only) for headless Debian Chromium + chromedriver.

Used by the leaderboard HTML test: open a local page, collect the browser console log (goog:loggingPrefs),
query elements, click, run scripts. Nothing is downloaded; only loopback traffic to chromedriver.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--disable-extensions", "--window-size=1400,1000"]


def find_browser() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths from PATH or the usual Debian locations, or None each."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    for cand in ("/usr/lib/chromium/chromium",):
        if chrome is None and os.path.exists(cand):
            chrome = cand
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None)
    return chrome, driver


class WebDriverError(RuntimeError):
    pass


class Chrome:
    """``with Chrome() as b: b.get(url); b.console_errors()``."""

    def __init__(self, chrome: str, driver: str, timeout: float = 30.0):
        self.chrome, self.driver, self.timeout = chrome, driver, timeout
        self.proc: subprocess.Popen | None = None
        self.session: str | None = None
        self.profile = tempfile.mkdtemp(prefix="celebref-chrome-")

    # ------------------------------------------------------------------ plumbing
    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                payload = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise WebDriverError(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}") from e
        return payload.get("value")

    def __enter__(self) -> Chrome:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(Path(self.profile) / "chromedriver.log", "wb")
        self.proc = subprocess.Popen([self.driver, f"--port={port}"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + self.timeout
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError, WebDriverError, OSError):
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.__exit__(None, None, None)
                raise WebDriverError("chromedriver did not start")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chrome,
                                   "args": CHROME_FLAGS + [f"--user-data-dir={self.profile}/profile"]},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        try:
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.session:
                self._call("DELETE", f"/session/{self.session}")
        except Exception:  # noqa: BLE001
            pass
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close() if hasattr(self, "log") else None
        shutil.rmtree(self.profile, ignore_errors=True)

    # ------------------------------------------------------------------ API
    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def logs(self) -> list[dict]:
        """Browser console entries since the last call ({level, message, source, timestamp})."""
        for path in (f"/session/{self.session}/se/log", f"/session/{self.session}/log"):
            try:
                return list(self._call("POST", path, {"type": "browser"}) or [])
            except WebDriverError:
                continue
        raise WebDriverError("chromedriver offers no log endpoint")

    def console_errors(self) -> list[str]:
        return [f"{e.get('source', '')}: {e.get('message', '')}" for e in self.logs()
                if e.get("level") in ("SEVERE", "ERROR")]

    def execute(self, script: str, *args):
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def find_all(self, css: str) -> list[str]:
        els = self._call("POST", f"/session/{self.session}/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT_KEY] for e in els]

    def click(self, element_id: str) -> None:
        self._call("POST", f"/session/{self.session}/element/{element_id}/click", {})

    def text(self, element_id: str) -> str:
        return self._call("GET", f"/session/{self.session}/element/{element_id}/text")
