"""The ``phi-get`` command: wires the parts' commands into one typer app.

Each part contributes its commands through ``register(app)`` in its own
``cli`` module (``phi_get.resolver.cli``, ``phi_get.builders.cli``,
``phi_get.registry.cli``).  Those modules import only typer and the standard
library at import time; torch, transformers, onnx and sqlmodel are imported
inside the commands that need them, so ``phi-get --help`` stays fast.

Errors: every :class:`PhiGetError` is rendered here, once, as
``error: <message>`` plus its hint, and exits with the error's ``exit_code``.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from typing import TYPE_CHECKING, Any, Optional

from phi_get import __version__
from phi_get.manifests.errors import EXIT_CODE_HELP, ExitCode, PhiGetError

if TYPE_CHECKING:
    import typer

__all__ = ["build_app", "main"]

#: Parts that add commands; a part missing from this install is skipped.
PARTS = ("phi_get.resolver.cli", "phi_get.builders.cli", "phi_get.registry.cli",
         "phi_get.resolver.trust_cli", "phi_get.registry.trust_cli", "phi_get.resolver.bundle_cli")


@cache
def build_app() -> typer.Typer:
    """The typer app with every installed part's commands (built once, on first use: ``resolve`` never needs it)."""
    import typer

    app = typer.Typer(
        name="phi-get",
        help="A package manager for quantized Phi models: build, publish, resolve, install, lock, run.",
        epilog="\b\nExit codes (every command):\n" + EXIT_CODE_HELP
               + "\n\b\nSizes are in decimal units (1 GB = 10^9 bytes); --json gives exact bytes.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"phi-get {__version__}")
            raise typer.Exit()

    @app.callback()
    def _root(
        version: Optional[bool] = typer.Option(  # noqa: UP045 - typer needs Optional here
            None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """phi-get: the right quantized Phi model for each device, verified."""

    @app.command("demo")
    def demo(
        work: str = typer.Option(".demo", help="Work folder (wiped first)."),
        only: Optional[str] = typer.Option(None, help="Build only these variants (comma-separated ids or globs)."),  # noqa: UP045
    ) -> None:
        """Run the whole product end to end: checkpoint, registry, build, publish, resolve, lock, sync, run."""
        from pathlib import Path

        from phi_get.demo import run_demo

        raise typer.Exit(run_demo(Path(work), only=only))

    for module_name in PARTS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(app, **_WIRING.get(module_name, {}))
    return app


def _resolver_advisor() -> Any:
    """The registry's web page "what fits my device", answered by the client's resolver (phi_get.advisor)."""
    from phi_get.advisor import ResolverAdvisor

    return ResolverAdvisor()


def _prebuilt_importer() -> Any:
    """``phi-get import`` (a registry command): the builders fetch, check and package the upstream artifact."""
    from phi_get.builders.cli import _quiet_libraries  # the builder commands quiet the same libraries
    from phi_get.builders.prebuilt import Declared, import_prebuilt

    _quiet_libraries()

    def run(source: str, *, declared: dict[str, Any], **options: Any) -> Any:
        return import_prebuilt(source, declared=Declared(**declared), **options)

    return run


#: What the root wires into a part's commands, since the parts never import each other.
_WIRING: dict[str, dict[str, Any]] = {"phi_get.registry.cli": {"advisor": _resolver_advisor,
                                                               "importer": _prebuilt_importer}}


def __getattr__(name: str) -> Any:
    if name == "app":  # `from phi_get.cli import app` still works; it is built on first use
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render_error(exc: PhiGetError) -> int:
    """Print an error for people and return its exit code."""
    print(f"error: {exc}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code


def _usage_error_classes() -> tuple[type[BaseException], ...]:
    """Usage errors (bad option values, missing arguments): click's, and
    the copy of click that newer typer releases vendor."""
    import click

    classes: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        pass
    else:
        classes.append(TyperClickException)
    return tuple(classes)


def _quiet_broken_pipe() -> None:
    """The reader of our stdout went away (``phi-get list | head -1``): stop without a traceback."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would fail again


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except BrokenPipeError:
        _quiet_broken_pipe()
        sys.exit(ExitCode.OK)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # answered before the command line is built (it imports every part)
        print(f"phi-get {__version__}")
        sys.exit(ExitCode.OK)
    if args[:1] == ["resolve"]:
        # The device's hot path parses its own arguments (resolver/resolve_command.py):
        # typer's value coercion imports pydantic (~95 ms) for every command.
        from phi_get.resolver.resolve_command import main as resolve_main

        sys.exit(resolve_main(args[1:]))
    import typer

    app = build_app()
    try:
        rc = app(args=argv, prog_name="phi-get", standalone_mode=False)
    except PhiGetError as exc:
        sys.exit(render_error(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        usage = _usage_error_classes()
        if isinstance(exc, usage):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", ExitCode.BAD_INPUT))
        raise
    sys.exit(rc if isinstance(rc, int) else ExitCode.OK)
