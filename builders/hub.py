"""Files of a Hugging Face Hub repo at one exact commit, fetched with huggingface_hub and checked.

The one place phi-get talks to the Hub (a build's ``--source REPO@REV``, the
recipes' repos, ``phi-get import hf://REPO@REV``):

1. :func:`resolve_revision`: a branch, tag or commit becomes the exact
   40-hex commit (huggingface_hub's repo API, recorded in the cache's
   ``refs/``); everything after reads at that commit, so a branch moving
   mid-build changes nothing.
2. :func:`download`: ``snapshot_download`` of the files matching the
   patterns at that commit, then every downloaded file is held to the repo's
   git tree at that commit (``list_repo_tree``): its size, and its sha256
   for an LFS file (the pointer's ``oid``) or its git blob id otherwise.
   huggingface_hub itself checks neither (a mirror serving other bytes than
   its pointer says passes through it); a file that fails is removed from
   the cache and refused.

Where the Hub is, the token, the cache and offline mode are huggingface_hub's
own settings, read by it from the environment: ``HF_ENDPOINT`` (the Hub or a
Hub-compatible mirror), ``HF_TOKEN``, ``HF_HOME``/``HF_HUB_CACHE``,
``HF_HUB_OFFLINE=1``.  phi-get has no endpoint setting of its own.  Offline,
the revision is resolved from the cache's refs and LFS files are checked
against the sha256 their cache blobs are named by.

Every failure is a :class:`HubError` naming the repo and revision and what
is wrong (no such repo, gated, no such revision, no such file, offline and
not cached, bytes that do not match), never huggingface_hub's traceback.

May import ``phi_get.manifests``; huggingface_hub is imported inside functions.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi_get.manifests.artifact import sha256_file

from .errors import CheckpointError, HubError, HubIntegrityError, HubNotFoundError

__all__ = ["HubFile", "HubSnapshot", "download", "git_blob_id", "hub_error", "parse_hub_spec", "resolve_revision"]

#: ``owner/name@revision``: a Hub repo id and a branch, tag or commit.
_HUB_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)@([A-Za-z0-9._/-]+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 20


@dataclass(frozen=True, kw_only=True, slots=True)
class HubFile:
    """One file as the repo's git tree at the commit describes it."""

    path: str
    size: int
    #: The LFS pointer's sha256 (``oid``), or None for a file stored in git itself.
    lfs_sha256: str | None
    #: The git blob id (sha1 of ``blob <size>\\0`` + content); for an LFS file, the pointer's.
    blob_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class HubSnapshot:
    """Checked files of ``repo`` at ``commit``, in ``folder`` (huggingface_hub's cache snapshot)."""

    repo: str
    commit: str
    folder: Path
    #: The downloaded files (paths relative to ``folder``), sorted; empty when nothing matched.
    files: tuple[str, ...]


def parse_hub_spec(text: str) -> tuple[str, str] | None:
    """``(repo, revision)`` of ``owner/name@revision``, or None when ``text`` is not one."""
    m = _HUB_SPEC.match(text)
    return (m.group(1), m.group(2)) if m else None


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as exc:  # pragma: no cover - the build extra has it
        raise CheckpointError(f"huggingface-hub is needed to fetch from the Hugging Face Hub: {exc}") from None
    return huggingface_hub


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _where() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_error(exc: BaseException, repo: str, revision: str, path: str | None = None) -> HubError:
    """huggingface_hub's exception as one sentence naming the repo, revision (and file)."""
    from huggingface_hub import errors as e

    at = f"{repo}@{revision}"
    where = _where()
    if isinstance(exc, e.GatedRepoError):
        return HubNotFoundError(f"{repo} on {where} is gated: accept its terms on the Hub with your account, "
                        f"then set HF_TOKEN to a token of that account")
    if isinstance(exc, e.RepositoryNotFoundError):
        return HubNotFoundError(f"no repository {repo} on {where} (or it is private: set HF_TOKEN)")
    if isinstance(exc, e.RevisionNotFoundError):
        return HubNotFoundError(f"{repo} on {where} has no revision {revision!r} (a branch, tag or commit)")
    if isinstance(exc, e.LocalEntryNotFoundError | e.OfflineModeIsEnabled) and _offline():
        what = f"{path} of {at}" if path else at
        return HubError(f"HF_HUB_OFFLINE is set and {what} is not in the local Hugging Face cache: "
                        f"fetch it once with Hub access, or unset HF_HUB_OFFLINE")
    if isinstance(exc, e.EntryNotFoundError) and not isinstance(exc, e.LocalEntryNotFoundError):
        return HubNotFoundError(f"{at} on {where} has no file {path or '(the requested file)'}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return HubError(f"cannot fetch {at} from the Hugging Face Hub at {where}: {first}")


def resolve_revision(repo: str, revision: str) -> str:
    """The exact commit a branch, tag or commit of ``repo`` names.

    Asked through ``snapshot_download`` (of config.json alone, when the repo
    has one), which resolves the revision with the Hub's repo API and records
    the branch or tag in the cache's ``refs/``, so that offline mode later
    resolves the same name from the cache.
    """
    hub = _hub()
    try:
        commit = Path(hub.snapshot_download(repo, revision=revision, allow_patterns=["config.json"])).name
    except Exception as exc:  # noqa: BLE001 - network, auth, missing revision: each said once, in its words
        raise hub_error(exc, repo, revision) from None
    if not _COMMIT.match(commit):
        raise HubError(f"{_where()} resolved {repo}@{revision} to {commit!r}, not a 40-hex commit")
    return commit


def git_blob_id(path: Path) -> str:
    """git's id of a file's content: sha1 over ``blob <size>\\0`` and the bytes."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _tree(repo: str, commit: str) -> dict[str, HubFile]:
    api = _hub().HfApi()
    try:
        entries = list(api.list_repo_tree(repo, revision=commit, recursive=True))
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, repo, commit) from None
    files: dict[str, HubFile] = {}
    for entry in entries:
        if getattr(entry, "size", None) is None or not hasattr(entry, "blob_id"):
            continue  # a folder
        lfs = getattr(entry, "lfs", None)
        files[entry.path] = HubFile(path=entry.path, size=int(lfs.size if lfs else entry.size),
                                    lfs_sha256=str(lfs.sha256) if lfs else None, blob_id=str(entry.blob_id))
    return files


def _drop_cached(path: Path) -> None:
    """Remove a refused file from the cache (its blob and the snapshot's link), so nothing reuses it."""
    blob = path.resolve()
    for p in (blob, path):
        p.unlink(missing_ok=True)


def _check(snapshot: Path, rel: str, want: HubFile | None, at: str) -> None:
    path = snapshot / rel
    if want is None:
        if _offline():
            blob = path.resolve().name  # huggingface_hub names an LFS blob by its sha256 (the Hub's etag)
            if _SHA256.match(blob) and sha256_file(path) != blob:
                _drop_cached(path)
                raise HubIntegrityError(f"{rel} of {at} in the local cache does not match its sha256 {blob}: removed it")
            return
        _drop_cached(path)
        raise HubIntegrityError(f"{at} served {rel}, which its git tree does not list: refused")
    size = path.stat().st_size
    if size != want.size:
        _drop_cached(path)
        raise HubIntegrityError(f"{rel} of {at} has {size} bytes, its {'LFS pointer' if want.lfs_sha256 else 'git tree'} "
                       f"says {want.size}: refused (removed from the cache)")
    if want.lfs_sha256 is not None:
        got, expected, kind = sha256_file(path), want.lfs_sha256, "the sha256 of its LFS pointer"
    else:
        got, expected, kind = git_blob_id(path), want.blob_id, "its git blob id"
    if got != expected:
        _drop_cached(path)
        raise HubIntegrityError(f"{rel} of {at}: the bytes served hash to {got}, not {kind} {expected}: refused "
                       f"(removed from the cache)")


def download(repo: str, commit: str, patterns: Sequence[str] | None = None) -> HubSnapshot:
    """Fetch the files of ``repo`` at ``commit`` matching ``patterns`` (all when None), each checked."""
    hub = _hub()
    at = f"{repo}@{commit}"
    tree = None if _offline() else _tree(repo, commit)
    try:
        folder = Path(hub.snapshot_download(repo, revision=commit,
                                            allow_patterns=list(patterns) if patterns is not None else None))
    except Exception as exc:  # noqa: BLE001
        missing = [p for p in patterns or () if not any(ch in p for ch in "*?[")]
        raise hub_error(exc, repo, commit, missing[0] if len(missing) == 1 else None) from None
    # The snapshot folder is shared by every download of this commit: only what was asked is this one's.
    present = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    files = sorted(rel for rel in present
                   if patterns is None or any(fnmatch.fnmatchcase(rel, g) for g in patterns))
    if patterns is not None and tree is not None:
        for p in patterns:  # a plain name asked for and absent is a missing file, not an empty match
            if not any(ch in p for ch in "*?[") and p not in tree:
                raise HubNotFoundError(f"{at} on {_where()} has no file {p}")
    for rel in files:
        _check(folder, rel, None if tree is None else tree.get(rel), at)
    return HubSnapshot(repo=repo, commit=commit, folder=folder, files=tuple(files))
