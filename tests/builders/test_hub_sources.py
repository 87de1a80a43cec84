"""Hugging Face sources against a real Hub-compatible server.

olah serves git+LFS repos this module creates (tests/kit/hubkit.py; its stub
answers only the error paths olah does not answer as the Hub does), and
phi-get runs as a user runs it, in a subprocess with ``HF_ENDPOINT`` set:

* ``phi-get build tiny-phi --source phi-org/tiny@main`` resolves the branch
  to its commit and records that commit in every manifest; the LFS weights
  arrive intact; a tag and a commit resolve too; offline mode builds from a
  warm cache and fails clearly from a cold one;
* a missing file, a gated repo, a missing repo, a missing revision and LFS
  bytes that do not match their pointer each end in one line naming the
  repo and revision, with the exit code of their kind, never a traceback;
* ``phi-get import hf://ORG/REPO@REV`` imports a GGUF built here and pushed
  to a Hub repo (as Microsoft's prebuilt GGUF repos are), runs it through
  llama.cpp against the reference checkpoint (fetched from the Hub too),
  records the commit, sizes, sha256 and inferred variant, and publishes it
  to a registry on loopback; the same for a safetensors build; empty and
  unrecognisable repos and corrupt LFS bytes are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.manifests.errors import ExitCode

sys.path.insert(0, str(Path(__file__).parents[1] / "kit"))  # the test kit, as tests/registry's conftest does
from hubkit import HubKit, hub_kit  # noqa: E402

pytestmark = pytest.mark.slow

REPO = "phi-org/tiny"
#: Two cheap variants (one conversion, shared): every manifest of the build must carry the commit.
VARIANTS = "gguf-f32,gguf-q8_0,safetensors-fp16"


def phi(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **env}, timeout=300)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Hub:
    kit: HubKit
    root: Path
    v1: str  # the first commit (tag v1, branch stable)
    main: str  # the second commit (branch main)
    home: Path  # the HF cache the build filled
    out: Path  # the build's output folder

    def env(self, home: Path | None = None, *, offline: bool = False) -> dict[str, str]:
        return self.kit.env(home or self.home, offline=offline)


@pytest.fixture(scope="module")
def hub(tiny_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """olah with phi-org/tiny (v1 and stable at the first commit, main one commit later), and one build from it."""
    pytest.importorskip("llama_cpp")
    root = tmp_path_factory.mktemp("hub")
    with hub_kit(root) as kit:
        v1 = kit.add_repo(REPO, tiny_phi, tags=("v1",), branches=("stable",), message="the tiny checkpoint")
        notes = root / "notes"
        notes.mkdir()
        (notes / "README.md").write_text("# tiny\nA random-weight Phi-3 checkpoint for tests.\n")
        main = kit.add_repo(REPO, notes, message="a model card")
        assert main != v1
        home, out = root / "home", root / "out"
        build = phi("build", "tiny-phi", "--source", f"{REPO}@main", "--only", VARIANTS, "--out", str(out), "--json",
                    env=kit.env(home))
        assert build.returncode == 0, build.stderr
        yield Hub(kit=kit, root=root, v1=v1, main=main, home=home, out=out)


def test_a_branch_is_resolved_to_its_commit_and_recorded_in_every_manifest(hub: Hub, tiny_phi: Path) -> None:
    folders = sorted((hub.out / "tiny-phi" / "0.1.0").iterdir())
    assert [f.name for f in folders] == sorted(VARIANTS.split(","))
    for folder in folders:
        source = load_artifact_folder(folder).provenance.source
        assert (source.repo, source.revision) == (REPO, hub.main), folder.name
    # The LFS weights arrived intact: the cache holds the checkpoint's own bytes under the commit.
    snapshot = hub.home / "hub" / "models--phi-org--tiny" / "snapshots" / hub.main
    assert sha256(snapshot / "model.safetensors") == sha256(tiny_phi / "model.safetensors")
    pointer = hub.kit.pointer(REPO, "model.safetensors")
    assert pointer.startswith("version https://git-lfs") and f"oid sha256:{sha256(tiny_phi / 'model.safetensors')}" in pointer


def test_a_tag_a_branch_and_a_commit_resolve_to_their_commits(hub: Hub) -> None:
    code = ("import sys; from phi_get.builders.hub import resolve_revision as r; "
            f"print(r('{REPO}', 'v1'), r('{REPO}', 'stable'), r('{REPO}', '{hub.v1}'), r('{REPO}', 'main'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **hub.env()},
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [hub.v1, hub.v1, hub.v1, hub.main]


def _no_config(hub: Hub, tiny_phi: Path) -> str:
    src = hub.root / "no-config"
    shutil.copytree(tiny_phi, src)
    (src / "config.json").unlink()
    hub.kit.add_repo("phi-org/no-config", src)
    return "phi-org/no-config@main"


@pytest.mark.parametrize(("case", "expected"), [
    ("missing-file", "has no file config.json"),
    ("gated", "phi-org/gated on {url} is gated: accept its terms"),
    ("missing-repo", "no repository phi-org/absent on {url} (or it is private: set HF_TOKEN)"),
    ("missing-revision", "phi-org/tiny on {url} has no revision 'no-such-branch' (a branch, tag or commit)"),
])
def test_hub_errors_are_one_line_naming_repo_and_revision(hub: Hub, tiny_phi: Path, case: str, expected: str) -> None:
    if case == "gated":
        hub.kit.gated.add("phi-org/gated")
        hub.kit.add_repo("phi-org/gated", tiny_phi)
    source = {"missing-file": lambda: _no_config(hub, tiny_phi), "gated": lambda: "phi-org/gated@main",
              "missing-repo": lambda: "phi-org/absent@main",
              "missing-revision": lambda: f"{REPO}@no-such-branch"}[case]()
    out = phi("build", "tiny-phi", "--source", source, "--only", "gguf-q8_0", "--out", str(hub.root / "err"),
              env=hub.env(hub.root / f"home-{case}"))
    assert out.returncode == ExitCode.NOT_FOUND, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert expected.format(url=hub.kit.url) in line, line
    if case == "missing-file":
        assert f"phi-org/no-config@{hub.kit.commit('phi-org/no-config', 'main')}" in line  # the resolved commit


def test_offline_builds_from_a_warm_cache_and_fails_clearly_from_a_cold_one(hub: Hub) -> None:
    warm = phi("build", "tiny-phi", "--source", f"{REPO}@main", "--only", "gguf-q8_0", "--out", str(hub.out),
               "--json", env=hub.env(offline=True))
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)["outcome"] == "up-to-date"  # same commit, resolved from the cache's refs
    cold = phi("build", "tiny-phi", "--source", f"{REPO}@main", "--only", "gguf-q8_0", "--out",
               str(hub.root / "cold-out"), env=hub.env(hub.root / "cold-home", offline=True))
    assert cold.returncode == ExitCode.UNAVAILABLE and "Traceback" not in cold.stderr
    assert f"error: HF_HUB_OFFLINE is set and {REPO}@main is not in the local Hugging Face cache" in cold.stderr
    # Offline, a cached LFS blob is held to the sha256 it is named by (the Hub's etag, the pointer's oid).
    spoiled = hub.root / "spoiled-home"
    shutil.copytree(hub.home, spoiled, symlinks=True)
    blob = (spoiled / "hub" / "models--phi-org--tiny" / "snapshots" / hub.main / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    bad = phi("build", "tiny-phi", "--source", f"{REPO}@main", "--only", "gguf-q8_0", "--out",
              str(hub.root / "spoiled-out"), env=hub.env(spoiled, offline=True))
    assert bad.returncode == ExitCode.INTEGRITY and "Traceback" not in bad.stderr, bad.stderr
    assert (f"error: model.safetensors of {REPO}@{hub.main} in the local cache does not match its sha256 "
            f"{blob.name}: removed it") in bad.stderr
    assert not blob.exists()


def test_lfs_bytes_that_do_not_match_their_pointer_are_refused(hub: Hub, tiny_phi: Path) -> None:
    commit = hub.kit.add_repo("phi-org/tiny-corrupt", tiny_phi)
    obj = hub.kit.lfs_object("phi-org/tiny-corrupt", "model.safetensors")
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte different: only the digest can tell
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))
    home = hub.root / "home-corrupt"
    out = phi("build", "tiny-phi", "--source", "phi-org/tiny-corrupt@main", "--only", "gguf-q8_0", "--out",
              str(hub.root / "corrupt-out"), env=hub.env(home))
    assert out.returncode == ExitCode.INTEGRITY and "Traceback" not in out.stderr, out.stderr
    want = sha256(tiny_phi / "model.safetensors")
    assert (f"error: model.safetensors of phi-org/tiny-corrupt@{commit}: the bytes served hash to "
            f"{hashlib.sha256(data).hexdigest()}, not the sha256 of its LFS pointer {want}: refused") in out.stderr
    assert not list((home / "hub" / "models--phi-org--tiny-corrupt" / "blobs").glob(
        hashlib.sha256(data).hexdigest()))  # nothing left in the cache for a later (offline) build to take


# -- phi-get import: an upstream prebuilt artifact ------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(hub: Hub) -> Iterator[tuple[str, str]]:
    pytest.importorskip("fastapi")
    from phi_get.registry.testing import registry_server
    from phi_get.registry.tokens import mint_token

    with registry_server(hub.root / "registry") as running:
        yield running.url, mint_token(running.registry.engine, ["publish:*"])


def _upstream(hub: Hub, repo: str, variant: str) -> tuple[str, Path]:
    """The build's ``variant`` pushed to a Hub repo with a model card, as an upstream publisher's; its commit."""
    built = hub.out / "tiny-phi" / "0.1.0" / variant
    src = hub.root / f"upstream-{repo.replace('/', '-')}"
    shutil.copytree(built, src)
    (src / "manifest.json").unlink()  # an upstream repo has no phi-get manifest
    (src / "README.md").write_text(f"# {variant} of tiny-phi, built upstream\n")
    return hub.kit.add_repo(repo, src), built


@pytest.mark.parametrize(("variant", "repo", "declared"), [
    ("gguf-q8_0", "phi-org/tiny-gguf", "upstream-q8"),  # a name outside the catalog: q8_0 read from the file
    ("safetensors-fp16", "phi-org/tiny-fp16", "safetensors-fp16"),
])
def test_import_a_prebuilt_artifact_measures_it_and_publishes_it(hub: Hub, registry: tuple[str, str], variant: str,
                                                                 repo: str, declared: str) -> None:
    commit, built = _upstream(hub, repo, variant)
    url, token = registry
    out = hub.out  # beside the build: its reference logits of phi-org/tiny@main are reused, not recomputed
    run = phi("import", f"hf://{repo}@main", "--name", "tiny-phi", "--version", "0.2.0", "--variant", declared,
              "--reference", f"{REPO}@main", "--out", str(out), "--registry", url, "--json",
              env={**hub.env(), "PHI_GET_TOKEN": token})
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    (published,) = doc["published"]
    assert published["created"] and published["variant"] == declared
    manifest = load_artifact_folder(doc["folder"])
    reference = load_artifact_folder(built)
    assert (manifest.provenance.source.repo, manifest.provenance.source.revision) == (repo, commit)
    assert manifest.provenance.recipe["imported"] == f"hf://{repo}@main"
    # Every file with its size and sha256; the weights are the bytes built here, the model card came along.
    files = {f.path: (f.size, f.sha256) for f in manifest.files}
    assert {f.path: (f.size, f.sha256) for f in reference.files}.items() <= files.items()
    assert "README.md" in files
    # Inferred: format, precision, quantization, targets and runtime are the catalog entry's.
    for key in ("format", "precision", "quantization", "targets", "runtime"):
        assert getattr(manifest, key) == getattr(reference, key), key
    assert manifest.memory == reference.memory and manifest.architecture == reference.architecture
    # Measured through its runtime against the reference, as the build measured the same bytes.
    assert manifest.quality.check == "runtime"
    assert manifest.quality.metrics == reference.quality.metrics
    # What the registry serves is this manifest.
    import httpx

    index = httpx.get(f"{url}/v1/models/tiny-phi/index.json", timeout=30).json()
    assert published["manifest"] in json.dumps(index), index


def test_import_without_a_reference_is_a_structural_check_and_says_so(hub: Hub) -> None:
    commit, _ = _upstream(hub, "phi-org/tiny-gguf-nr", "gguf-q8_0")
    out = hub.root / "import-noref"
    run = phi("import", "hf://phi-org/tiny-gguf-nr@main", "--name", "tiny-phi", "--version", "0.3.0", "--variant",
              "gguf-q8_0", "--targets", "cpu-x86_64", "--out", str(out), "--no-publish", env=hub.env())
    assert run.returncode == 0, run.stderr
    manifest = load_artifact_folder(out / "tiny-phi" / "0.3.0" / "gguf-q8_0")
    assert manifest.quality.check == "structural" and manifest.quality.metrics == {}
    assert "no reference checkpoint was given (--reference): llama.cpp loaded it and generated" in manifest.quality.note
    assert manifest.targets == ("cpu-x86_64",)  # declared over the catalog's
    assert manifest.provenance.source.revision == commit


@pytest.mark.parametrize(("case", "exit_code", "expected"), [
    ("empty", ExitCode.FAILURE, "phi-org/up-empty@main (commit {commit}) has no files: nothing to import"),
    ("unrecognised", ExitCode.FAILURE,
     "no artifact phi-get recognises among the files (README.md, weights.bin): expected a .gguf file"),
    ("corrupt", ExitCode.INTEGRITY, "model.gguf of phi-org/up-corrupt@{commit}: the bytes served hash to"),
])
def test_import_refuses_an_empty_an_unrecognisable_or_a_corrupt_repo(hub: Hub, case: str, exit_code: int,
                                                                     expected: str) -> None:
    repo = f"phi-org/up-{case}"
    src = hub.root / f"src-{case}"
    src.mkdir()
    if case == "unrecognised":
        (src / "README.md").write_text("weights in a format of our own\n")
        (src / "weights.bin").write_bytes(os.urandom(4096))
    elif case == "corrupt":
        shutil.copyfile(hub.out / "tiny-phi" / "0.1.0" / "gguf-q8_0" / "model.gguf", src / "model.gguf")
    commit = hub.kit.add_repo(repo, src)
    if case == "corrupt":
        obj = hub.kit.lfs_object(repo, "model.gguf")
        obj.chmod(0o644)
        data = bytearray(obj.read_bytes())
        data[-1] ^= 0xFF  # same size, other bytes
        obj.write_bytes(bytes(data))
    run = phi("import", f"hf://{repo}@main", "--name", "tiny-phi", "--version", "0.4.0", "--variant", "gguf-q8_0",
              "--out", str(hub.root / f"import-{case}"), "--no-publish", env=hub.env(hub.root / f"home-{case}"))
    assert run.returncode == exit_code and "Traceback" not in run.stderr, run.stderr
    assert expected.format(commit=commit) in run.stderr, run.stderr
    assert not (hub.root / f"import-{case}" / "tiny-phi" / "0.4.0" / "gguf-q8_0").exists()
