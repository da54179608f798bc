"""The ``quartznet`` command: models, train, finetune, evaluate, predict, make-synthetic,
detect, make-stream, export.

Every subcommand has ``--help``. A user mistake (a bad path, unreadable audio, an unknown
model, a bad option value) ends with one line, ``quartznet: error: ...``, on stderr and exit
status 2, never a traceback; Ctrl-C ends with exit status 130, and a reader that closes the
pipe early (``| head``) with a quiet 141. A traceback means a bug: a ``ValueError`` counts as
the user's mistake only when this package raised it.

This module is the entry point (:func:`main`, :func:`build_parser`) and that error policy;
each command is a module of :mod:`quartznet_tutorial.cli` named in :data:`COMMANDS`, with
``HELP`` (its line in ``quartznet --help``), optionally ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``. A command module imports the library's
torch-heavy modules only inside ``run`` (``train``, ``finetune`` and ``detect`` also in
``add_arguments``: their options are dataclass fields), and :func:`main` builds the options of
the command it runs only, so ``quartznet --help`` loads no torch. The option types and
:func:`~quartznet_tutorial.cli.options.add_dataclass_options` are
:mod:`quartznet_tutorial.cli.options`'.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Collection, Sequence
from types import ModuleType

from quartznet_tutorial.cli.options import PROG

__all__ = [
    "COMMANDS",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "build_parser",
    "command_module",
    "fail",
    "main",
]

#: Command name -> its module in :mod:`quartznet_tutorial.cli`, in ``quartznet --help``'s order.
COMMANDS = {
    "models": "models",
    "train": "train",
    "finetune": "finetune",
    "evaluate": "evaluate",
    "predict": "predict",
    "make-synthetic": "make_synthetic",
    "detect": "detect",
    "make-stream": "make_stream",
    "export": "export",
}

EXIT_USAGE = 2  # argparse's status for a usage error; we use it for every user mistake
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a C tool killed by `| head` reports


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows up here, not as a message at exit
        return code
    except BrokenPipeError:  # the reader left (`| head -1`): nothing more to say
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word that is no option is the command: only its options are built.
    parser = build_parser(commands=[w for w in argv if not w.startswith("-")][:1])
    try:
        args = _parse(parser, argv)
        args.argv = argv
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s"
        )
        return args.run(args) or 0
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except (ValueError, OSError) as e:  # AudioError, CheckpointError, FileNotFoundError...
        if _is_user_error(e):
            return fail(e)
        print(
            f"{PROG}: internal error, a bug; please report it with this traceback:", file=sys.stderr
        )
        raise
    except Exception as e:
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return fail("out of GPU memory; lower --batch-size or use --precision 16-mixed")
        raise


def _is_user_error(error: BaseException) -> bool:
    """Ours to explain in one line: a file-system error, one of this package's errors
    (AudioError, CheckpointError, ...), or a ValueError raised by this package's code. A
    ValueError from inside torch or numpy is a bug of ours, not the user's mistake."""
    if isinstance(error, OSError) or _ours(type(error).__module__):
        return True
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and _ours(tb.tb_frame.f_globals.get("__package__") or "")


def _ours(module: str) -> bool:
    return module.split(".")[0] == __package__.split(".")[0]


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail again."""
    # Not a real file (a test's capture)? Then there is nothing to flush either.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def fail(error: BaseException | str) -> int:
    """Print ``error`` as the one line ``quartznet: error: ...``; return ``EXIT_USAGE``."""
    message = str(error).strip() or type(error).__name__
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``quartznet: error: ...``), exit 2, as ours are."""

    def error(self, message: str):
        raise SystemExit(fail(f"{message} (see '{self.prog} --help')"))


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown option points at its subcommand's help."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.commands.get(getattr(args, "command", None), parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``quartznet`` command.

    ``commands`` names the subcommands that get their options (default: all); the others are
    listed with their help line only. :func:`main` builds only the command it runs, so that
    ``quartznet --help`` and each command wait only for the imports they need (``train``'s
    options, :class:`~quartznet_tutorial.training.config.TrainConfig`'s fields, need torch).
    """
    from quartznet_tutorial import __version__

    parser = _Parser(
        prog=PROG,
        description="QuartzNet and SE-QuartzNet speech-command classifiers (NeMo's recipe).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    # -q after the subcommand too; SUPPRESS: left out there, it keeps the value from before
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log warnings only, no progress bars",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> subparser, for _parse
    for name in COMMANDS:
        module = command_module(name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            parents=[quiet],
        )
        if commands is None or name in commands:
            module.add_arguments(p)
            p.set_defaults(run=module.run)
    return parser


def command_module(name: str) -> ModuleType:
    """The module of the command ``name`` (a key of :data:`COMMANDS`); importing it is cheap:
    it imports the library's modules when its command is built or run."""
    return importlib.import_module(f"{__package__}.{COMMANDS[name]}")


if __name__ == "__main__":
    sys.exit(main())
