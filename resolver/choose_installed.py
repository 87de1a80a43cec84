"""Which installed artifact ``run`` loads, and on which target: the resolver's choice among those installed.

With several variants of a model installed, ``phi-get run`` and
``phi_get.run()`` take the one ``phi-get resolve`` would choose for this
device among them, say which and why, and run it on the target that
resolution chose.  ``--variant`` names one; its target is still
the resolver's for this device.

Imports :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

from phi_get.manifests.index import IndexEntry

from .detect import load_device
from .resolve import make_policy, parse_requirement, resolve
from .store import Installed, Store

__all__ = ["pick_installed"]


def pick_installed(store: Store, name: str, variant: str | None = None,
                   device: str | None = None) -> tuple[Installed, str, str | None]:
    """(the installed artifact, why it was picked, the target tag to run it on; None: the CPU)."""
    if variant is not None:
        inst = store.find(name, variant)
        res = resolve(parse_requirement(name), load_device(device), [IndexEntry.from_manifest(store.load(inst))],
                      make_policy())
        where = res.chosen.target.tag if res.chosen is not None and res.chosen.target is not None else None
        return inst, "asked for by --variant", where
    installed = list(store.installed(name))
    if not installed:
        return store.find(name), "", None  # raises NotInstalledError with its hint
    by_digest = {i.digest: i for i in installed}
    entries = [IndexEntry.from_manifest(store.load(i)) for i in installed]
    res = resolve(parse_requirement(name), load_device(device), entries, make_policy())
    if res.chosen is not None and res.chosen.entry.manifest in by_digest and res.chosen.target is not None:
        return (by_digest[res.chosen.entry.manifest],
                f"the installed variant phi-get resolve picks: {res.chosen.reason}", res.chosen.target.tag)
    return (store.find(name), "no installed variant fits this device by the resolver's checks; running the latest "
            "installed", None)
