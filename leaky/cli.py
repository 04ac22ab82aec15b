"""The ``leaky`` command line: one entry point, one sub-command per module.

Each module listed in ``COMMANDS`` provides ``add_parser(subparsers)``, which adds its
sub-command and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "leaky.train",
    "leaky.bench",
    "leaky.sweep",
    "leaky.trace_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaky",
        description="Recurrent neurocomputational agents: train, trace, inspect and benchmark.")
    from leaky import __version__

    parser.add_argument("--version", action="version", version=f"leaky {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from leaky.errors import LeakyError

    try:
        return int(args.func(args) or 0)
    except LeakyError as e:
        print(f"leaky {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
