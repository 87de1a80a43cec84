"""A checkpoint as a toolchain must see it: the source's files linked, config.json fixed up.

Some toolchains read config.json in one layout only (mlx-lm: the Hub's
top-level rope keys; onnxruntime-genai's builder: the legacy ``type`` key
inside ``rope_parameters``).  Rather than edit the user's checkpoint, a
backend converts a staged copy: a folder of symbolic links to the source's
files (no weights copied) whose ``config.json`` alone is rewritten with the
keys the toolchain needs.  Standard library only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["stage_config"]


def stage_config(src: Path, staging: Path, extra: dict[str, Any]) -> bool:
    """Make ``staging`` the checkpoint ``src`` with ``extra`` merged into config.json's top level.

    Returns False (and creates nothing) when ``extra`` is empty: the
    toolchain then reads ``src`` as it is.  Removing ``staging`` removes the
    links, never what they point to.
    """
    if not extra:
        return False
    config = json.loads((src / "config.json").read_text("utf-8"))
    staging.mkdir()
    for item in sorted(src.iterdir()):
        if item.name != "config.json":
            os.symlink(item.resolve(), staging / item.name, target_is_directory=item.is_dir())
    tmp = staging / ".config.json.tmp"
    tmp.write_text(json.dumps({**config, **extra}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, staging / "config.json")
    return True
