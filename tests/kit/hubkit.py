"""A Hugging Face Hub on loopback for the Hub tests: olah serving git+LFS repos the test creates.

* :func:`hub_kit` starts **olah** (``pip install olah``, the ``test`` extra),
  a real Hub-compatible server, offline (its upstream is a dead local port),
  serving ``MIRRORS/models/<org>/<name>``: non-bare git repositories whose
  large files are in git LFS (``apt-get install git-lfs``; ``.ci/run``
  installs it).  :meth:`HubKit.add_repo` commits a folder into such a repo
  (safetensors, GGUF, ONNX data under LFS) with any branches and tags, and
  returns the commit.  ``huggingface_hub``'s ``model_info(revision=)``,
  ``list_repo_tree``, ``hf_hub_download`` and ``snapshot_download`` run
  against olah itself, LFS bytes and pointers included.
* In front of olah sits this kit's own **stub** (:class:`HubKit.url`, the
  endpoint tests use), which forwards every request to olah byte for byte
  except where olah does not answer as the Hub does (REAL_COMPONENTS.md):
  a missing file is 401 from olah (the Hub: 404 ``EntryNotFound``), a
  missing repo resets the connection (the Hub: 401 ``RepoNotFound``), a
  missing revision is 500 with ~23 s of client retries (the Hub: 404
  ``RevisionNotFound``), and olah has no gated repos (the Hub: 401
  ``GatedRepo``).  For those four cases only, decided from the test's own
  git repos (``git rev-parse``, ``git cat-file``) and the names it declared
  gated, the stub answers with the Hub's status and ``X-Error-Code`` header,
  so huggingface_hub raises what it raises against the Hub.  Nothing else
  is stubbed.

Skips the test when olah or git-lfs is not installed.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from phi_get.demo import free_port

__all__ = ["LFS_PATTERNS", "HubKit", "hub_kit"]

#: What the kit's repos keep in LFS, as the Hub's repos of Phi builds do.
LFS_PATTERNS = ("*.safetensors", "*.gguf", "*.onnx", "*.onnx.data", "*.bin")
_GIT_ID = ("-c", "user.name=phi-get tests", "-c", "user.email=tests@phi-get.invalid", "-c", "init.defaultBranch=main")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *_GIT_ID, "-C", str(repo), *args], capture_output=True, text=True,
                          check=check, timeout=60)


@dataclass
class HubKit:
    """olah serving ``mirrors``, and the stub in front of it at :attr:`url`."""

    mirrors: Path
    olah_url: str
    url: str = ""
    #: Repo ids the stub answers as gated (401 GatedRepo) whatever olah holds.
    gated: set[str] = field(default_factory=set)

    def repo_path(self, repo_id: str) -> Path:
        return self.mirrors / "models" / repo_id

    def add_repo(self, repo_id: str, src: Path, *, branches: tuple[str, ...] = (), tags: tuple[str, ...] = (),
                 message: str = "upload") -> str:
        """Commit every file of ``src`` to ``repo_id``'s ``main`` (LFS for :data:`LFS_PATTERNS`); the commit."""
        repo = self.repo_path(repo_id)
        fresh = not (repo / ".git").is_dir()
        repo.mkdir(parents=True, exist_ok=True)
        if fresh:
            _git(repo, "init", "-q")
            _git(repo, "lfs", "install", "--local")
            _git(repo, "lfs", "track", *LFS_PATTERNS)
        for path in sorted(src.rglob("*")):
            if path.is_file():
                dest = repo / path.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
        for b in branches:
            _git(repo, "branch", "-f", b)
        for t in tags:
            _git(repo, "tag", "-f", t)
        return self.commit(repo_id, "main")

    def commit(self, repo_id: str, revision: str) -> str:
        return _git(self.repo_path(repo_id), "rev-parse", "--verify", f"{revision}^{{commit}}").stdout.strip()

    def pointer(self, repo_id: str, path: str, revision: str = "main") -> str:
        """What git holds for ``path``: the LFS pointer text for a file in LFS."""
        return _git(self.repo_path(repo_id), "cat-file", "-p", f"{revision}:{path}").stdout

    def lfs_object(self, repo_id: str, path: str) -> Path:
        """Where olah reads the LFS bytes of ``path`` at ``main`` (overwrite it to serve other bytes)."""
        pointer = self.pointer(repo_id, path)
        oid = next(line.split(":", 1)[1] for line in pointer.splitlines() if line.startswith("oid sha256:"))
        return self.repo_path(repo_id) / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid

    def env(self, home: Path, *, offline: bool = False) -> dict[str, str]:
        """The environment a phi-get process needs to use this Hub, with its own cache under ``home``."""
        return {"HF_ENDPOINT": self.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                "HF_HUB_OFFLINE": "1" if offline else "", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": "",
                "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "30"}

    # -- the stub's decisions: where olah is not the Hub --------------------------------------------------

    def hub_error(self, method: str, path: str) -> tuple[int, str, str] | None:
        """(status, X-Error-Code, message) the Hub gives for this request where olah answers otherwise."""
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(path).path.strip("/").split("/")]
        rev: str | None = None
        file: str | None = None
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if rest[:1] in (["revision"], ["tree"], ["paths-info"]) and len(rest) >= 2:
                rev = rest[1]
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        else:
            return None
        if repo_id in self.gated:
            return 401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it."
        if not (self.repo_path(repo_id) / ".git").is_dir():
            return 401, "RepoNotFound", f"Repository Not Found for url: {path}."
        repo = self.repo_path(repo_id)
        if rev is not None and _git(repo, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}",
                                    check=False).returncode != 0:
            return 404, "RevisionNotFound", f"Invalid rev id: {rev}"
        if file is not None and _git(repo, "cat-file", "-e", f"{rev}:{file}", check=False).returncode != 0:
            return 404, "EntryNotFound", f"Entry not found for url: {path}."
        return None


def _stub_handler(kit: HubKit) -> type[http.server.BaseHTTPRequestHandler]:
    olah = urllib.parse.urlsplit(kit.olah_url)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if (err := kit.hub_error(self.command, self.path)) is not None:
                status, code, message = err
                data = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                return
            conn = http.client.HTTPConnection(olah.hostname or "127.0.0.1", olah.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_HEADERS:
                    self.send_header(k, v)
            self.send_header("Content-Length", resp.getheader("content-length") if self.command == "HEAD"
                             and resp.getheader("content-length") else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = _answer

    return Handler


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"olah exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"olah did not listen on {url} within {timeout:.0f}s: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def hub_kit(root: Path) -> Iterator[HubKit]:
    """olah on a loopback port serving ``root/mirrors``, and the stub in front of it."""
    olah_cli = shutil.which("olah-cli") or str(Path(sys.executable).with_name("olah-cli"))
    if not Path(olah_cli).is_file():
        pytest.skip("olah is not installed (pip install 'phi-get[test]')")
    if subprocess.run(["git", "lfs", "version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("git-lfs is not installed (apt-get install git-lfs; .ci/run installs it)")
    mirrors, work = root / "mirrors", root / "olah"
    (mirrors / "models").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    port, dead = free_port(), free_port()
    (work / "olah.toml").write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'repos-path = "{work / "repos"}"\nmirrors-path = ["{mirrors}"]\n'
        # Its upstream Hub is a local port nothing listens on: olah serves the mirrors alone.
        f'hf-scheme = "http"\nhf-netloc = "127.0.0.1:{dead}"\nhf-lfs-netloc = "127.0.0.1:{dead}"\n'
        "metadata-cache-ttl = 0\n"
        "[accessibility]\noffline = true\n", encoding="utf-8")
    log = work / "olah.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([olah_cli, "-c", str(work / "olah.toml")], cwd=work, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    kit = HubKit(mirrors=mirrors, olah_url=f"http://127.0.0.1:{port}")
    server: http.server.ThreadingHTTPServer | None = None
    try:
        _wait_up(kit.olah_url, proc, log)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _stub_handler(kit))
        server.daemon_threads = True
        kit.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield kit
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
