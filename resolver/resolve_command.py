"""The ``phi-get resolve`` command line: parsed with argparse, run without typer.

``resolve`` is the command scripts and fleets run most, and its whole
process should take well under 0.3 s.  typer (0.2x) coerces every option
value through pydantic, about 100 ms of imports per process, so this
command parses its own arguments: the same options, help texts and exit
codes (2 for a usage error) as the other commands.  The typer command in
:mod:`.cli` passes its arguments here; :func:`main` runs it with no typer
at all, for a root CLI that dispatches ``resolve`` before loading typer.

Imports the standard library at module level; :mod:`phi_get.manifests` and
sibling modules inside :func:`run_resolve`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "resolve_parser", "run_resolve"]

_HELP = {
    "requirement": "NAME or NAME with a version specifier: 'phi-3.5-mini>=1.0'.",
    "registry": "Registry or mirror base URL (http(s):// or file://); repeatable, tried in order. "
                "Default: PHI_GET_REGISTRY.",
    "device": "Device profile file or sample name (gpu-server, apple-laptop, pi-board, intel-ai-pc, "
              "snapdragon-laptop). Default: PHI_GET_DEVICE, else probe this machine.",
    "json": "Print JSON for scripts.",
    "explain": "List every candidate with its verdict and reason.",
    "prefer": "quality | size | speed",
    "format": "Pin a format: gguf, onnx, openvino, mlx, safetensors.",
    "precision": "Pin a precision: int4, int8, fp16, bf16, fp32.",
    "context": "Context length for the memory check (default min(model maximum, 4096)).",
    "offline": "Use cached indexes only (default: PHI_GET_OFFLINE).",
    "online": "Use the sources (the opposite of --offline).",
    "home": "The store (default: PHI_GET_HOME or ~/.cache/phi-get).",
    "require_runtime": "Reject artifacts whose runtime is not installed.",
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not in the range x>=1")
    return value


def resolve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="phi-get resolve", description="Choose the best artifact for this device and say why "
                                             "(nothing is downloaded).")
    p.add_argument("requirement", help=_HELP["requirement"])
    p.add_argument("--registry", "-r", action="append", help=_HELP["registry"])
    p.add_argument("--device", help=_HELP["device"])
    p.add_argument("--json", dest="json_out", action="store_true", help=_HELP["json"])
    p.add_argument("--explain", action="store_true", help=_HELP["explain"])
    p.add_argument("--prefer", default="quality", help=_HELP["prefer"])
    p.add_argument("--format", dest="fmt", metavar="FORMAT", help=_HELP["format"])
    p.add_argument("--precision", help=_HELP["precision"])
    p.add_argument("--context", type=_positive, help=_HELP["context"])
    p.add_argument("--offline", action="store_const", const=True, default=None, help=_HELP["offline"])
    p.add_argument("--online", dest="offline", action="store_const", const=False, help=_HELP["online"])
    p.add_argument("--home", type=Path, help=_HELP["home"])
    p.add_argument("--require-runtime", action="store_true", help=_HELP["require_runtime"])
    return p


def run_resolve(argv: Sequence[str]) -> None:
    """Parse ``argv`` (the arguments after ``resolve``), resolve, print; PhiGetError propagates."""
    from phi_get.manifests.errors import ManifestError

    from .detect import load_device
    from .explain import no_match_error, render_text, resolution_json
    from .resolve import make_policy, parse_requirement, resolve
    from .sources import sources_from
    from .store import default_home

    args = resolve_parser().parse_args(list(argv))
    try:
        pol = make_policy(prefer=args.prefer, format=args.fmt, precision=args.precision, context=args.context,
                          require_runtime=args.require_runtime)
    except ValueError as exc:
        raise ManifestError(str(exc), field="--prefer/--format/--precision", document="command line") from None
    req = parse_requirement(args.requirement)
    sources = sources_from(args.registry, args.home if args.home is not None else default_home(),
                           offline=args.offline)
    _src, index = sources.find_index(req.name)  # not install.resolve_from: resolve downloads nothing
    res = resolve(req, load_device(args.device), index.entries, pol)
    if args.json_out:
        print(json.dumps(resolution_json(res), indent=2, sort_keys=True))
    else:
        print(render_text(res, explain=args.explain))
    sys.stdout.flush()
    if res.chosen is None:
        raise no_match_error(res)


def main(argv: Sequence[str] | None = None) -> int:
    """``phi-get resolve ...`` without typer: the exit code; errors rendered as the root CLI renders them."""
    from phi_get.manifests.errors import PhiGetError

    try:
        run_resolve(sys.argv[2:] if argv is None else argv)
    except PhiGetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    return 0
