"""The Python API for applications: ``phi_get.install("phi-3.5-mini")``, ``phi_get.run(...)``.

Thin: parses options into the same values the CLI builds, calls
:func:`.install.install_requirement`, returns the installed folder.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .detect import load_device
from .fetch import Reporter
from .install import install_requirement
from .resolve import make_policy, parse_requirement
from .run import Generation
from .sources import sources_from
from .store import Store, default_home

__all__ = ["install", "make_policy", "run"]


def install(name: str, *, registry: str | Sequence[str] | None = None, home: str | Path | None = None,
            device: str | None = None, prefer: str = "balanced", format: str | None = None,
            precision: str | None = None, context: int | None = None, offline: bool | None = None,
            require_runtime: bool = False, reporter: Reporter | None = None) -> Path:
    """Resolve ``name`` (``"phi-3.5-mini"``, ``"phi-3.5-mini>=1.0"``) for this device, install it, return its folder.

    ``registry``: one URL or several, in order (default: ``PHI_GET_REGISTRY``);
    ``home``: the store (default: ``PHI_GET_HOME`` or ``~/.cache/phi-get``);
    ``device``: a profile file or sample name (default: ``PHI_GET_DEVICE`` or the probe);
    ``prefer``, ``format``, ``precision``, ``context``: the resolution policy.
    """
    store = Store(Path(home) if home else default_home())
    regs = [registry] if isinstance(registry, str) else registry
    sources = sources_from(regs, store.home, offline=offline)
    policy = make_policy(prefer=prefer, format=format, precision=precision, context=context,
                         require_runtime=require_runtime)
    result = install_requirement(store, sources, parse_requirement(name), load_device(device), policy,
                                 reporter=reporter)
    return result.path


def run(name: str, prompt: str, *, home: str | Path | None = None, device: str | None = None,
        variant: str | None = None, target: str | None = None, max_tokens: int = 32) -> Generation:
    """Generate from an installed ``name`` as ``phi-get run`` does: the resolver's pick, on its target.

    ``target``: a target tag to run on instead (``"cpu"`` opts out of the
    accelerator explicitly).  An accelerator the installed runtime build
    cannot use raises :class:`~phi_get.resolver.errors.AcceleratorUnavailableError`
    naming the fix; it never runs on the CPU instead.  The result says which
    device it ran on, its speeds and peak memory.
    """
    from .choose_installed import pick_installed
    from .run import generate

    store = Store(Path(home) if home else default_home())
    inst, _why, where = pick_installed(store, name, variant, device)
    return generate(inst.path, store.load(inst), prompt, max_tokens=max_tokens, target=target or where)
