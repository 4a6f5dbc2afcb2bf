"""The ``spikeonnx`` command line: one subcommand per module in this package.

Subcommands register themselves with :func:`subcommand`; user mistakes raise
:class:`CLIError` (or one of the exception types in ``_USER_ERRORS``) and are
reported as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Dict, List, Optional

__all__ = ["main", "subcommand", "CLIError", "positive_int", "positive_float", "is_library_error"]


class CLIError(Exception):
    """A mistake by the user of the command line (reported without a traceback)."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


# name -> (configure(parser), run(args) -> int)
_COMMANDS: Dict[str, tuple] = {}
# Modules that define subcommands; each calls ``subcommand`` on import.
_MODULES = ("demo", "export", "run", "energy", "devices", "inspect", "plot")
_USER_ERRORS = (CLIError, FileNotFoundError, ValueError, IsADirectoryError, PermissionError, OverflowError)
# Modules whose exceptions describe a bad model or input (onnxruntime's Fail, InvalidGraph,
# RuntimeException...; onnx's ValidationError), not a bug of ours. Matched by module, so
# that the CLI need not import them.
_LIBRARY_ERROR_MODULES = ("onnxruntime.", "onnx.")


def is_library_error(err: BaseException) -> bool:
    """Whether ``err`` is an onnxruntime or onnx error about the model or its input."""
    module = type(err).__module__ or ""
    return module.startswith(_LIBRARY_ERROR_MODULES) and not isinstance(err, (MemoryError, KeyboardInterrupt))


def subcommand(name: str, help: str) -> Callable:
    """Register ``configure(parser)`` for subcommand ``name``; it returns the runner.

    The decorated function receives the subparser to add arguments to and must
    return the function that runs the subcommand (``run(args) -> int``).
    """

    def decorator(configure: Callable) -> Callable:
        _COMMANDS[name] = (help, configure)
        return configure

    return decorator


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeonnx",
        description="Spiking neural networks from Keras to ONNX: export, run, analyze.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise
    for name, (help_text, configure) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_run=configure(p))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    from ._logs import quiet_tensorflow

    quiet_tensorflow()  # before anything imports TensorFlow; keeps a user's TF_CPP_MIN_LOG_LEVEL
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"spikeonnx {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not (isinstance(err, _USER_ERRORS) or is_library_error(err)):
            raise
        # one line, whatever the underlying library put in its message
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"spikeonnx {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
