"""phi-get: a package manager for quantized Phi small language models.

The repository root is the ``phi_get`` package; each top-level folder is one
of its sub-packages (``phi_get.manifests``, ``phi_get.resolver``,
``phi_get.registry``, ``phi_get.builders``).  Importing ``phi_get`` is cheap:
the public functions below import their machinery when first called.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "install", "run"]

_ROOT = os.path.dirname(os.path.abspath(__file__))


class _ProductPartsOnly:
    """Refuse ``phi_get.tests``, ``phi_get.bench`` and every other root folder that is no package.

    The repository root is the package, so in an editable install every
    folder beside the parts (tests/, bench/, build/, .venv/) would import as a
    namespace package of phi_get.  phi-get's sub-packages are regular
    packages (each has an ``__init__.py``), as the wheel ships them; a root
    folder without one is the repository's, not the package's.
    """

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        head, _, name = fullname.partition(".")
        if head == __name__ and name and "." not in name:
            folder = os.path.join(_ROOT, name)
            if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "__init__.py")):
                raise ModuleNotFoundError(f"No module named {fullname!r}: {name}/ is a folder of the repository, "
                                          "not a part of the phi_get package", name=fullname)
        return None


if not any(getattr(f, "__qualname__", "") == "_ProductPartsOnly" for f in sys.meta_path):
    sys.meta_path.insert(0, _ProductPartsOnly)


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
