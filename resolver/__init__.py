"""phi-get's device side: probe, resolve, fetch, install, lock, run.

Imports :mod:`phi_get.manifests` and the standard library (plus typer and
rich in the CLI, and each model runtime inside ``run`` only).  It never
imports :mod:`phi_get.registry` or :mod:`phi_get.builders`: the registry is
seen only through the wire layout of :mod:`phi_get.manifests.index`.
"""

from __future__ import annotations

__all__: list[str] = []
