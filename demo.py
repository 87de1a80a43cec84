"""``phi-get demo``: the whole product, end to end, on this machine.

Runs what a publisher, a registry operator, a fleet deployer and a device
operator would run, as the same ``phi-get`` commands they would type, in a
fresh work folder (default ``.demo/`` in the current folder):

1. generate the tiny Phi-3 checkpoint;
2. start the embedded registry (SQLite + local blob store) on loopback and
   mint a publish token;
3. build the tiny-phi variant matrix (every artifact runtime-checked);
4. publish it (only missing blobs travel), then export a static mirror;
5. resolve for this machine and for each sample device profile, with
   explanations;
6. lock a fleet (this machine + the samples) into ``phi.lock``;
7. sync this machine's class from the lock into a clean install folder;
8. run the installed artifact to generate text;
9. push the matrix to a local OCI registry (Debian ``docker-registry``) and
   install one variant from it (skipped without the package);
10. print a summary table.

Exits non-zero when any step fails and stops every process it started.
Imports the standard library and, for the shipped sample profiles' names,
:func:`phi_get.resolver.detect.sample_profiles`: each step is a ``phi-get`` subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi_get.resolver.detect import sample_profiles  # the shipped profiles: one list, its folder

__all__ = ["Demo", "StepFailed", "free_port", "run_demo", "stop_process", "wait_for_port"]


@dataclass(kw_only=True)
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass(kw_only=True)
class Demo:
    work: Path
    only: str | None = None
    results: list[StepResult] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    # -- plumbing -------------------------------------------------------
    def phi_get(self, *args: str, capture: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "phi_get", *args]
        print(f"  $ phi-get {' '.join(args)}", flush=True)
        proc = subprocess.run(cmd, env=self.env, text=True, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise StepFailed(f"phi-get {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        return proc

    def step(self, name: str, fn: Any) -> Any:
        print(f"\n== {name}", flush=True)
        start = time.monotonic()
        try:
            detail = fn()
        except StepFailed as exc:
            self.results.append(StepResult(name=name, ok=False, seconds=time.monotonic() - start, detail=str(exc)))
            raise
        self.results.append(StepResult(name=name, ok=True, seconds=time.monotonic() - start, detail=str(detail or "")))
        return detail

    def stop_all(self) -> None:
        for proc in self.processes:
            stop_process(proc)

    # -- the steps ------------------------------------------------------
    def checkpoint(self) -> str:
        self.phi_get("tiny-phi", str(self.work / "source"), "--trained")  # the quality reference
        size = sum(p.stat().st_size for p in (self.work / "source").iterdir())
        return f"{size / 1e6:.1f} MB Phi3ForCausalLM"

    def registry(self) -> str:
        data = self.work / "registry"
        db = f"sqlite:///{data / 'catalog.db'}"
        self.token = self.phi_get("registry", "token", "create", "--db", db, "--storage", str(data),
                                  "--scope", "publish:tiny-phi", "--note", "demo").stdout.strip()
        # the operator signs the registry (offline root/targets keys, online snapshot/timestamp/bins).
        self.phi_get("registry", "trust", "keygen", str(self.work / "offline-keys"))
        self.phi_get("registry", "trust", "init", "--keys", str(self.work / "offline-keys"), "--db", db,
                     "--storage", str(data))
        self.root = data / "tuf" / "metadata" / "1.root.json"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.work / "registry.log", "wb")  # noqa: SIM115 - kept open for the server's life
        proc = subprocess.Popen(
            [sys.executable, "-m", "phi_get", "registry", "serve", "--db", db, "--storage", str(data),
             "--host", "127.0.0.1", "--port", str(port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.processes.append(proc)
        wait_for_port(port, proc, timeout=60)
        self.db, self.storage = db, str(data)
        print(f"  web catalog: {self.url}/ (browse it while the demo runs; models appear once published)", flush=True)
        return f"{self.url} (SQLite catalog, blobs in {data.name}/; web catalog at {self.url}/)"

    def build(self) -> str:
        args = ["build", "tiny-phi", "--source", str(self.work / "source"), "--out", str(self.work / "out")]
        if self.only:
            args += ["--only", self.only]
        self.phi_get(*args, capture=False)
        built = sorted(p.parent.name for p in (self.work / "out").rglob("manifest.json") if ".work" not in p.parts)
        if not built:
            raise StepFailed("the build produced no artifact")
        self.built = built
        return f"{len(built)} artifacts: {', '.join(built)}"

    def trust(self, url: str, home: Path) -> None:
        """Pin the operator's root for ``url`` in ``home`` (handed over out of band: here, a file)."""
        self.phi_get("trust", "add", url, str(self.root), "--home", str(home))

    def sign(self) -> int:
        """The publisher signs every artifact (model-signing); the operator registers the publisher key."""
        key = self.work / "publisher.pem"
        folders = sorted(p.parent for p in (self.work / "out").rglob("manifest.json") if ".work" not in p.parts)
        for i, folder in enumerate(folders):
            self.phi_get("sign", str(folder), "--key", str(key), *(["--new-key"] if i == 0 else []))
        self.phi_get("registry", "trust", "publisher", "tiny-phi", "--key", str(key.with_suffix(".pub")),
                     "--keys", str(self.work / "offline-keys"), "--db", self.db, "--storage", self.storage)
        return len(folders)

    def publish(self) -> str:
        signed = self.sign()
        env = dict(self.env, PHI_GET_TOKEN=self.token)
        cmd = [sys.executable, "-m", "phi_get", "publish", str(self.work / "out"), "--registry", self.url]
        print(f"  $ PHI_GET_TOKEN=*** phi-get publish {self.work / 'out'} --registry {self.url}", flush=True)
        first = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=1800)
        if first.returncode:
            raise StepFailed(f"publish exited {first.returncode}: {first.stderr.strip()[-2000:]}")
        print(_indent(first.stdout.strip()[-3000:]))
        again = subprocess.run(cmd + ["--quiet"], env=env, text=True, capture_output=True, timeout=1800)
        if again.returncode:
            raise StepFailed(f"second publish exited {again.returncode}: {again.stderr.strip()[-2000:]}")
        if self.token in first.stdout + first.stderr + again.stdout + again.stderr:
            raise StepFailed("the publish token appeared in publish's output")
        self.phi_get("registry", "export", str(self.work / "mirror"), "--db", self.db, "--storage", self.storage)
        for home in ("resolve-home", "lock-home", "device-home"):
            self.trust(self.url, self.work / home)
            self.trust((self.work / "mirror").resolve().as_uri(), self.work / home)
        return (f"{len(self.built)} published, {signed} publisher-signed (model-signing), metadata TUF-signed; "
                f"republish was a no-op; signed static mirror in {self.work.name}/mirror")

    def resolve(self) -> str:
        device = self.phi_get("device", "--json").stdout
        (self.work / "this-machine.json").write_text(device)
        lines = []
        for who in ["this-machine", *sample_profiles()]:
            profile = str(self.work / "this-machine.json") if who == "this-machine" else who
            out = self.phi_get("resolve", "tiny-phi", "--registry", self.url, "--device", profile,
                               "--home", str(self.work / "resolve-home"), "--explain").stdout
            print(_indent(out.strip()))
            as_json = json.loads(self.phi_get("resolve", "tiny-phi", "--registry", self.url, "--device", profile,
                                              "--home", str(self.work / "resolve-home"), "--json").stdout)
            lines.append(f"{who}: {_choice(as_json)}")
        self.choices = lines
        return f"{len(lines)} devices resolved with explanations"

    def lock(self) -> str:
        project = self.work / "fleet"
        project.mkdir(exist_ok=True)
        shutil.copyfile(self.work / "this-machine.json", project / "this-machine.json")
        classes = "\n".join(f'{name} = "{name}"' for name in sample_profiles())
        (project / "phi.toml").write_text(
            "[project]\nname = \"demo-fleet\"\n"
            f"registries = [\"{self.work.resolve() / 'mirror'}\"]\n\n"
            "[models]\n\"tiny-phi\" = \">=0.1\"\n\n"
            "[device-classes]\nthis-machine = \"this-machine.json\"\n" + classes + "\n"
        )
        mirror = (self.work / "mirror").resolve().as_uri()
        self.phi_get("lock", "--project", str(project), "--registry", mirror, "--home", str(self.work / "lock-home"))
        first = (project / "phi.lock").read_bytes()
        self.phi_get("lock", "--project", str(project), "--registry", mirror, "--home", str(self.work / "lock-home"))
        if (project / "phi.lock").read_bytes() != first:
            raise StepFailed("locking twice gave different phi.lock bytes")
        self.mirror = mirror
        return f"phi.lock for {1 + len(sample_profiles())} device classes ({len(first)} bytes, byte-identical on relock)"

    def sync(self) -> str:
        home = self.work / "device-home"
        out = self.phi_get("sync", "--locked", "--device-class", "this-machine", "--project", str(self.work / "fleet"),
                           "--registry", self.mirror, "--device", str(self.work / "this-machine.json"),
                           "--home", str(home), "--offline").stdout
        print(_indent(out.strip()[-2000:]))
        listing = self.phi_get("list", "--home", str(home)).stdout
        print(_indent(listing.strip()))
        verify = self.phi_get("verify", "--home", str(home)).stdout
        print(_indent(verify.strip()))
        return (f"installed from the signed static mirror (TUF + publisher signature verified), offline, "
                f"into {home.name}/; verify clean")

    def oci(self) -> str:
        """Push the matrix to a local OCI registry (CNCF distribution) and install one variant from it."""
        exe = shutil.which("docker-registry")
        if exe is None:
            return "skipped: docker-registry is not installed (apt-get install -y docker-registry)"
        folder = self.work / "oci-registry"
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        (folder / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
        log = open(folder / "registry.log", "wb")  # noqa: SIM115 - kept open for the server's life
        proc = subprocess.Popen([exe, "serve", str(folder / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        wait_for_port(port, proc, timeout=30)
        url = f"oci://127.0.0.1:{port}/demo"
        self.phi_get("publish", str(self.work / "out"), "--to", url, "--quiet")
        home = self.work / "oci-home"
        # OCI registries serve no TUF metadata: the device accepts this one unsigned, explicitly.
        self.phi_get("trust", "allow-unsigned", url, "--home", str(home))
        out = self.phi_get("install", "tiny-phi", "--registry", url, "--device", str(self.work / "this-machine.json"),
                           "--home", str(home), "--json").stdout
        got = json.loads(out)
        print(_indent(f"installed {got['name']} {got['version']} {got['variant']} from {url}"))
        return (f"{len(self.built)} variants pushed as ModelPack artifacts to {url}; installed "
                f"{got['variant']} from it (verified)")

    def run(self) -> str:
        out = self.phi_get("run", "tiny-phi", "--prompt", "The registry stores", "--max-tokens", "16",
                           "--home", str(self.work / "device-home"), "--json").stdout
        result = json.loads(out)
        print(_indent(json.dumps(result, indent=2)[:2000]))
        return f"{result.get('runtime', '?')}: {result.get('new_tokens', '?')} new tokens: {result.get('text', '')!r}"

    def summary(self) -> None:
        print("\n== Summary")
        width = max(len(r.name) for r in self.results)
        for r in self.results:
            mark = "ok  " if r.ok else "FAIL"
            print(f"  {mark} {r.name:<{width}}  {r.seconds:7.1f} s  {r.detail[:160]}")
        if getattr(self, "choices", None):
            print("\n  chosen per device:")
            for line in self.choices:
                print(f"    {line}")


class StepFailed(Exception):
    pass


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _choice(resolution: dict[str, Any]) -> str:
    chosen = resolution.get("chosen") or {}
    if not chosen:
        return "nothing fits"
    return f"{chosen.get('variant')} on {chosen.get('target')}"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt a server we started (it shuts down cleanly on SIGINT); kill it after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A free TCP port on 127.0.0.1: the one definition (tests/kit and bench/ import it from here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StepFailed(f"the registry exited with {proc.returncode} before listening (see registry.log)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise StepFailed(f"the registry did not listen on port {port} within {timeout:.0f} s")


def run_demo(work: Path, *, only: str | None = None, keep: bool = False) -> int:
    """Run every step; return the process exit code (0 when all passed)."""
    if work.exists() and not keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(work=work.resolve(), only=only)
    demo.env = {k: v for k, v in os.environ.items() if not k.startswith("PHI_GET_")}
    demo.env["PYTHONUNBUFFERED"] = "1"
    steps = [
        ("generate the tiny Phi-3 checkpoint", demo.checkpoint),
        ("start the registry", demo.registry),
        ("build the tiny-phi matrix", demo.build),
        ("publish and mirror", demo.publish),
        ("resolve for 6 devices", demo.resolve),
        ("lock the fleet", demo.lock),
        ("sync this machine", demo.sync),
        ("run the installed model", demo.run),
        ("push to an OCI registry and install from it", demo.oci),
    ]
    code = 0
    try:
        for name, fn in steps:
            demo.step(name, fn)
    except StepFailed as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        demo.stop_all()
        demo.summary()
    return code
