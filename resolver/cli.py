"""Device-side commands: device, resolve, install, init, lock, sync, run, list, verify, gc, remove.

Each command parses its options, calls one function of the resolver, and
renders the result (text for people, ``--json`` for scripts).  Errors are
raised, never printed here: the root CLI renders a PhiGetError once.
Conventions (every command): sizes in decimal units
(:mod:`phi_get.manifests.display`), exact bytes in ``--json``; tables with a
header (rich on a terminal, plain text in a pipe); what was chosen and why
is said, on stdout, unless ``--quiet`` or ``--json``.

Imports only typer and the standard library at module level; the resolver's
modules are imported inside the commands, and model runtimes only inside
``run`` (so ``phi-get --help`` and every other command stay light).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

import typer

from .options import DEFAULT_PREFER, OPTION_HELP

__all__ = ["register"]

# One definition of the options resolve shares with the other commands: its argparse parser's texts.
_REGISTRY = typer.Option(None, "--registry", "-r", help=OPTION_HELP["registry"])
_HOME = typer.Option(None, "--home", help=OPTION_HELP["home"])
_DEVICE = typer.Option(None, "--device", help=OPTION_HELP["device"])
_OFFLINE = typer.Option(None, "--offline/--online", help=OPTION_HELP["offline"])
_PREFER = typer.Option(DEFAULT_PREFER, "--prefer", help=OPTION_HELP["prefer"])
_FORMAT = typer.Option(None, "--format", help=OPTION_HELP["format"])
_PRECISION = typer.Option(None, "--precision", help=OPTION_HELP["precision"])
_CONTEXT = typer.Option(None, "--context", min=1, help=OPTION_HELP["context"])
_JSON = typer.Option(False, "--json", help=OPTION_HELP["json"])
_PROJECT = typer.Option(Path(), "--project", help="Folder holding phi.toml (and phi.lock).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress output.")
_INIT_MODELS = typer.Argument(None, help="Models to declare, NAME or NAME with a version specifier "
                                         "(default: phi-3.5-mini).")


def _emit(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


def _home(home: Path | None) -> Path:
    from .store import default_home

    return home if home is not None else default_home()


def _policy(prefer: str, fmt: str | None, precision: str | None, context: int | None,
            require_runtime: bool = False) -> Any:
    from .resolve_command import policy_from_options  # one parser of these options, shared with resolve

    return policy_from_options(prefer, fmt, precision, context, require_runtime)


def _size(n: int) -> str:
    from phi_get.manifests.display import human_bytes

    return human_bytes(n)


def _table(headers: list[str], rows: list[list[Any]], right: tuple[str, ...] = ()) -> None:
    from .progress import print_table

    print_table(headers, rows, right=right)


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
    typer.echo(f"{profile.os} {profile.arch}, {profile.cores} cores, {_size(profile.memory_bytes)} memory")
    for acc in profile.accelerators:
        mem = f", {_size(acc.memory_bytes)}" if acc.memory_bytes else ""
        typer.echo(f"  {acc.type} {acc.vendor}: {acc.name}{mem}")
    for name, version in sorted(profile.runtimes.items()):
        typer.echo(f"  runtime {name} {version}")
    for name, reason in sorted(dict(profile.extra.get("probes", {})).items()):
        if reason != "ok":
            typer.echo(f"  not detected ({name}): {reason}")
    typer.echo("targets, best first:")
    _table(["RANK", "TARGET", "HARDWARE", "MEMORY", "BUDGET"],
           [[t.rank, t.tag, t.hardware, str(t.pool), _size(budget_of(t))] for t in supported_targets(profile)],
           right=("RANK", "BUDGET"))


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
    req, pol = parse_requirement(requirement), _policy(prefer, fmt, precision, context)
    reporter = _reporter(json_out, quiet)
    with _resumable(store.home, reporter):
        result = install_requirement(store, sources, req, load_device(device), pol, reporter=reporter)
    if json_out:
        _emit(result.to_json())
    elif not quiet:
        m = result.manifest
        state = "already installed" if result.already_installed else "installed"
        typer.echo(f"{state} {m.name} {m.version} {m.variant} ({m.format} {m.precision}, {_size(m.size)}) "
                   f"at {result.path}")
        chosen = result.resolution.chosen if result.resolution else None
        if chosen is not None:
            typer.echo(f"  why: {chosen.reason}")
            for n in result.resolution.notes if result.resolution else ():
                typer.echo(f"  note: {n}")
        if chosen is not None and chosen.runtime_version is None:
            typer.echo(f"note: its runtime is not installed: pip install '{m.runtime.distribution}"
                       f"{m.runtime.specifier}'", err=True)


class _resumable:  # a context manager, named as one reads it: with _resumable(...)
    """Ctrl-C during a download: stop the bars (the cursor comes back), say how to resume, exit 130."""

    def __init__(self, home: Path, reporter: Any) -> None:
        self.home, self.reporter = home, reporter

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if self.reporter is not None and hasattr(self.reporter, "close"):
            self.reporter.close()
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            from phi_get.manifests.errors import ExitCode

            typer.echo(f"\ninterrupted: the bytes downloaded so far are kept in {self.home / 'partial'}; "
                       "run the same command again to resume", err=True)
            raise typer.Exit(ExitCode.INTERRUPTED)
        return False


_STARTER = """\
# phi.toml: what this project deploys, and to which kinds of device.
# Written by `phi-get init` for this machine ({machine}).
# The whole format is in the README (section "phi.toml"); an unknown key is
# an error naming the nearest known one.  Next: `phi-get lock` writes phi.lock, `phi-get sync --locked`
# installs exactly that on each device.

[project]
name = {name}
# Registries or mirrors, tried in order (http(s)://, file:// or a folder);
# --registry on the command line overrides them.
registries = [{registries}]

[models]
# NAME = "PEP 440 specifier" ("*" for any version), or a table:
#   NAME = {{ version = ">=1.0", prefer = "quality", format = "gguf",
#            precision = "int4", context = 4096 }}
# prefer: {prefer}; format: {formats};
# precision: {precisions}; context: tokens the memory check
# assumes (default min(model maximum, 4096)).
{models}

[device-classes]
# CLASS = "a device profile file, relative to this file" or a sample profile
# shipped with phi-get: {samples}.
# `phi-get device --json > FILE` writes a device's profile.
this-machine = "this-machine.json"
# edge = "pi-board"
# gpu = "gpu-server"
"""


def init_cmd(
    models: list[str] | None = _INIT_MODELS,
    project: Path = _PROJECT, registry: list[str] | None = _REGISTRY, device: str | None = _DEVICE,
    force: bool = typer.Option(False, "--force", help="Replace an existing phi.toml."),
    json_out: bool = _JSON,
) -> None:
    """Write a commented starter phi.toml (and this machine's profile, this-machine.json) in --project."""
    import os

    from phi_get.manifests.errors import ManifestError
    from phi_get.manifests.manifest import Format, Precision
    from phi_get.manifests.project import PREFER_VALUES

    from .detect import load_device, sample_profiles
    from .errors import ProjectExistsError
    from .resolve import parse_requirement
    from .sources import REGISTRY_ENV

    target = project / "phi.toml"
    if target.exists() and not force:
        raise ProjectExistsError(f"{target} exists already; pass --force to replace it",
                                 hint="phi-get lock reads it as it is")
    reqs = [parse_requirement(m, document="command line") for m in (models or ["phi-3.5-mini"])]
    urls = list(registry or []) or os.environ.get(REGISTRY_ENV, "").replace(",", " ").split()
    for url in urls:
        if '"' in url or "\\" in url or "\n" in url:
            raise ManifestError("a registry URL with quotes, backslashes or line breaks", field="--registry",
                                value=url, document="command line")
    profile = load_device(device)
    machine = f"{profile.os} {profile.arch}, {profile.cores} cores, {_size(profile.memory_bytes)} memory"
    text = _STARTER.format(
        machine=machine, name=json.dumps(project.resolve().name or "my-fleet"),
        prefer=" | ".join(PREFER_VALUES), formats=" | ".join(map(str, Format)),
        precisions=" | ".join(map(str, Precision)), samples=", ".join(sample_profiles()),
        registries=", ".join(json.dumps(u) for u in urls),
        models="\n".join(f"{json.dumps(r.name)} = {json.dumps(str(r.specifier) or '*')}" for r in reqs))
    project.mkdir(parents=True, exist_ok=True)
    (project / "this-machine.json").write_text(json.dumps(profile.to_json(), indent=2, sort_keys=True) + "\n")
    tmp = project / ".phi.toml.tmp"
    tmp.write_text(text)
    os.replace(tmp, target)
    if json_out:
        _emit({"project": str(target), "profile": str(project / "this-machine.json"), "registries": urls,
               "models": [str(r) for r in reqs]})
        return
    typer.echo(f"wrote {target} and {project / 'this-machine.json'} ({machine})")
    if not urls:
        typer.echo("note: no registry yet: add one to [project] registries, or pass --registry to phi-get lock",
                   err=True)


def lock_cmd(
    project: Path = _PROJECT,
    registry: list[str] | None = _REGISTRY, home: Path | None = _HOME, json_out: bool = _JSON,
) -> None:
    """Resolve phi.toml's models for each device class and write phi.lock (byte-identical for the same inputs)."""
    path, lock = _locked(project, _home(home), registry)
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
    bundle: Path | None = typer.Option(None, "--from", help="Install from a bundle folder (phi-get bundle export) "
                                       "instead of the lock's sources, with no network; verified with the TUF "
                                       "metadata it carries against the lock source's pinned root (or used "
                                       "unsigned where that source is accepted unsigned); signed artifacts need "
                                       "their publisher signature in the bundle."),
) -> None:
    """Install what phi.lock pins for this device class (without --locked: lock first)."""
    from .lock import sync_locked

    if bundle is not None:  # a bundle holds what the lock pins: nothing to lock again from it
        if not locked:
            raise typer.BadParameter("--from installs phi.lock as written: pass --locked too", param_hint="--from")
        registry, offline = [str(bundle)], True

    def warn(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    wrote = None
    if not locked:
        wrote, _lock = _locked(project, _home(home), registry)
    chosen = _sync_class(project, device_class, device, warn)
    if chosen is not None and not json_out and not quiet:  # None: no phi.lock, sync_locked says so
        how = "given by --device-class" if device_class else "the lock's class whose targets this device supports"
        typer.echo(f"{'wrote ' + str(wrote) if wrote else 'phi.lock not rewritten (--locked)'}; "
                   f"device class {chosen} ({how})")
    reporter = _reporter(json_out, quiet)
    with _resumable(_home(home), reporter):
        results = sync_locked(project, _home(home), device_class=chosen, registries=registry, device=device,
                              offline=offline, reporter=reporter, warn=warn)
    if json_out:
        _emit([{**r.to_json(), "device_class": chosen, "lock_written": wrote is not None} for r in results])
    elif not quiet:
        for r in results:
            m = r.manifest
            state = "already installed" if r.already_installed else "installed"
            typer.echo(f"{state} {m.name} {m.version} {m.variant} ({m.format} {m.precision}, {_size(m.size)}) "
                       f"at {r.path}")


def _locked(project: Path, home: Path, registry: list[str] | None) -> tuple[Path, Any]:
    """lock_project, with a missing registry explained in phi.toml's terms."""
    from phi_get import __version__

    from .errors import NoRegistryError
    from .lock import lock_project

    try:
        return lock_project(project, home, registries=registry, created_by=f"phi-get {__version__}")
    except NoRegistryError:
        raise NoRegistryError(f"no registry configured for {project / 'phi.toml'}",
                              hint="add registries = [\"URL\"] to its [project] table, pass --registry URL, "
                                   "or set PHI_GET_REGISTRY") from None


def _sync_class(project: Path, wanted: str | None, device: str | None, warn: Any) -> str | None:
    """The device class sync installs, and a warning when its artifacts do not run on this device."""
    from phi_get.manifests.lockfile import parse_lock
    from phi_get.manifests.targets import supported_targets

    from .detect import load_device
    from .lock import LOCK_NAME, _pick_class

    path = project / LOCK_NAME
    try:
        lock = parse_lock(path.read_bytes(), document=str(path))
    except FileNotFoundError:
        return wanted  # sync_locked says what is missing
    name = _pick_class(lock, wanted, device)
    profile = load_device(device)
    here = {t.tag for t in supported_targets(profile)}
    foreign = sorted({a.target for a in lock.for_class(name) if a.target not in here})
    if foreign:
        warn(f"device class {name} pins artifacts for {', '.join(foreign)}, which this device "
             f"({profile.os} {profile.arch}) does not support: they may not run here")
    return name


def run_cmd(
    name: str = typer.Argument(..., help="An installed model."),
    prompt: str = typer.Option(..., "--prompt", help="Text to continue."),
    max_tokens: int = typer.Option(32, "--max-tokens", min=1, max=4096, help="How many tokens to generate."),
    variant: str | None = typer.Option(None, "--variant", help="Which installed variant (default: the one "
                                                                  "phi-get resolve picks among those installed)."),
    target: str | None = typer.Option(None, "--target", help="Run on this target instead of the resolved one; "
                                                             "'cpu' opts out of the accelerator explicitly."),
    device: str | None = _DEVICE, home: Path | None = _HOME, json_out: bool = _JSON,
) -> None:
    """Load the installed artifact with its runtime and generate text: the smoke test on the device."""
    from phi_get.manifests.names import check_model_name

    from .run import generate
    from .store import Store

    store = Store(_home(home))
    inst, why, resolved = _pick_installed(store, check_model_name(name), variant, device)
    manifest = store.load(inst)
    chosen_target = target or resolved  # the resolution's target: GPU offload where it said so
    if not json_out:
        typer.echo(f"running {inst.name} {inst.version} {inst.variant} ({manifest.format} {manifest.precision}): "
                   f"{why}; target {chosen_target or 'cpu'}", err=True)
    gen = generate(inst.path, manifest, prompt, max_tokens=max_tokens, target=chosen_target)
    stats = {"target": chosen_target or "cpu", "device": gen.device, "prompt_tokens": gen.prompt_tokens,
             "prompt_tokens_per_s": gen.prompt_tokens_per_s, "tokens_per_s": gen.tokens_per_s,
             "peak_memory_bytes": gen.peak_memory_bytes}
    if json_out:
        _emit({"name": inst.name, "version": inst.version, "variant": inst.variant, "runtime": gen.runtime,
               "prompt": prompt, "text": gen.text, "new_tokens": gen.new_tokens, "why": why, **stats})
    else:
        typer.echo(prompt + gen.text)
        rates = ", ".join(f"{k} {v}" for k, v in (("prompt tok/s", gen.prompt_tokens_per_s),
                                                   ("gen tok/s", gen.tokens_per_s)) if v is not None)
        peak = f", peak memory {_size(gen.peak_memory_bytes)}" if gen.peak_memory_bytes else ""
        typer.echo(f"ran on {gen.device} ({gen.runtime}): {gen.new_tokens} tokens{', ' + rates if rates else ''}"
                   f"{peak}", err=True)


def _pick_installed(store: Any, name: str, variant: str | None,
                    device: str | None) -> tuple[Any, str, str | None]:
    """The installed artifact ``run`` loads, why, and where (resolver/choose_installed.py)."""
    from .choose_installed import pick_installed

    return pick_installed(store, name, variant, device)


def list_cmd(home: Path | None = _HOME, json_out: bool = _JSON,
             available: bool = typer.Option(False, "--available", help="List the models the sources serve "
                                                                       "(their catalogs) instead."),
             registry: list[str] | None = _REGISTRY) -> None:
    """List installed artifacts (or, with --available, the models the registries serve)."""
    from .store import Store

    if available:
        from .sources import sources_from

        sources = sources_from(registry, _home(home))
        models = sources.catalog()
        variants = {n: _latest_variants(sources, n, v) for n, v, _s in models}
        if json_out:
            _emit([{"name": n, "latest": v, "source": s,
                    "variants": [{"variant": e.variant, "format": str(e.format), "precision": str(e.precision),
                                  "size": e.size, "targets": list(e.targets)} for e in variants[n]]}
                   for n, v, s in models])
            return
        table: list[list[Any]] = []
        for n, v, s in models:
            table += [[n, e.version, e.variant, e.format, e.precision, _size(e.size), s] for e in variants[n]]
            table += [] if variants[n] else [[n, v or "-", None, None, None, None, s]]
        _table(["MODEL", "VERSION", "VARIANT", "FORMAT", "PRECISION", "SIZE", "SOURCE"], table, right=("SIZE",))
        return

    store = Store(_home(home))
    rows = [(i, store.load(i)) for i in store.installed()]
    if json_out:
        _emit([{"name": i.name, "version": i.version, "variant": i.variant, "manifest": i.digest,
                "format": str(m.format), "precision": str(m.precision), "size": m.size,
                "path": str(i.path)} for i, m in rows])
        return
    if not rows:
        typer.echo(f"nothing installed in {store.home} (phi-get install NAME)", err=True)
        return
    _table(["MODEL", "VERSION", "VARIANT", "FORMAT", "PRECISION", "SIZE", "MANIFEST", "PATH"],
           [[i.name, i.version, i.variant, m.format, m.precision, _size(m.size), i.digest[:19], i.path]
            for i, m in rows], right=("SIZE",))


def _latest_variants(sources: Any, name: str, latest: str | None) -> list[Any]:
    """The variants of a model's latest version (the index of the first source that has it)."""
    _src, index = sources.find_index(name)
    want = latest or max((str(e.version) for e in index.entries), default="")
    return [e for e in index.entries if str(e.version) == want and not e.yanked]


def verify_cmd(
    name: str | None = typer.Argument(None, help="Only this model."),
    repair: bool = typer.Option(False, "--repair", help="Re-download damaged artifacts."),
    registry: list[str] | None = _REGISTRY, home: Path | None = _HOME, json_out: bool = _JSON,
) -> None:
    """Re-hash installed artifacts against their manifests; report or repair."""
    from phi_get.manifests.names import check_model_name

    from .errors import IntegrityError, NotInstalledError
    from .maintenance import repair as repair_one
    from .maintenance import verify_store
    from .sources import sources_from
    from .store import Store

    store = Store(_home(home))
    if name is not None and not any(store.installed(check_model_name(name))):
        raise NotInstalledError(f"{name} is not installed in {store.home}: nothing to verify",
                                hint="phi-get list shows what is installed")
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


def gc_cmd(home: Path | None = _HOME,
           dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be removed and freed."),
           json_out: bool = _JSON) -> None:
    """Remove blobs, manifests and artifacts no installed ref uses, and old temp files."""
    from .maintenance import gc_store
    from .store import Store

    report = gc_store(Store(_home(home)), dry_run=dry_run)
    if json_out:
        _emit(report.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    freed = "would free" if dry_run else "freed"
    typer.echo(f"{verb} {len(report.removed)} entries, {freed} {_size(report.freed_bytes)}")


def remove_cmd(
    name: str = typer.Argument(..., help="An installed model."),
    version: str | None = typer.Option(None, "--version", help="Only this version (default: every one)."),
    variant: str | None = typer.Option(None, "--variant", help="Only this variant (default: every one)."),
    home: Path | None = _HOME, json_out: bool = _JSON,
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
        if not json_out:
            typer.echo(f"removed {inst.name} {inst.version} {inst.variant} (its bytes go at the next phi-get gc)")
    if json_out:
        _emit({"removed": [{"name": i.name, "version": i.version, "variant": i.variant, "manifest": i.digest}
                           for i in doomed]})


def register(app: typer.Typer) -> None:
    app.command("device")(device)
    # resolve parses its own arguments (resolve_command.py: fast, no pydantic); typer passes them through.
    app.command("resolve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                             "help_option_names": []}, add_help_option=False)(resolve_cmd)
    app.command("install")(install_cmd)
    app.command("init")(init_cmd)
    app.command("lock")(lock_cmd)
    app.command("sync")(sync_cmd)
    app.command("run")(run_cmd)
    app.command("list")(list_cmd)
    app.command("verify")(verify_cmd)
    app.command("gc")(gc_cmd)
    app.command("remove")(remove_cmd)
