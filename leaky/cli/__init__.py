"""The ``leaky`` command line: one entry point, one sub-command per module.

Each module listed in ``COMMANDS`` provides ``add_parser(subparsers)``, which adds its
sub-command and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "leaky.training.loop",
    "leaky.bench",
    "leaky.training.sweep",
    "leaky.trace.cli",
    "leaky.training.align",
    "leaky.training.table",
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
    """Run one sub-command; returns its exit code.

    Exit codes: 0 done; 2 a bad argument, input or file (one line on stderr, ``leaky CMD:
    error: …``, naming what was wrong and what was expected; no traceback); 130 (128 + SIGINT)
    after Ctrl-C, with one line saying what was kept; 141 (128 + SIGPIPE)
    when the reader of our output went away (``leaky inspect run.h5 | head``), silently, as a
    C tool killed by SIGPIPE; anything else is a bug in leaky and raises.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from leaky.core.errors import LeakyError

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"leaky {args.command}: warning: {message}", file=sys.stderr)

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line       # warnings as one line each, like the errors
            return int(args.func(args) or 0)
    except LeakyError as e:
        print(f"leaky {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:   # Ctrl-C outside a training loop's own handling (or a second one)
        print(f"leaky {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:        # a file the user named cannot be read or written
        where = f" {e.filename!r}" if e.filename else ""
        print(f"leaky {args.command}: error: cannot use{where} ({e.strerror or e}); expected a "
              f"readable input and a writable output", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of a closed pipe does
    not print 'Exception ignored … BrokenPipeError' (Python's documented recipe)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
