"""Device-side commands: device, resolve, install, lock, sync, run, list, verify, gc, remove.

Each command parses its options, calls one function of the resolver, and
renders the result (text for people, ``--json`` for scripts).  Errors are
raised, never printed here: the root CLI renders a PhiGetError once.

Imports only typer and the standard library at module level; the resolver's
modules are imported inside the commands, and model runtimes only inside
``run`` (so ``phi-get --help`` and every other command stay light).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["register"]

_REGISTRY = typer.Option(None, "--registry", "-r",
                         help="Registry or mirror base URL (http(s):// or file://); repeatable, tried in order. "
                              "Default: PHI_GET_REGISTRY.")
_HOME = typer.Option(None, "--home", help="The store (default: PHI_GET_HOME or ~/.cache/phi-get).")
_DEVICE = typer.Option(None, "--device", help="Device profile file or sample name (gpu-server, apple-laptop, "
                                              "pi-board, intel-ai-pc, snapdragon-laptop). Default: "
                                              "PHI_GET_DEVICE, else probe this machine.")
_OFFLINE = typer.Option(None, "--offline/--online", help="Use cached indexes only (default: PHI_GET_OFFLINE).")
_PREFER = typer.Option("quality", "--prefer", help="quality | size | speed")
_FORMAT = typer.Option(None, "--format", help="Pin a format: gguf, onnx, openvino, mlx, safetensors.")
_PRECISION = typer.Option(None, "--precision", help="Pin a precision: int4, int8, fp16, bf16, fp32.")
_CONTEXT = typer.Option(None, "--context", min=1, help="Context length for the memory check "
                                                       "(default min(model maximum, 4096)).")
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
_PROJECT = typer.Option(Path(), "--project", help="Folder holding phi.toml (and phi.lock).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress output.")


def _emit(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


def _home(home: Path | None) -> Path:
    from .store import default_home

    return home if home is not None else default_home()


def _policy(prefer: str, fmt: str | None, precision: str | None, context: int | None,
            require_runtime: bool = False) -> Any:
    from phi_get.manifests.errors import ManifestError

    from .resolve import make_policy

    try:
        return make_policy(prefer=prefer, format=fmt, precision=precision, context=context,
                           require_runtime=require_runtime)
    except ValueError as exc:
        raise ManifestError(str(exc), field="--prefer/--format/--precision", document="command line") from None


def _reporter(json_out: bool, quiet: bool) -> Any:
    if json_out or quiet or not sys.stderr.isatty():
        return None
    from .progress import RichReporter

    return RichReporter()


def device(json_out: bool = _JSON, device: str | None = _DEVICE) -> None:
    """Show this device's profile (probed, or --device / PHI_GET_DEVICE) and its ranked targets."""
    from phi_get.manifests.targets import supported_targets

    from .detect import load_device
    from .resolve import budget_of

    profile = load_device(device)
    if json_out:
        _emit(profile.to_json())
        return
    typer.echo(f"{profile.os} {profile.arch}, {profile.cores} cores, {profile.memory_bytes / 2**30:.1f} GiB")
    for acc in profile.accelerators:
        mem = f", {acc.memory_bytes / 2**30:.1f} GiB" if acc.memory_bytes else ""
        typer.echo(f"  {acc.type} {acc.vendor}: {acc.name}{mem}")
    for name, version in sorted(profile.runtimes.items()):
        typer.echo(f"  runtime {name} {version}")
    for name, reason in sorted(dict(profile.extra.get("probes", {})).items()):
        if reason != "ok":
            typer.echo(f"  not detected ({name}): {reason}")
    typer.echo("targets, best first:")
    for t in supported_targets(profile):
        typer.echo(f"  {t.rank:>2} {t.tag:<18} {t.hardware} ({t.pool}, budget {budget_of(t) / 1e9:.2f} GB)")


def resolve_cmd(ctx: typer.Context) -> None:
    """Choose the best artifact for this device and say why (nothing is downloaded)."""
    from .resolve_command import run_resolve

    run_resolve(ctx.args)


def install_cmd(
    requirement: str = typer.Argument(..., help="NAME or NAME with a version specifier."),
    registry: list[str] | None = _REGISTRY, device: str | None = _DEVICE, home: Path | None = _HOME,
    prefer: str = _PREFER, fmt: str | None = _FORMAT, precision: str | None = _PRECISION,
    context: int | None = _CONTEXT, offline: bool | None = _OFFLINE,
    json_out: bool = _JSON, quiet: bool = _QUIET,
) -> None:
    """Resolve, download (parallel, resumable), verify every byte and install atomically."""
    from .detect import load_device
    from .install import install_requirement
    from .resolve import parse_requirement
    from .sources import sources_from
    from .store import Store

    store = Store(_home(home))
    sources = sources_from(registry, store.home, offline=offline)
    result = install_requirement(store, sources, parse_requirement(requirement), load_device(device),
                                 _policy(prefer, fmt, precision, context), reporter=_reporter(json_out, quiet))
    if json_out:
        _emit(result.to_json())
    elif not quiet:
        m = result.manifest
        state = "already installed" if result.already_installed else "installed"
        typer.echo(f"{state} {m.name} {m.version} {m.variant} ({m.format} {m.precision}) at {result.path}")
        chosen = result.resolution.chosen if result.resolution else None
        if chosen is not None and chosen.runtime_version is None:
            typer.echo(f"note: its runtime is not installed: pip install '{m.runtime.distribution}"
                       f"{m.runtime.specifier}'", err=True)


def lock_cmd(
    project: Path = _PROJECT,
    registry: list[str] | None = _REGISTRY, home: Path | None = _HOME, json_out: bool = _JSON,
) -> None:
    """Resolve phi.toml's models for each device class and write phi.lock (byte-identical for the same inputs)."""
    from phi_get import __version__

    from .lock import lock_project

    path, lock = lock_project(project, _home(home), registries=registry, created_by=f"phi-get {__version__}")
    if json_out:
        _emit({"lock": str(path), "artifacts": [a.to_json() for a in lock.artifacts]})
        return
    typer.echo(f"wrote {path}")
    for a in lock.artifacts:
        typer.echo(f"  {a.device_class}: {a.model} {a.version} {a.variant} on {a.target} ({a.manifest[:19]}...)")


def sync_cmd(
    locked: bool = typer.Option(False, "--locked", help="Install exactly phi.lock; refuse if it is out of date."),
    device_class: str | None = typer.Option(None, "--device-class", help="Which device class of the lock."),
    project: Path = _PROJECT,
    registry: list[str] | None = _REGISTRY, device: str | None = _DEVICE, home: Path | None = _HOME,
    offline: bool | None = _OFFLINE, json_out: bool = _JSON, quiet: bool = _QUIET,
) -> None:
    """Install what phi.lock pins for this device class (without --locked: lock first)."""
    from phi_get import __version__

    from .lock import lock_project, sync_locked

    if not locked:
        lock_project(project, _home(home), registries=registry, created_by=f"phi-get {__version__}")
    results = sync_locked(project, _home(home), device_class=device_class, registries=registry, device=device,
                          offline=offline, reporter=_reporter(json_out, quiet),
                          warn=lambda message: typer.echo(f"warning: {message}", err=True))
    if json_out:
        _emit([r.to_json() for r in results])
    elif not quiet:
        for r in results:
            typer.echo(f"synced {r.manifest.name} {r.manifest.version} {r.manifest.variant} at {r.path}")


def run_cmd(
    name: str = typer.Argument(..., help="An installed model."),
    prompt: str = typer.Option(..., "--prompt", help="Text to continue."),
    max_tokens: int = typer.Option(32, "--max-tokens", min=1, max=4096),
    variant: str | None = typer.Option(None, "--variant", help="Which installed variant (default: the latest "
                                                                  "installed)."),
    home: Path | None = _HOME, json_out: bool = _JSON,
) -> None:
    """Load the installed artifact with its runtime and generate text: the smoke test on the device."""
    from phi_get.manifests.names import check_model_name

    from .run import generate
    from .store import Store

    store = Store(_home(home))
    inst = store.find(check_model_name(name), variant)
    gen = generate(inst.path, store.load(inst), prompt, max_tokens=max_tokens)
    if json_out:
        _emit({"name": inst.name, "version": inst.version, "variant": inst.variant, "runtime": gen.runtime,
               "prompt": prompt, "text": gen.text, "new_tokens": gen.new_tokens})
    else:
        typer.echo(prompt + gen.text)


def list_cmd(home: Path | None = _HOME, json_out: bool = _JSON,
             available: bool = typer.Option(False, "--available", help="List the models the sources serve "
                                                                       "(their catalogs) instead."),
             registry: list[str] | None = _REGISTRY) -> None:
    """List installed artifacts (or, with --available, the models the registries serve)."""
    from .store import Store

    if available:
        from .sources import sources_from

        models = sources_from(registry, _home(home)).catalog()
        if json_out:
            _emit([{"name": n, "latest": v, "source": s} for n, v, s in models])
        for n, v, s in models if not json_out else []:
            typer.echo(f"{n} {v or '-'} ({s})")
        return

    rows = list(Store(_home(home)).installed())
    if json_out:
        _emit([{"name": i.name, "version": i.version, "variant": i.variant, "manifest": i.digest,
                "path": str(i.path)} for i in rows])
        return
    for i in rows:
        typer.echo(f"{i.name} {i.version} {i.variant} {i.digest[:19]}... {i.path}")


def verify_cmd(
    name: str | None = typer.Argument(None, help="Only this model."),
    repair: bool = typer.Option(False, "--repair", help="Re-download damaged artifacts."),
    registry: list[str] | None = _REGISTRY, home: Path | None = _HOME, json_out: bool = _JSON,
) -> None:
    """Re-hash installed artifacts against their manifests; report or repair."""
    from phi_get.manifests.names import check_model_name

    from .errors import IntegrityError
    from .maintenance import repair as repair_one
    from .maintenance import verify_store
    from .sources import sources_from
    from .store import Store

    store = Store(_home(home))
    checked, problems = verify_store(store, check_model_name(name) if name else None)
    repaired = []
    if repair and problems:
        sources = sources_from(registry, store.home)
        repaired = [str(repair_one(store, sources, p)) for p in problems]
    if json_out:
        _emit({"checked": len(checked), "problems": [p.to_json() for p in problems], "repaired": repaired})
    else:
        typer.echo(f"checked {len(checked)} artifacts, {len(problems)} damaged, {len(repaired)} repaired")
        for p in problems:
            typer.echo(f"  {p.installed.name} {p.installed.version} {p.installed.variant}: {p.what}")
    if problems and not repaired:
        raise IntegrityError(f"{len(problems)} installed artifacts", expected="their manifests",
                             actual="damaged files", where=str(store.home))


def gc_cmd(home: Path | None = _HOME, dry_run: bool = typer.Option(False, "--dry-run"),
           json_out: bool = _JSON) -> None:
    """Remove blobs, manifests and artifacts no installed ref uses, and old temp files."""
    from .maintenance import gc_store
    from .store import Store

    report = gc_store(Store(_home(home)), dry_run=dry_run)
    if json_out:
        _emit(report.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(report.removed)} entries, freed {report.freed_bytes} bytes")


def remove_cmd(
    name: str = typer.Argument(...),
    version: str | None = typer.Option(None, "--version"),
    variant: str | None = typer.Option(None, "--variant"),
    home: Path | None = _HOME,
) -> None:
    """Uninstall a model (its refs and folders); blobs go at the next gc."""
    from phi_get.manifests.names import check_model_name

    from .errors import NotInstalledError
    from .store import Store

    store = Store(_home(home))
    doomed = [i for i in store.installed(check_model_name(name))
              if version in (None, i.version) and variant in (None, i.variant)]
    if not doomed:
        raise NotInstalledError(f"{name} is not installed in {store.home}")
    for inst in doomed:
        store.remove_ref(inst)
        typer.echo(f"removed {inst.name} {inst.version} {inst.variant}")


def register(app: typer.Typer) -> None:
    app.command("device")(device)
    # resolve parses its own arguments (resolve_command.py: fast, no pydantic); typer passes them through.
    app.command("resolve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                             "help_option_names": []}, add_help_option=False)(resolve_cmd)
    app.command("install")(install_cmd)
    app.command("lock")(lock_cmd)
    app.command("sync")(sync_cmd)
    app.command("run")(run_cmd)
    app.command("list")(list_cmd)
    app.command("verify")(verify_cmd)
    app.command("gc")(gc_cmd)
    app.command("remove")(remove_cmd)
