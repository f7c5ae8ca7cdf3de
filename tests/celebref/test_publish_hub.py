"""`celebref publish` push path, offline: fail-fast with HF_HUB_OFFLINE, token handling, and the real
huggingface_hub upload protocol against a loopback fake Hub (HF_ENDPOINT) that implements the endpoints the
library uses: repos/create, validate-yaml, preupload, LFS batch + basic PUT + verify, NDJSON commit, tree
listing, repo settings (gating), revision info and resolve (download). Xet storage is not emulated: these tests set
HF_HUB_DISABLE_XET=1 so the library uses its LFS path (see docs/publish.md for what only the real Hub verifies).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

from bfrcli.celebref import main as celebref_main
from celebref.publish import push as push_mod
from tests.helpers import PROJECT_ROOT

TOKEN = "hf_" + "Zq7Rk2Lm9Xv4Tb8Nc1Wd5Ys3Pe6Gh0Jf"
# huggingface_hub's own LFS PUT triggers this httpx2 deprecation warning; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Enough of the Hub's HTTP API for huggingface_hub 2.x create_repo / create_commit (LFS) / list_repo_tree /
    update_repo_settings / hf_hub_download. State is kept in memory."""

    LFS_SUFFIXES = (".parquet", ".png", ".arrow")

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.repos: dict[str, dict] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.fail_commits = 0  # the next N commit calls answer 503
        self.fail_commits_after: int | None = None  # answer 503 to every commit after this many succeeded
        self.reject_auth_with_echo = False  # 401 whose body echoes the Authorization header (token leak test)
        self.validated_yaml: list[dict] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    return self.rfile.read(n)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return b""

            def _send(self, code: int, obj=None, raw: bytes | None = None, headers: dict | None = None,
                      head: bool = False):
                data = raw if raw is not None else json.dumps(obj if obj is not None else {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _route(self, method: str):
                url = urlparse(self.path)
                path = unquote(url.path)
                body = self._body() if method in ("POST", "PUT") else b""
                auth = self.headers.get("Authorization")
                with hub.lock:
                    hub.requests.append((method, path, auth))
                if path == "/api/agent-harnesses":
                    return self._send(200, [])
                if not path.startswith("/lfs-") and auth != f"Bearer {hub.token}" or hub.reject_auth_with_echo:
                    return self._send(401, {"error": f"Invalid credentials in Authorization header: {auth}"},
                                      headers={"X-Error-Message": "Invalid credentials"})
                try:
                    return hub.handle(self, method, path, parse_qs(url.query), body)
                except Exception as e:  # noqa: BLE001 - surface server bugs as 500 to the client
                    return self._send(500, {"error": f"fake hub error: {type(e).__name__}: {e}"})

            def do_GET(self):
                self._route("GET")

            def do_HEAD(self):
                self._route("HEAD")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ API
    def handle(self, h, method, path, query, body):
        if method == "POST" and path == "/api/repos/create":
            d = json.loads(body)
            repo = f"{d['organization']}/{d['name']}" if d.get("organization") else d["name"]
            if repo in self.repos:
                return h._send(409, {"error": "You already created this dataset repo",
                                     "url": f"{self.url}/datasets/{repo}"})
            private = d.get("private") if "private" in d else d.get("visibility") == "private"
            self.repos[repo] = {"type": d.get("type"), "private": private, "files": {}, "lfs_files": {},
                                "commits": [], "gated": False, "commit_ops": []}
            return h._send(200, {"url": f"{self.url}/datasets/{repo}", "name": repo})
        if method == "POST" and path == "/api/validate-yaml":
            d = json.loads(body)
            m = re.match(r"^---\n(.*?)\n---\n", d["content"], re.DOTALL)
            try:
                meta = yaml.safe_load(m.group(1)) if m else None
                assert isinstance(meta, dict), "no YAML front matter"
                for c in meta.get("configs", []):
                    assert c["config_name"] and c["data_files"], f"bad config {c}"
            except Exception as e:  # noqa: BLE001
                return h._send(400, {"errors": [{"message": str(e)}]})
            self.validated_yaml.append(meta)
            return h._send(200, {"errors": [], "warnings": []})
        m = re.match(r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", path)
        if m and method == "POST":
            d = json.loads(body)
            objs = []
            for o in d["objects"]:
                if o["oid"] in self.lfs:
                    objs.append({"oid": o["oid"], "size": o["size"]})
                else:
                    objs.append({"oid": o["oid"], "size": o["size"], "authenticated": True, "actions": {
                        "upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"},
                        "verify": {"href": f"{self.url}/lfs-verify"}}})
            return h._send(200, {"transfer": "basic", "objects": objs})
        m = re.match(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", path)
        if m and method == "PUT":
            if hashlib.sha256(body).hexdigest() != m["oid"]:
                return h._send(400, {"error": "sha256 mismatch"})
            self.lfs[m["oid"]] = body
            return h._send(200, {})
        if path == "/lfs-verify" and method == "POST":
            d = json.loads(body)
            ok = d["oid"] in self.lfs and len(self.lfs[d["oid"]]) == d["size"]
            return h._send(200 if ok else 404, {})
        m = re.match(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/(?P<what>preupload|commit|tree|revision|settings)"
                     r"(?:/(?P<rev>[^/]+))?(?:/(?P<sub>.*))?$", path)
        if m:
            repo = self.repos.get(m["repo"])
            if repo is None:
                return h._send(404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
            return getattr(self, f"_{m['what']}")(h, repo, m, method, query, body)
        m = re.match(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
        if m and method in ("GET", "HEAD"):
            repo = self.repos.get(m["repo"])
            if repo is None or m["file"] not in repo["files"]:
                return h._send(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
            data = repo["files"][m["file"]]
            commit = repo["commits"][-1]
            hdr = {"X-Repo-Commit": commit, "ETag": f'"{git_sha1(data)}"'}
            if m["file"] in repo["lfs_files"]:
                hdr["ETag"] = f'"{repo["lfs_files"][m["file"]]}"'
                hdr["X-Linked-Etag"] = hdr["ETag"]
                hdr["X-Linked-Size"] = str(len(data))
            return h._send(200, raw=data, headers=hdr, head=(method == "HEAD"))
        return h._send(404, {"error": f"fake hub: no route {method} {path}"})

    def _preupload(self, h, repo, m, method, query, body):
        d = json.loads(body)
        out = []
        for f in d["files"]:
            lfs = f["path"].endswith(self.LFS_SUFFIXES) or f["size"] > 10 * 1024 * 1024
            oid = None
            if f["path"] in repo["files"]:
                data = repo["files"][f["path"]]
                oid = repo["lfs_files"].get(f["path"]) or git_sha1(data)
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        return h._send(200, {"files": out})

    def _commit(self, h, repo, m, method, query, body):
        n_ok = len(repo["commits"])
        if self.fail_commits > 0 or (self.fail_commits_after is not None and n_ok >= self.fail_commits_after):
            self.fail_commits = max(0, self.fail_commits - 1)
            return h._send(503, {"error": "Service temporarily unavailable (fake)"})
        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
        assert lines[0]["key"] == "header"
        ops = []
        for item in lines[1:]:
            v = item["value"]
            if item["key"] == "file":
                repo["files"][v["path"]] = base64.b64decode(v["content"])
                repo["lfs_files"].pop(v["path"], None)
            elif item["key"] == "lfsFile":
                if v["oid"] not in self.lfs:
                    return h._send(422, {"error": f"LFS object {v['oid']} was not uploaded"})
                repo["files"][v["path"]] = self.lfs[v["oid"]]
                repo["lfs_files"][v["path"]] = v["oid"]
            elif item["key"] == "deletedFile":
                repo["files"].pop(v["path"], None)
                repo["lfs_files"].pop(v["path"], None)
            ops.append((item["key"], v["path"]))
        oid = hashlib.sha1(json.dumps([lines[0], ops, n_ok]).encode()).hexdigest()
        repo["commits"].append(oid)
        repo["commit_ops"].append(ops)
        return h._send(200, {"commitUrl": f"{self.url}/datasets/{m['repo']}/commit/{oid}", "commitOid": oid,
                             "success": True})

    def _tree(self, h, repo, m, method, query, body):
        entries, dirs = [], set()
        for p, data in sorted(repo["files"].items()):
            parts = p.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            e = {"type": "file", "path": p, "size": len(data), "oid": git_sha1(data)}
            if p in repo["lfs_files"]:
                e["lfs"] = {"oid": repo["lfs_files"][p], "size": len(data), "pointerSize": 134}
            entries.append(e)
        entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        return h._send(200, entries)

    def _revision(self, h, repo, m, method, query, body):
        if not repo["commits"]:
            return h._send(404, {"error": "Revision not found"}, headers={"X-Error-Code": "RevisionNotFound"})
        return h._send(200, {"id": m["repo"], "sha": repo["commits"][-1], "private": repo["private"],
                             "siblings": [{"rfilename": p} for p in sorted(repo["files"])]})

    def _settings(self, h, repo, m, method, query, body):
        d = json.loads(body)
        if "gated" in d:
            repo["gated"] = d["gated"]
        return h._send(200, {})


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def built(mini_dataset, tmp_path_factory) -> Path:
    """A dry-run folder with pixels and one test set (small shards, so there are several files to upload)."""
    from bfrcore.dataset import FaceDataset
    from tests.leaderboard.conftest import make_testset

    root = tmp_path_factory.mktemp("pubhub")
    ids = FaceDataset.load(mini_dataset).image_ids("test")[:3]
    ts = make_testset(mini_dataset, root / "ts" / "celebref-x4", "celebref-x4", 4, ids)
    out = root / "folder"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = celebref_main(["publish", "--dataset", str(mini_dataset), "--repo-id", "tester/celebref-mini",
                            "--testset", str(ts), "--include-pixels", "--license", "cc-by-nc-4.0", "--dry-run",
                            "--out", str(out), "--max-shard-mb", "3"])
    assert rc == 0
    return out


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def online(monkeypatch):
    """In-process: huggingface_hub online (it was imported with HF_HUB_OFFLINE=1), LFS instead of Xet."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = celebref_main(argv)
    return rc, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------------------------- offline
def test_offline_push_fails_fast_without_leaking_the_token(built, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    t = time.time()
    rc, _, err = _cli(["publish", "--dataset", str(built.parent / "nope"), "--repo-id", "a/b"])
    assert rc == 2 and "no such folder" in err
    from celebref.publish import PublishError, push_folder

    t = time.time()

    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):
        push_folder(built, "tester/celebref-mini", token=TOKEN)
    assert time.time() - t < 2


def test_offline_cli_message(built, mini_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc, out, err = _cli(["publish", "--dataset", str(mini_dataset), "--repo-id", "tester/x", "--out",
                         str(tmp_path / "f")])
    assert rc == 1
    assert "HF_HUB_OFFLINE is set" in err and "rerun the same command to resume" in err
    assert TOKEN not in out + err
    assert (tmp_path / "f" / "README.md").is_file()  # the folder was built and kept


def test_no_token_is_a_clear_error(built, online, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    from celebref.publish import PublishError, push_folder

    with pytest.raises(PublishError, match="no Hugging Face token: set HF_TOKEN"):
        push_folder(built, "tester/celebref-mini", endpoint="http://127.0.0.1:9")


def test_redact():
    msg = f"401 for url: Authorization: Bearer {TOKEN} and also hf_abcdefghijklmnop"
    r = push_mod.redact(msg, TOKEN)
    assert TOKEN not in r and "hf_abcdefghijklmnop" not in r and "***" in r


# ----------------------------------------------------------------------------------------------- fake Hub
def test_push_to_fake_hub_via_cli_subprocess(built, tmp_path):
    """The real command in a fresh interpreter: HF_ENDPOINT honoured, token from HF_TOKEN, private repo, every
    file arrives byte-identical (parquet through LFS), README committed last, gating set, token never printed."""
    with FakeHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
               "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hfhome"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "CELEBREF_PROGRESS": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        # build again from the same inputs into the same folder (identical bytes) and push
        src = _SOURCES[str(built)]
        r = subprocess.run([sys.executable, "-m", "bfrcli.celebref", "publish", *src, "--out", str(built),
                            "--private", "--gated", "manual", "--files-per-commit", "3", "--retry-wait", "0.05"],
                           cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        assert TOKEN not in r.stdout + r.stderr
        repo = hub.repos["tester/celebref-mini"]
        assert repo["type"] == "dataset" and repo["private"] is True and repo["gated"] == "manual"
        local = _folder_files(built)
        assert repo["files"] == local
        parquet = {p for p in local if p.endswith(".parquet")}
        assert set(repo["lfs_files"]) == parquet and len(parquet) >= 5
        assert repo["commit_ops"][-1][-1] == ("file", "README.md")
        assert all(len(ops) <= 3 for ops in repo["commit_ops"][:-1])
        assert hub.validated_yaml and hub.validated_yaml[0]["license"] == "cc-by-nc-4.0"
        api_calls = [(m, p, a) for m, p, a in hub.requests if p.startswith("/api/") and "agent-harnesses" not in p]
        assert api_calls and all(a == f"Bearer {TOKEN}" for _, _, a in api_calls)
        assert "uploaded" in r.stdout and "(private)" in r.stdout

        # a second run finds everything on the Hub: no commit at all
        n_commits = len(repo["commits"])
        r2 = subprocess.run([sys.executable, "-m", "bfrcli.celebref", "publish", *src, "--out", str(built),
                             "--private", "--gated", "manual"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=240)
        assert r2.returncode == 0, r2.stderr[-3000:]
        assert len(repo["commits"]) == n_commits
        assert f"uploaded 0 file(s) in 0 commit(s); {len(local)} already on the Hub" in r2.stdout

        # round trip: download the repository with huggingface_hub and load it with datasets
        dl = subprocess.run([sys.executable, "-c", (
            "import sys, datasets\n"
            "from huggingface_hub import hf_hub_download\n"
            "import json\n"
            "files = json.loads(sys.argv[1]); out = sys.argv[2]\n"
            "for f in files: hf_hub_download('tester/celebref-mini', f, repo_type='dataset', local_dir=out)\n"
            "d = datasets.load_dataset(out, 'hq', cache_dir=sys.argv[3])\n"
            "print(json.dumps({k: v.num_rows for k, v in d.items()}))\n"),
            json.dumps(sorted(local)), str(tmp_path / "download"), str(tmp_path / "cache")],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert dl.returncode == 0, dl.stderr[-3000:]
        assert json.loads(dl.stdout.strip().splitlines()[-1]) == {"train": 27, "test": 22}
        for rel, data in local.items():
            assert (tmp_path / "download" / rel).read_bytes() == data, rel


#: The publish arguments (dataset, test set, licence, shard size) the `built` fixture used, by folder.
_SOURCES: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def _remember_sources(built, mini_dataset):
    ts = built.parent / "ts" / "celebref-x4"
    _SOURCES[str(built)] = ["--dataset", str(mini_dataset), "--repo-id", "tester/celebref-mini", "--testset",
                            str(ts), "--include-pixels", "--license", "cc-by-nc-4.0", "--max-shard-mb", "3"]


def test_transient_errors_are_retried(built, online):
    from celebref.publish import push_folder

    with FakeHub() as hub:
        hub.fail_commits = 2
        logs = []
        rep = push_folder(built, "tester/celebref-mini", endpoint=hub.url, retries=3, backoff=0.01,
                          max_files_per_commit=100, log=logs.append, gated="none")
        assert rep.retries == 2 and any("retry 1/3" in m for m in logs)
        assert hub.repos["tester/celebref-mini"]["files"] == _folder_files(built)
        assert hub.repos["tester/celebref-mini"]["gated"] is False
        assert all(TOKEN not in m for m in logs)


def test_interrupted_upload_resumes_and_stale_shards_are_deleted(built, online, tmp_path):
    from celebref.publish import PublishError, push_folder

    local = _folder_files(built)
    with FakeHub() as hub:
        hub.fail_commits_after = 2  # two batches get through, then the Hub keeps failing
        with pytest.raises(PublishError) as ei:
            push_folder(built, "tester/celebref-mini", endpoint=hub.url, retries=1, backoff=0.01,
                        max_files_per_commit=2, log=lambda m: None)
        assert "503" in str(ei.value) and TOKEN not in str(ei.value)
        repo = hub.repos["tester/celebref-mini"]
        first = {p for ops in repo["commit_ops"] for _, p in ops}
        assert len(first) == 4 and "README.md" not in repo["files"]

        hub.fail_commits_after = None
        rep = push_folder(built, "tester/celebref-mini", endpoint=hub.url, retries=1, backoff=0.01,
                          max_files_per_commit=2, log=lambda m: None)
        assert set(rep.unchanged) == first
        assert set(rep.uploaded) == set(local) - first
        assert repo["files"] == local
        resent = {p for ops in repo["commit_ops"][2:] for _, p in ops}
        assert resent.isdisjoint(first)
        # no large file was sent twice over both runs (LFS objects of the failed batch were kept by the Hub)
        puts = [p for m, p, _ in hub.requests if m == "PUT" and p.startswith("/lfs-upload/")]
        assert len(puts) == len(set(puts)) == len({hashlib.sha256(v).hexdigest() for k, v in local.items()
                                                   if k.endswith(".parquet")})

        # rebuild with one shard per split: the old multi-shard files are deleted with the README commit
        rc, _, err = _cli(["publish", *_SOURCES[str(built)][:-2], "--max-shard-mb", "500", "--dry-run", "--out",
                             str(tmp_path / "one")])
        assert rc == 0, err
        rep = push_folder(tmp_path / "one", "tester/celebref-mini", endpoint=hub.url, retries=0,
                          log=lambda m: None)
        assert rep.deleted and all("-of-00001" not in p for p in rep.deleted)
        assert repo["files"] == _folder_files(tmp_path / "one")
        assert repo["commit_ops"][-1][-1] == ("file", "README.md")


def test_auth_failure_is_reported_redacted(built, online, monkeypatch):
    from huggingface_hub import constants

    with FakeHub() as hub:
        hub.reject_auth_with_echo = True
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        rc, out, err = _cli(["publish", *_SOURCES[str(built)], "--out", str(built), "--retry-wait", "0"])
        assert rc == 1
        assert "create_repo failed" in err and "401" in err
        assert TOKEN not in out + err and "Bearer ***" in err
        # 401 is not retried
        assert sum(1 for _, p, _ in hub.requests if p == "/api/repos/create") == 1
