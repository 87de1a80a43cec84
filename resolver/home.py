"""Where the install store lives: ``PHI_GET_HOME``, else ``$XDG_CACHE_HOME/phi-get``, else ``~/.cache/phi-get``.

Its own module so that commands which only need the path (``resolve``: the
index cache, the trust store) do not import the store's machinery.
Imports the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = ["HOME_ENV", "default_home"]

HOME_ENV: Final = "PHI_GET_HOME"


def default_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phi-get"
