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
from typing import NoReturn

from .options import DEFAULT_PREFER, OPTION_HELP

_HELP = OPTION_HELP

__all__ = ["main", "policy_from_options", "resolve_parser", "run_resolve"]



def policy_from_options(prefer: str, fmt: str | None, precision: str | None, context: int | None,
                        require_runtime: bool = False) -> object:
    """The resolver's Policy from the command line's strings; a bad value names its option and the choices."""
    from phi_get.manifests.errors import ManifestError
    from phi_get.manifests.manifest import Format, Precision

    from .resolution import Prefer
    from .resolve import make_policy

    for option, value, enum in (("--prefer", prefer, Prefer), ("--format", fmt, Format),
                                ("--precision", precision, Precision)):
        choices = [str(v) for v in enum]
        if value is not None and value not in choices:
            import difflib  # only on the error path: resolve's normal run stays lean

            near = difflib.get_close_matches(value, choices, n=1)
            maybe = f"; did you mean {near[0]!r}?" if near else ""
            raise ManifestError(f"choose one of {', '.join(choices)}{maybe}", field=option, value=value,
                                document="command line")
    return make_policy(prefer=prefer, format=fmt, precision=precision, context=context,
                       require_runtime=require_runtime)


class _Parser(argparse.ArgumentParser):
    """argparse with the other commands' manners: a mistyped option gets the nearest known one."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            import difflib

            known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            tips = []
            for word in message.partition(":")[2].split():
                near = difflib.get_close_matches(word.split("=")[0], known, n=1) if word.startswith("-") else []
                if near:
                    tips.append(f"{word}: did you mean {near[0]}?")
            if tips:
                message += " (" + "; ".join(tips) + ")"
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\nTry 'phi-get resolve --help' for help.\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not in the range x>=1")
    return value


def resolve_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="phi-get resolve", allow_abbrev=False, description="Choose the best artifact for this device and say why "
                                             "(nothing is downloaded).")
    p.add_argument("requirement", help=_HELP["requirement"])
    p.add_argument("--registry", "-r", action="append", help=_HELP["registry"])
    p.add_argument("--device", help=_HELP["device"])
    p.add_argument("--json", dest="json_out", action="store_true", help=_HELP["json"])
    p.add_argument("--explain", action="store_true", help=_HELP["explain"])
    p.add_argument("--prefer", default=DEFAULT_PREFER, help=_HELP["prefer"])
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
    from .detect import load_device
    from .explain import no_match_error, render_text, resolution_json
    from .home import default_home
    from .resolve import parse_requirement, resolve
    from .sources import sources_from

    args = resolve_parser().parse_args(list(argv))
    pol = policy_from_options(args.prefer, args.fmt, args.precision, args.context, args.require_runtime)
    req = parse_requirement(args.requirement)
    sources = sources_from(args.registry, args.home if args.home is not None else default_home(),
                           offline=args.offline)
    src, index = sources.find_index(req.name)  # not install.resolve_from: resolve downloads nothing
    res = resolve(req, load_device(args.device), index.entries, pol)  # type: ignore[arg-type]
    # Where the index came from and whether it was verified (an unsigned source is always said).
    signed = bool(getattr(src, "signed", False))
    if args.json_out:
        print(json.dumps({**resolution_json(res), "source": {"url": src.stored, "signed": signed}},
                         indent=2, sort_keys=True))
    else:
        print(render_text(res, explain=args.explain))
        if args.explain:
            print(f"source: {src.stored} " + ("signed (TUF verified)" if signed else "UNSIGNED (accepted by the user)"))
    sys.stdout.flush()
    if res.chosen is None:
        raise no_match_error(res)


def main(argv: Sequence[str] | None = None) -> int:
    """``phi-get resolve ...`` without typer: the exit code; errors rendered as the root CLI renders them."""
    from phi_get.manifests.errors import ExitCode, PhiGetError

    try:
        run_resolve(sys.argv[2:] if argv is None else argv)
    except PhiGetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was downloaded or changed", file=sys.stderr)
        return ExitCode.INTERRUPTED
    return ExitCode.OK
