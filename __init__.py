"""phi-get: a package manager for quantized Phi small language models.

The repository root is the ``phi_get`` package; each top-level folder is one
of its sub-packages (``phi_get.manifests``, ``phi_get.resolver``,
``phi_get.registry``, ``phi_get.builders``).  Importing ``phi_get`` is cheap:
the public functions below import their machinery when first called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "install", "run"]


def install(name: str, **options: Any) -> Any:
    """Resolve, download, verify and install a model for this device.

    Returns the installed artifact's folder (a :class:`pathlib.Path`).
    See :func:`phi_get.resolver.api.install` for the options.
    """
    from .resolver.api import install as _install

    return _install(name, **options)


def run(name: str, prompt: str, **options: Any) -> Any:
    """Generate from an installed model on the target the resolver chose for this device.

    Returns a :class:`phi_get.resolver.run.Generation` (text, device, speeds,
    peak memory).  See :func:`phi_get.resolver.api.run` for the options.
    """
    from .resolver.api import run as _run

    return _run(name, prompt, **options)
