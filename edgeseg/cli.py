"""The ``edgeseg`` command line.

Each subcommand lives in its own module under :mod:`edgeseg.commands` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import heavy libraries inside
``run`` so that ``edgeseg --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands, tune_process
from .errors import EdgesegError


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends "(default: X)" to an option's help when it has a default worth
    showing and its help does not already state one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or not shows_default(action) or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


def shows_default(action) -> bool:
    """Whether ``--help`` should state this option's default (not for flags, None or empty values)."""
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool):
        return False
    return not (isinstance(default, (str, list, tuple, dict)) and not default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="Segmentation models from PyTorch to real-time video on the edge.",
        epilog="Run `edgeseg COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        name = getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1].replace("_", "-"))
        doc = (module.__doc__ or "").strip()
        cmd = sub.add_parser(
            name, help=module.HELP, description=doc or module.HELP,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_process()  # process-wide: the CLI owns its process, a library constructor does not
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgesegError as exc:
        print(f"edgeseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
